"""Applying fixes: `rnnlint check --fix` / `--diff`.

A rule attaches a Fix to its report (rnnlint.rules.base). Per file: check the source, take the
fixes of the findings that remain after suppression comments, apply the ones that do not
overlap in one libcst transformer pass (untouched code keeps its formatting and comments), add
the imports the new code needs, and check again; repeat while something applies (a fix held
back by an overlapping one gets its turn in the next round).
"""

from __future__ import annotations

import difflib
import io
import tokenize
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Set, Tuple, Union

import libcst as cst
from libcst.codemod import CodemodContext
from libcst.codemod.visitors import AddImportsVisitor, ImportItem

from rnnlint.analysis.walker import iter_children
from rnnlint.config import Config
from rnnlint.engine import FileResult, check_source
from rnnlint.findings import FileError
from rnnlint.rules.base import Edit, Report

MAX_ROUNDS = 5


@dataclass
class FixOutcome:
    path: str
    original: str
    text: str  # the source after the fixes
    applied: List[str] = field(default_factory=list)  # "RNN402: pass training=self.training", in order
    result: FileResult = field(default_factory=lambda: FileResult(""))  # findings of the fixed text
    unsafe_left: int = 0  # unsafe fixes not applied because --unsafe-fixes was not given

    @property
    def changed(self) -> bool:
        return self.text != self.original

    def diff(self) -> str:
        return "".join(
            difflib.unified_diff(
                self.original.splitlines(keepends=True),
                self.text.splitlines(keepends=True),
                fromfile=f"a/{self.path}",
                tofile=f"b/{self.path}",
            )
        )


def wanted(report: Report, unsafe: bool) -> bool:
    return report.fix is not None and (report.fix.safe or unsafe)


def fix_source(path: str, text: str, config: Config, unsafe: bool = False) -> FixOutcome:
    """The fixed text of one file, the fixes applied, and the findings that remain."""
    outcome = FixOutcome(path, text, text)
    for _ in range(MAX_ROUNDS):
        result = check_source(path, outcome.text, config, keep_reports=True)
        outcome.result = result
        if result.errors or result.module is None:
            break
        chosen = _choose(result.module, [r for r in result.reports if wanted(r, unsafe)])
        if not chosen:
            break
        new_text = _apply(result.module, [edit for _, edit in chosen])
        problem = _invalid(new_text)
        if problem:
            codes = ", ".join(sorted({r.meta.code for r, _ in chosen}))
            result.errors.append(
                FileError(path, f"internal error: the fixes for {codes} produced code that does not "
                          f"parse ({problem}); nothing was changed for them. Please report this", kind="internal")
            )
            break
        if new_text == outcome.text:
            break
        outcome.text = new_text
        outcome.applied.extend(f"{r.meta.code}: {r.fix.description}" for r, _ in chosen)  # type: ignore[union-attr]
    else:
        outcome.result = check_source(path, outcome.text, config, keep_reports=True)
    if not unsafe:
        outcome.unsafe_left = sum(
            1 for r in outcome.result.reports if r.fix is not None and not r.fix.safe and r.fix.resolve() is not None
        )
    for report in outcome.result.reports:  # the parsed tree is not needed past this point
        report.fix = None
    outcome.result.reports = []
    outcome.result.module = None
    return outcome


def _invalid(text: str) -> str:
    try:
        compile(text, "<fixed>", "exec", dont_inherit=True, flags=0x400)  # ast.PyCF_ONLY_AST
    except SyntaxError as exc:
        return f"line {exc.lineno}: {exc.msg}"
    return ""


def _choose(module: cst.Module, reports: Sequence[Report]) -> List[Tuple[Report, Edit]]:
    """The reports' edits that touch disjoint parts of the tree, first come first served."""
    edits: List[Tuple[Report, Edit]] = []
    for report in reports:
        edit = report.fix.resolve() if report.fix is not None else None
        if edit is not None and (edit.replace or edit.insert_after):
            edits.append((report, edit))
    if not edits:
        return []
    ancestors = _target_ancestors(module, {id(old) for _, e in edits for old, _ in e.replace}
                                  | {id(s) for _, e in edits for s, _ in e.insert_after})
    chosen: List[Tuple[Report, Edit]] = []
    replaced: Set[int] = set()  # nodes replaced by the chosen edits
    touched: Set[int] = set()  # those nodes and their ancestors
    for report, edit in edits:
        mine = {id(old) for old, _ in edit.replace}
        # A replaced node must not contain or sit inside another replaced node, and a
        # statement that gets a neighbour must not sit inside a replaced node.
        clash = any(n in touched or ancestors.get(n, set()) & replaced for n in mine) or any(
            ancestors.get(id(s), set()) & replaced for s, _ in edit.insert_after
        )
        if clash:
            continue
        chosen.append((report, edit))
        replaced |= mine
        for n in mine:
            touched.add(n)
            touched |= ancestors.get(n, set())
        for s, _ in edit.insert_after:
            touched |= ancestors.get(id(s), set())
    return chosen


def _target_ancestors(module: cst.Module, targets: Set[int]) -> Dict[int, Set[int]]:
    """For each target node, the ids of all its ancestors (one iterative walk of the tree)."""
    parent: Dict[int, int] = {}
    stack: List[cst.CSTNode] = [module]
    while stack:
        node = stack.pop()
        for child in iter_children(node):
            parent[id(child)] = id(node)
            stack.append(child)
    out: Dict[int, Set[int]] = {}
    for target in targets:
        chain: Set[int] = set()
        current = parent.get(target)
        while current is not None:
            chain.add(current)
            current = parent.get(current)
        out[target] = chain
    return out


class _Apply(cst.CSTTransformer):
    def __init__(self, edits: Sequence[Edit]) -> None:
        super().__init__()
        self.replace: Dict[int, cst.CSTNode] = {}
        self.insert: Dict[int, List[cst.BaseStatement]] = {}
        for edit in edits:
            for old, new in edit.replace:
                self.replace[id(old)] = new
            for stmt, added in edit.insert_after:
                self.insert.setdefault(id(stmt), []).extend(added)

    def on_leave(
        self, original_node: cst.CSTNode, updated_node: cst.CSTNode
    ) -> Union[cst.CSTNode, cst.RemovalSentinel, cst.FlattenSentinel]:
        new = self.replace.get(id(original_node))
        if new is not None:
            return new
        if self.insert and isinstance(updated_node, (cst.Module, cst.IndentedBlock)):
            body: List[cst.BaseStatement] = []
            for old, current in zip(original_node.body, updated_node.body):  # type: ignore[attr-defined]
                body.append(current)
                body.extend(self.insert.get(id(old), ()))
            if len(body) != len(updated_node.body):
                return updated_node.with_changes(body=body)
        return updated_node


def _apply(module: cst.Module, edits: Sequence[Edit]) -> str:
    fixed = module.visit(_Apply(edits))
    imports = [item for edit in edits for item in edit.imports]
    if imports:
        context = CodemodContext()
        items = [ImportItem(name, obj, None) for name, obj in dict.fromkeys(imports)]
        fixed = AddImportsVisitor(context, items).transform_module(fixed)
    return fixed.code


def read_for_fix(path: str) -> Tuple[Optional[str], str, bool, Optional[FileError]]:
    """Text, encoding and BOM of a file, so that a fixed file is written back the same way."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        return None, "utf-8", False, FileError(path, f"cannot read file: {exc.strerror or exc}", kind="read")
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
        text = data.decode(encoding)
    except (SyntaxError, UnicodeDecodeError, LookupError) as exc:
        return None, "utf-8", False, FileError(path, f"cannot decode file: {exc}", kind="read")
    bom = text.startswith("\ufeff")
    if encoding == "utf-8-sig":
        encoding, bom = "utf-8", True
    return (text[1:] if bom else text), encoding, bom, None


def fix_file(path: str, config: Config, unsafe: bool = False, write: bool = True) -> FixOutcome:
    """Fix one file in place (unless write is False, as for --diff)."""
    text, encoding, bom, error = read_for_fix(path)
    if text is None:
        outcome = FixOutcome(path, "", "")
        outcome.result = FileResult(path, errors=[error] if error else [])
        return outcome
    outcome = fix_source(path, text, config, unsafe)
    if write and outcome.changed:  # every text fix_source keeps has been checked to parse
        # newline="" keeps the file's own line endings, which libcst preserved
        with open(path, "w", encoding=encoding, newline="") as handle:
            handle.write(("\ufeff" if bom else "") + outcome.text)
    return outcome


@dataclass
class FixRun:
    """What --fix / --diff did over many files."""

    findings: list = field(default_factory=list)  # remaining findings
    errors: List[FileError] = field(default_factory=list)
    applied: int = 0
    unsafe_left: int = 0
    diffs: List[str] = field(default_factory=list)

    def summary(self, verb: str) -> str:
        """"3 fixes applied" (+ how many more --unsafe-fixes would apply)."""
        more = f" ({self.unsafe_left} more with --unsafe-fixes)" if self.unsafe_left else ""
        return f"{plural(self.applied, 'fix')} {verb}{more}"


def fix_files(paths: Sequence[str], config: Config, unsafe: bool = False, write: bool = True) -> FixRun:
    run = FixRun()
    for path in paths:
        outcome = fix_file(path, config, unsafe, write)
        run.findings.extend(outcome.result.findings)
        run.errors.extend(outcome.result.errors)
        run.applied += len(outcome.applied)
        run.unsafe_left += outcome.unsafe_left
        if outcome.changed:
            run.diffs.append(outcome.diff())
    return run


def plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 'es' if word.endswith('x') else 's'}"
