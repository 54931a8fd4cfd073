"""The `rnnlint` command's entry point, and the client of the resident server.

Importing libcst costs 0.2-0.3 s on a small machine, more than the whole analysis of a
300-line file. When a server of this very build runs (`rnnlint server start`, or
RNNLINT_SERVER=auto), `rnnlint check` hands its arguments, working directory, environment
and its stdin/stdout/stderr descriptors to it, and the server forks a worker that already
has libcst and every rule loaded. The worker writes straight to this process's terminal or
pipes, so output, colour and exit code are those of an in-process run. Everything else, and
every case where the server cannot be used, runs in this process as before.

This module imports only the standard library (no typer, rich or libcst): it is the
latency of every pre-commit call.

RNNLINT_SERVER: unset (use a running server, never start one), `auto` (also start one in
the background when none runs), `off` (never use one).
"""

from __future__ import annotations

import json
import os
import socket
import sys
from typing import List, Optional

#: Commands a server may run. `--runtime` imports torch and runs user code: never forwarded.
FORWARDED = ("check",)
_OFF = ("off", "0", "no", "false")


def server_dir() -> Optional[str]:
    """The per-user directory of server sockets, created 0700; None if it is not safely ours."""
    if not (hasattr(os, "fork") and hasattr(socket, "AF_UNIX") and hasattr(socket, "send_fds")):
        return None
    base = os.environ.get("RNNLINT_SERVER_DIR")
    if not base:
        runtime = os.environ.get("XDG_RUNTIME_DIR")
        if runtime and os.path.isabs(runtime):
            base = os.path.join(runtime, "rnnlint")
        else:
            base = os.path.join(os.environ.get("TMPDIR") or "/tmp", f"rnnlint-{os.getuid()}")
    try:
        os.makedirs(base, mode=0o700, exist_ok=True)
        info = os.lstat(base)
    except OSError:
        return None
    import stat

    # Someone else's directory, a symlink, or one others can write to: never trust its sockets.
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o022:
        return None
    return base


def socket_path() -> Optional[str]:
    """The socket of the server for this build and this interpreter (a server of another build
    or another Python has another path, so it is never asked)."""
    base = server_dir()
    if base is None:
        return None
    import hashlib

    from rnnlint.build import stamp

    key = f"{stamp()}\n{os.path.realpath(sys.executable)}\n{sys.version}"
    path = os.path.join(base, hashlib.sha256(key.encode()).hexdigest()[:16] + ".sock")
    return path if len(path.encode()) < 100 else None  # sun_path holds 104-108 bytes


def connect(path: str, timeout: float = 2.0) -> Optional[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
    except OSError:
        sock.close()
        return None
    return sock


def send_request(sock: socket.socket, request: dict, fds: List[int]) -> None:
    """A 4-byte length with the descriptors attached, then the JSON request."""
    payload = json.dumps(request).encode("utf-8", "surrogateescape")
    socket.send_fds(sock, [len(payload).to_bytes(4, "big")], fds)
    sock.sendall(payload)


def ask(op: str, timeout: float = 2.0) -> Optional[dict]:
    """A control request (ping, stop) to this build's server; None when none answers."""
    path = socket_path()
    sock = connect(path, timeout) if path else None
    if sock is None:
        return None
    try:
        send_request(sock, {"op": op}, [])
        line = sock.makefile("rb").readline()
        return json.loads(line) if line else None
    except (OSError, ValueError):
        return None
    finally:
        sock.close()


def _stream_settings(stream) -> list:  # type: ignore[no-untyped-def]
    return [getattr(stream, "encoding", None) or "utf-8", getattr(stream, "errors", None) or "strict",
            bool(getattr(stream, "line_buffering", False))]


def forward(argv: List[str]) -> Optional[int]:
    """Run `rnnlint ARGV` in this build's server and return its exit code; None when it must
    run here (no server, a command the server does not take, or the server went away before
    the worker started, so nothing has been written yet)."""
    mode = os.environ.get("RNNLINT_SERVER", "").strip().lower()
    if mode in _OFF or not argv or argv[0] not in FORWARDED or "--runtime" in argv:
        return None
    path = socket_path()
    if path is None:
        return None
    sock = connect(path, timeout=5.0)
    if sock is None:
        if mode == "auto":
            start_detached(path)
        return None
    try:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        request = {
            "op": "run",
            "argv": argv,
            "cwd": os.getcwd(),
            "env": dict(os.environ),
            "umask": _umask(),
            "streams": [_stream_settings(s) for s in (sys.stdin, sys.stdout, sys.stderr)],
        }
        send_request(sock, request, [0, 1, 2])
        replies = sock.makefile("rb")
        first = json.loads(replies.readline() or b"{}")
        pid = first.get("pid")
        if not pid:
            return None  # refused (another build answered, or the server is stopping)
        sock.sendall(b"g")  # from here on the worker owns the output
    except (OSError, ValueError):
        sock.close()
        return None
    sock.settimeout(None)
    return _wait(replies, sock, pid)


def _wait(replies, sock: socket.socket, pid: int) -> int:  # type: ignore[no-untyped-def]
    """The worker's exit code. Ctrl-C here reaches the worker as SIGINT (it is not in this
    terminal's process group), which stops the way an in-process run does."""
    import signal

    while True:
        try:
            line = replies.readline()
            break
        except KeyboardInterrupt:
            try:
                os.kill(pid, signal.SIGINT)
            except OSError:
                line = b""
                break
    sock.close()
    try:
        return int(json.loads(line)["exit"])
    except (ValueError, KeyError, TypeError):
        sys.stderr.write("rnnlint: error: the rnnlint server's worker ended without an exit status\n")
        return 2


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def start_detached(path: str, idle_timeout: Optional[float] = None) -> int:
    """Start a server for `path` in its own session, detached from this terminal; its pid."""
    import subprocess

    command = [sys.executable, "-m", "rnnlint.server", "--socket", path]
    if idle_timeout is not None:
        command += ["--idle-timeout", str(idle_timeout)]
    log = open(path[: -len(".sock")] + ".log", "ab")
    try:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                   cwd="/", start_new_session=True, close_fds=True)
    finally:
        log.close()
    return process.pid


def main() -> None:
    code = forward(sys.argv[1:])
    if code is not None:
        sys.exit(code)
    from rnnlint.cli import main as run_here

    run_here()
