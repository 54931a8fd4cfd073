"""rnnlint.runtime.probe(): each fixture model gets exactly its codes, with numbers attached."""

from __future__ import annotations

import json
import math

import pytest

torch = pytest.importorskip("torch")

from runtime_support import SPARK, load_models, probe_case  # noqa: E402

from rnnlint.runtime import RuntimeReport, Thresholds, probe  # noqa: E402

CASES = sorted(load_models().CASES)


@pytest.fixture(scope="module")
def reports():
    """Each case probed once; several tests read the same report."""
    return {name: probe_case(name) for name in CASES}


@pytest.mark.parametrize("name", CASES)
def test_exact_codes(reports, name):
    report, case = reports[name]
    assert isinstance(report, RuntimeReport)
    assert {f.code for f in report.findings} == case["expected"], report.render_text()


@pytest.mark.parametrize("name", ["healthy_lstm", "healthy_gru", "healthy_cells"])
def test_controls_are_silent(reports, name):
    assert reports[name][0].findings == []


def test_messages_name_measured_number_threshold_and_fix(reports):
    for name in CASES:
        for f in reports[name][0].findings:
            assert "limit" in f.message, f.message
            assert any(ch.isdigit() for ch in f.message)
            assert {"measured", "threshold", "confirms"} <= set(f.extra)
            json.dumps(f.to_json(), allow_nan=False)  # strict JSON for the reporters


def test_confirmed_static_codes(reports):
    confirms = {f.code: f.extra["confirms"] for name in CASES for f in reports[name][0].findings}
    assert confirms["RNN901"] == "RNN101"
    assert confirms["RNN905"] == "RNN301"
    assert confirms["RNN904"] is None
    by_case = {f.code: f.extra["confirms"] for f in reports["vanishing_rnn"][0].findings}
    assert by_case["RNN902"] == "RNN602"  # vanilla RNN whose measured recurrent radius is 0.5
    assert {f.code: f.extra["confirms"] for f in reports["diagonal_recurrence"][0].findings} == {"RNN903": "RNN604"}


def test_measurements_are_plain_json(reports):
    report = reports["exploding_rnn"][0]
    text = json.dumps(report.measurements)
    assert json.loads(text)["steps"] == 20
    layer = report.measurements["layers"][0]
    assert len(layer["dldh"]) == layer["seq_len"] == 50
    assert len(report.measurements["grad_norm"]) == 20
    assert layer["line"] is None  # probe() cannot know where the layer was built


def test_render_text_has_sparklines(reports):
    text = reports["vanishing_rnn"][0].render_text()
    assert "grad norm" in text and "|dL/dh_t|" in text and "RNN902" in text
    assert len(SPARK & set(text)) >= 3


def test_exploding_numbers(reports):
    report = reports["exploding_rnn"][0]
    (finding,) = report.findings
    measured = finding.extra["measured"]
    assert measured["grad_norm_max"] > 1e3
    assert measured["bptt_factor"]["rnn"] > 1.1
    assert report.measurements["layers"][0]["eigen"]["max_modulus"] == pytest.approx(3.0, rel=1e-4)


def test_vanishing_numbers(reports):
    layer = reports["vanishing_rnn"][0].measurements["layers"][0]
    assert layer["decay"]["factor"] < 0.5
    assert layer["decay"]["memory_steps"] < 0.2 * 200
    assert layer["eigen"]["max_modulus"] == pytest.approx(0.5, rel=1e-4)


def test_nonfinite_names_first_module_and_bad_input(reports):
    (finding,) = reports["nan_inputs"][0].findings
    bad = finding.extra["measured"]
    assert bad["where"] == "output" and bad["module"] == "rnn" and bad["input_nonfinite"] is True
    assert "'rnn' (LSTM)" in finding.message


def test_detached_layer_reported_without_gradient(reports):
    report = reports["detached_rnn"][0]
    layer = report.measurements["layers"][0]
    assert layer["received_grad"] is False and layer["dldh"] is None
    assert "received no gradient" in report.findings[0].message


def test_replay_gives_total_derivative():
    """|dL/dh_t| from the probe equals a step-by-step computation with retain_grad."""
    torch.manual_seed(3)
    rnn = torch.nn.GRU(3, 8, num_layers=2, batch_first=True)
    head = torch.nn.Linear(8, 1)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn, self.head = rnn, head

        def forward(self, x):
            return self.head(self.rnn(x)[0][:, -1])

    model = Net()
    x, y = torch.randn(4, 12, 3), torch.randn(4, 1)
    report = probe(model, (x, y), torch.nn.functional.mse_loss, steps=1)
    measured = report.measurements["layers"][0]["dldh"]

    # h_t of the top layer leaves step t twice: as the output and inside the state.
    state, steps = None, []
    for t in range(12):
        out, state = rnn(x[:, t:t + 1], state)
        out.retain_grad()
        state.retain_grad()
        steps.append((out, state))
    torch.nn.functional.mse_loss(head(out[:, -1]), y).backward()
    zero = torch.zeros(4, 8)
    truth = [((o.grad[:, 0] if o.grad is not None else zero) + (s.grad[-1] if s.grad is not None else zero)).norm().item()
             for o, s in steps]
    assert measured == pytest.approx(truth, rel=1e-4, abs=1e-12)


def test_time_major_and_unbatched_inputs():
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(2, 6)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = lstm

        def forward(self, x):
            return self.lstm(x)[0][-1]

    for x, y in [(torch.randn(15, 4, 2), torch.randn(4, 6)), (torch.randn(15, 2), torch.randn(6))]:
        report = probe(Net(), (x, y), torch.nn.functional.mse_loss, steps=2)
        layer = report.measurements["layers"][0]
        assert layer["seq_len"] == 15 and len(layer["dldh"]) == 15
        assert all(math.isfinite(v) for v in layer["dldh"])


def test_deterministic_and_leaves_model_untouched():
    case = load_models().CASES["healthy_gru"]()
    before = {k: v.clone() for k, v in case["model"].state_dict().items()}
    runs = [probe(case["model"], case["batch"], case["loss_fn"], steps=4, seed=7).measurements for _ in range(2)]
    for run in runs:
        run.pop("seconds")
    assert json.dumps(runs[0], sort_keys=True) == json.dumps(runs[1], sort_keys=True)
    after = case["model"].state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_default_optimizer_is_sgd_with_lr():
    case = load_models().CASES["healthy_lstm"]()
    m = probe(case["model"], case["batch"], case["loss_fn"], steps=1).measurements
    assert m["optimizer"] == {"optimizer": "SGD", "lr": 1e-2, "momentum": 0.0}
    m = probe(case["model"], case["batch"], case["loss_fn"], steps=1, lr=0.5).measurements
    assert m["optimizer"]["lr"] == 0.5


def test_thresholds_are_options():
    quiet = {"grad_norm_max": 1e12, "grad_growth_max": 1e12, "grad_spike_factor": 1e12, "bptt_growth_factor": 10.0}
    report, _ = probe_case("exploding_rnn", steps=5, thresholds=quiet)
    assert report.findings == []
    report, _ = probe_case("exploding_rnn", steps=5, thresholds=Thresholds(grad_norm_max=1e12))
    assert [f.code for f in report.findings] == ["RNN901"]
    with pytest.raises(ValueError, match="unknown runtime threshold"):
        Thresholds.from_any({"no_such_limit": 1})


def test_model_without_recurrence_is_refused():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(20, 1))
    with pytest.raises(ValueError, match="no recurrent layer"):
        probe(model, (torch.randn(4, 10, 2), torch.randn(4, 1)), torch.nn.functional.mse_loss, steps=1)
