"""Regenerate rnnlint/rules/catalog.py from the registered rules:

    python -m rnnlint.rules._catalog_gen

tests/test_catalog.py fails with this hint when the catalog is out of date.
"""

from __future__ import annotations

from pathlib import Path

HEADER = '''"""Every rule's metadata, generated from the rule modules by `python -m rnnlint.rules._catalog_gen`
(tests/test_catalog.py keeps it in step). Reading it costs nothing: selecting, listing and
configuring rules, and runs answered from the cache, never import the rule modules or libcst."""

from rnnlint.findings import Severity
from rnnlint.rules.meta import RuleMeta

CATALOG = [
'''


def render() -> str:
    from rnnlint.rules import registered_meta

    lines = [HEADER]
    for m in registered_meta():
        lines.append(
            f"    RuleMeta({m.code!r}, {m.name!r}, Severity.{m.severity.name}, {tuple(m.frameworks)!r},\n"
            f"             {m.summary!r},\n"
            f"             {m.mode!r}, {dict(m.options)!r}),\n"
        )
    lines.append("]\n")
    return "".join(lines)


def main() -> None:
    target = Path(__file__).with_name("catalog.py")
    target.write_text(render(), encoding="utf-8")
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
