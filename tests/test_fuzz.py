"""Property-based fuzzing of the static checker.

Two sources of programs: hypothesmith (syntactically valid random Python, prefixed with an
import so the pre-filter lets it through) and mutations of the fixtures (deleted lines,
statements replaced by `pass`, swapped call arguments, renamed imports, duplicated lines). On every input:

- checking never raises: the file gives findings or errors;
- the JSON report is valid and complete;
- every finding's line and column lie inside the file;
- a second run gives the same findings and errors;
- `# noqa: CODE` on a finding's line removes that finding and nothing of another code.

The normal suite runs a small deterministic sample; the full run is opt-in:

    python -m pytest -m fuzz tests/test_fuzz.py      # 2 x 2,500 programs
"""

from __future__ import annotations

import io
import json
import re
import tokenize
from typing import List, Optional, Tuple

import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from lintutil import ROOT

from rnnlint.config import Config
from rnnlint.engine import check_source
from rnnlint.reporters import RunResult
from rnnlint.reporters.json_report import report
from rnnlint.suppressions import split_lines

hypothesmith = pytest.importorskip("hypothesmith")

# hypothesmith compiles what it generates: its SyntaxWarnings are about the random programs.
pytestmark = pytest.mark.filterwarnings("ignore::SyntaxWarning")

SAMPLE = 30  # per source, in the normal suite
FULL = 2500  # per source, with -m fuzz: 5,000 programs in all

FIXTURES = sorted((ROOT / "fixtures").glob("*.py")) + sorted((ROOT / "fixtures" / "variants").glob("*.py"))
TEXTS = {p: p.read_text(encoding="utf-8") for p in FIXTURES}
FINDING_KEYS = {"path", "line", "column", "end_line", "end_column", "code", "name", "severity", "message"}
PREFIX = "import torch.nn as nn\n"

COMMON = dict(deadline=None, database=None, suppress_health_check=list(HealthCheck))


# -- mutations of the fixtures ----------------------------------------------------------

_ARGS = re.compile(r"\(([^(),\n]+),\s*([^(),\n]+)([,)])")
_IMPORT = re.compile(r"^(\s*)(import|from)\s+([\w.]+)(.*)$")


def _swap_arguments(line: str) -> str:
    return _ARGS.sub(lambda m: f"({m.group(2).strip()}, {m.group(1).strip()}{m.group(3)}", line, count=1)


def _rename_import(line: str) -> str:
    match = _IMPORT.match(line.rstrip("\n"))
    if not match:
        return line
    indent, keyword, module, rest = match.groups()
    if keyword == "import":
        if " as " in rest:
            return re.sub(r" as (\w+)", r" as \1_renamed", line, count=1)
        return f"{indent}import {module} as {module.split('.')[-1]}_renamed{rest}\n"
    return re.sub(r"import\s+(\w+)", r"import \1 as \1_renamed", line, count=1)


@st.composite
def mutated_fixtures(draw: st.DrawFn) -> Tuple[str, str]:
    path = draw(st.sampled_from(FIXTURES))
    lines = TEXTS[path].splitlines(keepends=True)
    for _ in range(draw(st.integers(1, 3))):
        if not lines:
            break
        i = draw(st.integers(0, len(lines) - 1))
        kind = draw(st.sampled_from(["delete", "neutralise", "swap", "rename", "duplicate"]))
        if kind == "delete":
            del lines[i:i + draw(st.integers(1, 3))]
        elif kind == "neutralise":  # a deleted statement that keeps the block valid
            body = lines[i].lstrip(" \t")
            if body.strip() and not body.startswith(("#", ")", "]", "}")):
                lines[i] = lines[i][: len(lines[i]) - len(body)] + "pass\n"
        elif kind == "duplicate":
            lines.insert(i, lines[i])
        elif kind == "swap":
            candidates = [j for j, ln in enumerate(lines) if _ARGS.search(ln)]
            if candidates:
                j = draw(st.sampled_from(candidates))
                lines[j] = _swap_arguments(lines[j])
        else:
            candidates = [j for j, ln in enumerate(lines) if _IMPORT.match(ln)]
            if candidates:
                j = draw(st.sampled_from(candidates))
                lines[j] = _rename_import(lines[j])
    return path.name, "".join(lines)


def random_programs() -> st.SearchStrategy:
    return hypothesmith.from_grammar().map(lambda code: ("generated.py", PREFIX + code))


# -- the invariants ---------------------------------------------------------------------


def _check(name: str, text: str):  # type: ignore[no-untyped-def]
    return check_source(name, text, Config())  # must not raise


def _json_report(result) -> dict:  # type: ignore[no-untyped-def]
    run = RunResult(findings=list(result.findings), errors=list(result.errors), files_checked=1)
    stream = io.StringIO()
    report(run, stream=stream)
    data = json.loads(stream.getvalue())
    assert set(data) == {"version", "findings", "errors", "summary"}
    assert len(data["findings"]) == len(result.findings) and len(data["errors"]) == len(result.errors)
    for finding in data["findings"]:
        assert FINDING_KEYS <= set(finding)
        assert finding["severity"] in ("error", "warning", "info") and finding["message"]
        assert re.fullmatch(r"RNN\d{3}", finding["code"])
    for error in data["errors"]:
        assert {"path", "message", "kind"} <= set(error) and error["message"]
        assert error["kind"] in ("read", "parse", "config", "internal")
    summary = data["summary"]
    assert summary["findings"] == len(data["findings"]) and summary["errors"] == len(data["errors"])
    assert sum(summary["by_severity"].values()) == len(data["findings"])
    return data


def _inside(lines: List[str], line: int, column: int) -> bool:
    return 1 <= line <= len(lines) and 1 <= column <= len(lines[line - 1]) + 1


def _noqa_is_a_comment(text: str, line: int, comment: str) -> bool:
    """Whether `comment` appended to `line` is a comment token there (not inside a string)."""
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (tokenize.TokenError, SyntaxError, IndentationError):
        return False
    return any(t.type == tokenize.COMMENT and t.start[0] == line and t.string.endswith(comment) for t in tokens)


def check_invariants(name: str, text: str, pick: Optional[int]) -> None:
    first = _check(name, text)
    internal = [e for e in first.errors if e.kind == "internal"]
    assert not internal, internal  # a rule that raised is a bug, isolated or not
    _json_report(first)
    lines = split_lines(text)
    for f in first.findings:
        assert _inside(lines, f.line, f.column), (f, len(lines))
        assert _inside(lines, f.end_line, f.end_column), (f, len(lines))
        assert (f.end_line, f.end_column) >= (f.line, f.column), f
    for e in first.errors:
        if e.line:
            assert 1 <= e.line <= len(lines) + 1, (e, len(lines))
    second = _check(name, text)
    assert (second.findings, second.errors) == (first.findings, first.errors)
    event("with findings" if first.findings else ("with errors" if first.errors else "clean"))

    if pick is None or not first.findings:
        return
    target = first.findings[pick % len(first.findings)]
    comment = f"# noqa: {target.code}"
    raw = text.splitlines(keepends=True)
    assume(len(raw) == len(lines))  # str.splitlines saw other separators: skip the edit
    body = raw[target.line - 1]
    stripped = body.rstrip("\r\n")
    raw[target.line - 1] = f"{stripped}  {comment}{body[len(stripped):]}"
    edited = "".join(raw)
    assume(_noqa_is_a_comment(edited, target.line, comment))
    after = _check(name, edited)
    event("suppression checked")
    assert target not in after.findings
    removed = [f for f in first.findings if f not in after.findings]
    assert all(f.code == target.code for f in removed), removed
    assert all(f in first.findings for f in after.findings), after.findings
    assert [e.message for e in after.errors] == [e.message for e in first.errors]


# -- the tests --------------------------------------------------------------------------


@settings(max_examples=SAMPLE, derandomize=True, **COMMON)
@given(program=random_programs(), pick=st.integers(0, 1000))
def test_random_programs_sample(program, pick):
    check_invariants(*program, pick)


@settings(max_examples=SAMPLE, derandomize=True, **COMMON)
@given(program=mutated_fixtures(), pick=st.integers(0, 1000))
def test_mutated_fixtures_sample(program, pick):
    check_invariants(*program, pick)


@pytest.mark.fuzz
@settings(max_examples=FULL, **COMMON)
@given(program=random_programs(), pick=st.integers(0, 1000))
def test_random_programs_fuzz(program, pick):
    check_invariants(*program, pick)


@pytest.mark.fuzz
@settings(max_examples=FULL, **COMMON)
@given(program=mutated_fixtures(), pick=st.integers(0, 1000))
def test_mutated_fixtures_fuzz(program, pick):
    check_invariants(*program, pick)


def test_mutations_change_the_text():
    """The mutation helpers do what their names say (else the fuzz would test the fixtures only)."""
    assert _swap_arguments("x = f(a, b)\n") == "x = f(b, a)\n"
    assert _rename_import("import torch.nn as nn\n") == "import torch.nn as nn_renamed\n"
    assert _rename_import("import torch\n") == "import torch as torch_renamed\n"
    assert _rename_import("from torch import nn\n") == "from torch import nn as nn_renamed\n"
    assert len(FIXTURES) >= 20
