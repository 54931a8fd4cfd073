"""Building blocks for fixes: small libcst edits that keep the code's own formatting.

Rules attach a `Fix` to a report (see rnnlint.rules.base); rnnlint.fixes applies them. The
helpers here build new nodes from the nodes a rule already holds, so that commas, line breaks
and comments around an argument stay as the author wrote them.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import libcst as cst

from rnnlint.analysis.facts import ModuleFacts, Scope
from rnnlint.analysis.walker import iter_children

Import = Tuple[str, Optional[str]]


def expr(text: str) -> cst.BaseExpression:
    return cst.parse_expression(text)


def statement(text: str) -> cst.BaseStatement:
    return cst.parse_statement(text)


def _separator(call: cst.Call) -> cst.Comma:
    """The comma (and the whitespace after it) that separates this call's arguments."""
    args = call.args
    if len(args) >= 2 and isinstance(args[-2].comma, cst.Comma):
        return args[-2].comma
    if isinstance(call.whitespace_before_args, cst.ParenthesizedWhitespace):
        return cst.Comma(whitespace_after=call.whitespace_before_args)  # one argument per line
    return cst.Comma(whitespace_after=cst.SimpleWhitespace(" "))


def with_kwarg(call: cst.Call, name: str, value: cst.BaseExpression) -> cst.Call:
    """`call` with `name=value` appended after its last argument, in the call's own layout
    (one line or one argument per line, with or without a trailing comma)."""
    new = cst.Arg(
        value=value,
        keyword=cst.Name(name),
        equal=cst.AssignEqual(whitespace_before=cst.SimpleWhitespace(""), whitespace_after=cst.SimpleWhitespace("")),
    )
    args = list(call.args)
    if not args:
        return call.with_changes(args=[new])
    last = args[-1]
    if isinstance(last.comma, cst.Comma):  # trailing comma: the new argument takes it over
        args[-1] = last.with_changes(comma=_separator(call))
        args.append(new.with_changes(comma=last.comma))
    else:
        args[-1] = last.with_changes(comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" ")))
        args.append(new)
    return call.with_changes(args=args)


def without_arg(call: cst.Call, arg: cst.Arg) -> cst.Call:
    """`call` without `arg`. The line of a removed argument goes with it, comment included;
    the other arguments keep their commas, line breaks and comments."""
    args = list(call.args)
    index = next(i for i, a in enumerate(args) if a is arg)
    del args[index]
    if index == len(args) and args:
        # The last one went: its predecessor now ends the list, in the removed one's way
        # (trailing comma or not), keeping its own end-of-line comment.
        previous = args[-1]
        own = previous.comma.whitespace_after if isinstance(previous.comma, cst.Comma) else previous.whitespace_after_arg
        if isinstance(arg.comma, cst.Comma):
            comma = arg.comma.with_changes(whitespace_after=_join(own, arg.comma.whitespace_after))
            args[-1] = previous.with_changes(comma=comma, whitespace_after_arg=arg.whitespace_after_arg)
        else:
            args[-1] = previous.with_changes(
                comma=cst.MaybeSentinel.DEFAULT, whitespace_after_arg=_join(own, arg.whitespace_after_arg)
            )
    return call.with_changes(args=args)


def _join(head: cst.BaseParenthesizableWhitespace, tail: cst.BaseParenthesizableWhitespace) -> cst.BaseParenthesizableWhitespace:
    """Whitespace that starts as `head` (its end-of-line comment) and ends as `tail` (the
    indentation before what follows)."""
    if not isinstance(head, cst.ParenthesizedWhitespace):
        return tail
    if isinstance(tail, cst.ParenthesizedWhitespace):
        return head.with_changes(indent=tail.indent, last_line=tail.last_line)
    if head.first_line.comment is not None:
        return head.with_changes(empty_lines=(), indent=False, last_line=cst.SimpleWhitespace(""))
    return tail


def keyword_arg(call: cst.Call, name: str) -> Optional[cst.Arg]:
    for arg in call.args:
        if arg.keyword is not None and arg.keyword.value == name:
            return arg
    return None


def spelling(facts: ModuleFacts, qualified: Sequence[str]) -> Optional[str]:
    """How this module can name one of the `qualified` names through its imports
    ("torch.nn.utils.clip_grad_norm_" -> "nn.utils.clip_grad_norm_" after `import torch.nn as nn`).
    The alias closest to the root wins, so `import torch` gives the fully spelled name."""
    best: Optional[Tuple[int, str]] = None
    for local, target in facts.aliases.items():
        if "." in local or target.startswith("."):
            continue
        for name in qualified:
            if name == target or name.startswith(target + "."):
                spelled = local + name[len(target):]
                rank = (target.count("."), spelled)
                if best is None or rank < (best[0], best[1]):
                    best = (target.count("."), spelled)
    return best[1] if best else None


def name_is_free(facts: ModuleFacts, name: str) -> bool:
    """Whether importing `name` at module level cannot shadow anything of this module."""
    if name in facts.aliases or name in facts.functions or name in facts.classes:
        return False
    return all(name not in scope.assigns and name not in scope.params for scope in facts.scopes)


def self_name(scope: Scope) -> Optional[str]:
    """The instance parameter of a plain method (not static or class methods)."""
    node = scope.node
    if not scope.is_method() or not scope.param_order or not isinstance(node, cst.FunctionDef):
        return None
    for decorator in node.decorators:
        if isinstance(decorator.decorator, cst.Name) and decorator.decorator.value in ("staticmethod", "classmethod"):
            return None
    return scope.param_order[0]


_BLOCKS = (
    cst.BaseCompoundStatement, cst.BaseSuite, cst.Else, cst.ExceptHandler, cst.ExceptStarHandler,
    cst.Finally, cst.MatchCase,
)


def statement_bodies(facts: ModuleFacts) -> Dict[int, Tuple[cst.BaseStatement, ...]]:
    """id(statement) -> the body (Module or indented block) that holds it."""
    table = facts.cache.get("statement_bodies")
    if table is None:
        table = {}
        stack: List[cst.CSTNode] = [facts.module]
        while stack:
            node = stack.pop()
            if isinstance(node, (cst.Module, cst.IndentedBlock)):
                for stmt in node.body:
                    table[id(stmt)] = node.body
            stack.extend(child for child in iter_children(node) if isinstance(child, _BLOCKS))
        facts.cache["statement_bodies"] = table
    return table  # type: ignore[return-value]


def same_body_order(facts: ModuleFacts, first: cst.CSTNode, second: cst.CSTNode) -> bool:
    """Whether two statements sit in one block with `first` before `second`."""
    bodies = statement_bodies(facts)
    body = bodies.get(id(first))
    if body is None or body is not bodies.get(id(second)):
        return False
    ids = [id(s) for s in body]
    return ids.index(id(first)) < ids.index(id(second))
