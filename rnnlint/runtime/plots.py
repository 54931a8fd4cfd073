"""PNG figures of a probe's measurements (matplotlib, Agg backend; torch-free)."""

from __future__ import annotations

import math
import os
from typing import Any, Dict, List


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only: never open a window, never need a display
    import matplotlib.pyplot as plt

    return plt


def _positive(values: List[Any]) -> List[float]:
    """Values for a log axis: non-finite and non-positive points become NaN gaps."""
    return [v if isinstance(v, (int, float)) and math.isfinite(v) and v > 0 else float("nan") for v in values]


def write_plots(measurements: Dict[str, Any], directory: str, prefix: str = "") -> List[str]:
    """Write the figures that have data; return their paths."""
    plt = _pyplot()
    os.makedirs(directory, exist_ok=True)
    written: List[str] = []

    def save(fig: Any, name: str) -> None:
        path = os.path.join(directory, f"{prefix}{name}.png")
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)

    norms = measurements.get("grad_norm") or []
    if norms:
        fig, ax = plt.subplots(figsize=(7, 4))
        steps = list(range(1, len(norms) + 1))
        ax.plot(steps, _positive(norms), "k-o", lw=2, ms=3, label="global")
        for name, series in sorted((measurements.get("layer_grad_norms") or {}).items())[:12]:
            ax.plot(steps[:len(series)], _positive(series), lw=1, label=name)
        ax.set_yscale("log")
        ax.set_xlabel("probe step")
        ax.set_ylabel("gradient norm")
        ax.set_title("Gradient norm per step, global and per layer")
        ax.legend(fontsize=7)
        save(fig, "grad_norms")

    layers = [layer for layer in measurements.get("layers") or [] if layer.get("dldh")]
    if layers:
        fig, ax = plt.subplots(figsize=(7, 4))
        for layer in layers:
            dldh = layer["dldh"]
            ts = list(range(len(dldh)))
            line, = ax.plot(ts, _positive(dldh), lw=1.5, label=f"{layer['name']} ({layer['module']})")
            decay = layer.get("decay") or {}
            factor = decay.get("factor")
            if factor:
                last = len(dldh) - 1 - decay.get("first_step_back", 0)
                anchor = dldh[last]
                fit = [anchor * factor ** (last - t) if t <= last else float("nan") for t in ts]
                ax.plot(ts, _positive(fit), "--", color=line.get_color(), lw=1,
                        label=f"fit: x{factor:.3g} per step back")
        ax.set_yscale("log")
        ax.set_xlabel("time step t")
        ax.set_ylabel("|dL/dh_t|")
        ax.set_title("Gradient reaching each time step, with fitted decay")
        ax.legend(fontsize=7)
        save(fig, "dldh")

    eig_layers = [layer for layer in measurements.get("layers") or [] if layer.get("eigen")]
    if eig_layers:
        fig, ax = plt.subplots(figsize=(5, 5))
        circle = [2 * math.pi * k / 200 for k in range(201)]
        ax.plot([math.cos(a) for a in circle], [math.sin(a) for a in circle], "k--", lw=1, label="unit circle")
        for layer in eig_layers:
            eig = layer["eigen"]
            ax.scatter(eig["real"], eig["imag"], s=12, alpha=0.7, label=f"{layer['name']} (max {eig['max_modulus']:.3g})")
        ax.set_aspect("equal", adjustable="datalim")
        ax.axhline(0, color="0.8", lw=0.5)
        ax.axvline(0, color="0.8", lw=0.5)
        ax.set_xlabel("real")
        ax.set_ylabel("imaginary")
        ax.set_title("Recurrent Jacobian eigenvalues")
        ax.legend(fontsize=7)
        save(fig, "eigenvalues")
    return written
