"""--format text: one line per finding with a code frame, and a summary (rich; colour on a TTY only)."""

from __future__ import annotations

import os
import sys
from typing import Dict, List, Optional, TextIO, Tuple

from rnnlint.reporters import RunResult

_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}


def _source_lines(path: str, cache: Dict[str, Optional[List[str]]]) -> Optional[List[str]]:
    if path not in cache:
        try:
            from rnnlint.source import read_source
            from rnnlint.suppressions import split_lines

            cache[path] = split_lines(read_source(path))  # line numbers as Python counts them
        except Exception:  # noqa: BLE001 - a frame is a nicety; never fail the report for it
            cache[path] = None
    return cache[path]


def _cell_lines(path: str, cell: int, cache: Dict[str, Optional[List[str]]]) -> Optional[List[str]]:
    key = f"{path}\0{cell}"
    if key not in cache:
        try:
            from rnnlint.notebooks import cell_lines
            from rnnlint.source import read_source

            cache[key] = cell_lines(read_source(path), cell)
        except Exception:  # noqa: BLE001 - a frame is a nicety
            cache[key] = None
    return cache[key]


class _Out:
    """Writes lines made of (text, style) segments: through rich on a terminal (colour), as
    plain text otherwise, which is the same text without importing rich (start-up time)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.console = None
        force = os.environ.get("FORCE_COLOR") not in (None, "", "0")
        isatty = getattr(stream, "isatty", None)
        if force or (isatty is not None and isatty()):
            from rich.console import Console

            self.console = Console(file=stream, highlight=False, soft_wrap=True)

    def line(self, *segments: Tuple[str, Optional[str]]) -> None:
        if self.console is None:
            self.stream.write("".join(text for text, _ in segments) + "\n")
            return
        from rich.text import Text

        self.console.print(Text.assemble(*((t, s or "") for t, s in segments)))


def report(result: RunResult, stream: TextIO = sys.stdout, quiet: bool = False, **_: object) -> None:
    out = _Out(stream)
    sources: Dict[str, Optional[List[str]]] = {}
    for f in result.findings:
        style = _STYLE[f.severity.value]
        where = f"{f.path}:{'' if f.cell is None else f'cell {f.cell}:'}{f.line}:{f.column}:"
        out.line((where, "bold"), (" ", None), (f.code, style), (f" {f.message} ", None),
                 (f"[{f.name}, {f.severity.value}]", "dim"))
        if quiet:
            continue
        lines = _source_lines(f.path, sources) if f.cell is None else _cell_lines(f.path, f.cell, sources)
        if lines and 1 <= f.line <= len(lines):
            text = lines[f.line - 1].expandtabs(4)
            gutter = f"{f.line:>5} | "
            out.line((gutter, "dim"), (text, None))
            width = max(1, (f.end_column - f.column) if f.end_line == f.line else len(text) - f.column + 1)
            out.line((" " * (len(gutter) + f.column - 1), None), ("^" * width, style))
    for e in result.errors:
        where = f":{e.line}:{e.column}" if e.line else ""
        out.line((f"{e.path}{where}:", "bold"), (" ", None), ("error", "bold red"), (f" {e.message}", None))
    for note in result.notes:
        out.line((note, None))
    if quiet:
        return
    s = result.summary()
    sev = s["by_severity"]
    files = s["files"]
    if result.findings or result.errors:
        out.line((
            f"Found {s['findings']} finding{'s' if s['findings'] != 1 else ''} "
            f"({sev['error']} error, {sev['warning']} warning, {sev['info']} info) "
            f"in {files} file{'s' if files != 1 else ''} checked"
            + (f"; {s['errors']} file{'s' if s['errors'] != 1 else ''} could not be checked" if result.errors else "")
            + ".",
            None,
        ))
    else:
        out.line((f"All clear: no findings in {files} file{'s' if files != 1 else ''} checked.", None))
