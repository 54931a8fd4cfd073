"""RNN4xx: dropout."""

from __future__ import annotations

import re
from typing import Dict, List, Optional

import libcst as cst

from rnnlint.analysis.epochs import KERAS_FIT_METHODS
from rnnlint.analysis.modes import (
    DROPOUT_MODULES,
    dropout_classes,
    eval_mode_before,
    evaluation_uses,
    instance_class,
    is_eval_call,
    is_train_call,
    loops_calling,
)
from rnnlint.analysis.names import dotted_name
from rnnlint.analysis.state_flow import expanded_calls, local_function

from rnnlint.analysis.facts import CallFact, ModuleFacts, Scope
from rnnlint.analysis.names import resolve
from rnnlint.analysis.recurrent import RecurrentLayer
from rnnlint.analysis.values import known
from rnnlint.findings import Severity
from rnnlint.rules.base import Context, Edit, Fix, Rule, RuleMeta, rule
from rnnlint.rules.edits import expr, keyword_arg, self_name, with_kwarg, without_arg

FUNCTIONAL_DROPOUT = frozenset(
    "torch.nn.functional." + n
    for n in ("dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout", "feature_alpha_dropout")
)


@rule(
    RuleMeta(
        "RNN401",
        "dropout-single-layer",
        Severity.WARNING,
        ("torch",),
        "nn.RNN/LSTM/GRU with dropout > 0 and num_layers=1: PyTorch applies it only between layers, so it does nothing.",
    )
)
class DropoutSingleLayer(Rule):
    def check(self, ctx: Context) -> None:
        for layer in ctx.layers:
            if layer.framework != "torch" or layer.cell:
                continue
            dropout, layers = layer.get("dropout"), layer.get("num_layers")
            if not (known(dropout) and known(layers)):
                continue
            if isinstance(dropout, (int, float)) and dropout > 0 and layers == 1:
                ctx.report(
                    layer.call.node,
                    f"{layer.label}(dropout={dropout!r}, num_layers=1): PyTorch applies this dropout "
                    "only between stacked layers, so with one layer it does nothing; add nn.Dropout "
                    "on the output or use num_layers >= 2",
                    layer.call.stmt,
                    fix=_drop_dropout_fix(layer, dropout),
                )


def _drop_dropout_fix(layer: RecurrentLayer, dropout: object) -> Optional[Fix]:
    """Remove the dropout argument, but only where num_layers=1 is written in the code (or left
    to its default): a num_layers that comes from a setting may be raised at run time, and then
    the dropout would act."""
    call = layer.call.node
    num_layers = layer.call.arg(2, "num_layers")
    if num_layers is not None and not (isinstance(num_layers, cst.Integer) and num_layers.value == "1"):
        return None
    arg = keyword_arg(call, "dropout")
    if arg is None:
        # Given by position: removable only as the very last argument.
        index = {"RNN": 6}.get(layer.kind, 5)
        last = call.args[-1] if call.args else None
        if last is None or last.keyword is not None or last.value is not layer.call.positional(index):
            return None
        arg = last
    return Fix(f"remove dropout={dropout!r}, which does nothing with num_layers=1", Edit(replace=((call, without_arg(call, arg)),)))


@rule(
    RuleMeta(
        "RNN402",
        "functional-dropout-always-on",
        Severity.ERROR,
        ("torch",),
        "F.dropout in forward() without training=self.training stays on at evaluation time.",
    )
)
class FunctionalDropoutAlwaysOn(Rule):
    def check(self, ctx: Context) -> None:
        for call in ctx.facts.calls:
            if call.qualname not in FUNCTIONAL_DROPOUT:
                continue
            scope = call.scope
            if not scope.is_method() or call.has_star_args:
                continue
            training = call.arg(2, "training")
            name = call.qualname.rsplit(".", 1)[-1]
            where = f"F.{name}() in {scope.parent.name}.{scope.name}()"  # type: ignore[union-attr]
            if training is None:
                problem = "has no training= argument: it defaults to training=True"
            elif isinstance(training, cst.Name) and training.value == "True":
                problem = "passes training=True"
            else:
                continue  # training=self.training, or a flag the author controls
            ctx.report(
                call.node,
                f"{where} {problem}, so dropout stays on after model.eval(); pass "
                "training=self.training or use nn.Dropout",
                call.stmt,
                fix=_training_fix(ctx.facts, call, training),
            )


def _training_fix(facts: ModuleFacts, call: CallFact, training: Optional[cst.BaseExpression]) -> Optional[Fix]:
    me = self_name(call.scope)
    if me is None or not _is_torch_module(facts, call.scope.parent, 0):
        return None  # self.training exists only on an nn.Module

    def edit() -> Edit:
        value = expr(f"{me}.training")
        if training is None:
            return Edit(replace=((call.node, with_kwarg(call.node, "training", value)),))
        return Edit(replace=((training, value),))

    return Fix(f"pass training={me}.training", edit)


def _is_torch_module(facts: ModuleFacts, cls: Optional[Scope], depth: int) -> bool:
    """Whether the class derives from a torch.nn class (or a LightningModule), directly or
    through classes of this file."""
    if cls is None or cls.kind != "class" or depth > 5:
        return False
    for base in cls.bases:
        name = resolve(base, facts.aliases) or ""
        if name.startswith("torch.nn.") and name.rsplit(".", 1)[-1][:1].isupper():
            return True
        if name.startswith("lightning.pytorch.") and name.endswith("LightningModule"):
            return True
        if base in facts.classes and _is_torch_module(facts, facts.classes[base], depth + 1):
            return True
    return False


# -- evaluation in training mode (RNN403) ------------------------------------------------------


@rule(
    RuleMeta(
        "RNN403",
        "eval-mode-missing",
        Severity.WARNING,
        ("torch",),
        "A model with dropout is evaluated without model.eval(), or eval() in the epoch loop is never undone by train().",
    )
)
class EvalModeMissing(Rule):
    def check(self, ctx: Context) -> None:
        facts = ctx.facts
        classes = dropout_classes(facts, ctx.evaluator, ctx.layers)
        if not classes:
            return
        reported = set()
        for use in evaluation_uses(facts, ctx.evaluator, ctx.layers):
            key = (id(use.call.scope), use.how)
            if key in reported:
                continue
            if eval_mode_before(facts, use.call.scope, use.call.order) is not False:
                continue
            reported.add(key)
            ctx.report(
                use.call.node,
                f"{use.model}(...) {use.how} runs in training mode: {classes[use.cls]} in {use.cls} is "
                f"still active (call {use.model}.eval() first)",
                use.call.stmt,
            )
        self._never_undone(ctx, classes)

    def _never_undone(self, ctx: Context, classes) -> None:  # type: ignore[no-untyped-def]
        facts = ctx.facts
        for call in facts.calls:
            if not is_eval_call(call) or call.has_star_args:
                continue
            receiver = dotted_name(call.receiver) if call.receiver is not None else None
            if receiver is None or instance_class(facts, receiver, call.scope) not in classes:
                continue
            loops = [call.loop] if call.loop is not None else (
                loops_calling(facts, call.scope) if call.scope.kind == "function" else []
            )
            for loop in loops:
                epoch = _training_ancestor(facts, loop)
                if epoch is None:
                    continue
                if any(is_train_call(c) for c in expanded_calls(facts, epoch.calls)):
                    continue
                ctx.report(
                    call.node,
                    f"{receiver}.eval() runs inside the training loop and no {receiver}.train() in that "
                    "loop undoes it: from the second epoch on the model trains with dropout off; call "
                    f"{receiver}.train() at the start of each epoch",
                    call.stmt,
                )
                break


def _training_ancestor(facts, loop):  # type: ignore[no-untyped-def]
    """The innermost loop around (or equal to) `loop` that runs backward() and step()."""
    for candidate in loop.ancestors():
        calls = list(expanded_calls(facts, candidate.calls))
        if any(c.method == "backward" for c in calls) and any(c.method == "step" for c in calls):
            return candidate
    return None


# -- dropout on the output (RNN404) -----------------------------------------------------------

_OUTPUT_WRAPPERS = frozenset({"view", "reshape", "squeeze", "unsqueeze", "flatten", "contiguous", "permute", "transpose"})
_ACTIVATIONS = frozenset(
    {"torch.sigmoid", "torch.softmax", "torch.log_softmax", "torch.tanh",
     "torch.nn.functional.softmax", "torch.nn.functional.log_softmax", "torch.nn.functional.sigmoid"}
)
_NOT_A_HEAD_CLASS = re.compile(r"encoder|embed|block|layer|cell|attention|highway|residual", re.I)
_KERAS_DROPOUT = frozenset({"keras.layers.Dropout", "keras.layers.GaussianDropout", "keras.layers.AlphaDropout"})
_KERAS_DENSE = frozenset({"keras.layers.Dense"})
_KERAS_TRAILING = frozenset({"keras.layers.Activation", "keras.layers.Softmax"})
_KERAS_MODEL = frozenset({"keras.Model", "keras.models.Model"})


def _report_output_dropout(ctx: Context, model: str, dropout: CallFact, prev: Optional[CallFact],
                           at: CallFact) -> None:
    """RNN404 for keras: `dropout` is the model's output layer; `prev` the layer it follows;
    reported at `at` (the layer in a Sequential list, its application in the functional API)."""
    after = "the last Dense layer" if prev is not None and prev.qualname in _KERAS_DENSE else "the last layer"
    rate = ctx.evaluator.value(dropout.arg(0, "rate"), dropout.scope)
    share = f"{rate:.0%} of " if isinstance(rate, float) and known(rate) else ""
    ctx.report(
        at.node,
        f"Dropout is the output layer of {model}: it zeroes {share}the outputs of {after} at random "
        "during training; put it before the final Dense layer",
        at.stmt,
    )


def _bound_modules(cls, calls, wanted) -> Dict[str, CallFact]:  # type: ignore[no-untyped-def]
    """self.<attr> -> the constructor call, for attributes built from one of `wanted`."""
    out: Dict[str, CallFact] = {}
    for method in cls.methods.values():
        for call in method.calls:
            if call.qualname in wanted and call.assigned_to and call.assigned_to.startswith("self."):
                out[call.assigned_to] = call
    return out


@rule(
    RuleMeta(
        "RNN404",
        "dropout-on-logits",
        Severity.WARNING,
        ("torch", "keras"),
        "Dropout applied to the final layer's output (the logits or predictions).",
    )
)
class DropoutOnLogits(Rule):
    def check(self, ctx: Context) -> None:
        if ctx.has_recurrent("torch"):
            self._torch(ctx)
        if ctx.has_recurrent("keras"):
            self._keras(ctx)

    # torch: return self.dropout(self.fc(h))
    def _torch(self, ctx: Context) -> None:
        facts = ctx.facts
        nested = {c.dotted for s in facts.classes.values() for m in s.methods.values() for c in m.calls}
        calls_by_node = {id(c.node): c for c in facts.calls}
        for name, cls in facts.classes.items():
            forward = cls.methods.get("forward")
            if forward is None or name in nested or _NOT_A_HEAD_CLASS.search(name):
                continue
            dropouts = _bound_modules(cls, None, DROPOUT_MODULES)
            linears = _bound_modules(cls, None, frozenset({"torch.nn.Linear"}))
            if not linears:
                continue
            for ret in forward.returns:
                outputs = [e.value for e in ret.elements] if isinstance(ret, cst.Tuple) else [ret]
                for output in outputs[:1]:
                    node, limit = self._unwrap(ctx, output, forward, calls_by_node)
                    dropout = calls_by_node.get(id(node)) if isinstance(node, cst.Call) else None
                    if dropout is None:
                        continue
                    if dropout.dotted in dropouts:
                        made = dropouts[dropout.dotted]
                    elif dropout.qualname in FUNCTIONAL_DROPOUT:
                        made = dropout
                    else:
                        continue
                    inner = dropout.positional(0) or dropout.kwarg("input")
                    if inner is None:
                        continue
                    head, _ = self._unwrap(ctx, inner, forward, calls_by_node, activations=False, limit=limit)
                    head_call = calls_by_node.get(id(head)) if isinstance(head, cst.Call) else None
                    if head_call is None or head_call.dotted not in linears:
                        continue
                    p = ctx.evaluator.value(made.arg(0 if made is not dropout else 1, "p"), made.scope)
                    share = f"{p:.0%} of " if isinstance(p, float) and known(p) else ""
                    ctx.report(
                        dropout.node,
                        f"{ctx.facts.module.code_for_node(dropout.node.func)}(...) drops {share}the output of "
                        f"{head_call.dotted}, the last layer of {name}.forward: the logits/predictions are "
                        f"zeroed at random; apply dropout to the features before {head_call.dotted}",
                        dropout.stmt,
                    )

    def _unwrap(self, ctx, node, scope, calls_by_node, activations=True, limit=None):  # type: ignore[no-untyped-def]
        """Follow names back to what they hold, and peel reshapes (and activations) off."""
        for _ in range(6):
            if isinstance(node, cst.Name):
                assigns = [
                    a for a in ctx.facts.assigns
                    if a.scope is scope and a.target == node.value and (limit is None or a.order < limit)
                ]
                if not assigns or assigns[-1].unpack_index is not None or assigns[-1].aug_op is not None:
                    return node, limit
                node, limit = assigns[-1].value, assigns[-1].order
                continue
            if isinstance(node, cst.Call):
                func = node.func
                if isinstance(func, cst.Attribute) and func.attr.value in _OUTPUT_WRAPPERS:
                    node = func.value
                    continue
                call = calls_by_node.get(id(node))
                if activations and call is not None and call.qualname in _ACTIVATIONS and call.args:
                    node = call.args[0].value
                    continue
            return node, limit
        return node, limit

    # keras: Sequential([..., Dense(n), Dropout(p)])
    def _keras(self, ctx: Context) -> None:
        self._keras_functional(ctx)
        self._keras_sequential(ctx)

    # keras functional API: outputs = Dropout(p)(Dense(n)(x)); Model(inputs, outputs)
    def _keras_functional(self, ctx: Context) -> None:
        facts = ctx.facts
        calls_by_node = {id(c.node): c for c in facts.calls}
        compiled = {c.receiver_dotted for c in facts.calls if c.method == "compile" or c.method in KERAS_FIT_METHODS}
        for call in facts.calls:
            if call.qualname not in _KERAS_MODEL or call.has_star_args:
                continue
            model = self._compiled_model_name(facts, call, compiled)
            if model is None:
                continue
            given = call.kwarg("outputs") or call.kwarg("output") or call.positional(1)
            if given is None:
                continue
            given, limit = self._keras_value(facts, given, call.scope, call.order)
            outputs = [e.value for e in given.elements] if isinstance(given, (cst.List, cst.Tuple)) else [given]
            for output in outputs:
                self._keras_output(ctx, model, output, call.scope, limit, calls_by_node)

    @staticmethod
    def _compiled_model_name(facts: ModuleFacts, call: CallFact, compiled) -> Optional[str]:  # type: ignore[no-untyped-def]
        """The name the model is compiled or fit under: the name it is assigned to, or, for a
        builder function that returns it, the name a call of that builder is assigned to."""
        if call.assigned_to is not None:
            if call.assigned_to in compiled:
                return call.assigned_to
            name = call.assigned_to
        else:
            name = None
        scope = call.scope
        if scope.kind != "function":
            return None
        returned = any(
            r is call.node or (name is not None and isinstance(r, cst.Name) and r.value == name) for r in scope.returns
        )
        if not returned:
            return None
        for site in facts.calls:
            if site.assigned_to in compiled and local_function(facts, site) is scope:
                return site.assigned_to
        return None

    @staticmethod
    def _keras_value(facts: ModuleFacts, node, scope: Scope, limit: int):  # type: ignore[no-untyped-def]
        """Follow a local name back to the expression last assigned to it before `limit`."""
        for _ in range(8):
            if not isinstance(node, cst.Name):
                break
            assigns = [a for a in facts.assigns if a.scope is scope and a.target == node.value and a.order < limit]
            if not assigns or assigns[-1].unpack_index is not None or assigns[-1].aug_op is not None:
                break
            node, limit = assigns[-1].value, assigns[-1].order
        return node, limit

    def _keras_layer(self, facts: ModuleFacts, node, scope: Scope, limit: int, calls_by_node):  # type: ignore[no-untyped-def]
        """For a layer application `Layer(...)(x)` (or `layer(x)` with `layer = Layer(...)`):
        the layer's constructor call and the applied input; (None, None) otherwise."""
        if not isinstance(node, cst.Call) or len(node.args) != 1 or node.args[0].keyword is not None:
            return None, None
        func, _ = self._keras_value(facts, node.func, scope, limit)
        layer = calls_by_node.get(id(func)) if isinstance(func, cst.Call) else None
        if layer is None or not (layer.qualname or "").startswith("keras.layers."):
            return None, None
        return layer, node.args[0].value

    def _keras_output(self, ctx: Context, model: str, output, scope: Scope, limit: int, calls_by_node) -> None:  # type: ignore[no-untyped-def]
        facts = ctx.facts
        node, limit = self._keras_value(facts, output, scope, limit)
        layer, inner = self._keras_layer(facts, node, scope, limit, calls_by_node)
        while layer is not None and layer.qualname in _KERAS_TRAILING:
            node, limit = self._keras_value(facts, inner, scope, limit)
            layer, inner = self._keras_layer(facts, node, scope, limit, calls_by_node)
        if layer is None or layer.qualname not in _KERAS_DROPOUT:
            return
        applied = calls_by_node.get(id(node))
        before, _ = self._keras_layer(facts, self._keras_value(facts, inner, scope, limit)[0], scope, limit, calls_by_node)
        if applied is None or before is None or before.qualname in _KERAS_DROPOUT:
            return  # dropout on the model's input, or on something that is not a layer's output
        _report_output_dropout(ctx, model, layer, before, applied)

    def _keras_sequential(self, ctx: Context) -> None:
        facts = ctx.facts
        calls_by_node = {id(c.node): c for c in facts.calls}
        compiled = {c.receiver_dotted for c in facts.calls if c.method == "compile" or c.method in KERAS_FIT_METHODS}
        for call in facts.calls:
            if not (call.qualname or "").endswith("Sequential"):
                continue
            model = call.assigned_to
            if model is None or model not in compiled:
                continue
            layers: List[CallFact] = []
            listed = call.arg(0, "layers")
            if isinstance(listed, (cst.List, cst.Tuple)):
                for element in listed.elements:
                    layer = calls_by_node.get(id(element.value))
                    if layer is None:
                        break
                    layers.append(layer)
                else:
                    listed = None
                if listed is not None:
                    continue  # a list element that is not a layer call: cannot tell the order
            adds = [c for c in facts.calls if c.method == "add" and c.receiver_dotted == model and c.scope is call.scope]
            for add in adds:
                layer = calls_by_node.get(id(add.positional(0))) if add.positional(0) is not None else None
                if layer is None:
                    layers = []
                    break
                layers.append(layer)
            while layers and layers[-1].qualname in _KERAS_TRAILING:
                layers.pop()
            if len(layers) < 2 or layers[-1].qualname not in _KERAS_DROPOUT:
                continue
            last = layers[-1]
            before = [l for l in layers[:-1] if l.qualname not in _KERAS_DROPOUT]
            _report_output_dropout(ctx, model, last, before[-1] if before else None, last)
