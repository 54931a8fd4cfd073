"""Turn a measurements dict into RNN901-908 findings (torch-free: the parent process runs it).

Every message names the measured number, the threshold and a fix; the numbers also go into
Finding.extra as {"measured": ..., "threshold": ..., "confirms": <static code or None>}.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence

from rnnlint.findings import Finding
from rnnlint.runtime.stats import json_safe, norm_growth, relative_range
from rnnlint.runtime.thresholds import Thresholds

VANILLA = ("RNN_TANH", "RNN_RELU")
# RNN602's bounds on the recurrent spectral radius ("below ~0.5 forgets, above ~1.5 explodes"),
# with 10% slack so that an init at exactly 0.5 (measured 0.50000005 in float32) counts.
RADIUS_LOW, RADIUS_HIGH = 0.55, 1.5


def _meta(code: str) -> Any:
    # The static side owns the code table (name, severity); reading it keeps one source of truth.
    from rnnlint.rules import BY_CODE

    return BY_CODE[code]


def _g(x: Optional[float]) -> str:
    """Compact number: 3 significant digits, scientific when large or small."""
    if x is None:
        return "n/a"
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    ax = abs(x)
    if ax != 0 and (ax >= 1e4 or ax < 1e-3):
        return f"{x:.2e}"
    return f"{x:.3g}"


class Locator:
    """Places findings: a layer's construction line when known, else the anchor line."""

    def __init__(self, path: str, anchor_line: int = 1, source: Optional[Sequence[str]] = None) -> None:
        self.path = path
        self.anchor_line = anchor_line
        self.source = list(source) if source is not None else None

    def finding(self, code: str, message: str, line: Optional[int], extra: Dict[str, Any]) -> Finding:
        meta = _meta(code)
        line = line or self.anchor_line or 1
        column, end_column = 1, 1
        if self.source is not None and 0 < line <= len(self.source):
            text = self.source[line - 1].rstrip()
            column = len(text) - len(text.lstrip()) + 1
            end_column = len(text) + 1
        return Finding(self.path, line, column, line, end_column, code, meta.name, meta.severity,
                       message, extra=json_safe(extra))


def evaluate(measurements: Dict[str, Any], thresholds: Thresholds, locator: Locator) -> List[Finding]:
    """All runtime findings for one probe, in code order."""
    out: List[Finding] = []
    for check in (_rnn901, _rnn902, _rnn903, _rnn904, _rnn905, _rnn906, _rnn907, _rnn908):
        out.extend(check(measurements, thresholds, locator))
    return out


def _finite(value: Any) -> bool:
    """A measured number that is finite (None marks a step where nothing was measured)."""
    return isinstance(value, (int, float)) and math.isfinite(value)


def _layers(m: Dict[str, Any]) -> List[Dict[str, Any]]:
    return list(m.get("layers") or [])


def _label(layer: Dict[str, Any]) -> str:
    return f"'{layer['name']}' ({layer['module']})"


def _anchor(m: Dict[str, Any]) -> Optional[int]:
    return next((layer.get("line") for layer in _layers(m) if layer.get("line")), None)


def _rnn901(m: Dict[str, Any], th: Thresholds, loc: Locator) -> List[Finding]:
    norms = m.get("grad_norm") or []
    losses = m.get("loss") or []
    g = norm_growth(norms)
    reasons: List[str] = []
    # A non-finite gradient under a finite loss is an overflow; a NaN loss is RNN907's (bad data).
    for step, value in enumerate(norms):
        loss_ok = step < len(losses) and _finite(losses[step])
        if not math.isfinite(value) and loss_ok:
            reasons.append(f"the gradient norm became {value} at step {step + 1} while the loss was finite")
            break
    if g["max"] is not None and g["max"] > th.grad_norm_max:
        reasons.append(f"the gradient norm reached {_g(g['max'])} at step {g['argmax'] + 1} "
                       f"(limit {_g(th.grad_norm_max)})")
    if g["growth"] is not None and g["growth"] > th.grad_growth_max:
        reasons.append(f"it grew {_g(g['growth'])}x over {len(norms)} steps (limit {_g(th.grad_growth_max)}x)")
    if g["spike"] is not None and g["spike"] > th.grad_spike_factor:
        reasons.append(f"one step was {_g(g['spike'])}x the median (limit {_g(th.grad_spike_factor)}x)")
    through_time = {}
    for layer in _layers(m):
        decay = layer.get("decay") or {}
        factor = decay.get("factor")
        if factor is not None and factor > th.bptt_growth_factor:
            through_time[layer["name"]] = factor
            reasons.append(f"|dL/dh_t| of {_label(layer)} grows {_g(factor)}x per step back in time "
                           f"(limit {_g(th.bptt_growth_factor)}x)")
    if not reasons:
        return []
    message = ("exploding gradients: " + "; ".join(reasons)
               + ". Clip with torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0) between backward()"
               " and step(), and keep the recurrent weights' spectral radius near 1")
    extra = {
        "measured": {"grad_norm_max": g["max"], "growth": g["growth"], "spike": g["spike"],
                     "bptt_factor": through_time, "grad_norm": norms},
        "threshold": {"grad_norm_max": th.grad_norm_max, "grad_growth_max": th.grad_growth_max,
                      "grad_spike_factor": th.grad_spike_factor, "bptt_growth_factor": th.bptt_growth_factor},
        "confirms": "RNN101",
    }
    return [loc.finding("RNN901", message, _anchor(m), extra)]


def _rnn902(m: Dict[str, Any], th: Thresholds, loc: Locator) -> List[Finding]:
    out = []
    for layer in _layers(m):
        decay = layer.get("decay")
        if not decay or decay.get("factor") is None:
            continue
        factor, memory, length = decay["factor"], decay["memory_steps"], layer["seq_len"]
        if not (factor < th.decay_factor_min and memory < th.memory_fraction_min * length):
            continue
        vanished = ""
        if decay.get("vanished_at") is not None:
            vanished = f"; exactly zero from {decay['vanished_at']} steps back"
        confirms = None
        if layer["kind"] in VANILLA:
            radius = (layer.get("eigen") or {}).get("max_modulus")
            confirms = "RNN602" if radius is not None and radius < RADIUS_LOW else "RNN601"
        message = (f"{_label(layer)}: |dL/dh_t| shrinks by a factor {_g(factor)} per step back in time "
                   f"(limit {_g(th.decay_factor_min)}): effective memory {_g(memory)} steps of a {length}-step "
                   f"sequence (limit {_g(th.memory_fraction_min * 100)}%){vanished}. Use an LSTM/GRU, an "
                   "orthogonal recurrent init with radius near 1, or shorter windows")
        extra = {"measured": {"factor": factor, "memory_steps": memory, "seq_len": length,
                              "vanished_at": decay.get("vanished_at")},
                 "threshold": {"decay_factor_min": th.decay_factor_min,
                               "memory_fraction_min": th.memory_fraction_min},
                 "confirms": confirms}
        out.append(loc.finding("RNN902", message, layer.get("line"), extra))
    return out


def _rnn903(m: Dict[str, Any], th: Thresholds, loc: Locator) -> List[Finding]:
    out = []
    for layer in _layers(m):
        sens = layer.get("sensitivity")
        if not sens or sens.get("ratio") is None or not sens["ratio"] > th.sensitivity_ratio_max:
            continue
        radius = (layer.get("eigen") or {}).get("max_modulus")
        confirms = None
        if layer["kind"] == "custom":
            confirms = "RNN604"
        elif layer["kind"] in VANILLA and radius is not None and radius > RADIUS_HIGH:
            confirms = "RNN602"
        message = (f"{_label(layer)}: the hidden state is {_g(sens['ratio'])}x more sensitive to the recurrent "
                   f"parameters than to the input parameters (limit {_g(th.sensitivity_ratio_max)}; largest "
                   f"recurrent eigenvalue modulus {_g(radius)}). Small recurrent updates move the state a lot: "
                   "lower the learning rate of the recurrent weights, normalise the input to the recurrence "
                   "(e.g. by sqrt(1 - |lambda|^2)) or use an LRU/SSM-style parametrisation")
        extra = {"measured": {"ratio": sens["ratio"], "max_modulus": radius,
                              "recurrent_ms": sens.get("recurrent_ms"), "input_ms": sens.get("input_ms")},
                 "threshold": {"sensitivity_ratio_max": th.sensitivity_ratio_max},
                 "confirms": confirms}
        out.append(loc.finding("RNN903", message, layer.get("line"), extra))
    return out


def _rnn904(m: Dict[str, Any], th: Thresholds, loc: Locator) -> List[Finding]:
    cur = m.get("curvature")
    if not cur or cur.get("top_eigenvalue") is None or cur.get("lr") is None:
        return []
    # Only plain/momentum SGD has the 2/lr limit; adaptive optimizers rescale each coordinate.
    if cur.get("optimizer") != "SGD":
        return []
    top, lr, momentum = cur["top_eigenvalue"], cur["lr"], cur.get("momentum") or 0.0
    limit = th.lr_curvature_max * (1.0 + momentum)
    if not top * lr > limit:
        return []
    message = (f"learning rate {_g(lr)} x top Hessian eigenvalue {_g(top)} = {_g(top * lr)} exceeds {_g(limit)} "
               f"(SGD stability limit{' with momentum' if momentum else ''}): steps overshoot along the "
               f"sharpest direction. Use lr below {_g(limit / top)} or clip/normalise the gradients")
    extra = {"measured": {"top_eigenvalue": top, "lr": lr, "product": top * lr, "momentum": momentum,
                          "iterations": cur.get("iterations")},
             "threshold": {"lr_curvature_max": th.lr_curvature_max, "limit": limit},
             "confirms": None}
    return [loc.finding("RNN904", message, _anchor(m), extra)]


def _rnn905(m: Dict[str, Any], th: Thresholds, loc: Locator) -> List[Finding]:
    out = []
    for layer in _layers(m):
        stats = layer.get("input")
        if not stats or stats.get("std") is None:
            continue
        problems = []
        if stats["feature_abs_mean_max"] > th.input_mean_max:
            problems.append(f"a feature has |mean| {_g(stats['feature_abs_mean_max'])} (limit {_g(th.input_mean_max)})")
        if stats["feature_std_max"] > th.input_std_max:
            problems.append(f"a feature has std {_g(stats['feature_std_max'])} (limit {_g(th.input_std_max)})")
        if stats["std"] < th.input_std_min:
            problems.append(f"the std of all inputs is {_g(stats['std'])} (limit {_g(th.input_std_min)})")
        if not problems:
            continue
        message = (f"inputs reaching {_label(layer)} are far from the 0/1 scale: " + "; ".join(problems)
                   + f" (mean {_g(stats['mean'])}, std {_g(stats['std'])}, range [{_g(stats['min'])}, "
                   f"{_g(stats['max'])}]). Standardise each feature with statistics of the training split")
        extra = {"measured": stats,
                 "threshold": {"input_mean_max": th.input_mean_max, "input_std_max": th.input_std_max,
                               "input_std_min": th.input_std_min},
                 "confirms": "RNN301"}
        out.append(loc.finding("RNN905", message, layer.get("line"), extra))
    return out


def _rnn906(m: Dict[str, Any], th: Thresholds, loc: Locator) -> List[Finding]:
    out = []
    for layer in _layers(m):
        sat = layer.get("saturation")
        if not sat or not sat["fraction"] > th.saturation_fraction_max:
            continue
        gates = sat.get("gates") or {}
        worst = max(gates, key=gates.get) if gates else None
        worst_text = f"; most saturated: {worst} {gates[worst]:.0%}" if worst else ""
        message = (f"{sat['fraction']:.0%} of the tanh/sigmoid units and gates of {_label(layer)} are saturated "
                   f"on the probe batch (derivative < 1% of its peak; limit {th.saturation_fraction_max:.0%}"
                   f"{worst_text}): little gradient passes them. Scale the inputs, shrink the initial "
                   "weights, or lower the learning rate")
        extra = {"measured": {"fraction": sat["fraction"], "gates": gates},
                 "threshold": {"saturation_fraction_max": th.saturation_fraction_max},
                 "confirms": None}
        out.append(loc.finding("RNN906", message, layer.get("line"), extra))
    return out


def _rnn907(m: Dict[str, Any], th: Thresholds, loc: Locator) -> List[Finding]:
    bad = m.get("nonfinite")
    if not bad:
        return []
    where = bad["where"]
    if where == "output":
        what = f"{bad['value']} in the output of '{bad['module']}' ({bad['module_type']})"
        hint = ("its input already contained non-finite values: clean or impute the data (missing values?)"
                if bad.get("input_nonfinite") else
                "it was the first module to produce one: check its weights, a log/sqrt/division in it, "
                "or the learning rate")
    elif where == "loss":
        what, hint = f"{bad['value']} loss", "check the loss inputs and the data"
    else:
        what = f"{bad['value']} gradient of '{bad['module']}'"
        hint = "clip the gradients and lower the learning rate"
    message = f"non-finite values: {what} at probe step {bad['step'] + 1} (limit: none allowed); {hint}"
    line = next((layer.get("line") for layer in _layers(m) if layer["name"] == bad.get("layer")), None)
    extra = {"measured": bad, "threshold": "finite", "confirms": None}
    return [loc.finding("RNN907", message, line or _anchor(m), extra)]


def _rnn908(m: Dict[str, Any], th: Thresholds, loc: Locator) -> List[Finding]:
    losses = m.get("loss") or []
    if len(losses) < 2 or any(v is not None and not _finite(v) for v in losses):
        return []  # a non-finite loss is RNN907's; steps without a loss (None) are skipped
    change = relative_range(losses)
    update = m.get("update_ratio")
    frozen = [layer["name"] for layer in _layers(m) if layer.get("received_grad") is False]
    reasons = []
    if change is not None and change < th.loss_change_min:
        reasons.append(f"the loss changed by {_g(change)} (relative) over {len(losses)} steps "
                       f"(limit {_g(th.loss_change_min)})")
    if update is not None and update < th.update_ratio_min:
        reasons.append(f"the model's weights moved by {_g(update)} (relative; limit {_g(th.update_ratio_min)})")
    if frozen:
        reasons.append("recurrent layer(s) " + ", ".join(f"'{n}'" for n in frozen)
                       + f" received no gradient in {len(losses)} steps (limit: some gradient; graph detached "
                       "before them?)")
    if not reasons:
        return []
    known = [v for v in losses if v is not None]
    span = f" (loss {_g(known[0])} -> {_g(known[-1])})" if known else ""
    message = ("loss not moving: " + "; ".join(reasons) + f"{span}. "
               "Check that the optimizer holds this model's parameters, that the learning rate is not 0, "
               "and that no detach()/no_grad cuts the graph")
    extra = {"measured": {"loss_relative_change": change, "update_ratio": update, "frozen_layers": frozen,
                          "loss": losses},
             "threshold": {"loss_change_min": th.loss_change_min, "update_ratio_min": th.update_ratio_min},
             "confirms": None}
    return [loc.finding("RNN908", message, _anchor(m), extra)]

