"""Script mode: the user's script runs in a child process; findings point into the script;
every way a script can fail becomes one FileError without a hang."""

from __future__ import annotations

import os
import re
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytest.importorskip("torch")

from runtime_support import BROKEN, FIXTURES, SPARK, line_of  # noqa: E402

from rnnlint.runtime import cli_bridge, run_script  # noqa: E402
from rnnlint.runtime import script as script_module  # noqa: E402

# script -> (run_script keyword arguments, exact codes expected, text on the recurrent layer's line)
PATHOLOGIES = {
    "explode_rnn": ({}, {"RNN901"}, "nn.RNN("),
    "vanish_rnn": ({}, {"RNN902"}, "nn.RNN("),
    "diagonal_recurrence": ({}, {"RNN903"}, "super().__init__()"),
    "lr_too_high": ({"curvature": True}, {"RNN904"}, "nn.GRU("),
    "unscaled_inputs": ({}, {"RNN905", "RNN906"}, "nn.LSTM("),
    "nan_injection": ({}, {"RNN907"}, "nn.LSTM("),
    "stale_optimizer": ({}, {"RNN908"}, "nn.GRU("),
    "healthy_lstm": ({}, set(), None),
    "healthy_cell_loop": ({}, set(), None),
}

# script -> (run_script keyword arguments, text the one-line message must contain)
BROKEN_CASES = {
    "crash": ({}, "raised FileNotFoundError"),
    "exit_early": ({}, "sys.exit(3) before its first optimizer step"),
    "hard_exit": ({}, "exit status 7 and no probe result"),
    "fork_daemon": ({}, "forked 1 process"),
    "wait_forever": ({"timeout": 12.0}, "timed out after 12 s with 0 of 20"),
    "manual_update": ({}, "without calling optimizer.step()"),
    "no_recurrent": ({}, "no recurrent layer"),
    "memory_hog": ({"memory_limit_mb": 1024}, "ran out of memory"),
}


@pytest.fixture(scope="module")
def script_results(tmp_path_factory):
    """Every fixture script probed once. Children spend most of their time importing torch, and
    one of them only sleeps until its timeout, so three run at a time; that one starts first."""
    plots = tmp_path_factory.mktemp("plots")
    jobs = [(name, BROKEN / f"{name}.py", kwargs) for name, (kwargs, _) in BROKEN_CASES.items()]
    jobs.sort(key=lambda job: "timeout" not in job[2])
    for name, (kwargs, _, _) in PATHOLOGIES.items():
        extra = {"plots_dir": str(plots)} if name == "explode_rnn" else {}
        jobs.append((name, FIXTURES / f"{name}.py", dict(kwargs, **extra)))

    def one(job):
        name, path, kwargs = job
        started = time.perf_counter()
        result = run_script(str(path), **kwargs)
        return name, (result, time.perf_counter() - started)

    with ThreadPoolExecutor(max_workers=3) as pool:
        return dict(pool.map(one, jobs))


@pytest.mark.parametrize("name", sorted(PATHOLOGIES))
def test_script_codes(script_results, name):
    result, _ = script_results[name]
    assert result.errors == [], result.output_tail
    assert {f.code for f in result.findings} == PATHOLOGIES[name][1], result.text
    assert result.exit_code == (1 if result.findings else 0)


@pytest.mark.parametrize("name", sorted(n for n, v in PATHOLOGIES.items() if v[2]))
def test_findings_point_at_the_recurrent_layer(script_results, name):
    result, _ = script_results[name]
    path = FIXTURES / f"{name}.py"
    expected_line = line_of(path, PATHOLOGIES[name][2])
    for finding in result.findings:
        assert finding.path == str(path)
        assert finding.line == expected_line, finding
        assert finding.column > 1 and finding.end_column > finding.column


def test_script_text_report(script_results):
    result, _ = script_results["explode_rnn"]
    assert "RNN901" in result.text and "grad norm" in result.text
    assert len(SPARK & set(result.text)) >= 3
    assert result.measurements["steps"] == 20


def test_script_plots_written(script_results):
    result, _ = script_results["explode_rnn"]
    names = sorted(os.path.basename(p) for p in result.plots)
    assert names == ["explode_rnn_dldh.png", "explode_rnn_eigenvalues.png", "explode_rnn_grad_norms.png"]
    assert all(os.path.getsize(p) > 1000 for p in result.plots)


@pytest.mark.parametrize("name", sorted(BROKEN_CASES))
def test_broken_script_gives_one_clear_error(script_results, name):
    result, seconds = script_results[name]
    kwargs, expected = BROKEN_CASES[name]
    assert result.findings == []
    (error,) = result.errors
    assert error.kind == "runtime" and error.path == str(BROKEN / f"{name}.py")
    assert expected in error.message, error.message
    assert "\n" not in error.message and "Traceback" not in error.message
    assert "rnnlint/runtime" not in error.message
    assert result.exit_code == 2
    assert seconds < kwargs.get("timeout", 120.0) + 15


def test_errors_point_at_the_failing_line(script_results):
    assert script_results["crash"][0].errors[0].line == line_of(BROKEN / "crash.py", "open(path")
    assert script_results["exit_early"][0].errors[0].line == line_of(BROKEN / "exit_early.py", "        sys.exit(3)")


def test_forked_trainer_is_killed(script_results):
    """The daemonised child shares the probe's process group and dies with it."""
    result, _ = script_results["fork_daemon"]
    found = re.search(r"training continues in the background \(pid (\d+)\)", result.output_tail)
    assert found, result.output_tail
    status = Path(f"/proc/{found.group(1)}/status")
    # Gone, or a zombie waiting for its reaper: either way it no longer runs.
    assert not status.exists() or "State:\tZ" in status.read_text()


def test_keyboard_interrupt_kills_the_group(monkeypatch):
    started = []

    class Interrupted(subprocess.Popen):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            started.append(self)

        def wait(self, timeout=None):
            if timeout is not None:  # the parent's first wait: Ctrl-C arrives
                time.sleep(1.0)
                raise KeyboardInterrupt
            return super().wait()

    monkeypatch.setattr(script_module.subprocess, "Popen", Interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_script(str(BROKEN / "wait_forever.py"), timeout=60)
    (proc,) = started
    assert proc.poll() is not None
    with pytest.raises(ProcessLookupError):
        os.killpg(proc.pid, 0)


def test_output_tail_is_bounded(tmp_path):
    noisy = tmp_path / "noisy.py"
    noisy.write_text("for i in range(200000):\n    print('line', i)\nraise SystemExit(4)\n", encoding="utf-8")
    result = run_script(str(noisy), timeout=60)
    assert len(result.output_tail.encode()) <= script_module.TAIL_BYTES
    assert "line 199999" in result.output_tail
    assert "sys.exit(4)" in result.errors[0].message


def test_cli_bridge_passes_script_arguments():
    path = str(FIXTURES / "explode_rnn.py")
    findings, errors, text = cli_bridge.run_for_cli([path], ["--gain", "1.0"], steps=5, timeout=120, device="cpu",
                                                     seed=0, curvature=False, plots_dir=None)
    assert errors == [] and findings == []  # an orthogonal radius-1 init is healthy
    assert "no runtime findings" in text and "5 probe step(s)" in text


def test_cli_bridge_without_torch(monkeypatch):
    monkeypatch.setattr(cli_bridge, "_torch_available", lambda: False)
    findings, errors, text = cli_bridge.run_for_cli(["train.py"], [], steps=5, timeout=1, device="cpu", seed=0,
                                                     curvature=False, plots_dir=None)
    assert findings == [] and text == ""
    (error,) = errors
    assert error.kind == "runtime" and "pip install 'rnnlint[runtime]'" in error.message


def test_missing_script_and_bad_device(tmp_path):
    (error,) = run_script(str(tmp_path / "absent.py")).errors
    assert "no such file" in error.message
    (error,) = run_script(str(FIXTURES / "healthy_lstm.py"), device="tpu").errors
    assert "unknown device" in error.message
