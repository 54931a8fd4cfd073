"""The records every part of rnnlint exchanges: severities, findings, file errors."""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, Optional


class Severity(str, enum.Enum):
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"

    @property
    def rank(self) -> int:
        return {"info": 0, "warning": 1, "error": 2}[self.value]


@dataclass(frozen=True)
class Finding:
    """One reported problem. Lines and columns are 1-based; end_column is exclusive."""

    path: str
    line: int
    column: int
    end_line: int
    end_column: int
    code: str
    name: str
    severity: Severity
    message: str
    # Optional extras: runtime measurements, notebook cell location, fix titles.
    extra: Dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    # Notebooks: the cell (counting every cell from 1); line and column are inside that cell.
    cell: Optional[int] = None

    def sort_key(self) -> tuple:
        return (self.path, self.cell or 0, self.line, self.column, self.code, self.message)

    def to_json(self) -> Dict[str, Any]:
        data = asdict(self)
        data["severity"] = self.severity.value
        if data["cell"] is None:
            del data["cell"]
        extra = data.pop("extra")
        if extra:
            data.update(extra)
        return data


@dataclass(frozen=True)
class FileError:
    """A file that could not be read, parsed or analysed. line is 0 when unknown."""

    path: str
    message: str
    line: int = 0
    column: int = 0
    kind: str = "parse"  # read | parse | config | internal

    def to_json(self) -> Dict[str, Any]:
        data: Dict[str, Any] = {"path": self.path, "message": self.message, "kind": self.kind}
        if self.line:
            data["line"] = self.line
            data["column"] = self.column
        return data


def severity_from(value: str) -> Optional[Severity]:
    try:
        return Severity(value.lower())
    except ValueError:
        return None
