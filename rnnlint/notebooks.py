"""Jupyter notebooks: code cells joined into one Python text, and back to cell locations.

Every code cell contributes its lines, in order, so that one cell can use what an earlier one
defined (a model built in cell 3 and trained in cell 7). IPython syntax is neutralised line
for line, so line numbers stay exact: `%magic` and `!shell` lines become `pass`, `x = !ls`
becomes `x = None`, and a cell that starts with a cell magic other than %%time / %%timeit /
%%capture (whose body is Python) is blanked. Markdown and raw cells contribute nothing.
Findings point at the notebook with the cell number (counting every cell from 1, markdown
included, as a reader scrolling the notebook counts them) and the line inside that cell.
"""

from __future__ import annotations

import re
import warnings
from typing import Iterable, List, Optional, Tuple, TypeVar

from rnnlint.findings import FileError, Finding

PYTHON_CELL_MAGICS = ("%%time", "%%timeit", "%%capture", "%%prun", "%%debug")
_ASSIGNED_MAGIC = re.compile(r"^(\s*)([A-Za-z_][\w.,\s]*?)\s*=\s*[!%]")
_HELP = re.compile(r"^\s*[\w.]+\?{1,2}\s*$")

# joined line (1-based) -> (cell number, line in cell), index 0 unused
LineMap = List[Tuple[int, int]]


class NotebookError(ValueError):
    pass


def _neutralise(line: str) -> str:
    stripped = line.lstrip()
    indent = line[: len(line) - len(stripped)]
    if stripped.startswith(("%", "!")):
        return f"{indent}pass  # {stripped[:60]}"
    assigned = _ASSIGNED_MAGIC.match(line)
    if assigned:
        return f"{assigned.group(1)}{assigned.group(2)} = None"
    if _HELP.match(line):
        return f"{indent}pass"
    return line


def to_source(text: str) -> Tuple[str, LineMap]:
    """(the notebook's code as one Python text, the map from its lines to cells)."""
    try:
        import nbformat
    except ImportError:  # pragma: no cover - nbformat is a dependency
        raise NotebookError("reading notebooks needs the nbformat package")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            notebook = nbformat.reads(text, as_version=4, capture_validation_error={})
    except Exception as exc:  # noqa: BLE001 - nbformat raises JSON, schema and version errors
        raise NotebookError(f"not a readable notebook: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
    lines: List[str] = []
    line_map: LineMap = [(0, 0)]
    for number, cell in enumerate(notebook.get("cells", []), start=1):
        if cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        if isinstance(source, list):
            source = "".join(source)
        cell_lines = source.splitlines() or [""]
        first = cell_lines[0].strip()
        blank = first.startswith("%%") and not first.startswith(PYTHON_CELL_MAGICS)
        for index, line in enumerate(cell_lines, start=1):
            if blank:
                line = "# " + line if line.strip() else line
            else:
                line = _neutralise(line)
            lines.append(line)
            line_map.append((number, index))
    return "\n".join(lines) + "\n", line_map


def cell_lines(text: str, cell: int) -> List[str]:
    """The source lines of one cell (for code frames)."""
    try:
        import nbformat

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            notebook = nbformat.reads(text, as_version=4, capture_validation_error={})
        source = notebook["cells"][cell - 1].get("source", "")
    except Exception:  # noqa: BLE001 - a frame is a nicety
        return []
    return ("".join(source) if isinstance(source, list) else source).splitlines()


def _where(line_map: LineMap, line: int) -> Tuple[Optional[int], int]:
    if 0 < line < len(line_map):
        return line_map[line]
    return None, line


T = TypeVar("T")


def remap(line_map: LineMap, findings: Iterable[Finding], errors: Iterable[FileError]) -> Tuple[List[Finding], List[FileError]]:
    """Findings and errors with cell numbers and lines inside the cell."""
    import dataclasses

    out_findings = []
    for f in findings:
        cell, line = _where(line_map, f.line)
        end_cell, end_line = _where(line_map, f.end_line)
        if end_cell != cell:  # a node spanning cells cannot happen; keep the start safe
            end_line, end_column = line, f.column
        else:
            end_column = f.end_column
        out_findings.append(dataclasses.replace(f, line=line, end_line=end_line, end_column=end_column, cell=cell))
    out_errors = []
    for e in errors:
        if e.line:
            cell, line = _where(line_map, e.line)
            message = f"cell {cell}: {e.message}" if cell else e.message
            out_errors.append(dataclasses.replace(e, line=line, message=message))
        else:
            out_errors.append(e)
    return out_findings, out_errors
