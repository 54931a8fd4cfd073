"""--baseline / --write-baseline: yesterday's findings stay quiet, new ones fail, keyed by
code, root-relative path and the line's text (never its number)."""

from __future__ import annotations

import json
import subprocess
import textwrap
from collections import Counter
from pathlib import Path

from lintutil import run_cli

from rnnlint.baseline import apply_baseline, load_baseline, write_baseline
from rnnlint.findings import Finding, Severity

BUGGY = textwrap.dedent(
    """\
    import torch
    from torch import nn

    model = nn.LSTM(8, 32, dropout=0.2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for x, y in loader:
        opt.zero_grad()
        out, _ = model(x)
        loss = ((out[-1] - y) ** 2).mean()
        loss.backward()
        opt.step()
    """
)


def repo_with(tmp_path: Path, files: dict) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    for name, text in files.items():
        path = repo / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return repo


def found(proc) -> list:
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr
    return [(f["path"], f["line"], f["code"]) for f in json.loads(proc.stdout)["findings"]]


def check(repo: Path, *args: str, cwd: Path = None):  # type: ignore[assignment]
    return run_cli("check", "--no-config", *args, cwd=cwd or repo)


def test_write_then_check_hides_known_findings_and_exits_0(tmp_path):
    repo = repo_with(tmp_path, {"train.py": BUGGY})
    proc = check(repo, "--baseline", "rnnlint-baseline.json", "--write-baseline", ".")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    assert "wrote 2 findings to baseline rnnlint-baseline.json" in proc.stderr
    data = json.loads((repo / "rnnlint-baseline.json").read_text())
    assert data["format"] == "rnnlint-baseline" and data["version"] == 1
    assert [(e["code"], e["path"], e["line"]) for e in data["findings"]] == [("RNN401", "train.py", 4), ("RNN101", "train.py", 11)]

    assert check(repo, "--format", "json", ".").returncode == 1  # without the baseline: still failing
    proc = check(repo, "--baseline", "rnnlint-baseline.json", "--format", "json", ".")
    assert proc.returncode == 0 and found(proc) == []
    text = check(repo, "--baseline", "rnnlint-baseline.json", ".")
    assert text.returncode == 0
    assert "Baseline rnnlint-baseline.json: 2 known findings not shown." in text.stdout


def test_only_new_findings_fail(tmp_path):
    repo = repo_with(tmp_path, {"old.py": BUGGY})
    assert check(repo, "--baseline", "b.json", "--write-baseline", ".").returncode == 0
    (repo / "new.py").write_text(BUGGY.replace("nn.LSTM(8, 32, dropout=0.2)", "nn.LSTM(8, 32)"))
    proc = check(repo, "--baseline", "b.json", "--format", "json", ".")
    assert proc.returncode == 1
    assert found(proc) == [("new.py", 11, "RNN101")]


def test_moved_code_stays_known_edited_line_is_new(tmp_path):
    repo = repo_with(tmp_path, {"train.py": BUGGY})
    assert check(repo, "--baseline", "b.json", "--write-baseline", "train.py").returncode == 0
    (repo / "train.py").write_text("# a header\n# that moves everything down\n\n" + BUGGY)
    proc = check(repo, "--baseline", "b.json", "--format", "json", "train.py")
    assert proc.returncode == 0 and found(proc) == []
    (repo / "train.py").write_text(BUGGY.replace("dropout=0.2", "dropout=0.3"))
    proc = check(repo, "--baseline", "b.json", "--format", "json", "train.py")
    assert proc.returncode == 1 and found(proc) == [("train.py", 4, "RNN401")]


def test_paths_are_keyed_from_the_repository_root_not_the_cwd(tmp_path):
    repo = repo_with(tmp_path, {"src/train.py": BUGGY})
    assert check(repo, "--baseline", "b.json", "--write-baseline", "src").returncode == 0
    assert {e["path"] for e in json.loads((repo / "b.json").read_text())["findings"]} == {"src/train.py"}
    proc = check(repo, "--baseline", "../b.json", "--format", "json", "train.py", cwd=repo / "src")
    assert proc.returncode == 0 and found(proc) == []


def test_fixed_findings_are_reported_as_gone(tmp_path):
    repo = repo_with(tmp_path, {"train.py": BUGGY})
    assert check(repo, "--baseline", "b.json", "--write-baseline", ".").returncode == 0
    (repo / "train.py").write_text(BUGGY.replace("nn.LSTM(8, 32, dropout=0.2)", "nn.LSTM(8, 32)"))
    proc = check(repo, "--baseline", "b.json", ".")
    assert proc.returncode == 0
    assert "1 known finding not shown; 1 recorded finding is gone (rewrite it with --write-baseline)." in proc.stdout


def test_duplicates_are_counted(tmp_path):
    path = tmp_path / "dup.py"
    path.write_text("import torch\nopt.step()\nopt.step()\nopt.step()\n")

    def at(line: int) -> Finding:
        return Finding(str(path), line, 1, line, 11, "RNN101", "no-grad-clipping", Severity.WARNING, "m")

    baseline_file = tmp_path / "b.json"
    assert write_baseline(str(baseline_file), [at(2), at(3)], tmp_path) == 2
    known = load_baseline(str(baseline_file))
    assert sum(known.values()) == 2
    kept, dropped, gone = apply_baseline([at(2), at(3), at(4)], known, tmp_path, [str(path)])
    assert (kept, dropped, gone) == ([at(4)], 2, 0)
    kept, dropped, gone = apply_baseline([at(2)], known, tmp_path, [str(path)])
    assert (kept, dropped, gone) == ([], 1, 1)
    # An entry listed twice covers two findings, not more.
    doubled = Counter({key: 2 for key in known})
    assert len(apply_baseline([at(2), at(2), at(2)], doubled, tmp_path)[0]) == 1


def test_missing_or_garbled_baseline_is_exit_2(tmp_path):
    repo = repo_with(tmp_path, {"train.py": BUGGY})
    proc = check(repo, "--baseline", "nope.json", ".")
    assert proc.returncode == 2 and proc.stdout == ""
    assert "baseline file nope.json does not exist (create it with --write-baseline)" in proc.stderr
    (repo / "bad.json").write_text('{"format": "rnnlint-baseline", ')
    proc = check(repo, "--baseline", "bad.json", ".")
    assert proc.returncode == 2 and "bad.json:1:32: baseline is not valid JSON" in proc.stderr
    (repo / "other.json").write_text('{"findings": []}')
    proc = check(repo, "--baseline", "other.json", ".")
    assert proc.returncode == 2 and "other.json: not an rnnlint baseline" in proc.stderr
    (repo / "entry.json").write_text('{"format": "rnnlint-baseline", "version": 1, "findings": [{"code": "RNN101"}]}')
    proc = check(repo, "--baseline", "entry.json", ".")
    assert proc.returncode == 2 and "findings[0] needs string 'code', 'path' and 'fingerprint'" in proc.stderr
    proc = check(repo, "--write-baseline", ".")
    assert proc.returncode == 2 and "--write-baseline needs --baseline FILE" in proc.stderr


def test_baseline_and_sarif_share_the_fingerprint(tmp_path):
    repo = repo_with(tmp_path, {"train.py": BUGGY})
    assert check(repo, "--baseline", "b.json", "--write-baseline", ".").returncode == 0
    recorded = {(e["code"], e["fingerprint"]) for e in json.loads((repo / "b.json").read_text())["findings"]}
    log = json.loads(check(repo, "--format", "sarif", ".").stdout)
    sarif = {(r["ruleId"], r["partialFingerprints"]["rnnlint/v1"]) for r in log["runs"][0]["results"]}
    assert recorded == sarif and len(sarif) == 2
