"""The content cache: hits, invalidation, corruption, concurrency, clean."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from lintutil import ROOT, run_cli

from rnnlint.cache import Cache
from rnnlint.config import Config
from rnnlint.runner import run


@pytest.fixture()
def project(tmp_path):
    """A copy of the two multi-file fixture projects and a few single scripts."""
    target = tmp_path / "src"
    shutil.copytree(ROOT / "fixtures" / "projects", target)
    for name in ("torch_stock_lstm_noclip.py", "keras_weather_lstm_unscaled.py", "torch_charlm_lstm_clean.py"):
        shutil.copy(ROOT / "fixtures" / name, target / name)
    return target


def _files(root: Path):
    return sorted(str(p) for p in root.rglob("*.py"))


def _run(root: Path, cache_dir: Path, jobs: int = 1):
    return run(_files(root), Config(root=root), jobs=jobs, cache=Cache(cache_dir))


def test_warm_run_answers_every_file_from_the_cache(project, tmp_path):
    cold = _run(project, tmp_path / "c")
    warm = _run(project, tmp_path / "c")
    assert cold.findings and cold.analysed > 0 and cold.cached == 0
    assert warm.analysed == 0 and warm.cached == cold.analysed
    assert warm.findings == cold.findings and warm.errors == cold.errors


def test_touching_one_file_reanalyses_it_alone(project, tmp_path):
    _run(project, tmp_path / "c")
    script = project / "torch_stock_lstm_noclip.py"
    script.write_text(script.read_text() + "\n# touched\n")
    again = _run(project, tmp_path / "c")
    assert again.analysed == 1


def test_a_changed_model_summary_reanalyses_the_files_that_import_it(project, tmp_path):
    _run(project, tmp_path / "c")
    model = project / "sentiment_lstm" / "model.py"
    model.write_text(model.read_text().replace("nn.LSTM(", "nn.GRU("))
    again = _run(project, tmp_path / "c")
    assert again.analysed == 2  # model.py and train.py, which builds the model
    (message,) = [f.message for f in again.findings if f.code == "RNN101" and f.path.endswith("sentiment_lstm/train.py")]
    assert "nn.GRU" in message
    # A comment changes model.py's bytes but not what it exports: train.py stays cached.
    model.write_text(model.read_text() + "\n# a comment\n")
    third = _run(project, tmp_path / "c")
    assert third.analysed == 1


def test_corrupt_truncated_and_foreign_entries_are_ignored_and_rebuilt(project, tmp_path):
    cold = _run(project, tmp_path / "c")
    entries = sorted((tmp_path / "c").rglob("*.json"))
    assert len(entries) == cold.analysed
    entries[0].write_bytes(b"\x00garbage{")
    entries[1].write_text(entries[1].read_text()[: len(entries[1].read_text()) // 2])
    foreign = json.loads(entries[2].read_text())
    foreign["key"] = "0" * 64
    entries[2].write_text(json.dumps(foreign))
    entries[3].write_text(json.dumps({"schema": 1, "key": entries[3].stem, "data": {"findings": "nope"}}))
    again = _run(project, tmp_path / "c")
    assert again.analysed == 4
    assert again.findings == cold.findings
    assert _run(project, tmp_path / "c").analysed == 0  # rebuilt


def test_config_changes_miss_the_cache(project, tmp_path):
    _run(project, tmp_path / "c")
    config = Config(root=project, ignore=["RNN101"])
    again = run(_files(project), config, jobs=1, cache=Cache(tmp_path / "c"))
    assert again.cached == 0 and all(f.code != "RNN101" for f in again.findings)


def test_an_unwritable_cache_directory_falls_back_to_no_cache_with_one_warning(project, tmp_path, capsys):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache directory should be")
    cold = _run(project, blocker)
    warm = _run(project, tmp_path / "fresh")
    err = capsys.readouterr().err
    assert err.count("rnnlint: warning: cannot write the cache directory") == 1
    assert cold.findings == warm.findings


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root can write a read-only directory")
def test_a_read_only_cache_directory_falls_back_to_no_cache(project, tmp_path, capsys):
    cache = tmp_path / "ro"
    cache.mkdir()
    cache.chmod(0o500)
    try:
        outcome = _run(project, cache)
    finally:
        cache.chmod(0o700)
    assert outcome.findings and "running without cache" in capsys.readouterr().err


def test_concurrent_processes_share_one_cache_without_corrupting_it(project, tmp_path):
    cache = tmp_path / "shared"
    command = [sys.executable, "-m", "rnnlint", "check", "--format", "json", "--cache-dir", str(cache), "-j", "1", str(project)]
    outputs = []
    for _ in range(2):
        procs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(tmp_path))
                 for _ in range(4)]
        outputs.extend(p.communicate(timeout=300) for p in procs)
    reference = run_cli("check", "--format", "json", "--no-cache", str(project), cwd=tmp_path)
    for out, err in outputs:
        assert err == "" and json.loads(out)["findings"] == json.loads(reference.stdout)["findings"]
    for entry in cache.rglob("*.json"):
        json.loads(entry.read_text())  # every entry complete
    assert not list(cache.rglob("*.part"))


def test_cli_cache_dir_no_cache_and_clean(project, tmp_path):
    cache = tmp_path / "cli-cache"
    first = run_cli("check", "--format", "json", "--cache-dir", str(cache), str(project), cwd=tmp_path)
    assert first.returncode == 1 and (cache / "CACHEDIR.TAG").is_file() and list(cache.rglob("*.json"))
    none = tmp_path / "unused"
    run_cli("check", "--format", "json", "--no-cache", "--cache-dir", str(none), str(project), cwd=tmp_path)
    assert not none.exists()
    cleaned = run_cli("clean", "--cache-dir", str(cache), cwd=tmp_path)
    assert cleaned.returncode == 0 and not cache.exists()
    stranger = tmp_path / "mine"
    stranger.mkdir()
    (stranger / "keep.txt").write_text("not a cache")
    refused = run_cli("clean", "--cache-dir", str(stranger), cwd=tmp_path)
    assert refused.returncode == 2 and (stranger / "keep.txt").exists()


def test_a_run_answered_from_the_cache_never_imports_the_parser(project, tmp_path):
    args = ["check", "--format", "json", "--cache-dir", str(tmp_path / "c"), str(project)]
    first = run_cli(*args, cwd=tmp_path)
    warm = subprocess.run([sys.executable, "-X", "importtime", "-m", "rnnlint", *args], cwd=str(tmp_path),
                          capture_output=True, text=True)
    modules = {line.split("|")[-1].strip() for line in warm.stderr.splitlines() if "|" in line}
    assert json.loads(warm.stdout)["findings"] == json.loads(first.stdout)["findings"]
    assert "rnnlint.cli" in modules  # the measurement works
    assert not [m for m in modules if m.startswith("libcst") or m.startswith("rnnlint.rules.rnn")]


def test_a_result_that_reads_other_files_of_the_folder_is_not_cached(tmp_path):
    # RNN508 looks for GPU use in the other files of the folder when the model file shows none:
    # that answer depends on files outside the cache key, so it is recomputed every run.
    src = tmp_path / "src"
    src.mkdir()
    (src / "model.py").write_text(
        "import torch\nimport torch.nn as nn\n\n\nclass Net(nn.Module):\n    def __init__(self):\n"
        "        super().__init__()\n        self.rnn = nn.GRU(8, 16, batch_first=True)\n\n"
        "    def forward(self, x):\n        h0 = torch.zeros(1, x.size(0), 16)\n"
        "        out, _ = self.rnn(x, h0)\n        return out\n"
    )
    (src / "train.py").write_text("import torch\nfrom model import Net\nmodel = Net()\n")
    cache = tmp_path / "c"
    first = run([str(src / "model.py")], Config(root=src), jobs=1, cache=Cache(cache))
    assert [f.code for f in first.findings] == []
    (src / "train.py").write_text("import torch\nfrom model import Net\nmodel = Net().cuda()\n")
    second = run([str(src / "model.py")], Config(root=src), jobs=1, cache=Cache(cache))
    assert [(f.code, f.line) for f in second.findings] == [("RNN508", 11)]
