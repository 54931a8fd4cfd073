"""RNN5xx: hidden state and shapes."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterator, List, Optional, Tuple

import libcst as cst

from rnnlint.analysis.facts import CallFact, Scope
from rnnlint.analysis.names import dotted_name
from rnnlint.analysis.walker import iter_children
from rnnlint.analysis.recurrent import RecurrentLayer, layer_bound_to
from rnnlint.analysis.values import known
from rnnlint.findings import Severity
from rnnlint.rules.base import Context, Rule, RuleMeta, rule

STATE_FACTORIES = frozenset(
    "torch." + n for n in ("zeros", "ones", "randn", "rand", "empty", "full", "normal")
)
_CHAIN_METHODS = frozenset({"to", "cuda", "float", "double", "half", "requires_grad_", "detach", "type", "contiguous"})
_INIT_STATE_METHOD = re.compile(r"^(init|initial|initialize|reset|begin|zero)_?(hidden|state|states|hx|h0)$|^init_?hidden", re.I)
_BATCH_WORD = re.compile(r"batch", re.I)
_BATCH_LIKE = re.compile(r"batch|bsz|^bs$|^b$|^N$", re.I)


@dataclass(eq=False)
class StateTensor:
    layer: RecurrentLayer
    creation: CallFact
    dims: List[cst.BaseExpression]
    via_method: Optional[Scope] = None  # init_hidden(...) that builds it


def _calls_by_node(ctx: Context) -> dict:
    table = ctx.facts.cache.get("calls_by_node")
    if table is None:
        table = {id(c.node): c for c in ctx.facts.calls}
        ctx.facts.cache["calls_by_node"] = table
    return table  # type: ignore[return-value]


def _local_value(node: cst.BaseExpression, scope: Scope) -> cst.BaseExpression:
    """Follow a local name assigned exactly once in the same function."""
    if isinstance(node, cst.Name):
        values = scope.assigns.get(node.value)
        if values and len(values) == 1:
            return values[0]
    return node


def _creation(ctx: Context, node: cst.BaseExpression, scope: Scope) -> Optional[CallFact]:
    node = _local_value(node, scope)
    while isinstance(node, cst.Call) and isinstance(node.func, cst.Attribute) and node.func.attr.value in _CHAIN_METHODS:
        node = node.func.value
    if not isinstance(node, cst.Call):
        return None
    call = _calls_by_node(ctx).get(id(node))
    if call is not None and call.qualname in STATE_FACTORIES:
        return call
    return None


def _dims(call: CallFact) -> Optional[List[cst.BaseExpression]]:
    if call.has_star_args:
        return None
    size = call.kwarg("size")
    positional = [a.value for a in call.args if a.keyword is None]
    if size is None and len(positional) == 1 and isinstance(positional[0], (cst.Tuple, cst.List)):
        size = positional[0]
    if size is not None:
        if isinstance(size, (cst.Tuple, cst.List)):
            return [e.value for e in size.elements]
        return None
    if call.qualname in ("torch.full", "torch.normal"):
        return None
    return positional


def _state_elements(node: cst.BaseExpression, scope: Scope) -> List[cst.BaseExpression]:
    node = _local_value(node, scope)
    if isinstance(node, (cst.Tuple, cst.List)):
        return [e.value for e in node.elements]
    return [node]


def state_tensors(ctx: Context) -> List[StateTensor]:
    cached = ctx.facts.cache.get("state_tensors")
    if cached is not None:
        return cached  # type: ignore[return-value]
    out: List[StateTensor] = []
    torch_layers = [l for l in ctx.layers if l.framework == "torch" and not l.cell]
    seen = set()
    # 1. States passed where the layer is called: self.lstm(x, (h0, c0)).
    for call in ctx.facts.calls:
        layer = layer_bound_to(torch_layers, call.dotted, call.scope)
        if layer is None:
            continue
        state = call.arg(1, "hx")
        if state is None:
            continue
        for element in _state_elements(state, call.scope):
            creation = _creation(ctx, element, call.scope)
            if creation is not None and id(creation) not in seen:
                dims = _dims(creation)
                if dims is not None:
                    seen.add(id(creation))
                    out.append(StateTensor(layer, creation, dims))
    # 2. init_hidden()-style methods of a class with a single recurrent layer.
    for cls in ctx.facts.classes.values():
        owned = [l for l in torch_layers if l.owner is cls]
        if len(owned) != 1:
            continue
        for method in cls.methods.values():
            if not _INIT_STATE_METHOD.match(method.name):
                continue
            for ret in method.returns:
                for element in _state_elements(ret, method):
                    creation = _creation(ctx, element, method)
                    if creation is not None and id(creation) not in seen:
                        dims = _dims(creation)
                        if dims is not None:
                            seen.add(id(creation))
                            out.append(StateTensor(owned[0], creation, dims, via_method=method))
    ctx.facts.cache["state_tensors"] = out
    return out


def _expected_first_dim(layer: RecurrentLayer):  # type: ignore[no-untyped-def]
    layers, directions = layer.get("num_layers"), layer.num_directions
    if known(layers) and known(directions) and isinstance(layers, int):
        return layers * directions
    return None


def _mentions(node: cst.CSTNode, pattern: re.Pattern) -> bool:
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, cst.Name) and pattern.search(current.value):
            return True
        stack.extend(iter_children(current))
    return False


def _is_batch_first_layout(ctx: Context, st: StateTensor) -> bool:
    """(batch, layers, hidden): the first dim speaks of the batch, the second of layers."""
    if len(st.dims) != 3 or st.layer.get("batch_first") is not True:
        return False
    first, second = st.dims[0], st.dims[1]
    batch_like = _mentions(first, _BATCH_LIKE) or _is_size0(first) or _unpacked_size0(ctx, first, st.creation.scope)
    if not batch_like:
        return False
    layers = st.layer.get("num_layers")
    value = ctx.evaluator.value(second, st.creation.scope)
    return (known(value) and value == layers * (st.layer.num_directions or 1)) or _mentions(second, re.compile("layer", re.I))


def _unpacked_size0(ctx: Context, node: cst.CSTNode, scope: Scope) -> bool:
    """`n` from `n, t, _ = x.size()` (or x.shape): the first element is the batch (batch_first)."""
    if not isinstance(node, cst.Name):
        return False
    for assign in ctx.facts.assigns:
        if assign.target == node.value and assign.scope is scope and assign.unpack_index == 0:
            value = assign.value
            if isinstance(value, cst.Call) and isinstance(value.func, cst.Attribute) and value.func.attr.value == "size":
                return not value.args
            if isinstance(value, cst.Attribute) and value.attr.value == "shape":
                return True
    return False


def _is_size0(node: cst.CSTNode) -> bool:
    """x.size(0) or x.shape[0]."""
    if isinstance(node, cst.Call) and isinstance(node.func, cst.Attribute) and node.func.attr.value == "size":
        return bool(node.args) and isinstance(node.args[0].value, cst.Integer) and node.args[0].value.value == "0"
    if isinstance(node, cst.Subscript) and isinstance(node.value, cst.Attribute) and node.value.attr.value == "shape":
        s = node.slice[0].slice
        return isinstance(s, cst.Index) and isinstance(s.value, cst.Integer) and s.value.value == "0"
    return False


def _shape_text(ctx: Context, st: StateTensor) -> str:
    return "(" + ", ".join(ctx.facts.module.code_for_node(d) for d in st.dims) + ")"


@rule(
    RuleMeta(
        "RNN501",
        "h0-layers-mismatch",
        Severity.ERROR,
        ("torch",),
        "The initial state's first dimension is not num_layers * num_directions.",
    )
)
class H0LayersMismatch(Rule):
    def check(self, ctx: Context) -> None:
        for st in state_tensors(ctx):
            if len(st.dims) != 3 or _is_batch_first_layout(ctx, st):
                continue
            expected = _expected_first_dim(st.layer)
            actual = ctx.evaluator.value(st.dims[0], st.creation.scope)
            if expected is None or not known(actual) or not isinstance(actual, int) or actual == expected:
                continue
            layers, directions = st.layer.get("num_layers"), st.layer.num_directions
            ctx.report(
                st.creation.node,
                f"initial state {_shape_text(ctx, st)} has first dimension {actual}, but "
                f"{st.layer.label}(num_layers={layers}, bidirectional={directions == 2}) expects "
                f"num_layers * num_directions = {expected}",
                st.creation.stmt,
            )


@rule(
    RuleMeta(
        "RNN502",
        "h0-batch-first",
        Severity.ERROR,
        ("torch",),
        "The initial state is laid out (batch, layers, hidden) because the RNN is batch_first=True.",
    )
)
class H0BatchFirst(Rule):
    def check(self, ctx: Context) -> None:
        for st in state_tensors(ctx):
            if _is_batch_first_layout(ctx, st):
                ctx.report(
                    st.creation.node,
                    f"initial state {_shape_text(ctx, st)} is laid out (batch, layers, hidden); "
                    f"batch_first=True on {st.layer.label} changes only the input and output, h0/c0 are "
                    "always (num_layers * num_directions, batch, hidden)",
                    st.creation.stmt,
                )


def _fixed_batch_expr(ctx: Context, node: cst.BaseExpression, scope: Scope) -> Optional[str]:
    """The text of a global batch-size constant used as a dimension, else None."""
    dotted = dotted_name(node)
    if isinstance(node, cst.Subscript):
        dotted = dotted_name(node.value)
        key = node.slice[0].slice if len(node.slice) == 1 else None
        if dotted and isinstance(key, cst.Index) and isinstance(key.value, cst.SimpleString):
            text = key.value.evaluated_value
            if isinstance(text, str) and _BATCH_WORD.search(text):
                return ctx.facts.module.code_for_node(node)
        return None
    if dotted is None or not _BATCH_WORD.search(dotted.rsplit(".", 1)[-1]):
        return None
    if "." in dotted:
        return dotted  # self.batch_size, args.batch_size, config.batch_size
    # A bare name: fixed when it is a module-level constant, not a local or a parameter.
    current: Optional[Scope] = scope
    while current is not None and current.kind != "module":
        if dotted in current.params or dotted in current.assigns:
            return None
        current = current.parent
    if dotted in ctx.facts.module_scope.assigns:
        return dotted
    return None


def _drops_last(ctx: Context) -> bool:
    for call in ctx.facts.calls:
        value = call.kwarg("drop_last")
        if value is not None and ctx.evaluator.value(value, call.scope) is not False:
            return True
    return False


def _short_last_batch(ctx: Context, fixed: str) -> bool:
    """Evidence that batches can be smaller than `fixed`: a DataLoader that keeps the last
    batch, or slicing by range(0, n, fixed). Data reshaped to exactly that many columns
    (a language model's batchify) has no short batch, so without evidence stay silent."""
    for call in ctx.facts.calls:
        if (call.dotted or "").rsplit(".", 1)[-1] == "DataLoader":
            return True
        if call.dotted == "range" and len(call.args) == 3:
            if ctx.facts.module.code_for_node(call.args[2].value).strip() == fixed:
                return True
    return False


@rule(
    RuleMeta(
        "RNN509",
        "state-fixed-batch-size",
        Severity.WARNING,
        ("torch",),
        "An initial state sized by a global batch-size constant instead of the input's batch dimension.",
    )
)
class StateFixedBatchSize(Rule):
    def check(self, ctx: Context) -> None:
        if _drops_last(ctx):
            return  # every batch has the full size
        for st in state_tensors(ctx):
            for fixed, node in self._fixed_dims(ctx, st):
                if not _short_last_batch(ctx, fixed):
                    continue
                ctx.report(
                    node,
                    f"initial state {_shape_text(ctx, st)} is sized by {fixed}, not by the input's "
                    "batch dimension: the last, smaller batch fails (use x.size(0), or drop_last=True)",
                    _stmt_for(ctx, node, st),
                )

    def _fixed_dims(self, ctx: Context, st: StateTensor) -> Iterator[Tuple[str, cst.CSTNode]]:
        for dim in st.dims:
            fixed = _fixed_batch_expr(ctx, dim, st.creation.scope)
            if fixed is not None:
                yield fixed, st.creation.node
                return
            # init_hidden(self, batch_size): the size comes from the call sites.
            if st.via_method is not None and isinstance(dim, cst.Name) and dim.value in st.via_method.params:
                index = st.via_method.param_order.index(dim.value) - 1
                for call in ctx.facts.calls:
                    if call.method != st.via_method.name:
                        continue
                    given = call.kwarg(dim.value) or (call.positional(index) if index >= 0 else None)
                    if given is None:
                        continue
                    fixed = _fixed_batch_expr(ctx, given, call.scope)
                    if fixed is not None:
                        yield fixed, call.node
                return


def _stmt_for(ctx: Context, node: cst.CSTNode, st: StateTensor) -> Optional[cst.CSTNode]:
    if node is st.creation.node:
        return st.creation.stmt
    call = _calls_by_node(ctx).get(id(node))
    return call.stmt if call is not None else None
