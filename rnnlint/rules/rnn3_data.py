"""RNN3xx: data and inputs."""

from __future__ import annotations

import re
from typing import Dict, List, Optional, Set

import libcst as cst

from rnnlint.analysis.dataflow import names_in
from rnnlint.analysis.facts import CallFact, ModuleFacts
from rnnlint.analysis.names import dotted_name
from rnnlint.analysis.walker import iter_children
from rnnlint.findings import Severity
from rnnlint.rules.base import Context, Rule, RuleMeta, rule

NUMERIC_SOURCES = frozenset(
    {
        "pandas.read_csv", "pandas.read_excel", "pandas.read_parquet", "pandas.read_table",
        "pandas.read_feather", "pandas.read_hdf", "numpy.loadtxt", "numpy.genfromtxt",
        "numpy.load", "numpy.fromfile", "csv.reader", "csv.DictReader",
    }
)
TENSOR_CONVERSIONS = frozenset(
    {
        "torch.tensor", "torch.from_numpy", "torch.FloatTensor", "torch.Tensor",
        "torch.as_tensor", "torch.DoubleTensor",
    }
)
# Calls whose result is scaled data.
_SCALING_METHODS = frozenset(
    {
        "fit_transform", "transform", "normalize", "scale", "minmax_scale", "robust_scale",
        "maxabs_scale", "standardize", "log", "log1p", "log2", "log10", "pct_change", "zscore",
        "quantile_transform", "power_transform",
    }
)
# Anything here means the author scales somewhere; rnnlint cannot follow every path, so it stays quiet.
_SCALERS = re.compile(
    r"(Scaler|Normalizer|Normalization|QuantileTransformer|PowerTransformer|StandardScaler)$"
)
_SCALE_WORDS = re.compile(r"std|max|min|range|scale|norm|mean|sigma|mu\b", re.I)
_TARGET_NAME = re.compile(r"^(y|Y)(_|$|[0-9])|label|target|^Y", re.I)
_EMBEDDINGS = ("torch.nn.Embedding", "keras.layers.Embedding", "keras.layers.TextVectorization")


def _names_in(node: cst.CSTNode, out: Set[str]) -> Set[str]:
    """Every dotted name (and each of its prefixes) mentioned in an expression."""
    return names_in(node, out)


_INDEX_HELPERS = frozenset({"len", "range", "int", "round", "slice", "enumerate"})


# Names assigned from a statistic of the data (lo = x.min(0)); set per file by the rule.
_STAT_NAMES: Set[str] = set()


def _is_scaling_operation(node: cst.BinaryOperation) -> bool:
    """x / 255.0, (x - mean) / std, x - x.min(): the right side is a literal or a statistic."""
    right = node.right
    if isinstance(node.operator, cst.Divide) and isinstance(right, (cst.Integer, cst.Float)):
        return True
    names = _names_in(right, set())
    return (
        any(_SCALE_WORDS.search(n) for n in names)
        or bool(names & _STAT_NAMES)
        or _mentions_stat_call(right)
    )


def stat_names(facts: ModuleFacts) -> Set[str]:
    return {a.target for a in facts.assigns if _mentions_stat_call(a.value)}


def _mentions_stat_call(node: cst.CSTNode) -> bool:
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, cst.Call) and isinstance(current.func, cst.Attribute):
            if _SCALE_WORDS.search(current.func.attr.value):
                return True
        stack.extend(iter_children(current))
    return False


def _scales(node: cst.CSTNode) -> bool:
    """True when the expression normalises the data it computes (x / x.max(), scaler.transform(x)).

    Arithmetic inside len()/range() calls and subscript indices is bookkeeping, not scaling."""
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, cst.BinaryOperation) and isinstance(current.operator, (cst.Divide, cst.Subtract)):
            if _is_scaling_operation(current):
                return True
        if isinstance(current, cst.Call):
            func = current.func
            name = func.attr.value if isinstance(func, cst.Attribute) else dotted_name(func)
            if name in _SCALING_METHODS:
                return True
            if name in _INDEX_HELPERS:
                continue
        if isinstance(current, cst.Lambda):
            continue
        if isinstance(current, cst.Subscript):
            stack.append(current.value)
            continue
        stack.extend(iter_children(current))
    return False


def _scaling_anywhere(facts: ModuleFacts) -> bool:
    _STAT_NAMES.clear()
    _STAT_NAMES.update(stat_names(facts))
    for call in facts.calls:
        head = (call.dotted or "").rsplit(".", 1)[-1]
        if _SCALERS.search(head):
            return True
        if call.qualname in _EMBEDDINGS or head == "Embedding":
            return True
    for assign in facts.assigns:
        value = assign.value
        if isinstance(value, cst.BinaryOperation) and isinstance(value.operator, cst.Divide):
            right = value.right
            if isinstance(right, (cst.Integer, cst.Float)):
                return True
            if _is_scaling_operation(value):
                return True
        if assign.aug_op in ("DivideAssign", "SubtractAssign"):
            return True
    return False


def _source_of(node: cst.CSTNode, calls_by_node: Dict[int, CallFact]) -> Optional[CallFact]:
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, cst.Call):
            call = calls_by_node.get(id(current))
            if call is not None and call.qualname in NUMERIC_SOURCES:
                return call
        stack.extend(iter_children(current))
    return None


@rule(
    RuleMeta(
        "RNN301",
        "unscaled-inputs",
        Severity.WARNING,
        ("torch", "keras"),
        "Numeric features loaded from a file reach a recurrent model with no scaling on their path.",
    )
)
class UnscaledInputs(Rule):
    def check(self, ctx: Context) -> None:
        facts = ctx.facts
        if not any(c.qualname in NUMERIC_SOURCES for c in facts.calls):
            return
        if not ctx.has_recurrent() or _scaling_anywhere(facts):
            return
        calls_by_node = {id(c.node): c for c in facts.calls}
        # name -> the file-loading call its data came from
        tainted: Dict[str, CallFact] = {}
        functions_scaling = {
            name: any(_scales(v) for v in fn.returns) or any(_scales(c.node) for c in fn.calls)
            for name, fn in facts.functions.items()
        }
        for assign in sorted(facts.assigns, key=lambda a: a.order):
            value = assign.value
            origin = _source_of(value, calls_by_node)
            if origin is None:
                mentioned = _names_in(value, set())
                hits = [tainted[n] for n in mentioned if n in tainted]
                origin = hits[0] if hits else None
                if origin is None:
                    # Data returned by a local loader function: load_data("prices.csv").
                    for call in _direct_calls(value, calls_by_node):
                        fn = facts.functions.get(call.dotted or "")
                        if fn is not None and not functions_scaling.get(fn.name):
                            for ret in fn.returns:
                                origin = _source_of(ret, calls_by_node) or origin
                        if fn is not None and origin is None and not functions_scaling.get(fn.name):
                            arg_hits = [tainted[n] for a in call.args for n in _names_in(a.value, set()) if n in tainted]
                            origin = arg_hits[0] if arg_hits else None
            else:
                mentioned = set()
            if origin is not None and not _scales(value) and not _calls_scaling_function(value, calls_by_node, functions_scaling):
                tainted[assign.target] = origin
            elif assign.target in tainted and assign.aug_op is None:
                del tainted[assign.target]
        sinks = self._sinks(ctx, tainted, calls_by_node)
        if sinks:
            call, name, origin = sinks[0]
            label = ctx.model_label()
            ctx.report(
                call.node,
                f"{name} comes from {origin.dotted}() (line {{origin}}) and reaches the "
                f"{label} with no standardisation or min-max scaling on its path",
                call.stmt,
                refs={"origin": origin.node},
            )

    def _sinks(self, ctx: Context, tainted: Dict[str, CallFact], calls_by_node):  # type: ignore[no-untyped-def]
        out = []
        later_scaled = {a.target for a in ctx.facts.assigns if _scales(a.value)}
        for call in ctx.facts.calls:
            argument = None
            if call.qualname in TENSOR_CONVERSIONS:
                argument = call.arg(0, "data")
                dtype = call.kwarg("dtype")
                if dtype is not None and re.search(r"long|int|bool", dotted_name(dtype) or ""):
                    continue
                if call.assigned_to and call.assigned_to in later_scaled:
                    continue
            elif call.method == "fit" and call.qualname is None and ctx.keras_model_is_recurrent(call.receiver_dotted):
                argument = call.arg(0, "x")
            if argument is None or _scales(argument):
                continue
            assigned = (call.assigned_to or "").rsplit(".", 1)[-1]
            if assigned and _TARGET_NAME.search(assigned):
                continue
            mentioned = sorted(n for n in _names_in(argument, set()) if n in tainted)
            if not mentioned or any(_TARGET_NAME.search(n.rsplit(".", 1)[-1]) for n in mentioned):
                continue
            name = mentioned[0]
            out.append((call, name, tainted[name]))
        return out


def _direct_calls(node: cst.CSTNode, calls_by_node) -> List[CallFact]:  # type: ignore[no-untyped-def]
    call = calls_by_node.get(id(node)) if isinstance(node, cst.Call) else None
    return [call] if call is not None else []


def _calls_scaling_function(node: cst.CSTNode, calls_by_node, functions_scaling) -> bool:  # type: ignore[no-untyped-def]
    for call in _direct_calls(node, calls_by_node):
        if functions_scaling.get(call.dotted or ""):
            return True
    return False
