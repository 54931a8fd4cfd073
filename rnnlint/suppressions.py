"""Suppression comments: `# noqa`, `# noqa: RNN101`, `# rnnlint: ignore[RNN101,RNN401]`
on the reported line or on the first line of the statement that holds it, and
`# rnnlint: skip-file` anywhere in a file."""

from __future__ import annotations

import re
from typing import List, Optional, Sequence, Set

_NOQA = re.compile(r"#\s*noqa(?::\s*(?P<codes>[A-Za-z0-9_\-]+(?:\s*,\s*[A-Za-z0-9_\-]+)*))?", re.I)
_IGNORE = re.compile(r"#\s*rnnlint:\s*ignore(?:\[(?P<codes>[^\]]*)\])?", re.I)
SKIP_FILE = re.compile(r"#\s*rnnlint:\s*skip-file\b", re.I)

ALL = "*"


def codes_on_line(line: str) -> Optional[Set[str]]:
    """The codes a line's comments suppress ({"*"} for all), or None when there is no comment."""
    if "#" not in line:
        return None
    found: Set[str] = set()
    seen = False
    for pattern in (_NOQA, _IGNORE):
        for match in pattern.finditer(line):
            seen = True
            codes = match.group("codes")
            if codes is None or not codes.strip():
                found.add(ALL)
            else:
                found.update(c.strip().upper() if c.strip().upper().startswith("RNN") else c.strip().lower()
                             for c in codes.split(",") if c.strip())
    return found if seen else None


def is_suppressed(lines: Sequence[str], line_numbers: List[int], code: str, name: str) -> bool:
    for number in line_numbers:
        if 1 <= number <= len(lines):
            codes = codes_on_line(lines[number - 1])
            if codes and (ALL in codes or code in codes or name in codes):
                return True
    return False


def skips_file(text: str) -> bool:
    return "rnnlint" in text and SKIP_FILE.search(text) is not None


_LINE_END = re.compile(r"\r\n|\r|\n")


def split_lines(text: str) -> List[str]:
    """The file's lines as Python counts them: only \\n, \\r\\n and \\r end a line (str.splitlines
    also splits at form feeds and other separators, which would shift every line after them)."""
    lines = _LINE_END.split(text)
    if lines and lines[-1] == "":
        lines.pop()
    return lines
