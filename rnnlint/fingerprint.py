"""Where a run's paths are relative to, and fingerprints that survive unrelated edits.

SARIF's partialFingerprints and the baseline file share `fingerprints()`: a finding is
identified by its code, its path relative to the repository root and the whitespace-normalised
text of the line it points at, never by its line number. Lines inserted or removed above a
finding therefore leave its fingerprint alone. Identical lines flagged with the same code in one
file are told apart by an occurrence counter in line order (`<hash>:0`, `<hash>:1`, ...).
For a notebook finding the line is read inside its cell and the cell number is not hashed, so
cells inserted above keep it too. With no readable line, the message (line numbers masked) is used.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from rnnlint.findings import Finding

# Bump only when the algorithm changes: every stored fingerprint changes with it.
FINGERPRINT_VERSION = "v1"

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_SPACE = re.compile(r"\s+")
_LINE_REF = re.compile(r"\blines? \d+(?:(?:, | and | to |-)\d+)*")


def find_root(targets: Sequence[str], fallback: Path) -> Path:
    """The git root of the first checked path (a `.git` directory or file on the way up);
    `fallback` (the config root) when the path is in no git repository."""
    start = Path(os.path.realpath(targets[0] if targets else "."))  # never raises on a symlink loop
    directory = start if start.is_dir() else start.parent
    for candidate in (directory, *directory.parents):
        if (candidate / ".git").exists():
            return candidate
    return fallback.resolve()


def relative_path(path: str, root: Path) -> Optional[str]:
    """`path` as a POSIX path relative to `root`, or None when it lies outside it."""
    absolute = os.path.abspath(path)
    try:
        rel = os.path.relpath(absolute, str(root))
    except ValueError:  # another drive on Windows
        return None
    if rel == os.pardir or rel.startswith(os.pardir + os.sep):
        return None
    return Path(rel).as_posix()


def cell_of(finding: Finding) -> Optional[int]:
    """The notebook cell a finding is in, when a notebook front end set one."""
    cell = getattr(finding, "cell", None)
    if cell is None:
        cell = finding.extra.get("cell")
    return cell if isinstance(cell, int) and not isinstance(cell, bool) else None


def _read(path: str) -> Optional[str]:
    try:
        from rnnlint.engine import read_source

        return read_source(path)
    except Exception:  # noqa: BLE001 - an unreadable file falls back to the message
        return None


def _lines_of(finding: Finding, cache: Dict[Tuple[str, Optional[int]], Optional[List[str]]]) -> Optional[List[str]]:
    """The lines `finding.line` counts: the file's, or for a notebook finding its cell's."""
    cell = cell_of(finding)
    key = (finding.path, cell)
    if key not in cache:
        text = _read(finding.path)
        if text is None:
            cache[key] = None
        elif cell is not None:
            from rnnlint.notebooks import cell_lines

            cache[key] = cell_lines(text, cell) or None
        elif finding.path.endswith(".ipynb"):
            cache[key] = None  # raw notebook JSON lines are not the lines a finding counts
        else:
            cache[key] = _LINE_BREAK.split(text)
    return cache[key]


def _context(finding: Finding, lines: Optional[List[str]]) -> str:
    """The normalised text a fingerprint hashes: the reported line, else the message.
    A notebook cell's number is left out, so inserting cells above keeps fingerprints."""
    if lines is not None and 1 <= finding.line <= len(lines):
        text = _SPACE.sub(" ", lines[finding.line - 1]).strip()
        if text:
            return "line:" + text
    # No source line: the message, with the line numbers it may name masked out.
    message = _LINE_REF.sub("line #", finding.message)
    return "message:" + _SPACE.sub(" ", message).strip()


def identity_of_path(path: str, root: Path) -> str:
    """The path a fingerprint and a baseline entry use: relative to root when inside it."""
    rel = relative_path(path, root)
    return rel if rel is not None else Path(os.path.abspath(path)).as_posix()


def identity(finding: Finding, root: Path) -> str:
    return identity_of_path(finding.path, root)


def fingerprints(findings: Sequence[Finding], root: Path) -> List[str]:
    """One fingerprint per finding, in the order given: `<32 hex digits>:<occurrence>`."""
    sources: Dict[Tuple[str, Optional[int]], Optional[List[str]]] = {}
    hashes: List[Tuple[str, Tuple[int, int, int, int]]] = []
    for index, f in enumerate(findings):
        digest = hashlib.sha256()
        for part in (FINGERPRINT_VERSION, f.code, identity(f, root), _context(f, _lines_of(f, sources))):
            digest.update(part.encode("utf-8", "surrogatepass"))
            digest.update(b"\x00")
        hashes.append((digest.hexdigest()[:32], (cell_of(f) or 0, f.line, f.column, index)))
    # Occurrence counters follow line order whatever order the findings came in.
    seen: Dict[str, int] = {}
    out = [""] * len(findings)
    for index in sorted(range(len(findings)), key=lambda i: hashes[i][1]):
        digest = hashes[index][0]
        count = seen.get(digest, 0)
        seen[digest] = count + 1
        out[index] = f"{digest}:{count}"
    return out
