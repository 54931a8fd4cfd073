"""Every rule has a doc in rules/ whose header matches the registry, and whose examples
are linted: each bad example must give the rule's code, each good example must not."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

from rnnlint.config import Config
from rnnlint.engine import check_source
from rnnlint.rules import ALL_META, STATIC_RULES

RULES_DIR = Path(__file__).resolve().parent.parent / "rules"
_FIELD = re.compile(r"^- (Code|Name|Severity|Frameworks|Mode|Reported at): (.+)$", re.M)
_SECTION = re.compile(r"^## (.+)$", re.M)
_BLOCK = re.compile(r"```python\n(.*?)```", re.S)


def doc_path(code: str, name: str) -> Path:
    return RULES_DIR / f"{code}-{name}.md"


def sections(text: str) -> Dict[str, str]:
    parts = _SECTION.split(text)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def examples(kind: str) -> List[Tuple[str, int, str]]:
    out = []
    for rule in STATIC_RULES:
        meta = rule.meta
        text = doc_path(meta.code, meta.name).read_text()
        for i, block in enumerate(_BLOCK.findall(sections(text).get(kind, ""))):
            out.append((meta.code, i, block))
    return out


@pytest.mark.parametrize("meta", ALL_META, ids=lambda m: m.code)
def test_doc_exists_and_header_matches_registry(meta):
    path = doc_path(meta.code, meta.name)
    assert path.is_file(), f"missing doc {path.name}"
    text = path.read_text()
    assert text.startswith(f"# {meta.code} {meta.name}\n")
    fields = dict(_FIELD.findall(text))
    assert fields["Code"] == meta.code and fields["Name"] == meta.name
    assert fields["Severity"] == meta.severity.value
    assert [f.strip() for f in fields["Frameworks"].split(",")] == list(meta.frameworks)
    found = sections(text)
    assert "What it does" in found and "Why it hurts an RNN" in found and "Options" in found
    if meta.mode == "static":
        assert _BLOCK.findall(found.get("Bad example", "")), "no bad example"
        assert _BLOCK.findall(found.get("Good example", "")), "no good example"
        for option in meta.options:
            assert option in found["Options"], f"option {option} undocumented"


def _codes(block: str) -> List[str]:
    result = check_source("example.py", block, Config())
    assert not result.errors, result.errors
    return [f.code for f in result.findings]


@pytest.mark.parametrize("code,index,block", examples("Bad example"), ids=lambda v: str(v)[:8])
def test_bad_example_fires(code, index, block):
    assert code in _codes(block)


@pytest.mark.parametrize("code,index,block", examples("Good example"), ids=lambda v: str(v)[:8])
def test_good_example_is_silent(code, index, block):
    assert code not in _codes(block)
