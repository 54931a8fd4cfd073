"""--format github: GitHub Actions workflow commands, one annotation per finding."""

from __future__ import annotations

import sys
from typing import TextIO

from rnnlint.reporters import RunResult

_LEVEL = {"error": "error", "warning": "warning", "info": "notice"}


def _data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _prop(text: str) -> str:
    return _data(text).replace(":", "%3A").replace(",", "%2C")


def report(result: RunResult, stream: TextIO = sys.stdout, **_: object) -> None:
    for f in result.findings:
        level = _LEVEL[f.severity.value]
        if f.cell is not None:  # annotations cannot point inside a notebook cell: name it
            stream.write(
                f"::{level} file={_prop(f.path)},title={_prop(f.code + ' ' + f.name)}::"
                f"{_data(f'{f.code} cell {f.cell}, line {f.line}: {f.message}')}\n"
            )
            continue
        stream.write(
            f"::{level} file={_prop(f.path)},line={f.line},col={f.column},endLine={f.end_line},"
            f"endColumn={f.end_column},title={_prop(f.code + ' ' + f.name)}::{_data(f.code + ' ' + f.message)}\n"
        )
    for e in result.errors:
        where = f",line={e.line},col={e.column}" if e.line else ""
        stream.write(f"::error file={_prop(e.path)}{where},title=rnnlint::{_data(e.message)}\n")
