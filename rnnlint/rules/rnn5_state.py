"""RNN5xx: hidden state and shapes."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterator, List, Optional, Sequence, Tuple

import libcst as cst

from rnnlint.analysis.facts import CallFact, Scope
from rnnlint.analysis.names import dotted_name
from rnnlint.analysis.walker import iter_children
from rnnlint.analysis.recurrent import RecurrentLayer, keras_model_is_recurrent, layer_bound_to
from rnnlint.analysis.state_flow import carried_states, expanded_calls, shuffled_source
from rnnlint.analysis.values import known
from rnnlint.findings import Severity
from rnnlint.rules.base import Context, Edit, Fix, Rule, RuleMeta, rule
from rnnlint.rules.edits import expr

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
    layer_call: Optional[CallFact] = None  # self.lstm(x, (h0, c0)) that receives it, when known


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
                    out.append(StateTensor(layer, creation, dims, layer_call=call))
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
                    fix=Fix(
                        "swap the first two dimensions to (layers, batch, hidden)",
                        Edit(replace=((st.dims[0], st.dims[1]), (st.dims[1], st.dims[0]))),
                    ),
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
            for fixed, node, dim in self._fixed_dims(ctx, st):
                if not _short_last_batch(ctx, fixed):
                    continue
                ctx.report(
                    node,
                    f"initial state {_shape_text(ctx, st)} is sized by {fixed}, not by the input's "
                    "batch dimension: the last, smaller batch fails (use x.size(0), or drop_last=True)",
                    _stmt_for(ctx, node, st),
                    fix=_input_batch_fix(ctx, st, dim) if dim is not None else None,
                )

    def _fixed_dims(
        self, ctx: Context, st: StateTensor
    ) -> Iterator[Tuple[str, cst.CSTNode, Optional[cst.BaseExpression]]]:
        """(the constant's text, the node to report, the dimension to replace when it is in
        the creation itself)."""
        for dim in st.dims:
            fixed = _fixed_batch_expr(ctx, dim, st.creation.scope)
            if fixed is not None:
                yield fixed, st.creation.node, dim
                return
            # init_hidden(self, batch_size): the size comes from the call sites.
            if st.via_method is not None and isinstance(dim, cst.Name) and dim.value in st.via_method.params:
                index = st.via_method.param_order.index(dim.value) - 1
                for call in ctx.facts.calls:
                    if call.method != st.via_method.name:
                        continue
                    given = call.arg(index, dim.value)
                    if given is None:
                        continue
                    fixed = _fixed_batch_expr(ctx, given, call.scope)
                    if fixed is not None:
                        yield fixed, call.node, None
                return


def _input_batch_fix(ctx: Context, st: StateTensor, dim: cst.BaseExpression) -> Optional[Fix]:
    """Size the state by the input of the layer call that receives it: x.size(0) when the
    layer is batch_first, x.size(1) otherwise. Only when that input is certain: a parameter of
    the same function, never reassigned there, passed unchanged, and no packed sequences in
    the file (a PackedSequence has no batch axis to read)."""
    call, scope = st.layer_call, st.creation.scope
    if call is None or call.scope is not scope:
        return None
    given = call.arg(0, "input")
    if not isinstance(given, cst.Name) or given.value not in scope.params or given.value in scope.assigns:
        return None
    if given.value == (scope.param_order[0] if scope.is_method() and scope.param_order else None):
        return None
    batch_first = st.layer.get("batch_first")
    if batch_first not in (True, False):
        return None
    if any((c.method or "").startswith("pack_") or "PackedSequence" in (c.dotted or "") for c in ctx.facts.calls):
        return None
    text = f"{given.value}.size({0 if batch_first else 1})"
    return Fix(f"size the state by the input's batch dimension, {text}", lambda: Edit(replace=((dim, expr(text)),)))


def _stmt_for(ctx: Context, node: cst.CSTNode, st: StateTensor) -> Optional[cst.CSTNode]:
    if node is st.creation.node:
        return st.creation.stmt
    call = _calls_by_node(ctx).get(id(node))
    return call.stmt if call is not None else None


# -- states carried across batches (RNN507, RNN512) ------------------------------------------


def _callee_text(ctx: Context, call: CallFact) -> str:
    text = ctx.facts.module.code_for_node(call.node.func).replace("{", "(").replace("}", ")")
    return text if len(text) <= 40 else (call.method or "model")


@rule(
    RuleMeta(
        "RNN507",
        "hidden-not-detached",
        Severity.WARNING,
        ("torch",),
        "A hidden state carried from one batch to the next without detach(): backward() reaches into every earlier batch.",
    )
)
class HiddenNotDetached(Rule):
    def check(self, ctx: Context) -> None:
        for carry in carried_states(ctx.facts, ctx.layers):
            if carry.detached or not carry.crosses_backward:
                continue
            retain = any(
                c.method == "backward" and c.kwarg("retain_graph") is not None
                for c in expanded_calls(ctx.facts, carry.loop.calls)
            )
            tail = (
                "; retain_graph=True only hides the error while every step backpropagates through all earlier batches"
                if retain
                else " (or fails with 'Trying to backward through the graph a second time')"
            )
            ctx.report(
                carry.call.node,
                f"{carry.label!s} returned by {_callee_text(ctx, carry.call)}(...) is fed back into it on the "
                f"next batch without detach(): backward() reaches into the previous batches' graph{tail}; "
                f"detach it each batch (e.g. {carry.names[0]} = repackage_hidden({carry.names[0]}))",
                carry.call.stmt,
            )


_KERAS_FIT = frozenset({"fit", "fit_generator"})


@rule(
    RuleMeta(
        "RNN512",
        "state-leaks-across-sequences",
        Severity.WARNING,
        ("torch", "keras"),
        "The final state of one batch seeds the next batch while the batches are unrelated (shuffled), or keras stateful=True with shuffle.",
    )
)
class StateLeaksAcrossSequences(Rule):
    def check(self, ctx: Context) -> None:
        for carry in carried_states(ctx.facts, ctx.layers):
            source = shuffled_source(ctx.facts, ctx.evaluator, carry.loop)
            if source is None:
                continue
            ctx.report(
                carry.call.node,
                f"{_callee_text(ctx, carry.call)}(..., {carry.names[0]}) starts each batch from the state "
                "the previous batch left, but the batches come from a shuffled loader (line {loader}): the "
                "state belongs to unrelated sequences; start every batch from a fresh state",
                carry.call.stmt,
                refs={"loader": source},
            )
        self._keras(ctx)

    def _keras(self, ctx: Context) -> None:
        stateful = [
            layer for layer in ctx.layers
            if layer.framework == "keras" and layer.get("stateful") is True
        ]
        if not stateful:
            return
        fits = [
            c for c in ctx.facts.calls
            if c.method in _KERAS_FIT and c.receiver is not None and c.qualname is None and not c.has_star_args
        ]
        shuffled = []
        for fit in fits:
            if not keras_model_is_recurrent(ctx.facts, ctx.layers, fit.receiver_dotted):
                continue
            value = fit.kwarg("shuffle")
            if value is not None:
                if ctx.evaluator.value(value, fit.scope) is True:
                    shuffled.append((fit, "shuffle=True"))
                continue
            if _looks_like_dataset(ctx, fit):
                continue  # fit() ignores shuffle for datasets and generators
            shuffled.append((fit, "shuffle=True (the default)"))
        if not shuffled or len(shuffled) != len([f for f in fits if keras_model_is_recurrent(ctx.facts, ctx.layers, f.receiver_dotted)]):
            return
        fit, how = shuffled[0]
        for layer in stateful:
            ctx.report(
                layer.call.node,
                f"{layer.kind}(..., stateful=True) is trained by {fit.dotted}() on line {{fit}} with {how}: each "
                "batch starts from the state an unrelated batch left; pass shuffle=False (and keep the "
                "batches in order) or drop stateful=True",
                layer.call.stmt,
                refs={"fit": fit.node},
            )


def _looks_like_dataset(ctx: Context, fit: CallFact) -> bool:
    x = fit.arg(0, "x")
    if x is None:
        return True
    if isinstance(x, cst.Name):
        values = fit.scope.assigns.get(x.value) or ctx.facts.module_scope.assigns.get(x.value) or []
        if len(values) != 1:
            return True
        x = values[0]
    text = ctx.facts.module.code_for_node(x)
    return bool(re.search(r"\.batch\(|Dataset|generator|Sequence|flow", text))


# -- initial states created per call (RNN508, RNN513) -----------------------------------------

RANDOM_FACTORIES = frozenset("torch." + n for n in ("randn", "rand", "randn_like", "rand_like", "normal", "randint"))
_LIKE_FACTORIES = frozenset("torch." + n for n in ("zeros_like", "ones_like", "empty_like", "full_like", "randn_like", "rand_like"))
_ALL_FACTORIES = STATE_FACTORIES | RANDOM_FACTORIES | _LIKE_FACTORIES
_MOVE_METHODS = frozenset({"to", "cuda", "type_as"})
_RANDOM_FILLS = frozenset({"normal_", "uniform_", "random_", "bernoulli_", "exponential_", "cauchy_", "log_normal_"})
_STATE_CHAIN = _CHAIN_METHODS | _MOVE_METHODS | _RANDOM_FILLS | frozenset({"unsqueeze", "expand", "repeat", "view", "squeeze"})
_CUDA_TEXT = re.compile(r"cuda|gpu", re.I)
_DEVICE_NAME = re.compile(r"device|dev$|^dev", re.I)


@dataclass(eq=False)
class CreatedState:
    creation: CallFact
    cls: Optional[Scope]
    where: Scope  # the function whose every call creates it
    moved: bool  # device=, .to(...), .cuda(), type_as, *_like
    random: bool
    in_forward: bool  # created in a method of the model (not in the loop that calls it)


def _assign_index(ctx: Context) -> dict:
    table = ctx.facts.cache.get("assigns_by_scope")
    if table is None:
        table = {}
        for assign in ctx.facts.assigns:
            table.setdefault((id(assign.scope), assign.target), []).append(assign)
        ctx.facts.cache["assigns_by_scope"] = table
    return table  # type: ignore[return-value]


def _initial_value(ctx: Context, name: str, scope: Scope, order: int, loop) -> Optional[Tuple[cst.BaseExpression, Optional[int]]]:  # type: ignore[no-untyped-def]
    """The one assignment of `name` before `order` (a state updated in a time-step loop,
    `h = cell(x_t, h)`, is assigned after the call that reads it)."""
    candidates = [
        a for a in _assign_index(ctx).get((id(scope), name), [])
        if a.order < order and a.aug_op is None
    ]
    if len(candidates) != 1:
        return None
    return candidates[0].value, candidates[0].unpack_index


def _trace_states(
    ctx: Context, node: cst.BaseExpression, scope: Scope, order: int, loop, depth: int = 0  # type: ignore[no-untyped-def]
) -> List[Tuple[CallFact, bool, bool, Scope]]:
    """(creation call, moved, random, scope) for each tensor factory the state expression comes from."""
    if depth > 6:
        return []
    moved = random = False
    for _ in range(8):
        if isinstance(node, (cst.Tuple, cst.List)):
            out: List[Tuple[CallFact, bool, bool, Scope]] = []
            for element in node.elements:
                for creation, m, r, where in _trace_states(ctx, element.value, scope, order, loop, depth + 1):
                    out.append((creation, m or moved, r or random, where))
            return out
        if isinstance(node, cst.Name):
            found = _initial_value(ctx, node.value, scope, order, loop)
            if found is None:
                return []
            value, index = found
            if index is not None:
                return self_method_returns(ctx, value, scope, index, depth, moved, random)
            node = value
            continue
        if not isinstance(node, cst.Call):
            return []
        func = node.func
        if isinstance(func, cst.Attribute) and func.attr.value in _STATE_CHAIN:
            moved = moved or func.attr.value in _MOVE_METHODS
            random = random or func.attr.value in _RANDOM_FILLS
            node = func.value
            continue
        call = _calls_by_node(ctx).get(id(node))
        if call is None:
            return []
        name = call.qualname or ""
        if (name.endswith("autograd.Variable") or call.dotted == "Variable") and call.args:
            node = call.args[0].value
            continue
        if name.startswith("torch.nn.init.") and name.endswith("_") and call.args:
            random = random or bool(re.search(r"normal|uniform|xavier|kaiming|orthogonal|trunc", name))
            node = call.args[0].value
            continue
        if name in _ALL_FACTORIES:
            moved = moved or call.kwarg("device") is not None or name in _LIKE_FACTORIES
            return [(call, moved, random or name in RANDOM_FACTORIES, scope)]
        return self_method_returns(ctx, node, scope, None, depth, moved, random)
    return []


def self_method_returns(ctx: Context, node: cst.BaseExpression, scope: Scope, index: Optional[int], depth: int, moved: bool, random: bool) -> List[Tuple[CallFact, bool, bool, Scope]]:  # type: ignore[no-untyped-def]
    """States built by `self.init_hidden(...)` (or `model.init_hidden(...)`): its return values."""
    if not isinstance(node, cst.Call) or not isinstance(node.func, cst.Attribute):
        return []
    method_name = node.func.attr.value
    if not _INIT_STATE_METHOD.match(method_name):
        return []
    cls = scope.enclosing_class
    receiver = dotted_name(node.func.value)
    if cls is None or receiver != "self":
        classes = [c for c in ctx.facts.classes.values() if method_name in c.methods]
        if len(classes) != 1:
            return []
        cls = classes[0]
    method = cls.methods.get(method_name)
    if method is None or len(method.returns) != 1:
        return []
    ret = method.returns[0]
    if index is not None:
        if not isinstance(ret, (cst.Tuple, cst.List)) or index >= len(ret.elements):
            return []
        ret = ret.elements[index].value
    end = max((c.order for c in method.calls), default=0) + 1
    return [
        (creation, m or moved, r or random, where)
        for creation, m, r, where in _trace_states(ctx, ret, method, end, None, depth + 1)
    ]


def created_states(ctx: Context) -> List[CreatedState]:
    cached = ctx.facts.cache.get("created_states")
    if cached is not None:
        return cached  # type: ignore[return-value]
    from rnnlint.analysis.modes import instance_class

    out: List[CreatedState] = []
    seen = set()
    torch_layers = [layer for layer in ctx.layers if layer.framework == "torch"]
    owners = {id(layer.owner) for layer in torch_layers if layer.owner is not None}
    for call in ctx.facts.calls:
        scope = call.scope
        if call.has_star_args or scope.kind == "class":
            continue
        layer = layer_bound_to(torch_layers, call.dotted, scope) if scope.kind == "function" else None
        in_forward = layer is not None and scope.is_method() and scope.name != "__init__"
        cls = scope.enclosing_class if in_forward else None
        if not in_forward:
            # model(x, hidden) in the loop that calls a recurrent model of this file
            if call.loop is None or call.dotted is None or "." in call.dotted:
                continue
            name = instance_class(ctx.facts, call.dotted, scope)
            cls = ctx.facts.classes.get(name) if name else None
            if cls is None or id(cls) not in owners:
                continue
        state = call.arg(1, "hx") if in_forward else (call.positional(1) or call.kwarg("hidden"))
        if state is None:
            continue
        for creation, moved, random, where in _trace_states(ctx, state, scope, call.order, call.loop):
            if id(creation) in seen or where.name == "__init__":
                continue
            seen.add(id(creation))
            out.append(CreatedState(creation, cls, where, moved, random, in_forward))
    ctx.facts.cache["created_states"] = out
    return out


def _state_label(ctx: Context, st: CreatedState) -> str:
    factory = (st.creation.dotted or "torch.zeros") + "(...)"
    target = st.creation.assigned_to
    return f"{target} = {factory}" if target else factory


def _where_label(st: CreatedState) -> str:
    if st.where.kind == "module":
        return "the loop that calls the model"
    owner = st.where.enclosing_class
    return f"{owner.name}.{st.where.name}" if owner is not None else f"{st.where.name}()"


_PROJECT_CUDA: dict = {}
_PROJECT_PATTERN = re.compile(r"\.cuda\(|\.to\(\s*['\"]cuda|\.to\(\s*[\w.]*device|DataParallel")


def _project_moves_to_cuda(path: str, classes: Sequence[str]) -> bool:
    """Whether another Python file in the same folder uses this file's model (imports the module
    or names one of `classes`) and moves tensors or models to a GPU. Unrelated scripts that
    share the folder say nothing about this model."""
    import os

    if not os.path.isfile(path) or not classes:
        return False  # a snippet, not a file in a project
    folder = os.path.dirname(os.path.abspath(path))
    module = os.path.splitext(os.path.basename(path))[0]
    try:
        names = sorted(n for n in os.listdir(folder) if n.endswith(".py"))[:200]
        stamp = (folder, module, tuple(classes),
                 tuple((n, os.stat(os.path.join(folder, n)).st_mtime_ns) for n in names))
    except OSError:
        names, stamp = [], (folder, module, tuple(classes), ())
    if stamp in _PROJECT_CUDA:  # memo per folder state: the folder may change between runs
        return _PROJECT_CUDA[stamp]
    uses = re.compile(
        rf"\bimport\s+(?:[\w.]+\.)?{re.escape(module)}\b|\bfrom\s+(?:[\w.]*\.)?{re.escape(module)}\s+import\b|"
        + "|".join(rf"\b{re.escape(c)}\b" for c in classes)
    )
    found = False
    own = os.path.basename(path)
    for name in names:
        if name == own:
            continue
        try:
            with open(os.path.join(folder, name), "r", encoding="utf-8", errors="replace") as handle:
                text = handle.read(1_000_000)
        except OSError:
            continue
        if uses.search(text) and _PROJECT_PATTERN.search(text):
            found = True
            break
    _PROJECT_CUDA[stamp] = found
    return found


def _built_here(ctx: Context, classes: Sequence[str]) -> bool:
    """Whether this file itself builds one of the model classes (a self-contained script: where
    the model lives is written here, so other files are not asked)."""
    return any(call.dotted in classes and (call.scope.enclosing_class is None or call.scope.enclosing_class.name not in classes)
               for call in ctx.facts.calls)


def cuda_evidence(ctx: Context) -> Optional[cst.CSTNode]:
    """A call in this file that moves a model or tensors to a GPU (or may: `.to(device)`)."""
    module = ctx.facts.module
    for call in ctx.facts.calls:
        if call.method == "cuda" and call.receiver is not None and call.qualname is None:
            return call.node
        if (call.qualname or "").endswith("DataParallel"):
            return call.node
        if call.method == "to" and call.args and call.qualname is None:
            arg = call.args[0].value
            if _CUDA_TEXT.search(module.code_for_node(arg)):
                return call.node
            dotted = dotted_name(arg)
            if dotted is None or not _DEVICE_NAME.search(dotted.rsplit(".", 1)[-1]):
                continue
            values = []
            current: Optional[Scope] = call.scope
            while current is not None and not values:
                values = current.assigns.get(dotted, [])
                current = current.parent
            if values and all("cuda" not in module.code_for_node(v) and "cpu" in module.code_for_node(v) for v in values):
                continue  # device = "cpu" only
            return call.node
    return None


@rule(
    RuleMeta(
        "RNN508",
        "state-wrong-device",
        Severity.WARNING,
        ("torch",),
        "An initial state created in forward() with no device= or .to(), for a model that is moved to a GPU.",
    )
)
class StateWrongDevice(Rule):
    def check(self, ctx: Context) -> None:
        candidates = [st for st in created_states(ctx) if st.in_forward and not st.moved]
        if not candidates:
            return
        owners = sorted({st.where.enclosing_class.name for st in candidates if st.where.enclosing_class is not None})
        evidence = cuda_evidence(ctx)
        if evidence is not None:
            where, refs = "line {move}", {"move": evidence}
        elif ctx.reads_other_files() and not _built_here(ctx, owners) and _project_moves_to_cuda(ctx.facts.path, owners):
            where, refs = "another file in this folder that uses it does", {}
        else:
            return
        for st in candidates:
            ctx.report(
                st.creation.node,
                f"{_state_label(ctx, st)} in {_where_label(st)} is created on the CPU, but the model is "
                f"moved to a GPU ({where}): {st.creation.dotted}() without device= does not follow it; "
                "pass device=x.device (or use x.new_zeros(...))",
                st.creation.stmt,
                refs=refs,
            )


@rule(
    RuleMeta(
        "RNN513",
        "random-initial-state",
        Severity.WARNING,
        ("torch",),
        "h0/c0 drawn at random on every forward call: predictions are stochastic even in eval mode.",
    )
)
class RandomInitialState(Rule):
    def check(self, ctx: Context) -> None:
        for st in created_states(ctx):
            if not st.random:
                continue
            if any("training" in ctx.facts.module.code_for_node(g) for g in st.creation.guards):
                continue  # noise on the initial state as a training-only regulariser
            ctx.report(
                st.creation.node,
                f"{_state_label(ctx, st)} in {_where_label(st)} draws a new random initial state on every "
                "call: the same sequence gets different outputs even after model.eval(); use zeros or a "
                "learned nn.Parameter initial state",
                st.creation.stmt,
            )
