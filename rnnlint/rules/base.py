"""The rule interface: metadata, the context a rule reads, and how it reports."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Dict, List, Optional, Tuple, Type, Union

import libcst as cst

from rnnlint.analysis.facts import ModuleFacts
from rnnlint.analysis.project import ImportedModel, imported_models
from rnnlint.analysis.recurrent import RecurrentLayer, keras_model_is_recurrent, recurrent_layers
from rnnlint.analysis.training import TrainingUnit, training_units
from rnnlint.analysis.values import Evaluator
from rnnlint.findings import Severity  # noqa: F401 - rule modules import it from here
from rnnlint.rules.meta import RuleMeta


@dataclass(frozen=True)
class Edit:
    """Source changes as libcst nodes of the module the rule saw: replace a node by a new one,
    insert statements after a statement, and the imports the new code needs
    (("copy", None) is `import copy`; ("keras.optimizers", "Adam") is `from keras.optimizers import Adam`)."""

    replace: Tuple[Tuple[cst.CSTNode, cst.CSTNode], ...] = ()
    insert_after: Tuple[Tuple[cst.BaseStatement, Tuple[cst.BaseStatement, ...]], ...] = ()
    imports: Tuple[Tuple[str, Optional[str]], ...] = ()


@dataclass(frozen=True)
class Fix:
    """How to repair one finding. Safe fixes keep what training does; unsafe ones change it
    (applied only with --unsafe-fixes). `edit` may be a callable, run only when fixing, that
    returns the Edit or None when the fix turns out to be uncertain."""

    description: str
    edit: Union[Edit, Callable[[], Optional[Edit]]]
    safe: bool = True

    def resolve(self) -> Optional[Edit]:
        return self.edit() if callable(self.edit) else self.edit


@dataclass(eq=False)
class Report:
    """A finding before positions are computed: the node to point at and its statement."""

    meta: RuleMeta
    node: cst.CSTNode
    stmt: Optional[cst.CSTNode]
    message: str
    # Nodes whose line numbers the message names: "{origin}" in message -> that node's line.
    refs: Dict[str, cst.CSTNode] = field(default_factory=dict)
    fix: Optional[Fix] = None


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

    @property
    def imported_models(self) -> List[ImportedModel]:
        """Models built here from classes or builders of other checked files (whole-project runs)."""
        return imported_models(self.facts, self.evaluator)

    def reads_other_files(self) -> bool:
        """Say that this rule's answer for the file depends on files outside its imports (the
        content cache then does not keep the file's result, which it could not invalidate)."""
        self.facts.cache["reads_other_files"] = True
        return True

    def has_recurrent(self, framework: Optional[str] = None) -> bool:
        """Whether this file builds a recurrent model: its own layers, or a model class or
        builder imported from another checked file."""
        if any(framework is None or layer.framework == framework for layer in self.layers):
            return True
        return any(
            framework is None or framework in model.frameworks() for model in self.imported_models
        )

    def keras_model_is_recurrent(self, model: Optional[str]) -> bool:
        """Whether the keras model held by the name `model` has a recurrent layer: built in this
        file, or returned by a builder (or class) imported from another checked file."""
        if keras_model_is_recurrent(self.facts, self.layers, model):
            return True
        imported = [m for m in self.imported_models if "keras" in m.frameworks()]
        if model is None:
            return bool(imported)
        return any(m.call.assigned_to == model for m in imported)

    def model_label(self, framework: Optional[str] = None) -> str:
        """How messages name the file's recurrent model: "nn.LSTM" or "CharLSTM (nn.LSTM)"."""
        for layer in self.layers:
            if framework is None or layer.framework == framework:
                return layer.label
        for model in self.imported_models:
            if framework is None or framework in model.frameworks():
                return model.label
        return "the recurrent model"

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
        fix: Optional[Fix] = None,
    ) -> None:
        """Report `node`. `{key}` in the message becomes the line of refs[key]; `fix`, when
        given, is how `rnnlint check --fix` repairs it."""
        assert self.meta is not None
        self.reports.append(Report(self.meta, node, stmt, message, dict(refs or {}), fix))


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
