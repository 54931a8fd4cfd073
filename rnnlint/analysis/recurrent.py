"""Recurrent layers of a module and their resolved configuration."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import libcst as cst

from rnnlint.analysis.facts import CallFact, ModuleFacts, Scope
from rnnlint.analysis.values import UNKNOWN, Evaluator, known

# torch: qualified name -> (kind, is_cell)
TORCH_RECURRENT = {
    "torch.nn.LSTM": ("LSTM", False),
    "torch.nn.GRU": ("GRU", False),
    "torch.nn.RNN": ("RNN", False),
    "torch.nn.LSTMCell": ("LSTM", True),
    "torch.nn.GRUCell": ("GRU", True),
    "torch.nn.RNNCell": ("RNN", True),
}
KERAS_RECURRENT = {
    "keras.layers.LSTM": ("LSTM", False),
    "keras.layers.GRU": ("GRU", False),
    "keras.layers.SimpleRNN": ("RNN", False),
    "keras.layers.CuDNNLSTM": ("LSTM", False),
    "keras.layers.CuDNNGRU": ("GRU", False),
    "keras.layers.ConvLSTM1D": ("ConvLSTM", False),
    "keras.layers.ConvLSTM2D": ("ConvLSTM", False),
    "keras.layers.ConvLSTM3D": ("ConvLSTM", False),
    "keras.layers.LSTMCell": ("LSTM", True),
    "keras.layers.GRUCell": ("GRU", True),
    "keras.layers.SimpleRNNCell": ("RNN", True),
    "keras.layers.RNN": ("RNN", False),
}

# Constructor parameters in positional order, with PyTorch's defaults.
_TORCH_PARAMS: Dict[str, Tuple[Tuple[str, Any], ...]] = {
    "LSTM": (
        ("input_size", UNKNOWN), ("hidden_size", UNKNOWN), ("num_layers", 1), ("bias", True),
        ("batch_first", False), ("dropout", 0.0), ("bidirectional", False), ("proj_size", 0),
    ),
    "GRU": (
        ("input_size", UNKNOWN), ("hidden_size", UNKNOWN), ("num_layers", 1), ("bias", True),
        ("batch_first", False), ("dropout", 0.0), ("bidirectional", False),
    ),
    "RNN": (
        ("input_size", UNKNOWN), ("hidden_size", UNKNOWN), ("num_layers", 1),
        ("nonlinearity", "tanh"), ("bias", True), ("batch_first", False), ("dropout", 0.0),
        ("bidirectional", False),
    ),
}
_TORCH_CELL_PARAMS: Tuple[Tuple[str, Any], ...] = (
    ("input_size", UNKNOWN), ("hidden_size", UNKNOWN), ("bias", True),
)
_KERAS_DEFAULTS: Dict[str, Any] = {
    "activation": "tanh",
    "recurrent_activation": "sigmoid",
    "return_sequences": False,
    "return_state": False,
    "go_backwards": False,
    "stateful": False,
    "dropout": 0.0,
    "recurrent_dropout": 0.0,
}


@dataclass(eq=False)
class RecurrentLayer:
    call: CallFact
    framework: str  # "torch" | "keras"
    kind: str  # "LSTM" | "GRU" | "RNN" | "ConvLSTM"
    cell: bool
    binding: Optional[str]  # "self.lstm", "rnn", or None when built inline
    owner: Optional[Scope]  # the class whose method builds it
    evaluator: Evaluator
    wrapper: Optional[CallFact] = None  # keras Bidirectional(...) around it

    @property
    def label(self) -> str:
        return ("nn." if self.framework == "torch" else "") + self.kind + ("Cell" if self.cell else "")

    def get(self, name: str) -> Any:
        """The resolved value of a constructor argument (its default when not given)."""
        call = self.call
        if call.has_star_args:
            return UNKNOWN
        if self.framework == "torch":
            table = _TORCH_CELL_PARAMS if self.cell else _TORCH_PARAMS.get(self.kind, ())
            for index, (param, default) in enumerate(table):
                if param == name:
                    node = call.arg(index, name)
                    return default if node is None else self.evaluator.value(node, call.scope)
            return UNKNOWN
        if name == "units":
            return self.evaluator.value(call.arg(0, "units"), call.scope)
        if name == "bidirectional":
            return self.wrapper is not None
        node = call.kwarg(name)
        if node is None:
            return _KERAS_DEFAULTS.get(name, UNKNOWN)
        return self.evaluator.value(node, call.scope)

    @property
    def num_directions(self) -> Any:
        bidirectional = self.get("bidirectional")
        if not known(bidirectional):
            return UNKNOWN
        return 2 if bidirectional else 1


def recurrent_layers(facts: ModuleFacts, evaluator: Evaluator) -> List[RecurrentLayer]:
    cached = facts.cache.get("recurrent_layers")
    if cached is not None:
        return cached  # type: ignore[return-value]
    layers: List[RecurrentLayer] = []
    wrappers = {
        id(c.positional(0)): c
        for c in facts.calls
        if c.qualname == "keras.layers.Bidirectional" and c.positional(0) is not None
    }
    for call in facts.calls:
        name = call.qualname
        if name is None:
            continue
        if name in TORCH_RECURRENT:
            framework, (kind, cell) = "torch", TORCH_RECURRENT[name]
        elif name in KERAS_RECURRENT:
            framework, (kind, cell) = "keras", KERAS_RECURRENT[name]
        else:
            continue
        layers.append(
            RecurrentLayer(
                call=call,
                framework=framework,
                kind=kind,
                cell=cell,
                binding=call.assigned_to,
                owner=call.scope.enclosing_class,
                evaluator=evaluator,
                wrapper=wrappers.get(id(call.node)),
            )
        )
    facts.cache["recurrent_layers"] = layers
    return layers


def layer_bound_to(layers: List[RecurrentLayer], dotted: Optional[str], scope: Scope) -> Optional[RecurrentLayer]:
    """The layer stored under `dotted` ("self.lstm" in the same class, or a local name)."""
    if dotted is None:
        return None
    cls = scope.enclosing_class
    matches = [
        layer
        for layer in layers
        if layer.binding == dotted
        and (not dotted.startswith("self.") or layer.owner is cls)
    ]
    return matches[0] if len(matches) == 1 else None


def _contains(node: cst.CSTNode, targets: set) -> bool:
    from rnnlint.analysis.walker import iter_children

    stack = [node]
    while stack:
        current = stack.pop()
        if id(current) in targets:
            return True
        stack.extend(iter_children(current))
    return False


def keras_model_is_recurrent(facts: ModuleFacts, layers: List[RecurrentLayer], model: Optional[str]) -> bool:
    """Whether the keras model held by `model` has a recurrent layer, as far as the file shows.

    A Sequential([...]) built here is judged by its list and its .add() calls; a model from a
    local builder function by that function's body; anything else (functional API, a loaded
    model) counts as recurrent when the file builds keras recurrent layers at all."""
    keras_nodes = {id(layer.call.node) for layer in layers if layer.framework == "keras"}
    if not keras_nodes:
        return False
    if model is None:
        return True
    builders = [c for c in facts.calls if c.assigned_to == model]
    if len(builders) != 1:
        return True
    built = builders[0]
    if (built.qualname or "").endswith("Sequential"):
        if _contains(built.node, keras_nodes):
            return True
        return any(
            c.method == "add" and c.receiver_dotted == model and _contains(c.node, keras_nodes)
            for c in facts.calls
        )
    function = facts.functions.get(built.dotted or "")
    if function is not None:
        return any(id(c.node) in keras_nodes for c in function.calls)
    return True
