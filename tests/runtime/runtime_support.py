"""Shared helpers of the runtime tests (a plain module: the tests import it by name)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Dict, Tuple

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "runtime"
BROKEN = FIXTURES / "broken"
SPARK = set("▁▂▃▄▅▆▇█")


def load_models() -> ModuleType:
    """fixtures/runtime/models.py, imported under a name no other test uses."""
    name = "rnnlint_runtime_fixture_models"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, FIXTURES / "models.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def probe_case(name: str, **overrides: Any) -> Tuple[Any, Dict[str, Any]]:
    """Build a fixture case and probe it; returns (report, case)."""
    from rnnlint.runtime import probe

    case = load_models().CASES[name]()
    kwargs = dict(case["probe"])
    factory = kwargs.pop("optimizer_factory", None)
    if factory is not None:
        kwargs["optimizer"] = factory(case["model"])
    kwargs.update(overrides)
    return probe(case["model"], case["batch"], case["loss_fn"], **kwargs), case


def line_of(path: Path, text: str) -> int:
    """1-based line of the first line of `path` containing `text`."""
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if text in line:
            return number
    raise AssertionError(f"{text!r} not in {path}")


def quiet_env() -> None:
    """The in-process probes train tiny models: on a small shared CPU intra-op threads only add
    contention, so the test process uses one. Script children keep the product's defaults."""
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(1)
