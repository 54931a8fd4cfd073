"""A stamp of this rnnlint build: its version plus the size and mtime of its own static-path
modules. The cache keys on it, so an edited or reinstalled rnnlint never answers from entries
an older build wrote, and the client finds only a server of its own build. Standard library
only, without pathlib: the server client computes it before anything else is imported.
"""

from __future__ import annotations

import hashlib
import os

from rnnlint import __version__

_FOLDERS = ("", "analysis", "rules", "reporters")
_MEMO: dict = {}


def stamp(schema: int = 1) -> str:
    """The stamp, computed once per process."""
    if schema not in _MEMO:
        _MEMO[schema] = compute(schema)
    return _MEMO[schema]


def compute(schema: int = 1) -> str:
    """The stamp from the files on disk now (a running server compares it with its own)."""
    package = os.path.dirname(os.path.abspath(__file__))
    parts = [f"rnnlint {__version__} schema {schema}"]
    for sub in _FOLDERS:
        folder = os.path.join(package, sub) if sub else package
        try:
            names = sorted(os.listdir(folder))
        except OSError:
            continue
        for name in names:
            if name.endswith(".py"):
                try:
                    info = os.stat(os.path.join(folder, name))
                except OSError:
                    continue
                parts.append(f"{sub or 'rnnlint'}/{name}:{info.st_size}:{info.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()
