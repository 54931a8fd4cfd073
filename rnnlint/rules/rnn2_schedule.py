"""RNN2xx: learning-rate schedules."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, List, Optional

from rnnlint.analysis.facts import CallFact
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
            ctx.report(
                p.call.node,
                f"ReduceLROnPlateau(min_lr={p.min_lr!r}) with no early stopping: after enough "
                "plateaus the learning rate decays toward 0 and training silently stops moving",
                p.call.stmt,
            )
