"""RNN6xx: architecture and initialisation."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Set, Tuple

import libcst as cst

from rnnlint.analysis.facts import CallFact, Loop, ModuleFacts, Scope
from rnnlint.analysis.names import dotted_name
from rnnlint.analysis.recurrent import RecurrentLayer, layer_bound_to
from rnnlint.analysis.sequences import (
    Length,
    calls_by_node,
    code,
    file_lengths,
    fit_reshape_length,
    keras_layer_length,
    keras_time_changers,
    last_plain_assignment,
    layer_name,
    model_built,
    model_of_layer,
    strip_chain,
    torch_call_lengths,
)
from rnnlint.analysis.values import known
from rnnlint.analysis.walker import iter_children, walk
from rnnlint.findings import Severity
from rnnlint.rules.base import Context, Rule, RuleMeta, rule


def _number(value: Any) -> Optional[float]:
    if known(value) and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


def _where(layer: RecurrentLayer) -> str:
    if layer.framework == "keras":
        units = layer.call.arg(0, "units")
        kind = layer.kind.replace("RNN", "SimpleRNN")
        text = " ".join(cst.Module([]).code_for_node(units).split()) if units is not None else ""
        return f"{kind}({text})" if len(text) <= 20 else kind
    return f"{layer.label} '{layer.binding}'" if layer.binding else layer.label


# -- RNN601 / RNN606: sequence lengths --------------------------------------------------------


def _lengths_for(ctx: Context, layer: RecurrentLayer, want) -> Optional[Length]:  # type: ignore[no-untyped-def]
    """The sequence length that layer sees, when the file shows it. `want(value)` filters the
    file-level evidence: every value used to cut or pad must satisfy it."""
    facts, evaluator = ctx.facts, ctx.evaluator
    if layer.framework == "keras":
        declared = keras_layer_length(facts, evaluator, layer)
        if declared is not None:
            return declared
        found = model_of_layer(facts, layer.call.node)
        if found is not None:
            model, index = found
            reshaped = fit_reshape_length(facts, evaluator, model)
            if reshaped is not None:
                return reshaped
        if keras_time_changers(facts):
            return None
    else:
        at_call = torch_call_lengths(facts, evaluator, layer, ctx.layers)
        values = {c.length.value for c in at_call}
        if len(values) == 1:
            return at_call[0].length
        if at_call:
            return None
    lengths = file_lengths(facts, evaluator)
    if lengths and all(want(l.value) for l in lengths):
        return max(lengths, key=lambda l: l.value)
    return None


@rule(
    RuleMeta(
        "RNN601",
        "vanilla-rnn-long-sequence",
        Severity.INFO,
        ("torch", "keras"),
        "A vanilla nn.RNN / SimpleRNN is trained on sequences known to be longer than 100 steps.",
        options={"long-sequence": 100},
    )
)
class VanillaRnnLongSequence(Rule):
    def check(self, ctx: Context) -> None:
        limit = ctx.option("long-sequence")
        for layer in ctx.layers:
            if layer.kind != "RNN" or (layer.framework == "keras" and layer.cell):
                continue
            if layer.framework == "keras" and (layer.call.qualname or "").endswith(".RNN"):
                continue  # keras.layers.RNN(cell): the cell decides
            length = _lengths_for(ctx, layer, lambda v: v > limit)
            if length is None or length.value <= limit:
                continue
            alternative = "nn.LSTM/nn.GRU" if layer.framework == "torch" else "LSTM/GRU"
            ctx.report(
                layer.call.node,
                f"{_where(layer)} is trained on sequences of {length.value} steps ({length.text}, line "
                f"{{origin}}; limit: {limit}): gradients through a tanh RNN vanish over that range; "
                f"consider {alternative} or a diagonal linear recurrence",
                layer.call.stmt,
                refs={"origin": length.node},
            )


@rule(
    RuleMeta(
        "RNN606",
        "single-step-sequences",
        Severity.INFO,
        ("torch", "keras"),
        "A recurrent layer whose sequences have one time step: it never recurs.",
    )
)
class SingleStepSequences(Rule):
    def check(self, ctx: Context) -> None:
        facts = ctx.facts
        for layer in ctx.layers:
            if layer.cell or (layer.call.qualname or "").endswith("layers.RNN"):
                continue
            if layer.framework == "keras":
                if layer.get("stateful") is not False:
                    continue  # a stateful layer carries its state from one batch to the next
                found = model_of_layer(facts, layer.call.node)
                if found is not None and any(
                    layer_name(facts, e) in ("LSTM", "GRU", "SimpleRNN", "Bidirectional", "ConvLSTM1D",
                                             "ConvLSTM2D", "ConvLSTM3D", "CuDNNLSTM", "CuDNNGRU")
                    for e in found[0].layers[: found[1]]
                ):
                    continue  # reported on the first recurrent layer of the model
            else:
                at_call = torch_call_lengths(facts, ctx.evaluator, layer, ctx.layers)
                if any(c.passes_state for c in at_call) or self._state_passed(ctx, layer):
                    continue  # one step at a time with the state carried: it does recur
            length = _lengths_for(ctx, layer, lambda v: v == 1)
            if length is None or length.value != 1:
                continue
            ctx.report(
                layer.call.node,
                f"{_where(layer)} only sees sequences of 1 time step ({length.text}, line {{origin}}): "
                "it never recurs; feed the steps as the time axis, or use a feed-forward layer",
                layer.call.stmt,
                refs={"origin": length.node},
            )

    @staticmethod
    def _state_passed(ctx: Context, layer: RecurrentLayer) -> bool:
        for call in ctx.facts.calls:
            if call.dotted and layer_bound_to(ctx.layers, call.dotted, call.scope) is layer:
                state = call.arg(1, "hx")
                if state is not None and not (isinstance(state, cst.Name) and state.value == "None"):
                    return True
        return False


# -- RNN602: recurrent initialisation -------------------------------------------------------

_RECURRENT_ATTR = re.compile(
    r"^(w_?hh|weight_hh|whh|u_?h|w_?h|u|w_?rec|w_?r|recurrent(_weight|_kernel)?|rec(_weight)?)(_?\d*)$", re.I
)
_TORCH_INIT = "torch.nn.init."


@dataclass
class _Estimate:
    radius: float
    init: str  # "normal_(std=0.1)"
    result: str  # "spectral radius ~ 0.1 * sqrt(256) = 1.60"


def _iid_estimate(n: int, mean: float, std: float, what: str) -> _Estimate:
    spread = std * math.sqrt(n)
    drift = abs(mean) * n
    if drift > spread:
        return _Estimate(drift, what, f"a largest eigenvalue of about |mean| * n = {abs(mean):g} * {n} = {drift:.2f}")
    return _Estimate(spread, what, f"spectral radius ~ {std:.3g} * sqrt({n}) = {spread:.2f}")


class _InitReader:
    """Reads an initialisation call or tensor expression into a radius estimate for an n x n block."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def num(self, node: Optional[cst.BaseExpression], scope: Scope, default: Optional[float]) -> Optional[float]:
        if node is None:
            return default
        return _number(self.ctx.evaluator.value(node, scope))

    def init_call(self, call: CallFact, n: int, method: bool) -> Optional[_Estimate]:
        """nn.init.normal_(w, mean, std) / w.normal_(mean, std) and friends."""
        name = (call.method or "").rstrip("_")
        scope = call.scope
        shift = 0 if method else 1  # tensor methods have no tensor argument
        if name == "normal":
            mean = self.num(call.arg(shift, "mean"), scope, 0.0)
            std = self.num(call.arg(shift + 1, "std"), scope, 1.0)
            if mean is None or std is None:
                return None
            return _iid_estimate(n, mean, std, f"{call.method}(std={std:g})")
        if name == "uniform":
            low = self.num(call.arg(shift, "from" if method else "a"), scope, 0.0)
            high = self.num(call.arg(shift + 1, "to" if method else "b"), scope, 1.0)
            if low is None or high is None or high <= low:
                return None
            std = (high - low) / math.sqrt(12)
            return _iid_estimate(n, (low + high) / 2, std, f"{call.method}({low:g}, {high:g})")
        if name == "trunc_normal" and not method:
            mean = self.num(call.arg(1, "mean"), scope, 0.0)
            std = self.num(call.arg(2, "std"), scope, 1.0)
            low = self.num(call.arg(3, "a"), scope, -2.0)
            high = self.num(call.arg(4, "b"), scope, 2.0)
            if None in (mean, std, low, high) or mean != 0 or low > -2 * std or high < 2 * std:  # type: ignore[operator]
                return None
            return _iid_estimate(n, 0.0, std, f"trunc_normal_(std={std:g})")  # type: ignore[arg-type]
        if name == "orthogonal" and not method:
            gain = self.num(call.arg(1, "gain"), scope, 1.0)
            if gain is None:
                return None
            return _Estimate(abs(gain), f"orthogonal_(gain={gain:g})", f"spectral radius {abs(gain):.2f}")
        return None

    def tensor(self, node: cst.BaseExpression, scope: Scope, n: int) -> Optional[_Estimate]:
        """torch.randn(n, n) * s, torch.randn(n, n) / d, torch.rand(n, n), torch.eye(n) * a."""
        scale = 1.0
        if isinstance(node, cst.BinaryOperation) and isinstance(node.operator, (cst.Multiply, cst.Divide)):
            factory, other = node.left, node.right
            if isinstance(node.operator, cst.Multiply) and not isinstance(strip_chain(factory), cst.Call):
                factory, other = other, factory
            value = self.num(other, scope, None)
            if value is None or value == 0:
                return None
            scale = value if isinstance(node.operator, cst.Multiply) else 1.0 / value
            node = factory
        node = strip_chain(node)
        call = calls_by_node(self.ctx.facts).get(id(node)) if isinstance(node, cst.Call) else None
        if call is None or call.qualname not in ("torch.randn", "torch.rand", "torch.eye") or call.has_star_args:
            return None
        dims = [a.value for a in call.args if a.keyword is None]
        if len(dims) == 1 and isinstance(dims[0], (cst.Tuple, cst.List)):
            dims = [e.value for e in dims[0].elements]
        values = [self.num(d, scope, None) for d in dims]
        if call.qualname == "torch.eye":
            if len(values) not in (1, 2) or any(v != n for v in values):
                return None
            radius = abs(scale)
            return _Estimate(radius, f"{code(self.ctx.facts, node)} * {scale:g}", f"spectral radius {radius:.2f}")
        if len(values) != 2 or values[0] != n or values[1] != n:
            return None
        what = code(self.ctx.facts, node) + (f" * {scale:g}" if scale != 1.0 else "")
        if call.qualname == "torch.randn":
            return _iid_estimate(n, 0.0, abs(scale), what)
        return _iid_estimate(n, 0.5 * scale, abs(scale) / math.sqrt(12), what)


def _hh_target(ctx: Context, node: cst.BaseExpression, scope: Scope) -> Optional[Tuple[str, List[RecurrentLayer]]]:
    """`self.rnn.weight_hh_l0` (or `.data`): the recurrent layer whose matrix it is."""
    dotted = dotted_name(node)
    if dotted is None:
        return None
    parts = dotted.split(".")
    if parts[-1] == "data":
        parts = parts[:-1]
    if len(parts) < 2 or not re.match(r"^weight_hh_l\d+(_reverse)?$", parts[-1]):
        return None
    layer = layer_bound_to([l for l in ctx.layers if l.framework == "torch"], ".".join(parts[:-1]), scope)
    return (".".join(parts), [layer]) if layer is not None else None


def _if_path(body: cst.CSTNode, target: cst.CSTNode) -> Optional[List[Tuple[cst.If, bool]]]:
    """The `if` statements around `target` inside `body`, each with whether target is in its body."""
    def search(node: cst.CSTNode, path: List[Tuple[cst.If, bool]]) -> Optional[List[Tuple[cst.If, bool]]]:
        if node is target:
            return path
        if isinstance(node, cst.If):
            found = search(node.body, path + [(node, True)])
            if found is not None:
                return found
            if node.orelse is not None:
                return search(node.orelse, path + [(node, False)])
            return None
        if isinstance(node, (cst.FunctionDef, cst.ClassDef)):
            return None
        for child in iter_children(node):
            found = search(child, path)
            if found is not None:
                return found
        return None

    return search(body, [])


# `text in name` is true for a recurrent matrix's name (weight_hh_l0, rnn.weight_hh_l1_reverse)
_HH_PART = re.compile(r"^(weight)?(_?hh)?(_l\d+)?(_reverse)?$")
# parameter-name parts that never occur in a recurrent matrix's (dotted) name
_NOT_HH = frozenset({"bias", "bias_ih", "bias_hh", "weight_ih", "ih", "_ih", "weight_ih_l0"})


def _guard_reaches_hh(test: cst.BaseExpression) -> bool:
    """`'weight_hh' in name`, `'hh' in n`, `'weight' in name`, `p.dim() > 1`, `len(p.shape) >= 2`,
    and `and`/`or` of those."""
    if isinstance(test, cst.BooleanOperation):
        left, right = _guard_reaches_hh(test.left), _guard_reaches_hh(test.right)
        return (left and right) if isinstance(test.operator, cst.And) else (left or right)
    if not isinstance(test, cst.Comparison) or len(test.comparisons) != 1:
        return False
    target = test.comparisons[0]
    if isinstance(target.operator, cst.In) and isinstance(test.left, cst.SimpleString):
        text = test.left.evaluated_value or ""
        return isinstance(text, str) and bool(_HH_PART.match(text)) and ("weight" in text or "hh" in text)
    if isinstance(target.operator, (cst.GreaterThan, cst.GreaterThanEqual)):
        bound = target.comparator
        if isinstance(bound, cst.Integer):
            limit = int(bound.value) + (1 if isinstance(target.operator, cst.GreaterThan) else 0)
            left = code_free(test.left)
            return limit == 2 and ("dim()" in left or "ndim" in left or "len(" in left and "shape" in left)
    return False


def _guard_skips_hh(test: cst.BaseExpression) -> bool:
    """A test that is false for the recurrent matrices, so that its `else`/`elif` still reaches
    them: `'bias' in name`, `'weight_ih' in name`."""
    if isinstance(test, cst.BooleanOperation):
        left, right = _guard_skips_hh(test.left), _guard_skips_hh(test.right)
        return (left or right) if isinstance(test.operator, cst.And) else (left and right)
    if not isinstance(test, cst.Comparison) or len(test.comparisons) != 1:
        return False
    if isinstance(test.comparisons[0].operator, cst.In) and isinstance(test.left, cst.SimpleString):
        text = test.left.evaluated_value or ""
        return text in _NOT_HH
    return False


def _path_reaches_hh(path: List[Tuple[cst.If, bool]]) -> bool:
    """Every `if` around the call lets the recurrent matrices through: the branches taken test
    for them, the branches passed over (`if 'bias' in name: ... else:`) test for something else."""
    return all(_guard_reaches_hh(test.test) if in_body else _guard_skips_hh(test.test) for test, in_body in path)


def code_free(node: cst.CSTNode) -> str:
    return cst.Module([]).code_for_node(node)


def _param_loop_target(ctx: Context, call: CallFact, node: cst.BaseExpression) -> Optional[Tuple[str, List[RecurrentLayer]]]:
    """`param` of `for name, param in self.rnn.named_parameters()` when the init reaches weight_hh."""
    name = dotted_name(node)
    if name is None:
        return None
    if name.endswith(".data"):
        name = name[: -len(".data")]
    loop: Optional[Loop] = call.loop
    while loop is not None and name not in loop.target_names:
        loop = loop.parent
    if loop is None or not isinstance(loop.iter_node, cst.Call) or not isinstance(loop.node, cst.For):
        return None
    source = loop.iter_node
    if not isinstance(source.func, cst.Attribute) or source.func.attr.value not in ("named_parameters", "parameters"):
        return None
    layers = _layers_of(ctx, source.func.value, call.scope)
    if not layers:
        return None
    owner = dotted_name(source.func.value)
    function = loop.scope
    if function.kind == "function" and owner in function.params:
        # a model handed to an init function: the loop must run on it (not `if isinstance(m, nn.Linear):`)
        around = _if_path(function.node.body, loop.node) if isinstance(function.node, cst.FunctionDef) else None
        if around != []:
            return None
    path = _if_path(loop.node.body, call.stmt)
    if path is None or not _path_reaches_hh(path):
        return None
    return f"the parameters of {code(ctx.facts, source.func.value)}", layers


def _layers_of(ctx: Context, node: cst.BaseExpression, scope: Scope, depth: int = 0) -> List[RecurrentLayer]:
    """The recurrent layers inside the module object `node`: a layer itself (`self.rnn`), a model
    whose class builds them or holds submodules that do (`self`, `model = Seq2Seq(encoder, decoder)`),
    or a function parameter that every call site in the file gives such a model
    (`init_weights(model)`, `model.apply(init_weights)`)."""
    torch_layers = [l for l in ctx.layers if l.framework == "torch" and not l.cell]
    dotted = dotted_name(node)
    if dotted is None or depth > 4:
        return []
    layer = layer_bound_to(torch_layers, dotted, scope)
    if layer is not None:
        return [layer]
    if "." not in dotted and dotted != "self" and scope.kind == "function" and dotted in scope.params \
            and not scope.assigns.get(dotted):
        return _param_layers(ctx, scope, dotted, depth + 1)
    cls = _module_class(ctx, node, scope, depth)
    if cls is None:
        return []
    return _class_layers(ctx, cls, torch_layers, depth + 1, set())


def _module_class(ctx: Context, node: cst.BaseExpression, scope: Scope, depth: int) -> Optional[Scope]:
    """The class (defined in this file) of the module object `node`: `self`, `self.encoder`, a
    name built by `Encoder(...)`, or an `__init__` parameter every construction site fills with one."""
    dotted = dotted_name(node)
    if dotted is None or depth > 4:
        return None
    if dotted == "self":
        return scope.enclosing_class
    if dotted.startswith("self.") and dotted.count(".") == 1:
        cls = scope.enclosing_class
        values = ctx.evaluator.self_attr_values(cls, dotted[5:]) if cls is not None else []
        if len(values) != 1:
            return None
        return _built_class(ctx, values[0][0], values[0][1], depth + 1)
    if "." in dotted:
        return None
    if scope.kind == "function" and dotted in scope.params and not scope.assigns.get(dotted):
        if not scope.is_method("__init__"):
            return None
        index = scope.param_order.index(dotted) - 1
        classes = set()
        for site in ctx.evaluator.construction_sites(scope.parent.name):  # type: ignore[union-attr]
            given = site.arg(index, dotted)
            if site.has_star_args or given is None:
                return None
            classes.add(_built_class(ctx, given, site.scope, depth + 1))
        return next(iter(classes)) if len(classes) == 1 else None
    if scope.kind == "function":
        assign = last_plain_assignment(ctx.facts, dotted, scope, 10**9)
        values = [assign.value] if assign is not None else scope.assigns.get(dotted, [])
    else:
        values = scope.assigns.get(dotted, [])
    if len(values) != 1:
        return None
    return _built_class(ctx, values[0], scope, depth + 1)


def _built_class(ctx: Context, value: cst.BaseExpression, scope: Scope, depth: int) -> Optional[Scope]:
    built = strip_chain(value)
    if isinstance(built, cst.Call):
        return ctx.facts.classes.get(dotted_name(built.func) or "")
    if isinstance(built, cst.Name):
        return _module_class(ctx, built, scope, depth)
    return None


def _class_layers(ctx: Context, cls: Scope, torch_layers: List[RecurrentLayer], depth: int,
                  seen: Set[int]) -> List[RecurrentLayer]:
    """The layers a model class builds, and those of the submodules it stores on self."""
    if id(cls) in seen or depth > 6:
        return []
    seen.add(id(cls))
    found = [l for l in torch_layers if l.owner is cls]
    attrs = {name[5:] for method in cls.methods.values() for name in method.assigns
             if name.startswith("self.") and name.count(".") == 1}
    for attr in sorted(attrs):
        values = ctx.evaluator.self_attr_values(cls, attr)
        sub = _built_class(ctx, values[0][0], values[0][1], depth) if len(values) == 1 else None
        if sub is not None and sub is not cls:
            found += [l for l in _class_layers(ctx, sub, torch_layers, depth + 1, seen) if l not in found]
    return found


def _param_layers(ctx: Context, function: Scope, param: str, depth: int) -> List[RecurrentLayer]:
    """The layers of the models the file passes as `param`: `init_weights(model)`,
    `model.apply(init_weights)` (every submodule of model, so all of its layers), `self.apply(self._init)`."""
    parent = function.parent
    if parent is None or parent.kind not in ("module", "class"):
        return []
    index = function.param_order.index(param) - (1 if parent.kind == "class" else 0)
    name = function.name if parent.kind == "module" else f"self.{function.name}"
    found: List[RecurrentLayer] = []
    for call in ctx.facts.calls:
        if parent.kind == "class" and call.scope.enclosing_class is not parent:
            continue
        given: Optional[cst.BaseExpression] = None
        if call.dotted == name and not call.has_star_args:
            given = call.arg(index, param)
        elif call.method == "apply" and len(call.args) == 1 and call.receiver is not None and index == 0 \
                and dotted_name(call.args[0].value) == name:
            given = call.receiver
        if given is not None:
            found += [l for l in _layers_of(ctx, given, call.scope, depth + 1) if l not in found]
    return found


@rule(
    RuleMeta(
        "RNN602",
        "recurrent-init-unstable",
        Severity.WARNING,
        ("torch", "keras"),
        "Recurrent weights initialised with a spectral radius far from 1 (explodes above ~1.5, forgets below ~0.5).",
        options={"radius-high": 1.5, "radius-low": 0.5},
    )
)
class RecurrentInitUnstable(Rule):
    def check(self, ctx: Context) -> None:
        self.high = float(ctx.option("radius-high"))
        self.low = float(ctx.option("radius-low"))
        reader = _InitReader(ctx)
        seen: Set[int] = set()
        for call in ctx.facts.calls:
            qual = call.qualname or ""
            if qual.startswith(_TORCH_INIT) and call.args:
                target, method = call.arg(0, "tensor"), False
            elif call.method in ("normal_", "uniform_") and call.qualname is None and call.receiver is not None:
                target, method = call.receiver, True
            elif call.method == "copy_" and call.receiver is not None and call.args:
                self._assigned(ctx, reader, call.receiver, call.args[0].value, call.scope, call.node, call.stmt)
                continue
            else:
                continue
            if target is None:
                continue
            found = _hh_target(ctx, target, call.scope) or _param_loop_target(ctx, call, target)
            if found is None:
                continue
            what, layers = found
            sizes = sorted({l.get("hidden_size") for l in layers}, key=str)
            if not sizes or any(not isinstance(n, int) or isinstance(n, bool) or n <= 0 for n in sizes):
                continue  # a hidden size the file does not show: stay silent
            estimates = [reader.init_call(call, n, method) for n in sizes]
            if any(e is None for e in estimates) or id(call.node) in seen:
                continue
            seen.add(id(call.node))
            block = "" if all(l.kind == "RNN" for l in layers) else " (per gate block)"
            if len(sizes) == 1:
                n = sizes[0]
                self._report(ctx, call.node, call.stmt, estimates[0],  # type: ignore[arg-type]
                             f"the {n} x {n} recurrent matrix{block} of {what}")
                continue
            # several layers (an encoder and a decoder): report the sizes out of the band
            out = [(n, e) for n, e in zip(sizes, estimates) if not self.low <= e.radius <= self.high]  # type: ignore[union-attr]
            if not out or len({e.radius > self.high for _, e in out}) != 1:
                continue
            matrices = " and ".join(f"{n} x {n}" for n, _ in out)
            result = " and ".join([out[0][1].result] + [e.result.replace("spectral radius ", "") for _, e in out[1:]])
            first = out[0][1]
            self._report(ctx, call.node, call.stmt, _Estimate(first.radius, first.init, result),
                         f"the {matrices} recurrent matrices{block} of {what}")
        reinitialised = _reinitialises(ctx)
        for assign in ctx.facts.assigns:
            if assign.aug_op is None and assign.unpack_index is None and not (
                reinitialised and not re.search(r"weight_hh_l\d", assign.target)
            ):
                self._assigned(ctx, reader, None, assign.value, assign.scope, assign.value, assign.stmt, assign.target)
        for layer in ctx.layers:
            if layer.framework == "keras":
                self._keras(ctx, layer)

    def _assigned(self, ctx: Context, reader: _InitReader, receiver: Optional[cst.BaseExpression],
                  value: cst.BaseExpression, scope: Scope, node: cst.CSTNode, stmt: cst.CSTNode,
                  target: Optional[str] = None) -> None:
        """`self.W_hh = nn.Parameter(torch.randn(H, H) * 0.5)`, `rnn.weight_hh_l0.data = torch.eye(H) * 0.01`,
        `self.rnn.weight_hh_l0.data.copy_(...)`."""
        if receiver is not None:
            target = dotted_name(receiver)
        if target is None:
            return
        inner = strip_chain(value)
        if isinstance(inner, cst.Call) and dotted_name(inner.func) in ("nn.Parameter", "torch.nn.Parameter", "Parameter") and inner.args:
            inner = inner.args[0].value
        hh = _hh_target(ctx, cst.parse_expression(target), scope) if re.search(r"weight_hh_l\d", target) else None
        if hh is not None:
            sizes = {l.get("hidden_size") for l in hh[1]}
            n = next(iter(sizes)) if len(sizes) == 1 else None
            what = hh[0]
        else:
            parts = target.split(".")
            if len(parts) != 2 or parts[0] != "self" or not _RECURRENT_ATTR.match(parts[1]):
                return
            if scope.enclosing_class is None or not _recurrent_class(ctx, scope.enclosing_class, parts[1]):
                return
            n = None
            what = f"{target} in {scope.enclosing_class.name}"
        estimate = None
        if n is None:
            # a square hand-written matrix: n from its own shape
            for size in self._square_sizes(ctx, inner, scope):
                estimate = reader.tensor(inner, scope, size)
                n = size
                break
        elif isinstance(n, int):
            estimate = reader.tensor(inner, scope, n)
        if estimate is None or n is None:
            return
        self._report(ctx, node, stmt, estimate, f"the {n} x {n} recurrent matrix {what}")

    @staticmethod
    def _square_sizes(ctx: Context, node: cst.BaseExpression, scope: Scope) -> List[int]:
        for current in (node, getattr(node, "left", None), getattr(node, "right", None)):
            current = strip_chain(current) if current is not None else None
            if isinstance(current, cst.Call) and dotted_name(current.func) in ("torch.randn", "torch.rand", "torch.eye"):
                dims = [a.value for a in current.args if a.keyword is None]
                if len(dims) == 1 and isinstance(dims[0], (cst.Tuple, cst.List)):
                    dims = [e.value for e in dims[0].elements]
                values = [ctx.evaluator.value(d, scope) for d in dims]
                if dotted_name(current.func) == "torch.eye" and len(values) == 1:
                    values = values * 2
                if len(values) == 2 and values[0] == values[1] and isinstance(values[0], int) and values[0] > 1:
                    return [values[0]]
        return []

    def _keras(self, ctx: Context, layer: RecurrentLayer) -> None:
        node = layer.call.kwarg("recurrent_initializer")
        if node is None or layer.cell:
            return
        n = layer.get("units")
        if not isinstance(n, int) or isinstance(n, bool) or n <= 0:
            return
        scope = layer.call.scope
        init = node
        if isinstance(init, cst.Name):
            values = scope.assigns.get(init.value)
            if not values or len(values) != 1:
                return
            init = values[0]
        estimate = self._keras_estimate(ctx, init, scope, n)
        if estimate is None:
            return
        block = " (per gate block)" if layer.kind in ("LSTM", "GRU") else ""
        self._report(ctx, node, layer.call.stmt, estimate,
                     f"the {n} x {n} recurrent kernel{block} of {layer.kind.replace('RNN', 'SimpleRNN')}({n})")

    @staticmethod
    def _keras_estimate(ctx: Context, init: cst.BaseExpression, scope: Scope, n: int) -> Optional[_Estimate]:
        reader = _InitReader(ctx)
        if isinstance(init, cst.SimpleString):
            name = (init.evaluated_value or "").lower()
            if name == "random_normal" or name == "truncated_normal":
                return _iid_estimate(n, 0.0, 0.05, f"'{name}' (stddev 0.05)")
            if name == "random_uniform":
                return _iid_estimate(n, 0.0, 0.1 / math.sqrt(12), "'random_uniform' (-0.05, 0.05)")
            return None
        call = calls_by_node(ctx.facts).get(id(init)) if isinstance(init, cst.Call) else None
        if call is None or call.has_star_args or not (call.qualname or "").startswith("keras.initializers."):
            return None
        kind = call.qualname.rsplit(".", 1)[-1].lower().replace("_", "")  # type: ignore[union-attr]
        if kind in ("randomnormal", "truncatednormal"):
            mean = reader.num(call.arg(0, "mean"), call.scope, 0.0)
            std = reader.num(call.arg(1, "stddev"), call.scope, 0.05)
            if mean is None or std is None:
                return None
            label = "RandomNormal" if kind == "randomnormal" else "TruncatedNormal"
            return _iid_estimate(n, mean, std, f"{label}(stddev={std:g})")
        if kind == "randomuniform":
            low = reader.num(call.arg(0, "minval"), call.scope, -0.05)
            high = reader.num(call.arg(1, "maxval"), call.scope, 0.05)
            if low is None or high is None or high <= low:
                return None
            return _iid_estimate(n, (low + high) / 2, (high - low) / math.sqrt(12), f"RandomUniform({low:g}, {high:g})")
        if kind in ("orthogonal", "identity"):
            gain = reader.num(call.arg(0, "gain"), call.scope, 1.0)
            if gain is None:
                return None
            label = "Orthogonal" if kind == "orthogonal" else "Identity"
            return _Estimate(abs(gain), f"{label}(gain={gain:g})", f"spectral radius {abs(gain):.2f}")
        return None

    def _report(self, ctx: Context, node: cst.CSTNode, stmt: cst.CSTNode, estimate: _Estimate, what: str) -> None:
        if self.low <= estimate.radius <= self.high:
            return
        effect = "the state and gradients explode" if estimate.radius > self.high else "the network forgets within a few steps"
        ctx.report(
            node,
            f"{estimate.init} on {what} gives {estimate.result} (stable range {self.low:g}-{self.high:g}): {effect}; "
            "use orthogonal or identity initialisation, or std = 1/sqrt(hidden)",
            stmt,
        )


_INIT_METHODS = frozenset({"normal_", "uniform_", "orthogonal_", "copy_", "fill_", "zero_", "eye_",
                           "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_",
                           "trunc_normal_", "constant_"})
_INIT_HOOKS = frozenset({"reset_parameters", "init_weights", "_init_weights", "initialize", "init_params",
                         "reset", "_reset_parameters", "initialize_weights"})


def _reinitialises(ctx: Context) -> bool:
    """Whether the file initialises parameters after creating them (nn.init calls, in-place
    normal_/uniform_, model.apply(fn), a reset_parameters() method): then the tensor a hand-written
    matrix is created with is not what training starts from, and the rule reads the init calls."""
    for call in ctx.facts.calls:
        if (call.qualname or "").startswith(_TORCH_INIT) or call.method in _INIT_METHODS:
            return True
        if call.method == "apply" and len(call.args) == 1 and call.receiver is not None:
            return True
    return any(m in _INIT_HOOKS for cls in ctx.facts.classes.values() for m in cls.methods)


_STATE_PARAM = re.compile(r"^(h|hx|hidden|h_?prev|h_?t|state|prev_?state|h_?0)$", re.I)


def _recurrent_class(ctx: Context, cls: Scope, attr: str) -> bool:
    """Whether `self.<attr>` is used inside a loop in one of the class's methods, or the class is a
    cell whose forward() takes the previous state (forward(self, x, h))."""
    forward = cls.methods.get("forward")
    if forward is not None and any(_STATE_PARAM.match(p) for p in forward.param_order[2:]):
        return True
    wanted = f"self.{attr}"
    for loop in ctx.facts.loops:
        if loop.scope.parent is not cls:
            continue
        for node in walk(loop.node):
            if dotted_name(node) == wanted:
                return True
    return False




# -- RNN603: double activation before the loss ----------------------------------------------

_SOFTMAX = {"torch.softmax": "softmax", "torch.nn.functional.softmax": "softmax",
            "torch.log_softmax": "log_softmax", "torch.nn.functional.log_softmax": "log_softmax",
            "torch.sigmoid": "sigmoid", "torch.nn.functional.sigmoid": "sigmoid"}
_MODULE_ACT = {"torch.nn.Softmax": "softmax", "torch.nn.LogSoftmax": "log_softmax", "torch.nn.Sigmoid": "sigmoid"}
_LOSSES = {"torch.nn.CrossEntropyLoss": ("nn.CrossEntropyLoss", "softmax"),
           "torch.nn.BCEWithLogitsLoss": ("nn.BCEWithLogitsLoss", "sigmoid")}
_FUNCTIONAL_LOSSES = {"torch.nn.functional.cross_entropy": ("F.cross_entropy", "softmax"),
                      "torch.nn.functional.binary_cross_entropy_with_logits": ("F.binary_cross_entropy_with_logits", "sigmoid")}
_SHAPE_METHODS = frozenset({"view", "reshape", "squeeze", "flatten", "contiguous", "float", "transpose", "permute", "to"})


def _family(activation: str) -> str:
    return "sigmoid" if activation == "sigmoid" else "softmax"


_BUFFERS = frozenset({"torch.zeros", "torch.empty", "torch.zeros_like", "torch.empty_like"})


class _OutputReader:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.calls = calls_by_node(ctx.facts)
        self._stack: List[int] = []  # classes whose forward() is being read
        self.origin: Dict[int, str] = {}  # activation node -> the class whose forward() applies it

    def activation(self, node: cst.BaseExpression, scope: Scope, depth: int = 0) -> Optional[Tuple[str, cst.CSTNode]]:
        """The normalising activation that produces this expression, if one visibly does."""
        if depth > 4:
            return None
        if isinstance(node, cst.Call):
            call = self.calls.get(id(node))
            if call is None:
                return None
            if call.qualname in _SOFTMAX:
                return _SOFTMAX[call.qualname], node
            if call.qualname is None and call.method in ("softmax", "log_softmax", "sigmoid") and call.receiver is not None \
                    and dotted_name(call.receiver) not in ("np", "numpy", "scipy", "tf", "jax"):
                return call.method, node  # type: ignore[return-value]
            if call.dotted and call.dotted.startswith("self.") and call.dotted.count(".") == 1:
                module = self._self_module(scope, call.dotted[5:])
                if module is not None:
                    return module, node
                return self.submodule_output(node, scope, None)
            return None
        if isinstance(node, cst.Name):
            function = scope if scope.kind == "function" else None
            if function is None:
                return None
            assigns = [a for a in self.ctx.facts.assigns if a.target == node.value and a.scope is function]
            if not assigns:
                return None
            last = max(assigns, key=lambda a: a.order)
            if last.aug_op:
                return None
            from rnnlint.analysis.sequences import top_level_in_function

            if not top_level_in_function(last.stmt, function) and len(assigns) != 1:
                return None  # assigned in a branch or loop among other values
            if last.unpack_index is not None:
                # step_logits, hidden = self.decoder(x, hidden): the submodule's forward output
                if isinstance(last.value, cst.Call) and len(assigns) == 1:
                    return self.submodule_output(last.value, function, last.unpack_index)
                return None
            filled = self.buffer(node.value, last.value, function, depth)
            if filled is not None:
                return filled
            return self.activation(last.value, function, depth + 1)
        return None

    def submodule_output(self, node: cst.Call, scope: Scope, position: Optional[int]) -> Optional[Tuple[str, cst.CSTNode]]:
        """`self.decoder(...)` where self.decoder is a model class of this file whose forward()
        returns a normalised output (at tuple position `position`)."""
        if len(self._stack) > 3:
            return None
        cls = _module_class(self.ctx, node.func, scope, 0)
        if cls is None or id(cls) in self._stack or "forward" not in cls.methods:
            return None
        out = self.forward_output(cls)
        if out is None or out[0] != position:
            return None
        return out[1], out[2]

    def buffer(self, name: str, value: cst.BaseExpression, function: Scope, depth: int) -> Optional[Tuple[str, cst.CSTNode]]:
        """`out = torch.zeros(...)` filled by `out[:, t] = step` in the function: the activation
        every written value has (None unless all of them have the same one)."""
        call = self.calls.get(id(value)) if isinstance(value, cst.Call) else None
        if call is None or call.qualname not in _BUFFERS:
            return None
        writes: List[cst.BaseExpression] = []
        for stmt in walk(function.node):
            if isinstance(stmt, cst.AugAssign) and isinstance(stmt.target, cst.Subscript) \
                    and dotted_name(stmt.target.value) == name:
                return None
            if not isinstance(stmt, cst.Assign):
                continue
            for target in stmt.targets:
                if isinstance(target.target, (cst.Tuple, cst.List)) and any(
                    isinstance(e.value, cst.Subscript) and dotted_name(e.value.value) == name
                    for e in target.target.elements
                ):
                    return None  # `outputs[t], state = ...`: not read
                if isinstance(target.target, cst.Subscript) and dotted_name(target.target.value) == name:
                    if len(stmt.targets) != 1:
                        return None
                    writes.append(stmt.value)
        if not writes:
            return None
        found = [self.activation(w, function, depth + 1) for w in writes]
        if any(f is None for f in found) or len({_family(f[0]) for f in found}) != 1:  # type: ignore[index]
            return None
        return found[0]

    def _self_module(self, scope: Scope, attr: str) -> Optional[str]:
        cls = scope.enclosing_class
        if cls is None:
            return None
        values = self.ctx.evaluator.self_attr_values(cls, attr)
        if len(values) != 1:
            return None
        value = values[0][0]
        call = self.calls.get(id(value)) if isinstance(value, cst.Call) else None
        if call is None:
            return None
        if call.qualname in _MODULE_ACT:
            return _MODULE_ACT[call.qualname]
        if call.qualname == "torch.nn.Sequential" and call.args and not call.has_star_args:
            last = self.calls.get(id(call.args[-1].value))
            if last is not None and last.qualname in _MODULE_ACT:
                return _MODULE_ACT[last.qualname]
        return None

    def forward_output(self, cls: Scope) -> Optional[Tuple[Optional[int], str, cst.CSTNode]]:
        """(tuple position or None, activation, node) when every return of forward() is normalised."""
        forward = cls.methods.get("forward")
        if forward is None or not forward.returns or id(cls) in self._stack:
            return None
        self._stack.append(id(cls))
        try:
            return self._forward_output(forward)
        finally:
            self._stack.pop()

    def _forward_output(self, forward: Scope) -> Optional[Tuple[Optional[int], str, cst.CSTNode]]:
        results = []
        for ret in forward.returns:
            position: Optional[int] = None
            value = ret
            if isinstance(ret, cst.Tuple):
                if not ret.elements:
                    return None
                position, value = 0, ret.elements[0].value
            found = self.activation(value, forward)
            if found is None:
                return None
            if forward.parent is not None:
                self.origin.setdefault(id(found[1]), forward.parent.name)
            results.append((position, found[0], found[1]))
        if len({(p, _family(a)) for p, a, _ in results}) != 1:
            return None
        return results[0]


def _model_class(ctx: Context, callee: cst.BaseExpression, scope: Scope, single: Optional[Scope]) -> Optional[Scope]:
    """The class of the model object called as `model(x)` / `self.model(x)`."""
    dotted = dotted_name(callee)
    if dotted is None:
        return None
    builders = [a for a in ctx.facts.assigns if a.target == dotted and a.aug_op is None and a.unpack_index is None]
    classes = set()
    for assign in builders:
        built = strip_chain(assign.value)
        name = dotted_name(built.func) if isinstance(built, cst.Call) else None
        cls = ctx.facts.classes.get(name or "")
        classes.add(cls.name if cls is not None else None)
    if len(classes) == 1:
        name = next(iter(classes))
        return ctx.facts.classes.get(name) if name is not None else None
    if not builders:
        return single  # a function parameter: only when the file has a single model class
    return None


@rule(
    RuleMeta(
        "RNN603",
        "double-activation-loss",
        Severity.ERROR,
        ("torch", "keras"),
        "softmax/log_softmax before CrossEntropyLoss, sigmoid before BCEWithLogitsLoss, or keras softmax/sigmoid outputs with from_logits=True.",
    )
)
class DoubleActivationLoss(Rule):
    def check(self, ctx: Context) -> None:
        self._torch(ctx)
        self._keras(ctx)

    def _torch(self, ctx: Context) -> None:
        facts = ctx.facts
        reader = _OutputReader(ctx)
        bindings: Dict[str, Tuple[str, str]] = {}
        for call in facts.calls:
            if call.qualname in _LOSSES and call.assigned_to:
                bindings[call.assigned_to] = _LOSSES[call.qualname]
        model_classes = [c for c in facts.classes.values() if "forward" in c.methods]
        single = model_classes[0] if len(model_classes) == 1 else None
        outputs = {c.name: reader.forward_output(c) for c in model_classes}
        reported: Set[int] = set()
        for call in facts.calls:
            loss = None
            if call.qualname in _FUNCTIONAL_LOSSES:
                loss = _FUNCTIONAL_LOSSES[call.qualname]
            elif call.dotted in bindings and call.qualname is None:
                loss = self._passed_loss(ctx, call.dotted, call.scope, bindings, 0)
            elif isinstance(call.node.func, cst.Call):
                inner = reader.calls.get(id(call.node.func))
                if inner is not None and inner.qualname in _LOSSES:
                    loss = _LOSSES[inner.qualname]
            if loss is None or call.has_star_args:
                continue
            loss_name, family = loss
            value = call.arg(0, "input")
            if value is None:
                continue
            found = self._source(ctx, reader, value, call, outputs, single)
            if found is None:
                continue
            activation, node, where = found
            if _family(activation) != family or id(node) in reported:
                continue
            reported.add(id(node))
            applies = "log_softmax" if family == "softmax" else "a sigmoid"
            fix = "return the logits" if where.endswith("forward") else "pass the logits"
            ctx.report(
                node,
                f"{where} applies {activation} and its output goes into {loss_name} (line {{loss}}), "
                f"which applies {applies} itself: {fix}",
                None,
                refs={"loss": call.node},
            )

    def _source(self, ctx: Context, reader: _OutputReader, value: cst.BaseExpression, loss: CallFact,
                outputs, single, hops: int = 0):  # type: ignore[no-untyped-def]
        """The activation that produces `value` at the call `loss` (the loss call, or the call of
        the helper function whose parameter it is)."""
        position: Optional[int] = None
        for _ in range(6):
            while isinstance(value, cst.Subscript) or (
                isinstance(value, cst.Call) and isinstance(value.func, cst.Attribute) and value.func.attr.value in _SHAPE_METHODS
            ):
                value = value.value if isinstance(value, cst.Subscript) else value.func.value  # type: ignore[union-attr]
            direct = reader.activation(value, loss.scope) if isinstance(value, cst.Call) else None
            if direct is not None:
                return direct[0], direct[1], f"'{code(ctx.facts, direct[1], 40)}'"
            if isinstance(value, cst.Call):
                call = reader.calls.get(id(value))
                if call is None or call.qualname is not None or call.dotted is None:
                    return None
                cls = _model_class(ctx, value.func, loss.scope, single)
                if cls is None:
                    return None
                out = outputs.get(cls.name)
                if out is None or out[0] != position:
                    return None
                return out[1], out[2], f"{reader.origin.get(id(out[2]), cls.name)}.forward"
            if isinstance(value, cst.Name):
                assigns = [a for a in ctx.facts.assigns
                           if a.target == value.value and a.scope is loss.scope and a.order < loss.order]
                if not assigns:
                    if position is None and hops < 2:
                        return self._through_parameter(ctx, reader, value.value, loss.scope, outputs, single, hops)
                    return None
                last = max(assigns, key=lambda a: a.order)
                if last.aug_op is not None:
                    return None
                position = last.unpack_index
                value = last.value
                if position is not None and isinstance(value, cst.Tuple):
                    return None
                continue
            return None
        return None

    def _passed_loss(self, ctx: Context, name: str, scope: Scope, bindings, hops: int):  # type: ignore[no-untyped-def]
        """The loss module a name holds. A parameter of a module-level function
        (`def sequence_loss(logits, trg, criterion)`) holds what every call of it passes."""
        fallback = bindings.get(name)
        if scope.kind != "function" or name not in scope.params or scope.assigns.get(name) \
                or scope.parent is None or scope.parent.kind != "module":
            return fallback
        sites = ctx.evaluator.construction_sites(scope.name)
        if not sites:
            return fallback
        if hops > 3:
            return None
        index = scope.param_order.index(name)
        found = set()
        for site in sites:
            given = None if site.has_star_args else site.arg(index, name)
            if given is None:
                return None
            if isinstance(given, cst.Name):
                found.add(self._passed_loss(ctx, given.value, site.scope, bindings, hops + 1))
            else:
                inner = calls_by_node(ctx.facts).get(id(given)) if isinstance(given, cst.Call) else None
                found.add(_LOSSES.get(inner.qualname or "") if inner is not None else None)
        return next(iter(found)) if len(found) == 1 else None

    def _through_parameter(self, ctx: Context, reader: _OutputReader, name: str, function: Scope,
                           outputs, single, hops: int):  # type: ignore[no-untyped-def]
        """A parameter of a module-level helper (`def sequence_loss(logits, trg, criterion)`): what
        every call of the helper in the file passes; silent unless all calls agree."""
        if function.kind != "function" or function.parent is None or function.parent.kind != "module" \
                or name not in function.params or function.assigns.get(name):
            return None
        index = function.param_order.index(name)
        sites = ctx.evaluator.construction_sites(function.name)
        results = []
        for site in sites:
            if site.has_star_args:
                return None
            given = site.arg(index, name)
            found = self._source(ctx, reader, given, site, outputs, single, hops + 1) if given is not None else None
            if found is None:
                return None
            results.append(found)
        if not results or len({(_family(a), id(n)) for a, n, _ in results}) != 1:
            return None
        return results[0]

    def _keras(self, ctx: Context) -> None:
        facts = ctx.facts
        for call in facts.calls:
            if call.method != "compile" or call.receiver_dotted is None:
                continue
            loss = call.arg(1, "loss")
            if isinstance(loss, cst.Name):
                values = call.scope.assigns.get(loss.value)
                loss = values[0] if values and len(values) == 1 else None
            loss_call = calls_by_node(facts).get(id(loss)) if isinstance(loss, cst.Call) else None
            if loss_call is None or not (loss_call.qualname or "").startswith("keras.losses."):
                continue
            kind = loss_call.qualname.rsplit(".", 1)[-1]  # type: ignore[union-attr]
            if kind in ("SparseCategoricalCrossentropy", "CategoricalCrossentropy"):
                family = "softmax"
            elif kind == "BinaryCrossentropy":
                family = "sigmoid"
            else:
                continue
            logits = loss_call.kwarg("from_logits")
            if logits is None or ctx.evaluator.value(logits, loss_call.scope) is not True:
                continue
            output = self._keras_output(ctx, call.receiver_dotted, call.scope)
            if output is None:
                continue
            layer, activation = output
            if activation != family:
                continue
            ctx.report(
                layer,
                f"the model's last layer applies activation='{activation}' and the loss is "
                f"{kind}(from_logits=True) (line {{loss}}), which applies it again: drop the activation "
                "or use from_logits=False",
                None,
                refs={"loss": loss_call.node},
            )

    def _keras_output(self, ctx: Context, name: str, scope: Scope) -> Optional[Tuple[cst.CSTNode, str]]:
        facts = ctx.facts
        model = model_built(facts, name, scope)
        last: Optional[cst.BaseExpression] = None
        if model is not None and model.layers:
            last = model.layers[-1]
        else:
            built = [c for c in facts.calls if c.assigned_to == name and c.scope is scope]
            if len(built) != 1 or not (built[0].qualname or "").endswith(("keras.Model", "keras.models.Model")):
                return None
            outputs = built[0].arg(1, "outputs")
            if isinstance(outputs, cst.Name):
                values = built[0].scope.assigns.get(outputs.value)
                outputs = values[0] if values and len(values) == 1 else None
            if isinstance(outputs, cst.Call) and isinstance(outputs.func, cst.Call):
                last = outputs.func
        if not isinstance(last, cst.Call):
            return None
        layer = calls_by_node(facts).get(id(last))
        if layer is None or layer.has_star_args:
            return None
        kind = layer_name(facts, last)
        if kind in ("Softmax",):
            return last, "softmax"
        if kind == "Activation":
            value = ctx.evaluator.value(layer.arg(0, "activation"), layer.scope)
        elif kind in ("Dense", "TimeDistributed"):
            target = layer if kind == "Dense" else calls_by_node(facts).get(id(last.args[0].value)) if last.args else None
            if target is None:
                return None
            node = target.kwarg("activation") or target.positional(1)
            value = ctx.evaluator.value(node, target.scope) if node is not None else None
            if node is not None and not isinstance(value, str):
                value = (dotted_name(node) or "").rsplit(".", 1)[-1]
        else:
            return None
        if value in ("softmax", "sigmoid"):
            return last, value
        return None


# -- RNN604: linear recurrence ---------------------------------------------------------------

_LINEAR_MODULES = frozenset({"torch.nn.Linear", "torch.nn.LazyLinear", "torch.nn.Parameter"})


class _Affine:
    """Decides whether an expression is affine in a state name, with a learned matrix applied to it."""

    def __init__(self, ctx: Context, cls: Scope) -> None:
        self.ctx = ctx
        self.cls = cls
        self.calls = calls_by_node(ctx.facts)

    def _self_kind(self, node: cst.CSTNode) -> Optional[str]:
        dotted = dotted_name(node)
        if dotted is None or not dotted.startswith("self.") or dotted.count(".") != 1:
            return None
        values = self.ctx.evaluator.self_attr_values(self.cls, dotted[5:])
        if len(values) != 1 or not isinstance(values[0][0], cst.Call):
            return None
        call = self.calls.get(id(values[0][0]))
        if call is not None and call.qualname in _LINEAR_MODULES:
            return "linear" if call.qualname != "torch.nn.Parameter" else "matrix"
        return None

    def mentions(self, node: cst.CSTNode, state: str) -> bool:
        return any(isinstance(n, cst.Name) and n.value == state for n in walk(node))

    def affine(self, node: cst.BaseExpression, state: str, subst: Dict[str, cst.BaseExpression], depth: int = 0) -> Optional[bool]:
        """None: not affine in the state (or not understood). True: affine with a learned matrix on
        the state. False: affine, but the state only appears without a matrix (h + x, 0.9 * h)."""
        if depth > 8:
            return None
        if not self.mentions_state(node, state, subst):
            return False
        if isinstance(node, cst.Name):
            if node.value == state:
                return False
            if node.value in subst:
                return self.affine(subst[node.value], state, subst, depth + 1)
            return False
        if isinstance(node, cst.BinaryOperation):
            op = node.operator
            if isinstance(op, (cst.Add, cst.Subtract)):
                left = self.affine(node.left, state, subst, depth + 1)
                right = self.affine(node.right, state, subst, depth + 1)
                if left is None or right is None:
                    return None
                return left or right
            if isinstance(op, cst.MatrixMultiply):
                for mine, other in ((node.left, node.right), (node.right, node.left)):
                    if self._self_kind(other) == "matrix" and self.affine(mine, state, subst, depth + 1) is not None:
                        return True
                return None
            return None  # element-wise products: gates, decay rates (LRU-style), not a matrix map
        if isinstance(node, cst.Call):
            call = self.calls.get(id(node))
            if call is None:
                return None
            if call.dotted and self._self_kind(node.func) == "linear" and len(node.args) == 1:
                inner = self.affine(node.args[0].value, state, subst, depth + 1)
                return True if inner is not None and self.mentions_state(node.args[0].value, state, subst) else inner
            if call.qualname in ("torch.cat", "torch.concat", "torch.hstack") and node.args:
                items = node.args[0].value
                if not isinstance(items, (cst.Tuple, cst.List)):
                    return None
                parts = [self.affine(e.value, state, subst, depth + 1) for e in items.elements]
                if any(p is None for p in parts):
                    return None
                return any(parts)
            if call.qualname in ("torch.matmul", "torch.mm") and len(node.args) == 2:
                a, b = node.args[0].value, node.args[1].value
                for mine, other in ((a, b), (b, a)):
                    if self._self_kind(other) == "matrix" and self.affine(mine, state, subst, depth + 1) is not None:
                        return True
            return None
        return None

    def mentions_state(self, node: cst.CSTNode, state: str, subst: Dict[str, cst.BaseExpression]) -> bool:
        if self.mentions(node, state):
            return True
        return any(self.mentions(node, k) and self.mentions_state(v, state, {}) for k, v in subst.items())


def _loop_assigns(ctx: Context, loop: Loop) -> Dict[str, List[Any]]:
    table: Dict[str, List[Any]] = {}
    for assign in ctx.facts.assigns:
        if assign.loop is loop:
            table.setdefault(assign.target, []).append(assign)
    return table


@rule(
    RuleMeta(
        "RNN604",
        "linear-recurrence",
        Severity.WARNING,
        ("torch",),
        "A hand-written recurrent cell updates its state affinely with no bounded nonlinearity.",
    )
)
class LinearRecurrence(Rule):
    def check(self, ctx: Context) -> None:
        facts = ctx.facts
        reported: Set[int] = set()
        for loop in facts.loops:
            if loop.scope.kind == "module" or loop.scope.kind == "function":
                table = _loop_assigns(ctx, loop)
                for state, assigns in table.items():
                    # Cell modules called in the loop: h = self.cell(x[:, t], h)
                    if "." not in state and len(assigns) == 1 and assigns[0].aug_op is None:
                        self._cell_call(ctx, assigns[0], state, reported)
            cls = loop.scope.enclosing_class
            if cls is None or loop.scope.kind != "function":
                continue
            self._loop(ctx, loop, cls, reported)

    def _loop(self, ctx: Context, loop: Loop, cls: Scope, reported: Set[int]) -> None:
        facts = ctx.facts
        table = _loop_assigns(ctx, loop)
        affine = _Affine(ctx, cls)
        for state, assigns in table.items():
            if "." in state or not _carried(ctx, loop, state):
                continue
            if any(a.aug_op is not None or a.unpack_index is not None for a in assigns):
                continue
            subst = {
                name: items[0] for name, items in table.items()
                if name != state and "." not in name and len(items) == 1 and items[0].unpack_index is None
                and items[0].aug_op is None
            }
            values = {name: a.value for name, a in subst.items()}
            results = [affine.affine(a.value, state, values) for a in assigns]
            if not results or any(r is None for r in results) or not any(results):
                continue
            if not all(affine.mentions_state(a.value, state, values) for a in assigns):
                continue
            target = assigns[-1]
            node, stmt, text = target.value, target.stmt, f"{state} = {code(facts, target.value, 50)}"
            if isinstance(node, cst.Name) and node.value in subst:
                via = subst[node.value]
                node, stmt, text = via.value, via.stmt, f"{node.value} = {code(facts, via.value, 50)}"
            if id(node) in reported:
                continue
            reported.add(id(node))
            ctx.report(
                node,
                f"'{text}' updates the state '{state}' of {cls.name} affinely with no bounded "
                "nonlinearity: it grows or decays geometrically with the spectral radius of its recurrent "
                "matrix; apply tanh (or gate it), or use a constrained diagonal recurrence",
                stmt,
            )

    def _cell_call(self, ctx: Context, assign, state: str, reported: Set[int]) -> None:  # type: ignore[no-untyped-def]
        value = assign.value
        if not isinstance(value, cst.Call):
            return
        call = calls_by_node(ctx.facts).get(id(value))
        if call is None or call.dotted is None or call.has_star_args:
            return
        positions = [i for i, a in enumerate(value.args) if isinstance(a.value, cst.Name) and a.value.value == state]
        if len(positions) != 1:
            return
        cell = _cell_class(ctx, call)
        if cell is None:
            return
        forward = cell.methods.get("forward")
        if forward is None or len(forward.returns) != 1:
            return
        params = [p for p in forward.param_order if p != "self"]
        index = positions[0]
        if value.args[index].keyword is not None:
            param = value.args[index].keyword.value  # type: ignore[union-attr]
        elif index < len(params):
            param = params[index]
        else:
            return
        if param not in params:
            return
        ret = forward.returns[0]
        if assign.unpack_index is not None:
            if not isinstance(ret, cst.Tuple) or assign.unpack_index >= len(ret.elements):
                return
            ret = ret.elements[assign.unpack_index].value
        elif isinstance(ret, cst.Tuple):
            return
        # Names assigned once in forward stand for their value; the state parameter must not be
        # rebound (hidden = torch.tanh(hidden) would make it bounded).
        subst = {name: values[0] for name, values in forward.assigns.items()
                 if len(values) == 1 and "." not in name and name != param}
        if param in forward.assigns and not (isinstance(ret, cst.Name) and ret.value == param
                                             and len(forward.assigns[param]) == 1):
            return
        if isinstance(ret, cst.Name) and ret.value == param:
            ret = forward.assigns[param][0]
        affine = _Affine(ctx, cell)
        if affine.affine(ret, param, subst) is not True or id(ret) in reported:
            return
        reported.add(id(ret))
        ctx.report(
            ret,
            f"{cell.name}.forward computes the new state as '{code(ctx.facts, ret, 50)}', an affine map of "
            f"the old state '{param}' with no bounded nonlinearity, and it is fed back as the next state "
            "(line {loop}): it grows or decays geometrically with the spectral radius of its recurrent "
            "matrix; apply tanh or gate it",
            None,
            refs={"loop": assign.stmt},
        )


def _carried(ctx: Context, loop: Loop, state: str) -> bool:
    """The state exists before the loop: assigned earlier in the function, or a parameter."""
    scope = loop.scope
    if state in scope.params:
        return True
    return any(
        a.target == state and a.scope is scope and a.order < loop.order and a.loop is not loop
        and not (a.loop is not None and loop.contains(a.loop))
        for a in ctx.facts.assigns
    )


def _cell_class(ctx: Context, call: CallFact) -> Optional[Scope]:
    dotted = call.dotted or ""
    values: List[cst.BaseExpression] = []
    if dotted.startswith("self.") and dotted.count(".") == 1:
        cls = call.scope.enclosing_class
        if cls is None:
            return None
        values = [v for v, _ in ctx.evaluator.self_attr_values(cls, dotted[5:])]
    elif "." not in dotted:
        scope: Optional[Scope] = call.scope
        while scope is not None and not values:
            values = list(scope.assigns.get(dotted, []))
            scope = scope.parent
    if len(values) != 1:
        return None
    built = strip_chain(values[0])
    if not isinstance(built, cst.Call):
        return None
    return ctx.facts.classes.get(dotted_name(built.func) or "")


# -- RNN605: unbounded activation -----------------------------------------------------------

_UNBOUNDED = frozenset({"relu", "elu", "selu", "gelu", "swish", "silu", "softplus", "linear", "exponential",
                        "leaky_relu", "mish"})


@rule(
    RuleMeta(
        "RNN605",
        "unbounded-recurrent-activation",
        Severity.WARNING,
        ("torch", "keras"),
        "LSTM/GRU/SimpleRNN (or nn.RNN) with an unbounded activation such as relu on the recurrence.",
    )
)
class UnboundedRecurrentActivation(Rule):
    def check(self, ctx: Context) -> None:
        for layer in ctx.layers:
            call = layer.call
            if call.has_star_args:
                continue
            if layer.framework == "torch":
                if layer.kind != "RNN":
                    continue
                node = call.arg(3, "nonlinearity")  # 4th in both nn.RNN and nn.RNNCell
                value = ctx.evaluator.value(node, call.scope) if node is not None else None
                if value != "relu":
                    continue
                ctx.report(
                    node,  # type: ignore[arg-type]
                    f"{layer.label}(nonlinearity='relu') leaves the recurrent state unbounded: with a recurrent "
                    "spectral radius above 1 it grows geometrically over the sequence; keep the default tanh "
                    "(or pair relu with identity init and a small learning rate, IRNN-style)",
                    call.stmt,
                )
                continue
            if (call.qualname or "").endswith("layers.RNN"):
                continue
            node = call.kwarg("activation")
            if node is None:
                continue
            value = ctx.evaluator.value(node, call.scope)
            if value is None and isinstance(node, cst.Name) and node.value == "None":
                name = "None"
            elif isinstance(value, str):
                name = value.lower()
            elif not known(value):
                dotted = dotted_name(node)
                tail = dotted.rsplit(".", 1)[-1] if dotted else ""
                qual = ctx.facts.aliases.get(dotted.split(".", 1)[0], "") if dotted else ""
                if not tail or not (qual.startswith(("tensorflow", "keras", "tf")) or dotted.startswith(("tf.", "keras."))):
                    continue
                name = tail.lower()
            else:
                continue
            if name != "None" and name not in _UNBOUNDED:
                continue
            kind = layer.kind.replace("RNN", "SimpleRNN") + ("Cell" if layer.cell else "")
            units = call.positional(0)
            head = f"{kind}({code(ctx.facts, units, 20)}, activation={code(ctx.facts, node, 30)})" if units is not None else f"{kind}(activation={code(ctx.facts, node, 30)})"
            what = (
                "makes the cell output and candidate state unbounded"
                if layer.kind in ("LSTM", "GRU", "ConvLSTM")
                else "leaves the recurrent state unbounded"
            )
            # Only keras LSTM/GRU have a cuDNN kernel, and it is chosen only with activation='tanh'.
            cudnn = " (and the cuDNN kernel needs tanh)" if layer.kind in ("LSTM", "GRU") and not layer.cell else ""
            ctx.report(
                node,
                f"{head} {what}: with nothing to squash it the state can grow geometrically over the "
                f"sequence{cudnn}; keep the default tanh",
                call.stmt,
            )
