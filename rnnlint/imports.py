"""Which checked file imports which, found without parsing.

Whole-project analysis needs the import graph before any file is parsed, so that a model
module is analysed before the training script that imports it. A line-based scan is enough
for that: it finds `import a.b`, `import a.b as c`, `from a.b import c` and relative
`from .m import x`, and the names are resolved to the checked files here. Anything the scan
misses only means less knowledge, never a wrong finding.
"""

from __future__ import annotations

import os
import re
from typing import Dict, Iterable, List, Optional, Tuple

_FROM = re.compile(r"^[ \t]*from[ \t]+(\.+[\w.]*|[A-Za-z_][\w.]*)[ \t]+import[ \t]+([^\n#;]*)", re.M)
_IMPORT = re.compile(r"^[ \t]*import[ \t]+([A-Za-z_][\w. \t,]*)", re.M)
# How many trailing path parts can name a module (pkg.sub.module): enough for real layouts.
_MAX_DOTTED = 6


def import_strings(text: str) -> List[str]:
    """Module names a file imports, spelled as its import aliases spell them: "model",
    "pkg.model", ".model", "..utils" (for `from pkg import model` both "pkg" and
    "pkg.model", since the name may be a submodule)."""
    out: List[str] = []
    for match in _FROM.finditer(text):
        module, names = match.group(1), match.group(2)
        out.append(module)
        for part in names.replace("(", " ").replace(")", " ").replace("\\", " ").split(","):
            words = part.split()
            if words and words[0].isidentifier():
                out.append(module + words[0] if module.endswith(".") else module + "." + words[0])
    for match in _IMPORT.finditer(text):
        for part in match.group(1).split(","):
            words = part.split()
            if words:
                out.append(words[0])
    return list(dict.fromkeys(out))


class ModuleIndex:
    """Checked files by the dotted names they can be imported under."""

    def __init__(self, files: Iterable[str]) -> None:
        self.files = {os.path.abspath(f): f for f in files}
        self._by_name: Dict[str, List[Tuple[str, str]]] = {}
        for absolute in self.files:
            stem, _ = os.path.splitext(absolute)
            parts = stem.split(os.sep)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            for k in range(1, min(len(parts) - 1, _MAX_DOTTED) + 1):
                name = ".".join(parts[-k:])
                if not all(p.isidentifier() for p in parts[-k:]):
                    break
                root = os.sep.join(parts[:-k]) or os.sep
                self._by_name.setdefault(name, []).append((absolute, root))

    def resolve(self, importer: str, name: str) -> Optional[str]:
        """The checked file (as given to the run) that `name`, imported by `importer`, names."""
        importer_abs = os.path.abspath(importer)
        found = self._resolve_relative(importer_abs, name) if name.startswith(".") else self._resolve_absolute(importer_abs, name)
        if found is None or found == importer_abs:
            return None
        return self.files[found]

    def _resolve_relative(self, importer: str, name: str) -> Optional[str]:
        level = len(name) - len(name.lstrip("."))
        rest = name[level:]
        base = os.path.dirname(importer)
        for _ in range(level - 1):
            base = os.path.dirname(base)
        target = os.path.join(base, *rest.split(".")) if rest else base
        for candidate in (target + ".py", os.path.join(target, "__init__.py")):
            if candidate in self.files:
                return candidate
        return None

    def _resolve_absolute(self, importer: str, name: str) -> Optional[str]:
        entries = self._by_name.get(name)
        if not entries:
            return None
        # Python finds a module under a directory on sys.path: the script's own directory or
        # a project root above it. Prefer the deepest such root that holds the importer.
        here = os.path.dirname(importer)
        best: Optional[str] = None
        best_len, tie = -1, False
        for path, root in entries:
            if here == root or here.startswith(root.rstrip(os.sep) + os.sep):
                if len(root) > best_len:
                    best, best_len, tie = path, len(root), False
                elif len(root) == best_len:
                    tie = True
        if best is not None and not tie:
            return best
        # A dotted name unique in the run (an installed-style package import) is trusted; a
        # bare module name elsewhere in the tree ("utils") is too likely someone else's.
        if best is None and "." in name and len(entries) == 1:
            return entries[0][0]
        return None


def dependencies(index: ModuleIndex, path: str, text: str) -> Dict[str, str]:
    """import string -> checked file, for the checked files `path` imports."""
    out: Dict[str, str] = {}
    for name in import_strings(text):
        target = index.resolve(path, name)
        if target is not None:
            out[name] = target
    return out
