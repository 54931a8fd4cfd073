"""Fixes of the RNN1xx rules, built by the rules in rnn1_gradients.py.

Safe:
- RNN105: `total += loss` -> `total += loss.item()` (`.detach()` where the total or list may
  be used as a tensor later, or the loss may not be a scalar).
- RNN107: `best = model.state_dict()` (or a shallow copy) -> `copy.deepcopy(model.state_dict())`.

Unsafe, RNN101 (no-grad-clipping): they change how training behaves, so they run only with
`--unsafe-fixes`. The max norm comes from RNN101's `fix-max-norm` option.

- torch: insert `torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=...)` after the
  backward() that precedes the step (under AMP after `scaler.unscale_(optimizer)`, inserting
  that call too when it is missing). Only when the model is certain: the optimizer is built
  from `model.parameters()` where the training loop can see that name, or the loop's function
  receives the optimizer and the model from call sites that all agree.
- Lightning: add gradient_clip_val to the Trainer.
- keras: add clipnorm to the optimizer constructor; an optimizer given by name
  (`optimizer="adam"`) becomes the optimizer class with clipnorm, imported when needed.
"""

from __future__ import annotations

from typing import Iterator, List, Optional, Tuple

import libcst as cst

from rnnlint.analysis.facts import CallFact, ModuleFacts, Scope
from rnnlint.analysis.names import dotted_name
from rnnlint.analysis.recurrent import RecurrentLayer
from rnnlint.analysis.training import TORCH_OPTIMIZERS, TrainingUnit, _assigned_call
from rnnlint.rules.base import Edit, Fix
from rnnlint.rules.edits import expr, name_is_free, same_body_order, spelling, statement, with_kwarg

CLIP = "torch.nn.utils.clip_grad_norm_"

# Keras optimizer identifiers (as compile() accepts them) -> class names.
KERAS_OPTIMIZERS = {
    "adam": "Adam", "adamw": "AdamW", "sgd": "SGD", "rmsprop": "RMSprop", "adagrad": "Adagrad",
    "adadelta": "Adadelta", "adamax": "Adamax", "nadam": "Nadam", "ftrl": "Ftrl", "lion": "Lion",
    "adafactor": "Adafactor",
}


def torch_fix(facts: ModuleFacts, unit: TrainingUnit, max_norm: float) -> Fix:
    return Fix(
        f"clip gradients to max_norm={max_norm!r} before {unit.step.dotted}()",
        lambda: _torch_edit(facts, unit, max_norm),
        safe=False,
    )


def trainer_fix(call: CallFact, max_norm: float) -> Fix:
    return Fix(
        f"pass gradient_clip_val={max_norm!r} to the Trainer",
        lambda: Edit(replace=((call.node, with_kwarg(call.node, "gradient_clip_val", expr(repr(max_norm)))),)),
        safe=False,
    )


def keras_constructor_fix(call: CallFact, max_norm: float) -> Fix:
    return Fix(
        f"build the optimizer with clipnorm={max_norm!r}",
        lambda: Edit(replace=((call.node, with_kwarg(call.node, "clipnorm", expr(repr(max_norm)))),)),
        safe=False,
    )


def keras_string_fix(
    facts: ModuleFacts, layers: List[RecurrentLayer], argument: cst.BaseExpression, max_norm: float
) -> Optional[Fix]:
    """compile(optimizer="adam") -> compile(optimizer=keras.optimizers.Adam(clipnorm=1.0))."""
    if not isinstance(argument, cst.SimpleString):
        return None  # a name holding the string may be used elsewhere too
    value = argument.evaluated_value
    cls = KERAS_OPTIMIZERS.get(value.lower()) if isinstance(value, str) else None
    root = _keras_root(facts, layers)
    if cls is None or root is None:
        return None

    def edit() -> Optional[Edit]:
        name = spelling(facts, [f"{root}.optimizers.{cls}"])
        imports: Tuple[Tuple[str, Optional[str]], ...] = ()
        if name is None:
            if not name_is_free(facts, cls):
                return None
            name, imports = cls, ((f"{root}.optimizers", cls),)
        return Edit(replace=((argument, expr(f"{name}(clipnorm={max_norm!r})")),), imports=imports)

    return Fix(f"use {cls}(clipnorm={max_norm!r}) instead of {value!r}", edit, safe=False)


def _keras_root(facts: ModuleFacts, layers: List[RecurrentLayer]) -> Optional[str]:
    """"tensorflow.keras" or "keras": where the file's recurrent layers come from."""
    for layer in layers:
        if layer.framework != "keras" or layer.call.dotted is None:
            continue
        head = layer.call.dotted.split(".", 1)[0]
        target = facts.aliases.get(head, "")
        if target.startswith("tensorflow"):
            return "tensorflow.keras"
        if target.startswith("keras"):
            return "keras"
    return None


def _torch_edit(facts: ModuleFacts, unit: TrainingUnit, max_norm: float) -> Optional[Edit]:
    step = unit.step
    direct = [e for e in unit.events if len(e.key) == 1]  # not inside a helper function
    backwards = [e for e in direct if e.kind == "backward" and e.key < (step.order,)]
    if not backwards:
        return None
    backward = backwards[-1].call
    scaler = _scaler_of(backward)
    if scaler is not None:
        if step.receiver_dotted != scaler or step.positional(0) is None:
            return None
        optimizer = dotted_name(step.positional(0))  # type: ignore[arg-type]
    else:
        if step.args:
            return None  # step(closure) or an unknown scaler
        optimizer = step.receiver_dotted
    if optimizer is None:
        return None
    model = _model_for(facts, optimizer, step.scope)
    clip = spelling(facts, [CLIP])
    imports: Tuple[Tuple[str, Optional[str]], ...] = ()
    if clip is None:
        if not name_is_free(facts, "torch"):
            return None
        clip, imports = CLIP, (("torch", None),)
    if model is None:
        return None
    added = []
    anchor = backward.stmt
    if scaler is not None:
        unscales = [
            e.call for e in direct
            if e.kind == "unscale" and backwards[-1].key < e.key < (step.order,) and e.call.receiver_dotted == scaler
        ]
        if unscales:
            anchor = unscales[-1].stmt
        else:
            added.append(statement(f"{scaler}.unscale_({optimizer})\n"))
    if not same_body_order(facts, anchor, step.stmt):
        return None
    added.append(statement(f"{clip}({model}.parameters(), max_norm={max_norm!r})\n"))
    return Edit(insert_after=((anchor, tuple(added)),), imports=imports)  # type: ignore[arg-type]


def _scaler_of(backward: CallFact) -> Optional[str]:
    """`scaler` for scaler.scale(loss).backward()."""
    receiver = backward.receiver
    if isinstance(receiver, cst.Call) and isinstance(receiver.func, cst.Attribute) and receiver.func.attr.value == "scale":
        return dotted_name(receiver.func.value)
    return None


def _parameters_owner(call: CallFact) -> Optional[str]:
    """`model` for Adam(model.parameters()) (also through list(...) or filter(..., ...))."""
    first = call.arg(0, "params")
    while isinstance(first, cst.Call) and dotted_name(first.func) in ("list", "filter") and first.args:
        first = first.args[-1].value
    if isinstance(first, cst.Call) and isinstance(first.func, cst.Attribute):
        if first.func.attr.value == "parameters" and not first.args:
            return dotted_name(first.func.value)
    return None


def _model_for(facts: ModuleFacts, optimizer: str, scope: Scope) -> Optional[str]:
    """The name, valid where the step runs, of the model whose parameters `optimizer` updates."""
    built = _assigned_call(facts, optimizer, scope)
    if built is not None:
        if built.qualname not in TORCH_OPTIMIZERS:
            return None
        model = _parameters_owner(built)
        if model is None:
            return None
        if model.startswith("self."):
            cls = scope.enclosing_class
            return model if cls is not None and cls is built.scope.enclosing_class else None
        if built.scope is scope:
            return model
        if built.scope.kind == "module" and not _shadowed(model.split(".", 1)[0], scope):
            return model
        return None
    return _model_from_call_sites(facts, optimizer, scope)


def _shadowed(name: str, scope: Scope) -> bool:
    current: Optional[Scope] = scope
    while current is not None and current.kind != "module":
        if name in current.params or name in current.assigns:
            return True
        current = current.parent
    return False


def _model_from_call_sites(facts: ModuleFacts, optimizer: str, function: Scope) -> Optional[str]:
    """`def train(model, opt): ... opt.step()` called as train(net, Adam(net.parameters()))
    or with an optimizer variable built so: the parameter that receives the model, when every
    call site agrees."""
    if function.kind != "function" or function.parent is None or function.parent.kind != "module":
        return None
    if optimizer not in function.params or optimizer in function.assigns:
        return None
    index = function.param_order.index(optimizer)
    answers = set()
    for call in _calls_of(facts, function):
        given = call.arg(index, optimizer)
        built: Optional[CallFact] = None
        if isinstance(given, cst.Call):
            built = next((c for c in facts.calls if c.node is given), None)
        elif given is not None and dotted_name(given) is not None:
            built = _assigned_call(facts, dotted_name(given), call.scope)  # type: ignore[arg-type]
            if built is not None and built.scope is not call.scope and built.scope.kind != "module":
                return None
        if built is None or built.qualname not in TORCH_OPTIMIZERS:
            return None
        model = _parameters_owner(built)
        receiving = [
            name for i, name in enumerate(function.param_order)
            if model is not None and dotted_name(call.arg(i, name) or cst.Name("_")) == model
        ]
        if len(receiving) != 1:
            return None
        answers.add(receiving[0])
    if len(answers) != 1:
        return None
    model = answers.pop()
    return None if model in function.assigns else model


def _calls_of(facts: ModuleFacts, function: Scope) -> Iterator[CallFact]:
    for call in facts.calls:
        if call.dotted == function.name and not call.has_star_args:
            yield call


def loss_value_fix(facts: ModuleFacts, node: cst.BaseExpression, total: str, how: str) -> Optional[Fix]:
    """`total += loss` -> `total += loss.item()`. `.item()` turns the total into a Python
    number; where that could break later code (the total or the list is used as a tensor:
    total.cpu(), torch.stack(losses); or a loss with reduction= may not be a scalar),
    `.detach()` frees the graph and keeps a tensor."""
    if not isinstance(node, (cst.Name, cst.Attribute, cst.Call)):
        return None
    tensor_use = any(
        call.receiver_dotted == total
        or (call.qualname or "").startswith("torch.") and any(dotted_name(a.value) == total for a in call.args)
        or call.kwarg("reduction") is not None
        for call in facts.calls
    )
    method = "detach" if tensor_use else "item"
    return Fix(
        f"add .{method}() to the loss in the running total",
        lambda: Edit(replace=((node, cst.Call(func=cst.Attribute(value=node, attr=cst.Name(method)))),)),
    )


def deepcopy_fix(facts: ModuleFacts, value: cst.BaseExpression, owner: str) -> Fix:
    """best = model.state_dict() -> best = copy.deepcopy(model.state_dict())."""

    def edit() -> Optional[Edit]:
        deepcopy = spelling(facts, ["copy.deepcopy"])
        imports: Tuple[Tuple[str, Optional[str]], ...] = ()
        if deepcopy is None:
            if not name_is_free(facts, "copy"):
                return None
            deepcopy, imports = "copy.deepcopy", (("copy", None),)
        return Edit(replace=((value, expr(f"{deepcopy}({owner}.state_dict())")),), imports=imports)

    return Fix(f"keep copy.deepcopy({owner}.state_dict())", edit)
