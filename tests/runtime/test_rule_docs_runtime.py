"""rules/RNN90x-*.md follow the runtime doc format exactly and document every threshold."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import pytest

from rnnlint.runtime.thresholds import OPTIONS_BY_CODE, Thresholds
from rnnlint.rules import BY_CODE

RULES = Path(__file__).resolve().parents[2] / "rules"
SECTIONS = ["What it does", "Why it hurts an RNN", "How it is measured", "Options", "References"]


def _doc(code: str) -> str:
    (path,) = RULES.glob(f"{code}-*.md")
    return path.read_text(encoding="utf-8")


@pytest.mark.parametrize("code", sorted(OPTIONS_BY_CODE))
def test_header_and_sections(code):
    meta = BY_CODE[code]
    text = _doc(code)
    header = (f"# {code} {meta.name}\n\n- Code: {code}\n- Name: {meta.name}\n- Severity: {meta.severity.value}\n"
              "- Frameworks: torch\n- Mode: runtime\n\n## What it does\n")
    assert text.startswith(header)
    assert re.findall(r"^## (.+)$", text, re.M) == SECTIONS
    assert (RULES / f"{code}-{meta.name}.md").is_file()


@pytest.mark.parametrize("code", sorted(OPTIONS_BY_CODE))
def test_every_threshold_documented_with_its_default(code):
    options = _doc(code).split("## Options", 1)[1].split("## References", 1)[0]
    defaults = Thresholds()
    for name in OPTIONS_BY_CODE[code]:
        found = re.search(rf"^- `{name}` \(default `([^`]+)`\): \S", options, re.M)
        assert found, f"{name} undocumented"
        assert float(found.group(1)) == getattr(defaults, name), name
    if not OPTIONS_BY_CODE[code]:
        assert options.strip().startswith("None")


def test_every_threshold_belongs_to_a_rule():
    owned = [name for names in OPTIONS_BY_CODE.values() for name in names]
    assert sorted(owned) == sorted(f.name for f in fields(Thresholds))
