"""PNG figures: written with the Agg backend, of a sensible size, and not blank."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")
pytest.importorskip("matplotlib")

from matplotlib import image  # noqa: E402
from runtime_support import probe_case  # noqa: E402


def test_probe_plots_are_real_pictures(tmp_path):
    report, _ = probe_case("exploding_rnn", steps=6)
    paths = report.write_plots(str(tmp_path))
    assert sorted(p.rsplit("/", 1)[1] for p in paths) == ["dldh.png", "eigenvalues.png", "grad_norms.png"]
    for path in paths:
        pixels = image.imread(path)
        height, width = pixels.shape[:2]
        assert height >= 300 and width >= 400, (path, pixels.shape)
        assert pixels.var() > 0, path


def test_custom_recurrence_eigen_plot(tmp_path):
    report, _ = probe_case("diagonal_recurrence", steps=2)
    paths = report.write_plots(str(tmp_path), prefix="diag_")
    names = sorted(p.rsplit("/", 1)[1] for p in paths)
    assert names == ["diag_eigenvalues.png", "diag_grad_norms.png"]  # no |dL/dh_t| for custom modules
    assert image.imread(paths[0]).var() > 0
