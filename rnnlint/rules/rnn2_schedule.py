"""RNN2xx: learning-rate schedules."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, List, Optional, Set, Tuple

import libcst as cst

from rnnlint.analysis.epochs import (
    assigned_value,
    break_guards,
    callers,
    epoch_count,
    fit_callbacks,
    fit_calls,
    fit_epochs,
    guards_inside,
    has_modulo,
    is_batch_loop,
    loop_kind,
    loop_trains,
    name_loads,
    single_assigned_call,
    statement_guards,
)
from rnnlint.analysis.facts import CallFact, Loop, ModuleFacts, Scope
from rnnlint.analysis.names import dotted_name
from rnnlint.analysis.walker import walk
from rnnlint.analysis.training import guarded_by_modulo
from rnnlint.analysis.values import UNKNOWN, known
from rnnlint.findings import Severity
from rnnlint.rules.base import Context, Rule, RuleMeta, rule

TORCH_PLATEAU = "torch.optim.lr_scheduler.ReduceLROnPlateau"
KERAS_PLATEAU = "keras.callbacks.ReduceLROnPlateau"
# Positional order of the arguments that matter, and their defaults.
_TORCH_ORDER = ("optimizer", "mode", "factor", "patience", "threshold", "threshold_mode", "cooldown", "min_lr")
_KERAS_ORDER = ("monitor", "factor", "patience", "verbose", "mode", "min_delta", "cooldown", "min_lr")
_DEFAULTS = {"factor": 0.1, "patience": 10, "cooldown": 0, "min_lr": 0.0}


@dataclass
class Plateau:
    call: CallFact
    framework: str
    factor: Any
    patience: Any
    cooldown: Any
    min_lr: Any


def plateau_schedulers(ctx: Context) -> List[Plateau]:
    cached = ctx.facts.cache.get("plateaus")
    if cached is not None:
        return cached  # type: ignore[return-value]
    out: List[Plateau] = []
    for call in ctx.facts.calls:
        if call.qualname == TORCH_PLATEAU:
            order, framework = _TORCH_ORDER, "torch"
        elif call.qualname == KERAS_PLATEAU:
            order, framework = _KERAS_ORDER, "keras"
        else:
            continue
        if call.has_star_args:
            continue
        values = {}
        for name, default in _DEFAULTS.items():
            node = call.arg(order.index(name), name)
            values[name] = default if node is None else ctx.evaluator.value(node, call.scope)
        out.append(Plateau(call, framework, **values))
    ctx.facts.cache["plateaus"] = out
    return out


def epochs_to_floor(factor: float, patience: int, cooldown: int) -> Optional[int]:
    """Epochs without improvement until the learning rate is 1e-3 of its start.

    The catalog's count: n = ceil(log(1e-3) / log(factor)) cuts, each after
    patience + 1 epochs without improvement, plus the cooldown.
    """
    if not (0 < factor < 1) or patience < 0 or cooldown < 0:
        return None
    cuts = math.ceil(math.log(1e-3) / math.log(factor) - 1e-9)
    return cuts * (patience + 1) + cooldown


def _number(value: Any) -> bool:
    return known(value) and isinstance(value, (int, float)) and not isinstance(value, bool)


@rule(
    RuleMeta(
        "RNN201",
        "aggressive-plateau",
        Severity.WARNING,
        ("torch", "keras"),
        "ReduceLROnPlateau cuts the learning rate so fast that a noisy RNN validation curve freezes it.",
        options={"max-epochs-to-floor": 10},
    )
)
class AggressivePlateau(Rule):
    def check(self, ctx: Context) -> None:
        threshold = ctx.option("max-epochs-to-floor")
        for p in plateau_schedulers(ctx):
            if not (_number(p.factor) and _number(p.patience) and _number(p.cooldown)):
                continue
            settings = f"ReduceLROnPlateau(factor={p.factor!r}, patience={p.patience!r}" + (
                f", cooldown={p.cooldown!r})" if p.cooldown else ")"
            )
            epochs = epochs_to_floor(p.factor, int(p.patience), int(p.cooldown))
            reasons = []
            if p.factor < 0.1:
                reasons.append(f"factor {p.factor!r} < 0.1 divides the rate by {1 / p.factor:.0f} at each cut")
            if p.patience == 0:
                reasons.append("patience 0 cuts after a single epoch without improvement")
            if epochs is not None and epochs <= threshold:
                reasons.append(
                    f"it cuts the learning rate 1000x after {epochs} epochs without improvement "
                    f"(threshold: {threshold})"
                )
            if reasons:
                ctx.report(p.call.node, f"{settings}: " + "; ".join(reasons), p.call.stmt)


def has_early_stopping(ctx: Context, plateau: Plateau) -> bool:
    for call in ctx.facts.calls:
        if call.qualname and call.qualname.endswith("EarlyStopping"):
            return True
        if call.dotted and call.dotted.rsplit(".", 1)[-1].lower() in ("earlystopping", "early_stopping", "earlystopper"):
            return True
    # torch: a `break` in a loop that steps the scheduler (or trains) is an early stop.
    scheduler = plateau.call.assigned_to
    for loop in ctx.facts.loops:
        if not loop.has_break:
            continue
        if any(c.method == "step" and c.receiver_dotted == scheduler for c in loop.calls):
            return True
        if any(unit.loop is not None and loop.contains(unit.loop) for unit in ctx.units):
            return True
    return False


@rule(
    RuleMeta(
        "RNN202",
        "plateau-no-floor",
        Severity.INFO,
        ("torch", "keras"),
        "ReduceLROnPlateau with min_lr=0 and no early stopping: the learning rate can shrink until training stops moving.",
    )
)
class PlateauNoFloor(Rule):
    def check(self, ctx: Context) -> None:
        for p in plateau_schedulers(ctx):
            if p.min_lr is UNKNOWN or not (p.min_lr == 0 or p.min_lr == 0.0) or isinstance(p.min_lr, (list, tuple)):
                continue
            if has_early_stopping(ctx, p):
                continue
            if any(idle.node is p.call.node for idle, _, _ in idle_plateaus(ctx)):
                continue  # it never cuts at all (RNN206): a floor is moot
            ctx.report(
                p.call.node,
                f"ReduceLROnPlateau(min_lr={p.min_lr!r}) with no early stopping: after enough "
                "plateaus the learning rate decays toward 0 and training silently stops moving",
                p.call.stmt,
            )


# -- shared: where plateau schedulers are stepped, what they watch, keras callbacks ----------------


def plateau_steps(ctx: Context, plateau: Plateau) -> List[CallFact]:
    """`scheduler.step(metric)` calls on a torch plateau scheduler: on the name it is bound to
    (when nothing else is bound to that name), or on a same-named parameter of a helper."""
    facts = ctx.facts
    name = plateau.call.assigned_to
    if plateau.framework != "torch" or name is None or single_assigned_call(facts, name) is not plateau.call:
        return []
    last = name.rsplit(".", 1)[-1]
    others = {
        c.assigned_to.rsplit(".", 1)[-1] for c in facts.calls
        if c.assigned_to and c is not plateau.call and c.assigned_to.rsplit(".", 1)[-1] == last
    }
    out = []
    for call in facts.calls:
        if call.method != "step" or not call.args or call.receiver_dotted is None:
            continue
        receiver = call.receiver_dotted
        if receiver == name:
            out.append(call)
        elif not others and receiver == last and call.scope.kind == "function" and last in call.scope.params:
            out.append(call)
        elif call.scope.kind == "function" and receiver in call.scope.params and _always_passed(
            facts, call.scope, receiver, name
        ):
            out.append(call)
    return out


def _always_passed(facts: ModuleFacts, function: Scope, param: str, name: str) -> bool:
    """Whether every call to `function` in the file (at least one) passes `name` as `param`:
    `train(model, loader, scheduler)` into `def train(model, loader, sched)`."""
    found = callers(facts, function)
    if not found:
        return False
    index = function.param_order.index(param)
    if function.is_method():
        index -= 1  # called as self.method(...)
    for call in found:
        if call.has_star_args:
            return False
        given = call.arg(index, param)
        if given is None or dotted_name(given) != name:
            return False
    return True


def _torch_plateaus(ctx: Context) -> List[Plateau]:
    return [p for p in plateau_schedulers(ctx) if p.framework == "torch"]


def _keras_plateaus(ctx: Context) -> List[Plateau]:
    return [p for p in plateau_schedulers(ctx) if p.framework == "keras"]


def _int_value(ctx: Context, node: Optional[cst.BaseExpression], scope: Scope, default: Any) -> Any:
    if node is None:
        return default
    value = ctx.evaluator.number(node, scope)
    if known(value) and isinstance(value, int):
        return value
    if known(value) and isinstance(value, float) and value.is_integer():
        return int(value)
    return UNKNOWN


def _plateau_patience(plateau: Plateau) -> Any:
    p = plateau.patience
    if _number(p) and float(p).is_integer():
        return int(p)
    return UNKNOWN


_HIGHER_TOKENS = frozenset(
    {"auc", "auroc", "roc", "f1", "fscore", "precision", "prec", "recall", "iou", "miou", "r2", "score",
     "bleu", "map", "dice", "kappa", "mcc", "correct", "top1", "top5"}
)
_LOWER_TOKENS = frozenset(
    {"loss", "losses", "error", "err", "mse", "mae", "rmse", "mape", "smape", "perplexity", "ppl", "nll",
     "wer", "cer", "cost", "rmsle", "msle"}
)


def metric_direction(name: str) -> Optional[str]:
    """"max" for accuracy-like names, "min" for loss-like names, None when unclear."""
    spaced = re.sub(r"([a-z])([A-Z])", r"\1_\2", name)
    tokens = [t for t in re.split(r"[^a-z0-9]+|(?<=[a-z])(?=\d)", spaced.lower()) if t]
    higher = any(t in _HIGHER_TOKENS or (t.startswith("acc") and not t.startswith("accum")) for t in tokens)
    lower = any(t in _LOWER_TOKENS for t in tokens)
    if not (higher or lower):
        low = name.lower()
        higher = bool(re.search(r"acc(?!um)|f1|auc", low))
        lower = "loss" in low
    if higher == lower:
        return None
    return "max" if higher else "min"


_PASS_THROUGH = frozenset({"item", "mean", "cpu", "detach", "numpy", "tolist", "float", "squeeze", "result"})


def metric_name(node: cst.BaseExpression) -> Optional[str]:
    """The name of the quantity a step() receives: val_acc, val_acc.item(), float(val_acc),
    metrics["val_acc"], self.val_acc; None for arithmetic (-acc, 1 - acc) and the like."""
    for _ in range(4):
        if isinstance(node, cst.Call):
            func = node.func
            if isinstance(func, cst.Attribute) and func.attr.value in _PASS_THROUGH and not node.args:
                node = func.value
                continue
            if dotted_name(func) in ("float", "np.mean", "numpy.mean", "torch.tensor") and len(node.args) == 1:
                node = node.args[0].value
                continue
        break
    if isinstance(node, cst.Name):
        return node.value
    if isinstance(node, cst.Attribute):
        return node.attr.value
    if isinstance(node, cst.Subscript):
        for element in node.slice:
            index = element.slice
            if isinstance(index, cst.Index) and isinstance(index.value, cst.SimpleString):
                value = index.value.evaluated_value
                return value if isinstance(value, str) else None
        return metric_name(node.value)
    return None


def _keras_callback_arg(call: CallFact, ctx: Context, index: int, name: str, default: Any) -> Any:
    node = call.arg(index, name)
    if node is None:
        return default
    return ctx.evaluator.value(node, call.scope)


_KERAS_EARLY_STOP = "keras.callbacks.EarlyStopping"
# keras EarlyStopping(monitor, min_delta, patience, verbose, mode, baseline, restore_best_weights)
_ES_PATIENCE_INDEX = 2


def _is_torch_early_stopper(call: CallFact) -> bool:
    short = (call.dotted or "").rsplit(".", 1)[-1]
    if short not in ("EarlyStopping", "EarlyStopper", "EarlyStop", "EarlyStoppingCallback"):
        return False
    return not (call.qualname or "").startswith("keras.")


def _torch_stopper_patience(ctx: Context, call: CallFact) -> Any:
    """patience of a torch-side early stopper: keyword, or the default / position from the
    class defined in this file; lightning's EarlyStopping defaults to 3."""
    if call.has_star_args:
        return UNKNOWN
    node = call.kwarg("patience")
    if node is not None:
        return _int_value(ctx, node, call.scope, UNKNOWN)
    cls = ctx.facts.classes.get(call.dotted or "")
    if cls is not None:
        init = cls.methods.get("__init__")
        if init is None or "patience" not in init.params:
            return UNKNOWN
        index = init.param_order.index("patience") - 1
        given = call.positional(index) if index >= 0 else None
        if given is not None:
            return _int_value(ctx, given, call.scope, UNKNOWN)
        return _int_value(ctx, init.params["patience"], init, UNKNOWN)
    if (call.qualname or "").startswith("lightning.") and not call.args:
        return 3
    return UNKNOWN


# -- RNN203 plateau-stepped-per-batch ---------------------------------------------------------


def _runs_per_batch(ctx: Context, call: CallFact) -> bool:
    """Whether the step runs once per batch: in a batch loop, or unguarded in a helper that a
    batch loop (or a comprehension over batches) calls unguarded."""
    facts = ctx.facts
    loop = call.loop
    if loop is not None:
        return is_batch_loop(facts, loop) and not guards_inside(call, loop) and not guarded_by_modulo(call)
    function = call.scope
    if function.kind != "function" or guarded_by_modulo(call) or call.guards:
        return False
    # A training-step helper (it takes the optimizer step itself, outside any loop) runs once
    # per batch wherever it is called in a loop nested in an epoch loop; another helper only
    # when the calling loop is known to walk batches.
    trains = any(u.step.scope is function and u.loop is None for u in ctx.units)
    for caller in callers(facts, function):
        if guarded_by_modulo(caller):
            continue
        if _in_batch_comprehension(caller, trains):
            return True
        outer = caller.loop
        if outer is None or guards_inside(caller, outer) or _sweep_loop(outer):
            continue
        if is_batch_loop(facts, outer):
            return True
        if trains and loop_kind(outer) is None and _inside_epoch_loop(outer.parent):
            return True
    return False


_COMPREHENSIONS = (cst.ListComp, cst.GeneratorExp, cst.SetComp, cst.DictComp)


def _inside_epoch_loop(loop: Optional[Loop]) -> bool:
    return loop is not None and any(loop_kind(outer) == "epoch" for outer in loop.ancestors())


def _sweep_loop(loop: Loop) -> bool:
    """`for batch_size in (16, 32):` names a hyperparameter sweep, not batches."""
    return any(re.search(r"size|_sz$|^bs$", t, re.I) for t in loop.target_names)


def _comp_target_names(node: cst.BaseExpression) -> Tuple[str, ...]:
    if isinstance(node, cst.Name):
        return (node.value,)
    if isinstance(node, (cst.Tuple, cst.List)):
        return tuple(n for e in node.elements for n in _comp_target_names(e.value))
    return ()


def _in_batch_comprehension(call: CallFact, trains: bool) -> bool:
    """`[train_step(x, y) for x, y in train_loader]`: the call is the element of a comprehension
    (without an `if` filter) over a batch iterable; for a training-step helper, a comprehension
    over anything inside an epoch loop."""
    stop = lambda n: isinstance(n, (cst.FunctionDef, cst.ClassDef, cst.Lambda, cst.IndentedBlock))  # noqa: E731
    for node in walk(call.stmt, stop):
        if not isinstance(node, _COMPREHENSIONS):
            continue
        elements = (node.key, node.value) if isinstance(node, cst.DictComp) else (node.elt,)
        if not any(n is call.node for element in elements for n in walk(element, stop)):
            continue
        clauses = []
        clause: Optional[cst.CompFor] = node.for_in
        while clause is not None:
            clauses.append(clause)
            clause = clause.inner_for_in
        if any(c.ifs for c in clauses):
            return False  # runs for some batches only
        kinds = [
            loop_kind(Loop(node, call.loop, call.scope, call.order, _comp_target_names(c.target), c.iter))
            for c in clauses
        ]
        if "epoch" in kinds or any(_sweep_loop(Loop(node, None, call.scope, 0, _comp_target_names(c.target))) for c in clauses):
            return False
        if "batch" in kinds:
            return True
        return trains and _inside_epoch_loop(call.loop)
    return False


@rule(
    RuleMeta(
        "RNN203",
        "plateau-stepped-per-batch",
        Severity.WARNING,
        ("torch",),
        "ReduceLROnPlateau.step() runs inside the batch loop: patience counts batches, not epochs.",
    )
)
class PlateauSteppedPerBatch(Rule):
    def check(self, ctx: Context) -> None:
        for plateau in _torch_plateaus(ctx):
            patience = _plateau_patience(plateau)
            for call in plateau_steps(ctx, plateau):
                if not _runs_per_batch(ctx, call):
                    continue
                text = " ".join(ctx.facts.module.code_for_node(call.node).split())
                counts = (
                    f"patience={patience} counts batches, so {patience + 1} batches without a new best "
                    "batch value cut the learning rate"
                    if known(patience)
                    else "its patience counts batches, not epochs"
                )
                ctx.report(
                    call.node,
                    f"{text} runs once per batch (ReduceLROnPlateau built on line {{built}}): {counts}; "
                    "step it once per epoch with the validation metric",
                    call.stmt,
                    refs={"built": plateau.call.node},
                )


# -- RNN204 plateau-mode-mismatch -------------------------------------------------------------


@rule(
    RuleMeta(
        "RNN204",
        "plateau-mode-mismatch",
        Severity.ERROR,
        ("torch", "keras"),
        "ReduceLROnPlateau mode='min' watches an accuracy-like metric, or mode='max' a loss.",
    )
)
class PlateauModeMismatch(Rule):
    def check(self, ctx: Context) -> None:
        for plateau in plateau_schedulers(ctx):
            call = plateau.call
            if plateau.framework == "torch":
                mode = _keras_callback_arg(call, ctx, 1, "mode", "min")
                if mode not in ("min", "max"):
                    continue
                for step in plateau_steps(ctx, plateau):
                    metric_node = step.arg(0, "metrics")
                    name = metric_name(metric_node) if metric_node is not None else None
                    direction = metric_direction(name) if name else None
                    if direction is None or direction == mode:
                        continue
                    ctx.report(
                        call.node,
                        f"ReduceLROnPlateau(mode={mode!r}) is stepped with {name!r} on line {{step}}, "
                        f"which is {'higher' if direction == 'max' else 'lower'} when better: it cuts the "
                        f"learning rate while the model improves; use mode={direction!r}",
                        call.stmt,
                        refs={"step": step.node},
                    )
                    break
            else:
                mode = _keras_callback_arg(call, ctx, 4, "mode", "auto")
                monitor = _keras_callback_arg(call, ctx, 0, "monitor", "val_loss")
                if mode not in ("min", "max") or not isinstance(monitor, str):
                    continue
                direction = metric_direction(monitor)
                if direction is None or direction == mode:
                    continue
                ctx.report(
                    call.node,
                    f"ReduceLROnPlateau(monitor={monitor!r}, mode={mode!r}): {monitor} is "
                    f"{'higher' if direction == 'max' else 'lower'} when better, so the learning rate is "
                    f"cut while the model improves; use mode={direction!r} (or 'auto')",
                    call.stmt,
                )


# -- RNN205 early-stop-before-plateau ---------------------------------------------------------


def _keras_pairs(ctx: Context) -> List[Tuple[CallFact, Plateau]]:
    """(EarlyStopping call, keras plateau) passed to the same fit(); when no fit() callbacks
    can be read, the file's only EarlyStopping with its only plateau callback."""
    facts = ctx.facts
    plateaus = {id(p.call): p for p in _keras_plateaus(ctx)}
    if not plateaus:
        return []
    stops = [c for c in facts.calls if c.qualname == _KERAS_EARLY_STOP]
    if not stops:
        return []
    pairs: List[Tuple[CallFact, Plateau]] = []
    resolved_any = False
    for fit in fit_calls(facts):
        callbacks = fit_callbacks(facts, fit)
        if callbacks is None:
            continue
        resolved_any = resolved_any or bool(callbacks)
        here_stops = [c for c in callbacks if c.qualname == _KERAS_EARLY_STOP]
        here_plateaus = [plateaus[id(c)] for c in callbacks if id(c) in plateaus]
        for stop in here_stops:
            for plateau in here_plateaus:
                if not any(s is stop and p is plateau for s, p in pairs):
                    pairs.append((stop, plateau))
    if not resolved_any and len(stops) == 1 and len(plateaus) == 1:
        pairs.append((stops[0], next(iter(plateaus.values()))))
    return pairs


def _counter_break(ctx: Context, test: cst.BaseExpression, loop: Loop) -> Optional[Tuple[str, Any, cst.BaseExpression]]:
    """`bad_epochs >= K` (or > K, == K, K <= bad_epochs) guarding a break, where bad_epochs is
    incremented by one inside the loop and reset to 0: (counter, K, comparison node)."""
    if not isinstance(test, cst.Comparison) or len(test.comparisons) != 1:
        return None
    target = test.comparisons[0]
    op = target.operator
    left, right = test.left, target.comparator
    if isinstance(op, (cst.GreaterThanEqual, cst.GreaterThan, cst.Equal)):
        counter, limit = dotted_name(left), right
    elif isinstance(op, (cst.LessThanEqual, cst.LessThan)):
        counter, limit = dotted_name(right), left
    else:
        return None
    if counter is None:
        return None
    facts = ctx.facts
    increments = [
        a for a in facts.assigns
        if a.target == counter and a.aug_op == "AddAssign" and a.loop is loop
        and isinstance(a.value, cst.Integer) and a.value.value == "1"
    ]
    # One increment per epoch: not in an inner loop, not only on every k-th epoch.
    if len(increments) != 1:
        return None
    increment_guards = statement_guards(loop, increments[0].stmt)
    break_guards_ = statement_guards(loop, _break_if(loop, test))
    if increment_guards is None or break_guards_ is None:
        return None
    if any(has_modulo(t) for t in increment_guards + break_guards_ + [test]):
        return None  # counts validations every k epochs, not epochs
    reset = any(
        a.target == counter and a.aug_op is None
        and isinstance(assigned_value(a), cst.Integer) and assigned_value(a).value == "0"  # type: ignore[union-attr]
        for a in facts.assigns
    )
    if not reset:
        return None
    scope = loop.scope
    value = _int_value(ctx, limit, scope, UNKNOWN)
    if not known(value):
        return None
    return counter, value, test


def manual_early_stops(ctx: Context) -> List[Tuple[Loop, str, int, cst.BaseExpression]]:
    """Hand-written early stops in torch epoch loops: (loop, counter, patience, comparison)."""
    cached = ctx.facts.cache.get("rnn2.manual_early_stops")
    if cached is not None:
        return cached  # type: ignore[return-value]
    out = []
    for loop in ctx.facts.loops:
        if not loop.has_break or not loop_trains(ctx.facts, loop):
            continue
        for test in break_guards(loop):
            found = _counter_break(ctx, test, loop)
            if found is not None:
                out.append((loop,) + found)
    ctx.facts.cache["rnn2.manual_early_stops"] = out
    return out


def _break_if(loop: Loop, test: cst.BaseExpression) -> cst.CSTNode:
    found = _statement_of(None, test, loop)
    return found if found is not None else test


def _statement_of(ctx: Optional[Context], node: cst.CSTNode, loop: Loop) -> Optional[cst.CSTNode]:
    """The `if` statement whose test is `node` (for suppression comments on its line)."""
    stack = list(getattr(loop.node.body, "body", ()))  # type: ignore[attr-defined]
    while stack:
        stmt = stack.pop()
        if isinstance(stmt, cst.If):
            if stmt.test is node:
                return stmt
            stack.extend(getattr(stmt.body, "body", ()))
            if stmt.orelse is not None:
                stack.append(stmt.orelse) if isinstance(stmt.orelse, cst.If) else stack.extend(getattr(stmt.orelse.body, "body", ()))
        elif isinstance(stmt, (cst.With, cst.Try)):
            stack.extend(getattr(stmt.body, "body", ()))
    return None


@rule(
    RuleMeta(
        "RNN205",
        "early-stop-before-plateau",
        Severity.WARNING,
        ("torch", "keras"),
        "Early-stopping patience is at most the plateau scheduler's: training stops before a reduced learning rate can help.",
    )
)
class EarlyStopBeforePlateau(Rule):
    def check(self, ctx: Context) -> None:
        for stop, plateau in _keras_pairs(ctx):
            stop_patience = _int_value(ctx, stop.arg(_ES_PATIENCE_INDEX, "patience"), stop.scope, 0)
            plateau_patience = _plateau_patience(plateau)
            if not (known(stop_patience) and known(plateau_patience)) or stop.has_star_args:
                continue
            stop_monitor = _keras_callback_arg(stop, ctx, 0, "monitor", "val_loss")
            plateau_monitor = _keras_callback_arg(plateau.call, ctx, 0, "monitor", "val_loss")
            if isinstance(stop_monitor, str) and isinstance(plateau_monitor, str) and stop_monitor != plateau_monitor:
                continue  # they watch different curves
            if stop_patience <= plateau_patience:
                ctx.report(
                    stop.node,
                    f"EarlyStopping(patience={stop_patience}) <= ReduceLROnPlateau(patience={plateau_patience}) "
                    f"on line {{plateau}}: training stops before a reduced learning rate gets a single epoch",
                    stop.stmt,
                    refs={"plateau": plateau.call.node},
                )
        torch_plateaus = [p for p in _torch_plateaus(ctx) if known(_plateau_patience(p))]
        if not torch_plateaus:
            return
        for loop, counter, patience, test in manual_early_stops(ctx):
            plateau = _plateau_for_loop(ctx, torch_plateaus, loop)
            if plateau is None:
                continue
            plateau_patience = _plateau_patience(plateau)
            if patience <= plateau_patience:
                text = " ".join(ctx.facts.module.code_for_node(test).split())
                ctx.report(
                    test,
                    f"early stop '{text}' gives up after {patience} epochs without improvement, "
                    f"<= ReduceLROnPlateau(patience={plateau_patience}) on line {{plateau}}: training stops "
                    "before a reduced learning rate gets a single epoch",
                    _statement_of(ctx, test, loop),
                    refs={"plateau": plateau.call.node},
                )
        for call in ctx.facts.calls:
            if not _is_torch_early_stopper(call) or call.assigned_to is None and call.loop is None:
                continue
            plateau = torch_plateaus[0] if len(torch_plateaus) == 1 else None
            patience = _torch_stopper_patience(ctx, call)
            if plateau is None or not known(patience):
                continue
            plateau_patience = _plateau_patience(plateau)
            if patience <= plateau_patience:
                short = (call.dotted or "EarlyStopping").rsplit(".", 1)[-1]
                ctx.report(
                    call.node,
                    f"{short}(patience={patience}) <= ReduceLROnPlateau(patience={plateau_patience}) on line "
                    "{plateau}: training stops before a reduced learning rate gets a single epoch",
                    call.stmt,
                    refs={"plateau": plateau.call.node},
                )


def _plateau_for_loop(ctx: Context, plateaus: List[Plateau], loop: Loop) -> Optional[Plateau]:
    """The plateau scheduler stepped inside `loop`; the only one when it is stepped elsewhere."""
    stepped = [p for p in plateaus if any(s.loop is loop for s in plateau_steps(ctx, p))]
    if len(stepped) == 1:
        return stepped[0]
    if not stepped and len(plateaus) == 1:
        steps = plateau_steps(ctx, plateaus[0])
        if not any(s.loop is not None and is_batch_loop(ctx.facts, s.loop) for s in steps):
            return plateaus[0]  # stepped in a helper or under another name, not per batch
    return None


# -- RNN206 schedule-cannot-fire --------------------------------------------------------------


def _single_fit_epochs(ctx: Context, fit: CallFact) -> Optional[int]:
    """fit(epochs=N) when the call is the whole run (not one pass of a loop)."""
    if fit.loop is not None:
        return None  # fit() per pass of a loop: the epochs of one call are not the run
    return fit_epochs(fit, ctx.evaluator)


def idle_plateaus(ctx: Context) -> List[Tuple[CallFact, str, Optional[dict]]]:
    """Plateau schedulers whose patience is at least the number of epochs they are stepped in,
    with the message that says so: RNN206 reports them, and RNN202 (a missing floor) is moot
    for a scheduler that never cuts."""
    cached = ctx.facts.cache.get("rnn2.idle_plateaus")
    if cached is not None:
        return cached
    facts, evaluator = ctx.facts, ctx.evaluator
    out: List[Tuple[CallFact, str, Optional[dict]]] = []
    seen: Set[int] = set()
    for plateau in _torch_plateaus(ctx):  # stepped once per epoch in `for epoch in range(N)`
        patience = _plateau_patience(plateau)
        if not known(patience):
            continue
        for step in plateau_steps(ctx, plateau):
            loop = step.loop
            if loop is None or is_batch_loop(facts, loop):
                continue
            epochs = epoch_count(loop, evaluator)
            if epochs is not None and patience >= epochs and id(plateau.call.node) not in seen:
                seen.add(id(plateau.call.node))
                out.append((
                    plateau.call,
                    f"ReduceLROnPlateau(patience={patience}) can never cut the learning rate in a "
                    f"loop of {epochs} epochs (line {{loop}}): it needs {patience + 1} epochs without "
                    "improvement",
                    {"loop": loop.node},
                ))
    keras = {id(p.call.node): p for p in _keras_plateaus(ctx)}
    for fit in fit_calls(facts) if keras else []:
        epochs = _single_fit_epochs(ctx, fit)
        if epochs is None:
            continue
        for callback in fit_callbacks(facts, fit) or []:
            plateau = keras.get(id(callback.node))
            if plateau is None or id(callback.node) in seen:
                continue
            patience = _plateau_patience(plateau)
            if known(patience) and patience >= epochs:
                seen.add(id(callback.node))
                out.append((
                    callback,
                    f"ReduceLROnPlateau(patience={patience}) can never cut the learning rate in "
                    f"fit(epochs={epochs}) on line {{fit}}",
                    {"fit": fit.node},
                ))
    ctx.facts.cache["rnn2.idle_plateaus"] = out
    return out


_KERAS_CALLBACK_PREFIX = "keras.callbacks."


@rule(
    RuleMeta(
        "RNN206",
        "schedule-cannot-fire",
        Severity.WARNING,
        ("torch", "keras"),
        "A plateau scheduler or early stop whose patience is at least the number of epochs, or a keras callback never passed to fit().",
    )
)
class ScheduleCannotFire(Rule):
    def check(self, ctx: Context) -> None:
        facts = ctx.facts
        evaluator = ctx.evaluator
        reported: Set[int] = set()

        def report(call: CallFact, message: str, refs: Optional[dict] = None) -> None:
            if id(call.node) not in reported:
                reported.add(id(call.node))
                ctx.report(call.node, message, call.stmt, refs=refs)

        # plateau schedulers (torch loops and keras fit) whose patience outlasts the epochs
        for call, message, refs in idle_plateaus(ctx):
            report(call, message, refs)
        # torch: hand-written early stop in `for epoch in range(N)`
        for loop, counter, patience, test in manual_early_stops(ctx):
            epochs = epoch_count(loop, evaluator)
            if epochs is not None and patience >= epochs and loop_kind(loop) != "batch":
                text = " ".join(facts.module.code_for_node(test).split())
                ctx.report(
                    test,
                    f"early stop '{text}' can never fire in a loop of {epochs} epochs: it needs {patience} "
                    "epochs without improvement",
                    _statement_of(ctx, test, loop),
                )
        # torch: an early-stopper object called once per epoch in `for epoch in range(N)`
        for call in facts.calls:
            if not _is_torch_early_stopper(call) or call.assigned_to is None:
                continue
            patience = _torch_stopper_patience(ctx, call)
            if not known(patience):
                continue
            uses = [
                c for c in facts.calls
                if c.loop is not None and (c.dotted == call.assigned_to or c.receiver_dotted == call.assigned_to)
            ]
            counts = {epoch_count(c.loop, evaluator) for c in uses if c.loop is not None}
            if len(counts) == 1:
                epochs = counts.pop()
                if epochs is not None and patience >= epochs:
                    short = (call.dotted or "EarlyStopping").rsplit(".", 1)[-1]
                    report(
                        call,
                        f"{short}(patience={patience}) can never stop training in a loop of {epochs} epochs",
                    )
        # keras: early stopping passed to fit(epochs=N)
        fits = fit_calls(facts)
        for fit in fits:
            epochs = _single_fit_epochs(ctx, fit)
            if epochs is None:
                continue
            for callback in fit_callbacks(facts, fit) or []:
                if callback.qualname != _KERAS_EARLY_STOP or callback.has_star_args:
                    continue
                patience = _int_value(ctx, callback.arg(_ES_PATIENCE_INDEX, "patience"), callback.scope, 0)
                if known(patience) and patience >= epochs:
                    report(
                        callback,
                        f"EarlyStopping(patience={patience}) can never stop training in fit(epochs={epochs}) "
                        "on line {fit}",
                        {"fit": fit.node},
                    )
        # keras: a callback built, bound to a name, and never used
        if not fits:
            return
        loads: Optional[dict] = None
        for call in facts.calls:
            name = call.qualname or ""
            if not name.startswith(_KERAS_CALLBACK_PREFIX) or call.assigned_to is None or "." in call.assigned_to:
                continue
            if name.rsplit(".", 1)[-1] in ("Callback", "LambdaCallback", "CallbackList", "History"):
                continue
            if loads is None:
                loads = name_loads(facts)
            bound = sum(1 for a in facts.assigns if a.target == call.assigned_to)
            if loads.get(call.assigned_to, 0) <= bound:
                short = name.rsplit(".", 1)[-1]
                report(
                    call,
                    f"{call.assigned_to} = {short}(...) is never passed to fit(callbacks=...): it never runs",
                )
