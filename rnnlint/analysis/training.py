"""Training steps: where backward(), clipping, step() and zero_grad() happen, in order.

A *training unit* is the innermost loop that holds an optimizer step (or the
function, when the step sits in a per-batch helper without a loop). Its events
are the calls inside it, with calls to helper functions defined in the same
file expanded in place (two levels), so `clip(model)` or `train_step(...)`
count as what they do.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Union

import libcst as cst

from rnnlint.analysis.facts import CallFact, Loop, ModuleFacts, Scope
from rnnlint.analysis.names import dotted_name

TORCH_OPTIMIZERS = frozenset(
    "torch.optim." + n
    for n in (
        "Adam", "AdamW", "SGD", "RMSprop", "Adagrad", "Adadelta", "Adamax", "NAdam", "RAdam",
        "LBFGS", "SparseAdam", "ASGD", "Rprop", "Adafactor",
    )
)
CLIP_METHODS = frozenset(
    {
        "clip_grad_norm_", "clip_grad_value_", "clip_grad_norm", "clip_grad_value",
        "clip_gradients", "clip_grad_norm_fp32",
    }
)
_OPTIMIZER_NAME = re.compile(r"(^|[._])(opt|optim|optimizer|optimiser)s?(\d*|_[a-z0-9]+)$", re.I)
_NOT_OPTIMIZER = re.compile(r"sched|env|lr_|warmup|scaler", re.I)

EventKind = str  # "backward" | "step" | "zero" | "clip" | "unscale"


@dataclass(eq=False)
class Event:
    kind: EventKind
    call: CallFact
    key: tuple  # ordering key inside the unit: (order of the outer call, order inside helpers)


@dataclass(eq=False)
class TrainingUnit:
    container: Union[Loop, Scope]
    step: CallFact
    events: List[Event] = field(default_factory=list)

    def of(self, kind: EventKind) -> List[Event]:
        return [e for e in self.events if e.kind == kind]

    @property
    def loop(self) -> Optional[Loop]:
        return self.container if isinstance(self.container, Loop) else None


def calls_assigned(facts: ModuleFacts) -> Dict[str, List[CallFact]]:
    """Dotted name -> every call whose whole result is assigned to it, in file order."""
    index = facts.cache.get("assigned_calls")
    if index is None:
        index = {}
        for call in facts.calls:
            if call.assigned_to is not None:
                index.setdefault(call.assigned_to, []).append(call)
        facts.cache["assigned_calls"] = index
    return index  # type: ignore[return-value]


def _assigned_call(facts: ModuleFacts, name: str, scope: Scope) -> Optional[CallFact]:
    """The call whose result `name` holds, when it is assigned exactly once in reach."""
    candidates = calls_assigned(facts).get(name, [])
    if name.startswith("self."):
        cls = scope.enclosing_class
        candidates = [c for c in candidates if c.scope.enclosing_class is cls]
    return candidates[0] if len(candidates) == 1 else None


def is_optimizer_step(facts: ModuleFacts, call: CallFact) -> bool:
    if call.method != "step":
        return False
    receiver = call.receiver_dotted
    if receiver is None:
        return False
    built = _assigned_call(facts, receiver, call.scope)
    if built is not None and built.qualname is not None:
        if built.qualname in TORCH_OPTIMIZERS:
            return True
        if built.qualname.startswith("torch.optim.lr_scheduler") or "GradScaler" in built.qualname:
            return "GradScaler" in built.qualname and bool(call.args)
    last = receiver.rsplit(".", 1)[-1]
    if last.lower() in ("scaler", "grad_scaler", "amp_scaler") and call.args:
        return True  # scaler.step(optimizer)
    return bool(_OPTIMIZER_NAME.search(last)) and not _NOT_OPTIMIZER.search(last)


def _is_zero_grad(call: CallFact) -> bool:
    if call.method == "zero_grad":
        return True
    receiver = call.receiver_dotted
    return call.method in ("zero_", "detach_") and receiver is not None and receiver.endswith(".grad")


def is_clip(call: CallFact) -> bool:
    return call.method in CLIP_METHODS or (call.qualname or "").endswith(".clip_by_global_norm")


def _classify(facts: ModuleFacts, call: CallFact) -> Optional[EventKind]:
    method = call.method
    if method == "backward":
        return "backward"
    if method == "step" and is_optimizer_step(facts, call):
        return "step"
    if _is_zero_grad(call):
        return "zero"
    if is_clip(call):
        return "clip"
    if method == "unscale_":
        return "unscale"
    return None


def local_callee(facts: ModuleFacts, call: CallFact) -> Optional[Scope]:
    """The function or method defined in this file that `call` calls, if it can be told."""
    if call.dotted is None:
        return None
    if "." not in call.dotted:
        return facts.functions.get(call.dotted)
    if call.dotted.startswith("self.") and call.dotted.count(".") == 1:
        cls = call.scope.enclosing_class
        if cls is not None:
            return cls.methods.get(call.method or "")
    return None


def _events(facts: ModuleFacts, calls: List[CallFact], prefix: tuple, depth: int) -> List[Event]:
    out: List[Event] = []
    for call in calls:
        key = prefix + (call.order,)
        kind = _classify(facts, call)
        if kind is not None:
            out.append(Event(kind, call, key))
        elif depth < 2:
            helper = local_callee(facts, call)
            if helper is not None and helper is not call.scope:
                out.extend(_events(facts, helper.calls, key, depth + 1))
        # Assigning None to .grad is zero_grad by hand; AugAssign etc. are not calls.
    return out


def _manual_grad_reset(facts: ModuleFacts, container: Union[Loop, Scope]) -> bool:
    for assign in facts.assigns:
        if assign.target.endswith(".grad") and isinstance(assign.value, cst.Name) and assign.value.value == "None":
            if isinstance(container, Loop):
                if container.contains(assign.loop):
                    return True
            elif assign.scope is container:
                return True
    return False


def training_units(facts: ModuleFacts) -> List[TrainingUnit]:
    cached = facts.cache.get("training_units")
    if cached is not None:
        return cached  # type: ignore[return-value]
    units: List[TrainingUnit] = []
    seen: Dict[int, TrainingUnit] = {}
    for call in facts.calls:
        if call.method != "step" or not is_optimizer_step(facts, call):
            continue
        container: Union[Loop, Scope] = call.loop if call.loop is not None else call.scope
        calls = container.calls
        events = _events(facts, calls, (), 0)
        if not any(e.kind == "backward" for e in events):
            continue
        unit = seen.get(id(container))
        if unit is None:
            unit = TrainingUnit(container, call, events)
            if _manual_grad_reset(facts, container):
                unit.events.append(Event("zero", call, (0,)))
            seen[id(container)] = unit
            units.append(unit)
    facts.cache["training_units"] = units
    return units


def callers_context(facts: ModuleFacts, function: Scope) -> List[CallFact]:
    """Calls in the loops that call `function` (for units that are a per-batch helper)."""
    out: List[CallFact] = []
    for call in facts.calls:
        if call.loop is not None and call.dotted is not None and call.method == function.name:
            if local_callee(facts, call) is function:
                out.extend(call.loop.calls)
    return out


def guarded_by_modulo(call: CallFact) -> bool:
    """True when the call sits under `if ... % ... ...:` (gradient accumulation)."""
    for test in call.guards:
        if _has_modulo(test):
            return True
    return False


def _has_modulo(node: cst.CSTNode) -> bool:
    if isinstance(node, cst.BinaryOperation):
        if isinstance(node.operator, cst.Modulo):
            return True
        return _has_modulo(node.left) or _has_modulo(node.right)
    if isinstance(node, cst.Comparison):
        return _has_modulo(node.left) or any(_has_modulo(t.comparator) for t in node.comparisons)
    if isinstance(node, cst.BooleanOperation):
        return _has_modulo(node.left) or _has_modulo(node.right)
    if isinstance(node, cst.UnaryOperation):
        return _has_modulo(node.expression)
    if isinstance(node, cst.Call):
        return any(_has_modulo(a.value) for a in node.args)
    return False


def receiver_name(call: CallFact) -> Optional[str]:
    return dotted_name(call.receiver) if call.receiver is not None else None
