"""--format text: one line per finding with a code frame, and a summary (rich; colour on a TTY only)."""

from __future__ import annotations

import sys
from typing import Dict, List, Optional, TextIO

from rich.console import Console
from rich.markup import escape

from rnnlint.reporters import RunResult

_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}


def _source_lines(path: str, cache: Dict[str, Optional[List[str]]]) -> Optional[List[str]]:
    if path not in cache:
        try:
            from rnnlint.source import read_source

            cache[path] = read_source(path).splitlines()
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


def report(result: RunResult, stream: TextIO = sys.stdout, quiet: bool = False, **_: object) -> None:
    console = Console(file=stream, highlight=False, soft_wrap=True)
    sources: Dict[str, Optional[List[str]]] = {}
    for f in result.findings:
        style = _STYLE[f.severity.value]
        console.print(
            f"[bold]{escape(f.path)}:{'' if f.cell is None else f'cell {f.cell}:'}{f.line}:{f.column}:[/bold] "
            f"[{style}]{f.code}[/{style}] "
            f"{escape(f.message)} [dim]\\[{f.name}, {f.severity.value}][/dim]"
        )
        if quiet:
            continue
        lines = _source_lines(f.path, sources) if f.cell is None else _cell_lines(f.path, f.cell, sources)
        if lines and 1 <= f.line <= len(lines):
            text = lines[f.line - 1].expandtabs(4)
            gutter = f"{f.line:>5} | "
            console.print(f"[dim]{gutter}[/dim]{escape(text)}")
            width = max(1, (f.end_column - f.column) if f.end_line == f.line else len(text) - f.column + 1)
            console.print(" " * (len(gutter) + f.column - 1) + f"[{style}]" + "^" * width + f"[/{style}]")
    for e in result.errors:
        where = f":{e.line}:{e.column}" if e.line else ""
        console.print(f"[bold]{escape(e.path)}{where}:[/bold] [bold red]error[/bold red] {escape(e.message)}")
    for note in result.notes:
        console.print(note, markup=False)
    if quiet:
        return
    s = result.summary()
    sev = s["by_severity"]
    files = s["files"]
    if result.findings or result.errors:
        console.print(
            f"Found {s['findings']} finding{'s' if s['findings'] != 1 else ''} "
            f"({sev['error']} error, {sev['warning']} warning, {sev['info']} info) "
            f"in {files} file{'s' if files != 1 else ''} checked"
            + (f"; {s['errors']} file{'s' if s['errors'] != 1 else ''} could not be checked" if result.errors else "")
            + "."
        )
    else:
        console.print(f"All clear: no findings in {files} file{'s' if files != 1 else ''} checked.")
