"""Whole-project analysis: imports between checked files are followed."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from lintutil import ROOT, run_cli

from rnnlint.config import Config
from rnnlint.imports import ModuleIndex, import_strings
from rnnlint.runner import run

PROJECTS = ROOT / "fixtures" / "projects"


def _check(*paths: str, cwd: Path = ROOT):
    result = run_cli("check", "--no-cache", "--format", "json", *paths, cwd=cwd)
    assert result.returncode in (0, 1), result.stderr
    return json.loads(result.stdout)


def _hits(report, code):
    return [(Path(f["path"]).name, f["line"]) for f in report["findings"] if f["code"] == code]


def test_training_script_knows_the_model_class_of_another_file():
    report = _check("fixtures/projects/sentiment_lstm")
    assert _hits(report, "RNN101") == [("train.py", 53)]
    (message,) = [f["message"] for f in report["findings"] if f["code"] == "RNN101"]
    assert "SentimentLSTM (nn.LSTM)" in message


def test_constants_imported_from_a_config_module_are_known():
    report = _check("fixtures/projects/sentiment_lstm")
    (plateau,) = [f for f in report["findings"] if f["code"] == "RNN201"]
    assert plateau["line"] == 28 and "factor=0.5, patience=0" in plateau["message"]


def test_a_file_checked_alone_stays_silent_about_what_it_cannot_see():
    report = _check("fixtures/projects/sentiment_lstm/train.py")
    assert _hits(report, "RNN101") == [] and _hits(report, "RNN201") == []


def test_package_reexports_and_keras_builders_are_followed():
    report = _check("fixtures/projects/energy_forecast")
    assert _hits(report, "RNN101") == [("train.py", 24)]  # train_clipped.py clips: silent
    alone = _check("fixtures/projects/energy_forecast/train.py")
    assert _hits(alone, "RNN101") == []


def test_constructor_arguments_at_the_construction_site_reach_the_imported_layer(tmp_path):
    (tmp_path / "nets.py").write_text(textwrap.dedent("""
        import torch.nn as nn

        class Tagger(nn.Module):
            def __init__(self, n_in, n_hidden, layers=1, drop=0.0):
                super().__init__()
                self.rnn = nn.GRU(n_in, n_hidden, num_layers=layers, dropout=drop)
    """))
    (tmp_path / "fit.py").write_text(textwrap.dedent("""
        import torch
        from nets import Tagger
        model = Tagger(32, 64, layers=3)
    """))
    from rnnlint.analysis.project import ProjectView, imported_models
    from rnnlint.analysis.values import Evaluator
    from rnnlint.analysis.walker import collect_facts
    from rnnlint.engine import check_source
    import libcst as cst

    summary = check_source(str(tmp_path / "nets.py"), (tmp_path / "nets.py").read_text(), Config(),
                           summarize=True).summary
    layer = summary["classes"]["Tagger"]["layers"][0]
    assert layer["kind"] == "GRU" and layer["args"]["num_layers"] == {"param": "layers", "index": 2, "default": 1}
    facts = collect_facts("fit.py", cst.parse_module((tmp_path / "fit.py").read_text()))
    evaluator = Evaluator(facts)
    evaluator.project = ProjectView({"nets": summary})
    (model,) = imported_models(facts, evaluator)
    assert model.value(layer, "num_layers", evaluator) == 3
    assert model.value(layer, "dropout", evaluator) == 0.0  # the parameter's default
    assert model.value(layer, "hidden_size", evaluator) == 64


def test_import_strings_cover_every_spelling():
    text = textwrap.dedent("""
        import model, utils.io as uio
        from config import HIDDEN, LAYERS as L
        from .nets import Tagger
        from . import data
        from pkg.sub import (
            thing,
        )
    """)
    found = import_strings(text)
    for expected in ("model", "utils.io", "config", "config.HIDDEN", "config.LAYERS", ".nets",
                     ".nets.Tagger", ".", ".data", "pkg.sub"):
        assert expected in found


def test_module_index_prefers_the_importers_own_directory(tmp_path):
    for project in ("a", "b"):
        (tmp_path / project).mkdir()
        (tmp_path / project / "model.py").write_text("")
        (tmp_path / project / "train.py").write_text("")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "layers.py").write_text("")
    files = [str(p) for p in tmp_path.rglob("*.py")]
    index = ModuleIndex(files)
    assert index.resolve(str(tmp_path / "a" / "train.py"), "model") == str(tmp_path / "a" / "model.py")
    assert index.resolve(str(tmp_path / "b" / "train.py"), "model") == str(tmp_path / "b" / "model.py")
    assert index.resolve(str(tmp_path / "pkg" / "__init__.py"), ".layers") == str(tmp_path / "pkg" / "layers.py")
    assert index.resolve(str(tmp_path / "a" / "train.py"), "pkg.layers") == str(tmp_path / "pkg" / "layers.py")
    # A bare name from outside any root that holds it is someone else's module.
    assert index.resolve(str(tmp_path / "pkg" / "layers.py"), "model") is None


def test_import_cycles_do_not_hang_and_still_check_every_file(tmp_path):
    (tmp_path / "a.py").write_text("import torch\nimport torch.nn as nn\nfrom b import helper\nrnn = nn.LSTM(4, 8)\n"
                                   "opt = torch.optim.SGD(rnn.parameters(), lr=0.1)\nfor x in range(3):\n"
                                   "    loss = helper(rnn)\n    opt.zero_grad()\n    loss.backward()\n    opt.step()\n")
    (tmp_path / "b.py").write_text("import torch\nfrom a import rnn\n\ndef helper(m):\n    return m\n")
    outcome = run(sorted(str(p) for p in tmp_path.glob("*.py")), Config(), jobs=1)
    assert [(Path(f.path).name, f.code, f.line) for f in outcome.findings] == [("a.py", "RNN101", 10)]
    assert outcome.analysed == 2


def test_parallel_and_serial_runs_give_identical_reports():
    files = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "fixtures").rglob("*.py"))
    import os
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        serial = run(files, Config(root=ROOT), jobs=1)
        parallel = run(files, Config(root=ROOT), jobs=2)
    finally:
        os.chdir(cwd)
    assert serial.findings and serial.findings == parallel.findings
    assert serial.errors == parallel.errors


def test_eval_mode_is_checked_for_a_model_class_imported_from_another_file(tmp_path):
    (tmp_path / "net.py").write_text(textwrap.dedent("""
        import torch.nn as nn

        class Classifier(nn.Module):
            def __init__(self, vocab, hidden):
                super().__init__()
                self.embed = nn.Embedding(vocab, 64)
                self.rnn = nn.GRU(64, hidden, batch_first=True)
                self.drop = nn.Dropout(0.5)
                self.out = nn.Linear(hidden, 2)

            def forward(self, x):
                _, h = self.rnn(self.embed(x))
                return self.out(self.drop(h[-1]))
    """))
    (tmp_path / "run.py").write_text(textwrap.dedent("""
        import torch
        from net import Classifier

        model = Classifier(5000, 128)
        optimizer = torch.optim.Adam(model.parameters())
        for x, y in train_loader:
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x), y)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
        with torch.no_grad():
            predictions = model(test_x).argmax(1)
    """))
    outcome = run(sorted(str(p) for p in tmp_path.glob("*.py")), Config(), jobs=1)
    assert [(Path(f.path).name, f.code, f.line) for f in outcome.findings] == [("run.py", "RNN403", 14)]
    alone = run([str(tmp_path / "run.py")], Config(), jobs=1)
    assert alone.findings == []


_PARENT: list = []


def _dying_analyse(path, *args, **kwargs):
    """runner._analyse, except that a worker checking one fixture dies (as a segfault would)."""
    import os

    from rnnlint import runner

    if path.endswith("torch_stock_lstm_noclip.py") and os.getpid() != _PARENT[0]:
        os._exit(3)
    return runner._ORIGINAL_ANALYSE(path, *args, **kwargs)


def test_a_worker_that_dies_costs_only_the_file_that_killed_it(monkeypatch):
    import os
    import sys

    import pytest

    if not sys.platform.startswith("linux"):
        pytest.skip("workers are forked on Linux only; the patched function must reach them")
    from rnnlint import runner

    files = sorted(str(p) for p in (ROOT / "fixtures").glob("*.py"))
    serial = run(files, Config(), jobs=1)
    _PARENT[:] = [os.getpid()]
    monkeypatch.setattr(runner, "_ORIGINAL_ANALYSE", runner._analyse, raising=False)
    monkeypatch.setattr(runner, "_analyse", _dying_analyse)
    parallel = run(files, Config(), jobs=2)
    (error,) = parallel.errors
    assert error.path.endswith("torch_stock_lstm_noclip.py") and error.kind == "internal"
    assert "died" in error.message
    assert parallel.findings == [f for f in serial.findings if not f.path.endswith("torch_stock_lstm_noclip.py")]
