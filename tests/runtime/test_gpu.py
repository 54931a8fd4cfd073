"""CUDA: the probe runs on the GPU (cuDNN kernels included). Skips cleanly without a GPU."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from runtime_support import FIXTURES, probe_case  # noqa: E402

from rnnlint.runtime import run_script  # noqa: E402

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("name", ["healthy_lstm", "exploding_rnn", "vanishing_rnn", "lr_too_high"])
def test_probe_on_cuda_matches_cpu(name):
    on_gpu, case = probe_case(name, device="cuda")
    assert {f.code for f in on_gpu.findings} == case["expected"], on_gpu.render_text()
    assert on_gpu.measurements["internal_errors"] == []


@pytest.mark.gpu
@needs_cuda
def test_script_on_cuda():
    result = run_script(str(FIXTURES / "healthy_lstm.py"), device="cuda", steps=5)
    assert result.errors == [] and result.findings == []
