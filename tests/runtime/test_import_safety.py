"""The static path never imports torch; the runtime package and its bridge are torch-free to import."""

from __future__ import annotations

import subprocess
import sys


def test_runtime_package_and_bridge_do_not_import_torch():
    code = ("import sys, rnnlint.runtime, rnnlint.runtime.cli_bridge, rnnlint.runtime.script, "
            "rnnlint.runtime.evaluate, rnnlint.runtime.text, rnnlint.runtime.plots, rnnlint.runtime.thresholds; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
