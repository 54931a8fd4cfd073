"""The README cannot drift from the registry, and its commands are the ones CI runs."""

from __future__ import annotations

import re

from lintutil import ROOT

from rnnlint.cli import rules_markdown

README = (ROOT / "README.md").read_text()


def test_rule_table_matches_registry():
    block = README.split("<!-- rules-table -->\n", 1)[1].split("\n<!-- /rules-table -->", 1)[0]
    assert block == rules_markdown()


def test_commands_are_marked_and_ci_reads_the_test_command():
    for marker in ("<!-- main-command -->", "<!-- test-command -->"):
        assert re.search(re.escape(marker) + r"\n```bash\n.+\n```", README)
    ci = (ROOT / ".ci" / "run").read_text()
    assert "<!-- test-command -->" in ci and "set -euo pipefail" in ci


def test_pre_commit_hook_is_declared():
    text = (ROOT / ".pre-commit-hooks.yaml").read_text()
    assert "id: rnnlint" in text and "entry: rnnlint check" in text


def test_rules_index_lists_every_rule():
    from rnnlint.cli import rules_markdown

    text = (ROOT / "rules" / "README.md").read_text(encoding="utf-8")
    block = text.split("<!-- rules-index -->\n", 1)[1].split("\n<!-- /rules-index -->", 1)[0]
    assert block == rules_markdown(""), "regenerate the table in rules/README.md from rules_markdown('')"
