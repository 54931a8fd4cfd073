"""The textbook RNN/LSTM/GRU step in plain tensor ops, fed with a torch module's own weights.

The fused kernels behind nn.RNN/LSTM/GRU support neither forward-mode AD nor per-gate
inspection, so sensitivity, Jacobians and gate saturation are computed on this replica.
The equations and gate order (i, f, g, o for LSTM; r, z, n for GRU) follow the PyTorch docs.
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

import torch
from torch import Tensor, nn

Weights = Dict[str, Optional[Tensor]]
State = Tuple[Tensor, Optional[Tensor]]  # (h, c); c is None except for LSTM


def kind_of(module: nn.Module) -> Optional[str]:
    """'RNN_TANH', 'RNN_RELU', 'LSTM' or 'GRU' for torch's recurrent layers and cells."""
    if isinstance(module, (nn.LSTM, nn.LSTMCell)):
        return "LSTM"
    if isinstance(module, (nn.GRU, nn.GRUCell)):
        return "GRU"
    if isinstance(module, nn.RNNBase):
        return module.mode if module.mode in ("RNN_TANH", "RNN_RELU") else None
    if isinstance(module, nn.RNNCell):
        return "RNN_RELU" if module.nonlinearity == "relu" else "RNN_TANH"
    return None


def layer_weights(module: nn.Module, layer: int = 0) -> Weights:
    """The forward-direction weights of one layer (cells have a single, unsuffixed layer)."""
    suffix = f"_l{layer}" if isinstance(module, nn.RNNBase) else ""

    def get(name: str) -> Optional[Tensor]:
        return getattr(module, name + suffix, None)

    return {"w_ih": get("weight_ih"), "w_hh": get("weight_hh"), "b_ih": get("bias_ih"),
            "b_hh": get("bias_hh"), "w_hr": get("weight_hr")}


def _affine(x: Tensor, w: Tensor, b: Optional[Tensor]) -> Tensor:
    out = x @ w.t()
    return out + b if b is not None else out


def preactivations(kind: str, w: Weights, x: Tensor, state: State) -> Dict[str, Tensor]:
    """Pre-activations of every tanh/sigmoid unit of one step, keyed by gate name."""
    h, c = state
    gi = _affine(x, w["w_ih"], w["b_ih"])
    gh = _affine(h, w["w_hh"], w["b_hh"])
    if kind == "LSTM":
        i, f, g, o = (gi + gh).chunk(4, dim=-1)
        return {"input gate": i, "forget gate": f, "cell candidate": g, "output gate": o}
    if kind == "GRU":
        ri, zi, ni = gi.chunk(3, dim=-1)
        rh, zh, nh = gh.chunk(3, dim=-1)
        r = ri + rh
        return {"reset gate": r, "update gate": zi + zh, "candidate": ni + torch.sigmoid(r) * nh}
    return {"hidden": gi + gh}


SIGMOID_GATES = ("input gate", "forget gate", "output gate", "reset gate", "update gate")


def step(kind: str, w: Weights, x: Tensor, state: State) -> State:
    """One recurrent step: (h, c) -> (h', c')."""
    h, c = state
    pre = preactivations(kind, w, x, state)
    if kind == "LSTM":
        c_new = torch.sigmoid(pre["forget gate"]) * c + torch.sigmoid(pre["input gate"]) * torch.tanh(
            pre["cell candidate"])
        h_new = torch.sigmoid(pre["output gate"]) * torch.tanh(c_new)
        if w.get("w_hr") is not None:
            h_new = h_new @ w["w_hr"].t()
        return h_new, c_new
    if kind == "GRU":
        z = torch.sigmoid(pre["update gate"])
        return (1 - z) * torch.tanh(pre["candidate"]) + z * h, None
    if kind == "RNN_RELU":
        return torch.relu(pre["hidden"]), None
    return torch.tanh(pre["hidden"]), None


def zero_state(kind: str, w: Weights, batch: int) -> State:
    w_hh = w["w_hh"]
    assert w_hh is not None
    h = w_hh.new_zeros(batch, w_hh.shape[1])
    hidden = w_hh.shape[0] // {"LSTM": 4, "GRU": 3}.get(kind, 1)
    return h, (w_hh.new_zeros(batch, hidden) if kind == "LSTM" else None)


def unroll(kind: str, w: Weights, xs: Tensor, state: Optional[State] = None) -> Tensor:
    """Run the step over xs (T, B, D) and return the hidden states (T, B, H)."""
    if state is None:
        state = zero_state(kind, w, xs.shape[1])
    hs = []
    for t in range(xs.shape[0]):
        state = step(kind, w, xs[t], state)
        hs.append(state[0])
    return torch.stack(hs)
