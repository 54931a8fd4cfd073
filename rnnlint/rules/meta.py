"""Rule metadata. Kept apart from the rule machinery so that listing, selecting and
configuring rules (and answering a run from the cache) never imports the parser."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Tuple

from rnnlint.findings import Severity


@dataclass(frozen=True)
class RuleMeta:
    code: str
    name: str
    severity: Severity
    frameworks: Tuple[str, ...]
    summary: str
    mode: str = "static"  # "static" | "runtime"
    options: Dict[str, Any] = field(default_factory=dict)
