"""The generated rule catalog matches the rule modules, and metadata stays light."""

from __future__ import annotations

import subprocess
import sys

from rnnlint.rules import registered_meta
from rnnlint.rules.catalog import CATALOG


def test_catalog_matches_the_registered_rules():
    assert sorted(CATALOG, key=lambda m: m.code) == registered_meta(), (
        "rnnlint/rules/catalog.py is out of date: run `python -m rnnlint.rules._catalog_gen`"
    )


def test_listing_and_configuring_rules_does_not_import_libcst_or_the_rules():
    code = (
        "import sys\n"
        "from rnnlint.config import Config\n"
        "from rnnlint.rules import ALL_META, lookup, valid_selector\n"
        "assert lookup('RNN101').name == 'no-grad-clipping' and valid_selector('RNN4')\n"
        "Config(select=['RNN1']).enabled_codes()\n"
        "print(sorted(m for m in sys.modules if m.startswith(('libcst', 'rnnlint.rules.rnn'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
