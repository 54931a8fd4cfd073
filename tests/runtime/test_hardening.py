"""Runtime mode against scripts that try to escape or confuse the probe: processes that leave
the process group, exceptions that cannot be printed, the memory bound through the CLI, and
the parent never importing the user's code. (Forks, os._exit, timeouts, Ctrl-C, the output
tail and the memory limit of the API are in test_scripts.py.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytest.importorskip("torch")

from runtime_support import BROKEN  # noqa: E402

from rnnlint.runtime import cli_bridge, run_script  # noqa: E402
from rnnlint.runtime.script import descendants  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def _alive(pid: int) -> bool:
    """Whether pid still runs (a zombie waiting for its reaper does not)."""
    status = Path(f"/proc/{pid}/status")
    try:
        return "State:\tZ" not in status.read_text()
    except OSError:
        return False


def _wait_for_pid(path: Path) -> int:
    for _ in range(100):
        if path.exists() and path.read_text().strip():
            return int(path.read_text())
        time.sleep(0.05)
    raise AssertionError(f"{path} was never written")


def _script(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "train.py"
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    return path


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="process trees are read from /proc")
def test_a_session_leader_is_killed_on_timeout(tmp_path):
    """os.setsid() takes a forked trainer out of the process group: killpg alone misses it."""
    pid_file = tmp_path / "escapee.pid"
    script = _script(tmp_path, f"""
        import os, time
        if os.fork() == 0:
            os.setsid()
            with open({str(pid_file)!r}, "w") as fh:
                fh.write(str(os.getpid()))
            while True:
                time.sleep(0.1)
        while True:
            time.sleep(0.1)
    """)
    result = run_script(str(script), timeout=15)
    (error,) = result.errors
    assert error.message.startswith("timed out after 15 s with 0 of 20 optimizer steps made")
    escapee = _wait_for_pid(pid_file)
    assert not _alive(escapee)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="process trees are read from /proc")
def test_a_double_forked_daemon_dies_with_the_probe(tmp_path):
    """fork, setsid, fork again, parent exits: the daemon is re-parented to the probe (a
    subreaper) rather than init, and killed when the probe ends normally."""
    pid_file = tmp_path / "daemon.pid"
    script = _script(tmp_path, f"""
        import os, time
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                with open({str(pid_file)!r}, "w") as fh:
                    fh.write(str(os.getpid()))
                while True:
                    time.sleep(0.1)
            os._exit(0)
        while not os.path.exists({str(pid_file)!r}):
            time.sleep(0.05)
        print("daemon started")
    """)
    result = run_script(str(script), timeout=60)
    (error,) = result.errors
    assert "finished without calling optimizer.step()" in error.message
    daemon = _wait_for_pid(pid_file)
    assert not _alive(daemon)


def test_an_exception_that_cannot_be_printed(tmp_path):
    script = _script(tmp_path, """
        class Unprintable(Exception):
            def __str__(self):
                raise RuntimeError("no text")

        def main():
            raise Unprintable()

        main()
    """)
    (error,) = run_script(str(script), timeout=60).errors
    assert error.message == "the script raised Unprintable before its first optimizer step"
    assert error.line == 7 and error.kind == "runtime"


def test_the_parent_never_imports_the_script(tmp_path):
    marker = tmp_path / "ran_in.pid"
    script = _script(tmp_path, f"""
        import os
        with open({str(marker)!r}, "w") as fh:
            fh.write(str(os.getpid()))
    """)
    modules = set(sys.modules)
    run_script(str(script), timeout=60)
    assert int(marker.read_text()) != os.getpid()
    assert set(sys.modules) - modules <= {m for m in sys.modules if m.startswith("rnnlint")}
    assert descendants(os.getpid()) == []  # and nothing of it is left running


def test_memory_limit_through_the_cli():
    proc = subprocess.run(
        [sys.executable, "-m", "rnnlint", "check", "--no-config", "--no-cache", "--format", "json", "--runtime",
         "--device", "cpu", "--memory-limit", "1024", "--timeout", "120", str(BROKEN / "memory_hog.py")],
        cwd=str(ROOT), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    data = json.loads(proc.stdout)
    runtime_errors = [e for e in data["errors"] if e["kind"] == "runtime"]
    assert len(runtime_errors) == 1
    assert runtime_errors[0]["message"].startswith("the script ran out of memory (")
    assert runtime_errors[0]["line"] == 13  # the torch.empty(...) reservation


def test_default_memory_limit_is_half_the_ram():
    if not os.path.exists("/proc/meminfo"):
        assert cli_bridge.default_memory_limit_mb() == 0
        return
    with open("/proc/meminfo", encoding="ascii") as fh:
        total_kb = int(next(line for line in fh if line.startswith("MemTotal:")).split()[1])
    assert cli_bridge.default_memory_limit_mb() == total_kb // 2048 > 0
