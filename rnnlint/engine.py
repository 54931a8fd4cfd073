"""Check files: read, pre-filter, parse once, collect facts, run every rule, suppress, locate."""

from __future__ import annotations

import ast
import re
import warnings
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple, Type

import libcst as cst

from rnnlint.analysis.project import ProjectView
from rnnlint.analysis.project import summarize as summarize_module
from rnnlint.analysis.values import Evaluator
from rnnlint.analysis.walker import collect_facts
from rnnlint.config import Config
from rnnlint.findings import FileError, Finding
from rnnlint.positions import positions
from rnnlint.rules import STATIC_RULES, matches
from rnnlint.rules.base import Context, Report, Rule
from rnnlint.source import PREFILTER, decode, load, read_source, to_checked_text  # noqa: F401 - re-exported
from rnnlint.suppressions import is_suppressed, skips_file, split_lines



@dataclass
class FileResult:
    path: str
    findings: List[Finding] = field(default_factory=list)
    errors: List[FileError] = field(default_factory=list)
    # What the file exports to importing files (rnnlint.analysis.project), when asked for.
    summary: Optional[Dict[str, Any]] = None
    # False when a rule read files the cache key does not cover (see Context.reads_other_files).
    cacheable: bool = True
    # Only with check_source(keep_reports=True), for --fix: the parsed module and the
    # reports behind the findings (suppressed ones left out), with their fixes.
    reports: List[Report] = field(default_factory=list, repr=False, compare=False)
    module: Optional[cst.Module] = field(default=None, repr=False, compare=False)


def rules_for(path: str, config: Config) -> List[Type[Rule]]:
    enabled = set(config.enabled_codes())
    ignored = config.ignored_for(path)
    return [
        r for r in STATIC_RULES
        if r.meta.code in enabled and not any(matches(s, r.meta) for s in ignored)
    ]


def check_file(path: str, config: Config) -> FileResult:
    text, error = load(path)
    if text is None:
        return FileResult(path, errors=[error] if error else [])
    checked, line_map, error = to_checked_text(path, text)
    if checked is None:
        return FileResult(path, errors=[error] if error else [])
    result = check_source(path, checked, config)
    if line_map is not None:
        from rnnlint.notebooks import remap

        result.findings, result.errors = remap(line_map, result.findings, result.errors)
    return result


def check_source(
    path: str,
    text: str,
    config: Config,
    rules: Optional[Sequence[Type[Rule]]] = None,
    keep_reports: bool = False,
    project: Optional[ProjectView] = None,
    summarize: bool = False,
) -> FileResult:
    """Check one file's text. `project` holds the summaries of the checked files it imports;
    with `summarize`, the result carries this file's own summary for the files importing it."""
    result = FileResult(path)
    if skips_file(text) or (not summarize and not any(word in text for word in PREFILTER)):
        return result
    if len(text) > MAX_SOURCE_CHARS:
        result.errors.append(FileError(
            path, f"file holds {len(text) / 1e6:.1f} million characters (limit {MAX_SOURCE_CHARS / 1e6:g} million): "
                  "too large to analyse in reasonable time, likely generated; add it to extend-exclude",
            kind="parse"))
        return result
    too_deep = _too_deep(text)
    if too_deep:
        result.errors.append(FileError(path, too_deep, kind="parse"))
        return result
    if "\x00" in text:
        nul = text.index("\x00")
        result.errors.append(FileError(path, "file contains NUL bytes; not Python source", kind="parse",
                                       line=text.count("\n", 0, nul) + 1, column=nul - text.rfind("\n", 0, nul)))
        return result
    try:
        module = cst.parse_module(text)
    except cst.ParserSyntaxError as exc:
        result.errors.append(_syntax_error(path, text, exc))
        return result
    except RecursionError:
        result.errors.append(FileError(path, "expression nesting too deep to parse", kind="parse"))
        return result
    except Exception as exc:  # noqa: BLE001 - the parser can fail in ways it does not type
        result.errors.append(FileError(path, f"cannot parse file: {exc}", kind="parse"))
        return result
    if _PY2_EXCEPT.search(text):
        # libcst accepts `except A, e:` (Python 3.14 syntax for two exception types); older
        # Pythons reject it, and it is almost always a Python 2 file: ask the running CPython.
        rejected = _cpython_error(path, text)
        if rejected is not None:
            result.errors.append(rejected)
            return result
    try:
        facts = collect_facts(path, module)
    except RecursionError:
        result.errors.append(FileError(path, "expression nesting too deep to analyse", kind="parse"))
        return result
    evaluator = Evaluator(facts)
    evaluator.project = project
    rule_classes = rules if rules is not None else rules_for(path, config)
    reports: List[Report] = []
    for rule_class in rule_classes:
        ctx = Context(facts, evaluator, config.options)
        ctx.meta = rule_class.meta
        try:
            rule_class().check(ctx)
        except Exception as exc:  # noqa: BLE001 - isolate one rule's bug from the rest
            result.errors.append(
                FileError(
                    path,
                    f"internal error in rule {rule_class.meta.code} ({rule_class.meta.name}): "
                    f"{type(exc).__name__}: {exc}. Other rules still ran; please report this "
                    "with the file that triggers it",
                    kind="internal",
                )
            )
            continue
        reports.extend(ctx.reports)
    result.cacheable = not facts.cache.get("reads_other_files")
    if summarize:
        try:
            result.summary = summarize_module(facts, evaluator)
        except RecursionError:
            result.summary = None
    if keep_reports:
        result.module = module
    if reports:
        try:
            result.findings = _locate(path, text, module, reports, result.reports if keep_reports else None)
        except RecursionError:
            result.errors.append(FileError(path, "expression nesting too deep to locate findings", kind="parse"))
    return result


_BRACKETS = re.compile(r"[()\[\]{}]")
_OPERATORS = re.compile(r"[-+*/%&|^<>]| and | or ")
MAX_NESTING = 150  # CPython itself rejects more than 200 nested brackets
MAX_OPERATORS_PER_LINE = 2000


def _too_deep(text: str) -> str:
    """Why the file is too deeply nested to hand to libcst's native parser, which crashes
    the whole process (not just the file) on absurd nesting; "" when it is fine."""
    depth = deepest = start = 0
    long_span = False
    for match in _BRACKETS.finditer(text):
        if match.group() in "([{":
            if depth == 0:
                start = match.start()
            depth += 1
            if depth > deepest:
                deepest = depth
        else:
            depth -= 1
            if depth == 0 and match.start() - start > LONG_STATEMENT:
                long_span = True
    if deepest > MAX_NESTING:
        return f"brackets nested {deepest} levels deep (limit {MAX_NESTING}); not analysed"
    for line in text.splitlines():
        if len(line) > 4 * MAX_OPERATORS_PER_LINE:
            count = len(_OPERATORS.findall(line))
            if count > MAX_OPERATORS_PER_LINE:
                return f"one line chains {count} operators (limit {MAX_OPERATORS_PER_LINE}); not analysed"
    if long_span or _long_statement(text):
        return _syntax_depth(text)
    return ""


# Expression nesting without brackets (a.b.b..., not not ..., lambda: lambda: ..., x if c else
# y if ..., a + b + ..., elif chains) makes libcst's parser slow (quadratic) and, past a few
# thousand levels, crashes the process; the walker runs out of recursion earlier. A statement
# that deep is long, so only files with a long statement pay for CPython's parse, which
# measures the depth. Below MAX_SYNTAX_DEPTH every construct tried parses and analyses.
MAX_SYNTAX_DEPTH = 500
# libcst parses about 150 KB of dense code a second: a 5 MB generated table would take a minute.
MAX_SOURCE_CHARS = 1_000_000
LONG_STATEMENT = 1000
_PY2_EXCEPT = re.compile(r"^[ \t]*except[ \t]+[^:\r\n()\[\]]+,[ \t]*\w+[ \t]*:", re.M)


def _long_statement(text: str) -> bool:
    """Whether some line, elif chain or backslash-continued statement may be long enough to
    nest MAX_SYNTAX_DEPTH levels deep (long bracketed spans are found by _too_deep)."""
    if max(map(len, text.splitlines()), default=0) > LONG_STATEMENT or text.count("elif") > MAX_SYNTAX_DEPTH // 2:
        return True
    return text.count("\\\n") + text.count("\\\r") > LONG_STATEMENT // 10


def _syntax_depth(text: str) -> str:
    """Why CPython's syntax tree of the file is too deep to analyse; "" when it is not (or
    when it does not parse: the parse error is reported as usual)."""
    try:
        with warnings.catch_warnings():  # e.g. invalid escape sequences: not rnnlint's to report
            warnings.simplefilter("ignore")
            tree = ast.parse(text)
    except (RecursionError, MemoryError):
        return "expressions nested too deep for Python's own parser; not analysed"
    except (SyntaxError, ValueError):
        return ""
    stack = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_SYNTAX_DEPTH:
            line = getattr(node, "lineno", 0)
            where = f" at line {line}" if line else ""
            return f"syntax nested more than {MAX_SYNTAX_DEPTH} levels deep{where}; not analysed"
        # `a and b and c` is one node here but a chain of nested ones in libcst.
        step = len(node.values) if isinstance(node, ast.BoolOp) else 1
        stack.extend((child, depth + step) for child in ast.iter_child_nodes(node))
    return ""


def _cpython_verdict(path: str, text: str) -> Tuple[Optional[FileError], bool]:
    """(the running CPython's syntax error for the file, whether CPython accepts it); both
    empty when CPython cannot say (nesting or memory limits)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            compile(text, path, "exec", flags=ast.PyCF_ONLY_AST, dont_inherit=True)
    except SyntaxError as err:
        return FileError(path, f"syntax error: {err.msg}", line=err.lineno or 0, column=err.offset or 0), False
    except (ValueError, RecursionError, MemoryError):
        return None, False
    return None, True


def _cpython_error(path: str, text: str) -> Optional[FileError]:
    """The running CPython's syntax error for the file, or None when it compiles."""
    return _cpython_verdict(path, text)[0]


def _syntax_error(path: str, text: str, exc: "cst.ParserSyntaxError") -> FileError:
    """Where and why the file does not parse. CPython's own parser names the spot more
    precisely than libcst's, so ask it (only on this failure path)."""
    rejected, accepted = _cpython_verdict(path, text)
    if rejected is not None:
        return rejected
    if accepted:  # valid Python that libcst cannot read (e.g. thousands of implicitly joined strings)
        message = exc.message.replace("parser error: ", "").splitlines()[0][:200]
        return FileError(path, f"libcst cannot parse this file although Python accepts it ({message}); "
                               "not analysed", line=exc.raw_line, column=exc.raw_column + 1)
    message = exc.message.replace("parser error: ", "").splitlines()[0][:200]
    return FileError(path, f"syntax error: {message}", line=exc.raw_line, column=exc.raw_column + 1)


def _locate(
    path: str, text: str, module: cst.Module, reports: List[Report], kept: Optional[List[Report]] = None
) -> List[Finding]:
    wanted = []
    for report in reports:
        wanted.append(report.node)
        if report.stmt is not None:
            wanted.append(report.stmt)
        wanted.extend(report.refs.values())
    where = positions(module, wanted)
    lines = split_lines(text)
    findings: Dict[tuple, Finding] = {}
    for report in reports:
        pos = where.get(id(report.node))
        if pos is None:
            continue
        line, column, end_line, end_column = pos
        meta = report.meta
        candidates = [line]
        if report.stmt is not None and id(report.stmt) in where:
            candidates.append(where[id(report.stmt)][0])
        if is_suppressed(lines, candidates, meta.code, meta.name):
            continue
        message = report.message
        if report.refs:
            message = message.format(**{k: where.get(id(n), (0,))[0] for k, n in report.refs.items()})
        finding = Finding(path, line, column, end_line, end_column, meta.code, meta.name, meta.severity, message)
        if kept is not None and (line, column, meta.code) not in findings:
            kept.append(report)
        findings.setdefault((line, column, meta.code), finding)
    return sorted(findings.values(), key=Finding.sort_key)
