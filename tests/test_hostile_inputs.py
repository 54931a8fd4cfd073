"""Hostile inputs through the real command line: each one gives findings or one precise entry
under "errors", and the other files of the same run are still checked.

Every test puts the hostile file next to `neighbour.py` (one RNN401 at line 2) and checks the
directory with `rnnlint check --format json`. The table in docs/hostile-inputs.md lists them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import pytest

from lintutil import ROOT

DROPOUT = b"import torch.nn as nn\nrnn = nn.LSTM(4, 8, dropout=0.5)\n"
NEIGHBOUR = ("neighbour.py", 2, "RNN401")


def _cli(args: List[str], prelude: str = "", cwd: Optional[Path] = None) -> subprocess.CompletedProcess:
    """`rnnlint ARGS` in a fresh interpreter; `prelude` runs first (to inject a fault)."""
    code = prelude + "\nfrom rnnlint.cli import main\nmain()\n"
    return subprocess.run([sys.executable, "-c", code, *args], cwd=str(cwd or ROOT), capture_output=True,
                          text=True, timeout=600)


def check_dir(directory: Path, prelude: str = "", *extra: str) -> Tuple[int, Dict, subprocess.CompletedProcess]:
    proc = _cli(["check", "--no-config", "--no-cache", "--format", "json", *extra, str(directory)], prelude)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, json.loads(proc.stdout), proc


def found(data: Dict, root: Path) -> List[Tuple[str, int, str]]:
    return sorted((os.path.relpath(f["path"], root), f["line"], f["code"]) for f in data["findings"])


def errors(data: Dict, root: Path) -> Dict[str, Dict]:
    out = {}
    for e in data["errors"]:
        out[os.path.relpath(e["path"], root)] = e
    return out


def one_error(tmp_path: Path, name: str, content: bytes, prelude: str = "") -> Dict:
    """Check tmp_path holding the hostile file and the neighbour; return the hostile file's error."""
    (tmp_path / "neighbour.py").write_bytes(DROPOUT)
    (tmp_path / name).write_bytes(content)
    code, data, _ = check_dir(tmp_path, prelude)
    assert found(data, tmp_path) == [NEIGHBOUR]
    errs = errors(data, tmp_path)
    assert list(errs) == [name], data["errors"]
    assert code == 2 and data["summary"]["files"] == 2 and data["summary"]["errors"] == 1
    return errs[name]


def findings_only(tmp_path: Path, name: str, content: bytes) -> List[Tuple[str, int, str]]:
    (tmp_path / "neighbour.py").write_bytes(DROPOUT)
    (tmp_path / name).write_bytes(content)
    code, data, _ = check_dir(tmp_path)
    assert data["errors"] == [] and code == 1
    return [f for f in found(data, tmp_path) if f[0] == name]


# -- text the parser rejects ----------------------------------------------------------


def test_syntax_error(tmp_path):
    error = one_error(tmp_path, "broken.py", b"import torch\n\ndef train(:\n    pass\n")
    assert error == {"path": str(tmp_path / "broken.py"), "message": "syntax error: invalid syntax",
                     "kind": "parse", "line": 3, "column": 11}


def test_python2_print_statement(tmp_path):
    error = one_error(tmp_path, "py2.py", b"import torch\nprint 'epoch', 3\n")
    assert error["message"] == "syntax error: Missing parentheses in call to 'print'. Did you mean print(...)?"
    assert (error["kind"], error["line"], error["column"]) == ("parse", 2, 1)


@pytest.mark.skipif(sys.version_info >= (3, 14), reason="PEP 758 made `except A, B:` valid syntax")
def test_python2_except_comma(tmp_path):
    """libcst accepts `except ValueError, e:`; CPython before 3.14 does not, and neither may rnnlint."""
    source = b"import torch.nn as nn\nrnn = nn.LSTM(4, 8, dropout=0.5)\ntry:\n    pass\nexcept ValueError, e:\n    pass\n"
    error = one_error(tmp_path, "py2except.py", source)
    assert error["message"] == "syntax error: multiple exception types must be parenthesized"
    assert (error["kind"], error["line"], error["column"]) == ("parse", 5, 8)


# -- bytes and encodings --------------------------------------------------------------


def test_latin1_with_coding_cookie(tmp_path):
    source = b"# -*- coding: latin-1 -*-\n# caf\xe9 cr\xe8me\n" + DROPOUT
    assert findings_only(tmp_path, "latin.py", source) == [("latin.py", 4, "RNN401")]


def test_invalid_utf8(tmp_path):
    error = one_error(tmp_path, "bad.py", b"import torch\nlabel = 'd\xe9j\xe0'\n")
    assert error["message"] == ("cannot decode file as utf-8: invalid continuation byte (byte 0xe9 at line 2, "
                                "column 11); binary data, or a missing coding cookie")
    assert (error["kind"], error["line"], error["column"]) == ("read", 2, 11)


def test_utf8_bom(tmp_path):
    assert findings_only(tmp_path, "bom.py", b"\xef\xbb\xbf" + DROPOUT) == [("bom.py", 2, "RNN401")]


def test_bom_with_contradicting_cookie(tmp_path):
    error = one_error(tmp_path, "bomcookie.py", b"\xef\xbb\xbf# coding: latin-1\nimport torch\n")
    assert error["message"] == "cannot decode file: encoding problem: utf-8" and error["kind"] == "read"


def test_nul_bytes(tmp_path):
    error = one_error(tmp_path, "nul.py", b"import torch\nx = 1\x00\n")
    assert error == {"path": str(tmp_path / "nul.py"), "message": "file contains NUL bytes; not Python source",
                     "kind": "parse", "line": 2, "column": 6}


def test_binary_data_named_py(tmp_path):
    blob = bytes(range(256)) * 64  # what a pickle or checkpoint saved as .py looks like
    error = one_error(tmp_path, "weights.py", blob)
    assert error["message"].startswith("cannot decode file as utf-8: invalid start byte (byte 0x80 at line 2")
    assert error["kind"] == "read"


def test_empty_file(tmp_path):
    (tmp_path / "neighbour.py").write_bytes(DROPOUT)
    (tmp_path / "empty.py").write_bytes(b"")
    code, data, _ = check_dir(tmp_path)
    assert (code, found(data, tmp_path), data["errors"], data["summary"]["files"]) == (1, [NEIGHBOUR], [], 2)


# -- size and shape -------------------------------------------------------------------


def test_five_megabyte_generated_file(tmp_path):
    """A generated table of weights (5 MB in one list literal): refused at once with the reason,
    instead of a minute of parsing. Files below the limit are analysed (next tests)."""
    rows = [f"    ({i}, {i * 0.5!r}, 'w{i}')," for i in range(260_000)]
    source = "import torch.nn as nn\nTABLE = [\n" + "\n".join(rows) + "\n]\nrnn = nn.LSTM(4, 8, dropout=0.5)\n"
    assert len(source) > 5_000_000
    error = one_error(tmp_path, "generated.py", source.encode())
    assert error["message"] == (f"file holds {len(source) / 1e6:.1f} million characters (limit 1 million): too "
                                "large to analyse in reasonable time, likely generated; add it to extend-exclude")
    assert error["kind"] == "parse"


def test_large_file_without_rnn_words_is_skipped(tmp_path):
    """The limit applies after the pre-filter: a big data module that never names torch is no error."""
    (tmp_path / "neighbour.py").write_bytes(DROPOUT)
    (tmp_path / "table.py").write_text("TABLE = [\n" + "    1.5,\n" * 700_000 + "]\n")
    code, data, _ = check_dir(tmp_path)
    assert (code, found(data, tmp_path), data["errors"]) == (1, [NEIGHBOUR], [])


def test_very_long_line(tmp_path):
    source = b"import torch.nn as nn\nPAD = '" + b"x" * 900_000 + b"'\n" + b"rnn = nn.LSTM(4, 8, dropout=0.5)\n"
    assert findings_only(tmp_path, "long.py", source) == [("long.py", 3, "RNN401")]


@pytest.mark.parametrize(
    "name, expression, message",
    [
        ("brackets", "(" * 5000 + "1" + ")" * 5000, "brackets nested 5000 levels deep (limit 150); not analysed"),
        ("attributes", "a" + ".b" * 50_000, "expressions nested too deep for Python's own parser; not analysed"),
        ("lambdas", "lambda: " * 5000 + "1", "expressions nested too deep for Python's own parser; not analysed"),
        ("calls", "f" + "()" * 600, "syntax nested more than 500 levels deep at line 2; not analysed"),
        ("operators", "+".join(["1"] * 20_000), "one line chains 19999 operators (limit 2000); not analysed"),
    ],
)
def test_deep_nesting(tmp_path, name, expression, message):
    """Each of these crashed libcst's native parser (the whole process), hung it for minutes, or
    overflowed a recursive walk before the depth guard."""
    error = one_error(tmp_path, f"{name}.py", f"import torch\nx = {expression}\n".encode())
    assert (error["message"], error["kind"]) == (message, "parse")


def test_nesting_just_below_the_limit_is_analysed(tmp_path):
    source = "import torch.nn as nn\nx = " + "not " * 450 + "1\nrnn = nn.LSTM(4, 8, dropout=0.5)\n"
    assert findings_only(tmp_path, "deep_ok.py", source.encode()) == [("deep_ok.py", 3, "RNN401")]


def test_libcst_limit_on_valid_python_is_not_called_a_syntax_error(tmp_path):
    """Thousands of implicitly joined strings: valid Python that libcst cannot read."""
    source = "import torch\nHELP = (\n" + "\n".join(["    'word '"] * 5000) + "\n)\n"
    error = one_error(tmp_path, "joined.py", source.encode())
    assert error["message"].startswith("libcst cannot parse this file although Python accepts it (")
    assert error["message"].endswith("); not analysed") and error["kind"] == "parse"


# -- line endings ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, source, line",
    [
        ("crlf.py", DROPOUT.replace(b"\n", b"\r\n"), 2),
        ("cr_only.py", b"import torch.nn as nn\r# old Mac\rrnn = nn.LSTM(4, 8, dropout=0.5)\r", 3),
        ("mixed.py", b"import torch.nn as nn\r\n\n\r# mixed\r\nrnn = nn.LSTM(4, 8, dropout=0.5)\n", 5),
        ("formfeed.py", b"import torch.nn as nn\n\x0c\n# page two \x0c\x1c\nrnn = nn.LSTM(4, 8, dropout=0.5)\n", 4),
    ],
)
def test_line_endings_keep_line_numbers(tmp_path, name, source, line):
    assert findings_only(tmp_path, name, source) == [(name, line, "RNN401")]


@pytest.mark.parametrize("newline", [b"\r\n", b"\r"])
def test_suppression_with_other_line_endings(tmp_path, newline):
    source = b"import torch.nn as nn\n\x0c\nrnn = nn.LSTM(4, 8, dropout=0.5)  # noqa: RNN401\n".replace(b"\n", newline)
    (tmp_path / "neighbour.py").write_bytes(DROPOUT)
    (tmp_path / "quiet.py").write_bytes(source)
    code, data, _ = check_dir(tmp_path)
    assert (code, found(data, tmp_path), data["errors"]) == (1, [NEIGHBOUR], [])


# -- the file system ------------------------------------------------------------------


def test_dangling_symlink(tmp_path):
    (tmp_path / "neighbour.py").write_bytes(DROPOUT)
    (tmp_path / "gone.py").symlink_to(tmp_path / "moved_away.py")
    code, data, _ = check_dir(tmp_path)
    assert found(data, tmp_path) == [NEIGHBOUR] and code == 2
    assert errors(data, tmp_path) == {"gone.py": {
        "path": str(tmp_path / "gone.py"), "kind": "read",
        "message": f"broken symbolic link: its target {str(tmp_path / 'moved_away.py')!r} does not exist"}}


def test_symlink_loops(tmp_path):
    (tmp_path / "neighbour.py").write_bytes(DROPOUT)
    (tmp_path / "self.py").symlink_to(tmp_path / "self.py")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "up").symlink_to(tmp_path)  # a directory loop: not followed
    code, data, _ = check_dir(tmp_path)
    assert found(data, tmp_path) == [NEIGHBOUR] and code == 2
    assert errors(data, tmp_path) == {"self.py": {
        "path": str(tmp_path / "self.py"), "kind": "read",
        "message": "symbolic link loop: the link leads back to itself"}}


def test_symlink_loop_named_on_the_command_line(tmp_path):
    (tmp_path / "neighbour.py").write_bytes(DROPOUT)
    (tmp_path / "self.py").symlink_to(tmp_path / "self.py")
    proc = _cli(["check", "--no-config", "--no-cache", "--format", "json", str(tmp_path / "self.py"),
                 str(tmp_path / "neighbour.py")])
    data = json.loads(proc.stdout)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert found(data, tmp_path) == [NEIGHBOUR]
    assert [e["message"] for e in data["errors"]] == ["symbolic link loop: the link leads back to itself"]


def test_fifo_and_device_named_py_do_not_block(tmp_path):
    (tmp_path / "neighbour.py").write_bytes(DROPOUT)
    os.mkfifo(tmp_path / "pipe.py")
    (tmp_path / "zero.py").symlink_to("/dev/zero")
    code, data, _ = check_dir(tmp_path)
    assert found(data, tmp_path) == [NEIGHBOUR] and code == 2
    message = "not a regular file (a pipe, socket or device); not read"
    assert {k: v["message"] for k, v in errors(data, tmp_path).items()} == {"pipe.py": message, "zero.py": message}


# Root reads any file whatever its mode, so under root the refusal is injected at os.open.
DENY_OPEN = """
import errno, os
_open = os.open
def _deny(path, *args, **kwargs):
    if str(path).endswith("locked.py"):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))
    return _open(path, *args, **kwargs)
os.open = _deny
"""


def test_unreadable_file(tmp_path):
    (tmp_path / "locked.py").write_bytes(DROPOUT)
    (tmp_path / "locked.py").chmod(0)
    try:
        error = one_error(tmp_path, "locked.py", DROPOUT, prelude=DENY_OPEN if os.geteuid() == 0 else "")
    finally:
        (tmp_path / "locked.py").chmod(0o644)
    assert error == {"path": str(tmp_path / "locked.py"), "message": "cannot read file: Permission denied",
                     "kind": "read"}


DELETE_AFTER_DISCOVERY = """
import os, rnnlint.discovery as discovery
_discover = discovery.discover
def _racing(*args, **kwargs):
    files, missing = _discover(*args, **kwargs)
    os.remove([f for f in files if f.endswith("doomed.py")][0])
    return files, missing
discovery.discover = _racing
"""


def test_file_deleted_between_discovery_and_reading(tmp_path):
    error = one_error(tmp_path, "doomed.py", DROPOUT, prelude=DELETE_AFTER_DISCOVERY)
    assert error == {"path": str(tmp_path / "doomed.py"), "message": "file vanished before it could be read",
                     "kind": "read"}


def test_directory_with_ten_thousand_files(tmp_path):
    """10,000 small modules in 10 packages: one in a hundred builds an LSTM, one is broken."""
    expected = []
    for i in range(10_000):
        package = tmp_path / f"pkg{i // 1000}"
        package.mkdir(exist_ok=True)
        if i % 100 == 0:
            (package / f"m{i}.py").write_bytes(DROPOUT)
            expected.append((f"pkg{i // 1000}/m{i}.py", 2, "RNN401"))
        else:
            (package / f"m{i}.py").write_text(f"VALUE_{i} = {i}\n")
    (tmp_path / "pkg3" / "m3001.py").write_bytes(b"import torch\nx = (\n")
    code, data, _ = check_dir(tmp_path)
    assert data["summary"]["files"] == 10_000 and code == 2
    assert found(data, tmp_path) == sorted(expected)
    assert [(e["message"], e["line"]) for e in data["errors"]] == [("syntax error: '(' was never closed", 2)]


# -- configuration --------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, text, where, problem",
    [
        ("pyproject.toml", b'[tool.rnnlint]\nselect = ["RNN4"\nignore = []\n', ":3:1", "Unclosed array"),
        ("rnnlint.toml", b'select = ["RNN4"]\nfail-on = \n', ":2:11", "Invalid value"),
        ("rnnlint.toml", b'select = ["RNN4"]\n[[tool', ":2:7", "Expected ']]'"),
        ("rnnlint.toml", b'select = ["RNN4"]\n# caf\xe9\n', ":2:6", "not UTF-8 (byte 0xe9)"),
    ],
)
def test_broken_config_file(tmp_path, name, text, where, problem):
    (tmp_path / ".git").mkdir()  # the config search stops at the repository root
    (tmp_path / "neighbour.py").write_bytes(DROPOUT)
    (tmp_path / name).write_bytes(text)
    proc = _cli(["check", "--no-cache", "--format", "json", "neighbour.py"], cwd=tmp_path)
    assert proc.returncode == 2 and proc.stdout == "" and "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"rnnlint: error: {tmp_path / name}{where}: invalid TOML: ")
    assert problem in proc.stderr


# -- rule isolation -------------------------------------------------------------------

FAILING_RULE = """
from rnnlint.rules import STATIC_RULES
_rule = next(r for r in STATIC_RULES if r.meta.code == "RNN101")
_check = _rule.check
def _failing(self, ctx):
    if ctx.facts.path.endswith("boom.py"):
        raise ZeroDivisionError("injected failure")
    return _check(self, ctx)
_rule.check = _failing
"""

NO_CLIP = b"""import torch
import torch.nn as nn

model = nn.LSTM(4, 8)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
for x in range(3):
    optimizer.zero_grad()
    out, _ = model(torch.randn(5, 2, 4))
    out.sum().backward()
    optimizer.step()
"""


def test_a_rule_that_raises_is_isolated(tmp_path):
    """RNN101 raises on boom.py only: it is reported as an internal error for that rule and file,
    RNN401 still runs on boom.py, RNN101 still runs on the other file, and the exit code is 2."""
    (tmp_path / "neighbour.py").write_bytes(NO_CLIP)
    (tmp_path / "boom.py").write_bytes(NO_CLIP + b"extra = nn.GRU(4, 8, dropout=0.3)\n")
    code, data, _ = check_dir(tmp_path, FAILING_RULE)
    assert code == 2
    assert found(data, tmp_path) == [("boom.py", 11, "RNN401"), ("neighbour.py", 10, "RNN101")]
    (error,) = data["errors"]
    assert error["path"] == str(tmp_path / "boom.py") and error["kind"] == "internal"
    assert error["message"] == ("internal error in rule RNN101 (no-grad-clipping): ZeroDivisionError: injected "
                                "failure. Other rules still ran; please report this with the file that triggers it")
