"""Which files a run checks."""

from __future__ import annotations

import errno
import fnmatch
import os
from pathlib import Path
from typing import Iterator, List, Sequence, Tuple

SKIP_DIRS = frozenset(
    {
        ".git", ".hg", ".svn", ".venv", "venv", ".env", "__pycache__", "build", "dist",
        "site-packages", "node_modules", ".tox", ".nox", ".mypy_cache", ".pytest_cache",
        ".ruff_cache", ".eggs", ".rnnlint_cache", ".ipynb_checkpoints",
    }
)
EXTENSIONS = (".py", ".ipynb")


def _excluded(rel: str, name: str, patterns: Sequence[str]) -> bool:
    for pattern in patterns:
        pattern = pattern.rstrip("/")
        if fnmatch.fnmatch(rel, pattern) or fnmatch.fnmatch(name, pattern) or fnmatch.fnmatch(rel, pattern + "/*"):
            return True
    return False


def _is_virtualenv(path: str) -> bool:
    return os.path.isfile(os.path.join(path, "pyvenv.cfg"))


def discover(paths: Sequence[str], root: Path, excludes: Sequence[str]) -> Tuple[List[str], List[str]]:
    """(files to check, paths that do not exist). Explicit files are always checked."""
    files: List[str] = []
    missing: List[str] = []
    seen = set()
    root_text = str(root.resolve())
    for given in paths:
        if os.path.isfile(given):
            if given not in seen:
                seen.add(given)
                files.append(given)
        elif os.path.isdir(given):
            for found in _walk(given, root_text, excludes):
                if found not in seen:
                    seen.add(found)
                    files.append(found)
        else:
            missing.append(given)
    return files, missing


def _walk(top: str, root: str, excludes: Sequence[str]) -> Iterator[str]:
    # os.walk does not follow directory symlinks, so symlink loops cannot trap it.
    for dirpath, dirnames, filenames in os.walk(top, onerror=None):
        keep = []
        for d in sorted(dirnames):
            full = os.path.join(dirpath, d)
            rel = _rel(full, root)
            if d in SKIP_DIRS or d.endswith(".egg-info") or _is_virtualenv(full) or _excluded(rel, d, excludes):
                continue
            keep.append(d)
        dirnames[:] = keep
        for name in sorted(filenames):
            if not name.endswith(EXTENSIONS):
                continue
            full = os.path.join(dirpath, name)
            if _excluded(_rel(full, root), name, excludes):
                continue
            yield os.path.normpath(full)


def _rel(path: str, root: str) -> str:
    absolute = os.path.abspath(path)
    if absolute.startswith(root + os.sep):
        return absolute[len(root) + 1:].replace(os.sep, "/")
    return path.replace(os.sep, "/")


def missing_reason(path: str) -> str:
    """Why a path named on the command line cannot be checked (it is neither file nor directory)."""
    if os.path.islink(path):
        try:
            os.stat(path)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return "symbolic link loop: the link leads back to itself"
            if exc.errno == errno.ENOENT:
                return f"broken symbolic link: its target {os.readlink(path)!r} does not exist"
            return f"cannot follow symbolic link: {exc.strerror or exc}"
    if os.path.lexists(path):
        return "not a regular file or directory"
    return "no such file or directory"
