"""Jupyter notebooks are checked like scripts, with findings at cell and line."""

from __future__ import annotations

import json
import shutil

import nbformat
from lintutil import ROOT, run_cli
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from rnnlint.notebooks import to_source

NOTEBOOKS = ROOT / "fixtures" / "notebooks"

TRAIN_CELL = """\
model = nn.GRU(8, 32)
opt = torch.optim.Adam(model.parameters())
for x, y in loader:
    opt.zero_grad()
    out, _ = model(x)
    loss = (out - y).pow(2).mean()
    loss.backward()
    opt.step()"""


def _notebook(path, *cells):
    nbformat.write(new_notebook(cells=list(cells)), str(path))
    return path


def _report(*args, cwd=ROOT):
    result = run_cli("check", "--no-cache", "--format", "json", *args, cwd=cwd)
    return result.returncode, json.loads(result.stdout)


def test_fixture_notebook_findings_point_at_cell_and_line():
    code, report = _report(str(NOTEBOOKS.relative_to(ROOT)))
    assert code == 1 and report["errors"] == []
    hits = [(f["path"].rsplit("/", 1)[-1], f["cell"], f["line"], f["code"]) for f in report["findings"]]
    assert ("torch_airline_lstm.ipynb", 8, 14, "RNN101") in hits
    # The clipped keras notebook is clean; its unclipped baseline carries a noqa in its cell.
    assert not [h for h in hits if h[0] == "keras_imdb_gru.ipynb" and h[3] == "RNN101"]


def test_text_output_names_the_cell_and_shows_the_cell_line():
    result = run_cli("check", "--no-cache", "fixtures/notebooks/torch_airline_lstm.ipynb")
    assert "torch_airline_lstm.ipynb:cell 8:14:9: RNN101" in result.stdout
    assert "   14 |         optimizer.step()" in result.stdout


def test_magics_and_shell_lines_are_neutralised_line_for_line():
    text = json.dumps(nbformat.v4.new_notebook(cells=[
        new_code_cell("%matplotlib inline\n!pip install torch\nfiles = !ls\nmodel?\nx = 1"),
        new_code_cell("%%bash\necho hi"),
        new_code_cell("%%time\ny = 2"),
        new_markdown_cell("text"),
        new_code_cell("for i in range(3):\n    %time f(i)"),
    ]))
    source, line_map = to_source(text)
    compile(source, "nb", "exec")  # IPython syntax gone, still valid Python
    lines = source.splitlines()
    assert lines[2] == "files = None" and lines[4] == "x = 1"
    assert lines[5].startswith("#") and lines[8] == "y = 2"
    assert line_map[10] == (5, 1) and line_map[11] == (5, 2)  # markdown cell 4 counts, adds no line


def test_suppression_comments_work_inside_cells(tmp_path):
    header = new_code_cell("import torch\nimport torch.nn as nn\nloader = []")
    plain = _notebook(tmp_path / "plain.ipynb", header, new_markdown_cell("train"), new_code_cell(TRAIN_CELL))
    _, report = _report(str(plain), cwd=tmp_path)
    assert [(f["cell"], f["line"], f["code"]) for f in report["findings"]] == [(3, 8, "RNN101")]
    quiet = _notebook(tmp_path / "quiet.ipynb", header, new_code_cell(TRAIN_CELL + "  # noqa: RNN101"))
    assert _report(str(quiet), cwd=tmp_path)[1]["findings"] == []
    skipped = _notebook(tmp_path / "skip.ipynb", new_code_cell("# rnnlint: skip-file"), header, new_code_cell(TRAIN_CELL))
    assert _report(str(skipped), cwd=tmp_path)[1]["findings"] == []


def test_a_broken_notebook_is_a_per_file_error_and_the_run_goes_on(tmp_path):
    (tmp_path / "broken.ipynb").write_text('{"cells": [ {"cell_type": "code", "source": "import torch"')
    shutil.copy(NOTEBOOKS / "torch_airline_lstm.ipynb", tmp_path / "good.ipynb")
    code, report = _report(str(tmp_path), cwd=tmp_path)
    assert code == 2
    (error,) = report["errors"]
    assert error["path"].endswith("broken.ipynb") and "not a readable notebook" in error["message"]
    assert [f["code"] for f in report["findings"]] == ["RNN101"]


def test_a_syntax_error_in_a_cell_names_the_cell_and_its_line(tmp_path):
    nb = _notebook(tmp_path / "bad.ipynb", new_code_cell("import torch"), new_code_cell("x = 1\ndef f(:\n    pass"))
    code, report = _report(str(nb), cwd=tmp_path)
    (error,) = report["errors"]
    assert code == 2 and error["line"] == 2 and error["message"].startswith("cell 2: syntax error")


def test_notebooks_are_cached_with_their_cell_locations(tmp_path):
    shutil.copy(NOTEBOOKS / "torch_airline_lstm.ipynb", tmp_path / "nb.ipynb")
    args = ("check", "--format", "json", "--cache-dir", str(tmp_path / "cache"), str(tmp_path / "nb.ipynb"))
    first = json.loads(run_cli(*args, cwd=tmp_path).stdout)
    second = json.loads(run_cli(*args, cwd=tmp_path).stdout)
    assert first["findings"] == second["findings"] and first["findings"][0]["cell"] == 8
