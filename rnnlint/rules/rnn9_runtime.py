"""RNN9xx: runtime measurements. Metadata only: rnnlint.runtime measures them.

They are listed here so that `rnnlint rules`, `explain`, --select and the
config validation know every code without importing torch.
"""

from __future__ import annotations

from rnnlint.findings import Severity
from rnnlint.rules.base import RUNTIME_META, RuleMeta

RUNTIME_META.extend(
    [
        RuleMeta("RNN901", "exploding-gradients", Severity.WARNING, ("torch",),
                 "Measured global gradient norm grows by orders of magnitude, spikes, or becomes inf/NaN.", "runtime"),
        RuleMeta("RNN902", "vanishing-through-time", Severity.WARNING, ("torch",),
                 "Measured dL/dh_t decays exponentially back in time; effective memory is far shorter than the sequence.", "runtime"),
        RuleMeta("RNN903", "memory-sensitivity", Severity.INFO, ("torch",),
                 "Recurrent Jacobian eigenvalues near the unit circle make the state hypersensitive to recurrent weights.", "runtime"),
        RuleMeta("RNN904", "lr-exceeds-curvature", Severity.WARNING, ("torch",),
                 "Learning rate times the top Hessian eigenvalue exceeds 2 (the SGD stability limit).", "runtime"),
        RuleMeta("RNN905", "inputs-unscaled-measured", Severity.WARNING, ("torch",),
                 "Inputs measured at the recurrent layer have mean or std far from the 0/1 scale.", "runtime"),
        RuleMeta("RNN906", "saturated-gates", Severity.WARNING, ("torch",),
                 "A large fraction of tanh/sigmoid units or gates are saturated on the probe batch.", "runtime"),
        RuleMeta("RNN907", "non-finite", Severity.ERROR, ("torch",),
                 "NaN or inf in the loss, activations or gradients; names the first module that produced it.", "runtime"),
        RuleMeta("RNN908", "loss-not-moving", Severity.WARNING, ("torch",),
                 "The loss does not change over the probe steps (frozen learning rate, detached graph).", "runtime"),
    ]
)
