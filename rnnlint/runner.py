"""Checking many files: pre-filter, import graph, cache, and a process pool.

The order of work follows the import graph between the checked files, so that a file is
analysed after the files it imports and sees their summaries (whole-project facts). Files
whose text cannot hold anything the rules look for are skipped before parsing, unless a file
that can imports them (their constants and classes may matter). Each analysed file is looked
up in the content cache first; only misses are parsed, in worker processes when there are
enough of them. The result is the same, in the same order, whatever the number of jobs.

Nothing here imports libcst: a run answered entirely from the cache never loads the parser.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Set, Tuple

from rnnlint.cache import Cache, content_hash, decode_result, encode_result, make_key
from rnnlint.config import Config
from rnnlint.findings import FileError, Finding
from rnnlint.imports import ModuleIndex, dependencies
from rnnlint.source import decode_or_error, is_notebook, read_bytes, relevant, to_checked_text
from rnnlint.suppressions import skips_file

if TYPE_CHECKING:  # pragma: no cover - imported when a pool is needed (start-up time)
    from concurrent.futures import Future, ProcessPoolExecutor

# Fewer cache misses than this are checked in this process: starting workers costs more.
MIN_PARALLEL = 8


@dataclass
class RunOutcome:
    findings: List[Finding] = field(default_factory=list)
    errors: List[FileError] = field(default_factory=list)
    analysed: int = 0  # files parsed in this run
    cached: int = 0  # files answered by the cache
    skipped: int = 0  # files the pre-filter left out


def default_jobs() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))  # type: ignore[attr-defined]
    except AttributeError:
        return max(1, os.cpu_count() or 1)


# -- the work done for one file (in this process or a worker) ------------------------

_WORKER_CONFIG: Optional[Config] = None


def _init_worker(config: Config) -> None:
    global _WORKER_CONFIG
    _WORKER_CONFIG = config
    import rnnlint.engine  # noqa: F401 - load the parser once per worker, before the first file


def _analyse(path: str, text: str, entries: Dict[str, Any], want_summary: bool, line_map: Any = None,
             config: Optional[Config] = None) -> Tuple[List[Finding], List[FileError], Optional[Dict[str, Any]]]:
    from rnnlint.analysis.project import ProjectView
    from rnnlint.engine import check_source

    config = config if config is not None else _WORKER_CONFIG
    assert config is not None
    try:
        result = check_source(path, text, config, project=ProjectView(entries) if entries else None,
                              summarize=want_summary)
    except Exception as exc:  # noqa: BLE001 - never let one file take the run down
        error = FileError(path, f"internal error: {type(exc).__name__}: {exc}; please report this with the file",
                          kind="internal")
        return [], [error], None
    if line_map is not None:
        from rnnlint.notebooks import remap

        result.findings, result.errors = remap(line_map, result.findings, result.errors)
    if not result.cacheable:
        # Marked so that _store leaves it out: its answer depends on files outside its key.
        return result.findings, result.errors, dict(result.summary or {}, **{_UNCACHEABLE: True})
    return result.findings, result.errors, result.summary


# -- the run -------------------------------------------------------------------------


def run(
    files: List[str],
    config: Config,
    jobs: Optional[int] = None,
    cache: Optional[Cache] = None,
    progress: Optional[Callable[[int, int], None]] = None,
) -> RunOutcome:
    outcome = RunOutcome()
    texts: Dict[str, str] = {}
    line_maps: Dict[str, Any] = {}  # notebooks: joined line -> (cell, line in cell)
    hashes: Dict[str, str] = {}
    for path in files:
        data, error = read_bytes(path)
        if data is None:
            outcome.errors.append(error)  # type: ignore[arg-type]
            continue
        text, error = decode_or_error(path, data)
        if text is None:
            outcome.errors.append(error)  # type: ignore[arg-type]
            continue
        if is_notebook(path):
            if not relevant(text):
                continue
            text, line_maps[path], error = to_checked_text(path, text)
            if text is None:
                outcome.errors.append(error)  # type: ignore[arg-type]
                continue
        texts[path] = text
        hashes[path] = content_hash(data)

    wanted = sorted(p for p, t in texts.items() if relevant(t) and not skips_file(t))
    index = ModuleIndex(p for p in texts if p.endswith(".py"))
    deps: Dict[str, Dict[str, str]] = {}
    analysis: Set[str] = set(wanted)
    queue = list(wanted)
    while queue:
        path = queue.pop()
        found = dependencies(index, path, texts[path])
        deps[path] = found
        for target in found.values():
            if target not in analysis and target in texts and not skips_file(texts[target]):
                analysis.add(target)
                queue.append(target)
    outcome.skipped = len(texts) - len(analysis)

    dependents: Dict[str, Set[str]] = {p: set() for p in analysis}
    waiting: Dict[str, int] = {}
    for path in analysis:
        targets = {t for t in deps[path].values() if t in analysis and t != path}
        waiting[path] = len(targets)
        for target in targets:
            dependents[target].add(path)

    summaries: Dict[str, Optional[Dict[str, Any]]] = {}
    results: Dict[str, Tuple[List[Finding], List[FileError]]] = {}
    pending = set(analysis)
    ready = sorted(p for p in analysis if waiting[p] == 0)
    running: Dict[Future, Tuple[str, Optional[str]]] = {}
    pool: Optional[ProcessPoolExecutor] = None
    jobs = default_jobs() if jobs is None or jobs <= 0 else jobs
    total = len(analysis)
    config_key = config.fingerprint()

    def finish(path: str, findings: List[Finding], errors: List[FileError], summary: Optional[Dict[str, Any]]) -> None:
        results[path] = (findings, errors)
        if summary is not None and _UNCACHEABLE in summary:
            summary = {k: v for k, v in summary.items() if k != _UNCACHEABLE} or None
        summaries[path] = summary
        for other in sorted(dependents[path]):
            waiting[other] -= 1
            if waiting[other] == 0 and other in pending and other not in ready:
                ready.append(other)
        if progress is not None:
            progress(len(results), total)

    try:
        while pending or running:
            if not ready and not running and pending:
                # An import cycle: go on with the file that waits for the fewest others.
                ready.append(min(pending, key=lambda p: (waiting[p], p)))
            while ready:
                path = ready.pop(0)
                if path not in pending:
                    continue
                pending.discard(path)
                entries = {
                    name: summaries[target]
                    for name, target in sorted(deps[path].items())
                    if summaries.get(target)
                }
                want_summary = bool(dependents[path])
                key = None
                if cache is not None and cache.enabled:
                    key = make_key(config_key, path, hashes[path], json.dumps(entries, sort_keys=True),
                                   "summary" if want_summary else "")
                    hit = cache.get(key)
                    if hit is not None:
                        try:
                            findings, errors, summary = decode_result(path, hit)
                        except (ValueError, TypeError, KeyError):
                            pass
                        else:
                            outcome.cached += 1
                            finish(path, findings, errors, summary)
                            continue
                outcome.analysed += 1
                if pool is None and jobs > 1 and len(pending) + len(ready) + 1 >= MIN_PARALLEL:
                    pool = _make_pool(min(jobs, len(pending) + 1), config)
                if pool is not None:
                    try:
                        future = pool.submit(_analyse, path, texts[path], entries, want_summary, line_maps.get(path))
                    except RuntimeError:  # BrokenProcessPool: a worker died; isolate this file
                        findings, errors, summary = _isolated(path, texts[path], entries, want_summary,
                                                              line_maps.get(path), config)
                        _store(cache, key, findings, errors, summary)
                        finish(path, findings, errors, summary)
                        continue
                    running[future] = (path, key, entries, want_summary)
                    continue
                findings, errors, summary = _analyse(path, texts[path], entries, want_summary, line_maps.get(path), config)
                _store(cache, key, findings, errors, summary)
                finish(path, findings, errors, summary)
            if running:
                from concurrent.futures import FIRST_COMPLETED, wait

                done, _ = wait(list(running), return_when=FIRST_COMPLETED)
                broken = False
                for future in sorted(done, key=lambda f: running[f][0]):
                    path, key, entries, want_summary = running.pop(future)
                    try:
                        findings, errors, summary = future.result()
                    except Exception:  # noqa: BLE001 - a worker died (signal, memory): every file it
                        # had in flight fails with it, so each is checked again alone, and only
                        # the one that kills its process is reported.
                        broken = True
                        findings, errors, summary = _isolated(path, texts[path], entries, want_summary,
                                                              line_maps.get(path), config)
                    _store(cache, key, findings, errors, summary)
                    finish(path, findings, errors, summary)
                if broken and pool is not None:
                    for future, (path, key, entries, want_summary) in sorted(running.items(), key=lambda i: i[1][0]):
                        findings, errors, summary = _isolated(path, texts[path], entries, want_summary,
                                                              line_maps.get(path), config)
                        _store(cache, key, findings, errors, summary)
                        finish(path, findings, errors, summary)
                    running.clear()
                    pool.shutdown(wait=False, cancel_futures=True)
                    pool = _make_pool(min(jobs, len(pending) + 1), config) if pending else None
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    for path in sorted(results):
        findings, errors = results[path]
        outcome.findings.extend(findings)
        outcome.errors.extend(errors)
    return outcome


def _isolated(path: str, text: str, entries: Dict[str, Any], want_summary: bool, line_map: Any,
              config: Config) -> Tuple[List[Finding], List[FileError], Optional[Dict[str, Any]]]:
    """Check one file in a process of its own: if it kills that process too, it alone is
    reported, and this process lives on."""
    solo = _make_pool(1, config)
    try:
        return solo.submit(_analyse, path, text, entries, want_summary, line_map).result()
    except Exception as exc:  # noqa: BLE001 - the file kills the process that checks it
        return [], [FileError(path, f"internal error: the process checking this file died ({type(exc).__name__}); "
                              "please report this with the file", kind="internal")], None
    finally:
        solo.shutdown(wait=False, cancel_futures=True)


_UNCACHEABLE = "__uncacheable__"


def _store(cache: Optional[Cache], key: Optional[str], findings: List[Finding], errors: List[FileError],
           summary: Optional[Dict[str, Any]]) -> None:
    if summary is not None and summary.get(_UNCACHEABLE):
        return
    if cache is not None and key is not None:
        cache.put(key, encode_result(findings, errors, summary))


def _make_pool(workers: int, config: Config) -> "ProcessPoolExecutor":
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    context = None
    if sys.platform.startswith("linux"):
        # fork: workers start in milliseconds and share the already-imported modules.
        context = multiprocessing.get_context("fork")
    return ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_init_worker,
                               initargs=(config,))
