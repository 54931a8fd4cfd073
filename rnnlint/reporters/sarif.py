"""--format sarif: a SARIF 2.1.0 log for GitHub code scanning and other SARIF viewers.

Plain dicts, not an object model: sarif-om (the only maintained-looking SARIF object model on
PyPI, last released 2019) holds attrs classes with snake_case fields and no serializer, so it
would need a name-mapping encoder of its own and still validate nothing. The test suite checks
the output against the official OASIS 2.1.0 schema instead.

Every rule, static and runtime, is listed in tool.driver.rules; each result points at its rule
by ruleId and ruleIndex. Artifact URIs are relative to the repository root (the run's
`RunResult.root`: the git root of the first checked path, else the config root) and carry
uriBaseId %SRCROOT%; files outside that root get absolute file: URIs. partialFingerprints come
from rnnlint.fingerprint, the same function the baseline uses.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, TextIO
from urllib.parse import quote

from rnnlint import __version__
from rnnlint.findings import FileError, Finding
from rnnlint.fingerprint import FINGERPRINT_VERSION, cell_of, fingerprints, relative_path
from rnnlint.reporters import RunResult

SCHEMA_URI = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
INFORMATION_URI = "https://github.com/rnnlint/rnnlint"
# Where the rule pages live; `{code}-{name}.md` is appended (the same names as rules/).
RULE_DOC_BASE = "https://github.com/rnnlint/rnnlint/blob/main/rules/"
FINGERPRINT_KEY = f"rnnlint/{FINGERPRINT_VERSION}"
SRCROOT = "%SRCROOT%"

_LEVEL = {"error": "error", "warning": "warning", "info": "note"}


def rule_doc_url(code: str, name: str) -> str:
    return f"{RULE_DOC_BASE}{code}-{name}.md"


def _doc_text(code: str, name: str) -> Optional[str]:
    from rnnlint.cli import docs_dir

    directory = docs_dir()
    doc = directory / f"{code}-{name}.md" if directory else None
    if doc is None or not doc.is_file():
        return None
    return doc.read_text(encoding="utf-8")


def _what_it_does(doc: Optional[str]) -> Optional[str]:
    """The first paragraph of the doc's "What it does" section, as one line."""
    if not doc:
        return None
    match = re.search(r"^## What it does\n(.*?)(?:\n\s*\n|\n## |\Z)", doc, flags=re.S | re.M)
    if not match:
        return None
    text = " ".join(match.group(1).split())
    return text or None


def _rules() -> List[Dict[str, Any]]:
    from rnnlint.rules import ALL_META

    rules = []
    for m in ALL_META:
        doc = _doc_text(m.code, m.name)
        rule: Dict[str, Any] = {
            "id": m.code,
            "name": m.name,
            "shortDescription": {"text": m.summary},
            "fullDescription": {"text": _what_it_does(doc) or m.summary},
            "helpUri": rule_doc_url(m.code, m.name),
            "defaultConfiguration": {"level": _LEVEL[m.severity.value]},
            "properties": {"tags": ["rnn", m.mode, *m.frameworks], "severity": m.severity.value},
        }
        if doc:
            rule["help"] = {"text": doc, "markdown": doc}
        rules.append(rule)
    return rules


def _artifact(path: str, root: Path) -> Dict[str, Any]:
    rel = relative_path(path, root)
    if rel is not None:
        return {"uri": quote(rel), "uriBaseId": SRCROOT}
    return {"uri": Path(path).resolve().as_uri()}


def _region(line: int, column: int, end_line: int, end_column: int) -> Optional[Dict[str, Any]]:
    if line < 1:
        return None
    region: Dict[str, Any] = {"startLine": line}
    if column >= 1:
        region["startColumn"] = column
    if end_line >= line:
        region["endLine"] = end_line
        if end_column >= 1 and (end_line > line or end_column >= column):
            region["endColumn"] = end_column
    return region


def _location(path: str, root: Path, region: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    physical: Dict[str, Any] = {"artifactLocation": _artifact(path, root)}
    if region:
        physical["region"] = region
    return {"physicalLocation": physical}


def _result(f: Finding, index: Dict[str, int], fingerprint: str, root: Path) -> Dict[str, Any]:
    cell = cell_of(f)
    message = f.message if cell is None else f"{f.message} (notebook cell {cell})"
    result: Dict[str, Any] = {
        "ruleId": f.code,
        "level": _LEVEL[f.severity.value],
        "message": {"text": message},
        "locations": [_location(f.path, root, _region(f.line, f.column, f.end_line, f.end_column))],
        "partialFingerprints": {FINGERPRINT_KEY: fingerprint},
    }
    if f.code in index:
        result["ruleIndex"] = index[f.code]
    if cell is not None:
        result["properties"] = {"cell": cell}
    return result


def _notification(e: FileError, root: Path) -> Dict[str, Any]:
    return {
        "level": "error",
        "message": {"text": f"{e.path}: {e.message}"},
        "locations": [_location(e.path, root, _region(e.line, e.column, e.line, 0))],
        "properties": {"kind": e.kind},
    }


def _directory_uri(root: Path) -> str:
    uri = root.as_uri()
    return uri if uri.endswith("/") else uri + "/"


def as_dict(result: RunResult) -> Dict[str, Any]:
    root = Path(result.root or ".").resolve()
    rules = _rules()
    index = {rule["id"]: i for i, rule in enumerate(rules)}
    prints = fingerprints(result.findings, root)
    run: Dict[str, Any] = {
        "tool": {
            "driver": {
                "name": "rnnlint",
                "version": __version__,
                "semanticVersion": __version__,
                "informationUri": INFORMATION_URI,
                "rules": rules,
            }
        },
        "originalUriBaseIds": {SRCROOT: {"uri": _directory_uri(root)}},
        "columnKind": "unicodeCodePoints",
        "invocations": [
            {
                "executionSuccessful": not result.errors,
                "toolExecutionNotifications": [_notification(e, root) for e in result.errors],
            }
        ],
        "results": [_result(f, index, fp, root) for f, fp in zip(result.findings, prints)],
    }
    return {"$schema": SCHEMA_URI, "version": "2.1.0", "runs": [run]}


def report(result: RunResult, stream: TextIO = sys.stdout, **_: object) -> None:
    json.dump(as_dict(result), stream, indent=2)
    stream.write("\n")
