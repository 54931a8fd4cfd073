"""Name resolution without libcst's scope machinery.

rnnlint records the dotted text of every name it cares about during its one
walk ("nn.LSTM", "tf.keras.layers.GRU") and resolves it through the module's
import aliases afterwards. Spellings of one object are folded into a canonical
form so that rules compare against one name:

- tensorflow.keras.X, tf.keras.X, tensorflow.python.keras.X -> keras.X
- keras.src.layers..., keras.layers.recurrent... -> keras.layers.<Name>
- torch.nn.modules.rnn.LSTM -> torch.nn.LSTM
- pytorch_lightning.X -> lightning.pytorch.X
"""

from __future__ import annotations

from typing import Callable, Dict, Optional, Sequence, Set

import libcst as cst

_PREFIX_FOLDS = (
    ("tensorflow.python.keras.", "keras."),
    ("tensorflow.keras.", "keras."),
    ("tf_keras.", "keras."),
    ("keras_core.", "keras."),  # Keras 3 before its release under the keras name
    ("keras.src.", "keras."),
    ("pytorch_lightning.", "lightning.pytorch."),
    ("lightning.pytorch.", "lightning.pytorch."),
)

_KERAS_LAYER_MODULES = (
    "keras.layers.recurrent.",
    "keras.layers.recurrent_v2.",
    "keras.layers.rnn.",
    "keras.layers.core.",
    "keras.layers.wrappers.",
    "keras.layers.convolutional_recurrent.",
)

_TORCH_FOLDS = (
    ("torch.nn.modules.rnn.", "torch.nn."),
    ("torch.nn.modules.dropout.", "torch.nn."),
    ("torch.nn.modules.linear.", "torch.nn."),
    ("torch.nn.modules.loss.", "torch.nn."),
    ("torch.nn.modules.sparse.", "torch.nn."),
    ("torch.nn.utils.clip_grad.", "torch.nn.utils."),
    ("torch.optim.adam.", "torch.optim."),
    ("torch.optim.adamw.", "torch.optim."),
    ("torch.optim.sgd.", "torch.optim."),
)


def canonical(name: str) -> str:
    for old, new in _PREFIX_FOLDS:
        if name.startswith(old):
            name = new + name[len(old):]
            break
    if name.startswith("keras.layers."):
        for module in _KERAS_LAYER_MODULES:
            if name.startswith(module):
                name = "keras.layers." + name[len(module):]
                break
        # keras.layers.rnn.lstm.LSTM (keras 3 internal module paths)
        parts = name.split(".")
        if len(parts) > 3 and parts[-2].islower():
            name = "keras.layers." + parts[-1]
    elif name.startswith("torch."):
        for old, new in _TORCH_FOLDS:
            if name.startswith(old):
                name = new + name[len(old):]
                break
    return name


def dotted_name(node: cst.CSTNode) -> Optional[str]:
    """"a.b.c" for a Name/Attribute chain, else None."""
    parts = []
    while isinstance(node, cst.Attribute):
        parts.append(node.attr.value)
        node = node.value
    if isinstance(node, cst.Name):
        parts.append(node.value)
        return ".".join(reversed(parts))
    return None


def resolve(dotted: Optional[str], aliases: Dict[str, str]) -> Optional[str]:
    """Qualified, canonical name of a dotted expression, if its head is imported."""
    if not dotted:
        return None
    head, _, rest = dotted.partition(".")
    base = aliases.get(head)
    if base is None:
        return None
    full = base + "." + rest if rest else base
    return canonical(full)


def names_in(
    node: cst.CSTNode,
    out: Optional[Set[str]] = None,
    prune: Optional[Callable[[cst.CSTNode], Optional[Sequence[cst.CSTNode]]]] = None,
) -> Set[str]:
    """Every dotted name (and each of its prefixes) mentioned in an expression. `prune(node)`
    may return the children to visit instead of the node's own (an empty list skips it)."""
    from rnnlint.analysis.walker import iter_children  # the walker imports this module

    found: Set[str] = set() if out is None else out
    stack = [node]
    while stack:
        current = stack.pop()
        if prune is not None:
            instead = prune(current)
            if instead is not None:
                stack.extend(instead)
                continue
        dotted = dotted_name(current)
        if dotted is not None:
            parts = dotted.split(".")
            for i in range(1, len(parts) + 1):
                found.add(".".join(parts[:i]))
            continue
        if isinstance(current, cst.Attribute):
            stack.append(current.value)
            continue
        stack.extend(iter_children(current))
    return found
