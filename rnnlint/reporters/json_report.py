"""--format json: exactly one JSON object on stdout."""

from __future__ import annotations

import json
import sys
from typing import TextIO

from rnnlint import __version__
from rnnlint.reporters import RunResult


def as_dict(result: RunResult) -> dict:
    return {
        "version": __version__,
        "findings": [f.to_json() for f in result.findings],
        "errors": [e.to_json() for e in result.errors],
        "summary": result.summary(),
    }


def report(result: RunResult, stream: TextIO = sys.stdout, **_: object) -> None:
    json.dump(as_dict(result), stream, indent=2, sort_keys=False)
    stream.write("\n")
