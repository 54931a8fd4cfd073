"""`rnnlint check --runtime` joins measured findings to the static ones."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[2]


def test_runtime_confirms_static_no_clipping():
    proc = subprocess.run(
        [sys.executable, "-m", "rnnlint", "check", "--no-config", "--format", "json", "--runtime",
         "--steps", "5", "--timeout", "90", "fixtures/runtime/explode_rnn.py"],
        cwd=str(ROOT), capture_output=True, text=True, timeout=180,
    )
    data = json.loads(proc.stdout)
    codes = {f["code"]: f for f in data["findings"]}
    assert "RNN901" in codes and "RNN101" in codes, proc.stderr
    assert codes["RNN101"]["message"].endswith("(confirmed at runtime: RNN901)")
    assert proc.returncode == 1
