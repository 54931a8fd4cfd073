"""Small pure-Python statistics over measured series (torch-free, used by both processes)."""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence

# Effective memory: how many steps back the gradient keeps at least 1% of its size.
MEMORY_LEVEL = 0.01


def finite(values: Sequence[float]) -> List[float]:
    return [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    n = len(ordered)
    if n == 0:
        return float("nan")
    mid = n // 2
    return float(ordered[mid]) if n % 2 else 0.5 * (ordered[mid - 1] + ordered[mid])


def log_slope(points: Sequence[tuple]) -> float:
    """Least-squares slope of y over x."""
    n = len(points)
    mx = sum(p[0] for p in points) / n
    my = sum(p[1] for p in points) / n
    sxx = sum((p[0] - mx) ** 2 for p in points)
    sxy = sum((p[0] - mx) * (p[1] - my) for p in points)
    return sxy / sxx if sxx > 0 else 0.0


def fit_decay(values: Sequence[float]) -> Optional[Dict[str, Any]]:
    """Fit |dL/dh_t| = a * factor**k, k counting steps back from the last step with a gradient.

    values are in forward time order (t = 0 .. T-1). An exact zero ends the fit and counts as
    vanished: everything further back is zero too, so dropping it would hide the loss of memory.
    """
    back = list(reversed([float(v) for v in values]))
    start = next((k for k, v in enumerate(back) if math.isfinite(v) and v > 0), None)
    if start is None or any(not math.isfinite(v) for v in back):
        return None
    points = []
    vanished_at: Optional[int] = None
    for k in range(start, len(back)):
        if back[k] == 0.0:
            vanished_at = k - start
            break
        points.append((k - start, math.log(back[k])))
    if len(points) >= 2:
        factor = math.exp(log_slope(points))
    elif vanished_at is not None:
        factor = 0.0
    else:
        return None
    span = len(back) - start
    if factor <= 0.0:
        memory = 0.0
    elif factor >= 1.0:
        memory = float(span)
    else:
        memory = min(float(span), math.log(MEMORY_LEVEL) / math.log(factor))
    if vanished_at is not None:
        memory = min(memory, float(vanished_at))
    return {
        "factor": factor,
        "memory_steps": memory,
        "vanished_at": vanished_at,
        "fit_points": len(points),
        "first_step_back": start,
    }


def norm_growth(norms: Sequence[float]) -> Dict[str, Any]:
    """Early-vs-late growth, the largest spike over the median, and the maximum of a norm series."""
    ok = finite(norms)
    if not ok:
        return {"max": None, "growth": None, "spike": None}
    head = max(1, min(3, len(ok) // 3))
    early = median(ok[:head])
    late = median(ok[-head:])
    mid = median(ok)
    return {
        "max": max(ok),
        "argmax": list(norms).index(max(ok)),
        "growth": late / early if early > 0 else None,
        "spike": max(ok) / mid if mid > 0 and len(ok) >= 5 else None,
    }


def relative_range(values: Sequence[float]) -> Optional[float]:
    ok = finite(values)
    if len(ok) < 2:
        return None
    scale = max(abs(sum(ok) / len(ok)), 1e-12)
    return (max(ok) - min(ok)) / scale


def json_safe(value: Any) -> Any:
    """Strict-JSON copy: non-finite floats become the strings 'nan', 'inf', '-inf'."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value
