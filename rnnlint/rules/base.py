"""The rule interface: metadata, the context a rule reads, and how it reports."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Dict, List, Optional, Tuple, Type

import libcst as cst

from rnnlint.analysis.facts import ModuleFacts
from rnnlint.analysis.recurrent import RecurrentLayer, recurrent_layers
from rnnlint.analysis.training import TrainingUnit, training_units
from rnnlint.analysis.values import Evaluator
from rnnlint.findings import Severity


@dataclass(frozen=True)
class RuleMeta:
    code: str
    name: str
    severity: Severity
    frameworks: Tuple[str, ...]
    summary: str
    mode: str = "static"  # "static" | "runtime"
    options: Dict[str, Any] = field(default_factory=dict)


@dataclass(eq=False)
class Report:
    """A finding before positions are computed: the node to point at and its statement."""

    meta: RuleMeta
    node: cst.CSTNode
    stmt: Optional[cst.CSTNode]
    message: str
    # Nodes whose line numbers the message names: "{origin}" in message -> that node's line.
    refs: Dict[str, cst.CSTNode] = field(default_factory=dict)


class Context:
    """What one rule sees of one module. Derived facts are computed once and shared."""

    def __init__(self, facts: ModuleFacts, evaluator: Evaluator, options: Dict[str, Dict[str, Any]]) -> None:
        self.facts = facts
        self.evaluator = evaluator
        self._options = options
        self.reports: List[Report] = []
        self.meta: Optional[RuleMeta] = None

    @property
    def layers(self) -> List[RecurrentLayer]:
        return recurrent_layers(self.facts, self.evaluator)

    @property
    def units(self) -> List[TrainingUnit]:
        return training_units(self.facts)

    def has_recurrent(self, framework: Optional[str] = None) -> bool:
        return any(framework is None or layer.framework == framework for layer in self.layers)

    def option(self, name: str) -> Any:
        assert self.meta is not None
        configured = self._options.get(self.meta.code, {})
        return configured.get(name, self.meta.options[name])

    def report(
        self,
        node: cst.CSTNode,
        message: str,
        stmt: Optional[cst.CSTNode] = None,
        refs: Optional[Dict[str, cst.CSTNode]] = None,
    ) -> None:
        """Report `node`. `{key}` in the message becomes the line of refs[key]."""
        assert self.meta is not None
        self.reports.append(Report(self.meta, node, stmt, message, dict(refs or {})))


class Rule:
    meta: ClassVar[RuleMeta]

    def check(self, ctx: Context) -> None:  # pragma: no cover - interface
        raise NotImplementedError


REGISTRY: List[Type[Rule]] = []
RUNTIME_META: List[RuleMeta] = []


def rule(meta: RuleMeta) -> Callable[[Type[Rule]], Type[Rule]]:
    """Class decorator that attaches metadata and registers the rule."""

    def register(cls: Type[Rule]) -> Type[Rule]:
        cls.meta = meta
        REGISTRY.append(cls)
        return cls

    return register
