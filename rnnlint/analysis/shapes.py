"""Tensor layout reasoning for recurrent layers: which names hold a layer's output and final
state, what a name holds at a given statement, and how wide a tensor is.

The walker's facts record flat assignments only; a recurrent call is usually unpacked into a
nested target (`out, (h_n, c_n) = self.lstm(x)`). `FlowIndex` reads one function (or module)
body again, numbers its statements in order and records every name each statement binds,
with its position in the target. A use is resolved to the latest binding before it, and only
when that binding reaches the use on every path (same block, or an enclosing one) or is the
only one; otherwise the value is unknown and the rules stay silent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import libcst as cst

from rnnlint.analysis.facts import CallFact, ModuleFacts, Scope
from rnnlint.analysis.names import dotted_name
from rnnlint.analysis.recurrent import RecurrentLayer, layer_bound_to
from rnnlint.analysis.values import Evaluator, known
from rnnlint.analysis.walker import walk

_COMPOUND = (cst.If, cst.For, cst.While, cst.With, cst.Try, cst.FunctionDef, cst.ClassDef)
_SCOPE_NODES = (cst.FunctionDef, cst.ClassDef, cst.Lambda)
# Methods that keep a tensor's layout and width.
KEEP_METHODS = frozenset(
    {"to", "cuda", "cpu", "float", "double", "half", "contiguous", "detach", "clone", "relu", "tanh",
     "sigmoid", "type", "requires_grad_"}
)
# Functions that keep a tensor's layout and width.
KEEP_FUNCTIONS = frozenset(
    "torch." + n for n in ("relu", "tanh", "sigmoid", "nn.functional.relu", "nn.functional.gelu",
                           "nn.functional.elu", "nn.functional.leaky_relu", "nn.functional.dropout",
                           "nn.functional.tanh", "nn.functional.sigmoid", "nn.functional.selu",
                           "nn.functional.silu")
)
# nn modules that keep their input's layout and width.
KEEP_MODULES = frozenset(
    "torch.nn." + n for n in ("Dropout", "ReLU", "Tanh", "GELU", "ELU", "SELU", "SiLU", "LeakyReLU",
                              "Sigmoid", "LayerNorm", "Identity", "Mish", "PReLU")
)


@dataclass(eq=False)
class Binding:
    """`name` bound by statement number `index`; `value` is the right-hand side (None when
    the statement is not a plain assignment: loop targets, augmented assignments, with)."""

    index: int
    stmt: cst.CSTNode
    value: Optional[cst.BaseExpression]
    path: Tuple[int, ...]  # position inside a tuple target: (1, 0) is h_n in `out, (h_n, c_n) = ...`
    blocks: Tuple[int, ...]  # ids of the blocks that enclose the statement, outermost first


class FlowIndex:
    """Statement order and name bindings of one function or module body."""

    def __init__(self, scope_node: cst.CSTNode) -> None:
        self.stmt_index: Dict[int, int] = {}
        self.stmt_blocks: Dict[int, Tuple[int, ...]] = {}
        self.bindings: Dict[str, List[Binding]] = {}
        # Block id -> id of the `if` whose branch it is (if-body, else-body or elif).
        self.branch_of: Dict[int, int] = {}
        body = scope_node.body if isinstance(scope_node, (cst.FunctionDef, cst.ClassDef)) else scope_node
        self._count = 0
        if isinstance(body, cst.Module):
            self._block(body.body, (id(body),))
        elif isinstance(body, cst.IndentedBlock):
            self._block(body.body, (id(body),))
        elif isinstance(body, cst.SimpleStatementSuite):
            self._statement(body, (id(body),))

    # -- indexing ---------------------------------------------------------------------

    def _block(self, statements: Sequence[cst.CSTNode], blocks: Tuple[int, ...]) -> None:
        for stmt in statements:
            self._statement(stmt, blocks)

    def _suite(self, suite: Optional[cst.CSTNode], blocks: Tuple[int, ...]) -> None:
        if suite is None:
            return
        if isinstance(suite, cst.IndentedBlock):
            self._block(suite.body, blocks + (id(suite),))
        elif isinstance(suite, cst.SimpleStatementSuite):
            self._statement(suite, blocks + (id(suite),))

    def _statement(self, stmt: cst.CSTNode, blocks: Tuple[int, ...]) -> None:
        self._count += 1
        index = self._count
        self.stmt_index[id(stmt)] = index
        self.stmt_blocks[id(stmt)] = blocks
        if isinstance(stmt, (cst.SimpleStatementLine, cst.SimpleStatementSuite)):
            for small in stmt.body:
                self._small(small, index, stmt, blocks)
            return
        if isinstance(stmt, (cst.FunctionDef, cst.ClassDef)):
            self._bind(stmt.name.value, index, stmt, None, (), blocks)
            return
        if isinstance(stmt, cst.For):
            for name, path in target_paths(stmt.target):
                self._bind(name, index, stmt, None, path, blocks + (id(stmt.body),))
            self._suite(stmt.body, blocks)
            if stmt.orelse is not None:
                self._suite(stmt.orelse.body, blocks)
            return
        if isinstance(stmt, cst.While):
            self._suite(stmt.body, blocks)
            if stmt.orelse is not None:
                self._suite(stmt.orelse.body, blocks)
            return
        if isinstance(stmt, cst.If):
            self.branch_of[id(stmt.body)] = id(stmt)
            self._suite(stmt.body, blocks)
            orelse = stmt.orelse
            if isinstance(orelse, cst.If):
                self.branch_of[id(orelse)] = id(stmt)
                self._statement(orelse, blocks + (id(orelse),))
            elif orelse is not None:
                self.branch_of[id(orelse.body)] = id(stmt)
                self._suite(orelse.body, blocks)
            return
        if isinstance(stmt, cst.With):
            for item in stmt.items:
                if item.asname is not None:
                    for name, path in target_paths(item.asname.name):
                        self._bind(name, index, stmt, None, path, blocks)
            self._suite(stmt.body, blocks)
            return
        if isinstance(stmt, cst.Try):
            self._suite(stmt.body, blocks)
            for handler in stmt.handlers:
                self._suite(handler.body, blocks)
            if stmt.orelse is not None:
                self._suite(stmt.orelse.body, blocks)
            if stmt.finalbody is not None:
                self._suite(stmt.finalbody.body, blocks)
            return
        # Match and other rare statements: any name they bind makes it ambiguous.
        for node in _walk(stmt):
            if isinstance(node, cst.Name):
                self._bind(node.value, index, stmt, None, (), blocks + (-1,))

    def _small(self, small: cst.CSTNode, index: int, stmt: cst.CSTNode, blocks: Tuple[int, ...]) -> None:
        if isinstance(small, cst.Assign):
            for target in small.targets:
                for name, path in target_paths(target.target):
                    self._bind(name, index, stmt, small.value, path, blocks)
        elif isinstance(small, cst.AnnAssign) and small.value is not None:
            for name, path in target_paths(small.target):
                self._bind(name, index, stmt, small.value, path, blocks)
        elif isinstance(small, cst.AugAssign):
            for name, path in target_paths(small.target):
                self._bind(name, index, stmt, None, path, blocks)
        for node in _walk(small):
            if isinstance(node, cst.NamedExpr):
                for name, path in target_paths(node.target):
                    self._bind(name, index, stmt, None, path, blocks + (-1,))

    def _bind(self, name: str, index: int, stmt: cst.CSTNode, value, path, blocks) -> None:  # type: ignore[no-untyped-def]
        self.bindings.setdefault(name, []).append(Binding(index, stmt, value, path, blocks))

    # -- queries ----------------------------------------------------------------------

    def index_of(self, stmt: Optional[cst.CSTNode]) -> Optional[int]:
        return None if stmt is None else self.stmt_index.get(id(stmt))

    def binding_at(self, name: str, stmt: Optional[cst.CSTNode]) -> Optional[Binding]:
        """The binding of `name` that a use in `stmt` sees, when it is certain."""
        use = self.index_of(stmt)
        if use is None:
            return None
        use_blocks = self.stmt_blocks.get(id(stmt), ())
        before = [
            b for b in self.bindings.get(name, ())
            if b.index < use and not self._exclusive(b.blocks, use_blocks)
        ]
        if not before:
            return None
        latest = before[-1]
        if -1 in latest.blocks:
            return None
        dominates = use_blocks[: len(latest.blocks)] == latest.blocks
        if dominates or len(before) == 1:
            return latest
        return None

    def _exclusive(self, first: Tuple[int, ...], second: Tuple[int, ...]) -> bool:
        """Whether two statements sit in different branches of one `if` (never both run)."""
        for a, b in zip(first, second):
            if a != b:
                parent = self.branch_of.get(a)
                return parent is not None and parent == self.branch_of.get(b)
        return False

    def count(self, name: str) -> int:
        return len(self.bindings.get(name, ()))


def target_paths(node: cst.CSTNode, prefix: Tuple[int, ...] = ()) -> List[Tuple[str, Tuple[int, ...]]]:
    """Dotted names in an assignment target with their tuple positions."""
    dotted = dotted_name(node)
    if dotted is not None:
        return [(dotted, prefix)]
    if isinstance(node, (cst.Tuple, cst.List)):
        out: List[Tuple[str, Tuple[int, ...]]] = []
        for i, element in enumerate(node.elements):
            if isinstance(element, cst.StarredElement):
                return out + [(n, prefix + (-1,)) for n, _ in target_paths(element.value)]
            out.extend(target_paths(element.value, prefix + (i,)))
        return out
    return []


def _walk(node: cst.CSTNode):  # type: ignore[no-untyped-def]
    """The nodes of one function body, not those of functions or classes nested in it."""
    return walk(node, stop=lambda n: isinstance(n, _SCOPE_NODES))


def walk_expr(node: cst.CSTNode):  # type: ignore[no-untyped-def]
    """Every node of an expression (not entering lambdas)."""
    return _walk(node)


def flow_index(facts: ModuleFacts, scope: Scope) -> FlowIndex:
    table = facts.cache.setdefault("flow_index", {})
    assert isinstance(table, dict)
    index = table.get(id(scope))
    if index is None:
        index = FlowIndex(scope.node)
        table[id(scope)] = index
    return index


def calls_by_node(facts: ModuleFacts) -> Dict[int, CallFact]:
    table = facts.cache.get("shapes_calls_by_node")
    if table is None:
        table = {id(c.node): c for c in facts.calls}
        facts.cache["shapes_calls_by_node"] = table
    return table  # type: ignore[return-value]


def assignment_count(facts: ModuleFacts, evaluator: Evaluator, dotted: str, scope: Scope) -> int:
    """How many times `dotted` ("self.lstm" or a local name) is assigned where it lives."""
    if dotted.startswith("self."):
        cls = scope.enclosing_class
        if cls is None or dotted.count(".") != 1:
            return 0
        return len(evaluator.self_attr_values(cls, dotted[5:]))
    return sum(1 for a in facts.assigns if a.target == dotted and a.scope is scope)


def bound_layer(
    facts: ModuleFacts, evaluator: Evaluator, layers: List[RecurrentLayer], call: CallFact
) -> Optional[RecurrentLayer]:
    """The recurrent layer that `call` invokes, when its name is bound exactly once, to it."""
    layer = layer_bound_to(layers, call.dotted, call.scope)
    if layer is None or call.dotted is None:
        return None
    if assignment_count(facts, evaluator, call.dotted, layer.call.scope) != 1:
        return None
    return layer


def bound_module_call(
    facts: ModuleFacts, evaluator: Evaluator, dotted: Optional[str], scope: Scope
) -> Optional[CallFact]:
    """The constructor call stored once under `self.<name>` in the class of `scope`."""
    if dotted is None or not dotted.startswith("self.") or dotted.count(".") != 1:
        return None
    cls = scope.enclosing_class
    if cls is None:
        return None
    values = evaluator.self_attr_values(cls, dotted[5:])
    if len(values) != 1 or not isinstance(values[0][0], cst.Call):
        return None
    return calls_by_node(facts).get(id(values[0][0]))


# -- what a recurrent call returns -------------------------------------------------------


@dataclass(eq=False)
class RecurrentResult:
    """A value that came out of a torch recurrent layer's call."""

    layer: RecurrentLayer
    call: CallFact
    part: str  # "output" | "h_n" | "c_n" | "state" (the (h_n, c_n) tuple of an LSTM)


def _result_part(layer: RecurrentLayer, path: Tuple[int, ...]) -> Optional[str]:
    if layer.cell:
        return None
    if path == (0,):
        return "output"
    if path == (1,):
        return "state" if layer.kind == "LSTM" else "h_n"
    if layer.kind == "LSTM" and path == (1, 0):
        return "h_n"
    if layer.kind == "LSTM" and path == (1, 1):
        return "c_n"
    return None


def recurrent_result(
    facts: ModuleFacts,
    evaluator: Evaluator,
    layers: List[RecurrentLayer],
    node: cst.BaseExpression,
    scope: Scope,
    stmt: Optional[cst.CSTNode],
) -> Optional[RecurrentResult]:
    """What part of a torch recurrent call `node` (a name, or `state[0]`) holds at `stmt`."""
    if isinstance(node, cst.Subscript) and isinstance(node.value, cst.Name):
        index = single_int_index(node)
        base = recurrent_result(facts, evaluator, layers, node.value, scope, stmt)
        if base is not None and base.part == "state" and index in (0, 1):
            return RecurrentResult(base.layer, base.call, "h_n" if index == 0 else "c_n")
        return None
    if not isinstance(node, cst.Name):
        return None
    binding = flow_index(facts, scope).binding_at(node.value, stmt)
    if binding is None or binding.value is None:
        return None
    value, path = binding.value, binding.path
    # out = self.lstm(x)[0]
    if isinstance(value, cst.Subscript) and path == ():
        index = single_int_index(value)
        if index in (0, 1):
            value, path = value.value, (index,)
    if not isinstance(value, cst.Call):
        return None
    call = calls_by_node(facts).get(id(value))
    if call is None:
        return None
    layer = bound_layer(facts, evaluator, layers, call)
    if layer is None or layer.framework != "torch":
        return None
    part = _result_part(layer, path)
    if part is None:
        return None
    return RecurrentResult(layer, call, part)


# -- subscripts ------------------------------------------------------------------------


def int_value(node: cst.CSTNode) -> Optional[int]:
    """A literal integer (with a sign), else None."""
    if isinstance(node, cst.Integer):
        return int(node.evaluated_value)
    if isinstance(node, cst.UnaryOperation) and isinstance(node.operator, cst.Minus):
        inner = int_value(node.expression)
        return None if inner is None else -inner
    return None


def is_full_slice(element: cst.SubscriptElement) -> bool:
    s = element.slice
    return isinstance(s, cst.Slice) and s.lower is None and s.upper is None and s.step is None


def single_int_index(node: cst.Subscript) -> Optional[int]:
    """`x[-1]`, `x[-1, :, :]`: the literal index of the first axis when the rest is full."""
    if not node.slice:
        return None
    first = node.slice[0].slice
    if not isinstance(first, cst.Index) or first.star is not None:
        return None
    value = int_value(first.value)
    if value is None or not all(is_full_slice(e) for e in node.slice[1:]):
        return None
    return value


def keeps_last_axis(node: cst.Subscript, rank: int) -> bool:
    """Whether indexing a rank-`rank` tensor with `node` leaves its last axis whole."""
    elements = node.slice
    for element in elements:
        s = element.slice
        if isinstance(s, cst.Index) and (isinstance(s.value, (cst.Ellipsis,)) or dotted_name(s.value) == "None"):
            return False
    if len(elements) < rank:
        return True
    return len(elements) == rank and is_full_slice(elements[-1])


def subscript_rank(node: cst.Subscript, rank: int) -> Optional[int]:
    """The rank after indexing with integers and slices only."""
    dropped = 0
    for element in node.slice:
        s = element.slice
        if isinstance(s, cst.Index):
            if int_value(s.value) is None:
                return None
            dropped += 1
        elif not isinstance(s, cst.Slice):
            return None
    if len(node.slice) > rank:
        return None
    return rank - dropped


def output_width(layer: RecurrentLayer, part: str) -> Optional[int]:
    """Features on the last axis of a torch layer's output / h_n / c_n, when known."""
    hidden = layer.get("hidden_size")
    if not (known(hidden) and isinstance(hidden, int) and not isinstance(hidden, bool)):
        return None
    proj = layer.get("proj_size") if layer.kind == "LSTM" else 0
    if not known(proj) or not isinstance(proj, int):
        return None
    per_direction = proj if (proj > 0 and part != "c_n") else hidden
    if part == "output":
        directions = layer.num_directions
        if not known(directions):
            return None
        return per_direction * directions
    return per_direction


def describe(layer: RecurrentLayer) -> str:
    return f"'{layer.binding}'" if layer.binding else layer.label
