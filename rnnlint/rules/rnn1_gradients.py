"""RNN1xx: gradients and the optimizer."""

from __future__ import annotations

import re
from typing import List, Optional, Set, Tuple

import libcst as cst

from rnnlint.analysis.epochs import (
    KERAS_FIT_METHODS,
    assign_node,
    assigned_value,
    calls_by_node,
    dotted_in,
    no_grad_statements,
    trains_after,
)
from rnnlint.analysis.facts import AssignFact, CallFact, Loop, Scope
from rnnlint.analysis.names import dotted_name, resolve
from rnnlint.analysis.values import known
from rnnlint.analysis.training import (
    TORCH_OPTIMIZERS,
    Event,
    TrainingUnit,
    callers_context,
    guarded_by_modulo,
    is_clip,
)
from rnnlint.findings import Severity
from rnnlint.rules import rnn1_fixes
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
        and ctx.keras_model_is_recurrent(c.receiver_dotted)
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
        options={"fix-max-norm": 1.0},  # max norm that --unsafe-fixes clips to
    )
)
class NoGradClipping(Rule):
    def check(self, ctx: Context) -> None:
        facts = ctx.facts
        any_clip = any(is_clip(c) for c in facts.calls) or any(
            c.method == "register_hook" for c in facts.calls
        )
        max_norm = ctx.option("fix-max-norm")
        if ctx.has_recurrent("torch") and not any_clip:
            model = ctx.model_label("torch")
            for unit in ctx.units:
                ctx.report(
                    unit.step.node,
                    f"{model} is trained with {unit.step.dotted}() but gradients are never clipped "
                    "(no clip_grad_norm_/clip_grad_value_ between backward() and step())",
                    unit.step.stmt,
                    fix=rnn1_fixes.torch_fix(facts, unit, max_norm),
                )
            for call in facts.calls:
                if call.qualname in _LIGHTNING_TRAINERS and not call.has_star_args:
                    if call.kwarg("gradient_clip_val") is None:
                        ctx.report(
                            call.node,
                            f"Trainer for a model with {model} is built without gradient_clip_val",
                            call.stmt,
                            fix=rnn1_fixes.trainer_fix(call, max_norm),
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
                    fix=rnn1_fixes.keras_string_fix(facts, ctx.layers, argument, max_norm),
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
                    fix=rnn1_fixes.keras_constructor_fix(optimizer, max_norm),
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
                if not ctx.keras_model_is_recurrent(model) or _assigned_in(ctx, model, loop):
                    continue
                built_outside = any(a.target == model for a in facts.assigns)
                fits = [c for c in loop.calls if c.method in KERAS_FIT_METHODS and c.receiver_dotted == model]
                if built_outside and fits:
                    ctx.report(
                        call.node,
                        f"{model}.compile() runs inside a loop on one model object built outside "
                        "it: each run continues from the previous run's weights",
                        call.stmt,
                    )


# -- RNN105 loss-graph-accumulated --------------------------------------------------------

_TORCH_LOSS_FUNCTIONS = frozenset(
    {
        "mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss", "cross_entropy", "nll_loss",
        "binary_cross_entropy", "binary_cross_entropy_with_logits", "kl_div", "ctc_loss",
        "poisson_nll_loss", "gaussian_nll_loss", "cosine_embedding_loss", "margin_ranking_loss",
        "hinge_embedding_loss", "multilabel_margin_loss", "multilabel_soft_margin_loss",
        "multi_margin_loss", "soft_margin_loss", "triplet_margin_loss",
    }
)
_CRITERION_NAME = re.compile(
    r"^(criterion|criterion_?\w*|\w+_criterion|loss_fn|loss_func|loss_function|lossfn|loss_fcn|"
    r"loss_object|loss_module|\w+_loss_fn)$",
    re.I,
)
# Tensor methods whose result still carries the graph: `total += loss.mean()`.
_GRAPH_KEEPING = frozenset({"mean", "sum", "cpu", "cuda", "to", "clone", "squeeze", "view", "reshape", "float", "double", "contiguous"})


def _loss_module_names(ctx: Context) -> Set[str]:
    cached = ctx.facts.cache.get("rnn105.loss_modules")
    if cached is None:
        cached = {
            c.assigned_to for c in ctx.facts.calls
            if c.assigned_to and c.qualname and c.qualname.startswith("torch.nn.") and c.qualname.endswith("Loss")
        }
        ctx.facts.cache["rnn105.loss_modules"] = cached
    return cached  # type: ignore[return-value]


def _is_loss_call(ctx: Context, node: cst.BaseExpression) -> bool:
    """criterion(out, y), nn.MSELoss()(out, y), F.mse_loss(out, y) and arithmetic on them."""
    if isinstance(node, cst.BinaryOperation):
        return _is_loss_call(ctx, node.left) or _is_loss_call(ctx, node.right)
    if not isinstance(node, cst.Call):
        return False
    dotted = dotted_name(node.func)
    if dotted is None:
        inner = node.func
        if isinstance(inner, cst.Call):  # nn.MSELoss()(out, y)
            name = resolve(dotted_name(inner.func), ctx.facts.aliases) or ""
            return name.startswith("torch.nn.") and name.endswith("Loss")
        return False
    qualname = resolve(dotted, ctx.facts.aliases) or ""
    if qualname.startswith("torch.nn.functional.") and qualname.rsplit(".", 1)[-1] in _TORCH_LOSS_FUNCTIONS:
        return True
    if dotted in _loss_module_names(ctx):
        return True
    return bool(_CRITERION_NAME.match(dotted.rsplit(".", 1)[-1]))


def _graph_operands(ctx: Context, node: cst.BaseExpression) -> List[Tuple[cst.BaseExpression, Optional[str]]]:
    """Parts of an added expression that may be a loss tensor: (node to report, name or None
    for a loss call written inline). `.item()`, `.detach()`, float() and the like end the search."""
    if isinstance(node, (cst.Name, cst.Attribute)):
        name = dotted_name(node)
        if name is None or (isinstance(node, cst.Attribute) and node.attr.value in ("data", "grad")):
            return []
        return [(node, name)]
    if isinstance(node, cst.BinaryOperation) and isinstance(
        node.operator, (cst.Add, cst.Subtract, cst.Multiply, cst.Divide)
    ):
        return _graph_operands(ctx, node.left) + _graph_operands(ctx, node.right)
    if isinstance(node, cst.Call):
        func = node.func
        if isinstance(func, cst.Attribute) and func.attr.value in _GRAPH_KEEPING:
            receiver = dotted_name(func.value)
            if receiver is not None:
                return [(node, receiver)]
            return []
        if _is_loss_call(ctx, node):
            return [(node, None)]
    return []


def _grad_sinks(ctx: Context, scope: Scope, with_returns: bool) -> Set[str]:
    """Names whose value flows into backward() (and, with_returns, into a return value)."""
    key = f"rnn105.sinks.{id(scope)}.{with_returns}"
    cached = ctx.facts.cache.get(key)
    if cached is not None:
        return cached  # type: ignore[return-value]
    sinks: Set[str] = set()
    for call in scope.calls:
        if call.method == "backward" or call.method in ("grad", "minimize", "manual_backward"):
            if call.receiver is not None and call.method == "backward":
                sinks |= dotted_in(call.receiver)
            for arg in call.args:
                sinks |= dotted_in(arg.value)
    if with_returns:
        for value in scope.returns:
            sinks |= dotted_in(value)
    changed = True
    assigns = [a for a in ctx.facts.assigns if a.scope is scope]
    while changed:
        changed = False
        for assign in assigns:
            if assign.target in sinks:
                new = dotted_in(assign.value) - sinks
                if new:
                    sinks |= new
                    changed = True
    ctx.facts.cache[key] = sinks
    return sinks


def _graph_evidence(ctx: Context, name: str, scope: Scope, order: int) -> Optional[str]:
    """Why `name`, read at `order`, holds a loss tensor with its graph: "backward" when
    backward() is called on the value it last received, "loss" when that value is a loss call
    in a function that trains; None when neither is known."""
    prior = [a for a in ctx.facts.assigns if a.target == name and a.scope is scope and a.order < order]
    if not prior:
        return None
    last = prior[-1]
    for call in scope.calls:
        if call.order <= last.order or call.method != "backward":
            continue
        if call.receiver is not None and name in dotted_in(call.receiver):
            return "backward"
        if any(name in dotted_in(a.value) for a in call.args):
            return "backward"  # accelerator.backward(loss)
    value = assigned_value(last) if last.aug_op is None else None
    if value is not None and _is_loss_call(ctx, value) and _scope_trains(ctx, scope):
        return "loss"
    return None


def _scope_trains(ctx: Context, scope: Scope) -> bool:
    return any(u.step.scope is scope for u in ctx.units)


@rule(
    RuleMeta(
        "RNN105",
        "loss-graph-accumulated",
        Severity.WARNING,
        ("torch",),
        "A running total adds the loss tensor itself (total += loss), keeping every step's autograd graph alive.",
    )
)
class LossGraphAccumulated(Rule):
    def check(self, ctx: Context) -> None:
        facts = ctx.facts
        candidates: List[Tuple[str, cst.BaseExpression, Scope, int, cst.CSTNode, str]] = []
        for assign in facts.assigns:
            if assign.aug_op == "AddAssign":
                candidates.append((assign.target, assign.value, assign.scope, assign.order, assign.stmt, "+="))
            elif assign.aug_op is None and assign.unpack_index is None:
                value = assign.value
                if isinstance(value, cst.BinaryOperation) and isinstance(value.operator, cst.Add):
                    if dotted_name(value.left) == assign.target:
                        candidates.append((assign.target, value.right, assign.scope, assign.order, assign.stmt, "+"))
                    elif dotted_name(value.right) == assign.target:
                        candidates.append((assign.target, value.left, assign.scope, assign.order, assign.stmt, "+"))
        for call in facts.calls:
            if call.method == "append" and call.receiver_dotted and len(call.args) == 1 and call.args[0].keyword is None:
                candidates.append(
                    (call.receiver_dotted, call.args[0].value, call.scope, call.order, call.stmt, "append")
                )
        if not candidates:
            return
        no_grad = no_grad_statements(facts)
        for total, operand, scope, order, stmt, how in candidates:
            if id(stmt) in no_grad:
                continue
            for node, name in _graph_operands(ctx, operand):
                if name == total:
                    continue
                if name is None:
                    evidence = "loss" if _scope_trains(ctx, scope) else None
                else:
                    evidence = _graph_evidence(ctx, name, scope, order)
                if evidence is None:
                    continue
                # A total that flows into backward() is a deliberate sum of losses (per time
                # step, per task). One that is returned may be too, unless its parts were
                # already back-propagated here.
                sinks = _grad_sinks(ctx, scope, with_returns=evidence != "backward")
                if total in sinks or total.split(".", 1)[0] in sinks:
                    continue
                text = facts.module.code_for_node(node)
                if how == "append":
                    shown = f"{total}.append({text})"
                elif how == "+=":
                    shown = f"{total} += {text}"
                else:
                    shown = f"{total} = {total} + {text}"
                ctx.report(
                    node,
                    f"'{shown}' keeps the loss tensor with its autograd graph, so every step's graph "
                    f"stays alive; use {text}.item() (or .detach())",
                    stmt,
                    fix=rnn1_fixes.loss_value_fix(facts, node, total, how),
                )
                break


# -- RNN106 lr-change-not-applied ---------------------------------------------------------

_LR_TARGET = re.compile(r"(^|\.)(lr|learning_rate|_learning_rate)$")
_LR_SETTER = re.compile(r"(^|_)(set|adjust|update|change|decay|apply|assign)_?(lr|learning_rate)|(^|_)(lr|learning_rate)_?(set|update|adjust)", re.I)
_LR_LOG_CALLS = frozenset(
    {
        "print", "log", "info", "debug", "warning", "add_scalar", "add_scalars", "write", "set_description",
        "set_postfix", "set_postfix_str", "append", "format", "str", "repr", "float", "int", "round",
        "max", "min", "abs", "log_metric", "log_metrics", "echo",
    }
)


def _optimizer_lr_args(ctx: Context) -> List[Tuple[CallFact, str, cst.BaseExpression, str]]:
    """(optimizer call, learning-rate variable, its argument node, framework)."""
    out = []
    for call in ctx.facts.calls:
        name = call.qualname or ""
        if name in TORCH_OPTIMIZERS:
            node, framework = call.arg(1, "lr"), "torch"
        elif name.startswith("keras.optimizers.") and name.count(".") == 2 and not name.endswith("schedules"):
            node = call.kwarg("learning_rate") or call.kwarg("lr") or call.positional(0)
            framework = "keras"
        else:
            continue
        variable = dotted_name(node) if node is not None else None
        if variable is not None and variable not in ("True", "False", "None"):
            out.append((call, variable, node, framework))
    return out


def _subscript_key(node: cst.CSTNode) -> Optional[str]:
    if isinstance(node, cst.Subscript) and len(node.slice) == 1 and isinstance(node.slice[0].slice, cst.Index):
        key = node.slice[0].slice.value
        if isinstance(key, cst.SimpleString):
            value = key.evaluated_value
            return value if isinstance(value, str) else None
    return None


def _lr_written_somewhere(ctx: Context) -> bool:
    """Anything that may set the optimizer's rate: group['lr'] = ..., optimizer.lr = ...,
    K.set_value(...), learning_rate.assign(...), an lr setter helper, or an LR scheduler."""
    facts = ctx.facts
    for sub in facts.subscripts:
        if _subscript_key(sub.node) in ("lr", "learning_rate", "initial_lr"):
            for small in getattr(sub.stmt, "body", ()):
                if isinstance(small, cst.Assign) and any(t.target is sub.node for t in small.targets):
                    return True
                if isinstance(small, cst.AugAssign) and small.target is sub.node:
                    return True
    for call in facts.calls:
        name = call.qualname or ""
        if name.startswith("torch.optim.lr_scheduler") or name.startswith("keras.optimizers.schedules"):
            return True
        if name in ("keras.callbacks.LearningRateScheduler", "keras.callbacks.ReduceLROnPlateau"):
            return True
        method = call.method or ""
        if method == "set_value" or _LR_SETTER.search(method):
            return True
        if method == "assign" and call.receiver_dotted and _LR_TARGET.search(call.receiver_dotted):
            return True
    return False


def _is_lr_change(ctx: Context, assign: AssignFact, variable: str) -> bool:
    """`lr *= 0.5`, `lr /= 10`, `lr -= step`, `lr = lr * decay`, `lr = max(lr * 0.5, 1e-5)`,
    `lr = base_lr * 0.1 ** (epoch // 10)`; not a warm-up increase, not a read-back."""
    evaluator = ctx.evaluator
    if assign.aug_op is not None:
        factor = evaluator.number(assign.value, assign.scope)
        # Only a change known to lower the rate counts: an unknown factor may be a warm-up.
        if not known(factor):
            return False
        if assign.aug_op == "MultiplyAssign":
            return factor < 1
        if assign.aug_op in ("DivideAssign", "FloorDivideAssign"):
            return factor > 1
        if assign.aug_op == "SubtractAssign":
            return factor > 0
        return False
    if assign.unpack_index is not None:
        return False
    value = assign.value
    read = dotted_in(value)
    if read & {"param_groups", "get_last_lr", "get_lr", "optimizer"}:
        return False  # reads the optimizer's rate back
    if isinstance(value, cst.BinaryOperation) and dotted_name(value.left) == variable:
        factor = evaluator.number(value.right, assign.scope)
        if isinstance(value.operator, cst.Add):
            return False  # warm-up
        if not known(factor):
            return False  # `lr * decay` with decay unknown: it may as well be a warm-up
        if isinstance(value.operator, cst.Multiply):
            return factor < 1
        if isinstance(value.operator, (cst.Divide, cst.FloorDivide)):
            return factor > 1
        return isinstance(value.operator, cst.Subtract) and factor > 0
    if variable in read:
        return isinstance(value, (cst.BinaryOperation, cst.Call))
    return isinstance(value, cst.BinaryOperation) and _has_power_or_product(value)


def _has_power_or_product(node: cst.BaseExpression) -> bool:
    if isinstance(node, cst.BinaryOperation):
        if isinstance(node.operator, (cst.Power, cst.Multiply, cst.Divide)):
            return True
        return _has_power_or_product(node.left) or _has_power_or_product(node.right)
    return False


def _same_binding(optimizer: CallFact, assign: AssignFact) -> bool:
    if assign.target.startswith("self."):
        return assign.scope.enclosing_class is not None and assign.scope.enclosing_class is optimizer.scope.enclosing_class
    return assign.scope is optimizer.scope


def _applied_later(ctx: Context, variable: str, change: AssignFact) -> bool:
    """The variable reaches a call that may use it after the change: a rebuilt optimizer,
    compile(), a helper (train(model, lr)); printing and logging do not count."""
    for call in ctx.facts.calls:
        if call.method in _LR_LOG_CALLS or call.scope is not change.scope and not variable.startswith("self."):
            continue
        if not any(dotted_name(a.value) == variable for a in call.args):
            continue
        if call.order > change.order:
            return True
        if call.loop is not None and any(outer.contains(change.loop) for outer in call.loop.ancestors()):
            return True  # runs again on the next pass of a loop that also holds the change
    return False


@rule(
    RuleMeta(
        "RNN106",
        "lr-change-not-applied",
        Severity.WARNING,
        ("torch", "keras"),
        "A learning-rate variable is lowered after the optimizer was built and never written back into it.",
    )
)
class LrChangeNotApplied(Rule):
    def check(self, ctx: Context) -> None:
        built = _optimizer_lr_args(ctx)
        if not built:
            return
        reported: Set[int] = set()
        lr_written: Optional[bool] = None
        for optimizer, variable, node, framework in built:
            for assign in ctx.facts.assigns:
                if assign.target != variable or assign.order <= optimizer.order or id(assign) in reported:
                    continue
                if assign.loop is None or not _same_binding(optimizer, assign):
                    continue
                if not _is_lr_change(ctx, assign, variable) or not trains_after(ctx.facts, assign.loop):
                    continue
                if lr_written is None:
                    lr_written = _lr_written_somewhere(ctx) or any(
                        _LR_TARGET.search(a.target) and a.target not in (variable,) and "." in a.target
                        for a in ctx.facts.assigns
                    )
                if lr_written:
                    return
                if _applied_later(ctx, variable, assign):
                    continue
                if any(
                    o.order > assign.order or (o.loop is not None and o.loop.contains(assign.loop))
                    for o, v, _, _ in built if v == variable
                ):
                    continue  # the optimizer is rebuilt from the new value
                reported.add(id(assign))
                statement = assign_node(assign)
                short = optimizer.dotted or "optimizer"
                where = (
                    "optimizer.param_groups never receive the new value"
                    if framework == "torch"
                    else "the optimizer's learning_rate is never set to it"
                )
                text = " ".join(ctx.facts.module.code_for_node(statement).split())
                ctx.report(
                    statement,
                    f"'{text}' changes {variable} after {short}(..., {'lr' if framework == 'torch' else 'learning_rate'}="
                    f"{variable}) was built (line {{built}}), but {where}: every step still uses the old rate",
                    assign.stmt,
                    refs={"built": optimizer.node},
                )


# -- RNN107 best-checkpoint-aliased -------------------------------------------------------

_NOT_MODEL = re.compile(r"optim|sched|scaler|opt$", re.I)


def _aliasing_state_dict(ctx: Context, value: cst.BaseExpression) -> Optional[Tuple[cst.BaseExpression, cst.Call]]:
    """(node to report, the state_dict() call) for X.state_dict(), X.state_dict().copy(),
    dict(X.state_dict()), copy.copy(X.state_dict()), {k: v for k, v in X.state_dict().items()}."""
    def state_dict_call(node: cst.BaseExpression) -> Optional[cst.Call]:
        if (
            isinstance(node, cst.Call) and isinstance(node.func, cst.Attribute)
            and node.func.attr.value == "state_dict" and not node.args
        ):
            owner = dotted_name(node.func.value)
            if owner is not None and not _NOT_MODEL.search(owner.rsplit(".", 1)[-1]):
                return node
        return None

    direct = state_dict_call(value)
    if direct is not None:
        return direct, direct
    if isinstance(value, cst.Call):
        func = value.func
        if isinstance(func, cst.Attribute) and func.attr.value == "copy" and not value.args:
            inner = state_dict_call(func.value)
            if inner is not None:
                return value, inner
        name = dotted_name(func)
        if name is not None and len(value.args) == 1 and value.args[0].keyword is None:
            full = resolve(name, ctx.facts.aliases) or name
            if name in ("dict", "OrderedDict") or full in ("collections.OrderedDict", "copy.copy"):
                inner = state_dict_call(value.args[0].value)
                if inner is not None:
                    return value, inner
    if isinstance(value, cst.DictComp):  # {k: v for k, v in model.state_dict().items()}
        loop = value.for_in
        target = loop.target
        iterable = loop.iter
        if (
            loop.inner_for_in is None and not loop.ifs
            and isinstance(target, cst.Tuple) and len(target.elements) == 2
            and dotted_name(value.value) is not None
            and dotted_name(value.value) == dotted_name(target.elements[1].value)
            and isinstance(iterable, cst.Call) and isinstance(iterable.func, cst.Attribute)
            and iterable.func.attr.value == "items"
        ):
            inner = state_dict_call(iterable.func.value)
            if inner is not None:
                return inner, inner
    return None


def _mentions(node: cst.CSTNode, name: str) -> bool:
    return name in dotted_in(node)


@rule(
    RuleMeta(
        "RNN107",
        "best-checkpoint-aliased",
        Severity.ERROR,
        ("torch",),
        "The best weights are kept as model.state_dict() (or a shallow copy): they alias the live parameters.",
    )
)
class BestCheckpointAliased(Rule):
    def check(self, ctx: Context) -> None:
        facts = ctx.facts
        by_node = calls_by_node(facts)
        for assign in facts.assigns:
            if assign.aug_op is not None:
                continue
            value = assigned_value(assign)
            if value is None:
                continue
            found = _aliasing_state_dict(ctx, value)
            if found is None:
                continue
            node, state_call = found
            fact = by_node.get(id(state_call))
            if fact is None or assign.loop is None:
                continue
            target = assign.target
            owner = dotted_name(state_call.func.value)  # type: ignore[attr-defined]
            if owner is None or not trains_after(facts, assign.loop):
                continue
            if any(
                a.target == owner and a.loop is not None and any(l is a.loop or l.contains(a.loop) for l in assign.loop.ancestors())
                for a in facts.assigns
            ):
                continue  # a fresh model each pass (a sweep): the old one is not trained further
            saved_here = loaded = saved_later = False
            for call in facts.calls:
                if call.order <= assign.order or not any(_mentions(a.value, target) for a in call.args):
                    continue
                if call.method == "save":
                    # In the assigning branch, possibly under a further `if` (if args.save: ...).
                    outer = [id(g) for g in fact.guards]
                    same_branch = [id(g) for g in call.guards][:len(outer)] == outer
                    inside = call.loop is assign.loop or (call.loop is not None and assign.loop.contains(call.loop))
                    if same_branch and inside and call.scope is assign.scope:
                        saved_here = True
                    else:
                        saved_later = True
                elif call.method == "load_state_dict":
                    loaded = True
            if saved_here:
                continue
            best_named = "best" in target.lower() and bool(fact.guards)
            if not (best_named or loaded or saved_later):
                continue
            text = " ".join(facts.module.code_for_node(node).split())
            use = (
                f"load_state_dict({target}) restores the final weights, not the best ones"
                if loaded
                else f"{target} follows every later optimizer step, so it ends as the final weights"
            )
            ctx.report(
                node,
                f"{target} = {text} keeps references to the live parameter tensors: {use}; "
                f"use copy.deepcopy({owner}.state_dict()) or clone each tensor",
                assign.stmt,
                fix=rnn1_fixes.deepcopy_fix(facts, value, owner),
            )
