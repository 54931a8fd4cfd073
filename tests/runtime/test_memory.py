"""Curse of memory (RNN903): the measured sensitivity reproduces the closed form.

For h_t = lam * h_{t-1} + x_t with unit white-noise input, s_t = dh_t/dlam has
E[s^2] -> (1 + lam^2) / (1 - lam^2)^3 and E[h^2] -> 1 / (1 - lam^2). From h_0 = 0 the variance
of s is above 99% of its limit after 5 / (1 - lam) steps; 6 / (1 - lam) steps are used. With
2000 sequences the standard error of the mean of s^2 is sqrt(2 / 2000), about 3%.
"""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from runtime_support import load_models  # noqa: E402

from rnnlint.runtime import analysis, cells  # noqa: E402
from rnnlint.runtime.stats import fit_decay  # noqa: E402


@pytest.mark.parametrize("lam", [0.9, 0.99])
def test_sensitivity_matches_closed_form(lam):
    steps = math.ceil(6 / (1 - lam))
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2000, steps, 1, generator=gen, dtype=torch.float64)
    found = analysis.custom_recurrence(load_models().ScalarLinearRecurrence(lam), x)
    assert found is not None
    sens = found["sensitivity"]
    assert sens["recurrent_params"] == ["lam"] and sens["input_params"] == []
    expected = (1 + lam ** 2) / (1 - lam ** 2) ** 3
    assert sens["recurrent_ms"] == pytest.approx(expected, rel=0.10)
    assert sens["state_ms"] == pytest.approx(1 / (1 - lam ** 2), rel=0.10)
    assert sens["ratio"] == pytest.approx(math.sqrt(1 + lam ** 2) / (1 - lam ** 2), rel=0.10)
    assert found["eigen"]["max_modulus"] == pytest.approx(lam, rel=1e-6)


def test_input_parameters_are_told_apart():
    model = load_models().DiagonalRecurrence(features=3, hidden=5, decay=0.9)
    found = analysis.custom_recurrence(model, torch.randn(64, 40, 3))
    assert found["sensitivity"]["recurrent_params"] == ["decay"]
    assert found["sensitivity"]["input_params"] == ["B"]


def test_feedforward_module_is_not_a_recurrence():
    class Mixer(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.randn(3, 4))

        def forward(self, x):
            return torch.tanh(x @ self.w)

    assert analysis.custom_recurrence(Mixer(), torch.randn(8, 10, 3)) is None


def test_vanilla_rnn_eigenvalues_are_those_of_w_hh():
    rnn = torch.nn.RNN(2, 6)
    torch.nn.init.orthogonal_(rnn.weight_hh_l0, gain=0.7)
    w = cells.layer_weights(rnn)
    eig = analysis.builtin_eigen("RNN_TANH", w, torch.zeros(1, 2), (torch.zeros(1, 6), None))
    assert eig["source"] == "W_hh (exact)"
    assert eig["max_modulus"] == pytest.approx(0.7, rel=1e-5)


def test_lstm_linearised_jacobian_matches_autograd():
    torch.manual_seed(1)
    lstm = torch.nn.LSTM(3, 4)
    w = cells.layer_weights(lstm)
    x, h, c = torch.randn(1, 3), torch.randn(1, 4), torch.randn(1, 4)
    eig = analysis.builtin_eigen("LSTM", w, x, (h, c))

    def step(z):
        h_new, c_new = cells.step("LSTM", w, x, (z[:4].unsqueeze(0), z[4:].unsqueeze(0)))
        return torch.cat([h_new, c_new], 1)[0]

    jac = torch.autograd.functional.jacobian(step, torch.cat([h, c], 1)[0].detach())
    truth = torch.linalg.eigvals(jac.double()).abs().max().item()
    assert eig["max_modulus"] == pytest.approx(truth, rel=1e-4)


def test_decay_fit_counts_exact_zero_as_vanished():
    assert fit_decay([0.0, 0.0, 0.0, 1e-4, 1e-2, 1.0])["vanished_at"] == 3
    assert fit_decay([0.0, 0.0, 0.0, 1e-4, 1e-2, 1.0])["factor"] == pytest.approx(0.01)
    gone = fit_decay([0.0, 0.0, 1.0])
    assert gone["factor"] == 0.0 and gone["memory_steps"] == 0.0
    steady = fit_decay([0.5 ** k for k in reversed(range(30))])
    assert steady["factor"] == pytest.approx(0.5) and steady["memory_steps"] == pytest.approx(math.log(100) / math.log(2))
