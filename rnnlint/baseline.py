"""Baselines: record today's findings so that only new ones fail CI.

`rnnlint check --baseline rnnlint-baseline.json --write-baseline .` records every finding as
(code, path relative to the repository root, fingerprint); `rnnlint check --baseline
rnnlint-baseline.json .` then drops the findings the file records, from the report and from the
exit code. The fingerprint is rnnlint.fingerprint's (the reported line's normalised text, not its
number), so moving code around does not resurrect old findings, while editing the flagged line
does. Entries match as a multiset: two recorded findings cover at most two identical findings.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

from rnnlint import __version__
from rnnlint.findings import Finding
from rnnlint.fingerprint import FINGERPRINT_VERSION, fingerprints, identity, identity_of_path

FORMAT = "rnnlint-baseline"
FORMAT_VERSION = 1

Key = Tuple[str, str, str]


class BaselineError(Exception):
    """A baseline file that is missing or cannot be used (exit code 2)."""


def _keys(findings: Sequence[Finding], root: Path) -> List[Key]:
    return [(f.code, identity(f, root), fp) for f, fp in zip(findings, fingerprints(findings, root))]


def write_baseline(path: str, findings: Sequence[Finding], root: Path) -> int:
    """Write the baseline file; returns how many findings it records."""
    entries: List[Dict[str, Any]] = []
    pairs = sorted(zip(findings, _keys(findings, root)), key=lambda p: (p[1][1], p[0].line, p[1][0], p[1][2]))
    for f, (code, rel, fp) in pairs:
        # line and message are for people reading the file; matching ignores them.
        entries.append({"code": code, "path": rel, "fingerprint": fp, "line": f.line, "message": f.message})
    data = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "fingerprint": FINGERPRINT_VERSION,
        "rnnlint": __version__,
        "findings": entries,
    }
    try:
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2)
            handle.write("\n")
    except OSError as exc:
        raise BaselineError(f"cannot write baseline {path}: {exc.strerror or exc}") from exc
    return len(entries)


def load_baseline(path: str) -> "Counter[Key]":
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        raise BaselineError(f"baseline file {path} does not exist (create it with --write-baseline)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BaselineError(f"cannot read baseline {path}: {getattr(exc, 'strerror', None) or exc}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BaselineError(f"{path}:{exc.lineno}:{exc.colno}: baseline is not valid JSON: {exc.msg}") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("findings"), list):
        raise BaselineError(f"{path}: not an rnnlint baseline (expected {{\"format\": \"{FORMAT}\", \"findings\": [...]}})")
    if data.get("version") != FORMAT_VERSION:
        raise BaselineError(f"{path}: baseline format version {data.get('version')!r} is not supported (expected {FORMAT_VERSION})")
    if data.get("fingerprint", FINGERPRINT_VERSION) != FINGERPRINT_VERSION:
        raise BaselineError(
            f"{path}: fingerprints are {data.get('fingerprint')!r}, this rnnlint computes {FINGERPRINT_VERSION!r}; "
            "rewrite it with --write-baseline"
        )
    keys: "Counter[Key]" = Counter()
    for number, entry in enumerate(data["findings"]):
        if not (isinstance(entry, dict) and all(isinstance(entry.get(k), str) for k in ("code", "path", "fingerprint"))):
            raise BaselineError(f"{path}: findings[{number}] needs string 'code', 'path' and 'fingerprint'")
        keys[(entry["code"], entry["path"], entry["fingerprint"])] += 1
    return keys


def apply_baseline(
    findings: Sequence[Finding], baseline: "Counter[Key]", root: Path, checked: Sequence[str] = ()
) -> Tuple[List[Finding], int, int]:
    """(findings not in the baseline, how many were dropped, entries for the `checked` files
    that matched nothing: findings fixed since the baseline was written)."""
    remaining = Counter(baseline)
    kept: List[Finding] = []
    for f, key in zip(findings, _keys(findings, root)):
        if remaining[key] > 0:
            remaining[key] -= 1
        else:
            kept.append(f)
    dropped = len(findings) - len(kept)
    checked_paths = {identity_of_path(p, root) for p in checked}
    fixed = sum(n for (_, rel, _), n in remaining.items() if rel in checked_paths)
    return kept, dropped, fixed
