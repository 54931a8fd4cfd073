"""The one walk over a module that collects every fact the rules read.

Why not a libcst CSTVisitor with metadata providers: the Scope, QualifiedName
and Position providers cost about ten times the parse and the visitor visits
every whitespace node. This walk dispatches on node type by hand, skips the
whitespace and punctuation fields altogether and records import aliases as it
goes, so a whole analysis stays within a small multiple of the parse.

The walk is iterative for statements' bodies and recursive only through
expressions; the engine turns a RecursionError on absurdly deep expressions
into a per-file error instead of a crash.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Dict, Iterator, List, Optional, Tuple, Type

import libcst as cst

from rnnlint.analysis.facts import (
    AssignFact,
    CallFact,
    Loop,
    ModuleFacts,
    Scope,
    SubscriptFact,
)
from rnnlint.analysis.names import dotted_name, resolve

# Fields that only ever hold whitespace, punctuation or keywords.
_SKIP_FIELDS = frozenset(
    {
        "lpar", "rpar", "comma", "semicolon", "leading_lines", "lines_after_decorators",
        "header", "footer", "equal", "colon", "dot", "operator", "lbracket", "rbracket",
        "lbrace", "rbrace", "arrow", "asynchronous", "newline", "first_colon",
        "second_colon", "whitespace", "star", "trailing_whitespace", "empty_lines",
        "default_indent", "default_newline", "encoding", "has_trailing_newline",
        "posonly_ind", "quote", "prefix", "value_raw", "relative", "type_parameters",
    }
)
_LEAVES = (cst.Name, cst.Integer, cst.Float, cst.Imaginary, cst.SimpleString, cst.Ellipsis)
_FIELD_CACHE: Dict[type, Tuple[str, ...]] = {}
# Placeholders for values that are not one known expression.
_UNKNOWN = cst.Name("__unknown__")
_LOOP_VALUE = cst.Name("__loop__")


def _child_fields(cls: type) -> Tuple[str, ...]:
    names = _FIELD_CACHE.get(cls)
    if names is None:
        names = tuple(
            f.name
            for f in dataclasses.fields(cls)
            if f.name not in _SKIP_FIELDS and not f.name.startswith("whitespace")
        )
        _FIELD_CACHE[cls] = names
    return names


def iter_children(node: cst.CSTNode) -> Iterator[cst.CSTNode]:
    """The child nodes that carry meaning (no whitespace or punctuation).

    Much cheaper than libcst's `children`, which runs a visitor to build its list."""
    for name in _child_fields(type(node)):
        value = getattr(node, name)
        if isinstance(value, cst.CSTNode):
            yield value
        elif isinstance(value, (tuple, list)):
            for item in value:
                if isinstance(item, cst.CSTNode):
                    yield item


def walk(node: cst.CSTNode, stop: Optional[Callable[[cst.CSTNode], bool]] = None) -> Iterator[cst.CSTNode]:
    """`node` and every node below it; the children of a node for which `stop` is true are
    not visited (the node itself is)."""
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        if stop is not None and stop(current):
            continue
        stack.extend(iter_children(current))


def _target_names(node: cst.CSTNode) -> List[Tuple[str, Optional[int]]]:
    """Dotted names bound by an assignment target, with tuple positions."""
    dotted = dotted_name(node)
    if dotted is not None:
        return [(dotted, None)]
    if isinstance(node, (cst.Tuple, cst.List)):
        out: List[Tuple[str, Optional[int]]] = []
        for i, element in enumerate(node.elements):
            value = element.value
            name = dotted_name(value)
            if name is not None:
                out.append((name, i))
        return out
    return []


class _Walker:
    def __init__(self, path: str, module: cst.Module) -> None:
        self.path = path
        self.module = module
        self.aliases: Dict[str, str] = {}
        self.imported_modules: List[str] = []
        self.calls: List[CallFact] = []
        self.loops: List[Loop] = []
        self.assigns: List[AssignFact] = []
        self.subscripts: List[SubscriptFact] = []
        self.scopes: List[Scope] = []
        self.order = 0
        self.module_scope = Scope("module", "<module>", module, None)
        self.scopes.append(self.module_scope)
        self.scope = self.module_scope
        self.loop: Optional[Loop] = None
        self.stmt: cst.CSTNode = module
        self.guards: Tuple[cst.BaseExpression, ...] = ()
        self.assign_target: Optional[str] = None
        self.assign_value: Optional[cst.BaseExpression] = None
        self._stmt_handlers: Dict[Type[cst.CSTNode], Callable[[cst.CSTNode], None]] = {
            cst.SimpleStatementLine: self._simple_line,
            cst.FunctionDef: self._function,
            cst.ClassDef: self._class,
            cst.For: self._for,
            cst.While: self._while,
            cst.If: self._if,
            cst.With: self._with,
            cst.Try: self._try,
        }

    # -- statements -----------------------------------------------------------------

    def body(self, statements) -> None:  # type: ignore[no-untyped-def]
        handlers = self._stmt_handlers
        for stmt in statements:
            handler = handlers.get(type(stmt))
            if handler is not None:
                handler(stmt)
            else:
                # Match, TryStar and other compound statements: walk generically.
                saved = self.stmt
                self.stmt = stmt
                self.expr(stmt)
                self.stmt = saved

    def _block(self, block: cst.BaseSuite) -> None:
        if isinstance(block, cst.IndentedBlock):
            self.body(block.body)
        else:  # SimpleStatementSuite: `if x: y()`
            saved = self.stmt
            self.stmt = block
            for small in block.body:
                self._small(small)
            self.stmt = saved

    def _simple_line(self, line: cst.SimpleStatementLine) -> None:
        saved = self.stmt
        self.stmt = line
        for small in line.body:
            self._small(small)
        self.stmt = saved

    def _small(self, node: cst.BaseSmallStatement) -> None:
        kind = type(node)
        if kind is cst.Assign:
            self._assign(node)
        elif kind is cst.Expr:
            self.expr(node.value)
        elif kind is cst.AugAssign:
            self.expr(node.value)
            for name, _ in _target_names(node.target):
                self._record_assign(name, node.value, aug_op=node.operator.__class__.__name__)
            self.expr(node.target)
        elif kind is cst.AnnAssign:
            if node.value is not None:
                self.expr(node.value)
                for name, _ in _target_names(node.target):
                    self._record_assign(name, node.value)
                    if self.scope.kind == "class":
                        self.scope.class_fields[name] = node.value
        elif kind is cst.Return:
            if node.value is not None:
                self.scope.returns.append(node.value)
                self.expr(node.value)
        elif kind is cst.Import:
            for alias in node.names:
                full = dotted_name(alias.name) or ""
                self.imported_modules.append(full)
                if alias.asname is not None:
                    local = dotted_name(alias.asname.name)
                    if local:
                        self.aliases[local] = full
                else:
                    head = full.split(".", 1)[0]
                    self.aliases.setdefault(head, head)
        elif kind is cst.ImportFrom:
            self._import_from(node)
        elif kind is cst.Break:
            if self.loop is not None:
                self.loop.has_break.append(node)
        else:
            self.expr(node)

    def _import_from(self, node: cst.ImportFrom) -> None:
        base = dotted_name(node.module) if node.module is not None else ""
        dots = "." * len(node.relative)
        module = dots + (base or "")
        self.imported_modules.append(module)
        if isinstance(node.names, cst.ImportStar):
            return
        for alias in node.names:
            name = dotted_name(alias.name) or ""
            local = dotted_name(alias.asname.name) if alias.asname is not None else name
            if local:
                self.aliases[local] = (module + "." + name) if module and not module.endswith(".") else module + name

    def _assign(self, node: cst.Assign) -> None:
        value = node.value
        single: Optional[str] = None
        if len(node.targets) == 1:
            single = dotted_name(node.targets[0].target)
        saved = (self.assign_target, self.assign_value)
        self.assign_target, self.assign_value = single, value
        self.expr(value)
        self.assign_target, self.assign_value = saved
        for target in node.targets:
            for name, index in _target_names(target.target):
                self._record_assign(name, value, unpack_index=index)
            self.expr(target.target)

    def _record_assign(
        self,
        name: str,
        value: cst.BaseExpression,
        aug_op: Optional[str] = None,
        unpack_index: Optional[int] = None,
    ) -> None:
        self.order += 1
        fact = AssignFact(name, value, self.scope, self.loop, self.order, self.stmt, aug_op, unpack_index)
        self.assigns.append(fact)
        if aug_op is None and unpack_index is None:
            self.scope.assigns.setdefault(name, []).append(value)
        else:
            # Augmented or unpacked: the name no longer has one literal value.
            self.scope.assigns.setdefault(name, []).append(_UNKNOWN)

    def _function(self, node: cst.FunctionDef) -> None:
        scope = Scope("function", node.name.value, node, self.scope)
        params = node.params
        for param in (*params.posonly_params, *params.params, *params.kwonly_params):
            scope.params[param.name.value] = param.default
            scope.param_order.append(param.name.value)
        for star in (params.star_arg, params.star_kwarg):
            if isinstance(star, cst.Param):
                scope.params[star.name.value] = None
        if self.scope.kind == "class":
            self.scope.methods[node.name.value] = scope
        self.scopes.append(scope)
        for decorator in node.decorators:
            self.expr(decorator.decorator)
        for param in (*params.posonly_params, *params.params, *params.kwonly_params):
            if param.default is not None:
                self.expr(param.default)
        self._enter(scope, node.body)

    def _class(self, node: cst.ClassDef) -> None:
        scope = Scope("class", node.name.value, node, self.scope)
        for base in node.bases:
            dotted = dotted_name(base.value)
            if dotted:
                scope.bases.append(dotted)
        for decorator in node.decorators:
            dotted = dotted_name(decorator.decorator) or dotted_name(
                getattr(decorator.decorator, "func", cst.Name("_"))
            )
            if dotted:
                scope.bases.append("@" + dotted)
        self.scopes.append(scope)
        self._enter(scope, node.body)

    def _enter(self, scope: Scope, block: cst.BaseSuite) -> None:
        saved = (self.scope, self.loop, self.guards)
        self.scope, self.loop, self.guards = scope, None, ()
        self._block(block)
        self.scope, self.loop, self.guards = saved

    def _loop(self, node: cst.CSTNode, target: Optional[cst.BaseExpression], iter_node) -> None:  # type: ignore[no-untyped-def]
        saved_stmt = self.stmt
        self.stmt = node
        if iter_node is not None:
            self.expr(iter_node)
        names: Tuple[str, ...] = ()
        if target is not None:
            names = tuple(n for n, _ in _target_names(target))
            for name in names:
                self._record_assign(name, _LOOP_VALUE, unpack_index=0)
        self.order += 1
        loop = Loop(node, self.loop, self.scope, self.order, names, iter_node)
        self.loops.append(loop)
        saved_loop = self.loop
        self.loop = loop
        if isinstance(node, cst.While):
            self.expr(node.test)
        self._block(node.body)
        self.loop = saved_loop
        self.stmt = saved_stmt
        if node.orelse is not None:
            self._block(node.orelse.body)

    def _for(self, node: cst.For) -> None:
        self._loop(node, node.target, node.iter)

    def _while(self, node: cst.While) -> None:
        self._loop(node, None, None)

    def _if(self, node: cst.If) -> None:
        saved_stmt = self.stmt
        self.stmt = node
        self.expr(node.test)
        self.stmt = saved_stmt
        saved = self.guards
        self.guards = saved + (node.test,)
        self._block(node.body)
        orelse = node.orelse
        if isinstance(orelse, cst.If):
            self._if(orelse)
        elif orelse is not None:
            self._block(orelse.body)
        self.guards = saved

    def _with(self, node: cst.With) -> None:
        saved_stmt = self.stmt
        self.stmt = node
        for item in node.items:
            self.expr(item.item)
            if item.asname is not None:
                for name, _ in _target_names(item.asname.name):
                    self._record_assign(name, item.item)
        self.stmt = saved_stmt
        self._block(node.body)

    def _try(self, node: cst.Try) -> None:
        self._block(node.body)
        for handler in node.handlers:
            self._block(handler.body)
        if node.orelse is not None:
            self._block(node.orelse.body)
        if node.finalbody is not None:
            self._block(node.finalbody.body)

    # -- expressions ----------------------------------------------------------------

    def expr(self, node: cst.CSTNode) -> None:
        kind = type(node)
        if kind is cst.Call:
            self._call(node)
            return
        if kind in _LEAVES:
            return
        if kind is cst.Subscript:
            self.order += 1
            self.subscripts.append(
                SubscriptFact(node, dotted_name(node.value), self.scope, self.order, self.stmt)
            )
        elif kind is cst.Lambda:
            return  # lambdas rarely hold training calls; their bodies are not walked
        for name in _child_fields(kind):
            value = getattr(node, name)
            if isinstance(value, cst.CSTNode):
                self.expr(value)
            elif isinstance(value, (tuple, list)):
                for item in value:
                    if isinstance(item, cst.CSTNode):
                        self.expr(item)

    def _call(self, node: cst.Call) -> None:
        func = node.func
        dotted = dotted_name(func)
        if isinstance(func, cst.Attribute):
            method: Optional[str] = func.attr.value
            receiver: Optional[cst.BaseExpression] = func.value
        elif isinstance(func, cst.Name):
            method, receiver = func.value, None
        else:
            method, receiver = None, None
        assigned = self.assign_target if self.assign_value is node else None
        # Walk the callee chain and arguments first so inner calls come earlier in order.
        if receiver is not None and not isinstance(receiver, _LEAVES):
            self.expr(receiver)
        elif dotted is None:
            self.expr(func)
        for arg in node.args:
            self.expr(arg.value)
        self.order += 1
        fact = CallFact(
            node, dotted, method, receiver, self.scope, self.loop, self.order, self.stmt,
            self.guards, assigned,
        )
        self.calls.append(fact)
        self.scope.calls.append(fact)
        loop = self.loop
        while loop is not None:
            loop.calls.append(fact)
            loop = loop.parent


def collect_facts(path: str, module: cst.Module) -> ModuleFacts:
    walker = _Walker(path, module)
    walker.body(module.body)
    aliases = walker.aliases
    for call in walker.calls:
        call.qualname = resolve(call.dotted, aliases)
    classes = {s.name: s for s in walker.scopes if s.kind == "class" and s.parent is walker.module_scope}
    functions = {
        s.name: s for s in walker.scopes if s.kind == "function" and s.parent is walker.module_scope
    }
    return ModuleFacts(
        path=path,
        module=module,
        aliases=aliases,
        module_scope=walker.module_scope,
        scopes=walker.scopes,
        classes=classes,
        functions=functions,
        calls=walker.calls,
        loops=walker.loops,
        assigns=walker.assigns,
        subscripts=walker.subscripts,
        imported_modules=walker.imported_modules,
    )
