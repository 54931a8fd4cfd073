from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import List, Optional


from rnnlint.config import Config
from rnnlint.engine import check_source

ROOT = Path(__file__).resolve().parent.parent


def lint(source: str, path: str = "snippet.py", config: Optional[Config] = None):
    """Findings for a source snippet (dedented), with no config file involved."""
    result = check_source(path, textwrap.dedent(source), config or Config())
    assert not result.errors, result.errors
    return result.findings


def codes(source: str, **kwargs) -> List[str]:
    return [f.code for f in lint(source, **kwargs)]


def code_lines(source: str, code: str) -> List[int]:
    return [f.line for f in lint(source) if f.code == code]


def run_cli(*args: str, cwd: Optional[Path] = None, input: Optional[str] = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rnnlint", *args],
        cwd=str(cwd or ROOT),
        capture_output=True,
        text=True,
        input=input,
        timeout=300,
    )


