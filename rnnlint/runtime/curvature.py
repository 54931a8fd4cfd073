"""Top Hessian eigenvalue of the loss by power iteration on Hessian-vector products (RNN904)."""

from __future__ import annotations

from typing import Any, Dict, List, Sequence

import torch
from torch import Tensor


def top_hessian_eigenvalue(loss: Tensor, params: Sequence[Tensor], iterations: int = 20,
                           tol: float = 1e-3, seed: int = 0) -> Dict[str, Any]:
    """Largest-magnitude Hessian eigenvalue at the current weights.

    The loss graph stays usable afterwards (create_graph keeps it), so the caller's own
    backward() still works. The start vector comes from a private generator: the user's
    random stream is not consumed.
    """
    params = [p for p in params if p.requires_grad]
    grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
    pairs = [(p, g) for p, g in zip(params, grads) if g is not None and g.requires_grad]
    if not pairs:
        return {"top_eigenvalue": None, "iterations": 0, "converged": False,
                "note": "the loss gradient does not depend on the weights (linear loss?)"}
    ps, gs = [p for p, _ in pairs], [g for _, g in pairs]
    gen = torch.Generator(device="cpu").manual_seed(seed)
    vec = [torch.randn(p.shape, generator=gen, dtype=p.dtype).to(p.device) for p in ps]
    vec = _normalise(vec)
    value, converged, done = 0.0, False, 0
    for done in range(1, iterations + 1):
        hv = torch.autograd.grad(gs, ps, grad_outputs=vec, retain_graph=True, allow_unused=True)
        hv = [h if h is not None else torch.zeros_like(p) for h, p in zip(hv, ps)]
        new_value = sum((h * v).sum() for h, v in zip(hv, vec)).item()
        if _norm(hv) == 0:
            value = 0.0
            converged = True
            break
        vec = _normalise([h.detach() for h in hv])
        if done > 1 and abs(new_value - value) <= tol * abs(new_value):
            value, converged = new_value, True
            break
        value = new_value
    return {"top_eigenvalue": value, "iterations": done, "converged": converged}


def _norm(vec: List[Tensor]) -> float:
    return float(torch.sqrt(sum((v.double() ** 2).sum() for v in vec)).item())


def _normalise(vec: List[Tensor]) -> List[Tensor]:
    n = _norm(vec)
    return [v / n for v in vec] if n > 0 else vec
