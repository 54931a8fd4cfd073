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


class FailOn(str, enum.Enum):
    error = "error"
    warning = "warning"
    info = "info"


class ListFormat(str, enum.Enum):
    text = "text"
    json = "json"
    markdown = "markdown"


def rules_markdown() -> str:
    """The rule table of the README (a test keeps the README in step with the registry)."""
    from rnnlint.rules import ALL_META

    rows = ["| Code | Name | Severity | Frameworks | Mode | What it finds |", "|---|---|---|---|---|---|"]
    for m in ALL_META:
        rows.append(
            f"| [{m.code}](rules/{m.code}-{m.name}.md) | {m.name} | {m.severity.value} | "
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
    runtime: bool = typer.Option(False, "--runtime", help="Also run each given script for a few real training steps and measure (needs torch). Script arguments go after --."),
    steps: int = typer.Option(20, "--steps", min=1, help="Runtime: optimizer steps to probe."),
    timeout: float = typer.Option(120.0, "--timeout", min=1.0, help="Runtime: seconds before the script is stopped."),
    device: str = typer.Option("auto", "--device", help="Runtime: cpu, cuda or auto."),
    seed: int = typer.Option(0, "--seed", help="Runtime: random seed."),
    curvature: bool = typer.Option(False, "--curvature", help="Runtime: estimate the top Hessian eigenvalue (RNN904)."),
    plots: Optional[str] = typer.Option(None, "--plots", help="Runtime: write PNG figures to this directory."),
) -> None:
    """Check Python files for RNN training pitfalls."""
    from rnnlint.config import ConfigError, parse_fail_on, resolve_config, split_selectors
    from rnnlint.discovery import discover
    from rnnlint.engine import check_file
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

    files, missing = discover(targets, config.root, config.exclude)
    result = RunResult()
    for path in missing:
        result.errors.append(FileError(path, "no such file or directory", kind="read"))
    for path in files:
        file_result = check_file(path, config)
        result.findings.extend(file_result.findings)
        result.errors.extend(file_result.errors)
    result.files_checked = len(files)
    if runtime:
        if device not in ("cpu", "cuda", "auto"):
            raise _fail(f"--device must be cpu, cuda or auto (got {device!r})")
        _add_runtime(result, [p for p in targets if p not in missing], steps=steps, timeout=timeout,
                     device=device, seed=seed, curvature=curvature, plots_dir=plots)
    result.findings.sort(key=lambda f: f.sort_key())

    reporter = get_reporter(output_format.value)
    if output:
        with open(output, "w", encoding="utf-8") as stream:
            reporter(result, stream=stream, quiet=quiet)
    else:
        reporter(result, stream=sys.stdout, quiet=quiet)
    raise typer.Exit(exit_code(result, config.fail_on))


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
