"""Child process of script mode: run the user's script under the recorder, write JSON, exit.

    python -m rnnlint.runtime._child --result FILE [options] -- SCRIPT [ARGS...]

This process prints nothing of its own (the user's output is the only output; the parent keeps
its tail) and leaves through os._exit, so neither the user's atexit handlers nor lingering
threads can hang it after the measurement is written. Every outcome becomes one JSON record.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import traceback
from typing import Any, Dict, List, NoReturn, Optional

MAIN_PID = os.getpid()


def _parse(argv: List[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="rnnlint.runtime._child")
    parser.add_argument("--result", required=True)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--curvature", action="store_true")
    parser.add_argument("--hessian-iterations", type=int, default=20)
    parser.add_argument("--memory-limit-mb", type=int, default=0)
    parser.add_argument("script")
    parser.add_argument("script_args", nargs=argparse.REMAINDER)
    return parser.parse_args(argv)


def _write(path: str, record: Dict[str, Any]) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(record, fh)
    os.replace(tmp, path)  # the parent never sees half a file


def _become_subreaper() -> None:
    """Orphans of the script (double forks, setsid daemons) are re-parented to this process
    instead of init, so the parent can find and kill them (Linux; a no-op elsewhere)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        pass


def _kill_descendants() -> None:
    try:
        import signal

        from rnnlint.runtime.script import descendants

        for pid in descendants(os.getpid()):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
    except BaseException:  # noqa: BLE001 - e.g. MemoryError under the limit; the parent kills them too
        pass


def _leave(path: str, record: Dict[str, Any]) -> NoReturn:
    if os.getpid() == MAIN_PID:  # a forked copy of the script never reports
        _write(path, record)
        _kill_descendants()  # nothing the script started outlives the probe
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - the user may have closed or replaced them
            pass
    os._exit(0)


def _script_line(exc: BaseException, script: str) -> Optional[int]:
    frames = traceback.extract_tb(exc.__traceback__)
    lines = [f.lineno for f in frames if os.path.abspath(f.filename) == script]
    return lines[-1] if lines else None


def _is_out_of_memory(exc: BaseException) -> bool:
    try:
        text = str(exc).lower()
    except Exception:  # noqa: BLE001
        text = ""
    return isinstance(exc, MemoryError) or (
        isinstance(exc, RuntimeError) and ("can't allocate memory" in text or "out of memory" in text))


def _describe(exc: BaseException) -> str:
    try:
        first = (str(exc).strip().splitlines() or [""])[0][:200]
    except Exception:  # noqa: BLE001 - the script's exception may not even print
        first = ""
    if _is_out_of_memory(exc):
        asked = re.search(r"tried to allocate (\d+) bytes", str(exc))
        what = f"an allocation of {int(asked.group(1)) / 2 ** 30:.1f} GiB failed" if asked else type(exc).__name__
        return f"the script ran out of memory ({what})"
    return f"the script raised {type(exc).__name__}: {first}" if first else f"the script raised {type(exc).__name__}"


def _when(steps: int) -> str:
    return "before its first optimizer step" if steps == 0 else f"after {steps} optimizer step(s)"


def _limit_memory(extra_mb: int) -> None:
    """Cap the address space at what the harness uses now (torch maps a lot) plus extra_mb."""
    import resource

    used = 0
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            used = next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmSize:"))
    except (OSError, StopIteration, ValueError):
        pass
    limit = used + extra_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def main(argv: Optional[List[str]] = None) -> NoReturn:
    opts = _parse(sys.argv[1:] if argv is None else argv)
    _become_subreaper()
    try:
        _run(opts)
    except BaseException as exc:  # noqa: BLE001 - a failure of rnnlint itself, reported in one line
        _leave(opts.result, {"status": "error", "kind": "internal",
                             "message": f"the rnnlint probe failed: {type(exc).__name__}: {exc}"})
    _leave(opts.result, {"status": "error", "kind": "internal", "message": "the rnnlint probe did not finish"})


def _run(opts: argparse.Namespace) -> None:
    script = os.path.abspath(opts.script)
    try:
        import torch
    except Exception as exc:  # noqa: BLE001
        _leave(opts.result, {"status": "error", "message": f"torch cannot be imported: {exc}. "
                                                           "pip install 'rnnlint[runtime]'"})
    if opts.device == "cuda" and not torch.cuda.is_available():
        _leave(opts.result, {"status": "error", "message": "--device cuda: no CUDA device is available here"})

    from rnnlint.runtime.inprocess import seed_everything
    from rnnlint.runtime.recorder import Recorder

    def progress(step: int) -> None:
        with open(opts.result + ".steps", "w", encoding="utf-8") as fh:
            fh.write(str(step))
        if step >= opts.steps:
            finish(None, None)

    recorder = Recorder(opts.steps, seed=opts.seed, curvature=opts.curvature,
                        hessian_iterations=opts.hessian_iterations, script_path=script, on_step=progress)

    def finish(outcome: Optional[str], exc: Optional[BaseException]) -> NoReturn:
        measured = recorder.measurements() if os.getpid() == MAIN_PID else {}
        steps = recorder.step
        record: Dict[str, Any] = {"status": "ok", "measurements": measured}
        forked = (f" (it forked {recorder.forks} process(es); steps in forked processes are not measured)"
                  if recorder.forks else "")
        if outcome == "exception":
            assert exc is not None
            record.update(status="error", message=f"{_describe(exc)} {_when(steps)}",
                          line=_script_line(exc, script))
        elif steps == 0 and outcome == "exit":
            assert isinstance(exc, SystemExit)
            record.update(status="error", message=f"the script called sys.exit({exc.code!r}) {_when(0)}{forked}",
                          line=_script_line(exc, script))
        elif steps == 0:
            record.update(status="error", message="the script finished without calling optimizer.step() of a "
                                                  f"torch.optim optimizer: there was no training step to measure{forked}")
        elif not measured.get("layers"):
            record.update(status="error", message="no recurrent layer (nn.RNN/LSTM/GRU, their cells, or a custom "
                                                  f"recurrence) took part in the {steps} measured training step(s)")
        elif steps < opts.steps:
            record["note"] = f"the script ended after {steps} of {opts.steps} optimizer steps"
        _leave(opts.result, record)

    seed_everything(opts.seed)
    if opts.curvature:
        torch.backends.cudnn.enabled = False  # cuDNN's RNN kernels have no double backward
    # RLIMIT_AS caps reserved address space, and CUDA reserves far more than it uses: the cap
    # would break CUDA's start, so it applies to CPU runs only.
    if opts.memory_limit_mb > 0 and not (opts.device == "cuda" or (opts.device == "auto" and torch.cuda.is_available())):
        _limit_memory(opts.memory_limit_mb)
    sys.argv = [script] + list(opts.script_args)
    sys.path[0] = os.path.dirname(script)
    import runpy

    with recorder:
        try:
            runpy.run_path(script, run_name="__main__")
        except SystemExit as exc:
            finish("exit", exc)
        except BaseException as exc:  # noqa: BLE001 - the user's failure, described in one line
            finish("exception", exc)
        finish("finished", None)


if __name__ == "__main__":
    main()
