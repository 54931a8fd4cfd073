"""Constant values through simple data flow.

What a rule may know about a value: literals; arithmetic on known values;
module constants and local names assigned exactly once; argparse defaults
(`args.x` where `args = parser.parse_args()`); config dicts and dataclass or
plain-class configs with literal fields; `self.x = x` in `__init__` from the
arguments at the class's construction sites. Anything else is UNKNOWN, and a
rule that meets UNKNOWN stays silent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Set, Tuple

import libcst as cst

from rnnlint.analysis.facts import CallFact, ModuleFacts, Scope
from rnnlint.analysis.names import dotted_name, resolve


class _Unknown:
    _instance: Optional["_Unknown"] = None

    def __new__(cls) -> "_Unknown":
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNKNOWN"

    def __bool__(self) -> bool:
        return False


UNKNOWN: Any = _Unknown()


def known(value: Any) -> bool:
    return value is not UNKNOWN


@dataclass(frozen=True)
class ArgsNamespace:
    """The result of parser.parse_args(): attributes resolve to argparse defaults."""


@dataclass
class ConfigObject:
    """An instance of a config class (dataclass or plain) with literal fields."""

    fields: Dict[str, Any] = field(default_factory=dict)


_MAX_DEPTH = 24


class Evaluator:
    def __init__(self, facts: ModuleFacts) -> None:
        self.facts = facts
        self._argparse: Optional[Dict[str, Any]] = None
        self._active: Set[Tuple[int, int]] = set()
        self._construction_sites: Dict[str, List[CallFact]] = {}
        self._self_attrs: Dict[int, Dict[str, List[Tuple[cst.BaseExpression, Scope]]]] = {}
        # Whole-project facts (rnnlint.analysis.project.ProjectView) when a directory is checked:
        # constants imported from other checked files (`from config import SEQ_LEN`).
        self.project: Any = None

    # -- public ---------------------------------------------------------------------

    def value(self, node: Optional[cst.CSTNode], scope: Scope) -> Any:
        if node is None:
            return UNKNOWN
        key = (id(node), id(scope))
        if key in self._active or len(self._active) > _MAX_DEPTH:
            return UNKNOWN
        self._active.add(key)
        try:
            return self._eval(node, scope)
        finally:
            self._active.discard(key)

    def number(self, node: Optional[cst.CSTNode], scope: Scope) -> Any:
        value = self.value(node, scope)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return UNKNOWN
        return value

    def construction_sites(self, class_name: str) -> List[CallFact]:
        sites = self._construction_sites.get(class_name)
        if sites is None:
            sites = [c for c in self.facts.calls if c.dotted == class_name]
            self._construction_sites[class_name] = sites
        return sites

    def self_attr_values(self, cls: Scope, attr: str) -> List[Tuple[cst.BaseExpression, Scope]]:
        """Every `self.<attr> = value` in the class's methods, with the method scope."""
        table = self._self_attrs.get(id(cls))
        if table is None:
            table = {}
            for method in cls.methods.values():
                for name, values in method.assigns.items():
                    if name.startswith("self.") and name.count(".") == 1:
                        for value in values:
                            table.setdefault(name[5:], []).append((value, method))
            self._self_attrs[id(cls)] = table
        return table.get(attr, [])

    # -- evaluation -----------------------------------------------------------------

    def _eval(self, node: cst.CSTNode, scope: Scope) -> Any:
        kind = type(node)
        if kind is cst.Integer or kind is cst.Float or kind is cst.SimpleString:
            try:
                return node.evaluated_value  # type: ignore[attr-defined]
            except Exception:  # noqa: BLE001 - malformed literal text
                return UNKNOWN
        if kind is cst.ConcatenatedString:
            return UNKNOWN
        if kind is cst.Name:
            return self._name(node.value, scope)  # type: ignore[attr-defined]
        if kind is cst.UnaryOperation:
            operand = self.value(node.expression, scope)  # type: ignore[attr-defined]
            op = type(node.operator)  # type: ignore[attr-defined]
            if isinstance(operand, (int, float)) and not isinstance(operand, bool):
                if op is cst.Minus:
                    return -operand
                if op is cst.Plus:
                    return operand
            if op is cst.Not and known(operand):
                return not operand
            return UNKNOWN
        if kind is cst.BinaryOperation:
            return self._binary(node, scope)  # type: ignore[arg-type]
        if kind is cst.IfExp:
            test = self.value(node.test, scope)  # type: ignore[attr-defined]
            if not known(test):
                return UNKNOWN
            return self.value(node.body if test else node.orelse, scope)  # type: ignore[attr-defined]
        if kind is cst.Tuple or kind is cst.List:
            items = [self.value(e.value, scope) for e in node.elements]  # type: ignore[attr-defined]
            return tuple(items)
        if kind is cst.Dict:
            return self._dict(node, scope)  # type: ignore[arg-type]
        if kind is cst.Attribute:
            return self._attribute(node, scope)  # type: ignore[arg-type]
        if kind is cst.Subscript:
            return self._subscript(node, scope)  # type: ignore[arg-type]
        if kind is cst.Call:
            return self._call(node, scope)  # type: ignore[arg-type]
        return UNKNOWN

    def _binary(self, node: cst.BinaryOperation, scope: Scope) -> Any:
        left = self.number(node.left, scope)
        right = self.number(node.right, scope)
        if not (known(left) and known(right)):
            return UNKNOWN
        op = type(node.operator)
        try:
            if op is cst.Add:
                return left + right
            if op is cst.Subtract:
                return left - right
            if op is cst.Multiply:
                return left * right
            if op is cst.Divide:
                return left / right
            if op is cst.FloorDivide:
                return left // right
            if op is cst.Power and abs(right) < 64:
                return left**right
            if op is cst.Modulo:
                return left % right
        except (ZeroDivisionError, OverflowError):
            return UNKNOWN
        return UNKNOWN

    def _dict(self, node: cst.Dict, scope: Scope) -> Any:
        out: Dict[Any, Any] = {}
        for element in node.elements:
            if not isinstance(element, cst.DictElement):
                return UNKNOWN  # **spread
            key = self.value(element.key, scope)
            if not known(key):
                return UNKNOWN
            out[key] = element.value  # evaluated lazily, in this scope
        return _LazyDict(out, scope)

    def _name(self, name: str, scope: Scope) -> Any:
        if name == "True":
            return True
        if name == "False":
            return False
        if name == "None":
            return None
        found = scope.binding(name)
        if found is not None:
            binder, is_param = found
            if is_param:
                if name in binder.assigns:
                    return UNKNOWN  # a parameter that is reassigned
                return self._param(binder, name)
            values = binder.assigns[name]
            return self.value(values[0], binder) if len(values) == 1 else UNKNOWN
        if self.project is not None and name in self.facts.aliases:
            return self.project.constant(resolve(name, self.facts.aliases))
        return UNKNOWN

    def _param(self, function: Scope, name: str) -> Any:
        """A parameter's value from the construction sites of the class it initialises."""
        default = function.params.get(name)
        cls = function.parent if function.is_method("__init__") else None
        if cls is not None:
            sites = self.construction_sites(cls.name)
            index = function.param_order.index(name) - 1  # skip self
        elif function.parent is not None and function.parent.kind == "module":
            # A module-level function (a model builder): the value every call in the file passes.
            sites = self.construction_sites(function.name)
            index = function.param_order.index(name)
        else:
            return UNKNOWN
        if not sites:
            return UNKNOWN  # never built or called here: the default is a guess, stay silent
        values = []
        for site in sites:
            if site.has_star_args:
                return UNKNOWN
            given = site.arg(index, name)
            if given is None:
                if default is None:
                    return UNKNOWN
                values.append(self.value(default, function))
            else:
                values.append(self.value(given, site.scope))
        first = values[0]
        if not known(first) or any(v != first or not known(v) for v in values[1:]):
            return UNKNOWN
        return first

    def _attribute(self, node: cst.Attribute, scope: Scope) -> Any:
        attr = node.attr.value
        base_name = dotted_name(node.value)
        if base_name == "self":
            cls = scope.enclosing_class
            if cls is None:
                return UNKNOWN
            assigned = self.self_attr_values(cls, attr)
            if len(assigned) == 1:
                value, method = assigned[0]
                return self.value(value, method)
            if not assigned and attr in cls.class_fields:
                return self.value(cls.class_fields[attr], cls)
            return UNKNOWN
        base = self.value(node.value, scope)
        if isinstance(base, ArgsNamespace):
            return self.argparse_defaults().get(attr, UNKNOWN)
        if isinstance(base, ConfigObject):
            return base.fields.get(attr, UNKNOWN)
        if isinstance(base, _LazyDict):
            return UNKNOWN
        if self.project is not None and base_name is not None and base_name.split(".")[0] in self.facts.aliases:
            imported = self.project.constant(resolve(base_name + "." + attr, self.facts.aliases))
            if known(imported):
                return imported
        # A class used as a namespace of constants: Config.HIDDEN
        if base_name is not None and base_name in self.facts.classes:
            cls = self.facts.classes[base_name]
            if attr in cls.class_fields:
                return self.value(cls.class_fields[attr], cls)
            plain = cls.assigns.get(attr)
            if plain and len(plain) == 1:
                return self.value(plain[0], cls)
        return UNKNOWN

    def _subscript(self, node: cst.Subscript, scope: Scope) -> Any:
        if len(node.slice) != 1 or not isinstance(node.slice[0].slice, cst.Index):
            return UNKNOWN
        base = self.value(node.value, scope)
        key = self.value(node.slice[0].slice.value, scope)
        if not known(key):
            return UNKNOWN
        if isinstance(base, _LazyDict):
            return base.get(key, self)
        if isinstance(base, tuple) and isinstance(key, int):
            try:
                return base[key]
            except IndexError:
                return UNKNOWN
        return UNKNOWN

    def _call(self, node: cst.Call, scope: Scope) -> Any:
        func = node.func
        dotted = dotted_name(func)
        if dotted in ("int", "float", "bool", "abs", "round") and len(node.args) == 1:
            inner = self.value(node.args[0].value, scope)
            if known(inner) and isinstance(inner, (int, float)):
                try:
                    return {"int": int, "float": float, "bool": bool, "abs": abs, "round": round}[dotted](inner)
                except (ValueError, OverflowError):
                    return UNKNOWN
            return UNKNOWN
        if dotted in ("max", "min") and len(node.args) >= 2:
            items = [self.number(a.value, scope) for a in node.args]
            if all(known(i) for i in items):
                return max(items) if dotted == "max" else min(items)
            return UNKNOWN
        if isinstance(func, cst.Attribute):
            method = func.attr.value
            if method == "parse_args" or method == "parse_known_args":
                if method == "parse_args" and not node.args:
                    return ArgsNamespace()
                return UNKNOWN
            if method == "get" and node.args:
                base = self.value(func.value, scope)
                if isinstance(base, _LazyDict):
                    key = self.value(node.args[0].value, scope)
                    if not known(key):
                        return UNKNOWN
                    if key in base.items:
                        return base.get(key, self)
                    if len(node.args) > 1:
                        return self.value(node.args[1].value, scope)
                    return None
            return UNKNOWN
        if dotted == "dict" and all(a.keyword is not None for a in node.args):
            return _LazyDict({a.keyword.value: a.value for a in node.args}, scope)  # type: ignore[union-attr]
        if dotted is not None and "." not in dotted:
            cls = self.facts.classes.get(dotted)
            if cls is not None and cls.class_fields:
                return self._config_object(cls, node, scope)
            function = self.facts.functions.get(dotted)
            if function is not None and len(function.returns) == 1 and not function.params:
                return self.value(function.returns[0], function)
            if function is not None and len(function.returns) == 1:
                # e.g. def get_args(): ...; return parser.parse_args()
                result = self.value(function.returns[0], function)
                if isinstance(result, ArgsNamespace):
                    return result
        return UNKNOWN

    def _config_object(self, cls: Scope, node: cst.Call, scope: Scope) -> Any:
        names = list(cls.class_fields)
        values: Dict[str, Any] = {}
        for name, default in cls.class_fields.items():
            values[name] = self.value(default, cls)
        for i, arg in enumerate(node.args):
            if arg.star:
                return UNKNOWN
            if arg.keyword is not None:
                values[arg.keyword.value] = self.value(arg.value, scope)
            elif i < len(names):
                values[names[i]] = self.value(arg.value, scope)
        return ConfigObject(values)

    def argparse_defaults(self) -> Dict[str, Any]:
        if self._argparse is None:
            table: Dict[str, Any] = {}
            seen: Set[str] = set()
            for call in self.facts.calls:
                if call.method != "add_argument":
                    continue
                flag = None
                for arg in call.args:
                    if arg.keyword is None and isinstance(arg.value, cst.SimpleString):
                        text = arg.value.evaluated_value
                        if isinstance(text, str) and (flag is None or text.startswith("--")):
                            flag = text
                dest_node = call.kwarg("dest")
                dest = self.value(dest_node, call.scope) if dest_node is not None else None
                if not isinstance(dest, str):
                    if flag is None:
                        continue
                    dest = flag.lstrip("-").replace("-", "_")
                if dest in seen:
                    table[dest] = UNKNOWN  # defined twice (sub-parsers): ambiguous
                    continue
                seen.add(dest)
                required = self.value(call.kwarg("required"), call.scope)
                action = self.value(call.kwarg("action"), call.scope)
                default_node = call.kwarg("default")
                if required is True:
                    table[dest] = UNKNOWN
                elif default_node is not None:
                    table[dest] = self.value(default_node, call.scope)
                elif action == "store_true":
                    table[dest] = False
                elif action == "store_false":
                    table[dest] = True
                else:
                    table[dest] = None
            self._argparse = table
        return self._argparse


class _LazyDict:
    """A dict literal whose values are evaluated on access (most are never read)."""

    def __init__(self, items: Dict[Any, cst.BaseExpression], scope: Scope) -> None:
        self.items = items
        self.scope = scope

    def __eq__(self, other: object) -> bool:
        # The same dict literal read twice (build(CONFIG) called at two sites) is the same value.
        if not isinstance(other, _LazyDict):
            return NotImplemented
        return self.scope is other.scope and self.items.keys() == other.items.keys() and all(
            self.items[k] is other.items[k] for k in self.items
        )

    def __hash__(self) -> int:
        return hash((id(self.scope), tuple(id(v) for v in self.items.values())))

    def get(self, key: Any, evaluator: Evaluator) -> Any:
        node = self.items.get(key)
        if node is None:
            return UNKNOWN
        return evaluator.value(node, self.scope)
