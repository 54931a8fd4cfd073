"""Data-flow facts for the RNN3xx data rules: splits, scalers, windows, padding.

Computed lazily once per module (cached in ``facts.cache``) from the facts of the
one walk. Everything here is an approximation that errs towards "unknown":

- *Roles*: which names hold the train, validation or test part of the data. A role
  comes from provenance (the second part of ``train_test_split``, the tail of a
  ``data[:n_train]`` / ``data[n_train:]`` split, a loader built from ``X_test``) or
  from the name (``X_test``, ``val_df``, ``testX``), and a name alone counts only
  when the file also has its training counterpart (``X_train``, ``train_df``).
- *Fits*: where statistics of some data are taken (``scaler.fit(x)``,
  ``fit_transform``, keras ``Normalization.adapt``, ``sklearn.preprocessing.scale``,
  ``(x - x.mean()) / x.std()``) and which names they were taken from.
- *Splits*: where data is cut into parts (``train_test_split``, ``random_split``,
  head/tail slices with a split bound, ``TimeSeriesSplit.split``).
- *Windows*: names that hold windows cut from one series (``series[i:i + W]`` in a
  loop or comprehension, a local or imported ``create_sequences``-like helper, a
  Dataset whose ``__getitem__`` slices at its index, ``TimeseriesGenerator``,
  ``timeseries_dataset_from_array``, ``sliding_window_view``, ``unfold``).

Names are tracked by their dotted text across the module, in program order; the
order counter of the walk is shared by calls, assignments and subscripts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Dict, FrozenSet, Iterable, List, Optional, Set, Tuple

import libcst as cst

from rnnlint.analysis.facts import AssignFact, CallFact, ModuleFacts, Scope, SubscriptFact
from rnnlint.analysis.names import names_in  # noqa: F401 - re-exported for the rules
from rnnlint.analysis.names import dotted_name
from rnnlint.analysis.walker import iter_children

TRAIN, VAL, TEST, EVAL = "train", "val", "test", "eval"
EVAL_ROLES = frozenset({VAL, TEST, EVAL})

_TRAIN_TOKENS = frozenset({"train", "training", "trn", "tr"})
_VAL_TOKENS = frozenset({"val", "valid", "validation", "vali", "dev", "vld"})
_TEST_TOKENS = frozenset({"test", "testing", "tst", "te", "holdout"})
_EVAL_TOKENS = frozenset({"eval", "evaluation"})
# Words that make a slice bound a split point (n_train, split_idx, TEST_SIZE, cutoff).
_BOUND_TOKENS = frozenset(
    {"train", "training", "trn", "split", "cut", "cutoff", "boundary", "border", "test", "val",
     "valid", "validation", "holdout", "tr"}
)
_TOKEN_RE = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")

SCALER_CLASS = re.compile(
    r"(Scaler|Normalizer|QuantileTransformer|PowerTransformer|Normalization)$"
)
_SCALER_NAME = re.compile(r"scaler|normali[sz]er", re.I)
FIT_METHODS = frozenset({"fit", "fit_transform", "partial_fit", "adapt"})
FUNCTIONAL_SCALERS = frozenset(
    "sklearn.preprocessing." + n
    for n in ("scale", "minmax_scale", "robust_scale", "maxabs_scale", "quantile_transform", "power_transform")
)
_STAT_METHODS = frozenset(
    {"mean", "std", "min", "max", "var", "amin", "amax", "nanmean", "nanstd", "nanmin", "nanmax", "median"}
)
SPLIT_FUNCTIONS = frozenset(
    {"sklearn.model_selection.train_test_split", "torch.utils.data.random_split"}
)
_SPLITTER_CLASSES = re.compile(r"(TimeSeriesSplit|KFold|ShuffleSplit|GroupKFold)$")

# Calls and methods that hand their input data on (possibly reshaped or wrapped).
_PRESERVING_METHODS = frozenset(
    {
        "reshape", "astype", "to", "float", "double", "half", "long", "cuda", "cpu", "numpy",
        "to_numpy", "copy", "squeeze", "unsqueeze", "view", "permute", "transpose", "flatten",
        "dropna", "fillna", "ffill", "bfill", "interpolate", "drop", "type", "contiguous", "clone",
        "detach", "tolist", "reset_index", "set_index", "sort_index", "batch", "shuffle",
        "prefetch", "cache", "transform", "fit_transform", "filter", "select_dtypes", "ravel",
        "get_values", "as_matrix", "expand_dims", "asfreq", "sort_values", "requires_grad_",
    }
)
_WRAPPERS = frozenset(
    {
        "array", "asarray", "stack", "vstack", "hstack", "dstack", "concatenate", "tensor",
        "from_numpy", "as_tensor", "FloatTensor", "Tensor", "DoubleTensor", "LongTensor",
        "TensorDataset", "DataLoader", "DataFrame", "Series", "from_tensor_slices", "expand_dims",
        "reshape", "float32", "list", "tuple", "zip", "Variable", "Subset", "atleast_3d",
        "atleast_2d", "squeeze", "ascontiguousarray", "train_test_split", "random_split",
    }
)
# keras windowing constructors: their data and targets (first two positional arguments) pass on.
_SERIES_WRAPPERS = frozenset({"TimeseriesGenerator", "timeseries_dataset_from_array"})
_ARRAY_PASSING = _WRAPPERS | _SERIES_WRAPPERS
_WINDOW_HELPER = re.compile(
    r"^(create|make|build|generate|split|get|prepare|to)_?(in_?out_?|x_?y_?|supervised_?)?"
    r"(sequence|seq|window)s?(_|$)|sliding_?window|window(ed|ize|ise|ing)?_?(data|dataset|series)?$",
    re.I,
)
_WINDOW_FUNCTIONS = frozenset(
    {
        "keras.preprocessing.sequence.TimeseriesGenerator", "keras.utils.timeseries_dataset_from_array",
        "keras.preprocessing.timeseries_dataset_from_array",
        "numpy.lib.stride_tricks.sliding_window_view",
    }
)


# -- small helpers shared with RNN301 -----------------------------------------------------


def code_of(node: cst.CSTNode) -> str:
    return cst.Module(body=[]).code_for_node(node)


def name_tokens(name: str) -> List[str]:
    """'X_test_scaled' -> ['x', 'test', 'scaled']; 'trainX' -> ['train', 'x']."""
    last = name.rsplit(".", 1)[-1]
    return [t.lower() for t in _TOKEN_RE.findall(last)]


def token_role(name: str) -> Optional[str]:
    """The role a name's words claim, ignoring whether the claim is backed."""
    roles = set()
    for token in name_tokens(name):
        if token in _TEST_TOKENS:
            roles.add(TEST)
        elif token in _VAL_TOKENS:
            roles.add(VAL)
        elif token in _EVAL_TOKENS:
            roles.add(EVAL)
        elif token in _TRAIN_TOKENS:
            roles.add(TRAIN)
    if len(roles) == 1:
        return roles.pop()
    return None


def _counterpart_key(name: str) -> Optional[Tuple[str, ...]]:
    """The name's tokens with its one role token replaced by '*' (X_test -> ('x', '*'))."""
    tokens = name_tokens(name)
    hits = [
        i for i, t in enumerate(tokens)
        if t in _TRAIN_TOKENS or t in _VAL_TOKENS or t in _TEST_TOKENS or t in _EVAL_TOKENS
    ]
    if len(hits) != 1:
        return None
    i = hits[0]
    return tuple(tokens[:i]) + ("*",) + tuple(tokens[i + 1:])


def _call_name(node: cst.Call) -> Optional[str]:
    func = node.func
    if isinstance(func, cst.Attribute):
        return func.attr.value
    if isinstance(func, cst.Name):
        return func.value
    return None


def _is_zero(node: Optional[cst.BaseExpression]) -> bool:
    return isinstance(node, cst.Integer) and node.value == "0"


def first_slice(node: cst.Subscript) -> Optional[cst.Slice]:
    if not node.slice:
        return None
    first = node.slice[0].slice
    if isinstance(first, cst.Slice) and first.step is None:
        return first
    return None


# -- records ---------------------------------------------------------------------------------


@dataclass(eq=False)
class Fit:
    """Statistics taken from some data: a scaler fit, a functional scaler, or (x - mean) / std."""

    kind: str  # "scaler" | "functional" | "manual" | "helper"
    node: cst.CSTNode  # what a finding points at
    stmt: cst.CSTNode
    data: cst.BaseExpression  # the expression the statistics come from
    sources: List[str]  # names that expression carries
    order: int
    scope: Scope
    label: str  # "scaler.fit_transform", "MinMaxScaler().fit", "preprocessing.scale", ...
    targets: List[str] = field(default_factory=list)  # names that hold the fitted result
    guards: Tuple[cst.BaseExpression, ...] = ()
    stat_data: List[cst.BaseExpression] = field(default_factory=list)  # manual: what mean/std read

    def data_nodes(self) -> List[cst.BaseExpression]:
        """The expressions whose statistics the fit takes."""
        return self.stat_data if self.kind == "manual" else [self.data]


@dataclass(eq=False)
class Split:
    kind: str  # "call" | "slice" | "splitter"
    node: cst.CSTNode
    stmt: cst.CSTNode
    sources: List[str]  # the data that is split
    order: int
    label: str
    targets: List[str] = field(default_factory=list)
    call: Optional[CallFact] = None


@dataclass(eq=False)
class Window:
    """Evidence that a name holds windows cut from a series."""

    node: cst.CSTNode
    size: Optional[cst.BaseExpression]  # the window length expression, when seen
    overlapping: Optional[bool]  # False when the stride is known to be >= the window
    sources: List[str]  # the series the windows are cut from
    order: int


# -- the analysis ------------------------------------------------------------------------------


class DataFlow:
    def __init__(self, facts: ModuleFacts) -> None:
        self.facts = facts
        self.calls_by_node: Dict[int, CallFact] = {id(c.node): c for c in facts.calls}
        self.assigns = sorted(facts.assigns, key=lambda a: a.order)
        self._plain_values: Dict[str, List[cst.BaseExpression]] = {}
        for assign in self.assigns:
            if assign.unpack_index is None:
                self._plain_values.setdefault(assign.target, []).append(assign.value)
        self._assigned_calls: Dict[str, List[CallFact]] = {}
        for call in facts.calls:
            if call.assigned_to is not None:
                self._assigned_calls.setdefault(call.assigned_to, []).append(call)
        self._roles: Optional[Dict[str, List[Tuple[int, Optional[str]]]]] = None
        self._counterparts: Optional[Set[Tuple[str, ...]]] = None
        self._fits: Optional[List[Fit]] = None
        self._splits: Optional[List[Split]] = None
        self._windows: Optional[Dict[str, List[Window]]] = None
        self._window_functions: Optional[Dict[str, Dict[int, Window]]] = None
        self._steps: Optional[List[Tuple[int, str, Optional[cst.BaseExpression], Optional[AssignFact]]]] = None

    # -- what an expression carries ------------------------------------------------------

    def sources(self, node: Optional[cst.CSTNode]) -> List[str]:
        """Names whose data the expression hands on: `np.array(X_test).reshape(-1, 1)` -> X_test."""
        out: List[str] = []
        self._sources(node, out, 0)
        return out

    def _sources(self, node: Optional[cst.CSTNode], out: List[str], depth: int) -> None:
        if node is None or depth > 12:
            return
        dotted = dotted_name(node)
        if dotted is not None:
            out.append(dotted)
            return
        if isinstance(node, cst.Attribute):  # df["x"].values, f(x).T
            self._sources(node.value, out, depth + 1)
        elif isinstance(node, cst.Subscript):
            self._sources(node.value, out, depth + 1)
        elif isinstance(node, (cst.Tuple, cst.List)):
            for element in node.elements:
                self._sources(element.value, out, depth + 1)
        elif isinstance(node, cst.BinaryOperation):
            self._sources(node.left, out, depth + 1)
            self._sources(node.right, out, depth + 1)
        elif isinstance(node, cst.Call):
            func = node.func
            name = _call_name(node)
            if isinstance(func, cst.Attribute) and name in _PRESERVING_METHODS and name not in ("transform", "fit_transform"):
                if name in _WRAPPERS and dotted_name(func.value) in ("np", "numpy", "torch"):
                    self._args(node, out, depth)
                else:
                    self._sources(func.value, out, depth + 1)
            elif name in ("transform", "fit_transform"):
                if node.args:
                    self._sources(node.args[0].value, out, depth + 1)
            elif name in _SERIES_WRAPPERS:
                positional = [a for a in node.args if a.keyword is None and not a.star]
                for arg in positional[:2]:
                    self._sources(arg.value, out, depth + 1)
                for arg in node.args:
                    if arg.keyword is not None and arg.keyword.value in ("data", "targets"):
                        self._sources(arg.value, out, depth + 1)
            elif name in _WRAPPERS or self._local_callable(node) is not None:
                self._args(node, out, depth)
        elif isinstance(node, cst.UnaryOperation):
            self._sources(node.expression, out, depth + 1)

    def _args(self, node: cst.Call, out: List[str], depth: int) -> None:
        for arg in node.args:
            if arg.keyword is None or arg.keyword.value in ("dataset", "data", "x", "X", "y"):
                self._sources(arg.value, out, depth + 1)

    def _local_callable(self, node: cst.Call) -> Optional[Scope]:
        dotted = dotted_name(node.func)
        if dotted is None or "." in dotted:
            return None
        return self.facts.functions.get(dotted) or self.facts.classes.get(dotted)

    def assigned_call(self, name: str) -> Optional[CallFact]:
        calls = self._assigned_calls.get(name, [])
        return calls[0] if len(calls) == 1 else None

    # -- roles --------------------------------------------------------------------------------

    def _counterpart_keys(self) -> Set[Tuple[str, ...]]:
        if self._counterparts is None:
            keys: Set[Tuple[str, ...]] = set()
            names = {a.target for a in self.facts.assigns}
            for scope in self.facts.scopes:
                names.update(scope.params)
            for name in names:
                if token_role(name) == TRAIN:
                    key = _counterpart_key(name)
                    if key is not None:
                        keys.add(key)
            self._counterparts = keys
        return self._counterparts

    def backed_name_role(self, name: str) -> Optional[str]:
        """The role a name claims, when the file also has its training counterpart."""
        role = token_role(name)
        if role is None:
            return None
        if role == TRAIN:
            return TRAIN
        key = _counterpart_key(name)
        if key is not None and key in self._counterpart_keys():
            return role
        return None

    def _role_table(self) -> Dict[str, List[Tuple[int, Optional[str]]]]:
        if self._roles is None:
            self._roles = {}
            for assign in self.assigns:
                role = self._assigned_role(assign)
                self._roles.setdefault(assign.target, []).append((assign.order, role))
        return self._roles

    def role(self, name: str, order: Optional[int] = None) -> Optional[str]:
        """The role of `name` as assigned last before `order` (or anywhere)."""
        table = self._role_table()
        history = table.get(name)
        if history:
            chosen: Optional[Tuple[int, Optional[str]]] = None
            for entry in history:
                if order is None or entry[0] < order:
                    chosen = entry
            if chosen is not None:
                return chosen[1]
            return None
        if "." in name and not name.startswith("self."):
            return None  # an attribute of something else (df.values is handled by sources)
        return self.backed_name_role(name)

    def roles_of(self, node: Optional[cst.CSTNode], order: Optional[int] = None) -> Set[str]:
        """Roles of the data an expression carries (slices of a split included)."""
        if node is None:
            return set()
        sliced_node = split_subscript_under(node)
        if sliced_node is not None:
            sliced = self.slice_role(sliced_node, None, order)
            if sliced is not None:
                return {sliced}
        out: Set[str] = set()
        for name in self.sources(node):
            role = self.role(name, order)
            if role is None and "." in name:
                role = self.role(name.split(".", 1)[0], order) if not name.startswith("self.") else None
            if role is not None:
                out.add(role)
        return out

    def _assigned_role(self, assign: AssignFact) -> Optional[str]:
        value = _element(assign)
        named = self.backed_name_role(assign.target)
        if value is None:
            return named
        call = self.calls_by_node.get(id(assign.value)) if assign.unpack_index is not None else None
        if call is not None and call.qualname in SPLIT_FUNCTIONS and assign.unpack_index is not None:
            inputs = self.roles_of_args(call, assign.order)
            if token_role(assign.target) is not None:
                return token_role(assign.target)
            if inputs & EVAL_ROLES:
                return EVAL
            return TRAIN if assign.unpack_index % 2 == 0 else EVAL
        if isinstance(value, cst.Subscript):
            sliced = self.slice_role(value, assign.target, assign.order)
            if sliced is not None:
                return sliced
        carried = self.roles_of(value, assign.order)
        if len(carried) == 1:
            role = carried.pop()
            if role == EVAL and named in (VAL, TEST):
                return named
            return role
        if carried:
            return None  # mixed parts: all of the data
        return named

    def roles_of_args(self, call: CallFact, order: int) -> Set[str]:
        out: Set[str] = set()
        for arg in call.args:
            if arg.keyword is None:
                out |= self.roles_of(arg.value, order)
        return out

    def slice_role(self, node: cst.Subscript, target: Optional[str], order: Optional[int]) -> Optional[str]:
        """train/eval for the head/tail of a split slice (`data[:n_train]`, `data[n_train:]`)."""
        part = self.split_slice(node, target, order)
        if part is None:
            return None
        named = token_role(target) if target else None
        if named is not None:
            return named
        base_roles = {r for r in (self.role(s, order) for s in self.sources(node.value)) if r}
        if base_roles & EVAL_ROLES:
            return EVAL
        return TRAIN if part == "head" else (VAL if part == "middle" else EVAL)

    def split_slice(self, node: cst.Subscript, target: Optional[str], order: Optional[int]) -> Optional[str]:
        """'head' | 'tail' | 'middle' when the subscript cuts data at a split point."""
        part = first_slice(node)
        if part is None:
            return None
        lower = None if _is_zero(part.lower) else part.lower
        upper = part.upper
        if lower is None and upper is None:
            return None
        kind = "head" if lower is None else ("tail" if upper is None else "middle")
        bounds = [b for b in (lower, upper) if b is not None]
        if all(self.is_split_bound(b) for b in bounds):
            return kind
        if target is not None and token_role(target) is not None and not any(
            _mentions_loop_index(b) for b in bounds
        ):
            return kind
        return None

    def is_split_bound(self, node: cst.BaseExpression, depth: int = 0) -> bool:
        """n_train, split_idx, int(0.8 * len(x)), train_size + val_size, -TEST_DAYS."""
        for name in names_in(node):
            if "." in name:
                continue
            if set(name_tokens(name)) & _BOUND_TOKENS:
                return True
        if _fraction_of_length(node):
            return True
        if depth < 2:
            for name in names_in(node):
                values = self._plain_values.get(name, [])
                if len(values) == 1 and self.is_split_bound(values[0], depth + 1):
                    return True
        return False

    # -- fits -----------------------------------------------------------------------------

    def scaler_receiver(self, call: CallFact) -> Optional[str]:
        """A label for the scaler a fit/adapt call is made on, or None when it is not a scaler."""
        receiver = call.receiver
        if receiver is None:
            return None
        if isinstance(receiver, cst.Call):
            inner = self.calls_by_node.get(id(receiver))
            head = (inner.dotted or "").rsplit(".", 1)[-1] if inner else ""
            return head + "()" if SCALER_CLASS.search(head) else None
        dotted = dotted_name(receiver)
        if dotted is None:
            base = receiver.value if isinstance(receiver, cst.Subscript) else None
            base_name = dotted_name(base) if base is not None else None
            if base_name and _SCALER_NAME.search(base_name):
                return base_name + "[...]"
            return None
        built = self.assigned_call(dotted)
        if built is not None:
            head = (built.dotted or "").rsplit(".", 1)[-1]
            if SCALER_CLASS.search(head):
                return dotted
            if built.method in ("fit", "partial_fit") and self.scaler_receiver(built):
                return dotted  # scaler = StandardScaler().fit(x)
        if _SCALER_NAME.search(dotted.rsplit(".", 1)[-1]):
            return dotted
        return None

    def fits(self) -> List[Fit]:
        if self._fits is None:
            fits: List[Fit] = []
            for call in self.facts.calls:
                fit = self._fit_of_call(call)
                if fit is not None:
                    fits.append(fit)
            fits.extend(self._manual_fits())
            fits.extend(self._helper_fits(fits))
            fits.sort(key=lambda f: f.order)
            self._fits = fits
        return self._fits

    def _fit_of_call(self, call: CallFact) -> Optional[Fit]:
        if call.method in FIT_METHODS:
            scaler = self.scaler_receiver(call)
            if scaler is None:
                return None
            data = call.arg(0, "X") or call.kwarg("data") or call.kwarg("x")
            if data is None:
                return None
            label = f"{scaler}.{call.method}"
        elif call.qualname in FUNCTIONAL_SCALERS:
            data = call.arg(0, "X")
            if data is None:
                return None
            label = (call.dotted or call.method or "scale")
        else:
            return None
        return Fit(
            "scaler" if call.method in FIT_METHODS else "functional",
            call.node, call.stmt, data, self.sources(data), call.order, call.scope, label,
            self._result_targets(call), call.guards,
        )

    def _result_targets(self, call: CallFact) -> List[str]:
        """Names that hold the call's result, including `df[cols] = scaler.fit_transform(...)`."""
        out = [call.assigned_to] if call.assigned_to else []
        stmt = call.stmt
        if isinstance(stmt, cst.SimpleStatementLine):
            for small in stmt.body:
                if isinstance(small, cst.Assign) and _contains(small.value, call.node):
                    for target in small.targets:
                        if isinstance(target.target, cst.Subscript):
                            out.extend(self.sources(target.target.value))
                        elif isinstance(target.target, (cst.Tuple, cst.List)):
                            out.extend(n for n in (dotted_name(e.value) for e in target.target.elements) if n)
                        else:
                            name = dotted_name(target.target)
                            if name and name not in out:
                                out.append(name)
        return out

    def _manual_fits(self) -> List[Fit]:
        """x = (x - x.mean()) / x.std(), x = x / x.max(), x = (x - mu) / sd with mu = x.mean(axis=0).

        Only an assignment whose whole value is the division counts: a statistic inside a
        larger formula (an R^2 score, a plot) is not a scaling."""
        stat_data: Dict[str, List[cst.BaseExpression]] = {}
        for assign in self.assigns:
            # `mu = x.mean(0)`, and one element of `mean, std = x.mean(), x.std()`.
            element = assign.value if assign.unpack_index is None else (
                _element(assign) if isinstance(assign.value, (cst.Tuple, cst.List)) else None
            )
            if element is not None and assign.aug_op is None:
                nodes = [n for stat in self._stat_calls(element) for n in self._stat_source(stat)]
                if nodes:
                    stat_data[assign.target] = nodes
        out: List[Fit] = []
        for assign in self.assigns:
            if assign.unpack_index is not None:
                continue
            if assign.aug_op == "DivideAssign":
                operation: cst.CSTNode = assign.value
                right: cst.CSTNode = assign.value
            else:
                division = _strip_wrappers(assign.value)
                if not (isinstance(division, cst.BinaryOperation) and isinstance(division.operator, cst.Divide)):
                    continue
                operation, right = division, division
            nodes: List[cst.BaseExpression] = []
            for stat in self._stat_calls(right):
                nodes.extend(self._stat_source(stat))
            for name in names_in(right):
                if name in stat_data:
                    nodes.extend(stat_data[name])
            if not nodes:
                continue
            label = code_of(operation) if assign.aug_op is None else f"{assign.target} /= {code_of(assign.value)}"
            if len(label) > 60:
                label = label[:57] + "..."
            srcs = _dedupe([s for n in nodes for s in self.sources(n)])
            out.append(
                Fit("manual", operation, assign.stmt, assign.value, srcs, assign.order,
                    assign.scope, label, [assign.target], stat_data=nodes)
            )
        out.extend(self._manual_column_fits(stat_data))
        return out

    def _manual_column_fits(self, stat_data: Dict[str, List[cst.BaseExpression]]) -> List[Fit]:
        """`df[cols] = (df[cols] - mean) / std` and `df[cols] = (df[cols] - lo) / (hi - lo)`: a
        scaling written into columns of a frame, which keeps its name (the frame is the target)."""
        out: List[Fit] = []
        for sub in self.facts.subscripts:
            stmt = sub.stmt
            if not isinstance(stmt, cst.SimpleStatementLine) or len(stmt.body) != 1:
                continue
            small = stmt.body[0]
            if not (isinstance(small, cst.Assign) and len(small.targets) == 1 and small.targets[0].target is sub.node):
                continue
            division = _strip_wrappers(small.value)
            if not (isinstance(division, cst.BinaryOperation) and isinstance(division.operator, cst.Divide)):
                continue
            nodes: List[cst.BaseExpression] = []
            for stat in self._stat_calls(division):
                nodes.extend(self._stat_source(stat))
            for name in names_in(division.right):
                if name in stat_data:
                    nodes.extend(stat_data[name])
            targets = self.sources(sub.node.value)
            if not nodes or not targets:
                continue
            label = code_of(division)
            if len(label) > 60:
                label = label[:57] + "..."
            srcs = _dedupe([s for n in nodes for s in self.sources(n)])
            out.append(
                Fit("manual", division, stmt, small.value, srcs, sub.order, sub.scope, label,
                    targets, stat_data=nodes)
            )
        return out

    def _stat_calls(self, node: cst.CSTNode) -> List[cst.Call]:
        out: List[cst.Call] = []
        stack = [node]
        while stack:
            current = stack.pop()
            if isinstance(current, cst.Call) and _call_name(current) in _STAT_METHODS:
                if _whole_data_axis(current):
                    out.append(current)
                continue
            if isinstance(current, (cst.Lambda, cst.ListComp, cst.GeneratorExp)):
                continue
            stack.extend(iter_children(current))
        return out

    def _stat_source(self, stat: cst.Call) -> List[cst.BaseExpression]:
        """The expression a statistic is taken from: x for x.mean() and np.mean(x)."""
        func = stat.func
        if isinstance(func, cst.Attribute):
            owner = dotted_name(func.value)
            if owner in ("np", "numpy", "torch", "tf", "math"):
                return [stat.args[0].value] if stat.args else []
            return [func.value]
        return []

    def _helper_fits(self, fits: List[Fit]) -> List[Fit]:
        """Calls of a local function that fits a scaler on one of its parameters."""
        out: List[Fit] = []
        for name, function in self.facts.functions.items():
            params = [p for p in function.param_order]
            fitted_params = set()
            for fit in fits:
                if fit.scope is not function or fit.kind == "manual" and not fit.sources:
                    continue
                if any(names_in(g) & set(params) for g in fit.guards):
                    continue  # `if fit: scaler.fit(x)`: the caller decides
                for source in fit.sources:
                    if source.split(".")[0] in params:
                        fitted_params.add(source.split(".")[0])
            if not fitted_params:
                continue
            for call in self.facts.calls:
                if call.dotted != name or call.scope is function:
                    continue
                for param in fitted_params:
                    index = params.index(param)
                    given = call.arg(index, param)
                    if given is None:
                        continue
                    out.append(
                        Fit("helper", call.node, call.stmt, given, self.sources(given), call.order,
                            call.scope, f"{name}()", self._result_targets(call), call.guards)
                    )
        return out

    # -- splits ---------------------------------------------------------------------------

    def splits(self) -> List[Split]:
        if self._splits is None:
            out: List[Split] = []
            for call in self.facts.calls:
                if call.qualname in SPLIT_FUNCTIONS:
                    srcs = [s for arg in call.args if arg.keyword is None for s in self.sources(arg.value)]
                    out.append(Split("call", call.node, call.stmt, srcs, call.order,
                                     (call.dotted or "train_test_split") + "()",
                                     self._result_targets(call), call))
                elif call.method == "split" and call.receiver_dotted is not None:
                    built = self.assigned_call(call.receiver_dotted)
                    head = (built.dotted or "").rsplit(".", 1)[-1] if built else ""
                    if _SPLITTER_CLASSES.search(head) and call.args:
                        out.append(Split("splitter", call.node, call.stmt, self.sources(call.args[0].value),
                                         call.order, f"{head}.split()", [], call))
            for sub in self.facts.subscripts:
                target = _assign_target_of(sub)
                kind = self.split_slice(sub.node, target, sub.order)
                if kind is None:
                    continue
                out.append(Split("slice", sub.node, sub.stmt, self.sources(sub.node.value), sub.order,
                                 code_of(sub.node), [target] if target else []))
            out.sort(key=lambda s: s.order)
            self._splits = out
        return self._splits

    # -- windows --------------------------------------------------------------------------

    def windows(self) -> Dict[str, List[Window]]:
        """name -> evidence that it holds windows of a series (propagated through assignments)."""
        if self._windows is None:
            table: Dict[str, List[Window]] = {}
            functions = self.window_functions()
            # Lists filled in a loop: X.append(series[i:i + W]).
            element_windows: Dict[str, Window] = {}
            for assign in self.assigns:
                if assign.loop is not None:
                    found = _window_slice(assign.value, self)
                    if found is not None:
                        element_windows[assign.target] = self._window_record(found, assign.loop, assign.order)
            for call in self.facts.calls:
                if call.method in ("append", "extend") and call.loop is not None and call.receiver_dotted and call.args:
                    arg = call.args[0].value
                    found = _window_slice(arg, self)
                    record = self._window_record(found, call.loop, call.order) if found is not None else None
                    if record is None:
                        for name in names_in(arg):
                            if name in element_windows:
                                record = element_windows[name]
                                break
                    if record is not None:
                        table.setdefault(call.receiver_dotted, []).append(record)
            for assign in self.assigns:
                value = _element(assign)
                if value is None:
                    continue
                record = self._window_from_value(assign, value, functions, table)
                if record is not None:
                    table.setdefault(assign.target, []).append(record)
            self._windows = table
        return self._windows

    def _window_from_value(self, assign: AssignFact, value: cst.BaseExpression,
                           functions: Dict[str, Dict[int, Window]],
                           table: Dict[str, List[Window]]) -> Optional[Window]:
        comp = _comprehension_window(value, self)
        if comp is not None:
            slice_node, size = comp
            return Window(slice_node, size, True, self.sources(slice_node.value), assign.order)
        whole = assign.value
        for call_node in _calls_in(whole):
            call = self.calls_by_node.get(id(call_node))
            if call is None:
                continue
            if call.qualname in _WINDOW_FUNCTIONS or (call.qualname or "").endswith(".sliding_window_view"):
                size = call.arg(1, "length") or call.kwarg("sequence_length") or call.kwarg("window_shape")
                stride = call.kwarg("sampling_rate") or call.kwarg("stride") or call.kwarg("sequence_stride")
                overlapping = None if stride is not None else True
                return Window(call.node, size, overlapping, self.sources(call.args[0].value) if call.args else [], assign.order)
            if call.method == "unfold" and call.receiver is not None and len(call.args) >= 3:
                size, step = call.args[1].value, call.args[2].value
                return Window(call.node, size, _overlap(size, step, self, call.scope), self.sources(call.receiver), assign.order)
            local = functions.get(call.dotted or "")
            if local is not None:
                index = assign.unpack_index if assign.unpack_index is not None and call_node is whole else None
                record = local.get(index if index is not None else -1) or (local.get(0) if index is None else None)
                if record is not None:
                    srcs = [s for a in call.args if a.keyword is None for s in self.sources(a.value)]
                    size = record.size
                    function = self.facts.functions.get(call.dotted or "")
                    if isinstance(size, cst.Name) and function is not None and size.value in function.param_order:
                        size = call.arg(function.param_order.index(size.value), size.value) or size
                    size = self._constructor_value(call, size)
                    return Window(call.node, size, record.overlapping, srcs, assign.order)
            if (
                call.dotted is not None and "." not in call.dotted
                and call.dotted not in self.facts.functions and call.dotted not in self.facts.classes
                and call.dotted in self.facts.aliases and _WINDOW_HELPER.search(call.dotted)
                and (assign.unpack_index in (None, 0))
            ):
                srcs = self.sources(call.args[0].value) if call.args else []
                return Window(call.node, None, None, srcs, assign.order)
        # Propagation: X = np.array(X), X_t = torch.tensor(X).float(), ds = TensorDataset(X, y).
        for name in self.sources(value):
            if name in table and name != assign.target:
                first = table[name][0]
                return Window(first.node, first.size, first.overlapping, first.sources, assign.order)
        return None

    def _constructor_value(self, call: CallFact, size: Optional[cst.BaseExpression]) -> Optional[cst.BaseExpression]:
        """self.window in a Dataset method -> the argument given for it at `call` (its construction)."""
        cls = self.facts.classes.get(call.dotted or "")
        attr = dotted_name(size) if size is not None else None
        if cls is None or attr is None or not attr.startswith("self."):
            return size
        init = cls.methods.get("__init__")
        values = init.assigns.get(attr, []) if init is not None else []
        if init is None or len(values) != 1 or not isinstance(values[0], cst.Name):
            return size
        param = values[0].value
        if param not in init.param_order:
            return size
        return call.arg(init.param_order.index(param) - 1, param) or size

    def _window_record(self, found: Tuple[cst.Subscript, Optional[cst.BaseExpression]],
                       loop, order: int) -> Window:  # type: ignore[no-untyped-def]
        slice_node, size = found
        overlapping: Optional[bool] = True
        iter_node = loop.iter_node if loop is not None else None
        if isinstance(iter_node, cst.Call) and dotted_name(iter_node.func) == "range" and len(iter_node.args) == 3:
            overlapping = _overlap(size, iter_node.args[2].value, self, loop.scope)
        elif iter_node is None:
            overlapping = None  # while loop: stride unknown
        return Window(slice_node, size, overlapping, self.sources(slice_node.value), order)

    def window_functions(self) -> Dict[str, Dict[int, Window]]:
        """Local functions and Dataset classes that produce windows: name -> {return index: window}.

        Index -1 means the whole return value (or a Dataset instance)."""
        if self._window_functions is None:
            out: Dict[str, Dict[int, Window]] = {}
            self._window_functions = out  # guards recursion through windows()
            local_lists: Dict[int, Dict[str, Window]] = {}
            for call in self.facts.calls:
                if call.method in ("append", "extend") and call.loop is not None and call.receiver_dotted and call.args:
                    found = _window_slice(call.args[0].value, self)
                    if found is not None:
                        local_lists.setdefault(id(call.scope), {})[call.receiver_dotted] = self._window_record(found, call.loop, call.order)
            element_windows: Dict[int, Dict[str, Window]] = {}
            for assign in self.assigns:
                if assign.loop is not None:
                    found = _window_slice(assign.value, self)
                    if found is not None:
                        element_windows.setdefault(id(assign.scope), {})[assign.target] = self._window_record(found, assign.loop, assign.order)
            for call in self.facts.calls:
                if call.method in ("append", "extend") and call.loop is not None and call.receiver_dotted and call.args:
                    elements = element_windows.get(id(call.scope), {})
                    for name in names_in(call.args[0].value):
                        if name in elements:
                            local_lists.setdefault(id(call.scope), {})[call.receiver_dotted] = elements[name]
            for name, function in self.facts.functions.items():
                lists = local_lists.get(id(function), {})
                for ret in function.returns:
                    parts = ret.elements if isinstance(ret, cst.Tuple) else None
                    items = [e.value for e in parts] if parts is not None else [ret]
                    for index, item in enumerate(items):
                        record = None
                        for source in self.sources(item):
                            if source in lists:
                                record = lists[source]
                                break
                        if record is None:
                            comp = _comprehension_window(item, self)
                            if comp is not None:
                                record = Window(comp[0], comp[1], True, [], 0)
                        if record is not None:
                            out.setdefault(name, {})[index if parts is not None else -1] = record
            for name, cls in self.facts.classes.items():
                getitem = cls.methods.get("__getitem__")
                if getitem is None or len(getitem.param_order) < 2:
                    continue
                index_param = getitem.param_order[1]
                for sub in self.facts.subscripts:
                    if sub.scope is not getitem:
                        continue
                    part = first_slice(sub.node)
                    if part is None or part.lower is None or part.upper is None:
                        continue
                    if index_param in names_in(part.lower) and index_param in names_in(part.upper):
                        size = _window_size(part)
                        out.setdefault(name, {})[-1] = Window(sub.node, size, True, [], sub.order)
                        break
        return self._window_functions

    def derived(self, names: Iterable[str], after: int, origin: Optional[cst.CSTNode] = None) -> Set[str]:
        """`names` and every name assigned from them (as data) after the order `after`.

        A name reassigned from something else (outside the statement `origin`) stops being derived."""
        out: Set[str] = set()
        for name in names:
            out.add(name)
            out.add(name.split(".", 1)[0] if not name.startswith("self.") else name)
        for order, target, value, assign in self._flow_steps():
            if order <= after:
                continue
            carried = set(self._flow_sources(value)) if value is not None else set()
            carried |= {c.split(".", 1)[0] for c in carried}
            if carried & out:
                out.add(target)
            elif (
                assign is not None and target in out and assign.aug_op is None and value is not None
                and assign.stmt is not origin
            ):
                out.discard(target)
        return out

    def _flow_steps(self) -> List[Tuple[int, str, Optional[cst.BaseExpression], Optional[AssignFact]]]:
        """Where data moves into a name, in program order: assignments (which rebind the name),
        and `xs.append(v)` / `xs.extend(v)` / `xs[i] = v` (which add to what the name holds)."""
        if self._steps is not None:
            return self._steps
        steps: List[Tuple[int, str, Optional[cst.BaseExpression], Optional[AssignFact]]] = [
            (a.order, a.target, _element(a), a) for a in self.assigns
        ]
        for call in self.facts.calls:
            if call.method in ("append", "extend") and call.receiver_dotted and len(call.args) == 1:
                if call.args[0].keyword is None and not call.args[0].star:
                    steps.append((call.order, call.receiver_dotted, call.args[0].value, None))
        for sub in self.facts.subscripts:
            value = _stored_value(sub)
            base = dotted_name(sub.node.value)
            if value is not None and base is not None:
                steps.append((sub.order, base, value, None))
        steps.sort(key=lambda step: step[0])
        self._steps = steps
        return steps

    def _flow_sources(self, value: cst.BaseExpression) -> List[str]:
        """sources(), also through the element of a comprehension the value wraps:
        `np.array([series[i:i + W] for i in range(n)])` carries series."""
        out = self.sources(value)
        current: Optional[cst.CSTNode] = value
        for _ in range(6):
            if isinstance(current, (cst.ListComp, cst.GeneratorExp)):
                elt_sources = self.sources(current.elt)
                out.extend(elt_sources)
                bound = names_in(current.for_in.target)
                if bound & set(names_in(current.elt)):
                    out.extend(self.sources(current.for_in.iter))
                break
            if isinstance(current, cst.Call):
                current = _array_under(current, _WRAPPERS)
                if current is None:
                    break
            elif isinstance(current, cst.Attribute):
                current = current.value
            else:
                break
        return out

    def windowed(self, names: Iterable[str], order: int) -> Optional[Window]:
        table = self.windows()
        for name in names:
            for record in table.get(name, []):
                if record.order < order:
                    return record
        return None


# -- module helpers ------------------------------------------------------------------------------


def dataflow(facts: ModuleFacts) -> DataFlow:
    cached = facts.cache.get("dataflow")
    if cached is None:
        cached = DataFlow(facts)
        facts.cache["dataflow"] = cached
    return cached  # type: ignore[return-value]


def _element(assign: AssignFact) -> Optional[cst.BaseExpression]:
    """The value bound to this target: the matching element of `a, b = x[:n], x[n:]`."""
    value = assign.value
    if assign.unpack_index is None:
        return value
    if isinstance(value, (cst.Tuple, cst.List)):
        elements = value.elements
        if assign.unpack_index < len(elements) and not any(isinstance(e, cst.StarredElement) for e in elements):
            return elements[assign.unpack_index].value
        return None
    if isinstance(value, cst.Name) and value.value == "__loop__":
        return None
    return value


def _stored_value(sub: SubscriptFact) -> Optional[cst.BaseExpression]:
    """v for `xs[i] = v` when the subscript is the (single) target of its assignment."""
    stmt = sub.stmt
    if not isinstance(stmt, cst.SimpleStatementLine):
        return None
    for small in stmt.body:
        if isinstance(small, cst.Assign) and any(t.target is sub.node for t in small.targets):
            return small.value
    return None


def _dedupe(items: List[str]) -> List[str]:
    seen: Set[str] = set()
    return [i for i in items if not (i in seen or seen.add(i))]  # type: ignore[func-returns-value]


def _contains(node: cst.CSTNode, target: cst.CSTNode) -> bool:
    stack = [node]
    while stack:
        current = stack.pop()
        if current is target:
            return True
        stack.extend(iter_children(current))
    return False


def _calls_in(node: cst.CSTNode) -> List[cst.Call]:
    out: List[cst.Call] = []
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, cst.Call):
            out.append(current)
        if isinstance(current, (cst.Lambda, cst.ListComp, cst.GeneratorExp)):
            continue
        stack.extend(iter_children(current))
    return out


def _assign_target_of(sub: SubscriptFact) -> Optional[str]:
    """The name a subscript is bound to, when it is (an element of) an assignment's value."""
    stmt = sub.stmt
    if not isinstance(stmt, cst.SimpleStatementLine):
        return None
    for small in stmt.body:
        if not isinstance(small, cst.Assign) or len(small.targets) != 1:
            continue
        target, value = small.targets[0].target, small.value
        if value is sub.node:
            return dotted_name(target)
        if isinstance(value, (cst.Tuple, cst.List)) and isinstance(target, (cst.Tuple, cst.List)):
            for t, v in zip(target.elements, value.elements):
                if v.value is sub.node:
                    return dotted_name(t.value)
        # x_train = data[:n].values / np.array(data[:n])
        if _contains(value, sub.node) and not isinstance(value, (cst.Tuple, cst.List)):
            if _carried_directly(value, sub.node):
                return dotted_name(target)
    return None


def _carried_directly(value: cst.CSTNode, sub: cst.CSTNode) -> bool:
    current = value
    for _ in range(8):
        if current is sub:
            return True
        if isinstance(current, cst.Attribute):
            current = current.value
        elif isinstance(current, cst.Call):
            if isinstance(current.func, cst.Attribute) and _contains(current.func.value, sub):
                current = current.func.value
            elif current.args:
                current = current.args[0].value
            else:
                return False
        elif isinstance(current, cst.Subscript):
            current = current.value
        else:
            return False
    return False


def _mentions_loop_index(node: cst.CSTNode) -> bool:
    return any(n in ("i", "j", "t", "idx", "index", "start", "k") for n in names_in(node))


def _fraction_of_length(node: cst.CSTNode) -> bool:
    """int(0.8 * len(x)), round(len(df) * .7), math.ceil(n * 0.8) with n = len(data)."""
    has_fraction = False
    has_length = False
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, cst.Float):
            try:
                value = float(current.value)
            except ValueError:
                value = 0.0
            if 0.0 < value < 1.0:
                has_fraction = True
        elif isinstance(current, cst.Call) and dotted_name(current.func) == "len":
            has_length = True
        elif isinstance(current, cst.Attribute) and current.attr.value == "shape":
            has_length = True
        stack.extend(iter_children(current))
    return has_fraction and has_length


def _array_under(call: cst.Call, wrappers: FrozenSet[str]) -> Optional[cst.BaseExpression]:
    """The array a layout-keeping call hands on: `x` for `x.reshape(-1, 1)` or `np.array(x)`
    (`wrappers` names the functions whose first argument passes); None for any other call."""
    name = _call_name(call)
    if isinstance(call.func, cst.Attribute) and name in _PRESERVING_METHODS and not (
        name in _WRAPPERS and dotted_name(call.func.value) in ("np", "numpy", "torch")
    ):
        return call.func.value
    if name in wrappers and call.args:
        return call.args[0].value
    return None


def split_subscript_under(node: cst.CSTNode) -> Optional[cst.Subscript]:
    """The slicing subscript an expression hands on: `df.iloc[:n].values`, `x[:n].reshape(-1, 1)`,
    `np.array(x[n:])`, `df[:n]["close"]`."""
    current = node
    for _ in range(8):
        if isinstance(current, cst.Subscript):
            if first_slice(current) is not None:
                return current
            current = current.value
        elif isinstance(current, cst.Attribute):
            current = current.value
        elif isinstance(current, cst.Call):
            current = _array_under(current, _ARRAY_PASSING)
            if current is None:
                return None
        else:
            return None
    return None


def _strip_wrappers(node: cst.CSTNode) -> Optional[cst.CSTNode]:
    """The expression under .astype()/.values/np.array() wrappers: `((x - m) / s).astype(f)`."""
    current = node
    for _ in range(6):
        if isinstance(current, cst.Call):
            name = _call_name(current)
            if isinstance(current.func, cst.Attribute) and name in _PRESERVING_METHODS:
                current = current.func.value
                continue
            if name in _WRAPPERS and current.args:
                current = current.args[0].value
                continue
            return None
        if isinstance(current, cst.Attribute) and current.attr.value in ("values", "T"):
            current = current.value
            continue
        return current
    return None


def _whole_data_axis(stat: cst.Call) -> bool:
    """A statistic over the samples (no axis, axis=0, axis=(0, 1)), not per sample (axis=1)."""
    for arg in stat.args:
        if arg.keyword is not None and arg.keyword.value in ("axis", "dim"):
            value = arg.value
            if _is_zero(value):
                return True
            if isinstance(value, cst.Tuple):
                return any(_is_zero(e.value) for e in value.elements)
            return False
        if arg.keyword is not None and arg.keyword.value == "keepdims":
            continue
    positional = [a for a in stat.args if a.keyword is None]
    func = stat.func
    owner = dotted_name(func.value) if isinstance(func, cst.Attribute) else None
    axis = positional[1] if owner in ("np", "numpy", "torch") and len(positional) > 1 else (
        positional[0] if owner not in ("np", "numpy", "torch") and positional else None
    )
    if axis is None:
        return True
    return _is_zero(axis.value) or (
        isinstance(axis.value, cst.Tuple) and any(_is_zero(e.value) for e in axis.value.elements)
    )


def _window_size(part: cst.Slice) -> Optional[cst.BaseExpression]:
    """W for series[i:i + W] or series[i - W:i]."""
    upper, lower = part.upper, part.lower
    if isinstance(upper, cst.BinaryOperation) and isinstance(upper.operator, cst.Add):
        if lower is not None and code_of(upper.left) == code_of(lower):
            return upper.right
        if lower is not None and code_of(upper.right) == code_of(lower):
            return upper.left
    if isinstance(lower, cst.BinaryOperation) and isinstance(lower.operator, cst.Subtract):
        if upper is not None and code_of(lower.left) == code_of(upper):
            return lower.right
    return None


def _window_slice(node: cst.CSTNode, flow: DataFlow) -> Optional[Tuple[cst.Subscript, Optional[cst.BaseExpression]]]:
    """A subscript series[i:i + W] (both bounds move with one index) inside an expression."""
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, cst.Subscript):
            part = first_slice(current)
            if part is not None and part.lower is not None and part.upper is not None:
                common = {n for n in names_in(part.lower) if "." not in n} & {
                    n for n in names_in(part.upper) if "." not in n
                }
                if common and code_of(part.lower) != code_of(part.upper):
                    return current, _window_size(part)
        if isinstance(current, (cst.Lambda,)):
            continue
        stack.extend(iter_children(current))
    return None


def _comprehension_window(node: cst.CSTNode, flow: DataFlow) -> Optional[Tuple[cst.Subscript, Optional[cst.BaseExpression]]]:
    """[series[i:i + W] for i in range(...)] somewhere in the expression."""
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, (cst.ListComp, cst.GeneratorExp)):
            targets = names_in(current.for_in.target)
            found = _window_slice(current.elt, flow)
            if found is not None:
                part = first_slice(found[0])
                if part is not None and names_in(part.lower) & targets:
                    iter_node = current.for_in.iter
                    if isinstance(iter_node, cst.Call) and dotted_name(iter_node.func) == "range" and len(iter_node.args) == 3:
                        if _overlap(found[1], iter_node.args[2].value, flow, None) is False:
                            return None
                    return found
            continue
        stack.extend(iter_children(current))
    return None


def _overlap(size: Optional[cst.BaseExpression], step: cst.BaseExpression, flow: DataFlow, scope: Optional[Scope]) -> Optional[bool]:
    """False when the stride is at least the window (no overlap), True when smaller, None unknown."""
    if size is None:
        return None
    if code_of(size) == code_of(step):
        return False
    if isinstance(step, cst.Integer) and step.value == "1":
        return True
    return None


# -- padding and masking -----------------------------------------------------------------------

PACKING_METHODS = frozenset({"pack_padded_sequence", "pack_sequence", "PackedSequence"})


@dataclass(eq=False)
class Padding:
    torch_pads: List[CallFact]  # pad_sequence calls that pad at the end
    keras_post_pads: List[CallFact]  # pad_sequences(..., padding="post")
    packing: bool  # pack_padded_sequence / pack_sequence anywhere in the file
    keras_mask: bool  # Masking, Embedding(mask_zero=True or unknown), or an explicit mask= anywhere


def padding(facts: ModuleFacts, evaluator) -> Padding:  # type: ignore[no-untyped-def]
    cached = facts.cache.get("padding")
    if cached is not None:
        return cached  # type: ignore[return-value]
    torch_pads: List[CallFact] = []
    keras_pads: List[CallFact] = []
    packing = False
    mask = False
    for call in facts.calls:
        qualname = call.qualname or ""
        if call.method in PACKING_METHODS:
            packing = True
        if call.kwarg("mask") is not None:
            mask = True
        if qualname.startswith("torch") and qualname.endswith(".pad_sequence"):
            side = call.kwarg("padding_side")
            if side is None or evaluator.value(side, call.scope) == "right":
                torch_pads.append(call)
        elif qualname.startswith("keras") and qualname.endswith(".pad_sequences"):
            given = call.kwarg("padding")
            if given is not None and evaluator.value(given, call.scope) == "post":
                keras_pads.append(call)
        elif qualname == "keras.layers.Masking":
            mask = True
        elif qualname == "keras.layers.Embedding":
            zero = call.kwarg("mask_zero")
            if zero is not None and evaluator.value(zero, call.scope) is not False:
                mask = True
    result = Padding(torch_pads, keras_pads, packing, mask)
    facts.cache["padding"] = result
    return result


def last_step_read(facts: ModuleFacts, call: CallFact) -> Optional[str]:
    """How the code reads the end of a recurrent module call's result: "out[:, -1]", "h_n", or None.

    `out, (h_n, c_n) = self.lstm(x)` followed by `out[:, -1]` or `out[-1]`, or by any use of
    h_n, counts; reading outputs at each sequence's own length does not."""
    stmt = call.stmt
    if not isinstance(stmt, cst.SimpleStatementLine):
        return None
    output: Optional[str] = None
    state: Optional[str] = None
    for small in stmt.body:
        if not isinstance(small, cst.Assign) or len(small.targets) != 1:
            continue
        target, value = small.targets[0].target, small.value
        if value is call.node and isinstance(target, (cst.Tuple, cst.List)) and len(target.elements) == 2:
            output = dotted_name(target.elements[0].value)
            second = target.elements[1].value
            if isinstance(second, (cst.Tuple, cst.List)) and second.elements:
                second = second.elements[0].value
            state = dotted_name(second)
        elif isinstance(value, cst.Subscript) and value.value is call.node:
            index = value.slice[0].slice if value.slice else None
            if isinstance(index, cst.Index) and _is_zero(index.value):
                output = dotted_name(target)
    if output is None and state is None:
        return None
    if output and output != "_":
        for sub in facts.subscripts:
            if sub.scope is call.scope and sub.order > call.order and sub.dotted == output and _is_last_step(sub.node):
                return code_of(sub.node)
    if state and state != "_":
        uses = 0
        stack: List[cst.CSTNode] = [call.scope.node]
        while stack:
            current = stack.pop()
            if isinstance(current, cst.Name) and current.value == state:
                uses += 1
            stack.extend(iter_children(current))
        if uses > 1:
            return state
    return None


def _is_last_step(node: cst.Subscript) -> bool:
    """x[:, -1], x[:, -1, :] or x[-1]."""
    elements = node.slice
    first = elements[0].slice if elements else None
    if isinstance(first, cst.Index) and _is_minus_one(first.value):
        return True
    if (
        len(elements) >= 2 and isinstance(first, cst.Slice) and first.lower is None and first.upper is None
        and isinstance(elements[1].slice, cst.Index) and _is_minus_one(elements[1].slice.value)
    ):
        return True
    return False


def _is_minus_one(node: cst.BaseExpression) -> bool:
    return (
        isinstance(node, cst.UnaryOperation) and isinstance(node.operator, cst.Minus)
        and isinstance(node.expression, cst.Integer) and node.expression.value == "1"
    )


# -- test data driving validation ----------------------------------------------------------------

_BEST_TOKENS = frozenset({"best", "min", "lowest", "max", "highest", "top", "prev", "previous"})
_EARLY_STOP = re.compile(r"early_?stop|stopper", re.I)
KERAS_WATCHERS = ("keras.callbacks.EarlyStopping", "keras.callbacks.ReduceLROnPlateau", "keras.callbacks.ModelCheckpoint")


def keras_watchers(flow: DataFlow, evaluator, call: CallFact) -> List[Tuple[CallFact, str]]:  # type: ignore[no-untyped-def]
    """Callbacks passed to a keras fit() that act on a val_* metric: (constructor call, monitor)."""
    given = call.kwarg("callbacks")
    if given is None:
        return []
    elements = _callback_elements(flow, given, call.scope, 0)
    out: List[Tuple[CallFact, str]] = []
    for element in elements:
        built = flow.calls_by_node.get(id(element)) if isinstance(element, cst.Call) else None
        if built is None and dotted_name(element) is not None:
            built = flow.assigned_call(dotted_name(element) or "")
        if built is None or built.qualname not in KERAS_WATCHERS:
            continue
        is_checkpoint = built.qualname.endswith("ModelCheckpoint")
        monitor_node = built.arg(1 if is_checkpoint else 0, "monitor")
        monitor = "val_loss" if monitor_node is None else evaluator.value(monitor_node, built.scope)
        if not isinstance(monitor, str) or not monitor.startswith("val_"):
            continue
        if is_checkpoint:
            best = built.kwarg("save_best_only")
            if best is None or evaluator.value(best, built.scope) is not True:
                continue
        out.append((built, monitor))
    return out


def _callback_elements(flow: DataFlow, node: cst.BaseExpression, scope: Scope, depth: int) -> List[cst.BaseExpression]:
    """The callback expressions a `callbacks=` argument holds: a list literal, a name bound once to
    one (plus unconditional `name.append(cb)` in that scope), or a call of a local function with a
    single `return` of such a list (`callbacks=make_callbacks()`)."""
    if depth > 3:
        return []
    if isinstance(node, (cst.List, cst.Tuple)):
        out: List[cst.BaseExpression] = []
        for element in node.elements:
            if isinstance(element, cst.StarredElement):
                out.extend(_callback_elements(flow, element.value, scope, depth + 1))
            else:
                out.append(element.value)
        return out
    if isinstance(node, cst.Call):
        function = flow._local_callable(node)
        if function is None or function.kind != "function" or len(function.returns) != 1:
            return []
        return _callback_elements(flow, function.returns[0], function, depth + 1)
    name = dotted_name(node)
    if name is None:
        return []
    bound = scope.binding(name)
    if bound is None or bound[1]:
        return []  # unknown, or a parameter: the caller decides what it holds
    owner = bound[0]
    values = owner.assigns.get(name) or []
    if len(values) != 1:
        return []
    out = _callback_elements(flow, values[0], owner, depth + 1)
    if isinstance(values[0], (cst.List, cst.Tuple)):
        for added in owner.calls:
            if added.receiver_dotted == name and added.method == "append" and added.args and not added.guards:
                out.append(added.args[0].value)
    return out


@dataclass(eq=False)
class MetricUse:
    node: cst.CSTNode  # the scheduler.step(...) call, early-stopping call, or comparison
    stmt: cst.CSTNode
    metric: str
    kind: str  # "plateau" | "early-stop" | "best"
    source: cst.CSTNode  # where the metric was computed on the test split


def test_metric_uses(flow: DataFlow, training_calls: Set[int]) -> List[MetricUse]:
    """Metrics computed on the test split that drive a plateau scheduler, early stopping or the
    best-checkpoint choice inside a training loop (torch-style loops).

    `training_calls` holds id() of the optimizer step calls and of calls to local functions
    that train; a loop counts as a training loop when it contains one of them."""
    facts = flow.facts
    # name -> [(order, is_test, evidence node, loop)]
    history: Dict[str, List[Tuple[int, bool, cst.CSTNode, object]]] = {}
    for assign in flow.assigns:
        if assign.loop is None:
            continue
        value = _element(assign)
        if value is None:
            continue
        evidence: Optional[cst.CSTNode] = None
        mentioned = {n for n in names_in(value) if "." not in n}
        roles = {flow.role(n, assign.order) for n in mentioned} - {None}
        if TEST in roles and not roles & {TRAIN, VAL}:
            evidence = value
        for name in mentioned:
            entries = history.get(name)
            if entries and entries[-1][1] and not roles & {TRAIN, VAL}:
                evidence = entries[-1][2]
        if evidence is None:
            for loop in assign.loop.ancestors():
                if loop.iter_node is not None and loop.scope is assign.scope:
                    loop_roles = {flow.role(n, loop.order) for n in names_in(loop.iter_node) if "." not in n} - {None}
                    if loop_roles == {TEST}:
                        evidence = loop.iter_node
                        break
        if evidence is None and assign.aug_op is not None:
            entries = history.get(assign.target)
            if entries and entries[-1][1]:
                evidence = entries[-1][2]
        history.setdefault(assign.target, []).append((assign.order, evidence is not None, evidence or value, assign.loop))

    def test_metric_at(names: Set[str], order: int, scope: Scope) -> Optional[Tuple[str, cst.CSTNode]]:
        for name in sorted(names):
            entries = [e for e in history.get(name, []) if e[0] < order]
            if entries and entries[-1][1]:
                return name, entries[-1][2]
        return None

    def in_training_loop(loop) -> bool:  # type: ignore[no-untyped-def]
        return loop is not None and any(
            any(id(c.node) in training_calls for c in outer.calls) for outer in loop.ancestors()
        )

    uses: List[MetricUse] = []
    for call in facts.calls:
        if not call.args or not in_training_loop(call.loop):
            continue
        kind = None
        if call.method == "step" and call.receiver_dotted:
            built = flow.assigned_call(call.receiver_dotted)
            if built is not None and (built.qualname or "").endswith("ReduceLROnPlateau"):
                kind = "plateau"
        if kind is None and call.dotted and _EARLY_STOP.search(call.dotted):
            kind = "early-stop"
        if kind is None:
            continue
        mentioned = {n for a in call.args for n in names_in(a.value) if "." not in n}
        hit = test_metric_at(mentioned, call.order, call.scope)
        if hit is not None:
            uses.append(MetricUse(call.node, call.stmt, hit[0], kind, hit[1]))
    # Comparisons against a best value: `if test_loss < best_loss:`.
    seen: Set[int] = set()
    for loop in facts.loops:
        if not in_training_loop(loop):
            continue
        for node in _ifs_in(loop.node):
            if id(node) in seen:
                continue
            seen.add(id(node))
            test = node.test
            if not isinstance(test, cst.Comparison) or len(test.comparisons) != 1:
                continue
            if not isinstance(test.comparisons[0].operator, (cst.LessThan, cst.GreaterThan, cst.LessThanEqual, cst.GreaterThanEqual)):
                continue
            sides = [test.left, test.comparisons[0].comparator]
            names = [{n for n in names_in(side) if "." not in n} for side in sides]
            for mine, other in ((0, 1), (1, 0)):
                if not any(set(name_tokens(n)) & _BEST_TOKENS for n in names[other]):
                    continue
                candidates = names[mine]
                for name in sorted(candidates):
                    loop_entries = [e for e in history.get(name, []) if loop.contains(e[3])]
                    if loop_entries and all(e[1] for e in loop_entries):
                        uses.append(MetricUse(test, node, name, "best", loop_entries[-1][2]))
                        break
                else:
                    continue
                break
    return uses


def _ifs_in(node: cst.CSTNode) -> List[cst.If]:
    """If statements in a compound statement's body (not inside nested functions)."""
    out: List[cst.If] = []
    stack: List[cst.CSTNode] = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, cst.If):
            out.append(current)
        if isinstance(current, (cst.FunctionDef, cst.ClassDef, cst.SimpleStatementLine)):
            if current is not node:
                continue
        body = getattr(current, "body", None)
        if isinstance(body, (list, tuple)):
            stack.extend(b for b in body if isinstance(b, cst.CSTNode))
        elif isinstance(body, cst.CSTNode):
            stack.append(body)
        orelse = getattr(current, "orelse", None)
        if isinstance(orelse, cst.CSTNode):
            stack.append(orelse)
        for handler in getattr(current, "handlers", ()) or ():
            stack.append(handler)
    return out
