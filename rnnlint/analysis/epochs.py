"""Epoch and batch loops, what trains inside them, and keras fit() callbacks.

The schedule and checkpoint rules (RNN105-107, RNN203-206) ask questions the
training-step facts do not answer directly: is this loop the epoch loop or the
batch loop, how many epochs does it run, does a model keep training after this
statement, which callbacks reach which fit() call, does a statement run under
torch.no_grad(). Each answer is derived from the walk's facts and cached on
the module's facts; when it cannot be known the answer is None (rules then stay
silent).
"""

from __future__ import annotations

import re
from typing import Dict, Iterator, List, Optional, Set, Tuple

import libcst as cst

from rnnlint.analysis.training import calls_assigned, local_callee
from rnnlint.analysis.facts import AssignFact, CallFact, Loop, ModuleFacts, Scope
from rnnlint.analysis.names import dotted_name
from rnnlint.analysis.training import training_units
from rnnlint.analysis.values import Evaluator, known
from rnnlint.analysis.walker import iter_children

_EPOCH_WORD = re.compile(r"epoch|^ep$|^e$|^n_?ep", re.I)
_BATCH_WORD = re.compile(r"loader|batch|^dl$|_dl$|^dl_|iterator|^data_?iter|minibatch", re.I)
_OPTIMIZER_ARG = re.compile(r"(^|_)(opt|optim|optimizer|optimiser)s?(\d*)$", re.I)
_KERAS_FIT = ("fit", "fit_generator", "train_on_batch")


def _names_in(node: cst.CSTNode) -> Iterator[str]:
    """Every Name value and attribute name inside an expression (a small walk)."""
    stack: List[cst.CSTNode] = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, cst.Name):
            yield current.value
        elif isinstance(current, cst.Attribute):
            yield current.attr.value
            stack.append(current.value)
        else:
            stack.extend(_expr_children(current))


def _expr_children(node: cst.CSTNode) -> List[cst.CSTNode]:
    return list(iter_children(node))


def dotted_in(node: cst.CSTNode) -> Set[str]:
    """Dotted names ("loss", "self.total") read anywhere inside an expression."""
    out: Set[str] = set()
    stack: List[cst.CSTNode] = [node]
    while stack:
        current = stack.pop()
        dotted = dotted_name(current)
        if dotted is not None:
            out.add(dotted)
            if isinstance(current, cst.Attribute):
                out.add(dotted.split(".", 1)[0])
            continue
        stack.extend(_expr_children(current))
    return out


# -- loop roles ---------------------------------------------------------------------------


def loop_kind(loop: Loop) -> Optional[str]:
    """"epoch", "batch" or None (unknown) from the loop's target and iterable."""
    targets = loop.target_names
    if any(_EPOCH_WORD.search(t) for t in targets):
        return "epoch"
    iter_node = loop.iter_node
    if iter_node is None:
        return None
    names = list(_names_in(iter_node))
    if any("epoch" in n.lower() for n in names):
        return "epoch"
    if any(_BATCH_WORD.search(n) for n in names) or any(_BATCH_WORD.search(t) for t in targets):
        return "batch"
    if _is_call_to(iter_node, "range") and len(iter_node.args) == 3:  # type: ignore[attr-defined]
        return "batch"  # range(0, len(x), batch_size)
    return None


def _is_call_to(node: cst.CSTNode, name: str) -> bool:
    return isinstance(node, cst.Call) and dotted_name(node.func) == name


def epoch_count(loop: Loop, evaluator: Evaluator) -> Optional[int]:
    """How many times `for _ in range(N)` (range(1, N + 1), trange(N), tqdm(range(N))) runs."""
    node = loop.iter_node
    if not isinstance(node, cst.Call):
        return None
    name = dotted_name(node.func) or ""
    short = name.rsplit(".", 1)[-1]
    if short in ("tqdm", "enumerate") and node.args and node.args[0].keyword is None:
        node = node.args[0].value
        if not isinstance(node, cst.Call):
            return None
        short = (dotted_name(node.func) or "").rsplit(".", 1)[-1]
    if short not in ("range", "trange"):
        return None
    args = [a for a in node.args if a.keyword is None and not a.star]
    if len(args) != len(node.args) or not 1 <= len(args) <= 2:
        return None
    values = [evaluator.number(a.value, loop.scope) for a in args]
    if not all(known(v) for v in values) or not all(isinstance(v, int) for v in values):
        return None
    count = values[0] if len(values) == 1 else values[1] - values[0]
    return count if count > 0 else None


def _local_function(facts: ModuleFacts, call: CallFact) -> Optional[Scope]:
    return local_callee(facts, call)


def _training_scopes(facts: ModuleFacts) -> Set[int]:
    """ids of the functions that hold an optimizer step with its backward()."""
    cached = facts.cache.get("epochs.training_scopes")
    if cached is None:
        cached = {id(unit.step.scope) for unit in training_units(facts)}
        facts.cache["epochs.training_scopes"] = cached
    return cached  # type: ignore[return-value]


def call_trains(facts: ModuleFacts, call: CallFact) -> bool:
    """A call that runs training: keras fit(), a local function holding an optimizer step
    (one level of helpers), or a call handed the optimizer (train(model, optimizer, ...))."""
    if call.method in _KERAS_FIT and call.receiver is not None:
        return True
    function = _local_function(facts, call)
    if function is not None:
        if id(function) in _training_scopes(facts):
            return True
        if any(
            id(inner_fn) in _training_scopes(facts)
            for inner in function.calls
            for inner_fn in [_local_function(facts, inner)]
            if inner_fn is not None and inner_fn is not function
        ):
            return True
    for arg in call.args:
        name = dotted_name(arg.value)
        if name is not None and _OPTIMIZER_ARG.search(name.rsplit(".", 1)[-1]):
            return call.method not in ("step", "zero_grad", "state_dict", "load_state_dict")
    return False


def loop_trains(facts: ModuleFacts, loop: Loop) -> bool:
    """Whether the loop (or a loop inside it) takes optimizer steps or calls something that does."""
    for unit in training_units(facts):
        inner = unit.loop
        if inner is not None and (inner is loop or loop.contains(inner)):
            return True
    return any(call_trains(facts, call) for call in loop.calls)


def trains_after(facts: ModuleFacts, loop: Optional[Loop]) -> bool:
    """Whether training goes on after a statement inside `loop`: it or an outer loop trains."""
    while loop is not None:
        if loop_trains(facts, loop):
            return True
        loop = loop.parent
    return False


def is_batch_loop(facts: ModuleFacts, loop: Loop) -> bool:
    """A loop over mini-batches: named so, or the optimizer-step loop nested in an epoch loop."""
    kind = loop_kind(loop)
    if kind == "batch":
        return True
    if kind == "epoch":
        return False
    steps_here = any(unit.loop is loop for unit in training_units(facts))
    if not steps_here:
        return False
    return any(loop_kind(outer) == "epoch" for outer in loop.ancestors() if outer is not loop)


def callers(facts: ModuleFacts, function: Scope) -> List[CallFact]:
    return [c for c in facts.calls if c.method == function.name and _local_function(facts, c) is function]


# -- assignments ----------------------------------------------------------------------------


def assigned_value(assign: AssignFact) -> Optional[cst.BaseExpression]:
    """The expression a name receives: the value, or its element in `a, b = x, y`."""
    if assign.unpack_index is None:
        return assign.value
    value = assign.value
    if isinstance(value, (cst.Tuple, cst.List)) and assign.unpack_index < len(value.elements):
        element = value.elements[assign.unpack_index]
        if isinstance(element, cst.StarredElement):
            return None
        return element.value
    return None


def assign_node(assign: AssignFact) -> cst.CSTNode:
    """The Assign/AugAssign statement of an assignment fact (the statement line as a fallback)."""
    body = getattr(assign.stmt, "body", None)
    if isinstance(body, (list, tuple)):
        for small in body:
            if isinstance(small, (cst.Assign, cst.AugAssign, cst.AnnAssign)) and small.value is assign.value:
                return small
    return assign.stmt


def calls_by_node(facts: ModuleFacts) -> Dict[int, CallFact]:
    index = facts.cache.get("epochs.calls_by_node")
    if index is None:
        index = {id(c.node): c for c in facts.calls}
        facts.cache["epochs.calls_by_node"] = index
    return index  # type: ignore[return-value]


def single_assigned_call(facts: ModuleFacts, name: str) -> Optional[CallFact]:
    """The one call whose result is assigned to `name` in the file (None if zero or several)."""
    index = facts.cache.get("epochs.assigned_calls")
    if index is None:
        index = {name: list(calls) for name, calls in calls_assigned(facts).items()}
        for assign in facts.assigns:  # a name also bound to something that is not a call
            if assign.target in index and not isinstance(assigned_value(assign), cst.Call):
                index[assign.target].append(None)
        facts.cache["epochs.assigned_calls"] = index
    found = index.get(name, [])  # type: ignore[union-attr]
    return found[0] if len(found) == 1 else None


# -- torch.no_grad() ------------------------------------------------------------------------


def _no_grad_item(node: cst.BaseExpression) -> bool:
    if isinstance(node, cst.Call):
        name = dotted_name(node.func) or ""
        short = name.rsplit(".", 1)[-1]
        if short in ("no_grad", "inference_mode"):
            return True
        if short == "set_grad_enabled" and node.args:
            value = node.args[0].value
            return isinstance(value, cst.Name) and value.value == "False"
    return False


def no_grad_statements(facts: ModuleFacts) -> Set[int]:
    """ids of the statements that run under torch.no_grad()/inference_mode() (a `with` block
    or a decorated function)."""
    cached = facts.cache.get("epochs.no_grad")
    if cached is not None:
        return cached  # type: ignore[return-value]
    out: Set[int] = set()
    stack: List[Tuple[cst.CSTNode, bool]] = [(s, False) for s in facts.module.body]
    while stack:
        stmt, inside = stack.pop()
        if inside:
            out.add(id(stmt))
        if isinstance(stmt, cst.FunctionDef):
            decorated = any(
                _no_grad_item(d.decorator)
                or (dotted_name(d.decorator) or "").rsplit(".", 1)[-1] in ("no_grad", "inference_mode")
                for d in stmt.decorators
            )
            stack.extend((s, decorated) for s in _block_statements(stmt.body))
        elif isinstance(stmt, cst.ClassDef):
            stack.extend((s, False) for s in _block_statements(stmt.body))
        elif isinstance(stmt, cst.With):
            enters = inside or any(_no_grad_item(item.item) for item in stmt.items)
            stack.extend((s, enters) for s in _block_statements(stmt.body))
        elif isinstance(stmt, (cst.For, cst.While, cst.If, cst.Try)):
            for block in _sub_blocks(stmt):
                stack.extend((s, inside) for s in _block_statements(block))
    facts.cache["epochs.no_grad"] = out
    return out


def _block_statements(block: cst.BaseSuite) -> List[cst.CSTNode]:
    if isinstance(block, cst.IndentedBlock):
        return list(block.body)
    return [block]  # SimpleStatementSuite: the walker uses it as the statement


def _sub_blocks(stmt: cst.CSTNode) -> List[cst.BaseSuite]:
    blocks: List[cst.BaseSuite] = []
    if isinstance(stmt, (cst.For, cst.While)):
        blocks.append(stmt.body)
        if stmt.orelse is not None:
            blocks.append(stmt.orelse.body)
    elif isinstance(stmt, cst.If):
        blocks.append(stmt.body)
        orelse = stmt.orelse
        while orelse is not None:
            if isinstance(orelse, cst.If):
                blocks.append(orelse.body)
                orelse = orelse.orelse
            else:
                blocks.append(orelse.body)
                orelse = None
    elif isinstance(stmt, cst.Try):
        blocks.append(stmt.body)
        blocks.extend(h.body for h in stmt.handlers)
        if stmt.orelse is not None:
            blocks.append(stmt.orelse.body)
        if stmt.finalbody is not None:
            blocks.append(stmt.finalbody.body)
    return blocks


def guards_inside(call: CallFact, loop: Loop) -> bool:
    """Whether an `if` around the call sits inside `loop` (the call runs only on some passes)."""
    if not call.guards:
        return False
    wanted = {id(g) for g in call.guards}
    stack: List[cst.CSTNode] = list(_block_statements(loop.node.body))  # type: ignore[attr-defined]
    while stack:
        stmt = stack.pop()
        if isinstance(stmt, cst.If):
            if id(stmt.test) in wanted:
                return True
        if isinstance(stmt, (cst.FunctionDef, cst.ClassDef)):
            continue
        for block in _sub_blocks(stmt) + ([stmt.body] if isinstance(stmt, cst.With) else []):
            stack.extend(_block_statements(block))
    return False


def break_guards(loop: Loop) -> List[cst.BaseExpression]:
    """Tests of the `if`s whose body breaks out of `loop` (not out of an inner loop)."""
    out: List[cst.BaseExpression] = []
    stack: List[Tuple[cst.CSTNode, Optional[cst.BaseExpression]]] = [
        (s, None) for s in _block_statements(loop.node.body)  # type: ignore[attr-defined]
    ]
    while stack:
        stmt, test = stack.pop()
        if isinstance(stmt, (cst.For, cst.While, cst.FunctionDef, cst.ClassDef)):
            continue
        if isinstance(stmt, (cst.SimpleStatementLine, cst.SimpleStatementSuite)):
            if test is not None and any(isinstance(s, cst.Break) for s in stmt.body):
                out.append(test)
            continue
        if isinstance(stmt, cst.If):
            stack.extend((s, stmt.test) for s in _block_statements(stmt.body))
            orelse = stmt.orelse
            if orelse is not None and not isinstance(orelse, cst.If):
                stack.extend((s, None) for s in _block_statements(orelse.body))
            elif isinstance(orelse, cst.If):
                stack.append((orelse, None))
            continue
        if isinstance(stmt, cst.With):
            stack.extend((s, test) for s in _block_statements(stmt.body))
        elif isinstance(stmt, cst.Try):
            for block in _sub_blocks(stmt):
                stack.extend((s, test) for s in _block_statements(block))
    return out


# -- keras callbacks --------------------------------------------------------------------------


#: The keras methods that train a model for some epochs (fit_generator: Keras 2 / TF 1).
KERAS_FIT_METHODS = ("fit", "fit_generator")


def fit_calls(facts: ModuleFacts) -> List[CallFact]:
    return [c for c in facts.calls if c.method in KERAS_FIT_METHODS and c.receiver is not None]


def fit_callbacks(facts: ModuleFacts, fit: CallFact) -> Optional[List[CallFact]]:
    """The callback constructor calls passed in fit(callbacks=...), following one list name
    and names bound once; None when the list cannot be read completely."""
    if fit.has_star_args:
        return None
    node = fit.kwarg("callbacks")
    if node is None:
        return []
    node = _follow_name(facts, node, fit.scope)
    if not isinstance(node, (cst.List, cst.Tuple)):
        return None
    out: List[CallFact] = []
    by_node = calls_by_node(facts)
    for element in node.elements:
        if isinstance(element, cst.StarredElement):
            return None
        value = _follow_name(facts, element.value, fit.scope)
        call = by_node.get(id(value)) if isinstance(value, cst.Call) else None
        if call is None:
            return None
        out.append(call)
    if isinstance(fit.kwarg("callbacks"), cst.Name):
        name = dotted_name(fit.kwarg("callbacks"))  # type: ignore[arg-type]
        if any(c.method in ("append", "extend", "insert") and c.receiver_dotted == name for c in facts.calls):
            return None  # list grown elsewhere
    return out


def _follow_name(facts: ModuleFacts, node: cst.BaseExpression, scope: Scope) -> cst.BaseExpression:
    if not isinstance(node, cst.Name):
        return node
    current: Optional[Scope] = scope
    while current is not None:
        values = current.assigns.get(node.value)
        if values:
            return values[0] if len(values) == 1 else node
        current = current.parent
    return node


def fit_epochs(fit: CallFact, evaluator: Evaluator) -> Optional[int]:
    """fit(epochs=N) with N known (positional: x, y, batch_size, epochs)."""
    if fit.has_star_args:
        return None
    node = fit.arg(3, "epochs")
    if node is None:
        return None
    value = evaluator.number(node, fit.scope)
    return value if known(value) and isinstance(value, int) else None


def name_loads(facts: ModuleFacts) -> Dict[str, int]:
    """How many times each plain name occurs in the module (all positions, one walk)."""
    cached = facts.cache.get("epochs.name_counts")
    if cached is not None:
        return cached  # type: ignore[return-value]
    counts: Dict[str, int] = {}
    stack: List[cst.CSTNode] = [facts.module]
    while stack:
        node = stack.pop()
        if isinstance(node, cst.Name):
            counts[node.value] = counts.get(node.value, 0) + 1
            continue
        stack.extend(iter_children(node))
    facts.cache["epochs.name_counts"] = counts
    return counts


def statement_guards(loop: Loop, target: cst.CSTNode) -> Optional[List[cst.BaseExpression]]:
    """Tests of the `if`s around the statement `target` inside `loop` (None when not found)."""
    stack: List[Tuple[cst.CSTNode, Tuple[cst.BaseExpression, ...]]] = [
        (s, ()) for s in _block_statements(loop.node.body)  # type: ignore[attr-defined]
    ]
    while stack:
        stmt, tests = stack.pop()
        if stmt is target:
            return list(tests)
        if isinstance(stmt, (cst.FunctionDef, cst.ClassDef)):
            continue
        if isinstance(stmt, cst.If):
            stack.extend((s, tests + (stmt.test,)) for s in _block_statements(stmt.body))
            orelse = stmt.orelse
            if isinstance(orelse, cst.If):
                stack.append((orelse, tests))
            elif orelse is not None:
                stack.extend((s, tests) for s in _block_statements(orelse.body))
            continue
        blocks = _sub_blocks(stmt) + ([stmt.body] if isinstance(stmt, cst.With) else [])
        for block in blocks:
            stack.extend((s, tests) for s in _block_statements(block))
    return None


def has_modulo(node: cst.CSTNode) -> bool:
    stack: List[cst.CSTNode] = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, cst.BinaryOperation) and isinstance(current.operator, cst.Modulo):
            return True
        if isinstance(current, (cst.Lambda, cst.SimpleString, cst.FormattedString)):
            continue
        stack.extend(iter_children(current))
    return False
