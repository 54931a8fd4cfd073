"""Facts about one module, collected in a single walk of its libcst tree.

Rules read these records; they never walk the tree themselves. Every record
keeps the libcst node it came from so that a rule can report it, and the
statement that holds it so that suppression comments on the statement's first
line apply. Positions are not computed here (see rnnlint.positions).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import libcst as cst


@dataclass(eq=False)
class Scope:
    """A module, class or function body."""

    kind: str  # "module" | "class" | "function"
    name: str
    node: cst.CSTNode
    parent: Optional["Scope"]
    # For functions: parameter name -> default expression (None when no default).
    params: Dict[str, Optional[cst.BaseExpression]] = field(default_factory=dict)
    param_order: List[str] = field(default_factory=list)
    # Local name -> every expression assigned to it in this scope, in order.
    assigns: Dict[str, List[cst.BaseExpression]] = field(default_factory=dict)
    returns: List[cst.BaseExpression] = field(default_factory=list)
    calls: List["CallFact"] = field(default_factory=list)
    # For classes: base class dotted names and the methods defined in the body.
    bases: List[str] = field(default_factory=list)
    methods: Dict[str, "Scope"] = field(default_factory=dict)
    # For classes: annotated class-level fields with defaults (dataclasses, configs).
    class_fields: Dict[str, cst.BaseExpression] = field(default_factory=dict)

    def binding(self, name: str) -> Optional[Tuple["Scope", bool]]:
        """The scope whose body binds `name` as seen from here (enclosing class bodies are
        skipped, as Python skips them), and whether it binds it as a parameter."""
        current: Optional[Scope] = self
        while current is not None:
            if current.kind == "class" and current is not self:
                current = current.parent
                continue
            if current.kind == "function" and name in current.params:
                return current, True
            if current.assigns.get(name):
                return current, False
            current = current.parent
        return None

    @property
    def enclosing_class(self) -> Optional["Scope"]:
        scope: Optional[Scope] = self
        while scope is not None:
            if scope.kind == "class":
                return scope
            scope = scope.parent
        return None

    @property
    def function(self) -> Optional["Scope"]:
        return self if self.kind == "function" else None

    def is_method(self, name: Optional[str] = None) -> bool:
        return (
            self.kind == "function"
            and self.parent is not None
            and self.parent.kind == "class"
            and (name is None or self.name == name)
        )


@dataclass(eq=False)
class Loop:
    node: cst.CSTNode  # cst.For or cst.While
    parent: Optional["Loop"]
    scope: Scope
    order: int
    target_names: Tuple[str, ...] = ()
    iter_node: Optional[cst.BaseExpression] = None
    calls: List["CallFact"] = field(default_factory=list)  # directly or nested inside
    has_break: List[cst.CSTNode] = field(default_factory=list)  # break statements directly in this loop

    def ancestors(self) -> Iterator["Loop"]:
        loop: Optional[Loop] = self
        while loop is not None:
            yield loop
            loop = loop.parent

    def contains(self, other: Optional["Loop"]) -> bool:
        return other is not None and any(a is self for a in other.ancestors())

    @property
    def depth(self) -> int:
        return sum(1 for _ in self.ancestors())


@dataclass(eq=False)
class CallFact:
    """A call expression with what the rules need to know about its context."""

    node: cst.Call
    dotted: Optional[str]  # "nn.LSTM", "optimizer.step", "self.lstm"; None for e.g. f()(x)
    method: Optional[str]  # last attribute name ("step") or the plain function name
    receiver: Optional[cst.BaseExpression]  # the object a method is called on
    scope: Scope
    loop: Optional[Loop]
    order: int
    stmt: cst.CSTNode
    guards: Tuple[cst.BaseExpression, ...]  # tests of the `if`s around it (inside its scope)
    assigned_to: Optional[str] = None  # dotted target when the call is the whole right-hand side
    qualname: Optional[str] = None  # resolved after the walk

    @property
    def args(self) -> Sequence[cst.Arg]:
        return self.node.args

    def kwarg(self, name: str) -> Optional[cst.BaseExpression]:
        for arg in self.node.args:
            if arg.keyword is not None and arg.keyword.value == name:
                return arg.value
        return None

    def positional(self, index: int) -> Optional[cst.BaseExpression]:
        i = 0
        for arg in self.node.args:
            if arg.keyword is None and not arg.star:
                if i == index:
                    return arg.value
                i += 1
        return None

    def arg(self, index: int, name: str) -> Optional[cst.BaseExpression]:
        """The argument given by keyword `name` or at position `index`."""
        value = self.kwarg(name)
        return value if value is not None else self.positional(index)

    @property
    def has_star_args(self) -> bool:
        return any(arg.star for arg in self.node.args)

    @property
    def receiver_dotted(self) -> Optional[str]:
        if self.dotted is None or "." not in self.dotted:
            return None
        return self.dotted.rsplit(".", 1)[0]


@dataclass(eq=False)
class AssignFact:
    target: str  # dotted: "x", "self.lstm", "args"
    value: cst.BaseExpression
    scope: Scope
    loop: Optional[Loop]
    order: int
    stmt: cst.CSTNode
    aug_op: Optional[str] = None  # "+=" etc. for augmented assignments
    unpack_index: Optional[int] = None  # position in a tuple target (a, b = f())


@dataclass(eq=False)
class SubscriptFact:
    node: cst.Subscript
    dotted: Optional[str]
    scope: Scope
    order: int
    stmt: cst.CSTNode


@dataclass(eq=False)
class ModuleFacts:
    path: str
    module: cst.Module
    aliases: Dict[str, str]  # local name -> imported dotted name
    module_scope: Scope
    scopes: List[Scope]
    classes: Dict[str, Scope]
    functions: Dict[str, Scope]  # module-level functions
    calls: List[CallFact]
    loops: List[Loop]
    assigns: List[AssignFact]
    subscripts: List[SubscriptFact]
    imported_modules: List[str]  # dotted module names imported anywhere
    # Filled lazily by rnnlint.analysis.derived; rules go through its helpers.
    cache: Dict[str, object] = field(default_factory=dict)

    def calls_to(self, *qualnames: str) -> List[CallFact]:
        wanted = set(qualnames)
        return [c for c in self.calls if c.qualname in wanted]

    def calls_matching(self, predicate) -> List[CallFact]:  # type: ignore[no-untyped-def]
        return [c for c in self.calls if predicate(c)]
