"""The one entry point the CLI calls for `rnnlint check --runtime SCRIPT [-- ARGS]`.

Importing this module is cheap and torch-free: the parent process only starts children and
reads their JSON; torch is needed in the child, so its presence is checked here first.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any, List, Mapping, Optional, Tuple

from rnnlint.findings import FileError, Finding

INSTALL_HINT = "runtime mode needs torch (and matplotlib for --plots): pip install 'rnnlint[runtime]'"


def _torch_available() -> bool:
    # find_spec, not import: the parent has no use for torch and importing it costs seconds.
    return importlib.util.find_spec("torch") is not None


def default_memory_limit_mb() -> int:
    """Half of the machine's physical memory (0, no limit, where it cannot be read)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            total_kb = next(int(line.split()[1]) for line in fh if line.startswith("MemTotal:"))
    except (OSError, StopIteration, ValueError):
        return 0
    return total_kb // 2048


def run_for_cli(paths: List[str], script_args: List[str], *, steps: int = 20, timeout: float = 120.0,
                device: str = "auto", seed: int = 0, curvature: bool = False, plots_dir: Optional[str] = None,
                thresholds: Optional[Mapping[str, Any]] = None,
                memory_limit_mb: Optional[int] = None) -> Tuple[List[Finding], List[FileError], str]:
    """Probe each script; return its findings, its file errors and the text report.
    memory_limit_mb: None for default_memory_limit_mb(), 0 for no limit."""
    if memory_limit_mb is None:
        memory_limit_mb = default_memory_limit_mb()
    if not _torch_available():
        return [], [FileError(p, INSTALL_HINT, kind="runtime") for p in paths], ""
    from rnnlint.runtime.script import run_script

    findings: List[Finding] = []
    errors: List[FileError] = []
    texts: List[str] = []
    for path in paths:
        if os.path.isdir(path):
            errors.append(FileError(path, "runtime mode runs one training script per path, not a directory",
                                    kind="runtime"))
            continue
        try:
            result = run_script(path, script_args, steps=steps, timeout=timeout, device=device, seed=seed,
                                curvature=curvature, plots_dir=plots_dir, thresholds=thresholds,
                                memory_limit_mb=memory_limit_mb or None)
        except ValueError as exc:  # bad threshold options
            errors.append(FileError(path, str(exc), kind="config"))
            continue
        findings.extend(result.findings)
        errors.extend(result.errors)
        texts.append(result.text)
    return findings, errors, "\n\n".join(t for t in texts if t)
