"""Global torch hooks that measure real training steps, for probe() and for script mode alike.

Hooks: every module forward (recurrent captures, first non-finite output), every backward call
(the loss, the Hessian probe), every optimizer step (gradient norms, weight movement, the
step count). Everything the recorder does itself runs with the hooks muted, and every hook body
is guarded: a measurement that fails must never break the user's training loop.
"""

from __future__ import annotations

import math
import os
import sys
import time
import weakref
from typing import Any, Callable, Dict, List, Optional

import torch
from torch import Tensor, nn
from torch.nn.modules import module as module_hooks
from torch.optim import optimizer as optimizer_hooks

from rnnlint.runtime.capture import CustomRecurrence, LayerProbe, is_custom_candidate, probe_class
from rnnlint.runtime.cells import kind_of
from rnnlint.runtime.curvature import top_hessian_eigenvalue

MAX_NAMED_PARAMS = 64  # per-parameter gradient series kept in the measurements
MAX_SNAPSHOT = 50_000_000  # elements; bigger models skip the weight-movement measure

# os.register_at_fork cannot be undone, so one hook serves whichever recorder is active.
_ACTIVE: List["Recorder"] = []
_FORK_HOOKED = False


def _count_fork() -> None:
    for recorder in _ACTIVE:
        if not recorder._muted():
            recorder.forks += 1


def _tensors(value: Any) -> List[Tensor]:
    """Tensors in a module output, one level of nesting deep (LSTM returns (out, (h, c)))."""
    if isinstance(value, Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in _tensors(v)] if len(value) < 64 else []
    return []


def _first_bad(tensors: List[Tensor]) -> Optional[str]:
    for t in tensors:
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            return "nan" if bool(torch.isnan(t).any()) else "inf"
    return None


class Recorder:
    def __init__(self, steps: int, *, seed: int = 0, curvature: bool = False, hessian_iterations: int = 20,
                 scope: Optional[nn.Module] = None, script_path: Optional[str] = None,
                 on_step: Optional[Callable[[int], None]] = None) -> None:
        self.steps = steps
        self.seed = seed
        self.curvature_enabled = curvature
        self.hessian_iterations = hessian_iterations
        self.scope = set(scope.modules()) if scope is not None else None
        self.script_path = os.path.abspath(script_path) if script_path else None
        self.on_step = on_step
        self.step = 0
        self.losses: List[Optional[float]] = []
        self.grad_norms: List[float] = []
        self.param_norms: Dict[str, List[float]] = {}
        self.nonfinite: Optional[Dict[str, Any]] = None
        self.curvature: Optional[Dict[str, Any]] = None
        self.optimizer_info: Optional[Dict[str, Any]] = None
        self.internal_errors: List[str] = []
        self.probes: Dict[nn.Module, LayerProbe] = {}
        self.forks = 0
        self._pending_losses: List[float] = []
        self._names: "weakref.WeakKeyDictionary[nn.Module, str]" = weakref.WeakKeyDictionary()
        self._lines: "weakref.WeakKeyDictionary[nn.Module, int]" = weakref.WeakKeyDictionary()
        self._param_names: Dict[int, str] = {}
        self._roots: List[nn.Module] = []
        self._not_custom: "weakref.WeakSet[nn.Module]" = weakref.WeakSet()
        self._optimizers: List["weakref.ref[torch.optim.Optimizer]"] = []  # in construction order
        self._snapshot: Optional[List[tuple]] = None
        self._depth = 0
        self._forward_id = 0
        self._busy = False
        self._pid = os.getpid()
        self._handles: List[Any] = []
        self._restore: List[Callable[[], None]] = []
        self._started = time.perf_counter()

    # ---- installation -------------------------------------------------------------------
    def __enter__(self) -> "Recorder":
        self._handles = [
            module_hooks.register_module_forward_pre_hook(self._pre_forward),
            module_hooks.register_module_forward_hook(self._post_forward, with_kwargs=True, always_call=True),
            optimizer_hooks.register_optimizer_step_pre_hook(self._pre_step),
            optimizer_hooks.register_optimizer_step_post_hook(self._post_step),
        ]
        self._patch(torch.autograd, "backward", self._wrap_backward)
        self._patch(torch.optim.Optimizer, "__init__", self._wrap_optimizer_init)
        if self.script_path:
            self._patch(nn.Module, "__init__", self._wrap_module_init)
        global _FORK_HOOKED
        if hasattr(os, "register_at_fork") and not _FORK_HOOKED:
            os.register_at_fork(before=_count_fork)
            _FORK_HOOKED = True
        _ACTIVE.append(self)
        return self

    def __exit__(self, *exc: Any) -> None:
        for handle in self._handles:
            handle.remove()
        for undo in reversed(self._restore):
            undo()
        self._handles, self._restore = [], []
        if self in _ACTIVE:
            _ACTIVE.remove(self)

    def _patch(self, owner: Any, name: str, wrap: Callable[[Any], Any]) -> None:
        original = owner.__dict__[name] if name in owner.__dict__ else getattr(owner, name)
        setattr(owner, name, wrap(original))
        self._restore.append(lambda: setattr(owner, name, original))

    def track(self, opt: torch.optim.Optimizer) -> None:
        """Remember an optimizer (those built before the recorder was installed are not seen)."""
        if not any(ref() is opt for ref in self._optimizers):
            self._optimizers.append(weakref.ref(opt))

    def _muted(self) -> bool:
        return self._busy or os.getpid() != self._pid

    def _guard(self, what: str, fn: Callable[..., Any], *args: Any) -> Any:
        """Run a measurement with hooks muted; a failure is noted, never raised into user code."""
        self._busy = True
        try:
            return fn(*args)
        except Exception as exc:  # noqa: BLE001
            self.internal_errors.append(f"{what}: {type(exc).__name__}: {exc}")
            return None
        finally:
            self._busy = False

    # ---- wrappers ----------------------------------------------------------------------------
    def _wrap_backward(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def backward(tensors: Any, *args: Any, **kwargs: Any) -> Any:
            if not self._muted():
                self._guard("loss", self._on_backward, tensors)
            return original(tensors, *args, **kwargs)

        return backward

    def _wrap_optimizer_init(self, original: Callable[..., Any]) -> Callable[..., Any]:
        recorder = self

        def __init__(opt: Any, *args: Any, **kwargs: Any) -> None:
            original(opt, *args, **kwargs)
            recorder.track(opt)

        return __init__

    def _wrap_module_init(self, original: Callable[..., Any]) -> Callable[..., Any]:
        recorder = self

        def __init__(mod: Any, *args: Any, **kwargs: Any) -> None:
            original(mod, *args, **kwargs)
            # The innermost frame in the script: `self.rnn = nn.LSTM(...)`, or the
            # super().__init__() of a custom recurrence.
            frame = sys._getframe(1)
            while frame is not None and frame.f_code.co_filename != recorder.script_path:
                frame = frame.f_back
            if frame is not None and mod not in recorder._lines:
                recorder._lines[mod] = frame.f_lineno

        return __init__

    # ---- module hooks -----------------------------------------------------------------------
    def _in_scope(self, module: nn.Module) -> bool:
        return self.scope is None or module in self.scope

    def _pre_forward(self, module: nn.Module, args: Any) -> None:
        if self._muted() or not self._in_scope(module):
            return
        if self._depth == 0:
            self._forward_id += 1
            if not any(module is root for root in self._roots):
                self._guard("names", self._register_root, module)
        self._depth += 1

    def _register_root(self, root: nn.Module) -> None:
        self._roots.append(root)
        for qual, mod in root.named_modules():
            if mod not in self._names:
                self._names[mod] = qual or type(mod).__name__
        for qual, param in root.named_parameters():
            self._param_names.setdefault(id(param), qual)

    def _post_forward(self, module: nn.Module, args: Any, *rest: Any) -> None:
        # (kwargs, output) normally; after a forward raised, torch calls always-call hooks with
        # (args, None) only, even when they were registered with_kwargs.
        if self._muted() or not self._in_scope(module):
            return
        self._depth = max(0, self._depth - 1)
        kwargs, output = (rest[0], rest[1]) if len(rest) == 2 else ({}, rest[-1])
        if output is None:
            return  # the forward raised
        if self.nonfinite is None:
            self._guard("non-finite check", self._check_output, module, args, output)
        if torch.is_grad_enabled():
            self._guard("capture", self._capture, module, args, kwargs, output)

    def _check_output(self, module: nn.Module, args: Any, output: Any) -> None:
        value = _first_bad(_tensors(output))
        if value is None:
            return
        self.nonfinite = {
            "where": "output", "value": value, "step": self.step, "module": self._name(module),
            "module_type": type(module).__name__, "input_nonfinite": _first_bad(_tensors(args)) is not None,
            "layer": self._name(module) if probe_class(module) else None,
        }

    def _capture(self, module: nn.Module, args: Any, kwargs: Any, output: Any) -> None:
        probe = self.probes.get(module)
        if probe is None:
            cls = probe_class(module)
            if cls is None:
                if module in self._not_custom or not is_custom_candidate(module, args, output):
                    self._not_custom.add(module)
                    return
                cls = CustomRecurrence
            probe = cls(module, self._name(module), kind_of(module) or "custom", self._lines.get(module))
            self.probes[module] = probe
        if probe.result is None and not probe.rejected:
            probe.arm(tuple(args), dict(kwargs or {}), output, self._forward_id)

    def _name(self, module: nn.Module) -> str:
        return self._names.get(module) or type(module).__name__

    # ---- backward ----------------------------------------------------------------------------
    def _on_backward(self, tensors: Any) -> None:
        loss = tensors if isinstance(tensors, Tensor) else (
            tensors[0] if isinstance(tensors, (tuple, list)) and tensors and isinstance(tensors[0], Tensor) else None)
        if loss is None or loss.numel() != 1:
            return
        value = float(loss.detach().float().item())
        self._pending_losses.append(value)
        if not math.isfinite(value) and self.nonfinite is None:
            self.nonfinite = {"where": "loss", "value": "nan" if math.isnan(value) else "inf", "step": self.step,
                              "module": None, "module_type": None, "input_nonfinite": None, "layer": None}
        if self.curvature_enabled and self.curvature is None and loss.requires_grad:
            self.curvature = {"top_eigenvalue": None, "note": "not measured"}  # one attempt only
            self.curvature = self._hessian(loss)

    def _hessian(self, loss: Tensor) -> Dict[str, Any]:
        opt = self._latest_optimizer()
        if opt is not None:
            params = [p for g in opt.param_groups for p in g["params"]]
        else:
            params = [p for root in self._roots for p in root.parameters()]
        try:
            result = top_hessian_eigenvalue(loss, params, self.hessian_iterations, seed=self.seed)
        except RuntimeError as exc:  # e.g. cuDNN RNNs have no double backward
            return {"top_eigenvalue": None, "note": str(exc).splitlines()[0][:200]}
        result.update(self._optimizer_summary(opt))
        return result

    def _latest_optimizer(self) -> Optional[torch.optim.Optimizer]:
        alive = [opt for opt in (ref() for ref in self._optimizers) if opt is not None]
        return alive[-1] if alive else None

    @staticmethod
    def _optimizer_summary(opt: Optional[torch.optim.Optimizer]) -> Dict[str, Any]:
        if opt is None:
            return {"optimizer": None, "lr": None, "momentum": None}
        group = opt.param_groups[0]
        lr = group.get("lr")
        return {"optimizer": type(opt).__name__, "lr": float(lr) if lr is not None else None,
                "momentum": float(group.get("momentum") or 0.0)}

    # ---- optimizer steps ---------------------------------------------------------------------
    def _pre_step(self, opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        self._depth = 0  # no step happens inside a forward: a stale count cannot survive a step
        if not self._muted():
            self._guard("step", self._measure_step, opt)

    def _measure_step(self, opt: torch.optim.Optimizer) -> None:
        self.track(opt)
        if self.optimizer_info is None:
            self.optimizer_info = self._optimizer_summary(opt)
        params = [p for g in opt.param_groups for p in g["params"] if p.grad is not None]
        with torch.no_grad():
            norms = torch.stack([p.grad.detach().double().norm() for p in params]).tolist() if params else []
        total = math.sqrt(sum(n * n for n in norms)) if all(math.isfinite(n) for n in norms) else (
            float("nan") if any(math.isnan(n) for n in norms) else float("inf"))
        self.grad_norms.append(total)
        names = [self._param_names.get(id(p), f"param{i}") for i, p in enumerate(params)]
        current = dict(zip(names, norms))
        for name in names:
            if name not in self.param_norms and len(self.param_norms) < MAX_NAMED_PARAMS:
                self.param_norms[name] = [float("nan")] * self.step  # NaN: no gradient at that step
        for name, series in self.param_norms.items():
            series.append(current.get(name, float("nan")))
        if self.nonfinite is None:
            bad = next(((n, v) for n, v in zip(names, norms) if not math.isfinite(v)), None)
            if bad is not None:
                self.nonfinite = {"where": "gradient", "value": "nan" if math.isnan(bad[1]) else "inf",
                                  "step": self.step, "module": bad[0], "module_type": None,
                                  "input_nonfinite": None, "layer": None}
        pending, self._pending_losses = self._pending_losses, []
        self.losses.append(sum(pending) / len(pending) if pending else None)
        if self._snapshot is None:
            self._snapshot = self._take_snapshot()
        with torch.no_grad():
            for probe in self.probes.values():
                if probe.result is None and not probe.rejected:
                    self._measure_layer(probe)
                probe.note_gradients()

    def _measure_layer(self, probe: LayerProbe, final: bool = False) -> None:
        # A layer's analyses are chains of tiny per-time-step ops: intra-op threads only add
        # synchronisation to them (measured 10x slower on a busy 2-core machine).
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            probe.measure(self.seed, final)
        except Exception as exc:  # noqa: BLE001 - keep the layer, without its measurements
            self.internal_errors.append(f"layer '{probe.name}': {type(exc).__name__}: {exc}")
            probe.result = probe.record(dldh=None, dldh_note=f"measurement failed: {type(exc).__name__}")
        finally:
            torch.set_num_threads(threads)

    def _take_snapshot(self) -> List[tuple]:
        params = [p for root in self._roots for p in root.parameters() if p.requires_grad]
        if sum(p.numel() for p in params) > MAX_SNAPSHOT:
            return []
        return [(p, p.detach().clone()) for p in params]

    def _post_step(self, opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        if self._muted():
            return
        self.step += 1
        if self.on_step is not None:
            self.on_step(self.step)

    # ---- results ------------------------------------------------------------------------------
    def update_ratio(self) -> Optional[float]:
        if not self._snapshot:
            return None
        with torch.no_grad():
            moved = sum(float((p.detach().double() - p0.double()).pow(2).sum()) for p, p0 in self._snapshot)
            size = sum(float(p0.double().pow(2).sum()) for _, p0 in self._snapshot)
        return math.sqrt(moved / size) if size > 0 else None

    def layer_records(self) -> List[Dict[str, Any]]:
        out = []
        for probe in self.probes.values():
            if probe.result is not None:
                out.append(dict(probe.result, received_grad=probe.received_grad))
        return out

    def _finish_layers(self) -> None:
        for probe in self.probes.values():
            if probe.result is None and not probe.rejected:
                self._measure_layer(probe, final=True)

    def measurements(self) -> Dict[str, Any]:
        """A JSON-ready summary of everything measured so far."""
        self._guard("layers", self._finish_layers)
        ratio = self._guard("weights", self.update_ratio)
        layer_norms: Dict[str, List[float]] = {}
        for name, series in self.param_norms.items():
            layer = name.rsplit(".", 1)[0] if "." in name else name
            acc = layer_norms.setdefault(layer, [0.0] * len(series))
            for i, v in enumerate(series[:len(acc)]):
                acc[i] += v * v
        return {
            "steps": self.step,
            "requested_steps": self.steps,
            "seconds": time.perf_counter() - self._started,
            "loss": self.losses,
            "grad_norm": self.grad_norms,
            "param_grad_norms": self.param_norms,
            "layer_grad_norms": {k: [math.sqrt(v) for v in vs] for k, vs in layer_norms.items()},
            "update_ratio": ratio,
            "optimizer": self.optimizer_info,
            "layers": self.layer_records(),
            "nonfinite": self.nonfinite,
            "curvature": self.curvature,
            "forks": self.forks,
            "internal_errors": self.internal_errors,
        }
