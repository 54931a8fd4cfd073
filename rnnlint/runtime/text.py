"""Compact text report with unicode sparklines (torch-free)."""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence

from rnnlint.findings import Finding

BARS = "▁▂▃▄▅▆▇█"
WIDTH = 40


def _resample(values: Sequence[Optional[float]], width: int) -> List[Optional[float]]:
    """At most `width` buckets; each keeps its largest finite value (spikes stay visible),
    or a non-finite one if the bucket has any."""
    if len(values) <= width:
        return list(values)
    out: List[Optional[float]] = []
    for i in range(width):
        chunk = values[i * len(values) // width:(i + 1) * len(values) // width]
        bad = [v for v in chunk if v is not None and not math.isfinite(v)]
        ok = [v for v in chunk if v is not None and math.isfinite(v)]
        out.append(bad[0] if bad else (max(ok) if ok else None))
    return out


def sparkline(values: Sequence[Optional[float]], width: int = WIDTH, log: bool = False) -> str:
    """Bars scaled between the series' min and max; '!' marks inf/NaN, ' ' an exact zero
    on a log scale, '·' a missing value."""
    points = _resample(values, width)

    def scaled(v: float) -> Optional[float]:
        if log:
            return math.log10(v) if v > 0 else None
        return v

    ok = [s for s in (scaled(v) for v in points if v is not None and math.isfinite(v)) if s is not None]
    lo, hi = (min(ok), max(ok)) if ok else (0.0, 0.0)
    chars = []
    for v in points:
        if v is None:
            chars.append("·")
        elif not math.isfinite(v):
            chars.append("!")
        else:
            s = scaled(v)
            if s is None:
                chars.append(" ")
            else:
                idx = 0 if hi == lo else int(round((s - lo) / (hi - lo) * (len(BARS) - 1)))
                chars.append(BARS[idx])
    return "".join(chars)


def _g(x: Any) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    return f"{x:.3g}"


def render(measurements: Dict[str, Any], findings: Sequence[Finding], title: str) -> str:
    m = measurements
    losses = [v for v in m.get("loss") or []]
    norms = m.get("grad_norm") or []
    lines = [f"{title}: {m.get('steps', 0)} probe step(s), {_g(m.get('seconds'))} s"]
    ok_losses = [v for v in losses if v is not None]
    if ok_losses:
        lines.append(f"  loss        {sparkline(losses):<{WIDTH}}  {_g(ok_losses[0])} -> {_g(ok_losses[-1])}")
    if norms:
        finite = [v for v in norms if math.isfinite(v)]
        span = f"{_g(min(finite))} .. {_g(max(finite))}" if finite else "non-finite"
        lines.append(f"  grad norm   {sparkline(norms, log=True):<{WIDTH}}  {span} (log scale)")
    for layer in m.get("layers") or []:
        head = f"  {layer['name']} ({layer['module']}"
        if layer.get("seq_len"):
            head += f", T={layer['seq_len']}"
        lines.append(head + ")")
        dldh = layer.get("dldh")
        decay = layer.get("decay") or {}
        if dldh:
            lines.append(f"    |dL/dh_t|  {sparkline(dldh, log=True):<{WIDTH}}  t=0..{len(dldh) - 1}, "
                         f"factor {_g(decay.get('factor'))}/step back, memory {_g(decay.get('memory_steps'))} steps")
        elif layer.get("dldh_note"):
            lines.append(f"    |dL/dh_t|  {layer['dldh_note']}")
        parts = []
        eigen, sens = layer.get("eigen"), layer.get("sensitivity")
        if eigen:
            parts.append(f"max |eig| {_g(eigen.get('max_modulus'))}")
        if sens:
            parts.append(f"sensitivity ratio {_g(sens.get('ratio'))}")
        stats = layer.get("input")
        if stats:
            parts.append(f"input mean {_g(stats['mean'])} std {_g(stats['std'])} "
                         f"range [{_g(stats['min'])}, {_g(stats['max'])}]")
        if layer.get("saturation"):
            parts.append(f"saturated {layer['saturation']['fraction']:.0%}")
        if parts:
            lines.append("    " + "; ".join(parts))
    cur = m.get("curvature")
    if cur:
        lines.append(f"  top Hessian eigenvalue {_g(cur.get('top_eigenvalue'))}, lr {_g(cur.get('lr'))}"
                     + (f" ({cur['note']})" if cur.get("note") else ""))
    if m.get("internal_errors"):
        lines.append("  note: some measurements failed and were left out: " + "; ".join(m["internal_errors"][:3]))
    if findings:
        lines.extend(f"  {f.code} {f.name}: {f.message}" for f in findings)
    else:
        lines.append("  no runtime findings")
    return "\n".join(lines)
