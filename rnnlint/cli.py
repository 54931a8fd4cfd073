"""The command line: `rnnlint check`, `rnnlint rules`, `rnnlint explain`.

Exit codes (every command): 0 nothing at or above --fail-on, 1 findings,
2 usage or config error, or a file that could not be read, parsed or analysed.
"""

from __future__ import annotations

import enum
import json
import sys
from pathlib import Path
from typing import List, Optional

import typer

from rnnlint import __version__

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="rnnlint: find the pitfalls that stop recurrent networks (RNN, LSTM, GRU) from learning.",
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)


class OutputFormat(str, enum.Enum):
    text = "text"
    json = "json"
    github = "github"
    sarif = "sarif"


class FailOn(str, enum.Enum):
    error = "error"
    warning = "warning"
    info = "info"


class ListFormat(str, enum.Enum):
    text = "text"
    json = "json"
    markdown = "markdown"


def rules_markdown(link_prefix: str = "rules/") -> str:
    """The rule table of the README and of rules/README.md (link_prefix ""); tests keep both
    in step with the registry."""
    from rnnlint.rules import ALL_META

    rows = ["| Code | Name | Severity | Frameworks | Mode | What it finds |", "|---|---|---|---|---|---|"]
    for m in ALL_META:
        rows.append(
            f"| [{m.code}]({link_prefix}{m.code}-{m.name}.md) | {m.name} | {m.severity.value} | "
            f"{', '.join(m.frameworks)} | {m.mode} | {m.summary} |"
        )
    return "\n".join(rows)


def _fail(message: str) -> "typer.Exit":
    typer.echo(f"rnnlint: error: {message}", err=True)
    return typer.Exit(2)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"rnnlint {__version__}")
        raise typer.Exit(0)


@app.callback()
def _main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version and exit."),
) -> None:
    """rnnlint: a linter for recurrent-network training code."""


@app.command()
def check(
    paths: Optional[List[str]] = typer.Argument(None, help="Files and directories to check (default: .)."),
    output_format: OutputFormat = typer.Option(OutputFormat.text, "--format", help="Output format."),
    select: Optional[List[str]] = typer.Option(None, "--select", help="Codes, prefixes (RNN4) or names to enable; replaces the config's select."),
    ignore: Optional[List[str]] = typer.Option(None, "--ignore", help="Codes, prefixes or names to disable; adds to the config's ignore."),
    fail_on: Optional[FailOn] = typer.Option(None, "--fail-on", help="Lowest severity that makes the exit code 1 [default: warning]."),
    config_file: Optional[str] = typer.Option(None, "--config", help="Use this config file (pyproject.toml or rnnlint.toml)."),
    no_config: bool = typer.Option(False, "--no-config", help="Ignore every config file."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="Only the findings: no code frames, no summary."),
    output: Optional[str] = typer.Option(None, "-o", "--output", help="Write the report to this file instead of stdout."),
    fix: bool = typer.Option(False, "--fix", help="Apply the safe fixes in place, then report what remains (exit 1 if findings remain)."),
    unsafe_fixes: bool = typer.Option(False, "--unsafe-fixes", help="With --fix or --diff: also apply fixes that change training (gradient clipping)."),
    diff: bool = typer.Option(False, "--diff", help="Print the fixes as a unified diff and write nothing (exit 1 if there is anything to fix)."),
    baseline: Optional[str] = typer.Option(None, "--baseline", help="Leave out the findings recorded in this baseline file (JSON)."),
    write_baseline: bool = typer.Option(False, "--write-baseline", help="Record every finding in the --baseline file and exit 0."),
    jobs: int = typer.Option(0, "-j", "--jobs", min=0, help="Worker processes for many files [default: 0 = one per CPU]."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Neither read nor write the content cache."),
    cache_dir: Optional[str] = typer.Option(None, "--cache-dir", help="Cache directory [default: .rnnlint_cache next to the config, or RNNLINT_CACHE_DIR]."),
    runtime: bool = typer.Option(False, "--runtime", help="Also run each given script for a few real training steps and measure (needs torch). Script arguments go after --."),
    steps: int = typer.Option(20, "--steps", min=1, help="Runtime: optimizer steps to probe."),
    timeout: float = typer.Option(120.0, "--timeout", min=1.0, help="Runtime: seconds before the script is stopped."),
    device: str = typer.Option("auto", "--device", help="Runtime: cpu, cuda or auto."),
    seed: int = typer.Option(0, "--seed", help="Runtime: random seed."),
    curvature: bool = typer.Option(False, "--curvature", help="Runtime: estimate the top Hessian eigenvalue (RNN904)."),
    plots: Optional[str] = typer.Option(None, "--plots", help="Runtime: write PNG figures to this directory."),
    memory_limit: Optional[int] = typer.Option(None, "--memory-limit", min=0, help="Runtime: MB of address space the script may add on CPU (0: no limit) [default: half the RAM]."),
) -> None:
    """Check Python files for RNN training pitfalls."""
    from rnnlint.config import ConfigError, parse_fail_on, resolve_config, split_selectors
    from rnnlint.discovery import discover, missing_reason
    from rnnlint.findings import FileError
    from rnnlint.reporters import RunResult, get_reporter
    from rnnlint.rules import valid_selector

    targets = list(paths) if paths else ["."]
    try:
        config, _ = resolve_config(targets, config_file, no_config)
        cli_select = split_selectors(select)
        cli_ignore = split_selectors(ignore)
        for selector in cli_select + cli_ignore:
            if not valid_selector(selector):
                raise ConfigError(f"unknown rule code or name {selector!r} (see `rnnlint rules`)")
        if cli_select:
            config.select = cli_select
        config.ignore = config.ignore + cli_ignore
        if fail_on is not None:
            config.fail_on = parse_fail_on(fail_on.value, "--fail-on")
    except ConfigError as exc:
        raise _fail(str(exc))
    if unsafe_fixes and not (fix or diff):
        raise _fail("--unsafe-fixes needs --fix or --diff")
    if (fix or diff) and runtime:
        raise _fail("--fix and --diff cannot be combined with --runtime")
    known = _load_baseline(baseline, write_baseline)

    files, missing = discover(targets, config.root, config.exclude)
    result = RunResult()
    for path in missing:
        result.errors.append(FileError(path, missing_reason(path), kind="read"))
    if fix or diff:
        from rnnlint.fixes import fix_files

        outcome = fix_files(files, config, unsafe=unsafe_fixes, write=not diff)
        if diff:
            sys.stdout.write("".join(outcome.diffs))
            for error in result.errors + outcome.errors:
                typer.echo(f"rnnlint: error: {error.path}: {error.message}", err=True)
            typer.echo(outcome.summary("would be applied (--diff: nothing written)"), err=True)
            raise typer.Exit(2 if result.errors or outcome.errors else 1 if outcome.applied else 0)
    else:
        outcome = _run_static(files, config, jobs, None if no_cache else cache_dir, no_cache,
                              show_progress=output_format is OutputFormat.text)
    result.findings.extend(outcome.findings)
    result.errors.extend(outcome.errors)
    result.files_checked = len(files)
    if runtime:
        if device not in ("cpu", "cuda", "auto"):
            raise _fail(f"--device must be cpu, cuda or auto (got {device!r})")
        _add_runtime(result, [p for p in targets if p not in missing], steps=steps, timeout=timeout,
                     device=device, seed=seed, curvature=curvature, plots_dir=plots, memory_limit_mb=memory_limit)
    result.findings.sort(key=lambda f: f.sort_key())
    from rnnlint.fingerprint import find_root

    result.root = str(find_root(targets, config.root))
    if baseline is not None:
        _use_baseline(result, baseline, known, files, quiet)

    reporter = get_reporter(output_format.value)
    if output:
        with open(output, "w", encoding="utf-8") as stream:
            reporter(result, stream=stream, quiet=quiet)
    else:
        reporter(result, stream=sys.stdout, quiet=quiet)
    if fix:
        typer.echo(outcome.summary("applied"), err=True)  # type: ignore[union-attr]
    raise typer.Exit(exit_code(result, config.fail_on))


def _run_static(files: List[str], config, jobs: int, cache_dir: Optional[str], no_cache: bool,  # type: ignore[no-untyped-def]
                show_progress: bool):
    """The static check of every file: cache, import order, worker processes (rnnlint.runner)."""
    from rnnlint.cache import Cache, cache_dir_for
    from rnnlint.runner import run

    cache = None if no_cache else Cache(cache_dir_for(config.root, config.cache_dir, cache_dir))
    if not show_progress or len(files) < 50 or not sys.stderr.isatty():
        return run(files, config, jobs=jobs, cache=cache)
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    # Refreshed by hand from the run's callback: no refresh thread, so forking workers is safe.
    with Progress(TextColumn("checking"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=Console(stderr=True), transient=True, auto_refresh=False) as bar:
        task = bar.add_task("check", total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)
            bar.refresh()

        return run(files, config, jobs=jobs, cache=cache, progress=update)


@app.command()
def clean(
    cache_dir: Optional[str] = typer.Option(None, "--cache-dir", help="The cache directory to remove."),
    config_file: Optional[str] = typer.Option(None, "--config", help="Config file that names the cache directory."),
) -> None:
    """Remove the content cache."""
    from rnnlint.cache import cache_dir_for
    from rnnlint.cache import clean as remove_cache
    from rnnlint.config import ConfigError, resolve_config

    try:
        config, _ = resolve_config(["."], config_file, False)
    except ConfigError as exc:
        raise _fail(str(exc))
    directory = cache_dir_for(config.root, config.cache_dir, cache_dir)
    try:
        removed = remove_cache(directory)
    except OSError as exc:
        raise _fail(str(exc))
    typer.echo(f"rnnlint: removed {directory}" if removed else f"rnnlint: no cache at {directory}")


def _add_runtime(result, paths, **options) -> None:  # type: ignore[no-untyped-def]
    """Run the runtime probe (imported only here: the static path never loads torch) and mark
    the static findings that a measurement confirms."""
    import dataclasses

    from rnnlint.runtime.cli_bridge import run_for_cli

    findings, errors, text = run_for_cli(paths, SCRIPT_ARGS, **options)
    confirms = {(f.path, f.extra.get("confirms")): f.code for f in findings if f.extra.get("confirms")}
    for i, static in enumerate(result.findings):
        by = confirms.get((static.path, static.code))
        if by:
            result.findings[i] = dataclasses.replace(static, message=f"{static.message} (confirmed at runtime: {by})")
    result.findings.extend(findings)
    result.errors.extend(errors)
    if text:
        result.notes.append(text)


def _load_baseline(path: Optional[str], write: bool):  # type: ignore[no-untyped-def]
    """The baseline's entries before any file is checked, so a bad file fails fast (exit 2)."""
    from rnnlint.baseline import BaselineError, load_baseline

    if write and path is None:
        raise _fail("--write-baseline needs --baseline FILE")
    if path is None or write:
        return None
    try:
        return load_baseline(path)
    except BaselineError as exc:
        raise _fail(str(exc))


def _use_baseline(result, path: str, known, files: List[str], quiet: bool) -> None:  # type: ignore[no-untyped-def]
    """--write-baseline: record the findings and exit 0; --baseline: drop the recorded ones."""
    from rnnlint.baseline import BaselineError, apply_baseline, write_baseline

    root = Path(result.root)
    if known is None:
        try:
            count = write_baseline(path, result.findings, root)
        except BaselineError as exc:
            raise _fail(str(exc))
        for e in result.errors:
            typer.echo(f"rnnlint: warning: {e.path}: {e.message} (the baseline may miss its findings)", err=True)
        typer.echo(f"rnnlint: wrote {count} finding{'s' if count != 1 else ''} to baseline {path}", err=True)
        raise typer.Exit(0)
    result.findings, dropped, fixed = apply_baseline(result.findings, known, root, files)
    if (dropped or fixed) and not quiet:
        result.notes.append(
            f"Baseline {path}: {dropped} known finding{'s' if dropped != 1 else ''} not shown"
            + (f"; {fixed} recorded finding{'s are' if fixed != 1 else ' is'} gone (rewrite it with --write-baseline)" if fixed else "")
            + "."
        )


def exit_code(result, fail_on) -> int:  # type: ignore[no-untyped-def]
    if result.errors:
        return 2
    if any(f.severity.rank >= fail_on.rank for f in result.findings):
        return 1
    return 0


@app.command("rules")
def list_rules(
    output_format: ListFormat = typer.Option(ListFormat.text, "--format", help="text, json or markdown."),
) -> None:
    """List every rule: code, name, severity, frameworks and what it finds."""
    from rnnlint.rules import ALL_META

    if output_format is ListFormat.markdown:
        typer.echo(rules_markdown())
        return
    if output_format is ListFormat.json:
        payload = [
            {
                "code": m.code,
                "name": m.name,
                "severity": m.severity.value,
                "frameworks": list(m.frameworks),
                "mode": m.mode,
                "summary": m.summary,
                "options": m.options,
            }
            for m in ALL_META
        ]
        typer.echo(json.dumps(payload, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, pad_edge=False, show_edge=False)
    for column in ("code", "name", "severity", "frameworks", "summary"):
        table.add_column(column, overflow="fold")
    for m in ALL_META:
        suffix = " (runtime)" if m.mode == "runtime" else ""
        table.add_row(m.code, m.name, m.severity.value, ", ".join(m.frameworks), m.summary + suffix)
    Console(soft_wrap=False).print(table)


def docs_dir() -> Optional[Path]:
    """Rule docs: packaged inside the wheel, or the repository's rules/ in a checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "_docs", here.parent / "rules"):
        if candidate.is_dir():
            return candidate
    return None


@app.command()
def explain(code_or_name: str = typer.Argument(..., help="A rule code (RNN101) or name (no-grad-clipping).")) -> None:
    """Print a rule's documentation."""
    from rnnlint.rules import lookup

    try:
        meta = lookup(code_or_name)
    except KeyError:
        raise _fail(f"unknown rule {code_or_name!r} (see `rnnlint rules`)")
    directory = docs_dir()
    doc = directory / f"{meta.code}-{meta.name}.md" if directory else None
    if doc is None or not doc.is_file():
        typer.echo(f"# {meta.code} {meta.name}\n\n{meta.summary}\n(severity: {meta.severity.value})")
        return
    typer.echo(doc.read_text(encoding="utf-8"))


server_app = typer.Typer(
    no_args_is_help=True,
    help="A resident server that keeps libcst and the rules loaded, so that `rnnlint check` of a "
    "few files answers without paying for their import (pre-commit). `check` uses a running "
    "server of the same build by itself; RNNLINT_SERVER=auto starts one, RNNLINT_SERVER=off ignores it.",
)
app.add_typer(server_app, name="server")


def _server_path() -> str:
    from rnnlint.client import socket_path

    path = socket_path()
    if path is None:
        raise _fail("the server needs a POSIX system and a private socket directory "
                    "(RNNLINT_SERVER_DIR, XDG_RUNTIME_DIR or $TMPDIR/rnnlint-UID)")
    return path


@server_app.command("start")
def server_start(
    idle_timeout: float = typer.Option(1800.0, "--idle-timeout", min=1.0, help="Seconds without a request before the server exits."),
) -> None:
    """Start the server in the background (nothing happens if one already runs)."""
    import time

    from rnnlint.client import ask, start_detached

    path = _server_path()
    running = ask("ping")
    if running:
        typer.echo(f"rnnlint: server already running (pid {running['pid']}, {path})")
        return
    start_detached(path, idle_timeout)
    deadline = time.monotonic() + 30.0
    while time.monotonic() < deadline:
        running = ask("ping", timeout=1.0)
        if running:
            typer.echo(f"rnnlint: server started (pid {running['pid']}, {path}); "
                       f"it exits after {idle_timeout:g} s without a request")
            return
        time.sleep(0.05)
    raise _fail(f"the server did not start; see {path[:-len('.sock')]}.log")


@server_app.command("stop")
def server_stop() -> None:
    """Stop this build's server (nothing happens if none runs)."""
    from rnnlint.client import ask

    path = _server_path()
    answer = ask("stop")
    typer.echo(f"rnnlint: server stopped (pid {answer['stopping']})" if answer and "stopping" in answer
               else f"rnnlint: no server running on {path}")


@server_app.command("status")
def server_status() -> None:
    """Show this build's server; exit 0 if it runs, 1 if not."""
    from rnnlint.client import ask

    path = _server_path()
    answer = ask("ping")
    if not answer:
        typer.echo(f"rnnlint: no server running on {path}")
        raise typer.Exit(1)
    typer.echo(f"rnnlint: server running: pid {answer['pid']}, {answer['requests']} checks served, "
               f"up {answer['uptime']:g} s, exits after {answer['idle_timeout']:g} s idle, socket {path}")


SCRIPT_ARGS: List[str] = []


def main() -> None:
    # `rnnlint check --runtime train.py -- --epochs 3`: what follows -- belongs to the script.
    argv = sys.argv[1:]
    if "--runtime" in argv and "--" in argv:
        cut = argv.index("--")
        SCRIPT_ARGS[:] = argv[cut + 1:]
        argv = argv[:cut]
    try:
        app(args=argv, prog_name="rnnlint")
    except KeyboardInterrupt:
        typer.echo("rnnlint: interrupted", err=True)
        sys.exit(130)
