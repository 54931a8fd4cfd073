"""RNN1xx: gradients and the optimizer."""

from __future__ import annotations

from typing import List, Optional

import libcst as cst

from rnnlint.analysis.facts import CallFact, Loop
from rnnlint.analysis.names import dotted_name
from rnnlint.analysis.recurrent import keras_model_is_recurrent
from rnnlint.analysis.training import (
    TORCH_OPTIMIZERS,
    Event,
    TrainingUnit,
    callers_context,
    guarded_by_modulo,
    is_clip,
)
from rnnlint.findings import Severity
from rnnlint.rules.base import Context, Rule, RuleMeta, rule

_KERAS_CLIP_KWARGS = ("clipnorm", "clipvalue", "global_clipnorm")
_LIGHTNING_TRAINERS = ("lightning.pytorch.Trainer", "lightning.Trainer")


def _keras_compiles(ctx: Context) -> List[CallFact]:
    """model.compile(...) calls on keras models that hold a recurrent layer."""
    if not ctx.has_recurrent("keras"):
        return []
    return [
        c for c in ctx.facts.calls
        if c.method == "compile" and c.receiver is not None and c.qualname is None
        and keras_model_is_recurrent(ctx.facts, ctx.layers, c.receiver_dotted)
    ]


def _keras_optimizer_call(ctx: Context, node: cst.BaseExpression, scope) -> Optional[CallFact]:  # type: ignore[no-untyped-def]
    """The keras optimizer constructor that `node` evaluates to, following one name."""
    if isinstance(node, cst.Name):
        values = None
        current = scope
        while current is not None and values is None:
            values = current.assigns.get(node.value)
            current = current.parent
        if not values or len(values) != 1:
            return None
        node = values[0]
    if not isinstance(node, cst.Call):
        return None
    for call in ctx.facts.calls:
        if call.node is node:
            name = call.qualname or ""
            if name.endswith("LossScaleOptimizer") and call.positional(0) is not None:
                return _keras_optimizer_call(ctx, call.positional(0), call.scope)
            if name.startswith("keras.optimizers.") or name.startswith("tensorflow.optimizers."):
                return call
            return None
    return None


@rule(
    RuleMeta(
        "RNN101",
        "no-grad-clipping",
        Severity.WARNING,
        ("torch", "keras"),
        "A recurrent model is trained and its gradients are never clipped.",
    )
)
class NoGradClipping(Rule):
    def check(self, ctx: Context) -> None:
        facts = ctx.facts
        any_clip = any(is_clip(c) for c in facts.calls) or any(
            c.method == "register_hook" for c in facts.calls
        )
        if ctx.has_recurrent("torch") and not any_clip:
            model = ctx.layers[0].label
            for unit in ctx.units:
                ctx.report(
                    unit.step.node,
                    f"{model} is trained with {unit.step.dotted}() but gradients are never clipped "
                    "(no clip_grad_norm_/clip_grad_value_ between backward() and step())",
                    unit.step.stmt,
                )
            for call in facts.calls:
                if call.qualname in _LIGHTNING_TRAINERS and not call.has_star_args:
                    if call.kwarg("gradient_clip_val") is None:
                        ctx.report(
                            call.node,
                            f"Trainer for a model with {model} is built without gradient_clip_val",
                            call.stmt,
                        )
        for compile_call in _keras_compiles(ctx):
            if compile_call.has_star_args:
                continue
            argument = compile_call.arg(0, "optimizer")
            if argument is None:
                continue
            value = ctx.evaluator.value(argument, compile_call.scope)
            if isinstance(value, str):
                ctx.report(
                    argument,
                    f"compile(optimizer={value!r}) uses the default {value} optimizer, which never "
                    "clips gradients; build it with clipnorm= (or clipvalue=, global_clipnorm=)",
                    compile_call.stmt,
                )
                continue
            optimizer = _keras_optimizer_call(ctx, argument, compile_call.scope)
            if optimizer is None or optimizer.has_star_args:
                continue
            if not any(optimizer.kwarg(k) is not None for k in _KERAS_CLIP_KWARGS):
                short = (optimizer.dotted or "optimizer").rsplit(".", 1)[-1]
                ctx.report(
                    optimizer.node,
                    f"keras optimizer {short}(...) for a recurrent model has no clipnorm, clipvalue "
                    "or global_clipnorm",
                    optimizer.stmt,
                )


def _last_before(events: List[Event], key: tuple) -> Optional[Event]:
    before = [e for e in events if e.key < key]
    return before[-1] if before else None


@rule(
    RuleMeta(
        "RNN102",
        "clip-misplaced",
        Severity.ERROR,
        ("torch",),
        "Gradient clipping placed where it cannot act (before backward, after step, or on scaled AMP gradients).",
    )
)
class ClipMisplaced(Rule):
    def check(self, ctx: Context) -> None:
        for unit in ctx.units:
            events = unit.events
            amp = any(_is_scaled_backward(e.call) for e in unit.of("backward"))
            for clip in unit.of("clip"):
                grads = [e for e in events if e.kind in ("backward", "step")]
                previous = _last_before(grads, clip.key)
                later_steps = [e for e in unit.of("step") if e.key > clip.key]
                name = clip.call.method
                if previous is None and later_steps:
                    ctx.report(
                        clip.call.node,
                        f"{name}() runs before backward(): it clips the gradients of the previous "
                        "batch (or zeros), not the ones step() applies",
                        clip.call.stmt,
                    )
                elif previous is not None and previous.kind == "step":
                    ctx.report(
                        clip.call.node,
                        f"{name}() runs after {previous.call.dotted}(): the update has already used "
                        "the unclipped gradients",
                        clip.call.stmt,
                    )
                elif amp and previous is not None:
                    unscaled = any(
                        e.kind == "unscale" and previous.key < e.key < clip.key for e in events
                    )
                    if not unscaled:
                        ctx.report(
                            clip.call.node,
                            f"{name}() under a GradScaler without scaler.unscale_(optimizer) first: "
                            "it clips the scaled gradients, so max_norm is off by the loss scale",
                            clip.call.stmt,
                        )


def _is_scaled_backward(call: CallFact) -> bool:
    receiver = call.receiver
    return isinstance(receiver, cst.Call) and isinstance(receiver.func, cst.Attribute) and receiver.func.attr.value == "scale"


@rule(
    RuleMeta(
        "RNN103",
        "missing-zero-grad",
        Severity.ERROR,
        ("torch",),
        "backward() and step() run in a loop without zero_grad(): gradients accumulate across batches.",
    )
)
class MissingZeroGrad(Rule):
    def check(self, ctx: Context) -> None:
        for unit in ctx.units:
            if unit.of("zero"):
                continue
            step = unit.step
            if step.args or guarded_by_modulo(step):
                continue  # LBFGS closure, or deliberate gradient accumulation
            loop = unit.loop
            if loop is None:
                function = unit.container
                context = callers_context(ctx.facts, function)  # type: ignore[arg-type]
                if not context or any(c.method == "zero_grad" for c in context):
                    continue
            else:
                outer_zero = any(
                    c.method == "zero_grad" for outer in loop.ancestors() for c in outer.calls
                )
                if outer_zero:
                    ctx.report(
                        step.node,
                        f"{step.dotted}() runs every batch but zero_grad() only runs in an outer "
                        "loop: gradients of earlier batches keep adding up",
                        step.stmt,
                    )
                    continue
            ctx.report(
                step.node,
                f"backward() and {step.dotted}() run in a loop with no zero_grad(): every step "
                "applies the sum of all earlier gradients",
                step.stmt,
            )


def _model_of_parameters(call: CallFact) -> Optional[str]:
    """`model` for Adam(model.parameters()) or Adam(list(model.parameters()) + ...)."""
    first = call.arg(0, "params")
    while isinstance(first, cst.Call) and dotted_name(first.func) in ("list", "filter") and first.args:
        first = first.args[-1].value
    if isinstance(first, cst.Call) and isinstance(first.func, cst.Attribute):
        if first.func.attr.value in ("parameters", "named_parameters"):
            return dotted_name(first.func.value)
    return None


def _assigned_in(ctx: Context, name: str, loop: Loop) -> bool:
    return any(a.target == name and loop.contains(a.loop) for a in ctx.facts.assigns)


@rule(
    RuleMeta(
        "RNN104",
        "optimizer-recreated",
        Severity.WARNING,
        ("torch", "keras"),
        "An optimizer is rebuilt inside the training loop (its state resets), or keras compile() runs in a loop on one model.",
    )
)
class OptimizerRecreated(Rule):
    def check(self, ctx: Context) -> None:
        facts = ctx.facts
        if not ctx.has_recurrent():
            return
        for call in facts.calls:
            loop = call.loop
            if loop is None:
                continue
            if call.qualname in TORCH_OPTIMIZERS and call.assigned_to:
                model = _model_of_parameters(call)
                if model is None or _assigned_in(ctx, model, loop):
                    continue  # a fresh model each iteration (hyper-parameter search) is fine
                steps = [
                    u.step for u in ctx.units
                    if u.step.receiver_dotted == call.assigned_to and (loop.contains(u.step.loop) or u.step.loop is loop)
                ]
                if steps:
                    short = call.qualname.rsplit(".", 1)[-1]
                    ctx.report(
                        call.node,
                        f"{short}(...) is rebuilt on every pass of the loop while {model} is not: its "
                        "moment estimates and step counts restart each time",
                        call.stmt,
                    )
            elif call.method == "compile" and call.qualname is None and call.receiver_dotted:
                model = call.receiver_dotted
                if not keras_model_is_recurrent(facts, ctx.layers, model) or _assigned_in(ctx, model, loop):
                    continue
                built_outside = any(a.target == model for a in facts.assigns)
                fits = [c for c in loop.calls if c.method == "fit" and c.receiver_dotted == model]
                if built_outside and fits:
                    ctx.report(
                        call.node,
                        f"{model}.compile() runs inside a loop on one model object built outside "
                        "it: each run continues from the previous run's weights",
                        call.stmt,
                    )
