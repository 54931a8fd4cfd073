"""Configuration: `[tool.rnnlint]` in pyproject.toml, or a top-level rnnlint.toml."""

from __future__ import annotations

import fnmatch
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.9/3.10
    import tomli as tomllib

from rnnlint.findings import Severity, severity_from
from rnnlint.rules import ALL_META, BY_CODE, BY_NAME, matches, valid_selector

KNOWN_KEYS = {"select", "ignore", "extend-exclude", "exclude", "per-file-ignores", "fail-on", "cache-dir"}


class ConfigError(Exception):
    """A problem in a config file or in command-line settings (exit code 2)."""


@dataclass
class Config:
    select: List[str] = field(default_factory=lambda: ["ALL"])
    ignore: List[str] = field(default_factory=list)
    exclude: List[str] = field(default_factory=list)
    per_file_ignores: Dict[str, List[str]] = field(default_factory=dict)
    fail_on: Severity = Severity.WARNING
    options: Dict[str, Dict[str, Any]] = field(default_factory=dict)  # code -> {option: value}
    root: Path = field(default_factory=Path.cwd)
    source: Optional[Path] = None
    cache_dir: Optional[str] = None

    def enabled_codes(self) -> List[str]:
        return [
            m.code
            for m in ALL_META
            if any(matches(s, m) for s in self.select) and not any(matches(s, m) for s in self.ignore)
        ]

    def ignored_for(self, path: str) -> List[str]:
        """Codes and selectors ignored for this path by per-file-ignores."""
        rel = _relative(path, self.root)
        out: List[str] = []
        for pattern, codes in self.per_file_ignores.items():
            if fnmatch.fnmatch(rel, pattern) or fnmatch.fnmatch(Path(rel).name, pattern):
                out.extend(codes)
        return out

    def fingerprint(self) -> str:
        """A stable text of everything that changes findings (for the cache key)."""
        return repr((sorted(self.enabled_codes()), sorted(self.per_file_ignores.items()),
                     sorted((k, sorted(v.items())) for k, v in self.options.items())))


def _relative(path: str, root: Path) -> str:
    try:
        return Path(path).resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return Path(path).as_posix()


def _error_position(exc: Exception) -> str:
    match = re.search(r"line (\d+), column (\d+)", str(exc))
    return f":{match.group(1)}:{match.group(2)}" if match else ""


def read_toml(path: Path) -> Dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        where = _error_position(exc)
        if not where and "end of document" in str(exc):
            try:
                text = path.read_bytes().decode("utf-8", errors="replace")
            except OSError:
                text = ""
            last = text.split("\n")[-1] if text else ""
            where = f":{text.count(chr(10)) + 1}:{len(last) + 1}"
        raise ConfigError(f"{path}{where}: invalid TOML: {exc}") from exc
    except UnicodeDecodeError as exc:
        data = exc.object
        line, column = data.count(b"\n", 0, exc.start) + 1, exc.start - data.rfind(b"\n", 0, exc.start)
        raise ConfigError(f"{path}:{line}:{column}: invalid TOML: not UTF-8 (byte 0x{data[exc.start]:02x})") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from exc


def _table(path: Path) -> Optional[Dict[str, Any]]:
    data = read_toml(path)
    if path.name == "pyproject.toml":
        table = data.get("tool", {}).get("rnnlint")
        return table if isinstance(table, dict) else None
    return data


def find_config(start: Path) -> Optional[Path]:
    """The nearest rnnlint.toml, or pyproject.toml with [tool.rnnlint], from start upwards."""
    directory = start if start.is_dir() else start.parent
    directory = directory.resolve()
    for candidate_dir in (directory, *directory.parents):
        own = candidate_dir / "rnnlint.toml"
        if own.is_file():
            return own
        pyproject = candidate_dir / "pyproject.toml"
        if pyproject.is_file():
            try:
                if _table(pyproject) is not None:
                    return pyproject
            except ConfigError:
                return pyproject  # surface the broken file rather than skip it
        if (candidate_dir / ".git").exists():
            break
    return None


def _string_list(value: Any, key: str, where: str) -> List[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise ConfigError(f"{where}: '{key}' must be a list of strings")


def _check_selectors(selectors: Sequence[str], key: str, where: str) -> None:
    for selector in selectors:
        if not valid_selector(selector):
            raise ConfigError(f"{where}: unknown rule code or name {selector!r} in '{key}'")


def load_config(path: Optional[Path], root: Optional[Path] = None) -> Config:
    config = Config(root=root or Path.cwd())
    if path is None:
        return config
    table = _table(path)
    if table is None:
        if path.name == "pyproject.toml":
            config.root = path.parent
            return config
        table = {}
    where = str(path)
    config.source = path
    config.root = path.parent
    for key, value in table.items():
        if key in KNOWN_KEYS:
            continue
        meta = BY_CODE.get(key.upper()) or BY_NAME.get(key)
        if meta is None:
            raise ConfigError(f"{where}: unknown key {key!r} in rnnlint settings")
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: options of {meta.code} must be a table")
        for option, option_value in value.items():
            if option not in meta.options:
                known_options = ", ".join(meta.options) or "none"
                raise ConfigError(
                    f"{where}: {meta.code} ({meta.name}) has no option {option!r} (options: {known_options})"
                )
            default = meta.options[option]
            if type(option_value) is not type(default) and not (
                isinstance(default, float) and isinstance(option_value, int)
            ):
                raise ConfigError(
                    f"{where}: {meta.code} option {option!r} must be {type(default).__name__}, got {option_value!r}"
                )
            config.options.setdefault(meta.code, {})[option] = option_value
    if "select" in table:
        config.select = _string_list(table["select"], "select", where)
        _check_selectors(config.select, "select", where)
    if "ignore" in table:
        config.ignore = _string_list(table["ignore"], "ignore", where)
        _check_selectors(config.ignore, "ignore", where)
    for key in ("exclude", "extend-exclude"):
        if key in table:
            config.exclude.extend(_string_list(table[key], key, where))
    if "per-file-ignores" in table:
        pfi = table["per-file-ignores"]
        if not isinstance(pfi, dict):
            raise ConfigError(f"{where}: 'per-file-ignores' must be a table of glob = [codes]")
        for pattern, codes in pfi.items():
            codes = _string_list(codes, f"per-file-ignores.{pattern}", where)
            _check_selectors(codes, f"per-file-ignores.{pattern}", where)
            config.per_file_ignores[pattern] = codes
    if "fail-on" in table:
        config.fail_on = parse_fail_on(table["fail-on"], where)
    if "cache-dir" in table:
        if not isinstance(table["cache-dir"], str):
            raise ConfigError(f"{where}: 'cache-dir' must be a string")
        config.cache_dir = table["cache-dir"]
    return config


def parse_fail_on(value: Any, where: str) -> Severity:
    severity = severity_from(value) if isinstance(value, str) else None
    if severity is None:
        raise ConfigError(f"{where}: 'fail-on' must be one of error, warning, info (got {value!r})")
    return severity


def split_selectors(values: Optional[Sequence[str]]) -> List[str]:
    out: List[str] = []
    for value in values or ():
        out.extend(v.strip() for v in value.split(",") if v.strip())
    return out


def resolve_config(
    paths: Sequence[str], config_file: Optional[str], no_config: bool
) -> Tuple[Config, Optional[Path]]:
    if no_config:
        return Config(), None
    if config_file is not None:
        path = Path(config_file)
        if not path.is_file():
            raise ConfigError(f"{config_file}: config file not found")
        return load_config(path), path
    start = Path(paths[0]) if paths else Path.cwd()
    if not start.exists():
        start = Path.cwd()
    found = find_config(start)
    return load_config(found), found
