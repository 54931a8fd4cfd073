"""Reporters only format: they take the run's result and write text."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

from rnnlint.findings import FileError, Finding, Severity


@dataclass
class RunResult:
    findings: List[Finding] = field(default_factory=list)
    errors: List[FileError] = field(default_factory=list)
    files_checked: int = 0
    # Free text some modes add (runtime sparklines); reporters that can show it do.
    notes: List[str] = field(default_factory=list)
    # The repository root paths are made relative to (SARIF URIs, fingerprints); None: the cwd.
    root: Optional[str] = None

    def summary(self) -> Dict[str, object]:
        by_severity = {s.value: 0 for s in (Severity.ERROR, Severity.WARNING, Severity.INFO)}
        by_code: Dict[str, int] = {}
        for f in self.findings:
            by_severity[f.severity.value] += 1
            by_code[f.code] = by_code.get(f.code, 0) + 1
        return {
            "files": self.files_checked,
            "findings": len(self.findings),
            "errors": len(self.errors),
            "by_severity": by_severity,
            "by_code": dict(sorted(by_code.items())),
        }


def get_reporter(name: str) -> Callable[..., None]:
    if name == "json":
        from rnnlint.reporters.json_report import report
    elif name == "github":
        from rnnlint.reporters.github import report
    elif name == "sarif":
        from rnnlint.reporters.sarif import report
    else:
        from rnnlint.reporters.text import report
    return report
