"""The content cache: a file's findings, keyed by everything that can change them.

A key is the SHA-256 of: rnnlint's version and cache schema, the effective configuration,
the file's path (per-file-ignores and the reported path depend on it), its bytes, and the
summaries of the checked files it imports (whole-project facts). An entry is one small JSON
file, written to a temporary name and renamed into place, so a reader never sees half an
entry and two processes sharing the directory cannot corrupt it: the worst case is that both
compute the same entry and one rename wins. An entry that does not parse, belongs to another
key or another schema is ignored and rebuilt. A directory that cannot be written turns the
cache off for the run, with one warning.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from rnnlint.build import stamp
from rnnlint.findings import FileError, Finding, Severity

SCHEMA = 1
DEFAULT_DIR = ".rnnlint_cache"
_TAG = "CACHEDIR.TAG"
_TAG_TEXT = (
    "Signature: 8a477f597d28d172789f06886806bc55\n"
    "# This file is a cache directory tag created by rnnlint.\n"
    "# For information about cache directory tags see https://bford.info/cachedir/\n"
)


def cache_dir_for(root: Path, configured: Optional[str], override: Optional[str]) -> Path:
    """--cache-dir, then RNNLINT_CACHE_DIR, then `cache-dir` in the config (relative to the
    config's directory), then .rnnlint_cache/ next to the config (or in the working directory)."""
    chosen = override or os.environ.get("RNNLINT_CACHE_DIR") or configured
    if chosen:
        path = Path(chosen).expanduser()
        return path if path.is_absolute() else (root / path if configured == chosen else Path.cwd() / path)
    return root / DEFAULT_DIR


def build_id() -> str:
    """The stamp of this rnnlint build (rnnlint.build), with the cache schema in it."""
    return stamp(SCHEMA)


def make_key(*parts: str) -> str:
    digest = hashlib.sha256()
    digest.update(build_id().encode())
    for part in parts:
        data = part.encode("utf-8", "surrogatepass")
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Cache:
    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.entries = self.directory / f"v{SCHEMA}"
        self.enabled = True
        self.warning: Optional[str] = None
        self.hits = 0
        self.misses = 0
        self._prepared = False

    # -- reading ------------------------------------------------------------------

    def _path(self, key: str) -> Path:
        return self.entries / key[:2] / f"{key}.json"

    def get(self, key: str) -> Optional[Dict[str, Any]]:
        if not self.enabled:
            return None
        try:
            with open(self._path(key), "rb") as handle:
                payload = json.loads(handle.read())
            if not isinstance(payload, dict) or payload.get("key") != key or payload.get("schema") != SCHEMA:
                return None
            data = payload["data"]
            _validate(data)
        except (OSError, ValueError, KeyError, TypeError):
            self.misses += 1
            return None
        self.hits += 1
        return data

    # -- writing ------------------------------------------------------------------

    def _prepare(self) -> bool:
        if self._prepared:
            return self.enabled
        self._prepared = True
        try:
            self.entries.mkdir(parents=True, exist_ok=True)
            tag = self.directory / _TAG
            if not tag.exists():
                _atomic_write(tag, _TAG_TEXT.encode())
            ignore = self.directory / ".gitignore"
            if not ignore.exists():
                _atomic_write(ignore, b"# Created by rnnlint; the cache is local to this machine.\n*\n")
        except OSError as exc:
            self._disable(f"cannot write the cache directory {self.directory} ({exc.strerror or exc}); running without cache")
        return self.enabled

    def put(self, key: str, data: Dict[str, Any]) -> None:
        if not self.enabled or not self._prepare():
            return
        path = self._path(key)
        payload = json.dumps({"schema": SCHEMA, "key": key, "data": data}, separators=(",", ":"))
        try:
            path.parent.mkdir(exist_ok=True)
            _atomic_write(path, payload.encode("utf-8", "surrogatepass"))
        except OSError as exc:
            self._disable(f"cannot write the cache directory {self.directory} ({exc.strerror or exc}); running without cache")

    def _disable(self, message: str) -> None:
        self.enabled = False
        if self.warning is None:
            self.warning = message
            print(f"rnnlint: warning: {message}", file=sys.stderr)


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=str(path.parent), prefix=".tmp-", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _validate(data: Any) -> None:
    if not isinstance(data, dict):
        raise TypeError("entry")
    for key in ("findings", "errors"):
        if not isinstance(data.get(key), list):
            raise TypeError(key)
    summary = data.get("summary")
    if summary is not None and not isinstance(summary, dict):
        raise TypeError("summary")


def encode_result(findings: List[Finding], errors: List[FileError], summary: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    return {
        "findings": [
            [f.line, f.column, f.end_line, f.end_column, f.code, f.name, f.severity.value, f.message, f.extra, f.cell]
            for f in findings
        ],
        "errors": [[e.message, e.line, e.column, e.kind] for e in errors],
        "summary": summary,
    }


def decode_result(path: str, data: Dict[str, Any]) -> Tuple[List[Finding], List[FileError], Optional[Dict[str, Any]]]:
    findings = [
        Finding(path, int(line), int(col), int(eline), int(ecol), str(code), str(name), Severity(sev), str(msg),
                dict(extra), None if cell is None else int(cell))
        for line, col, eline, ecol, code, name, sev, msg, extra, cell in data["findings"]
    ]
    errors = [FileError(path, str(msg), int(line), int(col), str(kind)) for msg, line, col, kind in data["errors"]]
    return findings, errors, data.get("summary")


def clean(directory: Path) -> bool:
    """Remove a cache directory rnnlint made (it carries the tag). False if there was none."""
    if not directory.is_dir():
        return False
    if not (directory / _TAG).is_file() and not (directory / f"v{SCHEMA}").is_dir():
        raise OSError(f"{directory} does not look like an rnnlint cache; not removing it")
    shutil.rmtree(directory)
    return True
