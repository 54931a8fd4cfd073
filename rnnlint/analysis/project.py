"""Whole-project facts: what a module exports to the files that import it.

When a directory is checked, each file is analysed after the checked files it imports
(rnnlint.runner orders the work). A file's *summary* is plain data (JSON, so that it can be
cached and sent between processes): its module-level constants, the classes that build
recurrent layers (with each layer's configuration: a literal, or a reference to the
constructor parameter that sets it), whether they use dropout, and the builder functions that
return recurrent models. The importing file sees those summaries through a ProjectView,
keyed by the module names it imports, so that `model = CharLSTM(vocab, 256, num_layers=2)` in
train.py is known to be a two-layer LSTM defined in model.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import libcst as cst

from rnnlint.analysis.facts import CallFact, ModuleFacts, Scope
from rnnlint.analysis.names import dotted_name, resolve
from rnnlint.analysis.recurrent import _TORCH_CELL_PARAMS, _TORCH_PARAMS, RecurrentLayer, recurrent_layers
from rnnlint.analysis.values import UNKNOWN, Evaluator, known

_KERAS_ARGS = ("units", "return_sequences", "return_state", "stateful", "dropout", "recurrent_dropout",
               "activation", "bidirectional")
_DROPOUT = frozenset({
    "torch.nn.Dropout", "torch.nn.Dropout1d", "torch.nn.Dropout2d", "torch.nn.AlphaDropout",
    "torch.nn.functional.dropout", "keras.layers.Dropout", "keras.layers.SpatialDropout1D",
})


def _plain(value: Any) -> Any:
    """The value as JSON data, or UNKNOWN when it has no faithful JSON form."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else UNKNOWN
    if isinstance(value, tuple) and len(value) <= 16:
        items = [_plain(v) for v in value]
        return UNKNOWN if any(v is UNKNOWN for v in items) else items
    return UNKNOWN


def _param_ref(node: Optional[cst.CSTNode], scope: Scope, evaluator: Evaluator) -> Optional[Dict[str, Any]]:
    """{"param", "index", "default"} when `node` is a constructor parameter of the class."""
    if node is None:
        return None
    name = dotted_name(node)
    function = scope if scope.kind == "function" else None
    if name is None or function is None or not function.is_method("__init__"):
        return None
    if name.startswith("self.") and name.count(".") == 1 and function.parent is not None:
        assigned = evaluator.self_attr_values(function.parent, name[5:])
        if len(assigned) != 1:
            return None
        value, method = assigned[0]
        return _param_ref(value, method, evaluator)
    if name not in function.params or name in function.assigns:
        return None
    ref: Dict[str, Any] = {"param": name, "index": function.param_order.index(name) - 1}
    default = function.params.get(name)
    if default is not None:
        plain = _plain(evaluator.value(default, function))
        if plain is not UNKNOWN:
            ref["default"] = plain
    return ref


def _layer_summary(layer: RecurrentLayer, evaluator: Evaluator) -> Dict[str, Any]:
    args: Dict[str, Any] = {}
    call = layer.call
    if layer.framework == "torch":
        table = _TORCH_CELL_PARAMS if layer.cell else _TORCH_PARAMS.get(layer.kind, ())
        nodes = [(param, call.arg(i, param)) for i, (param, _) in enumerate(table)]
    else:
        nodes = [(p, call.arg(0, p) if p == "units" else call.kwarg(p)) for p in _KERAS_ARGS]
    for param, node in nodes:
        if call.has_star_args:
            break
        ref = _param_ref(node, call.scope, evaluator)
        if ref is not None:
            args[param] = ref
            continue
        plain = _plain(layer.get(param))
        if plain is not UNKNOWN:
            args[param] = plain
    return {"framework": layer.framework, "kind": layer.kind, "cell": layer.cell, "args": args}


def _class_layers(cls: Scope, layers: List[RecurrentLayer]) -> List[RecurrentLayer]:
    return [layer for layer in layers if layer.owner is cls]


def _uses_dropout(calls: List[CallFact]) -> bool:
    return any(c.qualname in _DROPOUT for c in calls)


def _all_calls(scope: Scope) -> List[CallFact]:
    out = list(scope.calls)
    for method in scope.methods.values():
        out.extend(method.calls)
    return out


def summarize(facts: ModuleFacts, evaluator: Evaluator) -> Dict[str, Any]:
    """What this module exports to importing files (plain data, deterministic)."""
    layers = recurrent_layers(facts, evaluator)
    view: Optional[ProjectView] = getattr(evaluator, "project", None)
    classes: Dict[str, Any] = {}
    for name, cls in facts.classes.items():
        own = [_layer_summary(layer, evaluator) for layer in _class_layers(cls, layers)]
        dropout = _uses_dropout(_all_calls(cls))
        for base in cls.bases:
            inherited = _class_entry(facts, view, base)
            if inherited:
                own.extend(inherited.get("layers", []))
                dropout = dropout or bool(inherited.get("dropout"))
        if own or dropout:
            classes[name] = {"layers": own, "dropout": dropout}
    functions: Dict[str, Any] = {}
    for name, function in facts.functions.items():
        found = [
            _layer_summary(layer, evaluator)
            for layer in layers
            if layer.owner is None and _inside(layer.call.scope, function)
        ]
        for call in function.calls:
            built = _class_entry(facts, view, call.dotted) if call.dotted else None
            if built:
                found.extend(built.get("layers", []))
        if found:
            functions[name] = {"layers": found}
    constants: Dict[str, Any] = {}
    for name, values in facts.module_scope.assigns.items():
        if len(values) == 1 and "." not in name:
            plain = _plain(evaluator.value(values[0], facts.module_scope))
            if plain is not UNKNOWN:
                constants[name] = plain
    if view is not None:  # re-exports: `from .model import CharLSTM` in a package __init__
        for local, qualname in facts.aliases.items():
            found_entry = view.lookup(qualname)
            if found_entry is None:
                continue
            kind, data = found_entry
            table = {"class": classes, "function": functions, "constant": constants}[kind]
            table.setdefault(local, data)
    return {"classes": classes, "functions": functions, "constants": constants}


def _inside(scope: Optional[Scope], function: Scope) -> bool:
    while scope is not None:
        if scope is function:
            return True
        scope = scope.parent
    return False


def _class_entry(facts: ModuleFacts, view: Optional["ProjectView"], dotted: Optional[str]) -> Optional[Dict[str, Any]]:
    """The summary entry of a class named in this module, local (without re-summarising) or
    imported from a checked file."""
    if not dotted:
        return None
    if view is not None:
        qualname = resolve(dotted, facts.aliases)
        if qualname is not None:
            found = view.lookup(qualname)
            if found is not None and found[0] == "class":
                return found[1]
    return None


class ProjectView:
    """The summaries of the checked files one module imports, keyed by the module name as
    that file spells it ("model", "pkg.model", ".model")."""

    def __init__(self, entries: Dict[str, Dict[str, Any]]) -> None:
        self.entries = entries

    def __bool__(self) -> bool:
        return bool(self.entries)

    def lookup(self, qualname: str) -> Optional[Tuple[str, Any]]:
        module, _, name = qualname.rpartition(".")
        summary = self.entries.get(module)
        if summary is None or not name:
            return None
        for kind, table in (("class", "classes"), ("function", "functions"), ("constant", "constants")):
            if name in summary.get(table, {}):
                return kind, summary[table][name]
        return None

    def constant(self, qualname: Optional[str]) -> Any:
        if not qualname:
            return UNKNOWN
        found = self.lookup(qualname)
        if found is None or found[0] != "constant":
            return UNKNOWN
        value = found[1]
        return tuple(value) if isinstance(value, list) else value


@dataclass(eq=False)
class ImportedModel:
    """A model built in this file from a class or builder function of another checked file."""

    call: CallFact  # the construction here: CharLSTM(...) or build_model(...)
    name: str  # the class or function name as written here
    kind: str  # "class" | "function"
    layers: List[Dict[str, Any]]
    dropout: bool

    def frameworks(self) -> List[str]:
        return [layer["framework"] for layer in self.layers]

    @property
    def label(self) -> str:
        kinds = sorted({("nn." if l["framework"] == "torch" else "") + l["kind"] for l in self.layers})
        return f"{self.name} ({', '.join(kinds)})" if kinds else self.name

    def value(self, layer: Dict[str, Any], param: str, evaluator: Evaluator) -> Any:
        """A layer argument as this construction sets it (UNKNOWN when it cannot be known)."""
        spec = layer.get("args", {}).get(param, UNKNOWN)
        if spec is UNKNOWN:
            return UNKNOWN
        if isinstance(spec, dict):
            if self.kind != "class" or self.call.has_star_args:
                return UNKNOWN
            node = self.call.kwarg(spec["param"])
            if node is None and spec["index"] >= 0:
                node = self.call.positional(spec["index"])
            if node is None:
                return spec.get("default", UNKNOWN)
            return evaluator.value(node, self.call.scope)
        return tuple(spec) if isinstance(spec, list) else spec


def imported_models(facts: ModuleFacts, evaluator: Evaluator) -> List[ImportedModel]:
    cached = facts.cache.get("imported_models")
    if cached is not None:
        return cached  # type: ignore[return-value]
    view: Optional[ProjectView] = getattr(evaluator, "project", None)
    models: List[ImportedModel] = []
    if view:
        for call in facts.calls:
            if call.qualname is None:
                continue
            found = view.lookup(call.qualname)
            if found is None or found[0] not in ("class", "function"):
                continue
            kind, data = found
            if data.get("layers") or data.get("dropout"):
                models.append(ImportedModel(call, call.dotted or call.qualname, kind,
                                            list(data.get("layers", [])), bool(data.get("dropout"))))
    facts.cache["imported_models"] = models
    return models


__all__ = ["ImportedModel", "ProjectView", "imported_models", "summarize", "known"]
