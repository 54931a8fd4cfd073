"""Awkward files give findings or a clean per-file error, never a traceback."""

from __future__ import annotations

import json

from lintutil import run_cli

from rnnlint.config import Config
from rnnlint.engine import check_file, check_source
from rnnlint.rules import STATIC_RULES
from rnnlint.rules.base import Rule

DROPOUT = b"import torch.nn as nn\nrnn = nn.LSTM(4, 8, dropout=0.5)\n"


def test_bom_latin1_cookie_and_invalid_utf8(tmp_path):
    (tmp_path / "bom.py").write_bytes(b"\xef\xbb\xbf" + DROPOUT)
    (tmp_path / "latin.py").write_bytes(b"# -*- coding: latin-1 -*-\n# caf\xe9\n" + DROPOUT)
    (tmp_path / "bad.py").write_bytes(b"import torch\nx = '\xff\xfe'\n")
    bom = check_file(str(tmp_path / "bom.py"), Config())
    latin = check_file(str(tmp_path / "latin.py"), Config())
    assert [(f.code, f.line) for f in bom.findings] == [("RNN401", 2)]
    assert [(f.code, f.line) for f in latin.findings] == [("RNN401", 4)]
    bad = check_file(str(tmp_path / "bad.py"), Config())
    assert bad.findings == [] and bad.errors[0].kind == "read" and "decode" in bad.errors[0].message


def test_empty_nul_python2_and_deep_nesting():
    assert check_source("e.py", "", Config()).errors == []
    nul = check_source("n.py", "import torch\x00\n", Config())
    assert "NUL" in nul.errors[0].message
    py2 = check_source("p.py", "import torch\nprint 'hello'\n", Config())
    assert py2.errors[0].line == 2 and "print" in py2.errors[0].message
    deep = "import torch\nx = " + "(" * 5000 + "1" + ")" * 5000 + "\n"
    chain = "import torch\nx = " + "+".join(["1"] * 20000) + "\n"
    assert "operators" in check_source("c.py", chain, Config()).errors[0].message
    result = check_source("d.py", deep, Config())
    assert result.findings == [] and len(result.errors) == 1


def test_a_failing_rule_is_isolated(monkeypatch):
    class Broken(Rule):
        meta = STATIC_RULES[0].meta

        def check(self, ctx):
            raise ValueError("boom")

    rules = [Broken] + [r for r in STATIC_RULES if r.meta.code == "RNN401"]
    result = check_source("x.py", DROPOUT.decode(), Config(), rules=rules)
    assert [f.code for f in result.findings] == ["RNN401"]
    assert result.errors[0].kind == "internal" and "RNN101" in result.errors[0].message
    assert "boom" in result.errors[0].message


def test_directory_with_unreadable_and_dangling_entries(tmp_path):
    (tmp_path / "ok.py").write_bytes(DROPOUT)
    (tmp_path / "dangling.py").symlink_to(tmp_path / "missing.py")
    (tmp_path / "loop").symlink_to(tmp_path)
    proc = run_cli("check", "--no-config", "--format", "json", str(tmp_path))
    data = json.loads(proc.stdout)
    assert [f["code"] for f in data["findings"]] == ["RNN401"]
    assert proc.returncode == 2 and len(data["errors"]) == 1 and data["errors"][0]["path"].endswith("dangling.py")
