"""rnnlint's runtime mode: confirm static suspicions by measuring a few real training steps.

    from rnnlint.runtime import probe, run_script

Names are resolved lazily (PEP 562): importing this package costs nothing and never imports
torch, so the CLI bridge can report a missing torch instead of failing on import. ``probe``
needs torch in this process; ``run_script`` needs it only in the child process it starts.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "probe": "rnnlint.runtime.inprocess",
    "RuntimeReport": "rnnlint.runtime.inprocess",
    "run_script": "rnnlint.runtime.script",
    "ScriptResult": "rnnlint.runtime.script",
    "Thresholds": "rnnlint.runtime.thresholds",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'rnnlint.runtime' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
