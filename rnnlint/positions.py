"""Line and column of the few nodes a run reports, and nothing else.

libcst's PositionProvider records a range for every node of the module. rnnlint
needs positions only for reported nodes (and their statements), so it runs the
module's code generation once with a state that counts lines cheaply, records
the wanted nodes only, and stops as soon as the last of them is done.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Dict, Iterable, Iterator, Optional, Tuple

import libcst as cst
from libcst._nodes.internal import CodegenState

Position = Tuple[int, int, int, int]  # line, column (1-based), end line, end column (exclusive, 1-based)


class _Done(Exception):
    pass


class _TargetedState(CodegenState):
    """A codegen state that tracks line/column and records only target nodes."""

    def __init__(self, module: cst.Module, targets: Dict[int, cst.CSTNode]) -> None:
        super().__init__(default_indent=module.default_indent, default_newline=module.default_newline)
        self.line = 1
        self.column = 0
        self.targets = targets
        self.remaining = len(targets)
        self.found: Dict[int, Position] = {}

    def add_indent_tokens(self) -> None:
        for token in self.indent_tokens:
            self.add_token(token)

    def add_token(self, value: str) -> None:
        if "\r" in value:  # \r\n and a lone \r (old Mac files) end a line too
            value = value.replace("\r\n", "\n").replace("\r", "\n")
        newlines = value.count("\n")
        if newlines:
            self.line += newlines
            self.column = len(value) - value.rfind("\n") - 1
        else:
            self.column += len(value)

    @contextmanager
    def record_syntactic_position(
        self,
        node: cst.CSTNode,
        *,
        start_node: Optional[cst.CSTNode] = None,
        end_node: Optional[cst.CSTNode] = None,
    ) -> Iterator[None]:
        key = id(node)
        wanted = key in self.targets and key not in self.found
        start = (self.line, self.column)
        yield
        if wanted:
            if start_node is not None and id(start_node) in self.found:
                start = self.found[id(start_node)][:2]
                start = (start[0], start[1] - 1)
            self.found[key] = (start[0], start[1] + 1, self.line, self.column + 1)
            self.remaining -= 1
            if self.remaining == 0:
                raise _Done


def positions(module: cst.Module, nodes: Iterable[cst.CSTNode]) -> Dict[int, Position]:
    """Map id(node) -> position for each node. Nodes without a syntactic position get their
    first enclosing one's position is not guessed: they are simply absent."""
    targets = {id(n): n for n in nodes}
    if not targets:
        return {}
    state = _TargetedState(module, targets)
    try:
        module._codegen(state)
    except _Done:
        pass
    return state.found
