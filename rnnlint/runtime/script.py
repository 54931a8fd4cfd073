"""run_script(): probe a user's training script in a child process (parent side, torch-free).

The parent never imports the user's code. The child runs in its own session, so a timeout or a
Ctrl-C kills the whole process group, including anything the script forked. Its output is read
continuously and only the last few KB are kept.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

from rnnlint.findings import FileError, Finding
from rnnlint.runtime.evaluate import Locator, evaluate
from rnnlint.runtime.text import render
from rnnlint.runtime.thresholds import Thresholds

TAIL_BYTES = 4096
PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@dataclass
class ScriptResult:
    path: str
    findings: List[Finding] = field(default_factory=list)
    errors: List[FileError] = field(default_factory=list)
    text: str = ""
    measurements: Optional[Dict[str, Any]] = None
    plots: List[str] = field(default_factory=list)
    output_tail: str = ""  # the last TAIL_BYTES of the script's stdout and stderr
    returncode: Optional[int] = None  # of the child process
    seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        """Linter convention: 2 when the script could not be probed, 1 with findings, else 0."""
        return 2 if self.errors else (1 if self.findings else 0)


class _Tail:
    """Drains a pipe on a thread, keeping only the last TAIL_BYTES."""

    def __init__(self, stream: Any) -> None:
        self.data = bytearray()
        self._stream = stream
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        fd = self._stream.fileno()
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                return
            if not chunk:
                return
            self.data += chunk
            del self.data[:-TAIL_BYTES]

    def text(self, wait: float) -> str:
        self._thread.join(wait)
        return self.data.decode("utf-8", errors="replace")


def descendants(pid: int) -> List[int]:
    """Every live process below `pid` (Linux /proc; [] elsewhere). The child marks itself a
    subreaper, so what the script double-forks or moves to a new session stays below it."""
    children: Dict[int, List[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    found: List[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), ()):
            found.append(child)
            todo.append(child)
    return found


def _kill_group(proc: subprocess.Popen) -> None:
    """Kill the child, its process group, and whatever left the group (setsid) below it."""
    for _ in range(3):  # a process forking while it is killed leaves a new child behind
        stray = descendants(proc.pid)
        for pid in stray:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if not stray:
            break
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _last_line(tail: str) -> str:
    lines = [ln.strip() for ln in tail.splitlines() if ln.strip()]
    return lines[-1][:200] if lines else ""


def _read_json(path: str) -> Optional[Dict[str, Any]]:
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def _steps_made(result_path: str) -> int:
    try:
        with open(result_path + ".steps", encoding="utf-8") as fh:
            return int(fh.read() or 0)
    except (OSError, ValueError):
        return 0


def _no_result_message(returncode: int, tail: str) -> str:
    last = _last_line(tail)
    said = f"; last output: {last}" if last else ""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        hint = " (out of memory?)" if -returncode == signal.SIGKILL else ""
        return f"the script was killed by {name}{hint} before the probe finished{said}"
    return (f"the script ended abruptly with exit status {returncode} and no probe result "
            f"(os._exit() or a crash in native code){said}")


def _child_command(path: str, steps: int, seed: int, device: str, curvature: bool, iterations: int,
                   memory_limit_mb: Optional[int], result: str, script_args: Sequence[str]) -> List[str]:
    cmd = [sys.executable, "-m", "rnnlint.runtime._child", "--result", result, "--steps", str(steps),
           "--seed", str(seed), "--device", device, "--hessian-iterations", str(iterations)]
    if curvature:
        cmd.append("--curvature")
    if memory_limit_mb:
        cmd += ["--memory-limit-mb", str(memory_limit_mb)]
    return cmd + ["--", path] + list(script_args)


def _child_env(device: str, seed: int) -> Dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (PACKAGE_ROOT, env.get("PYTHONPATH", "")) if p)
    env.setdefault("PYTHONHASHSEED", str(seed))  # set and dict orders repeat from run to run
    # Idle OpenMP threads sleep instead of spinning. Results and parallelism are unchanged, but on
    # a busy machine spinning threads made each step of a small LSTM 5x slower (benchmarks/).
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""  # scripts that pick "cuda if available" fall back to the CPU
    return env


def run_script(path: str, script_args: Sequence[str] = (), steps: int = 20, timeout: float = 120.0,
               device: str = "auto", seed: int = 0, curvature: bool = False, plots_dir: Optional[str] = None,
               *, thresholds: Optional[Union[Thresholds, Mapping[str, Any]]] = None,
               memory_limit_mb: Optional[int] = None) -> ScriptResult:
    """Run `python path *script_args` for `steps` optimizer steps under measurement.

    memory_limit_mb caps the child's address space (RLIMIT_AS) at what the harness has mapped
    when the script starts plus this many MB.
    """
    limits = Thresholds.from_any(thresholds)
    started = time.perf_counter()
    result = ScriptResult(path)
    if device not in ("cpu", "cuda", "auto"):
        result.errors.append(FileError(path, f"unknown device {device!r} (cpu, cuda or auto)", kind="runtime"))
        return result
    if not os.path.isfile(path):
        result.errors.append(FileError(path, "no such file: runtime mode runs a Python training script",
                                       kind="read"))
        return result
    workdir = tempfile.mkdtemp(prefix="rnnlint-probe-")
    result_path = os.path.join(workdir, "result.json")
    try:
        record, timed_out = _run_child(result, path, script_args, steps, timeout, device, seed, curvature,
                                       limits.hessian_iterations, memory_limit_mb, result_path)
        if timed_out:
            made = _steps_made(result_path)
            result.errors.append(FileError(path, f"timed out after {timeout:g} s with {made} of {steps} optimizer "
                                                 "steps made (an endless loop, or a slow script: raise --timeout "
                                                 "or lower --steps)", kind="runtime"))
        elif record is None:
            result.errors.append(FileError(path, _no_result_message(result.returncode or 0, result.output_tail),
                                           kind="runtime"))
        else:
            _interpret(result, record, limits, plots_dir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    result.seconds = time.perf_counter() - started
    if not result.text:
        result.text = "\n".join(f"{e.path}: {e.message}" for e in result.errors)
    return result


def _run_child(result: ScriptResult, path: str, script_args: Sequence[str], steps: int, timeout: float,
               device: str, seed: int, curvature: bool, iterations: int, memory_limit_mb: Optional[int],
               result_path: str) -> tuple:
    cmd = _child_command(path, steps, seed, device, curvature, iterations, memory_limit_mb, result_path,
                         script_args)
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env=_child_env(device, seed), start_new_session=True)
    tail = _Tail(proc.stdout)
    timed_out = False
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
    except KeyboardInterrupt:
        _kill_group(proc)
        proc.wait()
        raise
    finally:
        _kill_group(proc)  # also reaps whatever the script forked or left running
        proc.wait()
        result.output_tail = tail.text(wait=2.0)
        if proc.stdout is not None:
            proc.stdout.close()
    result.returncode = proc.returncode
    return (None if timed_out else _read_json(result_path)), timed_out


def _interpret(result: ScriptResult, record: Dict[str, Any], limits: Thresholds, plots_dir: Optional[str]) -> None:
    path = result.path
    measured = record.get("measurements") or None
    if record.get("status") != "ok":
        result.errors.append(FileError(path, record.get("message", "the probe failed"), line=record.get("line") or 0,
                                       column=1 if record.get("line") else 0, kind=record.get("kind", "runtime")))
    if not measured or not measured.get("steps") or not measured.get("layers"):
        return
    result.measurements = measured
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            source = fh.read().splitlines()
    except OSError:
        source = None
    result.findings = evaluate(measured, limits, Locator(path, 1, source))
    text = render(measured, result.findings, f"rnnlint --runtime {path}")
    if record.get("note"):
        text += f"\n  note: {record['note']}"
    result.text = "\n".join([text] + [f"  error: {e.message}" for e in result.errors])
    if plots_dir:
        from rnnlint.runtime.plots import write_plots

        stem = os.path.splitext(os.path.basename(path))[0]
        try:
            result.plots = write_plots(measured, plots_dir, prefix=f"{stem}_")
        except ImportError:
            result.errors.append(FileError(path, "--plots needs matplotlib: pip install 'rnnlint[runtime]'",
                                           kind="runtime"))
