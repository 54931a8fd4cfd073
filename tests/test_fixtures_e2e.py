"""The real CLI on fixtures/ must print exactly the findings listed in fixtures/expected.txt."""

from __future__ import annotations

import json
from pathlib import Path

from lintutil import ROOT, run_cli

FIXTURES = ROOT / "fixtures"


def expected():
    out = set()
    for raw in (FIXTURES / "expected.txt").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where, code = line.rsplit(":", 1)
        path, number = where.rsplit(":", 1)
        out.add((path.strip(), int(number), code.strip()))
    return out


def test_fixtures_match_expectations():
    proc = run_cli("check", "fixtures", "--format", "json")
    assert proc.returncode == 1, proc.stderr
    data = json.loads(proc.stdout)
    assert data["errors"] == []
    # Notebook findings are listed as `notebooks/x.ipynb:cell 8:14: RNN101`.
    actual = {
        (Path(f["path"]).relative_to("fixtures").as_posix() + (f":cell {f['cell']}" if "cell" in f else ""),
         f["line"], f["code"])
        for f in data["findings"]
    }
    want = expected()
    assert sorted(actual - want) == [], "unexpected findings"
    assert sorted(want - actual) == [], "missing findings"


def test_every_static_rule_has_three_firing_fixtures():
    from rnnlint.rules import ALL_META

    counts = {}
    for _, _, code in expected():
        counts[code] = counts.get(code, 0) + 1
    few = {m.code: counts.get(m.code, 0) for m in ALL_META if m.mode == "static" and counts.get(m.code, 0) < 3}
    assert few == {}, f"rules with fewer than 3 firing fixtures: {few}"


def test_clean_fixture_exits_0():
    clean = sorted(p for p in FIXTURES.glob("*_clean.py"))
    assert clean
    proc = run_cli("check", *[str(p.relative_to(ROOT)) for p in clean])
    assert proc.returncode == 0, proc.stdout
