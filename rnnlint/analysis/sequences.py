"""How long the sequences are that a recurrent layer sees, and how keras models are put together.

Three kinds of evidence, from the most to the least direct:

- at the layer: keras `input_shape=(T, F)`, an `Input(shape=(T, F))` in front of it (through
  layers that keep the time axis), `Embedding(input_length=T)`; in PyTorch the tensor given to
  the module where it is called (`x.view(n, T, f)`, `x.unsqueeze(1)`);
- at the model: a keras array reshaped to `(n, T, F)` and passed to the model's `fit()`;
- in the file: a sequence-length value used to cut or pad sequences (`data[i:i + SEQ_LEN]`,
  `pad_sequences(maxlen=500)`, `make_windows(series, window=50)` of a function defined in the file,
  `timeseries_dataset_from_array(sequence_length=...)`).

Every value goes through the Evaluator; unknown values are dropped, never guessed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import libcst as cst

from rnnlint.analysis.facts import CallFact, ModuleFacts, Scope
from rnnlint.analysis.names import dotted_name
from rnnlint.analysis.recurrent import RecurrentLayer, layer_bound_to
from rnnlint.analysis.values import Evaluator, known
from rnnlint.analysis.walker import walk

# Names that hold a sequence length (last component of a dotted name, case-insensitive).
SEQ_NAME = re.compile(
    r"^(n_|num_)?(seq|sequence|input_seq|max_?seq|max_?sequence)_?(len|length)$"
    r"|^(max_?len|max_?length|maxlen)$"
    r"|^(n_|num_)?(time_?steps?|timesteps?)$"
    r"|^(look_?back|window|window_?(size|len|length)|win_?(size|len)|bptt|history_?(len|length|size))$",
    re.I,
)
# Keras layers that keep the time axis of their input as it is.
TIME_PRESERVING = frozenset(
    {
        "Input", "InputLayer", "Embedding", "Masking", "Dropout", "SpatialDropout1D",
        "BatchNormalization", "LayerNormalization", "GaussianNoise", "GaussianDropout",
        "AlphaDropout", "Dense", "TimeDistributed", "Activation", "Normalization",
        "ActivityRegularization", "LSTM", "GRU", "SimpleRNN", "CuDNNLSTM", "CuDNNGRU",
        "Bidirectional",
    }
)
_WRAPPERS = ("Bidirectional", "TimeDistributed")
_CHAIN = frozenset({"to", "cuda", "float", "double", "half", "contiguous", "detach", "type"})


@dataclass(frozen=True)
class Length:
    """A known sequence length and where it comes from."""

    value: int
    node: cst.CSTNode  # the expression that gives it (for the message's line)
    text: str  # how the message names it: "input_shape=(500, 3)", "SEQ_LEN"


def code(facts: ModuleFacts, node: cst.CSTNode, limit: int = 60) -> str:
    text = " ".join(facts.module.code_for_node(node).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def calls_by_node(facts: ModuleFacts) -> Dict[int, CallFact]:
    table = facts.cache.get("calls_by_node")
    if table is None:
        table = {id(c.node): c for c in facts.calls}
        facts.cache["calls_by_node"] = table
    return table  # type: ignore[return-value]


def layer_name(facts: ModuleFacts, node: cst.CSTNode) -> Optional[str]:
    """"Dense" for a keras layer constructor call (the inner layer for Bidirectional(...))."""
    call = calls_by_node(facts).get(id(node)) if isinstance(node, cst.Call) else None
    if call is None or call.qualname is None or not call.qualname.startswith("keras."):
        return None
    return call.qualname.rsplit(".", 1)[-1]


def _int(value) -> Optional[int]:  # type: ignore[no-untyped-def]
    if known(value) and isinstance(value, int) and not isinstance(value, bool):
        return value
    if known(value) and isinstance(value, float) and value.is_integer():
        return int(value)
    return None


# -- keras model structure ------------------------------------------------------------


@dataclass(eq=False)
class KerasModel:
    """The layers of a keras model built in this file, in order (Sequential list and .add())."""

    name: Optional[str]  # the variable that holds it
    layers: List[cst.CSTNode]  # constructor calls (wrappers included as written)
    scope: Scope
    node: Optional[cst.CSTNode] = None  # the Sequential(...) call


def _unwrap(facts: ModuleFacts, node: cst.CSTNode) -> cst.CSTNode:
    name = layer_name(facts, node)
    if name in _WRAPPERS and isinstance(node, cst.Call) and node.args:
        return node.args[0].value
    return node


def sequential_models(facts: ModuleFacts) -> List[KerasModel]:
    cached = facts.cache.get("keras_sequential_models")
    if cached is not None:
        return cached  # type: ignore[return-value]
    models: List[KerasModel] = []
    by_key: Dict[Tuple[str, int], KerasModel] = {}
    for call in facts.calls:
        if call.qualname == "keras.Sequential" or call.qualname == "keras.models.Sequential":
            listed = call.arg(0, "layers")
            layers = [e.value for e in listed.elements] if isinstance(listed, (cst.List, cst.Tuple)) else []
            model = KerasModel(call.assigned_to, layers, call.scope, call.node)
            models.append(model)
            if call.assigned_to is not None:
                by_key[(call.assigned_to, id(call.scope))] = model
        elif call.method == "add" and call.receiver_dotted is not None and len(call.args) == 1:
            added = call.args[0].value
            if layer_name(facts, added) is None:
                continue
            model = by_key.get((call.receiver_dotted, id(call.scope)))
            if model is None:
                model = KerasModel(call.receiver_dotted, [], call.scope)
                models.append(model)
                by_key[(call.receiver_dotted, id(call.scope))] = model
            model.layers.append(added)
    facts.cache["keras_sequential_models"] = models
    return models


def model_of_layer(facts: ModuleFacts, node: cst.CSTNode) -> Optional[Tuple[KerasModel, int]]:
    for model in sequential_models(facts):
        for index, element in enumerate(model.layers):
            if element is node or _unwrap(facts, element) is node:
                return model, index
    return None


def model_named(facts: ModuleFacts, name: Optional[str], scope: Scope) -> Optional[KerasModel]:
    """The Sequential model held by `name`, looked up in `scope` and its enclosing scopes."""
    if name is None:
        return None
    current: Optional[Scope] = scope
    while current is not None:
        found = [m for m in sequential_models(facts) if m.name == name and m.scope is current]
        if len(found) == 1:
            return found[0]
        if found:
            return None
        current = current.parent
    return None


def model_built(facts: ModuleFacts, name: Optional[str], scope: Scope) -> Optional[KerasModel]:
    """Like model_named, and also `model = build_model()` of a local function that builds and
    returns a Sequential model."""
    found = model_named(facts, name, scope)
    if found is not None or name is None:
        return found
    built = [c for c in facts.calls if c.assigned_to == name and c.scope is scope]
    if len(built) != 1 or built[0].dotted not in facts.functions:
        return None
    function = facts.functions[built[0].dotted]  # type: ignore[index]
    if len(function.returns) != 1:
        return None
    ret = function.returns[0]
    if isinstance(ret, cst.Name):
        return model_named(facts, ret.value, function)
    return next((m for m in sequential_models(facts) if m.node is ret), None)


def _shape_length(facts: ModuleFacts, evaluator: Evaluator, node: cst.BaseExpression, scope: Scope,
                  batch: bool, token_ids: bool) -> Optional[int]:
    """T of a shape tuple: (T, F) / (B, T, F); (T,) / (B, T) only for token ids (an Embedding follows)."""
    shape = evaluator.value(node, scope)
    if not isinstance(shape, tuple):
        return None
    size = len(shape) - (1 if batch else 0)
    if size == 2 or (size == 1 and token_ids):
        return _int(shape[1 if batch else 0])
    return None


def _layer_length(facts: ModuleFacts, evaluator: Evaluator, element: cst.CSTNode,
                  embedding_follows: bool) -> Optional[Length]:
    """The sequence length a layer declares for its input, if it declares one."""
    call = calls_by_node(facts).get(id(element)) if isinstance(element, cst.Call) else None
    if call is None or call.has_star_args:
        return None
    name = layer_name(facts, element)
    scope = call.scope
    candidates: List[Tuple[Optional[cst.BaseExpression], bool, str]] = []
    if name == "Input":
        candidates += [(call.arg(0, "shape"), False, "shape"), (call.kwarg("batch_shape"), True, "batch_shape")]
    candidates += [
        (call.kwarg("input_shape"), False, "input_shape"),
        (call.kwarg("batch_input_shape"), True, "batch_input_shape"),
        (call.kwarg("batch_shape"), True, "batch_shape") if name != "Input" else (None, False, ""),
    ]
    token_ids = embedding_follows or name == "Embedding"
    for node, batch, label in candidates:
        if node is None:
            continue
        value = _shape_length(facts, evaluator, node, scope, batch, token_ids)
        if value is not None:
            return Length(value, node, f"{label}={code(facts, node)}")
    if name == "Embedding":
        node = call.kwarg("input_length")
        value = _int(evaluator.value(node, scope)) if node is not None else None
        if value is not None:
            return Length(value, node, f"Embedding(input_length={code(facts, node)})")  # type: ignore[arg-type]
    return None


def _functional_input(facts: ModuleFacts, node: cst.CSTNode, scope: Scope) -> Optional[List[cst.CSTNode]]:
    """For `SimpleRNN(64)(x)`: the layers from the Input to this one (through time-preserving layers)."""
    chain: List[cst.CSTNode] = []
    applied = [c for c in facts.calls if c.node.func is node]
    if len(applied) != 1 or not applied[0].args:
        return None
    value: cst.BaseExpression = applied[0].args[0].value
    before = applied[0].order
    table = calls_by_node(facts)
    for _ in range(12):
        if isinstance(value, cst.Name):
            assigns = [a for a in facts.assigns
                       if a.target == value.value and a.scope is scope and a.order < before]
            if not assigns:
                return None
            last = max(assigns, key=lambda a: a.order)
            if last.aug_op is not None or last.unpack_index is not None:
                return None
            value = last.value
            continue
        if not isinstance(value, cst.Call):
            return None
        name = layer_name(facts, value)
        if name == "Input":
            chain.append(value)
            return list(reversed(chain))
        # value is Layer(...)(inner): the layer constructor is value.func
        if isinstance(value.func, cst.Call) and value.args and id(value) in table:
            inner_name = layer_name(facts, value.func)
            if inner_name is None:
                return None
            chain.append(value.func)
            before = table[id(value)].order
            value = value.args[0].value
            continue
        return None
    return None


def keras_layer_length(facts: ModuleFacts, evaluator: Evaluator, layer: RecurrentLayer) -> Optional[Length]:
    """The input length declared at or in front of a keras recurrent layer; None when unknown
    or when a layer in front changes the time axis (Conv1D, pooling, Reshape, RepeatVector)."""
    node = layer.call.node
    found = model_of_layer(facts, node)
    if found is not None:
        model, index = found
        elements = model.layers[: index + 1]
    else:
        chain = _functional_input(facts, layer.wrapper.node if layer.wrapper else node, layer.call.scope)
        if chain is None:
            return _layer_length(facts, evaluator, node, False)
        elements = chain + [node]
    length: Optional[Length] = None
    for i, element in enumerate(elements):
        inner = _unwrap(facts, element)
        name = layer_name(facts, inner)
        if name is None or name not in TIME_PRESERVING:
            return None
        embedding_follows = any(layer_name(facts, e) == "Embedding" for e in elements[i + 1:])
        declared = _layer_length(facts, evaluator, inner, embedding_follows) or (
            _layer_length(facts, evaluator, element, embedding_follows) if element is not inner else None
        )
        if declared is not None:
            length = declared
    return length


def keras_time_changers(facts: ModuleFacts) -> bool:
    """Whether the file builds keras layers that change the time axis (then file-level lengths
    cannot be tied to a recurrent layer)."""
    for call in facts.calls:
        name = (call.qualname or "")
        if name.startswith("keras.layers.") and name.rsplit(".", 1)[-1] not in TIME_PRESERVING:
            tail = name.rsplit(".", 1)[-1]
            if re.match(r"(Conv|MaxPool|AveragePool|GlobalMax|GlobalAverage|Reshape|RepeatVector|Lambda|Permute|Cropping|ZeroPadding|UpSampling)", tail):
                return True
    return False


def fit_reshape_length(facts: ModuleFacts, evaluator: Evaluator, model: KerasModel) -> Optional[Length]:
    """T of an array reshaped to (n, T, F) in this file and passed as x to model.fit()."""
    lengths = []
    for call in facts.calls:
        if call.method != "fit" or call.receiver_dotted != model.name or call.scope is not model.scope:
            continue
        x = call.arg(0, "x")
        if not isinstance(x, cst.Name):
            return None
        for assign in facts.assigns:
            if assign.target != x.value or assign.scope is not call.scope or assign.aug_op or assign.unpack_index is not None:
                continue
            found = reshape_time(facts, evaluator, assign.value, assign.scope, time_axis=1)
            if found is not None:
                lengths.append(found)
    values = {l.value for l in lengths}
    return lengths[0] if len(values) == 1 else None


# -- tensors and arrays ---------------------------------------------------------------


def reshape_time(facts: ModuleFacts, evaluator: Evaluator, node: cst.BaseExpression, scope: Scope,
                 time_axis: int) -> Optional[Length]:
    """T of `x.reshape(n, T, f)`, `x.view((n, T, f))`, `np.reshape(x, (n, T, f))`, `x.unsqueeze(axis)`."""
    node = strip_chain(node)
    if not isinstance(node, cst.Call) or not isinstance(node.func, cst.Attribute):
        return None
    method = node.func.attr.value
    args = [a for a in node.args if a.keyword is None and not a.star]
    if any(a.star for a in node.args):
        return None
    module_call = dotted_name(node.func.value) in ("np", "numpy", "torch")
    if method == "unsqueeze" or (method == "expand_dims" and module_call):
        axis_node = next(
            (a.value for a in node.args if a.keyword is not None and a.keyword.value in ("dim", "axis")), None
        )
        if axis_node is None:
            positional = args[1:] if module_call else args
            axis_node = positional[0].value if positional else None
        axis = _int(evaluator.value(axis_node, scope)) if axis_node is not None else None
        if axis is not None and (axis == time_axis or (time_axis == 1 and axis == -2)):
            return Length(1, node, code(facts, node))
        return None
    if method not in ("reshape", "view"):
        return None
    if module_call:
        args = args[1:]  # np.reshape(x, shape)
    if len(args) == 1 and isinstance(args[0].value, (cst.Tuple, cst.List)):
        dims = [e.value for e in args[0].value.elements]
    else:
        dims = [a.value for a in args]
    if len(dims) != 3:
        return None
    value = _int(evaluator.value(dims[time_axis], scope))
    if value is None or value <= 0:
        return None
    return Length(value, node, code(facts, node))


def strip_chain(node: cst.BaseExpression) -> cst.BaseExpression:
    while (
        isinstance(node, cst.Call)
        and isinstance(node.func, cst.Attribute)
        and node.func.attr.value in _CHAIN
    ):
        node = node.func.value
    return node


def top_level_in_function(stmt: cst.CSTNode, scope: Scope) -> bool:
    """Whether a statement sits directly in a function's body (not under an if, loop or with)."""
    node = scope.node
    if not isinstance(node, cst.FunctionDef) or not isinstance(node.body, cst.IndentedBlock):
        return False
    return any(s is stmt for s in node.body.body)


def last_plain_assignment(facts: ModuleFacts, name: str, scope: Scope, before: int):  # type: ignore[no-untyped-def]
    """The last `name = value` in `scope` before order `before`, when it is straight-line code."""
    found = None
    for assign in facts.assigns:
        if assign.target == name and assign.scope is scope and assign.order < before:
            if found is None or assign.order > found.order:
                found = assign
    if found is None or found.aug_op is not None or found.unpack_index is not None:
        return None
    if scope.kind == "function" and not top_level_in_function(found.stmt, scope):
        return None
    return found


@dataclass(frozen=True)
class TorchCallInput:
    length: Length
    call: CallFact  # where the module is called
    passes_state: bool


def torch_call_lengths(facts: ModuleFacts, evaluator: Evaluator, layer: RecurrentLayer,
                       layers: Sequence[RecurrentLayer]) -> List[TorchCallInput]:
    """Sequence lengths of the tensors given to a torch recurrent module where it is called."""
    batch_first = layer.get("batch_first")
    if not isinstance(batch_first, bool):
        return []
    time_axis = 1 if batch_first else 0
    out: List[TorchCallInput] = []
    for call in facts.calls:
        if call.dotted is None or layer_bound_to(list(layers), call.dotted, call.scope) is not layer:
            continue
        if call.has_star_args:
            continue
        arg = call.arg(0, "input")
        if arg is None:
            continue
        state = call.arg(1, "hx")
        passes_state = state is not None and not (isinstance(state, cst.Name) and state.value == "None")
        length = _input_time(facts, evaluator, arg, call, time_axis)
        if length is not None:
            out.append(TorchCallInput(length, call, passes_state))
    return out


_CONCATENATE = ("torch.cat", "torch.concat", "torch.concatenate")


def _input_time(facts: ModuleFacts, evaluator: Evaluator, arg: cst.BaseExpression, call: CallFact,
                time_axis: int, depth: int = 0) -> Optional[Length]:
    """The time length of a recurrent module's input: a reshape or unsqueeze, through one plain
    assignment, or any operand of a torch.cat along another axis (a decoder step's
    `torch.cat((embedded.unsqueeze(1), context), dim=2)`)."""
    arg = strip_chain(arg)
    if isinstance(arg, cst.Name):
        assign = last_plain_assignment(facts, arg.value, call.scope, call.order)
        if assign is None:
            return None
        arg = strip_chain(assign.value)
    if isinstance(arg, cst.Call) and dotted_name(arg.func) in _CONCATENATE and depth < 2:
        operands = arg.args[0].value if arg.args and arg.args[0].keyword is None and not arg.args[0].star else None
        dim_node = next((a.value for a in arg.args if a.keyword is not None and a.keyword.value in ("dim", "axis")),
                        arg.args[1].value if len(arg.args) > 1 and arg.args[1].keyword is None else None)
        dim = _int(evaluator.value(dim_node, call.scope)) if dim_node is not None else 0
        if not isinstance(operands, (cst.Tuple, cst.List)) or dim is None or dim in (time_axis, time_axis - 3):
            return None
        for element in operands.elements:
            if isinstance(element, cst.StarredElement):
                continue
            length = _input_time(facts, evaluator, element.value, call, time_axis, depth + 1)
            if length is not None:
                return length
        return None
    return reshape_time(facts, evaluator, arg, call.scope, time_axis)


# -- file-level sequence lengths ------------------------------------------------------

_LENGTH_KEYWORDS = {
    "pad_sequences": ("maxlen",),
    "timeseries_dataset_from_array": ("sequence_length",),
    "TimeseriesGenerator": ("length",),
}


def _seq_named(node: cst.CSTNode) -> bool:
    dotted = dotted_name(node)
    if dotted is None:
        if isinstance(node, cst.Subscript) and isinstance(node.slice[0].slice, cst.Index):
            key = node.slice[0].slice.value
            return isinstance(key, cst.SimpleString) and bool(SEQ_NAME.match(key.evaluated_value or ""))
        return False
    return bool(SEQ_NAME.match(dotted.rsplit(".", 1)[-1]))


def _bound_operands(node: Optional[cst.BaseExpression]) -> List[cst.BaseExpression]:
    """The seq-named operands of a slice bound: W, i + W, i - W, -W, t + self.seq_len."""
    out: List[cst.BaseExpression] = []
    stack = [node] if node is not None else []
    while stack:
        current = stack.pop()
        if isinstance(current, cst.BinaryOperation) and isinstance(current.operator, (cst.Add, cst.Subtract)):
            stack.extend([current.left, current.right])
        elif isinstance(current, cst.UnaryOperation) and isinstance(current.operator, cst.Minus):
            stack.append(current.expression)
        elif _seq_named(current):
            out.append(current)
    return out


def file_lengths(facts: ModuleFacts, evaluator: Evaluator) -> List[Length]:
    """Sequence lengths used in this file to cut or pad the sequences."""
    cached = facts.cache.get("file_sequence_lengths")
    if cached is not None:
        return cached  # type: ignore[return-value]
    out: List[Length] = []
    # 1. Slice bounds: series[i:i + SEQ_LEN], x[-window:].
    for sub in facts.subscripts:
        for element in sub.node.slice:
            piece = element.slice
            if not isinstance(piece, cst.Slice):
                continue
            for bound in (piece.lower, piece.upper):
                for operand in _bound_operands(bound):
                    value = _int(evaluator.value(operand, sub.scope))
                    if value is not None and value > 0:
                        out.append(Length(value, operand, code(facts, operand)))
    # 2. Keyword arguments of padding/windowing utilities and of local window builders.
    local = set(facts.functions) | set(facts.classes)
    for call in facts.calls:
        if call.has_star_args:
            continue
        tail = (call.qualname or call.dotted or "").rsplit(".", 1)[-1]
        keywords = _LENGTH_KEYWORDS.get(tail, ())
        for arg in call.args:
            node = arg.value
            if arg.keyword is not None and arg.keyword.value in keywords:
                label = f"{tail}({arg.keyword.value}={code(facts, node)})"
            elif call.dotted in local and (
                (arg.keyword is not None and SEQ_NAME.match(arg.keyword.value)) or _seq_named(node)
            ):
                label = code(facts, node) if _seq_named(node) else f"{arg.keyword.value}={code(facts, node)}"  # type: ignore[union-attr]
            else:
                continue
            value = _int(evaluator.value(node, call.scope))
            if value is not None and value > 0:
                out.append(Length(value, node, label))
    facts.cache["file_sequence_lengths"] = out
    return out


def descendants(node: cst.CSTNode):  # type: ignore[no-untyped-def]
    return walk(node)
