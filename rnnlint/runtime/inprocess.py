"""probe(): measure a few real training steps of a model on one batch, in this process."""

from __future__ import annotations

import copy
import inspect
import random
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from rnnlint.findings import Finding
from rnnlint.runtime.evaluate import Locator, evaluate
from rnnlint.runtime.recorder import Recorder
from rnnlint.runtime.text import render
from rnnlint.runtime.thresholds import Thresholds


@dataclass
class RuntimeReport:
    measurements: Dict[str, Any]
    findings: List[Finding]
    title: str = "rnnlint runtime probe"

    def render_text(self) -> str:
        return render(self.measurements, self.findings, self.title)

    def write_plots(self, directory: str, prefix: str = "") -> List[str]:
        from rnnlint.runtime.plots import write_plots

        return write_plots(self.measurements, directory, prefix)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy

        numpy.random.seed(seed)
    except ImportError:
        pass


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _to(value: Any, device: torch.device) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, (tuple, list)):
        return type(value)(_to(v, device) for v in value)
    if isinstance(value, Mapping):
        return {k: _to(v, device) for k, v in value.items()}
    return value


def _call(model: nn.Module, inputs: Any) -> Any:
    if isinstance(inputs, Mapping):
        return model(**inputs)
    if isinstance(inputs, (tuple, list)):
        return model(*inputs)
    return model(inputs)


def _source_of(model: nn.Module) -> Tuple[str, int]:
    """Where findings point: the model's class definition, if it is the user's."""
    try:
        path = inspect.getsourcefile(type(model))
        line = inspect.getsourcelines(type(model))[1]
    except (OSError, TypeError):
        return f"<{type(model).__name__}>", 1
    if not path or type(model).__module__.startswith("torch."):
        return f"<{type(model).__name__}>", 1
    return path, line


def _train(work: nn.Module, opt: torch.optim.Optimizer, inputs: Any, targets: Any, loss_fn: Callable[[Any, Any], Any],
           steps: int, seed: int, curvature: bool, limits: Thresholds) -> Recorder:
    with Recorder(steps, seed=seed, curvature=curvature, hessian_iterations=limits.hessian_iterations,
                  scope=work) as recorder:
        recorder.track(opt)
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(_call(work, inputs), targets)
            loss.backward()
            opt.step()
    return recorder


def _read_lines(path: str) -> Optional[List[str]]:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read().splitlines()
    except OSError:
        return None


def probe(model: nn.Module, batch: Sequence[Any], loss_fn: Callable[[Any, Any], torch.Tensor],
          optimizer: Optional[torch.optim.Optimizer] = None, steps: int = 20, lr: Optional[float] = None,
          seed: int = 0, device: str = "cpu", curvature: bool = False,
          thresholds: Optional[Union[Thresholds, Mapping[str, Any]]] = None) -> RuntimeReport:
    """Train a copy of `model` for `steps` steps on `batch` = (inputs, targets) and measure it.

    The model and optimizer are deep-copied together (the copy of the optimizer keeps pointing at
    the copied parameters), so the caller's objects are left untouched. Without an optimizer,
    plain SGD with `lr` (default 1e-2) is used; with one, `lr` overrides its learning rate.
    """
    limits = Thresholds.from_any(thresholds)
    if steps < 1:
        raise ValueError("steps must be at least 1")
    seed_everything(seed)
    dev = resolve_device(device)
    work, opt = copy.deepcopy((model, optimizer))
    work.to(dev)
    if opt is None:
        opt = torch.optim.SGD(work.parameters(), lr=1e-2 if lr is None else lr)
    elif lr is not None:
        for group in opt.param_groups:
            group["lr"] = lr
    inputs, targets = _to(batch[0], dev), _to(batch[1], dev)
    work.train()
    cudnn_was = torch.backends.cudnn.enabled
    if curvature:
        torch.backends.cudnn.enabled = False  # cuDNN's RNN kernels have no double backward
    try:
        recorder = _train(work, opt, inputs, targets, loss_fn, steps, seed, curvature, limits)
    finally:
        torch.backends.cudnn.enabled = cudnn_was
    measurements = recorder.measurements()
    if not measurements["layers"]:
        raise ValueError(f"probe: no recurrent layer of {type(model).__name__} took part in the loss "
                         "(nn.RNN/LSTM/GRU, their cells, or a custom recurrence)")
    path, line = _source_of(model)
    findings = evaluate(measurements, limits, Locator(path, line, _read_lines(path)))
    return RuntimeReport(measurements, findings, title=f"rnnlint runtime probe of {type(model).__name__}")
