"""Firing thresholds of the runtime rules (RNN901-908), with the defaults the docs justify.

Torch-free: the parent process of script mode evaluates measurements with these.
Each default was chosen from measurements on fixtures/runtime (see rules/RNN9xx-*.md).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Dict, Mapping, Tuple, Union


@dataclass(frozen=True)
class Thresholds:
    # RNN901 exploding-gradients
    grad_norm_max: float = 1e3  # largest global gradient norm accepted at any probe step
    grad_growth_max: float = 100.0  # late-steps median over early-steps median
    grad_spike_factor: float = 50.0  # one step's norm over the median of all steps
    bptt_growth_factor: float = 1.1  # per step growth of |dL/dh_t| going back in time
    # RNN902 vanishing-through-time
    decay_factor_min: float = 0.5  # per step factor of |dL/dh_t| going back in time
    memory_fraction_min: float = 0.2  # effective memory as a fraction of the sequence length
    # RNN903 memory-sensitivity
    sensitivity_ratio_max: float = 30.0  # recurrent over input sensitivity of the hidden state
    # RNN904 lr-exceeds-curvature (opt-in)
    lr_curvature_max: float = 2.0  # lr * top Hessian eigenvalue (plain SGD limit)
    hessian_iterations: int = 20  # power-iteration budget
    # RNN905 inputs-unscaled-measured
    input_mean_max: float = 10.0  # largest |mean| of an input feature
    input_std_max: float = 10.0  # largest std of an input feature
    input_std_min: float = 1e-3  # smallest std of all inputs together
    # RNN906 saturated-gates
    saturation_fraction_max: float = 0.5  # fraction of tanh/sigmoid units with derivative < 1% of peak
    # RNN908 loss-not-moving
    loss_change_min: float = 1e-6  # relative change of the loss over the probe
    update_ratio_min: float = 1e-9  # relative change of the weights over the probe

    @classmethod
    def from_any(cls, value: Union["Thresholds", Mapping[str, Any], None]) -> "Thresholds":
        """Accept None (defaults), a Thresholds, or a dict of overrides (unknown keys are errors)."""
        if value is None:
            return cls()
        if isinstance(value, Thresholds):
            return value
        known = {f.name: f.type for f in fields(cls)}
        unknown = sorted(set(value) - set(known))
        if unknown:
            raise ValueError(f"unknown runtime threshold(s) {unknown}; known: {sorted(known)}")
        cast: Dict[str, Any] = {}
        defaults = asdict(cls())
        for key, raw in value.items():
            cast[key] = type(defaults[key])(raw)
        return replace(cls(), **cast)

    def as_dict(self) -> Dict[str, Any]:
        return asdict(self)



# The options each rule reads (its doc's Options section documents exactly these).
OPTIONS_BY_CODE: Dict[str, Tuple[str, ...]] = {
    "RNN901": ("grad_norm_max", "grad_growth_max", "grad_spike_factor", "bptt_growth_factor"),
    "RNN902": ("decay_factor_min", "memory_fraction_min"),
    "RNN903": ("sensitivity_ratio_max",),
    "RNN904": ("lr_curvature_max", "hessian_iterations"),
    "RNN905": ("input_mean_max", "input_std_max", "input_std_min"),
    "RNN906": ("saturation_fraction_max",),
    "RNN907": (),
    "RNN908": ("loss_change_min", "update_ratio_min"),
}
