"""The rule registry. One module per code family: rnn1_gradients holds RNN1xx, and so on.

Adding a rule: write a Rule subclass with @rule(RuleMeta(...)) in its family's
module, a doc in rules/<CODE>-<name>.md with bad and good examples (the tests
lint them), and fixtures with the expected findings.
"""

from __future__ import annotations

from typing import Dict, List, Type

from rnnlint.rules import (  # noqa: F401 - imported for registration
    rnn1_gradients,
    rnn2_schedule,
    rnn3_data,
    rnn4_dropout,
    rnn5_state,
    rnn6_architecture,
    rnn5_shapes,
    rnn9_runtime,
)
from rnnlint.rules.base import REGISTRY, RUNTIME_META, Rule, RuleMeta

STATIC_RULES: List[Type[Rule]] = sorted(REGISTRY, key=lambda r: r.meta.code)
ALL_META: List[RuleMeta] = sorted([r.meta for r in STATIC_RULES] + RUNTIME_META, key=lambda m: m.code)
BY_CODE: Dict[str, RuleMeta] = {m.code: m for m in ALL_META}
BY_NAME: Dict[str, RuleMeta] = {m.name: m for m in ALL_META}


def lookup(code_or_name: str) -> RuleMeta:
    """The rule for a code ("RNN101", case-insensitive) or name ("no-grad-clipping")."""
    key = code_or_name.strip()
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
    return any(matches(selector, m) for m in ALL_META)
