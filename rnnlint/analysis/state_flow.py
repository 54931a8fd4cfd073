"""Recurrent state that flows from one loop iteration into the next.

`out, hidden = model(x, hidden)` inside a loop feeds the state one iteration
returns into the next iteration's call. Whether that is right depends on what
happens to the name between the two calls (cut from the graph with detach(),
replaced by a fresh state) and on what the loop iterates (a contiguous stream,
or shuffled independent sequences). This module finds such carries and says
what the loop does to them; RNN507 and RNN512 judge.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterator, List, Optional, Set

import libcst as cst

from rnnlint.analysis.training import local_callee
from rnnlint.analysis.facts import AssignFact, CallFact, Loop, ModuleFacts, Scope
from rnnlint.analysis.names import names_in  # noqa: F401 - used here and re-exported
from rnnlint.analysis.names import dotted_name
from rnnlint.analysis.recurrent import RecurrentLayer, layer_bound_to
from rnnlint.analysis.values import Evaluator
from rnnlint.analysis.walker import iter_children

# Names that hold a recurrent state when the callee itself is not known.
_STATE_NAME = re.compile(
    r"hidden|hid$|^hid_|state|^(h|c|hx|cx|hc|hn|cn|ht|ct|h0|c0|h_[0nt]|c_[0nt]|mem|memory|carry)$",
    re.I,
)
# Calls (or attributes) that cut a tensor from the graph.
DETACH_METHODS = frozenset({"detach", "detach_", "repackage_hidden", "repackage", "detach_hidden"})
_DETACH_WORD = re.compile(r"detach|repackage", re.I)


def local_function(facts: ModuleFacts, call: CallFact) -> Optional[Scope]:
    """The function or method defined in this file that `call` calls, if it can be told."""
    return local_callee(facts, call)


def expanded_calls(facts: ModuleFacts, calls: List[CallFact], depth: int = 2) -> Iterator[CallFact]:
    """`calls` with the calls of local helper functions they call, `depth` levels deep."""
    seen: Set[int] = set()
    stack = [(call, 0) for call in reversed(calls)]
    while stack:
        call, level = stack.pop()
        yield call
        if level >= depth:
            continue
        helper = local_function(facts, call)
        if helper is not None and helper is not call.scope and id(helper) not in seen:
            seen.add(id(helper))
            stack.extend((c, level + 1) for c in reversed(helper.calls))


def _bare_names(node: cst.BaseExpression) -> List[str]:
    """`h` or the names of a (possibly nested) tuple `(h, c)`; calls and subscripts are not bare."""
    dotted = dotted_name(node)
    if dotted is not None:
        return [dotted]
    if isinstance(node, (cst.Tuple, cst.List)):
        out: List[str] = []
        for element in node.elements:
            out.extend(_bare_names(element.value))
        return out
    return []


def _assign_of(call: CallFact) -> Optional[cst.Assign]:
    stmt = call.stmt
    if isinstance(stmt, cst.SimpleStatementLine):
        for small in stmt.body:
            if isinstance(small, cst.Assign) and small.value is call.node:
                return small
    return None


@dataclass(eq=False)
class Carry:
    """`names` returned by `call` and passed back into it on the next iteration of `loop`."""

    call: CallFact
    names: List[str]
    loop: Loop  # the loop whose iterations the state crosses (holds backward() for RNN507)
    layer: Optional[RecurrentLayer]  # the recurrent layer called, when the callee is one
    model_class: Optional[Scope]  # the class of the model instance called, when known
    detached: bool  # cut from the graph somewhere in the loop (or inside the model)
    crosses_backward: bool  # `loop` runs backward() between two calls
    detach_evidence: List[cst.CSTNode] = field(default_factory=list)

    @property
    def label(self) -> str:
        return self.names[0] if len(self.names) == 1 else "(" + ", ".join(self.names) + ")"


def _loop_has_backward(facts: ModuleFacts, loop: Loop) -> bool:
    return any(c.method == "backward" for c in expanded_calls(facts, loop.calls))


def _model_class(facts: ModuleFacts, call: CallFact) -> Optional[Scope]:
    """The class defined here whose instance `call` calls (`model(x, h)` with `model = Net(...)`)."""
    dotted = call.dotted
    if dotted is None:
        return None
    if call.method == "forward" and call.receiver is not None:
        dotted = dotted_name(call.receiver)
        if dotted is None:
            return None
    found: Optional[Scope] = None
    for assign in facts.assigns:
        if assign.target != dotted:
            continue
        value = assign.value
        # Net(...).to(device), Net(...).cuda()
        while isinstance(value, cst.Call) and isinstance(value.func, cst.Attribute) and value.func.attr.value in ("to", "cuda", "float", "double"):
            value = value.func.value
        if isinstance(value, cst.Call):
            name = dotted_name(value.func)
            cls = facts.classes.get(name or "")
            if cls is not None:
                if found is not None and found is not cls:
                    return None
                found = cls
    return found


def _class_detaches(cls: Scope) -> bool:
    """Whether the class's methods cut something from the graph (its forward may cut the state)."""
    for method in cls.methods.values():
        for call in method.calls:
            if call.method in DETACH_METHODS:
                return True
        for name in method.assigns:
            if name.endswith(".data"):
                return True
        for values in method.assigns.values():
            for value in values:
                if isinstance(value, cst.Attribute) and value.attr.value == "data":
                    return True
    return False


def _is_detach_value(node: cst.BaseExpression) -> bool:
    """hidden.detach(), repackage_hidden(hidden), tuple(h.detach() for h in hidden), h.data."""
    stack: List[cst.CSTNode] = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, cst.Attribute) and current.attr.value == "data":
            return True
        if isinstance(current, cst.Call):
            name = dotted_name(current.func)
            if name is not None and _DETACH_WORD.search(name.rsplit(".", 1)[-1]):
                return True
        stack.extend(iter_children(current))
    return False


def _initialises_missing(assign: AssignFact, facts: ModuleFacts, names: Set[str]) -> bool:
    """The reassignment sits under `if hidden is None:` (or `if not hidden:`): it creates the
    first state, and later iterations carry it."""
    for call in facts.calls:
        if call.stmt is assign.stmt:
            return any(_tests_missing(g, names) for g in call.guards)
    # No call in the statement (hidden = None): find the guards by walking the enclosing ifs.
    return _stmt_guarded_by(facts, assign, names)


def _tests_missing(test: cst.BaseExpression, names: Set[str]) -> bool:
    if isinstance(test, cst.UnaryOperation) and isinstance(test.operator, cst.Not):
        return bool(names_in(test.expression) & names)
    if isinstance(test, cst.Comparison) and len(test.comparisons) == 1:
        target = test.comparisons[0]
        is_none = isinstance(target.comparator, cst.Name) and target.comparator.value == "None"
        return is_none and isinstance(target.operator, (cst.Is, cst.Equal)) and bool(names_in(test.left) & names)
    if isinstance(test, cst.BooleanOperation):
        return _tests_missing(test.left, names) or _tests_missing(test.right, names)
    return False


def _stmt_guarded_by(facts: ModuleFacts, assign: AssignFact, names: Set[str]) -> bool:
    body = assign.scope.node
    target = assign.stmt

    def visit(node: cst.CSTNode, tests: List[cst.BaseExpression]) -> Optional[bool]:
        if node is target:
            return any(_tests_missing(t, names) for t in tests)
        if isinstance(node, (cst.FunctionDef, cst.ClassDef)) and node is not body:
            return None
        if isinstance(node, cst.If):
            found = visit(node.body, tests + [node.test])
            if found is not None:
                return found
            if node.orelse is not None:
                return visit(node.orelse, tests + [node.test])
            return None
        for child in iter_children(node):
            found = visit(child, tests)
            if found is not None:
                return found
        return None

    return bool(visit(body, []))


def carried_states(facts: ModuleFacts, layers: List[RecurrentLayer]) -> List[Carry]:
    """Every state carried across the iterations of a loop (see the module docstring)."""
    cached = facts.cache.get("carried_states")
    if cached is not None:
        return cached  # type: ignore[return-value]
    out: List[Carry] = []
    torch_layers = [layer for layer in layers if layer.framework == "torch"]
    for call in facts.calls:
        if call.loop is None or call.has_star_args:
            continue
        assign = _assign_of(call)
        if assign is None:
            continue
        targets: Set[str] = set()
        for target in assign.targets:
            targets.update(_bare_names(target.target))
        passed: List[str] = []
        positional = 0
        for arg in call.args:
            if arg.keyword is None:
                positional += 1
                if positional == 1:
                    continue  # the input, not the state
            passed.extend(_bare_names(arg.value))
        names = [n for n in passed if n in targets]
        if not names:
            continue
        layer = layer_bound_to(torch_layers, call.dotted, call.scope)
        model_class = _model_class(facts, call) if layer is None else None
        if layer is None and model_class is None:
            if call.method in ("step", "reset", "update", "append", "get"):
                continue  # env.step(action, state), dict.get(...): not a model
            if not any(_STATE_NAME.search(n.rsplit(".", 1)[-1]) for n in names):
                continue
            if local_function(facts, call) is not None and not _helper_calls_model(facts, call):
                continue
        carry = _follow(facts, call, names, layer, model_class)
        if carry is not None:
            out.append(carry)
    facts.cache["carried_states"] = out
    return out


def _helper_calls_model(facts: ModuleFacts, call: CallFact) -> bool:
    """A local helper `loss, h = step(x, h)` counts when it runs backward or a model itself."""
    helper = local_function(facts, call)
    if helper is None:
        return False
    return any(c.method == "backward" for c in expanded_calls(facts, helper.calls))


def _follow(
    facts: ModuleFacts,
    call: CallFact,
    names: List[str],
    layer: Optional[RecurrentLayer],
    model_class: Optional[Scope],
) -> Optional[Carry]:
    """Walk out from the innermost loop to the loop whose iterations the state crosses."""
    name_set = set(names)
    detached = False
    evidence: List[cst.CSTNode] = []
    if model_class is not None and _class_detaches(model_class):
        detached = True
    helper = local_function(facts, call)
    if helper is not None and any(c.method in DETACH_METHODS for c in expanded_calls(facts, helper.calls)):
        detached = True
    loop: Optional[Loop] = call.loop
    while loop is not None:
        reset = False
        for assign in facts.assigns:
            if assign.target not in name_set or assign.stmt is call.stmt:
                continue
            if not loop.contains(assign.loop) or assign.loop is None:
                continue
            if names_in(assign.value) & name_set or _is_detach_value(assign.value):
                detached = True
                evidence.append(assign.stmt)
            elif _initialises_missing(assign, facts, name_set):
                continue  # `if hidden is None: hidden = init()` starts a carry, it does not end one
            else:
                reset = True
        for inner in expanded_calls(facts, loop.calls):
            if inner.method == "detach_" and inner.receiver is not None:
                detached = True  # in place, on the state or on its parts (`for h in hidden: h.detach_()`)
                evidence.append(inner.node)
        if reset:
            return None  # a fresh state every iteration of this loop: nothing is carried
        if _loop_has_backward(facts, loop) or _iterates_data(loop):
            return Carry(call, names, loop, layer, model_class, detached, _loop_has_backward(facts, loop), evidence)
        loop = loop.parent
    return None


def _iterates_data(loop: Loop) -> bool:
    """A `for` over a loader or batches (not range(T) over time steps)."""
    node = loop.iter_node
    if node is None:
        return False
    if isinstance(node, cst.Call) and dotted_name(node.func) in ("enumerate", "tqdm", "tqdm.tqdm", "iter"):
        node = node.args[0].value if node.args else node
    if isinstance(node, cst.Call) and dotted_name(node.func) == "range":
        return False
    return dotted_name(node) is not None and bool(re.search(r"load|batch|data|train|iter", dotted_name(node) or "", re.I))


# -- shuffled batches -------------------------------------------------------------------

_LOADER_WRAPPERS = ("enumerate", "tqdm", "tqdm.tqdm", "iter", "zip")
_RANDOM_SAMPLERS = ("RandomSampler", "SubsetRandomSampler", "WeightedRandomSampler")


def shuffled_source(facts: ModuleFacts, evaluator: Evaluator, loop: Loop) -> Optional[cst.CSTNode]:
    """The DataLoader(..., shuffle=True) (or random sampler) call that `loop` iterates, if known."""
    node = loop.iter_node
    if node is None:
        return None
    return _shuffled(facts, evaluator, node, loop.scope, 0)


def _shuffled(facts: ModuleFacts, evaluator: Evaluator, node: cst.BaseExpression, scope: Scope, depth: int) -> Optional[cst.CSTNode]:
    if depth > 3:
        return None
    if isinstance(node, cst.Call):
        name = dotted_name(node.func) or ""
        if name in _LOADER_WRAPPERS and node.args:
            return _shuffled(facts, evaluator, node.args[0].value, scope, depth + 1)
        if name.rsplit(".", 1)[-1] == "DataLoader":
            return node if _loader_shuffles(facts, evaluator, node, scope) else None
        return None
    if isinstance(node, cst.Name):
        name = node.value
        current: Optional[Scope] = scope
        while current is not None:
            if current.kind == "function" and name in current.params:
                return _shuffled_param(facts, evaluator, current, name, depth)
            values = current.assigns.get(name)
            if values:
                if len(values) != 1:
                    return None
                return _shuffled(facts, evaluator, values[0], current, depth + 1)
            current = current.parent
    return None


def _shuffled_param(facts: ModuleFacts, evaluator: Evaluator, function: Scope, name: str, depth: int) -> Optional[cst.CSTNode]:
    """A loader parameter: shuffled when every call site in the file passes a shuffled loader."""
    index = function.param_order.index(name)
    if function.is_method():
        index -= 1
    sites = [c for c in facts.calls if c.dotted is not None and local_function(facts, c) is function]
    if not sites:
        return None
    found: Optional[cst.CSTNode] = None
    for site in sites:
        given = site.arg(index, name)
        if given is None or site.has_star_args:
            return None
        result = _shuffled(facts, evaluator, given, site.scope, depth + 1)
        if result is None:
            return None
        found = found or result
    return found


def _loader_shuffles(facts: ModuleFacts, evaluator: Evaluator, node: cst.Call, scope: Scope) -> bool:
    for arg in node.args:
        if arg.keyword is None:
            continue
        key = arg.keyword.value
        if key == "shuffle":
            return evaluator.value(arg.value, scope) is True
        if key in ("sampler", "batch_sampler"):
            value = arg.value
            if isinstance(value, cst.Name):
                values = scope.assigns.get(value.value) or facts.module_scope.assigns.get(value.value) or []
                value = values[0] if len(values) == 1 else value
            if isinstance(value, cst.Call):
                sampler = (dotted_name(value.func) or "").rsplit(".", 1)[-1]
                if sampler in _RANDOM_SAMPLERS:
                    return True
                if sampler == "BatchSampler" and value.args:
                    inner = value.args[0].value
                    if isinstance(inner, cst.Call) and (dotted_name(inner.func) or "").rsplit(".", 1)[-1] in _RANDOM_SAMPLERS:
                        return True
    return False
