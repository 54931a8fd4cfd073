"""The rule registry. One module per code family: rnn1_gradients holds RNN1xx, and so on.

Adding a rule: write a Rule subclass with @rule(RuleMeta(...)) in its family's
module, a doc in rules/<CODE>-<name>.md with bad and good examples (the tests
lint them), and fixtures with the expected findings; then regenerate the catalog
(`python -m rnnlint.rules._catalog_gen`).

Metadata (ALL_META, BY_CODE, BY_NAME, lookup, selectors) comes from the generated
catalog and costs no import of the rule modules; STATIC_RULES imports them on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Dict, List, Type

from rnnlint.rules.catalog import CATALOG
from rnnlint.rules.meta import RuleMeta

if TYPE_CHECKING:  # pragma: no cover
    from rnnlint.rules.base import Rule

FAMILIES = (
    "rnn1_gradients",
    "rnn2_schedule",
    "rnn3_data",
    "rnn4_dropout",
    "rnn5_state",
    "rnn5_shapes",
    "rnn6_architecture",
    "rnn9_runtime",
)


def load_rules() -> "List[Type[Rule]]":
    """Every static rule class, sorted by code (imports the family modules once)."""
    for family in FAMILIES:
        importlib.import_module(f"rnnlint.rules.{family}")
    from rnnlint.rules.base import REGISTRY

    return sorted(REGISTRY, key=lambda r: r.meta.code)


def registered_meta() -> List[RuleMeta]:
    rules = load_rules()
    from rnnlint.rules.base import RUNTIME_META

    return sorted([r.meta for r in rules] + list(RUNTIME_META), key=lambda m: m.code)


ALL_META: List[RuleMeta] = sorted(CATALOG, key=lambda m: m.code)
BY_CODE: Dict[str, RuleMeta] = {m.code: m for m in ALL_META}
BY_NAME: Dict[str, RuleMeta] = {m.name: m for m in ALL_META}
_refreshed: List[bool] = []


def _refresh() -> bool:
    """Fall back to the rule modules when the catalog misses a code (a rule added since the
    catalog was generated, during development). True when something changed."""
    if _refreshed:
        return False
    _refreshed.append(True)
    fresh = registered_meta()
    if fresh == ALL_META:
        return False
    ALL_META[:] = fresh
    BY_CODE.clear()
    BY_CODE.update({m.code: m for m in fresh})
    BY_NAME.clear()
    BY_NAME.update({m.name: m for m in fresh})
    return True


def __getattr__(name: str) -> Any:
    if name == "STATIC_RULES":
        return load_rules()
    raise AttributeError(name)


def lookup(code_or_name: str) -> RuleMeta:
    """The rule for a code ("RNN101", case-insensitive) or name ("no-grad-clipping")."""
    key = code_or_name.strip()
    meta = BY_CODE.get(key.upper()) or BY_NAME.get(key.lower())
    if meta is None and _refresh():
        meta = BY_CODE.get(key.upper()) or BY_NAME.get(key.lower())
    if meta is None:
        raise KeyError(code_or_name)
    return meta


def matches(selector: str, meta: RuleMeta) -> bool:
    """A selector is a code, a code prefix (RNN4, RNN50), a name, or ALL."""
    s = selector.strip()
    if s.upper() == "ALL":
        return True
    if s.lower() == meta.name:
        return True
    return meta.code.startswith(s.upper()) and s.upper().startswith("RNN")


def valid_selector(selector: str) -> bool:
    if any(matches(selector, m) for m in ALL_META):
        return True
    return _refresh() and any(matches(selector, m) for m in ALL_META)
