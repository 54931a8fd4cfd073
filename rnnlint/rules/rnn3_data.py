"""RNN3xx: data and inputs."""

from __future__ import annotations

import re
from typing import Dict, List, Optional, Set

import libcst as cst

from rnnlint.analysis.dataflow import (
    EVAL_ROLES,
    TEST,
    Fit,
    code_of,
    dataflow,
    keras_watchers,
    last_step_read,
    name_tokens,
    names_in,
    padding,
    split_subscript_under,
    test_metric_uses,
)
from rnnlint.analysis.epochs import KERAS_FIT_METHODS, name_loads
from rnnlint.analysis.facts import CallFact, ModuleFacts
from rnnlint.analysis.names import dotted_name
from rnnlint.analysis.sequences import torch_call_lengths
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
    r"(Scaler|Normalizer|Normalization|QuantileTransformer|PowerTransformer|StandardScaler"
    r"|BatchNorm1d|LayerNorm|InstanceNorm1d)$"  # a normalisation layer in the model may take the raw input
)
_SCALE_WORDS = re.compile(r"std|max|min|range|scale|norm|mean|sigma|mu\b", re.I)
_INT_CASTS = frozenset({"long", "int", "short", "bool", "byte"})
_TARGET_KEY = re.compile(r"(^|_)[yY]($|_|[0-9])|label|target|class", re.I)
_TARGET_NAME = re.compile(r"^(y|Y)(_|$|[0-9])|label|target|^Y", re.I)
_EMBEDDINGS = ("torch.nn.Embedding", "keras.layers.Embedding", "keras.layers.TextVectorization")


def _names_in(node: cst.CSTNode, out: Set[str]) -> Set[str]:
    """Every dotted name (and each of its prefixes) mentioned in an expression."""
    return names_in(node, out)


_INDEX_HELPERS = frozenset({"len", "range", "int", "round", "slice", "enumerate"})
_META_ATTRS = frozenset({"shape", "size", "ndim", "dtype", "columns", "index"})
# A file path that says its data is already prepared: np.load("train_scaled.npy").
_PREPARED_PATH = re.compile(r"scal|norm|standardi|preprocess|processed|prepared", re.I)
# A NumPy array file named after a ready-made split (X_train.npy, test_x.npz) was written by a
# preparation step this file does not show: whether it is scaled cannot be known here.
_SPLIT_ARRAY_FILE = re.compile(r"(?:^|[/\\_.\-])(?:x|y)?_?(?:train|test|val|valid|validation)(?:_?(?:x|y))?\.(?:npy|npz)$",
                               re.I)


def _bookkeeping(node: cst.CSTNode) -> Optional[List[cst.CSTNode]]:
    if isinstance(node, cst.Call):
        func = node.func
        if (func.attr.value if isinstance(func, cst.Attribute) else dotted_name(func)) in _INDEX_HELPERS:
            return []
    if isinstance(node, cst.Attribute) and node.attr.value in _META_ATTRS:
        return []
    if isinstance(node, cst.Subscript):
        return [node.value]
    return None


def _data_names(node: cst.CSTNode) -> Set[str]:
    """The names whose *values* flow into an expression: not those only measured for
    bookkeeping (len(x), x.shape[0]) or used as indices (x[:split] flows x, not split)."""
    return names_in(node, prune=_bookkeeping)


def _strings_in(node: cst.CSTNode) -> List[str]:
    out = []
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, cst.SimpleString):
            out.append(current.value)
        stack.extend(iter_children(current))
    return out


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
        or any(_SCALE_WORDS.search(text) for text in _strings_in(right))  # stats["std"]
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


_TARGET_TOKENS = frozenset({"y", "label", "labels", "target", "targets"})
# Methods of a scaler that do not scale the features: fitting alone, and mapping predictions back.
_UNSCALING_METHODS = frozenset({"fit", "partial_fit", "inverse_transform"})


def _is_target_name(name: str) -> bool:
    """y, y_train, trainY, target_scaler, scaler_y, labels: words, not substrings (not 'yearly')."""
    return bool(set(name_tokens(name)) & _TARGET_TOKENS)


def _target_only_scalers(facts: ModuleFacts) -> Set[int]:
    """id() of scaler constructor calls whose scaler never touches the features.

    `y_scaler = MinMaxScaler()` counts when every mention of the name in the file is accounted
    for: its assignment, `.fit()`/`.inverse_transform()` calls, and `.transform()`/`.fit_transform()`
    calls whose data and result are all target-named (`y = y_scaler.fit_transform(y_raw)`). Any
    other mention (passed to a helper, stored, closed over, an attribute read) keeps it as scaling."""
    by_receiver = {id(c.receiver): c for c in facts.calls if c.receiver is not None}
    candidates: Dict[str, List[CallFact]] = {}
    inline: Set[int] = set()  # `y = MinMaxScaler().fit_transform(y_raw)`: no name to follow
    for call in facts.calls:
        head = (call.dotted or "").rsplit(".", 1)[-1]
        if not _SCALERS.search(head):
            continue
        name = call.assigned_to
        outer = by_receiver.get(id(call.node))
        if name is None and outer is not None and outer.method in ("fit", "partial_fit"):
            name = outer.assigned_to  # scaler = StandardScaler().fit(x)
        elif name is None and outer is not None and outer.method in ("fit_transform", "transform"):
            if _scales_target_only(facts, outer):
                inline.add(id(call.node))
            continue
        if name and "." not in name:
            candidates.setdefault(name, []).append(call)
    if not candidates:
        return inline
    accounted: Dict[str, int] = {n: 0 for n in candidates}
    for assign in facts.assigns:
        if assign.target in accounted:
            accounted[assign.target] += 1
    spoiled: Set[str] = set()
    for call in facts.calls:
        name = call.receiver_dotted
        if name not in accounted or call.method is None:
            continue
        accounted[name] += 1
        if call.method in _UNSCALING_METHODS:
            continue
        if call.method not in ("transform", "fit_transform") or not _scales_target_only(facts, call):
            spoiled.add(name)
    mentions = name_loads(facts)
    out: Set[int] = set(inline)
    for name, calls in candidates.items():
        if name not in spoiled and mentions.get(name, 0) == accounted[name]:
            out.update(id(c.node) for c in calls)
    return out


def _scales_target_only(facts: ModuleFacts, call: CallFact) -> bool:
    """A transform()/fit_transform() whose result goes to a target-named name and whose data is
    target-named or a loaded table (`y = y_scaler.fit_transform(df[["load"]].values)`)."""
    if not call.args:
        return False
    data = {n.split(".", 1)[0] for a in call.args for n in _data_names(a.value)}
    result = _statement_target(call)
    untargeted = {n for n in data if not _is_target_name(n)}
    return bool(data) and result is not None and _is_target_name(result) and not (
        untargeted - _frames(facts, untargeted)
    )


def _statement_target(call: CallFact) -> Optional[str]:
    """The one plain name the statement holding `call` assigns (`y = sc.fit_transform(v).ravel()`)."""
    stmt = call.stmt
    if not isinstance(stmt, cst.SimpleStatementLine) or len(stmt.body) != 1:
        return None
    small = stmt.body[0]
    if not isinstance(small, cst.Assign) or len(small.targets) != 1:
        return None
    target = small.targets[0].target
    return target.value if isinstance(target, cst.Name) else None


def _frames(facts: ModuleFacts, names: Set[str]) -> Set[str]:
    """Names among `names` that hold a whole loaded table (df = pd.read_csv(...)), from which a
    target-named result may take its target column: `y = y_scaler.fit_transform(df[["load"]])`."""
    loaded = facts.cache.get("rnn3.loaded_tables")
    if loaded is None:
        sources = {id(c.node) for c in facts.calls if c.qualname in NUMERIC_SOURCES}
        loaded = {a.target for a in facts.assigns if a.unpack_index is None and _loads_file(a.value, sources)}
        facts.cache["rnn3.loaded_tables"] = loaded
    return names & loaded  # type: ignore[operator]


def _loads_file(node: cst.CSTNode, calls: Set[int]) -> bool:
    """`node` is a loading call (id in `calls`), possibly under method calls: pd.read_csv(p).dropna()."""
    current = node
    for _ in range(6):
        if isinstance(current, cst.Call):
            if id(current) in calls:
                return True
            if isinstance(current.func, cst.Attribute):
                current = current.func.value
                continue
        return False
    return False


def _scaling_anywhere(facts: ModuleFacts) -> bool:
    _STAT_NAMES.clear()
    _STAT_NAMES.update(stat_names(facts))
    target_only = _target_only_scalers(facts)
    for call in facts.calls:
        head = (call.dotted or "").rsplit(".", 1)[-1]
        if _SCALERS.search(head) and id(call.node) not in target_only:
            return True
        if call.qualname in _EMBEDDINGS or head == "Embedding":
            return True
    for assign in facts.assigns:
        if _is_target_name(assign.target) and "." not in assign.target:
            continue  # y = y / y.max() scales the target, not the features
        value = assign.value
        if isinstance(value, cst.BinaryOperation) and isinstance(value.operator, cst.Divide):
            right = value.right
            if isinstance(right, (cst.Integer, cst.Float)):
                return True
            if _is_scaling_operation(value):
                return True
        if assign.aug_op in ("DivideAssign", "SubtractAssign"):
            return True
    return _scales_into_subscript(facts)


def _scales_into_subscript(facts: ModuleFacts) -> bool:
    """Scaling written into part of an array or frame, which the name-based tracking does not
    see: `df[cols] = df[cols] / df[cols].max()`, `df.loc[:, c] = scaler.fit_transform(...)`,
    `data[:, 0] /= 1000`. A part of a target-named array (`y[:, 0] = ...`) does not count."""
    for sub in facts.subscripts:
        stmt = sub.stmt
        if not isinstance(stmt, cst.SimpleStatementLine):
            continue
        base = sub.dotted or ""
        if base and _is_target_name(base.split(".", 1)[0]):
            continue
        for small in stmt.body:
            if isinstance(small, cst.Assign) and any(t.target is sub.node for t in small.targets):
                if _scales(small.value):
                    return True
            elif isinstance(small, cst.AugAssign) and small.target is sub.node:
                if isinstance(small.operator, (cst.DivideAssign, cst.SubtractAssign)) or _scales(small.value):
                    return True
    return False


def _source_of(node: cst.CSTNode, calls_by_node: Dict[int, CallFact]) -> Optional[CallFact]:
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, cst.Call):
            call = calls_by_node.get(id(current))
            if call is not None and call.qualname in NUMERIC_SOURCES:
                path = call.positional(0)
                if isinstance(path, cst.SimpleString) and (
                    _PREPARED_PATH.search(path.value) or _SPLIT_ARRAY_FILE.search(str(path.evaluated_value))
                ):
                    return None
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
                mentioned = _data_names(value)
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
        # Labels, not features: a conversion cast to integers (`torch.from_numpy(y).long()`) or
        # passed after the first tensor of a TensorDataset (inputs first, targets after).
        labels: Set[int] = set()
        for other in ctx.facts.calls:
            if other.method in _INT_CASTS and other.receiver is not None:
                labels.add(id(other.receiver))
            if (other.method or "") == "TensorDataset":
                labels.update(id(arg.value) for arg in other.args[1:])
        for call in ctx.facts.calls:
            argument = None
            if call.qualname in TENSOR_CONVERSIONS:
                argument = call.arg(0, "data")
                dtype = call.kwarg("dtype")
                if dtype is not None and re.search(r"long|int|bool", dotted_name(dtype) or ""):
                    continue
                if id(call.node) in labels:
                    continue
                if argument is not None and any(_TARGET_KEY.search(t.strip("'\"")) for t in _strings_in(argument)):
                    continue  # npz["train_y"], frame["label"]
                if call.assigned_to and call.assigned_to in later_scaled:
                    continue
            elif call.method == "fit" and call.qualname is None and ctx.keras_model_is_recurrent(call.receiver_dotted):
                if dataflow(ctx.facts).scaler_receiver(call) is not None:
                    continue  # StandardScaler().fit(x): the scaler, not the model
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


# -- RNN302-RNN306: splits, scalers, windows, padding ------------------------------------------

_ROLE_WORDS = {"test": "test split", "val": "validation split", "eval": "held-out part of the split"}


def _short(node: cst.CSTNode, limit: int = 50) -> str:
    text = " ".join(code_of(node).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _fit_roles(ctx: Context, fit: Fit) -> Set[str]:
    flow = dataflow(ctx.facts)
    roles: Set[str] = set()
    for node in fit.data_nodes():
        roles |= flow.roles_of(node, fit.order)
    return roles


def _fit_text(fit: Fit) -> str:
    return fit.label if fit.kind == "manual" else f"{fit.label}({_short(fit.data)})"


@rule(
    RuleMeta(
        "RNN302",
        "scaler-fit-on-eval-data",
        Severity.ERROR,
        ("torch", "keras"),
        "A scaler is fit (fit/fit_transform/adapt, or mean/std taken) on validation or test data.",
    )
)
class ScalerFitOnEvalData(Rule):
    def check(self, ctx: Context) -> None:
        if not ctx.has_recurrent():
            return
        for fit in dataflow(ctx.facts).fits():
            roles = _fit_roles(ctx, fit)
            if not roles or not roles <= EVAL_ROLES:
                continue
            role = _ROLE_WORDS[TEST if TEST in roles else sorted(roles)[0]]
            if fit.kind == "manual":
                advice = "scale it with statistics of the training split"
                what = f"{fit.label} takes its statistics from the {role}"
            else:
                advice = "transform() it with the scaler fit on the training split"
                what = f"{_fit_text(fit)} fits the scaling on the {role}"
            ctx.report(fit.node, f"{what}: {advice}", fit.stmt)


@rule(
    RuleMeta(
        "RNN303",
        "scaler-fit-before-split",
        Severity.WARNING,
        ("torch", "keras"),
        "A scaler is fit on the whole data set, which is split into train and test parts only afterwards.",
    )
)
class ScalerFitBeforeSplit(Rule):
    def check(self, ctx: Context) -> None:
        if not ctx.has_recurrent():
            return
        flow = dataflow(ctx.facts)
        splits = flow.splits()
        if not splits:
            return
        for fit in flow.fits():
            if _fit_roles(ctx, fit) or not (fit.sources or fit.targets):
                continue
            sliced = [split_subscript_under(node) for node in fit.data_nodes()]
            if any(s is not None and flow.split_slice(s, None, fit.order) for s in sliced):
                continue
            derived = flow.derived(list(fit.sources) + list(fit.targets), fit.order, fit.stmt)
            for split in splits:
                if split.order <= fit.order:
                    continue
                carried = set(split.sources) | {s.split(".", 1)[0] for s in split.sources}
                if carried & derived:
                    ctx.report(
                        fit.node,
                        f"{_fit_text(fit)} sees every row before {_short(split.node, 60)} (line {{split}}) "
                        "splits the data: statistics of the evaluation rows leak into training; "
                        "fit on the training part only",
                        fit.stmt,
                        refs={"split": split.node},
                    )
                    break


@rule(
    RuleMeta(
        "RNN304",
        "shuffled-time-series-split",
        Severity.WARNING,
        ("torch", "keras"),
        "train_test_split (shuffle on) or random_split over overlapping windows cut from one time series.",
    )
)
class ShuffledTimeSeriesSplit(Rule):
    def check(self, ctx: Context) -> None:
        if not ctx.has_recurrent():
            return
        flow = dataflow(ctx.facts)
        for split in flow.splits():
            call = split.call
            if split.kind != "call" or call is None:
                continue
            if call.qualname == "sklearn.model_selection.train_test_split":
                shuffle = call.kwarg("shuffle")
                if shuffle is not None and ctx.evaluator.value(shuffle, call.scope) is not True:
                    continue
            window = flow.windowed(split.sources, split.order)
            if window is not None and window.overlapping is not False:
                size = _window_words(ctx, window.size)
                ctx.report(
                    call.node,
                    f"{_short(call.node, 60)} shuffles overlapping windows of one series (cut at line "
                    f"{{window}}{size}), so test windows are near-copies of training windows; "
                    "split in time order (shuffle=False or index slices)",
                    call.stmt,
                    refs={"window": window.node},
                )
                continue
            later = self._windowed_after(ctx, split)
            if later is not None:
                ctx.report(
                    call.node,
                    f"{_short(call.node, 60)} shuffles the rows of a time series that is cut into windows "
                    "afterwards (line {window}): the parts are no longer in time order and the test rows "
                    "sit between training rows; split in time order",
                    call.stmt,
                    refs={"window": later.node},
                )

    def _windowed_after(self, ctx: Context, split):  # type: ignore[no-untyped-def]
        if split.call.qualname != "sklearn.model_selection.train_test_split" or not split.targets:
            return None
        flow = dataflow(ctx.facts)
        derived = flow.derived(split.targets, split.order, split.stmt)
        for records in flow.windows().values():
            for record in records:
                carried = set(record.sources) | {s.split(".", 1)[0] for s in record.sources}
                if record.order > split.order and carried & derived:
                    return record
        return None


def _window_words(ctx: Context, size: Optional[cst.BaseExpression]) -> str:
    if size is None:
        return ""
    value = ctx.evaluator.number(size, ctx.facts.module_scope)
    if isinstance(value, int) and value > 1:
        return f"; window {value}: neighbouring windows share {value - 1} of {value} steps"
    return f"; window {_short(size, 20)}"


@rule(
    RuleMeta(
        "RNN305",
        "padding-without-packing",
        Severity.WARNING,
        ("torch", "keras"),
        "Padded variable-length batches reach an RNN whose last step is read, with no packing or masking.",
    )
)
class PaddingWithoutPacking(Rule):
    def check(self, ctx: Context) -> None:
        info = padding(ctx.facts, ctx.evaluator)
        if info.torch_pads and not info.packing:
            self._torch(ctx, info.torch_pads[0])
        if info.keras_post_pads and not info.keras_mask:
            for layer in ctx.layers:
                if layer.framework != "keras" or layer.cell:
                    continue
                if layer.get("return_sequences") is False:
                    ctx.report(
                        layer.call.node,
                        f"{layer.label} returns only its last step for sequences padded at the end by "
                        "pad_sequences(padding='post') (line {pad}) with no Embedding(mask_zero=True) or "
                        "Masking layer: for short sequences that is the state after the padding",
                        layer.call.stmt,
                        refs={"pad": info.keras_post_pads[0].node},
                    )
                    break

    def _torch(self, ctx: Context, pad: CallFact) -> None:
        for layer in ctx.layers:
            if layer.framework != "torch" or layer.cell or layer.binding is None:
                continue
            owner = layer.owner
            # A decoder fed one step at a time has no padded steps inside the call.
            one_step = {id(c.call) for c in torch_call_lengths(ctx.facts, ctx.evaluator, layer, ctx.layers)
                        if c.length.value == 1}
            for call in ctx.facts.calls:
                if call.dotted != layer.binding or call is layer.call or id(call) in one_step:
                    continue
                if layer.binding.startswith("self.") and call.scope.enclosing_class is not owner:
                    continue
                read = last_step_read(ctx.facts, call)
                if read is None:
                    continue
                ctx.report(
                    call.node,
                    f"'{layer.binding}' ({layer.label}) runs over batches padded by pad_sequence() "
                    f"(line {{pad}}) without pack_padded_sequence, and {read} is read: for short "
                    "sequences that is the state after the padding",
                    call.stmt,
                    refs={"pad": pad.node},
                )


@rule(
    RuleMeta(
        "RNN306",
        "test-set-as-validation",
        Severity.WARNING,
        ("torch", "keras"),
        "The test split drives early stopping, a plateau scheduler or the best-checkpoint choice.",
    )
)
class ValidationOnTestSplit(Rule):
    def check(self, ctx: Context) -> None:
        if not ctx.has_recurrent():
            return
        flow = dataflow(ctx.facts)
        for call in ctx.facts.calls:
            if call.method not in KERAS_FIT_METHODS or call.qualname is not None:
                continue
            data = call.kwarg("validation_data")
            if data is None or flow.roles_of(data, call.order) != {TEST}:
                continue
            if not ctx.keras_model_is_recurrent(call.receiver_dotted):
                continue
            watchers = keras_watchers(flow, ctx.evaluator, call)
            if not watchers:
                continue
            built, monitor = watchers[0]
            name = (built.qualname or "").rsplit(".", 1)[-1]
            ctx.report(
                data,
                f"validation_data={_short(data)} drives {name}(monitor='{monitor}') (line {{cb}}): "
                "the reported test score is tuned on the test set; validate on a separate split",
                call.stmt,
                refs={"cb": built.node},
            )
        if ctx.has_recurrent("torch"):
            self._torch(ctx)

    def _torch(self, ctx: Context) -> None:
        training: Set[int] = set()
        trainers = set()
        for unit in ctx.units:
            training.add(id(unit.step.node))
            if unit.step.scope.kind == "function":
                trainers.add(unit.step.scope.name)
        for call in ctx.facts.calls:
            if call.dotted in trainers and call.scope.name not in trainers:
                training.add(id(call.node))
        if not training:
            return
        flow = dataflow(ctx.facts)
        words = {
            "plateau": "feeds a test-set metric to ReduceLROnPlateau",
            "early-stop": "stops training early on a test-set metric",
            "best": "picks the best epoch on a test-set metric",
        }
        for use in test_metric_uses(flow, training):
            ctx.report(
                use.node,
                f"{_short(use.node)} {words[use.kind]} ({use.metric}, computed from "
                f"{_short(use.source, 40)} at line {{src}}): the reported test score is tuned on the "
                "test set; use a separate validation split",
                use.stmt,
                refs={"src": use.source},
            )

