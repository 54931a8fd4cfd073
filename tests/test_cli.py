"""The command line as users and CI run it: exit codes, formats, config, suppressions."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from lintutil import run_cli

BUGGY = textwrap.dedent(
    """\
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.GRU(8, 32, dropout=0.2)
            self.head = nn.Linear(32, 1)

        def forward(self, x):
            out, _ = self.rnn(x)
            return self.head(out[-1])

    model = Net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for x, y in loader:
        opt.zero_grad()
        loss = ((model(x) - y) ** 2).mean()
        loss.backward()
        opt.step()
    """
)
CLEAN = BUGGY.replace("nn.GRU(8, 32, dropout=0.2)", "nn.GRU(8, 32)").replace(
    "    opt.step()", "    nn.utils.clip_grad_norm_(model.parameters(), 1.0)\n    opt.step()"
)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def findings(proc) -> list:
    data = json.loads(proc.stdout)
    return [(Path(f["path"]).name, f["line"], f["code"]) for f in data["findings"]]


def test_findings_exit_1_and_clean_exit_0(tmp_path):
    bad = write(tmp_path, "bad.py", BUGGY)
    good = write(tmp_path, "good.py", CLEAN)
    proc = run_cli("check", "--no-config", "--format", "json", str(bad))
    assert proc.returncode == 1, proc.stderr
    assert findings(proc) == [("bad.py", 7, "RNN401"), ("bad.py", 20, "RNN101")]
    proc = run_cli("check", "--no-config", str(good))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "no findings" in proc.stdout


def test_json_is_one_object_with_the_documented_shape(tmp_path):
    bad = write(tmp_path, "bad.py", BUGGY)
    proc = run_cli("check", "--no-config", "--format", "json", str(bad))
    data = json.loads(proc.stdout)
    assert set(data) == {"version", "findings", "errors", "summary"}
    first = data["findings"][0]
    assert set(first) == {"path", "line", "column", "end_line", "end_column", "code", "name", "severity", "message"}
    assert first["severity"] == "warning" and first["name"] == "dropout-single-layer"
    assert data["summary"]["findings"] == 2 and data["summary"]["by_code"] == {"RNN101": 1, "RNN401": 1}


def test_text_output_has_location_code_frame_and_summary(tmp_path):
    bad = write(tmp_path, "bad.py", BUGGY)
    proc = run_cli("check", "--no-config", str(bad))
    assert f"{bad}:7:20: RNN401" in proc.stdout
    assert "    7 |         self.rnn = nn.GRU(8, 32, dropout=0.2)" in proc.stdout
    assert "Found 2 findings (0 error, 2 warning, 0 info) in 1 file checked." in proc.stdout
    assert "\x1b[" not in proc.stdout  # no colour when stdout is not a terminal
    quiet = run_cli("check", "--no-config", "-q", str(bad))
    assert len(quiet.stdout.strip().splitlines()) == 2


def test_github_annotations(tmp_path):
    bad = write(tmp_path, "bad.py", BUGGY)
    proc = run_cli("check", "--no-config", "--format", "github", str(bad))
    lines = proc.stdout.strip().splitlines()
    assert lines[0].startswith(f"::warning file={bad},line=7,col=20,")
    assert "title=RNN401 dropout-single-layer::RNN401 " in lines[0]


def test_select_ignore_and_fail_on(tmp_path):
    bad = write(tmp_path, "bad.py", BUGGY)
    assert findings(run_cli("check", "--no-config", "--format", "json", "--select", "RNN4", str(bad))) == [
        ("bad.py", 7, "RNN401")
    ]
    assert findings(run_cli("check", "--no-config", "--format", "json", "--ignore", "no-grad-clipping", str(bad))) == [
        ("bad.py", 7, "RNN401")
    ]
    # Both findings are warnings: failing on errors only exits 0 but still reports them.
    proc = run_cli("check", "--no-config", "--fail-on", "error", "--format", "json", str(bad))
    assert proc.returncode == 0 and len(findings(proc)) == 2
    proc = run_cli("check", "--no-config", "--select", "RNN999", str(bad))
    assert proc.returncode == 2 and "unknown rule" in proc.stderr


def test_missing_path_exits_2_but_other_files_are_checked(tmp_path):
    bad = write(tmp_path, "bad.py", BUGGY)
    proc = run_cli("check", "--no-config", "--format", "json", str(bad), str(tmp_path / "nope.py"))
    assert proc.returncode == 2
    data = json.loads(proc.stdout)
    assert len(data["findings"]) == 2
    assert data["errors"][0]["message"] == "no such file or directory"


def test_syntax_error_is_reported_with_line_not_traceback(tmp_path):
    write(tmp_path, "broken.py", "import torch\n\ndef f(:\n    pass\n")
    write(tmp_path, "bad.py", BUGGY)
    proc = run_cli("check", "--no-config", "--format", "json", str(tmp_path))
    assert proc.returncode == 2
    data = json.loads(proc.stdout)
    assert [e["line"] for e in data["errors"]] == [3]
    assert "Traceback" not in proc.stdout + proc.stderr
    assert len(data["findings"]) == 2


def test_config_file_select_per_file_ignores_and_options(tmp_path):
    write(tmp_path, "pyproject.toml", textwrap.dedent(
        """\
        [tool.rnnlint]
        ignore = ["RNN101"]
        per-file-ignores = { "legacy/*.py" = ["RNN4"] }
        fail-on = "error"

        [tool.rnnlint.RNN201]
        max-epochs-to-floor = 40
        """
    ))
    write(tmp_path, "train.py", BUGGY)
    write(tmp_path, "legacy/old.py", BUGGY)
    write(tmp_path, "sched.py", "import torch\nfrom torch.optim.lr_scheduler import ReduceLROnPlateau\n"
          "s = ReduceLROnPlateau(opt, factor=0.5, patience=2, min_lr=1e-5)\n")
    proc = run_cli("check", "--format", "json", ".", cwd=tmp_path)
    assert findings(proc) == [("sched.py", 3, "RNN201"), ("train.py", 7, "RNN401")]
    assert proc.returncode == 0  # fail-on = error, and both are warnings
    assert "30 epochs" in json.loads(proc.stdout)["findings"][0]["message"]


def test_rnnlint_toml_and_explicit_config(tmp_path):
    write(tmp_path, "rnnlint.toml", 'select = ["RNN101"]\n')
    write(tmp_path, "train.py", BUGGY)
    assert findings(run_cli("check", "--format", "json", ".", cwd=tmp_path)) == [("train.py", 20, "RNN101")]
    other = write(tmp_path, "conf/other.toml", 'ignore = ["RNN1"]\n')
    assert findings(run_cli("check", "--config", str(other), "--format", "json", "train.py", cwd=tmp_path)) == [
        ("train.py", 7, "RNN401")
    ]
    assert len(findings(run_cli("check", "--no-config", "--format", "json", "train.py", cwd=tmp_path))) == 2


def test_bad_config_exits_2_with_file_and_reason(tmp_path):
    write(tmp_path, "train.py", BUGGY)
    write(tmp_path, "rnnlint.toml", 'select = ["RNN101"]\nbogus = 1\n')
    proc = run_cli("check", ".", cwd=tmp_path)
    assert proc.returncode == 2 and "unknown key 'bogus'" in proc.stderr and "rnnlint.toml" in proc.stderr
    write(tmp_path, "rnnlint.toml", 'ignore = ["RNN777"]\n')
    proc = run_cli("check", ".", cwd=tmp_path)
    assert proc.returncode == 2 and "RNN777" in proc.stderr
    write(tmp_path, "rnnlint.toml", 'select = ["RNN101"\n')
    proc = run_cli("check", ".", cwd=tmp_path)
    assert proc.returncode == 2 and "rnnlint.toml:" in proc.stderr and "invalid TOML" in proc.stderr
    write(tmp_path, "rnnlint.toml", '[RNN201]\nmax-epochs = 3\n')
    proc = run_cli("check", ".", cwd=tmp_path)
    assert proc.returncode == 2 and "has no option 'max-epochs'" in proc.stderr


def test_suppression_comments(tmp_path):
    text = BUGGY.replace("dropout=0.2)", "dropout=0.2)  # noqa: RNN401").replace(
        "    opt.step()", "    opt.step()  # rnnlint: ignore[no-grad-clipping]"
    )
    assert findings(run_cli("check", "--no-config", "--format", "json", str(write(tmp_path, "a.py", text)))) == []
    other_code = BUGGY.replace("dropout=0.2)", "dropout=0.2)  # noqa: E501")
    assert len(findings(run_cli("check", "--no-config", "--format", "json", str(write(tmp_path, "b.py", other_code))))) == 2
    bare = BUGGY.replace("dropout=0.2)", "dropout=0.2)  # noqa")
    assert findings(run_cli("check", "--no-config", "--format", "json", str(write(tmp_path, "c.py", bare)))) == [
        ("c.py", 20, "RNN101")
    ]
    skip = "# rnnlint: skip-file\n" + BUGGY
    assert findings(run_cli("check", "--no-config", "--format", "json", str(write(tmp_path, "d.py", skip)))) == []


def test_suppression_on_first_line_of_multiline_statement(tmp_path):
    text = BUGGY.replace(
        "self.rnn = nn.GRU(8, 32, dropout=0.2)",
        "self.rnn = nn.GRU(  # rnnlint: ignore[RNN401]\n            8, 32, dropout=0.2\n        )",
    )
    assert [c for *_, c in findings(run_cli("check", "--no-config", "--format", "json", str(write(tmp_path, "a.py", text))))] == [
        "RNN101"
    ]


def test_directory_walk_skips_virtualenvs_and_excludes(tmp_path):
    write(tmp_path, "src/train.py", BUGGY)
    write(tmp_path, ".venv/lib/x.py", BUGGY)
    write(tmp_path, "env2/pyvenv.cfg", "")
    write(tmp_path, "env2/lib/y.py", BUGGY)
    write(tmp_path, "build/z.py", BUGGY)
    write(tmp_path, "generated/w.py", BUGGY)
    write(tmp_path, "rnnlint.toml", 'extend-exclude = ["generated"]\n')
    proc = run_cli("check", "--format", "json", ".", cwd=tmp_path)
    assert {p for p, *_ in findings(proc)} == {"train.py"}
    # An excluded file given explicitly is still checked.
    proc = run_cli("check", "--format", "json", "generated/w.py", cwd=tmp_path)
    assert len(findings(proc)) == 2


def test_rules_and_explain():
    proc = run_cli("rules", "--format", "json")
    data = json.loads(proc.stdout)
    assert proc.returncode == 0
    by_code = {r["code"]: r for r in data}
    assert by_code["RNN201"]["name"] == "aggressive-plateau" and by_code["RNN201"]["options"] == {"max-epochs-to-floor": 10}
    assert by_code["RNN907"]["mode"] == "runtime"
    text = run_cli("rules").stdout
    assert "RNN101" in text and "no-grad-clipping" in text
    for key in ("RNN101", "no-grad-clipping", "rnn101"):
        proc = run_cli("explain", key)
        assert proc.returncode == 0 and proc.stdout.startswith("# RNN101 no-grad-clipping")
    proc = run_cli("explain", "RNN000")
    assert proc.returncode == 2


def test_usage_error_exits_2():
    assert run_cli("check", "--format", "xml").returncode == 2
    assert run_cli("frobnicate").returncode == 2
