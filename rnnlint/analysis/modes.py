"""Train/eval mode: which models hold dropout, where they are evaluated, and whether
model.eval() has run before.

A call of a model instance counts as *evaluation* when it runs under
torch.no_grad()/inference_mode() (a `with` block or a decorator), inside a helper
named like evaluate/validate/test/predict that runs no backward(), or after the
training loop in the same function. Whether eval() ran first is decided along
the calls that lead there: earlier in the same function, or before every call
site of that function in this file (two levels up). When a helper has no call
site in the file, nothing is known and the rules stay silent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Set

import libcst as cst

from rnnlint.analysis.facts import CallFact, Loop, ModuleFacts, Scope
from rnnlint.analysis.names import dotted_name
from rnnlint.analysis.project import imported_models
from rnnlint.analysis.recurrent import RecurrentLayer
from rnnlint.analysis.state_flow import expanded_calls, local_function
from rnnlint.analysis.values import Evaluator, known
from rnnlint.analysis.walker import iter_children

DROPOUT_MODULES = frozenset(
    "torch.nn." + n
    for n in ("Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout", "FeatureAlphaDropout")
)
BATCHNORM_MODULES = frozenset("torch.nn." + n for n in ("BatchNorm1d", "BatchNorm2d", "BatchNorm3d"))
FUNCTIONAL_DROPOUT = frozenset(
    "torch.nn.functional." + n
    for n in ("dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout", "feature_alpha_dropout")
)
NO_GRAD = frozenset({"torch.no_grad", "torch.inference_mode", "torch.set_grad_enabled", "torch.autograd.no_grad"})
_EVAL_FUNCTION = re.compile(r"eval|valid|test|predict|infer|score|forecast", re.I)
_MOVES = frozenset({"to", "cuda", "cpu", "float", "double", "half", "train"})


def dropout_classes(facts: ModuleFacts, evaluator: Evaluator, layers: List[RecurrentLayer]) -> Dict[str, str]:
    """Class name -> what in it behaves differently in train and eval mode ("nn.Dropout(0.3)")."""
    cached = facts.cache.get("dropout_classes")
    if cached is not None:
        return cached  # type: ignore[return-value]
    found: Dict[str, str] = {}
    for name, cls in facts.classes.items():
        reason = _own_dropout(facts, cls, evaluator, layers)
        if reason is not None:
            found[name] = reason
    # A class that builds another class of this file with dropout has it too.
    changed = True
    while changed:
        changed = False
        for name, cls in facts.classes.items():
            if name in found:
                continue
            for method in cls.methods.values():
                for call in method.calls:
                    if call.dotted in found and call.dotted != name:
                        found[name] = found[call.dotted]
                        changed = True
                        break
                if name in found:
                    break
    # Whole-project runs: model classes imported from another checked file that use dropout.
    imported = set()
    for model in imported_models(facts, evaluator):
        if model.kind == "class" and model.dropout and "." not in model.name:
            found.setdefault(model.name, f"dropout (in {model.name}, defined in another file)")
            imported.add(model.name)
    facts.cache["imported_dropout_classes"] = imported
    _passed_in_dropout(facts, found)
    facts.cache["dropout_classes"] = found
    return found


def _passed_in_dropout(facts: ModuleFacts, found: Dict[str, str]) -> None:
    """A model class that gets its submodules as constructor arguments (`Seq2Seq(encoder,
    decoder)`) has dropout when every construction of it in the file passes an instance of a
    class with dropout that __init__ keeps on self."""
    changed = True
    while changed:
        changed = False
        for name, cls in facts.classes.items():
            init = cls.methods.get("__init__")
            if name in found or init is None or "forward" not in cls.methods:
                continue
            kept = {
                a.value.value for a in facts.assigns
                if a.scope is init and a.target.startswith("self.") and isinstance(a.value, cst.Name)
                and a.value.value in init.params and a.aug_op is None and a.unpack_index is None
            }
            params = [p for p in init.param_order[1:] if p in kept]
            sites = [c for c in facts.calls if c.dotted == name and c.scope.enclosing_class is not cls]
            if not params or not sites or any(site.has_star_args for site in sites):
                continue
            reasons = [_dropout_argument(facts, found, site, init, params) for site in sites]
            if all(reasons):
                found[name] = reasons[0]  # type: ignore[assignment]
                changed = True


def _dropout_argument(facts: ModuleFacts, found: Dict[str, str], site: CallFact, init: Scope, params: List[str]) -> Optional[str]:
    for param in params:
        given = site.arg(init.param_order.index(param) - 1, param)
        if given is None:
            continue
        cls = _constructed_class(given) if isinstance(given, cst.Call) else None
        if cls is None:
            given_name = dotted_name(given)
            if given_name is not None:
                cls = instance_class(facts, given_name, site.scope)
        if cls is not None and cls in found:
            reason = found[cls]
            return reason if "(in " in reason else f"{reason} (in {cls})"
    return None


def _own_dropout(facts: ModuleFacts, cls: Scope, evaluator: Evaluator, layers: List[RecurrentLayer]) -> Optional[str]:
    for method in cls.methods.values():
        for call in method.calls:
            name = call.qualname
            if name in DROPOUT_MODULES:
                p = evaluator.value(call.arg(0, "p"), method) if call.args else 0.5
                if known(p) and isinstance(p, (int, float)) and p == 0:
                    continue
                text = f"={p}" if known(p) and isinstance(p, (int, float)) else ""
                return f"{name.rsplit('.', 1)[-1]}{'(p' + text + ')' if text else ''}"
            if name in BATCHNORM_MODULES:
                return name.rsplit(".", 1)[-1]
            if name in FUNCTIONAL_DROPOUT:
                training = call.arg(2, "training")
                if training is not None and "training" in facts.module.code_for_node(training):
                    return f"F.{name.rsplit('.', 1)[-1]}(training=self.training)"
    for layer in layers:
        if layer.framework != "torch" or layer.cell or layer.owner is not cls:
            continue
        dropout, num_layers = layer.get("dropout"), layer.get("num_layers")
        if isinstance(dropout, (int, float)) and not isinstance(dropout, bool) and dropout > 0:
            if isinstance(num_layers, int) and num_layers > 1:
                return f"{layer.label}(dropout={dropout}, num_layers={num_layers})"
    return None


def _constructed_class(value: cst.BaseExpression) -> Optional[str]:
    while isinstance(value, cst.Call) and isinstance(value.func, cst.Attribute) and value.func.attr.value in _MOVES:
        value = value.func.value
    if isinstance(value, cst.Call):
        return dotted_name(value.func)
    return None


def instance_class(facts: ModuleFacts, name: str, scope: Scope, depth: int = 0) -> Optional[str]:
    """The class (defined in this file) of the instance that `name` holds in `scope`."""
    if depth > 3 or "." in name:
        return None
    found = scope.binding(name)
    if found is None:
        return None
    binder, is_param = found
    if is_param:
        return None if name in binder.assigns else _param_class(facts, binder, name, depth)
    classes = {_constructed_class(v) for v in binder.assigns[name]}
    if len(classes) != 1:
        return None
    cls = classes.pop()
    imported = facts.cache.get("imported_dropout_classes", ())
    return cls if cls in facts.classes or cls in imported else None  # type: ignore[operator]


def _param_class(facts: ModuleFacts, function: Scope, name: str, depth: int) -> Optional[str]:
    index = function.param_order.index(name) - (1 if function.is_method() else 0)
    sites = [c for c in facts.calls if c.dotted is not None and local_function(facts, c) is function]
    found: Set[Optional[str]] = set()
    for site in sites:
        given = site.arg(index, name)
        if given is None or site.has_star_args:
            return None
        given_name = dotted_name(given)
        found.add(instance_class(facts, given_name, site.scope, depth + 1) if given_name else None)
    if len(found) == 1:
        return found.pop()
    return None


def no_grad_calls(facts: ModuleFacts) -> Set[int]:
    """ids of the call nodes that run with gradients off (with-blocks and decorated functions)."""
    cached = facts.cache.get("no_grad_calls")
    if cached is not None:
        return cached  # type: ignore[return-value]
    blocks: List[cst.CSTNode] = []
    for call in facts.calls:
        if call.qualname in NO_GRAD and isinstance(call.stmt, cst.With):
            if call.qualname == "torch.set_grad_enabled":
                value = call.positional(0)
                if not (isinstance(value, cst.Name) and value.value == "False"):
                    continue
            blocks.append(call.stmt.body)
    ids: Set[int] = set()
    for block in blocks:
        stack: List[cst.CSTNode] = [block]
        while stack:
            node = stack.pop()
            if isinstance(node, cst.Call):
                ids.add(id(node))
            stack.extend(iter_children(node))
    for scope in facts.scopes:
        if scope.kind == "function" and _decorated_no_grad(facts, scope):
            ids.update(id(c.node) for c in scope.calls)
    facts.cache["no_grad_calls"] = ids
    return ids


def _decorated_no_grad(facts: ModuleFacts, scope: Scope) -> bool:
    node = scope.node
    if not isinstance(node, cst.FunctionDef):
        return False
    from rnnlint.analysis.names import resolve

    for decorator in node.decorators:
        expr = decorator.decorator
        if isinstance(expr, cst.Call):
            expr = expr.func
        if resolve(dotted_name(expr), facts.aliases) in NO_GRAD:
            return True
    return False


def is_eval_call(call: CallFact) -> bool:
    """model.eval() or model.train(False)."""
    if call.method == "eval" and not call.args and call.receiver is not None:
        return True
    if call.method == "train" and call.receiver is not None and call.args:
        value = call.args[0].value
        return isinstance(value, cst.Name) and value.value == "False"
    return False


def is_train_call(call: CallFact) -> bool:
    """model.train() or model.train(True); train(data, ...) of other libraries is not one."""
    if call.method != "train" or call.receiver is None or call.qualname is not None:
        return False
    if not call.args:
        return True
    if len(call.args) != 1:
        return False
    arg = call.args[0]
    if arg.keyword is not None:
        return arg.keyword.value == "mode" and not (isinstance(arg.value, cst.Name) and arg.value.value == "False")
    return isinstance(arg.value, cst.Name) and arg.value.value == "True"


def eval_mode_before(facts: ModuleFacts, scope: Scope, order: int, depth: int = 0) -> Optional[bool]:
    """Is the model in eval mode at `order` in `scope`? The last eval()/train() that runs before
    it decides (calls of local helpers included); None when that cannot be known."""
    last: Optional[bool] = None
    for call in expanded_calls(facts, [c for c in scope.calls if c.order < order], depth=1):
        if is_eval_call(call):
            last = True
        elif is_train_call(call):
            last = False
    if last is not None:
        return last
    if scope.kind != "function":
        return False
    if depth >= 2:
        return None
    sites = [c for c in facts.calls if c.dotted is not None and local_function(facts, c) is scope]
    results = [eval_mode_before(facts, site.scope, site.order, depth + 1) for site in sites if site.scope is not scope]
    if not results:
        return None
    if any(r is False for r in results):
        return False
    if all(r is True for r in results):
        return True
    return None


def has_backward(facts: ModuleFacts, calls: List[CallFact]) -> bool:
    return any(c.method == "backward" for c in expanded_calls(facts, calls))


@dataclass(eq=False)
class EvalUse:
    call: CallFact
    model: str  # the name the model is called through
    cls: str
    how: str  # "under torch.no_grad()", "in evaluate()", "after training"


def evaluation_uses(facts: ModuleFacts, evaluator: Evaluator, layers: List[RecurrentLayer]) -> List[EvalUse]:
    """Calls of a model with dropout that evaluate or predict."""
    classes = dropout_classes(facts, evaluator, layers)
    if not classes:
        return []
    quiet = no_grad_calls(facts)
    out: List[EvalUse] = []
    for call in facts.calls:
        if call.dotted is None:
            continue
        if call.method == "forward" and call.receiver is not None:
            name = dotted_name(call.receiver)
        elif "." not in call.dotted:
            name = call.dotted
        else:
            continue
        if name is None or name in facts.classes or name in facts.functions:
            continue
        cls = instance_class(facts, name, call.scope)
        if cls is None or cls not in classes:
            continue
        how = _evaluation_context(facts, call, quiet)
        if how is not None:
            out.append(EvalUse(call, name, cls, how))
    return out


def _evaluation_context(facts: ModuleFacts, call: CallFact, quiet: Set[int]) -> Optional[str]:
    if id(call.node) in quiet:
        return "under torch.no_grad()"
    if call.loop is not None and has_backward(facts, call.loop.calls):
        return None  # the training forward pass
    scope = call.scope
    if scope.kind == "function" and _EVAL_FUNCTION.search(scope.name) and not has_backward(facts, scope.calls):
        return f"in {scope.name}()"
    # After the training loop in the same function (final predictions).
    for loop in _training_loops(facts, scope):
        if loop.order < call.order and not loop.contains(call.loop) and not _after_any_backward(facts, scope, call):
            return "after the training loop"
    return None


def _training_loops(facts: ModuleFacts, scope: Scope) -> List[Loop]:
    return [
        loop for loop in facts.loops
        if loop.scope is scope and loop.parent is None and has_backward(facts, loop.calls)
        and any(c.method == "step" for c in expanded_calls(facts, loop.calls))
    ]


def _after_any_backward(facts: ModuleFacts, scope: Scope, call: CallFact) -> bool:
    """A backward() later in the same function: the call is part of more training."""
    return any(c.method == "backward" and c.order > call.order for c in scope.calls)


def loops_calling(facts: ModuleFacts, scope: Scope) -> List[Loop]:
    """Loops that call the local function `scope` (one level)."""
    return [
        c.loop for c in facts.calls
        if c.loop is not None and c.dotted is not None and local_function(facts, c) is scope
    ]
