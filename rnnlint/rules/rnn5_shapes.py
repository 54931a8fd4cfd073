"""RNN5xx: tensor layout and shapes around recurrent layers (RNN503-506, RNN510, RNN511, RNN514).

The torch rules follow what a recurrent call returns inside the function that makes it
(`out, (h_n, c_n) = self.lstm(x)`), through the statements of that function only
(rnnlint.analysis.shapes.FlowIndex). Keras RNN510 reads Sequential lists, `.add()` runs and
functional chains. RNN511 ties a time-major layer to batch-major data.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Set, Tuple

import libcst as cst

from rnnlint.analysis.facts import CallFact, Scope, SubscriptFact
from rnnlint.analysis.names import dotted_name
from rnnlint.analysis.recurrent import RecurrentLayer
from rnnlint.analysis.shapes import (
    KEEP_FUNCTIONS,
    KEEP_METHODS,
    KEEP_MODULES,
    RecurrentResult,
    bound_layer,
    bound_module_call,
    calls_by_node,
    describe,
    flow_index,
    int_value,
    is_full_slice,
    keeps_last_axis,
    output_width,
    recurrent_result,
    single_int_index,
    subscript_rank,
    target_paths,
    walk_expr,
)
from rnnlint.analysis.values import known
from rnnlint.findings import Severity
from rnnlint.rules.base import Context, Rule, RuleMeta, rule

_CAT = frozenset({"torch.cat", "torch.concat", "torch.concatenate"})


def _torch_layers(ctx: Context) -> List[RecurrentLayer]:
    return [l for l in ctx.layers if l.framework == "torch"]


def _code(ctx: Context, node: cst.CSTNode) -> str:
    text = ctx.facts.module.code_for_node(node).strip()
    return text if len(text) <= 60 else text[:57] + "..."


def _result_of_subscript(ctx: Context, sub: SubscriptFact) -> Optional[RecurrentResult]:
    if sub.scope.kind != "function":
        return None
    base = sub.node.value
    if not isinstance(base, (cst.Name, cst.Subscript)):
        return None
    return recurrent_result(ctx.facts, ctx.evaluator, _torch_layers(ctx), base, sub.scope, sub.stmt)


def _chained(ctx: Context) -> Set[int]:
    """Subscripts that are themselves subscripted (`out[-1][-1]`)."""
    table = ctx.facts.cache.get("shapes_chained")
    if table is None:
        table = {id(s.node.value) for s in ctx.facts.subscripts if isinstance(s.node.value, cst.Subscript)}
        ctx.facts.cache["shapes_chained"] = table
    return table  # type: ignore[return-value]


def _cat_members(ctx: Context) -> Dict[int, cst.Call]:
    """Expression node id -> the torch.cat/stack call whose list holds it."""
    table = ctx.facts.cache.get("shapes_cat_members")
    if table is None:
        table = {}
        for call in ctx.facts.calls:
            if call.qualname in _CAT or call.qualname in ("torch.stack", "torch.hstack"):
                seq = call.positional(0) or call.kwarg("tensors")
                if isinstance(seq, (cst.List, cst.Tuple)):
                    for element in seq.elements:
                        table[id(element.value)] = call.node
        ctx.facts.cache["shapes_cat_members"] = table
    return table  # type: ignore[return-value]


def _batch_of_one(ctx: Context, call: CallFact) -> bool:
    """The input is given a batch (or time) axis of size one: x.unsqueeze(..), x.view(T, 1, -1)."""
    node = call.arg(0, "input")
    if node is None:
        return True
    nodes = [node]
    if isinstance(node, cst.Name):
        binding = flow_index(ctx.facts, call.scope).binding_at(node.value, call.stmt)
        if binding is not None and binding.value is not None:
            nodes.append(binding.value)
    for root in nodes:
        for n in walk_expr(root):
            if isinstance(n, cst.Call) and isinstance(n.func, cst.Attribute):
                method = n.func.attr.value
                if method == "unsqueeze":
                    return True
                if method in ("view", "reshape") and any(int_value(a.value) == 1 for a in n.args):
                    return True
            if isinstance(n, cst.SubscriptElement) and isinstance(n.slice, cst.Index) and dotted_name(n.slice.value) == "None":
                return True
    return False


def _last_step_form(node: cst.Subscript) -> Optional[str]:
    """"time" for out[:, -1] / out[:, -1, :], "first" for out[-1] / out[-1, :, :]."""
    elements = node.slice
    if single_int_index(node) == -1 and len(elements) <= 3:
        return "first"
    if 2 <= len(elements) <= 3 and is_full_slice(elements[0]):
        second = elements[1].slice
        if isinstance(second, cst.Index) and int_value(second.value) == -1:
            if len(elements) == 2 or is_full_slice(elements[2]):
                return "time"
    return None


@dataclass
class _LastStep:
    sub: SubscriptFact
    result: RecurrentResult
    form: str  # "time" | "first"
    batch_first: bool
    in_cat: bool


def _last_steps(ctx: Context) -> List[_LastStep]:
    cached = ctx.facts.cache.get("shapes_last_steps")
    if cached is not None:
        return cached  # type: ignore[return-value]
    out: List[_LastStep] = []
    chained = _chained(ctx)
    members = _cat_members(ctx)
    for sub in ctx.facts.subscripts:
        if not isinstance(sub.node.value, cst.Name) or id(sub.node) in chained:
            continue
        form = _last_step_form(sub.node)
        if form is None:
            continue
        result = _result_of_subscript(ctx, sub)
        if result is None or result.part != "output":
            continue
        batch_first = result.layer.get("batch_first")
        if not isinstance(batch_first, bool) or _batch_of_one(ctx, result.call):
            continue
        out.append(_LastStep(sub, result, form, batch_first, id(sub.node) in members))
    ctx.facts.cache["shapes_last_steps"] = out
    return out


# -- RNN503 ------------------------------------------------------------------------------

_TENSOR_FACTORIES = frozenset(
    "torch." + n
    for n in ("zeros", "ones", "randn", "rand", "empty", "full", "normal", "zeros_like", "ones_like",
              "randn_like", "rand_like", "empty_like", "full_like", "tensor", "Tensor", "FloatTensor")
)
_NEW_TENSOR = frozenset({"new_zeros", "new_ones", "new_empty", "new_full", "new_tensor"})


def _return_statements(method: Scope) -> List[Tuple[cst.BaseExpression, cst.CSTNode]]:
    out = []
    body = method.node.body  # type: ignore[attr-defined]
    stack: List[cst.CSTNode] = [body]
    while stack:
        node = stack.pop()
        if isinstance(node, (cst.FunctionDef, cst.ClassDef, cst.Lambda)):
            continue
        if isinstance(node, (cst.SimpleStatementLine, cst.SimpleStatementSuite)):
            for small in node.body:
                if isinstance(small, cst.Return) and small.value is not None:
                    out.append((small.value, node))
            continue
        from rnnlint.analysis.walker import iter_children

        stack.extend(iter_children(node))
    return out


class _StateKinds:
    """Whether an expression given as a recurrent state is one tensor or a tuple."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.layers = _torch_layers(ctx)

    def kind(self, node: cst.BaseExpression, scope: Scope, stmt: Optional[cst.CSTNode], depth: int = 0) -> Optional[str]:
        if depth > 6:
            return None
        if isinstance(node, (cst.Tuple, cst.List)):
            return "tuple"
        if isinstance(node, cst.Name):
            if node.value == "None":
                return None
            binding = flow_index(self.ctx.facts, scope).binding_at(node.value, stmt)
            if binding is None or binding.value is None:
                return None
            if binding.path:
                return self._unpacked(binding.value, binding.path)
            return self.kind(binding.value, scope, binding.stmt, depth + 1)
        if isinstance(node, cst.Subscript):
            result = recurrent_result(self.ctx.facts, self.ctx.evaluator, self.layers, node, scope, stmt)
            return "tensor" if result is not None and result.part in ("h_n", "c_n") else None
        if isinstance(node, cst.Attribute) and dotted_name(node.value) == "self":
            cls = scope.enclosing_class
            if cls is None:
                return None
            values = self.ctx.evaluator.self_attr_values(cls, node.attr.value)
            if len(values) != 1 or not isinstance(values[0][0], (cst.Call, cst.Tuple, cst.List)):
                return None
            return self.kind(values[0][0], values[0][1], None, depth + 1)
        if isinstance(node, cst.Call):
            return self._call(node, scope, depth)
        return None

    def _call(self, node: cst.Call, scope: Scope, depth: int) -> Optional[str]:
        func = node.func
        while isinstance(func, cst.Attribute) and func.attr.value in KEEP_METHODS and isinstance(func.value, cst.Call):
            node = func.value
            func = node.func
        if isinstance(func, cst.Attribute) and func.attr.value in _NEW_TENSOR:
            return "tensor"
        call = calls_by_node(self.ctx.facts).get(id(node))
        if call is None:
            return None
        if call.qualname in _TENSOR_FACTORIES or call.qualname == "torch.nn.Parameter":
            return "tensor"
        layer = bound_layer(self.ctx.facts, self.ctx.evaluator, self.layers, call)
        if layer is not None and layer.cell:
            return "tuple" if layer.kind == "LSTM" else "tensor"
        # self.init_hidden(...): every return of the method must agree.
        if call.dotted and call.dotted.startswith("self.") and call.dotted.count(".") == 1:
            cls = scope.enclosing_class
            method = cls.methods.get(call.dotted[5:]) if cls is not None else None
            if method is not None:
                kinds = {self.kind(value, method, stmt, depth + 1) for value, stmt in _return_statements(method)}
                if len(kinds) == 1:
                    return kinds.pop()
        return None

    def _unpacked(self, value: cst.BaseExpression, path: Tuple[int, ...]) -> Optional[str]:
        if not isinstance(value, cst.Call):
            return None
        call = calls_by_node(self.ctx.facts).get(id(value))
        if call is None:
            return None
        layer = bound_layer(self.ctx.facts, self.ctx.evaluator, self.layers, call)
        if layer is None:
            return None
        if layer.cell:
            return "tensor" if layer.kind == "LSTM" and len(path) == 1 else None
        if path == (1,):
            return "tuple" if layer.kind == "LSTM" else "tensor"
        if layer.kind == "LSTM" and path in ((1, 0), (1, 1)):
            return "tensor"
        return None


@rule(
    RuleMeta(
        "RNN503",
        "state-type-mismatch",
        Severity.ERROR,
        ("torch",),
        "An LSTM given a single tensor as its state, or a GRU/RNN given a tuple.",
    )
)
class StateTypeMismatch(Rule):
    def check(self, ctx: Context) -> None:
        layers = _torch_layers(ctx)
        if not layers:
            return
        kinds = _StateKinds(ctx)
        for call in ctx.facts.calls:
            if call.dotted is None or call.has_star_args:
                continue
            layer = bound_layer(ctx.facts, ctx.evaluator, layers, call)
            if layer is None or layer.framework != "torch":
                continue
            state = call.arg(1, "hx")
            if state is None:
                continue
            kind = kinds.kind(state, call.scope, call.stmt)
            wants = "tuple" if layer.kind == "LSTM" else "tensor"
            if kind is None or kind == wants:
                continue
            text = _code(ctx, state)
            if wants == "tuple":
                message = (
                    f"{describe(layer)} is an {layer.label} but receives a single tensor {text} as its "
                    f"state; an LSTM needs the tuple (h0, c0)"
                )
            else:
                message = (
                    f"{describe(layer)} is an {layer.label} but receives a tuple {text} as its state; "
                    f"a {layer.kind} has no cell state, pass the single tensor h0"
                )
            ctx.report(call.node, message, call.stmt)


# -- RNN504 / RNN505 ---------------------------------------------------------------------


@rule(
    RuleMeta(
        "RNN504",
        "last-step-wrong-axis",
        Severity.ERROR,
        ("torch",),
        "out[:, -1] on a time-major (batch_first=False) output, or out[-1] on a batch_first=True one.",
    )
)
class LastStepWrongAxis(Rule):
    def check(self, ctx: Context) -> None:
        for step in _last_steps(ctx):
            text = _code(ctx, step.sub.node)
            name = describe(step.result.layer)
            if step.batch_first and step.form == "first":
                ctx.report(
                    step.sub.node,
                    f"{text} of {name} (batch_first=True, output (batch, seq, features)) is the last "
                    "sequence of the batch, not the last time step; use out[:, -1]",
                    step.sub.stmt,
                )
            elif not step.batch_first and step.form == "time":
                ctx.report(
                    step.sub.node,
                    f"{text} of {name} (batch_first=False, output (seq, batch, features)) is every time "
                    "step of the last sample in the batch, not the last time step; use out[-1]",
                    step.sub.stmt,
                )


@rule(
    RuleMeta(
        "RNN505",
        "bidirectional-last-step",
        Severity.WARNING,
        ("torch",),
        "The last time step of a bidirectional RNN's output used as the sequence summary.",
    )
)
class BidirectionalLastStep(Rule):
    def check(self, ctx: Context) -> None:
        for step in _last_steps(ctx):
            layer = step.result.layer
            if layer.get("bidirectional") is not True or step.in_cat:
                continue
            if (step.form == "time") != step.batch_first:
                continue  # the wrong axis altogether: RNN504
            ctx.report(
                step.sub.node,
                f"{_code(ctx, step.sub.node)} of bidirectional {describe(layer)} holds the backward "
                "direction after only one step (it reads the sequence from the end); concatenate "
                "h_n[-2] and h_n[-1] instead",
                step.sub.stmt,
            )


# -- RNN506 ------------------------------------------------------------------------------


@dataclass
class _Width:
    rank: Optional[int]
    features: int
    why: str
    layers: Tuple[RecurrentLayer, ...]


class _Widths:
    """How many features the last axis of an expression has, when it comes from recurrent calls."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.layers = _torch_layers(ctx)

    def of(self, node: cst.BaseExpression, scope: Scope, stmt: Optional[cst.CSTNode], depth: int = 0) -> Optional[_Width]:
        if depth > 8:
            return None
        if isinstance(node, cst.Name):
            result = recurrent_result(self.ctx.facts, self.ctx.evaluator, self.layers, node, scope, stmt)
            if result is not None:
                return self._result(result)
            binding = flow_index(self.ctx.facts, scope).binding_at(node.value, stmt)
            if binding is None or binding.value is None or binding.path:
                return None
            return self.of(binding.value, scope, binding.stmt, depth + 1)
        if isinstance(node, cst.Subscript):
            if isinstance(node.value, cst.Subscript):
                result = recurrent_result(self.ctx.facts, self.ctx.evaluator, self.layers, node.value, scope, stmt)
                base = self._result(result) if result is not None else None
            else:
                base = self.of(node.value, scope, stmt, depth + 1)
            if base is None or base.rank is None or not keeps_last_axis(node, base.rank):
                return None
            return _Width(subscript_rank(node, base.rank), base.features, base.why, base.layers)
        if isinstance(node, cst.Call):
            return self._call(node, scope, stmt, depth)
        return None

    def _result(self, result: RecurrentResult) -> Optional[_Width]:
        if result.part == "state":
            return None
        features = output_width(result.layer, result.part)
        if features is None:
            return None
        layer = result.layer
        proj = layer.get("proj_size") if layer.kind == "LSTM" else 0
        size = f"proj_size={proj}" if proj and result.part != "c_n" else f"hidden_size={layer.get('hidden_size')}"
        if result.part == "output" and layer.num_directions == 2:
            why = f"the output of bidirectional {describe(layer)} ({size} * 2 directions = {features} features)"
        elif result.part == "output":
            why = f"the output of {describe(layer)} ({size}: {features} features)"
        else:
            why = f"{result.part} of {describe(layer)} ({size} per direction and layer)"
        return _Width(3, features, why, (layer,))

    def _call(self, node: cst.Call, scope: Scope, stmt: Optional[cst.CSTNode], depth: int) -> Optional[_Width]:
        func = node.func
        if isinstance(func, cst.Attribute) and func.attr.value in KEEP_METHODS:
            return self.of(func.value, scope, stmt, depth + 1)
        if isinstance(func, cst.Attribute) and func.attr.value == "squeeze" and len(node.args) == 1:
            inner = self.of(func.value, scope, stmt, depth + 1)
            axis = int_value(node.args[0].value)
            if inner is None or axis is None or axis in (-1, 2):
                return None
            return _Width(None, inner.features, inner.why, inner.layers)
        call = calls_by_node(self.ctx.facts).get(id(node))
        if call is None or call.has_star_args:
            return None
        first = call.positional(0)
        if call.qualname in KEEP_FUNCTIONS and first is not None:
            return self.of(first, scope, stmt, depth + 1)
        module = bound_module_call(self.ctx.facts, self.ctx.evaluator, call.dotted, scope)
        if module is not None and module.qualname in KEEP_MODULES and first is not None:
            return self.of(first, scope, stmt, depth + 1)
        if call.qualname in _CAT and isinstance(first, (cst.List, cst.Tuple)):
            return self._cat(call, first, scope, stmt, depth)
        return None

    def _cat(self, call: CallFact, seq, scope, stmt, depth) -> Optional[_Width]:  # type: ignore[no-untyped-def]
        dim_node = call.arg(1, "dim")
        dim = 0 if dim_node is None else int_value(dim_node)
        if dim is None:
            return None
        parts = [self.of(e.value, scope, stmt, depth + 1) for e in seq.elements]
        if not parts or any(p is None for p in parts):
            return None
        ranks = {p.rank for p in parts}  # type: ignore[union-attr]
        rank = ranks.pop() if len(ranks) == 1 else None
        if dim != -1 and (rank is None or dim != rank - 1):
            return None
        total = sum(p.features for p in parts)  # type: ignore[union-attr]
        pieces = " + ".join(str(p.features) for p in parts)  # type: ignore[union-attr]
        layers = tuple(l for p in parts for l in p.layers)  # type: ignore[union-attr]
        names = sorted({describe(l) for l in layers})
        return _Width(rank, total, f"torch.cat of states of {', '.join(names)} ({pieces} = {total} features)", layers)


def _head_in_features(ctx: Context, module: CallFact) -> Optional[Tuple[cst.BaseExpression, CallFact]]:
    """The in_features argument of an nn.Linear head (or the first Linear of an nn.Sequential)."""
    if module.has_star_args:
        return None
    if module.qualname == "torch.nn.Linear":
        node = module.arg(0, "in_features")
        return (node, module) if node is not None else None
    if module.qualname == "torch.nn.Sequential":
        table = calls_by_node(ctx.facts)
        for arg in module.args:
            if arg.keyword is not None or arg.star:
                return None
            inner = table.get(id(arg.value))
            if inner is None:
                return None
            if inner.qualname == "torch.nn.Linear":
                return _head_in_features(ctx, inner)
            if inner.qualname not in KEEP_MODULES or inner.qualname == "torch.nn.LayerNorm":
                return None
    return None


@rule(
    RuleMeta(
        "RNN506",
        "head-size-mismatch",
        Severity.ERROR,
        ("torch",),
        "The layer after the RNN expects in_features != hidden_size * num_directions (or proj_size).",
    )
)
class HeadSizeMismatch(Rule):
    def check(self, ctx: Context) -> None:
        if not _torch_layers(ctx):
            return
        widths = _Widths(ctx)
        reported: Set[int] = set()
        for call in ctx.facts.calls:
            if call.scope.kind != "function" or not (call.dotted or "").startswith("self."):
                continue
            module = bound_module_call(ctx.facts, ctx.evaluator, call.dotted, call.scope)
            if module is None or module.qualname not in ("torch.nn.Linear", "torch.nn.Sequential"):
                continue
            head = _head_in_features(ctx, module)
            arg = call.arg(0, "input")
            if head is None or arg is None or call.has_star_args:
                continue
            in_node, linear = head
            in_features = ctx.evaluator.value(in_node, linear.scope)
            if not known(in_features) or not isinstance(in_features, int) or isinstance(in_features, bool):
                continue
            width = widths.of(arg, call.scope, call.stmt)
            if width is None or width.features == in_features or id(in_node) in reported:
                continue
            reported.add(id(in_node))
            ctx.report(
                in_node,
                f"nn.Linear(in_features={in_features}) in {call.dotted} receives {_code(ctx, arg)}, "
                f"{width.why}",
                linear.stmt,
            )


# -- RNN514 ------------------------------------------------------------------------------


def _first_axis_indices(node: cst.Subscript, total: Optional[int]) -> Optional[List[int]]:
    """Literal indices selected on h_n's first axis (negative when `total` is unknown)."""
    index = single_int_index(node)
    if index is not None:
        if total is None:
            return [index] if index < 0 else None
        return [index % total] if -total <= index < total else None
    first = node.slice[0].slice if node.slice else None
    if not isinstance(first, cst.Slice) or first.step is not None:
        return None
    if not all(is_full_slice(e) for e in node.slice[1:]):
        return None
    lower = int_value(first.lower) if first.lower is not None else None
    upper = int_value(first.upper) if first.upper is not None else None
    if (first.lower is not None and lower is None) or (first.upper is not None and upper is None):
        return None
    if total is None:
        if lower is not None and lower < 0 and upper is None:
            return list(range(lower, 0))
        return None
    return list(range(total))[slice(lower, upper)]


@rule(
    RuleMeta(
        "RNN514",
        "bidirectional-state-indexing",
        Severity.WARNING,
        ("torch",),
        "h_n[-1] or h_n[:k] of a bidirectional RNN read as if it held one direction per layer.",
    )
)
class BidirectionalStateIndexing(Rule):
    def check(self, ctx: Context) -> None:
        groups: Dict[Tuple[int, int], List[Tuple[SubscriptFact, RecurrentResult]]] = {}
        members = _cat_members(ctx)
        chained = _chained(ctx)
        for sub in ctx.facts.subscripts:
            result = _result_of_subscript(ctx, sub)
            if result is None or result.part not in ("h_n", "c_n"):
                continue
            if result.layer.get("bidirectional") is not True:
                continue
            if isinstance(sub.node.value, cst.Name) and id(sub.node) in chained:
                continue
            groups.setdefault((id(result.call), id(sub.scope)), []).append((sub, result))
        for entries in groups.values():
            self._check_group(ctx, entries, members)

    def _check_group(self, ctx: Context, entries, members) -> None:  # type: ignore[no-untyped-def]
        layer = entries[0][1].layer
        layers = layer.get("num_layers")
        total = 2 * layers if isinstance(layers, int) and not isinstance(layers, bool) and layers > 0 else None
        selected: Set[int] = set()
        first_sub: Optional[SubscriptFact] = None
        for sub, _ in entries:
            cat = members.get(id(sub.node))
            if cat is not None and not self._pure_state_cat(ctx, cat, entries):
                return  # combined with other features (e.g. the forward output): a deliberate mix
            indices = _first_axis_indices(sub.node, total)
            if indices is None:
                return  # an index or slice we cannot read: stay silent
            selected.update(indices)
            if first_sub is None:
                first_sub = sub
        if not selected or first_sub is None:
            return
        name = describe(layer)
        if total is None:
            if selected == {-1}:
                self._report(ctx, entries, -1, f"h_n[-1] of bidirectional {name} is only the backward "
                             "direction of the last layer (h_n is ordered layer 0 forward, layer 0 "
                             "backward, layer 1 forward, ...); concatenate h_n[-2] and h_n[-1]")
            return
        top = {total - 2, total - 1}
        if top <= selected:
            return
        if len(selected) == 1:
            index = next(iter(selected))
            direction = "backward" if index % 2 else "forward"
            which = "the last layer" if index // 2 == layers - 1 else f"layer {index // 2}"
            self._report(ctx, entries, None, f"{_code(ctx, first_sub.node)} of bidirectional {name} "
                         f"(num_layers={layers}) is only the {direction} direction of {which}; "
                         "concatenate h_n[-2] and h_n[-1] (or view h_n as (layers, 2, batch, hidden))")
            return
        used_layers = sorted({i // 2 for i in selected})
        if layers - 1 not in used_layers:
            listed = ", ".join(str(i) for i in used_layers)
            cat = members.get(id(first_sub.node))
            text = _code(ctx, cat) if cat is not None else _code(ctx, first_sub.node)
            self._report(ctx, entries, None, f"{text} of bidirectional {name} (num_layers={layers}) "
                         f"takes layer {listed}, not the top layer {layers - 1}; h_n is ordered layer 0 "
                         "forward, layer 0 backward, layer 1 forward, ...: use h_n[-2] and h_n[-1]")
        elif len(selected & top) == 1:
            self._report(ctx, entries, None, f"{_code(ctx, first_sub.node)} of bidirectional {name} "
                         f"(num_layers={layers}) keeps only one direction of the top layer; use "
                         "h_n[-2] and h_n[-1]")

    @staticmethod
    def _pure_state_cat(ctx: Context, cat: cst.Call, entries) -> bool:  # type: ignore[no-untyped-def]
        nodes = {id(sub.node) for sub, _ in entries}
        call = calls_by_node(ctx.facts).get(id(cat))
        seq = call.positional(0) if call is not None else None
        if not isinstance(seq, (cst.List, cst.Tuple)):
            return False
        return all(id(e.value) in nodes for e in seq.elements)

    @staticmethod
    def _report(ctx: Context, entries, index: Optional[int], message: str) -> None:  # type: ignore[no-untyped-def]
        target = entries[0][0]
        if index is not None:
            for sub, _ in entries:
                if single_int_index(sub.node) == index:
                    target = sub
                    break
        ctx.report(target.node, message, target.stmt)


# -- RNN510 ------------------------------------------------------------------------------

_KERAS_PASS_THROUGH = frozenset(
    "keras.layers." + n
    for n in ("Dropout", "SpatialDropout1D", "GaussianNoise", "GaussianDropout", "AlphaDropout",
              "BatchNormalization", "LayerNormalization", "Activation", "ActivityRegularization",
              "Masking", "UnitNormalization")
)


class _KerasLayers:
    """Classifies a keras layer expression: a recurrent layer, a pass-through layer, or other."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.by_node: Dict[int, RecurrentLayer] = {}
        for layer in ctx.layers:
            if layer.framework == "keras" and not layer.cell:
                self.by_node[id(layer.call.node)] = layer
                if layer.wrapper is not None:
                    self.by_node[id(layer.wrapper.node)] = layer

    def classify(self, node: Optional[cst.CSTNode]) -> Tuple[str, Optional[RecurrentLayer]]:
        if node is None:
            return "other", None
        layer = self.by_node.get(id(node))
        if layer is not None:
            return "recurrent", layer
        call = calls_by_node(self.ctx.facts).get(id(node))
        if call is not None and call.qualname in _KERAS_PASS_THROUGH:
            return "pass", None
        if call is not None and call.qualname in ("keras.layers.Input", "keras.Input", "keras.layers.InputLayer"):
            return "input", None
        return "other", None


def _returns_last_only(layer: RecurrentLayer) -> bool:
    return layer.get("return_sequences") is False and layer.get("return_state") is False


@rule(
    RuleMeta(
        "RNN510",
        "keras-stacked-without-sequences",
        Severity.ERROR,
        ("keras",),
        "A keras recurrent layer feeding another recurrent layer without return_sequences=True.",
    )
)
class KerasStackedWithoutSequences(Rule):
    def check(self, ctx: Context) -> None:
        if not ctx.has_recurrent("keras"):
            return
        kinds = _KerasLayers(ctx)
        self.reported: Set[int] = set()
        self._sequential_lists(ctx, kinds)
        self._add_runs(ctx, kinds)
        self._functional(ctx, kinds)

    def _fire(self, ctx: Context, upstream: RecurrentLayer, downstream: RecurrentLayer) -> None:
        if id(upstream.call.node) in self.reported:
            return
        self.reported.add(id(upstream.call.node))
        up = upstream.wrapper.node if upstream.wrapper is not None else upstream.call.node
        down = downstream.wrapper.node if downstream.wrapper is not None else downstream.call.node
        ctx.report(
            upstream.call.node,
            f"{_code(ctx, up)} feeds {_code(ctx, down)} but returns only its last output "
            "(return_sequences=False), a 2-D (batch, units) tensor; set return_sequences=True on "
            "every recurrent layer that feeds another one",
            upstream.call.stmt,
        )

    def _step(self, ctx: Context, kinds: _KerasLayers, previous: Optional[RecurrentLayer], node) -> Optional[RecurrentLayer]:  # type: ignore[no-untyped-def]
        """Advance a chain by one layer; returns the recurrent layer whose output flows on."""
        kind, layer = kinds.classify(node)
        if kind == "recurrent":
            assert layer is not None
            if previous is not None and _returns_last_only(previous):
                self._fire(ctx, previous, layer)
            return layer
        if kind == "pass":
            return previous
        return None

    def _sequential_lists(self, ctx: Context, kinds: _KerasLayers) -> None:
        for call in ctx.facts.calls:
            if not _is_sequential(call):
                continue
            previous: Optional[RecurrentLayer] = None
            for element in _list_elements(call):
                previous = self._step(ctx, kinds, previous, element)

    def _add_runs(self, ctx: Context, kinds: _KerasLayers) -> None:
        """model.add(...) statements that follow each other in one block."""
        for scope in ctx.facts.scopes:
            if scope.kind == "class":
                continue
            body = scope.node.body if isinstance(scope.node, cst.FunctionDef) else scope.node
            for block in _blocks(body):
                chains: Dict[str, Optional[RecurrentLayer]] = {}
                for stmt in block:
                    if not isinstance(stmt, cst.SimpleStatementLine):
                        chains = {}
                        continue
                    for small in stmt.body:
                        self._add_statement(ctx, kinds, small, chains)

    def _add_statement(self, ctx: Context, kinds: _KerasLayers, small, chains) -> None:  # type: ignore[no-untyped-def]
        table = calls_by_node(ctx.facts)
        if isinstance(small, cst.Expr) and isinstance(small.value, cst.Call):
            call = table.get(id(small.value))
            if call is not None and call.method == "add" and call.receiver_dotted and len(call.args) == 1:
                model = call.receiver_dotted
                chains[model] = self._step(ctx, kinds, chains.get(model), call.args[0].value)
                return
        if isinstance(small, cst.Assign):
            for target in small.targets:
                name = dotted_name(target.target)
                if name is None:
                    continue
                built = table.get(id(small.value))
                previous: Optional[RecurrentLayer] = None
                if built is not None and _is_sequential(built):
                    for element in _list_elements(built):
                        previous = self._step(ctx, kinds, previous, element)
                chains[name] = previous
            return
        # Anything else that mentions a model ends its run.
        for node in walk_expr(small):
            name = dotted_name(node) if isinstance(node, (cst.Name, cst.Attribute)) else None
            if name in chains:
                chains.pop(name, None)

    def _functional(self, ctx: Context, kinds: _KerasLayers) -> None:
        """h = LSTM(64)(inputs); h = LSTM(32)(h)."""
        for call in ctx.facts.calls:
            kind, layer = kinds.classify(call.node.func)
            if kind != "recurrent" or layer is None:
                continue
            source = self._source(ctx, kinds, call.positional(0), call.scope, call.stmt, 0)
            if source is not None and _returns_last_only(source):
                self._fire(ctx, source, layer)

    def _source(self, ctx: Context, kinds: _KerasLayers, node, scope: Scope, stmt, depth: int) -> Optional[RecurrentLayer]:  # type: ignore[no-untyped-def]
        """The recurrent layer whose output `node` is, through pass-through layers."""
        if node is None or depth > 8:
            return None
        if isinstance(node, cst.Name):
            binding = flow_index(ctx.facts, scope).binding_at(node.value, stmt)
            if binding is None or binding.value is None or binding.path:
                return None
            return self._source(ctx, kinds, binding.value, scope, binding.stmt, depth + 1)
        if isinstance(node, cst.Call):
            kind, layer = kinds.classify(node.func)
            if kind == "recurrent":
                return layer
            if kind == "pass" and node.args:
                return self._source(ctx, kinds, node.args[0].value, scope, stmt, depth + 1)
        return None


def _is_sequential(call: CallFact) -> bool:
    name = call.qualname or ""
    return name.startswith("keras.") and name.endswith(".Sequential")


def _list_elements(call: CallFact) -> List[cst.BaseExpression]:
    layers = call.arg(0, "layers")
    if isinstance(layers, (cst.List, cst.Tuple)):
        return [e.value for e in layers.elements if not isinstance(e, cst.StarredElement)]
    return []


def _blocks(node: cst.CSTNode):  # type: ignore[no-untyped-def]
    """Every statement list in a body, not entering nested functions or classes."""
    if isinstance(node, cst.Module):
        yield node.body
        statements = node.body
    elif isinstance(node, cst.IndentedBlock):
        yield node.body
        statements = node.body
    else:
        return
    for stmt in statements:
        if isinstance(stmt, (cst.FunctionDef, cst.ClassDef)):
            continue
        from rnnlint.analysis.walker import iter_children

        stack = list(iter_children(stmt))
        while stack:
            child = stack.pop()
            if isinstance(child, cst.IndentedBlock):
                yield from _blocks(child)
            elif not isinstance(child, (cst.FunctionDef, cst.ClassDef, cst.BaseExpression)):
                stack.extend(iter_children(child))


# -- RNN511 ------------------------------------------------------------------------------

_BATCH_NAME = re.compile(r"batch|bsz|^bs$|^b$|^n$|n_?samples|num_?samples", re.I)
_TIME_NAME = re.compile(r"seq|time|step|window|look_?back|lag|history|^t$|^l$|win_?len|len", re.I)
_LAYOUT_CHANGE = frozenset({"transpose", "permute", "t", "swapaxes", "swapdims", "movedim", "view", "reshape",
                            "unsqueeze", "squeeze", "flatten", "unflatten", "expand", "repeat", "flip", "T", "mT"})
_INPUT_KEEP_MODULES = KEEP_MODULES | {"torch.nn.Embedding", "torch.nn.Linear"}
_DATALOADER = "torch.utils.data.DataLoader"


def _batch_like(node: cst.CSTNode) -> bool:
    """-1, x.size(0), x.shape[0], len(x) or a batch-size name."""
    if int_value(node) == -1:
        return True
    if isinstance(node, cst.Call) and isinstance(node.func, cst.Attribute) and node.func.attr.value == "size":
        return len(node.args) == 1 and int_value(node.args[0].value) == 0
    if isinstance(node, cst.Subscript) and isinstance(node.value, cst.Attribute) and node.value.attr.value == "shape":
        return single_int_index(node) == 0
    if isinstance(node, cst.Call) and dotted_name(node.func) == "len":
        return True
    dotted = dotted_name(node)
    return dotted is not None and bool(_BATCH_NAME.search(dotted.rsplit(".", 1)[-1]))


def _time_like(node: cst.CSTNode) -> bool:
    dotted = dotted_name(node)
    return dotted is not None and bool(_TIME_NAME.search(dotted.rsplit(".", 1)[-1])) and not _BATCH_NAME.search(dotted.rsplit(".", 1)[-1])


def _batch_major_reshape(node: cst.CSTNode) -> Optional[str]:
    """`x.view(batch, seq, -1)` / `x.reshape(-1, seq_len, n_features)`: the shape text, else None."""
    if not (isinstance(node, cst.Call) and isinstance(node.func, cst.Attribute) and node.func.attr.value in ("view", "reshape")):
        return None
    args = [a.value for a in node.args if a.keyword is None and not a.star]
    if len(args) == 1 and isinstance(args[0], (cst.Tuple, cst.List)):
        args = [e.value for e in args[0].elements]
    if len(args) != 3:
        return None
    if _batch_like(args[0]) and _time_like(args[1]):
        return "(" + ", ".join(cst.Module([]).code_for_node(a) for a in args) + ")"
    return None


# -- RNN511: arrays of sliding windows (one window per row) -------------------------------

_STACK_FUNCTIONS = frozenset({"numpy.stack", "numpy.array", "numpy.asarray", "torch.stack", "torch.tensor",
                              "torch.Tensor", "torch.FloatTensor", "torch.as_tensor"})
# Conversions that keep an array's layout (numpy -> torch and back, dtype casts).
_CONVERT_FUNCTIONS = frozenset({"numpy.array", "numpy.asarray", "numpy.float32", "torch.tensor", "torch.Tensor",
                                "torch.FloatTensor", "torch.DoubleTensor", "torch.as_tensor", "torch.from_numpy",
                                "torch.autograd.Variable"})
_KEEP_ARRAY_METHODS = KEEP_METHODS | {"astype", "copy", "numpy", "values", "to_numpy"}
_SPLIT = "sklearn.model_selection.train_test_split"


@dataclass
class _Rows:
    """An array whose axis 0 holds one sliding window per row."""

    origin: cst.CSTNode  # the stacking expression
    rank: Optional[int]  # exact rank when known
    min_rank: int  # rank it has at least


class _WindowRows:
    """Follows an array back to a stack of sliding windows (`np.stack([s[i:i + W] for i in ...])`,
    a list filled with `xs.append(data[i:i + W])`), through conversions, axis-0 slices,
    `[..., None]`, `expand_dims`/`unsqueeze` and 3-D reshapes that keep axis 0; anything else
    (a transpose, a reshape that may move axis 0, an unknown call) gives None."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.table = calls_by_node(ctx.facts)

    def _qualname(self, node: cst.CSTNode) -> Optional[str]:
        call = self.table.get(id(node))
        return call.qualname if call is not None else None

    def rows(self, node: Optional[cst.CSTNode], scope: Scope, stmt, depth: int = 0) -> Optional[_Rows]:  # type: ignore[no-untyped-def]
        if node is None or depth > 12:
            return None
        if isinstance(node, cst.Name):
            found = self._binding(node.value, scope, stmt)
            if found is None:
                return None
            value, path, bound_scope, bound_stmt = found
            if path:
                value, bound_scope, bound_stmt = self._unpacked(value, path, bound_scope, bound_stmt)
            return self.rows(value, bound_scope, bound_stmt, depth + 1)
        if isinstance(node, cst.Attribute) and node.attr.value == "values":
            return self.rows(node.value, scope, stmt, depth + 1)
        if isinstance(node, cst.Subscript):
            return self._subscript(node, scope, stmt, depth)
        if not isinstance(node, cst.Call):
            return None
        func = node.func
        qualname = self._qualname(node)
        args = [a for a in node.args if a.keyword is None]
        if any(a.star for a in node.args):
            return None
        if qualname in _STACK_FUNCTIONS and len(args) >= 1:
            if qualname.endswith("stack") and (len(args) > 1 or any(
                a.keyword is not None and a.keyword.value in ("axis", "dim") and int_value(a.value) != 0
                for a in node.args
            )):
                return None
            window_rank = self._window_list(args[0].value, scope, stmt)
            if window_rank is not False:
                rank = None if window_rank is None else window_rank + 1
                return _Rows(node, rank, rank or 2)
        if qualname in _CONVERT_FUNCTIONS and len(args) == 1:
            return self.rows(args[0].value, scope, stmt, depth + 1)
        function = self.ctx.facts.functions.get(dotted_name(func) or "")
        if function is not None and len(function.returns) == 1:
            returned = function.returns[0]  # X = make_windows(series, W)
            return self.rows(returned, function, _return_statement(function, returned), depth + 1)
        if qualname in ("numpy.expand_dims", "torch.unsqueeze") and len(node.args) == 2:
            return self._expanded(self.rows(node.args[0].value, scope, stmt, depth + 1), node.args[1].value)
        if qualname == "numpy.reshape" and len(node.args) == 2 and node.args[0].keyword is None:
            inner = self.rows(node.args[0].value, scope, stmt, depth + 1)
            return self._reshaped(inner, [node.args[1].value])
        if not isinstance(func, cst.Attribute):
            return None
        method = func.attr.value
        if method in _KEEP_ARRAY_METHODS:
            return self.rows(func.value, scope, stmt, depth + 1)
        if method == "unsqueeze" and len(node.args) == 1:
            return self._expanded(self.rows(func.value, scope, stmt, depth + 1), node.args[0].value)
        if method in ("reshape", "view") and node.args and all(a.keyword is None for a in node.args):
            inner = self.rows(func.value, scope, stmt, depth + 1)
            return self._reshaped(inner, [a.value for a in node.args])
        return None

    # -- steps -------------------------------------------------------------------------

    @staticmethod
    def _expanded(inner: Optional[_Rows], axis: cst.BaseExpression) -> Optional[_Rows]:
        value = int_value(axis)
        if inner is None or value is None or value == 0 or (value < 0 and value != -1):
            return None  # a new axis 0 pushes the windows to axis 1
        if value > 0 and inner.rank is not None and value > inner.rank:
            return None
        return _Rows(inner.origin, None if inner.rank is None else inner.rank + 1, inner.min_rank + 1)

    @staticmethod
    def _reshaped(inner: Optional[_Rows], sizes: List[cst.BaseExpression]) -> Optional[_Rows]:
        if inner is None:
            return None
        if len(sizes) == 1 and isinstance(sizes[0], (cst.Tuple, cst.List)):
            sizes = [e.value for e in sizes[0].elements if not isinstance(e, cst.StarredElement)]
        if len(sizes) != 3:
            return None
        first = sizes[0]
        if int_value(first) == -1:
            if all(int_value(s) == 1 for s in sizes[1:]):
                return None  # (-1, 1, 1): every value becomes a row
        elif not _batch_like(first):
            return None
        return _Rows(inner.origin, 3, 3)

    def _subscript(self, node: cst.Subscript, scope: Scope, stmt, depth: int) -> Optional[_Rows]:  # type: ignore[no-untyped-def]
        elements = list(node.slice)
        if not elements:
            return None
        first = elements[0].slice
        added = 0
        if isinstance(first, cst.Slice):
            if first.step is not None:
                return None
        elif not (isinstance(first, cst.Index) and isinstance(first.value, cst.Ellipsis)):
            return None  # x[idx] picks rows by index, x[None] adds axis 0
        for element in elements[1:]:
            index = element.slice
            if isinstance(index, cst.Slice) and is_full_slice(element):
                continue
            if isinstance(index, cst.Index) and dotted_name(index.value) in ("None", "np.newaxis", "numpy.newaxis"):
                added += 1
                continue
            if isinstance(index, cst.Index) and isinstance(index.value, cst.Ellipsis) and isinstance(first, cst.Slice):
                continue
            return None
        inner = self.rows(node.value, scope, stmt, depth + 1)
        if inner is None:
            return None
        if isinstance(first, cst.Index) and added and len(elements) > 2:
            return None  # [..., None, :]: where the new axis goes depends on the rank
        return _Rows(inner.origin, None if inner.rank is None else inner.rank + added, inner.min_rank + added)

    # -- windows -----------------------------------------------------------------------

    def _window_list(self, node: cst.BaseExpression, scope: Scope, stmt):  # type: ignore[no-untyped-def]
        """A list of windows: False when it is not one, else the rank of a window (None if unknown)."""
        if isinstance(node, (cst.ListComp, cst.GeneratorExp)):
            loop_names = set()
            clause: Optional[cst.CompFor] = node.for_in
            while clause is not None:
                loop_names.update(n for n, _ in target_paths(clause.target))
                clause = clause.inner_for_in
            return self._window(node.elt, loop_names, scope, stmt)
        if not isinstance(node, cst.Name):
            return False
        name = node.value
        binding = flow_index(self.ctx.facts, scope).binding_at(name, stmt)
        if binding is None:
            return False
        value = binding.value
        if binding.path:  # xs, ys = [], []
            value, _, _ = self._unpacked(value, binding.path, scope, stmt) if isinstance(value, cst.Tuple) else (None, 0, 0)
        if not isinstance(value, cst.List) or value.elements:
            return False
        appends = [
            c for c in self.ctx.facts.calls
            if c.scope is scope and c.dotted is not None and c.dotted.split(".", 1)[0] == name and c.dotted != name
        ]
        ranks = set()
        for call in appends:
            if call.dotted != name + ".append" or len(call.args) != 1 or call.loop is None:
                return False
            loop_names = {t for loop in call.loop.ancestors() for t in loop.target_names}
            rank = self._window(call.args[0].value, loop_names, scope, call.stmt)
            if rank is False:
                return False
            ranks.add(rank)
        if not appends or len(ranks) != 1 or flow_index(self.ctx.facts, scope).count(name) != 1:
            return False
        return ranks.pop()

    def _window(self, node: cst.BaseExpression, loop_names: Set[str], scope: Scope, stmt):  # type: ignore[no-untyped-def]
        """`data[i:i + W]`, `data[i - W:i, 0]`, `data[i:i + W, :]`: a window whose bounds use the
        loop variable; False when it is not one, else its rank (None when unknown)."""
        if isinstance(node, cst.Name):  # a = dataset[i:i + look_back, 0]; xs.append(a)
            binding = flow_index(self.ctx.facts, scope).binding_at(node.value, stmt)
            if binding is None or binding.path or binding.value is None:
                return False
            node, stmt = binding.value, binding.stmt
        while isinstance(node, cst.Attribute) and node.attr.value == "values":
            node = node.value
        if not isinstance(node, cst.Subscript) or not node.slice:
            return False
        first = node.slice[0].slice
        if not isinstance(first, cst.Slice) or first.lower is None or first.upper is None or first.step is not None:
            return False
        bounds = {n.value for part in (first.lower, first.upper) for n in walk_expr(part) if isinstance(n, cst.Name)}
        if not bounds & loop_names:
            return False
        dropped = 0
        for element in node.slice[1:]:
            index = element.slice
            if isinstance(index, cst.Slice) and is_full_slice(element):
                continue
            if isinstance(index, cst.Index) and int_value(index.value) is not None:
                dropped += 1
                continue
            if isinstance(index, cst.Slice):
                continue  # a partial slice keeps the axis
            return False
        base_rank = self._base_rank(node.value, scope, stmt)
        if base_rank is None or base_rank < len(node.slice):
            return None
        return base_rank - dropped

    def _base_rank(self, node: cst.BaseExpression, scope: Scope, stmt) -> Optional[int]:  # type: ignore[no-untyped-def]
        """The rank of the array windows are cut from, when the file shows it."""
        for _ in range(4):
            if not isinstance(node, cst.Name):
                break
            if scope.kind == "function" and node.value in scope.params:
                return self._param_rank(scope, node.value)
            found = self._binding(node.value, scope, stmt)
            if found is None or found[1]:
                return None
            node, _, scope, stmt = found
        if isinstance(node, cst.Call) and isinstance(node.func, cst.Attribute):
            method = node.func.attr.value
            if method in ("fit_transform", "transform") and node.args:
                return 2  # sklearn scalers return (samples, features)
            if method in ("reshape",) and len(node.args) == 2 and int_value(node.args[1].value) == 1:
                return 2  # series.reshape(-1, 1)
            if method == "to_numpy" and not node.args:
                return self._frame_rank(node.func.value)
        if isinstance(node, cst.Attribute) and node.attr.value == "values":
            return self._frame_rank(node.value)
        return None

    def _param_rank(self, function: Scope, param: str) -> Optional[int]:
        """The rank every call of a module-level function passes for `param` (the data a
        create_dataset(data, look_back) helper cuts windows from)."""
        if function.parent is not self.ctx.facts.module_scope or flow_index(self.ctx.facts, function).count(param):
            return None
        index = function.param_order.index(param)
        ranks = set()
        for call in self.ctx.facts.calls:
            if call.dotted != function.name:
                continue
            given = call.arg(index, param)
            if given is None or call.has_star_args or call.scope is function:
                return None
            ranks.add(self._base_rank(given, call.scope, call.stmt))
        return ranks.pop() if len(ranks) == 1 else None

    @staticmethod
    def _frame_rank(node: cst.BaseExpression) -> Optional[int]:
        """df["col"] -> 1, df[["a", "b"]] -> 2."""
        if isinstance(node, cst.Subscript) and len(node.slice) == 1 and isinstance(node.slice[0].slice, cst.Index):
            key = node.slice[0].slice.value
            if isinstance(key, cst.SimpleString):
                return 1
            if isinstance(key, cst.List):
                return 2
        return None

    # -- names -------------------------------------------------------------------------

    def _binding(self, name: str, scope: Scope, stmt):  # type: ignore[no-untyped-def]
        """(value, tuple path, scope, statement) of the assignment a use of `name` sees; a module
        name read in a function that does not bind it counts when the module binds it once."""
        flow = flow_index(self.ctx.facts, scope)
        binding = flow.binding_at(name, stmt)
        if binding is None and scope.kind == "function" and flow.count(name) == 0 and name not in scope.params:
            module = self.ctx.facts.module_scope
            module_flow = flow_index(self.ctx.facts, module)
            if scope.parent is module and module_flow.count(name) == 1:
                binding = module_flow.bindings[name][0]
                scope = module
            elif scope.parent is module and module_flow.count(name) > 1:
                # rebound at module level: the binding every module-level call of the function sees
                seen = {
                    id(b): b for c in self.ctx.facts.calls
                    if c.scope is module and c.dotted == scope.name
                    for b in [module_flow.binding_at(name, c.stmt)]
                }
                if len(seen) == 1 and None not in [b for b in seen.values()]:
                    binding = next(iter(seen.values()))
                    scope = module
        if binding is None or binding.value is None:
            return None
        return binding.value, binding.path, scope, binding.stmt

    def _unpacked(self, value: cst.BaseExpression, path: Tuple[int, ...], scope: Scope, stmt):  # type: ignore[no-untyped-def]
        """The expression behind one name of a tuple target, or (None, ...) when unknown."""
        if len(path) != 1 or path[0] < 0:
            return None, scope, stmt
        index = path[0]
        if isinstance(value, (cst.Tuple, cst.List)):
            elements = value.elements
            if index < len(elements) and not isinstance(elements[index], cst.StarredElement):
                return elements[index].value, scope, stmt
            return None, scope, stmt
        if not isinstance(value, cst.Call):
            return None, scope, stmt
        call = self.table.get(id(value))
        if call is None or call.has_star_args:
            return None, scope, stmt
        if call.qualname == _SPLIT:
            arrays = [a.value for a in call.args if a.keyword is None]
            # train_test_split(X, y) -> X_train, X_test, y_train, y_test
            if index // 2 < len(arrays):
                return arrays[index // 2], scope, stmt
            return None, scope, stmt
        function = self.ctx.facts.functions.get(call.dotted or "")
        if function is None or len(function.returns) != 1:
            return None, scope, stmt
        returned = function.returns[0]
        if not isinstance(returned, cst.Tuple) or index >= len(returned.elements):
            return None, scope, stmt
        element = returned.elements[index]
        if isinstance(element, cst.StarredElement):
            return None, scope, stmt
        return element.value, function, _return_statement(function, returned)


def _window_evidence(ctx: Context, node: Optional[cst.BaseExpression], scope: Scope, stmt) -> Optional[str]:  # type: ignore[no-untyped-def]
    """Evidence that `node` is a 3-D array of sliding windows, one per row (axis 0)."""
    if node is None:
        return None
    trace = ctx.facts.cache.get("rnn511.window_rows")
    if trace is None:
        trace = _WindowRows(ctx)
        ctx.facts.cache["rnn511.window_rows"] = trace
    rows = trace.rows(node, scope, stmt)  # type: ignore[attr-defined]
    if rows is None or (rows.rank if rows.rank is not None else rows.min_rank) != 3:
        return None
    return f"{_code(ctx, node)} (sliding windows stacked one per row by {_code(ctx, rows.origin)})"


def _return_statement(function: Scope, value: cst.BaseExpression) -> Optional[cst.CSTNode]:
    """The statement line holding `return value` in the function's body."""
    for node in walk_expr(function.node.body):  # type: ignore[attr-defined]
        if isinstance(node, cst.SimpleStatementLine) and any(
            isinstance(small, cst.Return) and small.value is value for small in node.body
        ):
            return node
    return None


class _InputTrace:
    """Follows a time-major layer's input back to what produced it."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def origin(self, node: Optional[cst.BaseExpression], scope: Scope, stmt, depth: int = 0):  # type: ignore[no-untyped-def]
        """("param", name) when the input is the function's parameter (through layout-keeping
        steps), ("reshape", text) for a batch-major view/reshape, else None."""
        if node is None or depth > 8:
            return None
        if depth == 0:
            windows = _window_evidence(self.ctx, node, scope, stmt)
            if windows is not None:
                return ("rows", windows)
        if isinstance(node, cst.Name):
            if node.value in scope.params:
                binding = flow_index(self.ctx.facts, scope).binding_at(node.value, stmt)
                if binding is None and flow_index(self.ctx.facts, scope).count(node.value) == 0:
                    return ("param", node.value)
                if binding is None:
                    return None
            binding = flow_index(self.ctx.facts, scope).binding_at(node.value, stmt)
            if binding is None or binding.value is None or binding.path:
                return None
            return self.origin(binding.value, scope, binding.stmt, depth + 1)
        if isinstance(node, cst.Call):
            reshaped = _batch_major_reshape(node)
            if reshaped is not None:
                return ("reshape", reshaped)
            func = node.func
            if isinstance(func, cst.Attribute) and func.attr.value in _LAYOUT_CHANGE:
                return None
            if isinstance(func, cst.Attribute) and func.attr.value in KEEP_METHODS:
                return self.origin(func.value, scope, stmt, depth + 1)
            call = calls_by_node(self.ctx.facts).get(id(node))
            if call is None or call.has_star_args:
                return None
            first = call.positional(0)
            if call.qualname in KEEP_FUNCTIONS:
                return self.origin(first, scope, stmt, depth + 1)
            module = bound_module_call(self.ctx.facts, self.ctx.evaluator, call.dotted, scope)
            if module is not None and module.qualname in _INPUT_KEEP_MODULES:
                return self.origin(first, scope, stmt, depth + 1)
        return None


def _model_names(ctx: Context, cls: Scope) -> List[Tuple[str, Scope]]:
    """Names bound to an instance of `cls`: model = Cls(...) or Cls(...).to(device)."""
    out = []
    for assign in ctx.facts.assigns:
        if assign.unpack_index is not None or assign.aug_op is not None:
            continue
        node = assign.value
        while isinstance(node, cst.Call) and isinstance(node.func, cst.Attribute) and node.func.attr.value in KEEP_METHODS:
            node = node.func.value
        if isinstance(node, cst.Call) and dotted_name(node.func) == cls.name:
            out.append((assign.target, assign.scope))
    return out


def _loader_evidence(ctx: Context, iter_node: Optional[cst.BaseExpression], scope: Scope) -> Optional[str]:
    """A DataLoader with default collation (batches stacked on a new first axis)."""
    node = iter_node
    while isinstance(node, cst.Call) and dotted_name(node.func) in ("enumerate", "tqdm", "tqdm.tqdm", "iter"):
        node = node.args[0].value if node.args else None
    name = dotted_name(node) if node is not None else None
    if name is None:
        return None
    candidates = [a for a in ctx.facts.assigns if a.target == name and a.unpack_index is None and a.aug_op is None]
    loaders = []
    for assign in candidates:
        call = calls_by_node(ctx.facts).get(id(assign.value))
        if call is None or call.qualname != _DATALOADER:
            return None
        loaders.append(call)
    if not loaders:
        return None
    for call in loaders:
        if call.kwarg("collate_fn") is not None or len([a for a in call.args if a.keyword is None]) > 4:
            return None
        size = call.kwarg("batch_size")
        if size is not None and dotted_name(size) == "None":
            return None
    return f"DataLoader batches ({name}: default collation stacks samples on a new first axis)"


def _call_argument_evidence(ctx: Context, call: CallFact) -> Optional[str]:
    """Evidence that the first argument of a model call is laid out batch first."""
    arg = call.positional(0)
    windows = _window_evidence(ctx, arg, call.scope, call.stmt)
    if windows is not None:
        return windows
    if not isinstance(arg, cst.Name):
        while isinstance(arg, cst.Call) and isinstance(arg.func, cst.Attribute) and arg.func.attr.value in KEEP_METHODS:
            arg = arg.func.value
        if not isinstance(arg, cst.Name):
            return None
    name = arg.value
    flow = flow_index(ctx.facts, call.scope)
    stmt = call.stmt
    for _ in range(6):
        binding = flow.binding_at(name, stmt)
        if binding is None:
            return None
        value = binding.value
        if value is not None and len(binding.path) == 1 and isinstance(value, (cst.Tuple, cst.List)):
            # xb, yb = xb.to(device), yb.to(device)
            elements = value.elements
            index = binding.path[0]
            if 0 <= index < len(elements) and not isinstance(elements[index], cst.StarredElement):
                value = elements[index].value
                binding = type(binding)(binding.index, binding.stmt, value, (), binding.blocks)
        if binding.value is not None and not binding.path:
            value = binding.value
            while isinstance(value, cst.Call) and isinstance(value.func, cst.Attribute) and value.func.attr.value in KEEP_METHODS:
                value = value.func.value
            if isinstance(value, cst.Name):
                name, stmt = value.value, binding.stmt
                continue
            return None
        if isinstance(binding.stmt, cst.For):
            return _loader_evidence(ctx, binding.stmt.iter, call.scope)
        if binding.value is not None and binding.path and isinstance(binding.value, cst.Name):
            # xb, yb = batch   where   for batch in loader
            inner = flow.binding_at(binding.value.value, binding.stmt)
            if inner is not None and isinstance(inner.stmt, cst.For) and not inner.path:
                return _loader_evidence(ctx, inner.stmt.iter, call.scope)
        return None
    return None


@rule(
    RuleMeta(
        "RNN511",
        "batch-first-data-mismatch",
        Severity.ERROR,
        ("torch",),
        "Data laid out (batch, time, features) fed to nn.RNN/LSTM/GRU built without batch_first=True.",
    )
)
class BatchFirstDataMismatch(Rule):
    def check(self, ctx: Context) -> None:
        layers = [l for l in _torch_layers(ctx) if not l.cell and l.get("batch_first") is False]
        if not layers:
            return
        trace = _InputTrace(ctx)
        for layer in layers:
            calls = [
                c for c in ctx.facts.calls
                if c.dotted == layer.binding and bound_layer(ctx.facts, ctx.evaluator, layers, c) is layer
            ] + _calls_through_instances(ctx, layer)
            if not calls:
                continue
            evidence = self._evidence(ctx, trace, layer, calls)
            if evidence is None:
                continue
            ctx.report(
                layer.call.node,
                f"{describe(layer)} is time-major (batch_first=False: it reads axis 0 as time) but receives "
                f"{evidence}, laid out (batch, time, features) with no transpose before the call: the "
                "recurrence runs over the samples of the batch; pass batch_first=True",
                layer.call.stmt,
            )

    def _evidence(self, ctx: Context, trace: _InputTrace, layer: RecurrentLayer, calls: List[CallFact]) -> Optional[str]:
        found: Optional[str] = None
        for call in calls:
            origin = trace.origin(call.arg(0, "input"), call.scope, call.stmt)
            if origin is None:
                return None  # some call sees an input we cannot read: stay silent
            kind, text = origin
            if kind == "reshape":
                found = found or f"x reshaped to {text}"
                continue
            if kind == "rows":
                found = found or text
                continue
            evidence = self._model_input_evidence(ctx, layer, call.scope, text)
            if evidence is None:
                return None
            found = found or evidence
        return found

    def _model_input_evidence(self, ctx: Context, layer: RecurrentLayer, method: Scope, param: str) -> Optional[str]:
        """The layer reads forward()'s first input: every call of the model must pass batch-major data."""
        cls = method.enclosing_class
        if cls is None or not method.is_method("forward") or layer.owner is not cls:
            return None
        order = [p for p in method.param_order if p != "self"]
        if not order or order[0] != param:
            return None
        names = _model_names(ctx, cls)
        if not names:
            return None
        evidence: Optional[str] = None
        for name, _ in names:
            for call in ctx.facts.calls:
                if call.dotted != name or call.has_star_args:
                    continue
                if _rearranged_argument(ctx, call):
                    return None  # some caller transposes its data: the layout is deliberate
                evidence = evidence or _call_argument_evidence(ctx, call)
        return evidence


def _calls_through_instances(ctx: Context, layer: RecurrentLayer) -> List[CallFact]:
    """`model.lstm(x)` outside the class, where model = Net(...) and Net binds self.lstm once."""
    cls = layer.owner
    binding = layer.binding
    if cls is None or binding is None or not binding.startswith("self.") or binding.count(".") != 1:
        return []
    if len(ctx.evaluator.self_attr_values(cls, binding[5:])) != 1:
        return []
    found = _model_names(ctx, cls)
    names = {name for name, _ in found}
    # a name also bound to something else may hold another model when the call runs
    names = {n for n in names if sum(1 for a in ctx.facts.assigns if a.target == n) == sum(1 for m, _ in found if m == n)}
    wanted = {f"{name}.{binding[5:]}" for name in names}
    return [c for c in ctx.facts.calls if c.dotted in wanted and c.scope.enclosing_class is not cls]


def _rearranged_argument(ctx: Context, call: CallFact) -> bool:
    """The model's input is transposed, permuted or reshaped on its way in."""
    arg = call.arg(0, "input")
    if arg is None:
        return True
    roots: List[cst.CSTNode] = [arg]
    flow = flow_index(ctx.facts, call.scope)
    stmt = call.stmt
    for _ in range(6):
        node = roots[-1]
        while isinstance(node, cst.Call) and isinstance(node.func, cst.Attribute) and node.func.attr.value in KEEP_METHODS:
            node = node.func.value
        if not isinstance(node, cst.Name):
            break
        binding = flow.binding_at(node.value, stmt)
        if binding is None or binding.value is None:
            break
        roots.append(binding.value)
        stmt = binding.stmt
    for root in roots:
        for node in walk_expr(root):
            if isinstance(node, cst.Call) and isinstance(node.func, cst.Attribute) and node.func.attr.value in _LAYOUT_CHANGE:
                return True
            if isinstance(node, cst.Call) and dotted_name(node.func) in ("torch.transpose", "torch.permute", "torch.swapaxes"):
                return True
    return False
