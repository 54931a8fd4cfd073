"""What is captured from one recurrent module during a real training step, and its analysis.

Three shapes of recurrence are understood: torch's fused layers (nn.RNN/LSTM/GRU), cells called
in a hand-written loop (nn.RNNCell/LSTMCell/GRUCell), and custom modules whose own parameters
form a recurrence (found by analysis.custom_recurrence).

|dL/dh_t| needs care with fused layers: the grad of their output tensor holds only the direct
term of the loss at each step (zero before the last step when the loss reads the last step);
the part that flows back through the recurrence stays inside the fused kernel. So after the
real backward, the layer is replayed one step at a time and the real output gradients are
pushed through the replay, which exposes the total derivative at every step.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from rnnlint.runtime import analysis, cells
from rnnlint.runtime.stats import fit_decay

MAX_REPLAY_STEPS = 4096  # longer sequences skip the step-by-step replay (time, memory)
MAX_CELL_CALLS = 4096


class LayerProbe:
    """One recurrent module: armed at a training forward, measured once its gradients exist."""

    def __init__(self, module: nn.Module, name: str, kind: str, line: Optional[int]) -> None:
        self.module = module
        self.name = name
        self.kind = kind
        self.line = line
        self.result: Optional[Dict[str, Any]] = None
        self.received_grad: Optional[bool] = None
        self.rejected = False  # a custom candidate that turned out not to be a recurrence

    def arm(self, args: Tuple[Any, ...], kwargs: Dict[str, Any], output: Any, forward_id: int) -> None:
        raise NotImplementedError

    def measure(self, seed: int, final: bool = False) -> None:
        """Set self.result once the armed capture has gradients; may be called every step.

        With final=True (the probe is over) a capture without gradients is measured too, with
        |dL/dh_t| left out: no gradient ever reached the layer.
        """
        raise NotImplementedError

    def note_gradients(self) -> None:
        params = [p for p in self.module.parameters() if p.requires_grad]
        if not params:
            return  # deliberately frozen: not a finding
        got = any(p.grad is not None and bool(p.grad.detach().abs().sum() > 0) for p in params)
        self.received_grad = bool(self.received_grad) or got

    def record(self, **fields: Any) -> Dict[str, Any]:
        dldh = fields.get("dldh")
        base = {"name": self.name, "module": type(self.module).__name__, "kind": self.kind, "line": self.line,
                "decay": fit_decay(dldh) if dldh else None}
        base.update(fields)
        return base


def _first(out: Any) -> Any:
    return out[0] if isinstance(out, (tuple, list)) else out


def _h_of(state: Any) -> Optional[Tensor]:
    """The h part of a recurrent state: LSTM states are (h, c)."""
    return state[0] if isinstance(state, (tuple, list)) else state


def _detach(state: Any) -> Any:
    if state is None:
        return None
    if isinstance(state, (tuple, list)):
        return tuple(s.detach() for s in state)
    return state.detach()


def _norms_over_time(g: Tensor) -> List[float]:
    """|g_t| over (T, ...) as floats."""
    return g.detach().reshape(g.shape[0], -1).double().norm(dim=1).tolist()


class BuiltinRNN(LayerProbe):
    """nn.RNN / nn.LSTM / nn.GRU, unidirectional, tensor input (packed input is only scaled)."""

    def arm(self, args: Tuple[Any, ...], kwargs: Dict[str, Any], output: Any, forward_id: int) -> None:
        module = self.module
        x = args[0] if args else kwargs.get("input")
        hx = args[1] if len(args) > 1 else kwargs.get("hx")
        out, state = output
        if isinstance(x, PackedSequence) or module.bidirectional:
            why = "packed input" if isinstance(x, PackedSequence) else "bidirectional layer"
            data = x.data if isinstance(x, PackedSequence) else x
            self.result = self.record(input=analysis.input_stats(data), dldh=None, dldh_note=f"not measured: {why}")
            return
        if not out.requires_grad:
            return
        out.retain_grad()
        for s in (state if isinstance(state, tuple) else (state,)):
            s.retain_grad()
        self._armed = (x.detach(), _detach(hx), out, state)

    def measure(self, seed: int, final: bool = False) -> None:
        armed = getattr(self, "_armed", None)
        if armed is None or (armed[2].grad is None and not final):
            return
        self._armed = None
        x, hx, out, state = armed
        reached = out.grad is not None
        module: Any = self.module
        unbatched = x.dim() == 2
        time_dim = 0 if (unbatched or not module.batch_first) else 1
        xs = x.unsqueeze(1) if unbatched else x.transpose(0, time_dim)  # (T, B, D)
        steps, batch = xs.shape[0], xs.shape[1]
        fields: Dict[str, Any] = {"hidden_size": module.hidden_size, "num_layers": module.num_layers,
                                  "seq_len": steps, "batch": batch, "input": analysis.input_stats(xs)}
        if steps > MAX_REPLAY_STEPS:
            self.result = self.record(dldh=None, dldh_note=f"not measured: {steps} steps is over the replay limit",
                                      **fields)
            return
        states = list(state) if isinstance(state, tuple) else [state]
        state_grads = [s.grad if s.grad is not None else torch.zeros_like(s) for s in states]
        out_grad = out.grad if reached else torch.zeros_like(out)
        h_steps, c_steps, dldh = self._replay(x, hx, time_dim, out_grad, state_grads)
        if not reached:
            fields["dldh_note"] = "not measured: no gradient reached this layer"
        hs = _per_layer(h_steps, module.num_layers, unbatched)
        cs = _per_layer(c_steps, module.num_layers, unbatched) if c_steps else None
        h0 = [torch.zeros_like(h[0]) for h in hs] if hx is None else list(
            _h_of(hx).reshape(module.num_layers, batch, -1))
        c0 = None
        if cs is not None:
            c0 = [torch.zeros_like(c[0]) for c in cs] if hx is None else list(
                hx[1].reshape(module.num_layers, batch, -1))
        layers_in = [xs] + hs[:-1]
        sat_layers, eigen, sens = [], None, None
        for layer in range(module.num_layers):
            w = cells.layer_weights(module, layer)
            cl = cs[layer] if cs is not None else None
            c0l = c0[layer] if c0 is not None else None
            sat_layers.append((w, layers_in[layer], hs[layer], cl, (h0[layer], c0l)))
            last = (hs[layer][-2], cl[-2] if cl is not None else None) if steps > 1 else (h0[layer], c0l)
            eig = analysis.builtin_eigen(self.kind, w, layers_in[layer][-1], last)
            if eig is not None and (eigen is None or eig["max_modulus"] > eigen["max_modulus"]):
                eigen = dict(eig, layer=layer)
            sen = analysis.builtin_sensitivity(self.kind, w, layers_in[layer])
            if sen["ratio"] is not None and (sens is None or sen["ratio"] > sens["ratio"]):
                sens = dict(sen, layer=layer)
        self.result = self.record(dldh=dldh if reached else None,
                                  saturation=analysis.saturation(self.kind, sat_layers),
                                  eigen=eigen, sensitivity=sens, **fields)

    def _replay(self, x: Tensor, hx: Any, time_dim: int, out_grad: Tensor,
                state_grads: List[Tensor]) -> Tuple[List[Tensor], List[Tensor], List[float]]:
        """Re-run the layer one step at a time and push the real gradients through the replay.

        Returns the state after every step (h and, for LSTM, c; all layers) and |dL/dh_t| of the
        top layer: the direct term plus what flows back from later steps.
        """
        module: Any = self.module
        was_training = module.training
        module.train(False)  # no inter-layer dropout in the replay
        try:
            with torch.enable_grad(), torch.backends.cudnn.flags(enabled=False):
                s, outs, states = hx, [], []
                for t in range(x.shape[time_dim]):
                    o, s = module.forward(x.narrow(time_dim, t, 1), s)
                    outs.append(o)
                    states.append(s)
                h_steps = [_h_of(st) for st in states]
                finals = list(states[-1]) if isinstance(states[-1], tuple) else [states[-1]]
                inner = h_steps[:-1]
                grads = torch.autograd.grad([torch.cat(outs, time_dim)] + finals, inner,
                                            grad_outputs=[out_grad] + state_grads,
                                            allow_unused=True) if inner else ()
        finally:
            module.train(was_training)
        through = [g if g is not None else torch.zeros_like(h) for g, h in zip(grads, inner)] + [state_grads[0]]
        total = torch.stack([out_grad.select(time_dim, t) + through[t][-1] for t in range(len(through))])
        c_steps = [st[1].detach() for st in states] if isinstance(states[-1], tuple) else []
        return [h.detach() for h in h_steps], c_steps, _norms_over_time(total)


def _per_layer(steps: List[Tensor], layers: int, unbatched: bool) -> List[Tensor]:
    """Per-step states (L, B, H) (or (L, H) unbatched) as one (T, B, H) sequence per layer."""
    stacked = torch.stack(steps)
    if unbatched:
        stacked = stacked.unsqueeze(2)
    return [stacked[:, layer] for layer in range(layers)]


class CellLoop(LayerProbe):
    """nn.RNNCell / LSTMCell / GRUCell called once per time step by the user's loop."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._calls: List[Tuple[int, Tensor, Any, Any]] = []

    def arm(self, args: Tuple[Any, ...], kwargs: Dict[str, Any], output: Any, forward_id: int) -> None:
        h = _h_of(output)
        if not h.requires_grad:
            return
        h.retain_grad()  # h feeds the next call directly, so its grad is the total derivative
        hx = args[1] if len(args) > 1 else kwargs.get("hx")
        self._calls.append((forward_id, args[0].detach(), _detach(hx), output))
        del self._calls[:-MAX_CELL_CALLS]

    def measure(self, seed: int, final: bool = False) -> None:
        calls, self._calls = self._calls, []
        if not calls:
            return
        last = calls[-1][0]
        seq = [c for c in calls if c[0] == last]  # the calls of the latest model forward
        reached = any(_h_of(c[3]).grad is not None for c in seq)
        if not reached and not final:
            return
        shapes = {c[1].shape for c in seq}
        if len(shapes) != 1:
            return
        unbatched = seq[0][1].dim() == 1
        fix = (lambda t: t.unsqueeze(1)) if unbatched else (lambda t: t)
        xs = fix(torch.stack([c[1] for c in seq]))
        hs = fix(torch.stack([_h_of(c[3]).detach() for c in seq]))
        cs = fix(torch.stack([c[3][1].detach() for c in seq])) if self.kind == "LSTM" else None
        dldh = [float(_h_of(c[3]).grad.double().norm()) if _h_of(c[3]).grad is not None else 0.0 for c in seq]
        w = cells.layer_weights(self.module)
        h0, c0 = cells.zero_state(self.kind, w, xs.shape[1])
        hx = seq[0][2]
        if hx is not None:
            h0 = fix(_h_of(hx).unsqueeze(0))[0]
            c0 = fix(hx[1].unsqueeze(0))[0] if self.kind == "LSTM" else None
        last_state = (hs[-2], cs[-2] if cs is not None else None) if len(seq) > 1 else (h0, c0)
        module: Any = self.module
        self.result = self.record(
            hidden_size=module.hidden_size, num_layers=1, seq_len=len(seq), batch=xs.shape[1],
            input=analysis.input_stats(xs), dldh=dldh if reached else None,
            dldh_note=None if reached else "not measured: no gradient reached this layer",
            saturation=analysis.saturation(self.kind, [(w, xs, hs, cs, (h0, c0))]),
            eigen=analysis.builtin_eigen(self.kind, w, xs[-1], last_state),
            sensitivity=analysis.builtin_sensitivity(self.kind, w, xs))


class CustomRecurrence(LayerProbe):
    """A user module with its own parameters mapping (B, T, D) to (B, T, H)."""

    def arm(self, args: Tuple[Any, ...], kwargs: Dict[str, Any], output: Any, forward_id: int) -> None:
        self._x = args[0].detach()

    def measure(self, seed: int, final: bool = False) -> None:
        x = getattr(self, "_x", None)
        if x is None:
            return
        self._x = None
        was_training = self.module.training
        self.module.train(False)
        try:
            found = analysis.custom_recurrence(self.module, x, seed=seed)
        except Exception:  # noqa: BLE001 - user code we cannot trace: treat as not a recurrence
            found = None
        finally:
            self.module.train(was_training)
        if found is None:
            self.rejected = True
            return
        self.result = self.record(hidden_size=None, num_layers=1, seq_len=x.shape[1], batch=x.shape[0],
                                  input=analysis.input_stats(x), dldh=None,
                                  dldh_note="not measured for custom recurrences", saturation=None, **found)


def is_custom_candidate(module: nn.Module, args: Tuple[Any, ...], output: Any) -> bool:
    """A module of the user's own with direct parameters, batch-first 3-D float in and out."""
    if type(module).__module__.startswith("torch.") or not module._parameters:
        return False
    if any(isinstance(m, (nn.RNNBase, nn.RNNCellBase)) for m in module.modules()):
        return False
    y = _first(output)
    x = args[0] if args else None
    return (isinstance(x, Tensor) and isinstance(y, Tensor) and x.is_floating_point() and x.dim() == 3
            and y.dim() == 3 and x.shape[:2] == y.shape[:2])


def probe_class(module: nn.Module) -> Optional[type]:
    if isinstance(module, nn.RNNBase):
        return BuiltinRNN if cells.kind_of(module) else None
    if isinstance(module, nn.RNNCellBase):
        return CellLoop
    return None
