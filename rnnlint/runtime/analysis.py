"""Per-layer measurements from captured tensors: input scale, gate saturation, recurrent
Jacobian eigenvalues and the curse-of-memory sensitivity (RNN903, RNN905, RNN906).

Sensitivities use forward-mode AD (dual tensors): it gives d h_t / d theta per sequence. A
backward pass from h.sum() would add the per-sequence derivatives over the batch, and their
mean is zero for white-noise input, so the variance that matters would be lost. Raw
torch.autograd.forward_ad is used rather than torch.func.jvp: on long Python loops of small
ops the functorch dispatch costs several times the arithmetic.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.autograd.forward_ad as fwad
from torch import Tensor, nn
from torch.func import functional_call

from rnnlint.runtime import cells
from rnnlint.runtime.stats import log_slope

# A unit counts as saturated when its activation's derivative is below 1% of the peak:
# tanh'(a) = 1 - tanh(a)^2 < 0.01  <=>  |a| > atanh(sqrt(0.99));
# sigmoid'(a) < 0.01 * 0.25        <=>  |a| > logit((1 + sqrt(0.99)) / 2).
TANH_SATURATION = math.atanh(math.sqrt(0.99))
SIGMOID_SATURATION = math.log((1 + math.sqrt(0.99)) / (1 - math.sqrt(0.99)))
MAX_EIGEN_DIM = 1024  # larger Jacobians are skipped: eigvals cost grows as n^3
MAX_STORED = 512  # eigenvalues kept in the JSON


def jvp(fn: Callable[..., Tensor], primals: Sequence[Tensor], tangents: Sequence[Tensor]) -> Tuple[Tensor, Tensor]:
    """fn(primals) and its directional derivative along tangents."""
    with torch.no_grad(), fwad.dual_level(), warnings.catch_warnings():
        # The first make_dual loads torch's jvp decompositions through the deprecated
        # torch.jit.script; that warning is torch's own and would land in the user's output.
        warnings.simplefilter("ignore", DeprecationWarning)
        out = fn(*[fwad.make_dual(p, t) for p, t in zip(primals, tangents)])
        value, tangent = fwad.unpack_dual(out)
        value = value.clone()
        tangent = tangent.clone() if tangent is not None else torch.zeros_like(value)
    return value, tangent


def jacobian(fn: Callable[[Tensor], Tensor], z: Tensor) -> Tensor:
    """Jacobian of a per-sample map at one state z (1, n), in a single backward pass: n copies of
    z go through fn as a batch, and row i of the result is read off copy i."""
    n = z.shape[1]
    with torch.enable_grad():
        zs = z.detach().expand(n, n).clone().requires_grad_(True)
        out = fn(zs)
        (grad,) = torch.autograd.grad(out.diagonal().sum(), zs)
    return grad


def input_stats(x: Tensor) -> Optional[Dict[str, float]]:
    """Scale of the inputs, features on the last axis; non-finite entries are left out (RNN907's)."""
    flat = x.detach().reshape(-1, x.shape[-1]).double()
    ok = torch.isfinite(flat)
    if not ok.any():
        return None
    zero = torch.zeros((), dtype=flat.dtype, device=flat.device)
    vals = torch.where(ok, flat, zero)
    count = ok.sum(0).clamp(min=1)
    mean_f = vals.sum(0) / count
    var_f = (torch.where(ok, flat - mean_f, zero) ** 2).sum(0) / count
    finite_vals = flat[ok]
    return {
        "mean": finite_vals.mean().item(),
        "std": finite_vals.std(unbiased=False).item(),
        "min": finite_vals.min().item(),
        "max": finite_vals.max().item(),
        "feature_abs_mean_max": mean_f.abs().max().item(),
        "feature_std_max": var_f.sqrt().max().item(),
        "features": int(flat.shape[1]),
        "finite_fraction": ok.double().mean().item(),
    }


def saturation(kind: str, layers: Sequence[Tuple[cells.Weights, Tensor, Tensor, Optional[Tensor], cells.State]]
               ) -> Optional[Dict[str, Any]]:
    """Fraction of saturated tanh/sigmoid units over all steps, samples and layers.

    Each layer is (weights, inputs (T,B,D), h (T,B,H), c (T,B,H) or None, initial state).
    """
    if kind == "RNN_RELU":
        return None  # relu does not saturate
    counts: Dict[str, List[int]] = {}
    with torch.no_grad():
        for w, xs, hs, cs, (h0, c0) in layers:
            h_prev = torch.cat([h0.unsqueeze(0), hs[:-1]])
            c_prev = torch.cat([c0.unsqueeze(0), cs[:-1]]) if cs is not None else None
            pre = cells.preactivations(kind, w, xs, (h_prev, c_prev))
            if cs is not None:
                pre["cell output"] = cs  # tanh(c_t) feeds h_t
            for name, a in pre.items():
                limit = SIGMOID_SATURATION if name in cells.SIGMOID_GATES else TANH_SATURATION
                tally = counts.setdefault(name, [0, 0])
                tally[0] += int((a.abs() > limit).sum().item())
                tally[1] += a.numel()
    total = sum(t[1] for t in counts.values())
    if total == 0:
        return None
    return {
        "fraction": sum(t[0] for t in counts.values()) / total,
        "gates": {name: t[0] / t[1] for name, t in counts.items()},
    }


def _eigen_record(matrix: Tensor, source: str) -> Dict[str, Any]:
    vals = torch.linalg.eigvals(matrix.detach().double().cpu())
    order = vals.abs().argsort(descending=True)[:MAX_STORED]
    vals = vals[order]
    return {"source": source, "real": vals.real.tolist(), "imag": vals.imag.tolist(),
            "max_modulus": vals.abs().max().item() if vals.numel() else None}


def builtin_eigen(kind: str, w: cells.Weights, x_t: Tensor, state: cells.State) -> Optional[Dict[str, Any]]:
    """Eigenvalues of the recurrent Jacobian: W_hh itself for a vanilla RNN (its linear part is
    exact), the step's Jacobian at one probe state (sample 0, last step) for LSTM/GRU."""
    w_hh = w["w_hh"]
    assert w_hh is not None
    if kind in ("RNN_TANH", "RNN_RELU"):
        if w_hh.shape[0] > MAX_EIGEN_DIM:
            return None
        return _eigen_record(w_hh, "W_hh (exact)")
    h, c = state[0][:1].detach(), (state[1][:1].detach() if state[1] is not None else None)
    x = x_t[:1].detach()
    if h.shape[1] + (c.shape[1] if c is not None else 0) > MAX_EIGEN_DIM:
        return None
    w = {k: (v.detach() if v is not None else None) for k, v in w.items()}
    if c is not None:
        split = h.shape[1]

        def lstm_map(z: Tensor) -> Tensor:
            h_new, c_new = cells.step(kind, w, x.expand(z.shape[0], -1), (z[:, :split], z[:, split:]))
            assert c_new is not None
            return torch.cat([h_new, c_new], dim=1)

        jac = jacobian(lstm_map, torch.cat([h, c], dim=1))
    else:
        jac = jacobian(lambda z: cells.step(kind, w, x.expand(z.shape[0], -1), (z, None))[0], h)
    return _eigen_record(jac, "step Jacobian at a probe state (linearised)")


def unit_tangent(p: Tensor) -> Tensor:
    """A direction that moves the recurrence's largest eigenvalue modulus by about 1 per unit step:
    p scaled by its spectral norm (matrices) or by max |p| (diagonal / scalar recurrences)."""
    p = p.detach()
    scale = torch.linalg.matrix_norm(p, ord=2) if p.dim() == 2 else p.abs().max()
    return p / scale if scale > 0 else torch.ones_like(p)


def _relative(p: Tensor) -> Tensor:
    p = p.detach()
    return p.clone() if p.abs().max() > 0 else torch.ones_like(p)


def _ms(t: Tensor) -> float:
    return t.detach().double().pow(2).mean().item()


def sensitivity_record(state: Tensor, rec: Tensor, inp: Optional[Tensor], recurrent: List[str],
                       inputs: List[str]) -> Dict[str, Any]:
    """Mean squares over batch and units at the last step, and the ratio RNN903 thresholds.

    Without input parameters the reference is the state itself: for a linear recurrence a relative
    change of the input weights changes h by exactly h, so both references agree there.
    """
    rec_ms, state_ms = _ms(rec), _ms(state)
    inp_ms = _ms(inp) if inp is not None else None
    ref = inp_ms if inp_ms is not None else state_ms
    return {"recurrent_ms": rec_ms, "input_ms": inp_ms, "state_ms": state_ms,
            "ratio": math.sqrt(rec_ms / ref) if ref > 0 else None,
            "recurrent_params": recurrent, "input_params": inputs}


def builtin_sensitivity(kind: str, w: cells.Weights, xs: Tensor) -> Dict[str, Any]:
    """Sensitivity of the last hidden state to W_hh (recurrent) and W_ih (input), from h_0 = 0."""
    w = {k: (v.detach() if v is not None else None) for k, v in w.items()}
    w_hh, w_ih = w["w_hh"], w["w_ih"]
    assert w_hh is not None and w_ih is not None
    xs = xs.detach()
    state, rec = jvp(lambda m: cells.unroll(kind, {**w, "w_hh": m}, xs)[-1], (w_hh,), (unit_tangent(w_hh),))
    _, inp = jvp(lambda m: cells.unroll(kind, {**w, "w_ih": m}, xs)[-1], (w_ih,), (_relative(w_ih),))
    return sensitivity_record(state, rec, inp, ["weight_hh"], ["weight_ih"])


def _first_tensor(out: Any) -> Optional[Tensor]:
    if isinstance(out, Tensor):
        return out
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], Tensor):
        return out[0]
    return None


def custom_recurrence(module: nn.Module, x: Tensor, seed: int = 0) -> Optional[Dict[str, Any]]:
    """Measure a hand-written recurrence that maps (B, T, D) to (B, T, H), batch first.

    A parameter is recurrent when it cannot touch the first output (from a zero state it only
    multiplies that zero) but moves later ones; the others are input parameters. Without a
    recurrent parameter the module is not a recurrence and None is returned. Eigenvalue moduli
    come from the impulse response: per hidden unit, |d y_t / d x_0| decays as |lambda|^t, which
    is exact for a diagonal linear recurrence and the dominant rate otherwise.
    """
    params = {n: p for n, p in module.named_parameters() if p.is_floating_point() and p.requires_grad}
    fixed = {**{n: p.detach() for n, p in params.items()}, **dict(module.named_buffers())}
    x = x.detach()

    def call(overrides: Dict[str, Tensor], inp: Tensor = x) -> Tensor:
        out = _first_tensor(functional_call(module, {**fixed, **overrides}, (inp,)))
        if out is None:
            raise TypeError("no tensor output")
        return out

    with torch.no_grad():
        y = call({})
        if y.dim() != 3 or y.shape[:2] != x.shape[:2] or x.shape[1] < 3 or not params:
            return None
        recurrent, inputs = [], []
        for name, p in params.items():
            _, dy = jvp(lambda q, name=name: call({name: q}), (fixed[name],), (_relative(p),))
            first, later = dy[:, 0].abs().max().item(), dy[:, 1:].abs().max().item()
            if later > 0 and first <= 1e-6 * later:
                recurrent.append(name)
            else:
                inputs.append(name)
        if not recurrent:
            return None

        def joint(names: List[str]) -> Any:
            return lambda *qs: call(dict(zip(names, qs)))

        _, rec = jvp(joint(recurrent), tuple(fixed[n] for n in recurrent),
                     tuple(unit_tangent(fixed[n]) for n in recurrent))
        inp = None
        if inputs:
            _, inp = jvp(joint(inputs), tuple(fixed[n] for n in inputs), tuple(_relative(fixed[n]) for n in inputs))
        sens = sensitivity_record(y[:, -1], rec[:, -1], inp[:, -1] if inp is not None else None, recurrent, inputs)
        gen = torch.Generator(device="cpu").manual_seed(seed)
        kick = torch.zeros_like(x)
        kick[:, 0] = torch.randn(x[:, 0].shape, generator=gen, dtype=x.dtype).to(x.device)
        _, response = jvp(lambda inp_: call({}, inp_), (x,), (kick,))
    return {"sensitivity": sens, "eigen": _impulse_moduli(response)}


def _impulse_moduli(response: Tensor) -> Optional[Dict[str, Any]]:
    """Per-unit decay rate of the impulse response (B, T, H), fitted in log space over t >= 1."""
    rms = response.detach().double().pow(2).mean(0).sqrt()[1:]  # (T-1, H)
    moduli = []
    for unit in range(min(rms.shape[1], MAX_STORED)):
        series = rms[:, unit].tolist()
        points = []
        for t, v in enumerate(series):
            if not (v > 0 and math.isfinite(v)):
                break
            points.append((t, math.log(v)))
        if len(points) >= 2:
            moduli.append(math.exp(log_slope(points)))
    if not moduli:
        return None
    moduli.sort(reverse=True)
    return {"source": "impulse response per unit (exact for diagonal linear recurrences)",
            "real": moduli, "imag": [0.0] * len(moduli), "max_modulus": moduli[0]}
