"""The resident server: libcst, the rules and the reporters loaded once, one fork per request.

`python -m rnnlint.server --socket PATH` (started by `rnnlint server start` or by a client
with RNNLINT_SERVER=auto) listens on a Unix socket in a 0700 directory of the user. For
each request it forks a worker that takes the client's stdin/stdout/stderr descriptors
(passed over the socket), working directory, environment and umask, runs the command line
as `rnnlint` would, and reports its exit code. Workers share nothing with each other or
with later requests: each is a fresh copy of the loaded server, so no state leaks between
runs. A worker first tells the client its pid (so Ctrl-C in the client reaches it) and
starts only on the client's go: a client that stopped waiting and checks by itself is never
answered twice.

The server answers only clients of its own user (SO_PEERCRED where the platform has it),
and only while its build stamp is the one it started with: after rnnlint is edited or
reinstalled it refuses (the client runs the check itself) and exits. It exits after
`--idle-timeout` seconds without a request (default 30 minutes), on SIGTERM, or on
`rnnlint server stop`, and removes its socket.
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import os
import signal
import socket
import struct
import sys
import time
import traceback
from typing import List, Optional

from rnnlint.build import compute as compute_stamp
from rnnlint.build import stamp
from rnnlint.client import FORWARDED, connect

DEFAULT_IDLE_TIMEOUT = 1800.0
_MAX_REQUEST = 4 << 20


def preload() -> None:
    """Import what a check can need, so that a worker starts with all of it in memory."""
    import libcst

    import rnnlint.baseline  # noqa: F401
    import rnnlint.cache  # noqa: F401
    import rnnlint.cli  # noqa: F401
    import rnnlint.config  # noqa: F401
    import rnnlint.discovery  # noqa: F401
    import rnnlint.engine  # noqa: F401
    import rnnlint.fingerprint  # noqa: F401
    import rnnlint.fixes  # noqa: F401
    import rnnlint.notebooks  # noqa: F401
    import rnnlint.runner  # noqa: F401
    from rnnlint.reporters import get_reporter
    from rnnlint.rules import load_rules

    load_rules()
    for name in ("text", "json", "github", "sarif"):
        get_reporter(name)
    for optional in ("nbformat", "rich.console", "rich.text", "rich.syntax", "rich.progress"):
        try:
            __import__(optional)
        except ImportError:  # pragma: no cover - dependencies of the package
            pass
    libcst.parse_module("import torch\n")
    _warm_up()


# A small training script in each framework: checking it once before serving fills the lazy
# caches (regular expressions, libcst's per-class tables, typing and click internals) in the
# server, so that every forked worker starts with them instead of rebuilding them (a cold
# worker took twice as long as a warm one on a 300-line file).
_WARM_UP_SCRIPT = '''\
import argparse
import numpy as np
import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F
from sklearn.preprocessing import StandardScaler
from torch.nn.utils.rnn import pack_padded_sequence, pad_sequence
from torch.optim.lr_scheduler import ReduceLROnPlateau
from torch.utils.data import DataLoader, TensorDataset

parser = argparse.ArgumentParser()
parser.add_argument("--hidden", type=int, default=64)
parser.add_argument("--dropout", type=float, default=0.2)
args = parser.parse_args()
frame = pd.read_csv("series.csv")
values = StandardScaler().fit_transform(frame[["a", "b"]].values)
windows = np.stack([values[i:i + 24] for i in range(len(values) - 24)])
x_train, x_test = windows[:800], windows[800:]


class Forecaster(nn.Module):
    def __init__(self, hidden, dropout, layers=1):
        super().__init__()
        self.lstm = nn.LSTM(2, hidden, num_layers=layers, dropout=dropout, batch_first=True)
        self.head = nn.Linear(hidden, 1)

    def forward(self, x, lengths=None):
        h0 = torch.zeros(1, x.size(0), self.lstm.hidden_size)
        out, (h_n, c_n) = self.lstm(x, (h0, h0))
        return self.head(F.dropout(out[:, -1], 0.1))


model = Forecaster(args.hidden, args.dropout)
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
scheduler = ReduceLROnPlateau(optimizer, factor=0.1, patience=2)
loader = DataLoader(TensorDataset(torch.tensor(x_train, dtype=torch.float32)), batch_size=32, shuffle=True)
for epoch in range(20):
    model.train()
    total = 0
    for (xb,) in loader:
        optimizer.zero_grad()
        loss = F.mse_loss(model(xb), xb[:, -1, :1])
        loss.backward()
        optimizer.step()
        total += loss
    model.eval()
    with torch.no_grad():
        val = F.mse_loss(model(torch.tensor(x_test, dtype=torch.float32)), torch.zeros(1))
    scheduler.step(val)

from tensorflow import keras

net = keras.Sequential([keras.layers.LSTM(32, return_sequences=True), keras.layers.GRU(16),
                        keras.layers.Dense(1), keras.layers.Dropout(0.2)])
net.compile(optimizer="adam", loss="mse")
net.fit(x_train, x_train[:, -1, 0], epochs=10, validation_data=(x_test, x_test[:, -1, 0]),
        callbacks=[keras.callbacks.EarlyStopping(patience=2), keras.callbacks.ReduceLROnPlateau(patience=3)])
'''


def _warm_up() -> None:
    """Run the whole command line on _WARM_UP_SCRIPT once, output discarded."""
    import contextlib
    import tempfile

    from rnnlint.cli import main

    with tempfile.TemporaryDirectory(prefix="rnnlint-warm-up-") as folder:
        script = os.path.join(folder, "train.py")
        with open(script, "w", encoding="utf-8") as handle:
            handle.write(_WARM_UP_SCRIPT)
        saved = sys.argv
        sink = io.StringIO()
        for output in ("text", "json"):
            sys.argv = ["rnnlint", "check", "--no-cache", "--no-config", "--format", output, script]
            try:
                with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
                    main()
            except SystemExit:
                pass
            except Exception:  # noqa: BLE001 - a warm-up failure must not stop the server
                traceback.print_exc()
        sys.argv = saved


class Server:
    def __init__(self, path: str, idle_timeout: float) -> None:
        self.path = path
        self.idle_timeout = idle_timeout
        self.build = stamp()
        self.started = time.time()
        self.requests = 0
        self.listener: Optional[socket.socket] = None
        self.inode: Optional[int] = None

    # -- life cycle ---------------------------------------------------------------------

    def bind(self) -> bool:
        """Listen on the socket path; False if a live server already holds it. A lock file
        serialises servers started at the same moment (RNNLINT_SERVER=auto in parallel hooks)."""
        import fcntl

        with open(self.path[: -len(".sock")] + ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if _alive(self.path):
                return False
            try:
                os.unlink(self.path)  # left by a server that was killed
            except FileNotFoundError:
                pass
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            listener.bind(self.path)
            os.chmod(self.path, 0o600)
            listener.listen(64)
        listener.settimeout(self.idle_timeout)
        self.listener = listener
        self.inode = os.stat(self.path).st_ino
        return True

    def close(self) -> None:
        if self.listener is not None:
            self.listener.close()
            self.listener = None
        try:  # only our own socket: a newer server may have taken the path
            if os.stat(self.path).st_ino == self.inode:
                os.unlink(self.path)
        except OSError:
            pass

    def serve(self) -> None:
        assert self.listener is not None
        while True:
            try:
                conn, _ = self.listener.accept()
            except socket.timeout:
                return
            except InterruptedError:  # pragma: no cover - PEP 475 retries
                continue
            try:
                if not self.handle(conn):
                    return
            except Exception:  # noqa: BLE001 - one bad request never stops the server
                traceback.print_exc()
            finally:
                conn.close()

    # -- one request ----------------------------------------------------------------------

    def handle(self, conn: socket.socket) -> bool:
        """Answer one connection; False when the server should stop."""
        conn.settimeout(5.0)
        if not _same_user(conn):
            return True
        request, fds = _receive(conn)
        try:
            op = request.get("op")
            if op == "ping":
                _reply(conn, {"pid": os.getpid(), "build": self.build, "requests": self.requests,
                              "uptime": round(time.time() - self.started, 1), "socket": self.path,
                              "idle_timeout": self.idle_timeout})
                return True
            if op == "stop":
                _reply(conn, {"stopping": os.getpid()})
                return False
            if compute_stamp() != self.build:
                _reply(conn, {"refused": "rnnlint changed since this server started"})
                return False
            argv = request.get("argv")
            if op != "run" or len(fds) != 3 or not isinstance(argv, list) or not argv or argv[0] not in FORWARDED:
                _reply(conn, {"refused": "not a request this server runs"})
                return True
            self.requests += 1
            pid = os.fork()
            if pid == 0:  # pragma: no cover - the worker; its behaviour is tested end to end
                _worker(self.listener, conn, fds, request)
            return True
        finally:
            for fd in fds:
                os.close(fd)


def _same_user(conn: socket.socket) -> bool:
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:  # pragma: no cover - macOS: the 0700 directory is the guard
        return True
    try:
        creds = conn.getsockopt(socket.SOL_SOCKET, option, struct.calcsize("3i"))
    except OSError:  # pragma: no cover
        return False
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid == os.getuid()


def _receive(conn: socket.socket):  # type: ignore[no-untyped-def]
    data, fds, _flags, _addr = socket.recv_fds(conn, 4, 3)
    if len(data) < 4:
        data += _exactly(conn, 4 - len(data))
    size = int.from_bytes(data, "big")
    if size > _MAX_REQUEST:
        for fd in fds:
            os.close(fd)
        raise ValueError(f"request of {size} bytes")
    try:
        request = json.loads(_exactly(conn, size).decode("utf-8", "surrogateescape"))
    except Exception:
        for fd in fds:
            os.close(fd)
        raise
    return (request if isinstance(request, dict) else {}), list(fds)


def _exactly(conn: socket.socket, size: int) -> bytes:
    chunks: List[bytes] = []
    while size:
        chunk = conn.recv(min(size, 1 << 16))
        if not chunk:
            raise ConnectionError("client went away")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _reply(conn: socket.socket, message: dict) -> None:
    conn.sendall(json.dumps(message).encode() + b"\n")


def _worker(listener, conn: socket.socket, fds: List[int], request: dict) -> None:  # type: ignore[no-untyped-def]
    """In the forked worker: become the client's process, run the command, report, exit."""
    code = 2
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        if listener is not None:
            listener.close()
        conn.settimeout(None)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
        for fd in fds:
            if fd > 2:
                os.close(fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update({str(k): str(v) for k, v in request.get("env", {}).items()})
        os.umask(int(request.get("umask", 0o022)))
        _reopen_streams(request.get("streams"))
        _reply(conn, {"pid": os.getpid()})
        if conn.recv(1) != b"g":  # the client gave up waiting and checks by itself: stay silent
            os._exit(0)
        sys.argv = ["rnnlint", *request["argv"]]
        from rnnlint.cli import main

        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            if not isinstance(exc.code, (int, type(None))):
                sys.stderr.write(f"{exc.code}\n")
    except BaseException:  # noqa: BLE001 - reported like an uncaught error, exit 2
        traceback.print_exc()
        code = 2
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001 - a closed pipe
                pass
        try:
            _reply(conn, {"exit": code})
        except OSError:
            pass
        os._exit(0)


def _reopen_streams(settings) -> None:  # type: ignore[no-untyped-def]
    """sys.stdin/stdout/stderr over the client's descriptors, with the client's encoding."""
    if not isinstance(settings, list) or len(settings) != 3:
        settings = [["utf-8", "strict", False]] * 3
    for fd, name, (encoding, errors, line_buffering) in zip((0, 1, 2), ("stdin", "stdout", "stderr"), settings):
        mode = "rb" if fd == 0 else "wb"
        raw = open(fd, mode, buffering=-1, closefd=False)
        stream = io.TextIOWrapper(raw, encoding=encoding, errors=errors,
                                  line_buffering=bool(line_buffering) or fd == 2, write_through=fd == 2)
        setattr(sys, name, stream)
        setattr(sys, f"__{name}__", stream)


def _alive(path: str) -> bool:
    probe = connect(path)
    if probe is None:
        return False
    probe.close()
    return True


def run(path: str, idle_timeout: float) -> int:
    server = Server(path, idle_timeout)
    if _alive(path):  # before the costly preload: the common case of a second start
        print(f"rnnlint server: already running on {path}", file=sys.stderr)
        return 0
    preload()
    if not server.bind():
        print(f"rnnlint server: already running on {path}", file=sys.stderr)
        return 0
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # workers are reaped by the kernel

    def terminate(signum, frame):  # type: ignore[no-untyped-def]
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGINT, terminate)
    gc.collect()
    gc.freeze()  # the workers never touch the loaded objects' pages for collection
    print(f"rnnlint server: pid {os.getpid()} listening on {path}", file=sys.stderr, flush=True)
    try:
        server.serve()
    finally:
        server.close()
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rnnlint.server")
    parser.add_argument("--socket", required=True)
    parser.add_argument("--idle-timeout", type=float, default=DEFAULT_IDLE_TIMEOUT)
    args = parser.parse_args(argv)
    return run(args.socket, args.idle_timeout)


if __name__ == "__main__":
    sys.exit(main())
