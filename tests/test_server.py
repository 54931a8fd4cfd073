"""The resident server (rnnlint/server.py) and its client (rnnlint/client.py).

A forwarded `rnnlint check` must be indistinguishable from an in-process one: same stdout,
stderr and exit code, the client's working directory, config and environment. Every test
uses its own socket directory, so a server a developer runs is never touched.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, Iterator, List, Optional

import pytest

from lintutil import ROOT

pytestmark = pytest.mark.skipif(
    not (hasattr(os, "fork") and hasattr(socket, "send_fds")),
    reason="the server needs fork and descriptor passing over Unix sockets",
)

BUGGY = '''\
import torch
import torch.nn as nn


class Forecaster(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(8, 32, batch_first=True, dropout=0.2)
        self.head = nn.Linear(32, 1)

    def forward(self, x):
        out, _ = self.lstm(x)
        return self.head(out[:, -1])


model = Forecaster()
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
for x, y in loader:
    optimizer.zero_grad()
    loss = nn.functional.mse_loss(model(x), y)
    loss.backward()
    optimizer.step()
'''


def _short_dir() -> Path:
    # Unix socket paths hold about 100 bytes: pytest's tmp_path can be longer than that.
    return Path(tempfile.mkdtemp(prefix="rs", dir="/tmp"))


def _env(server_dir: Path, **extra: str) -> Dict[str, str]:
    env = dict(os.environ)
    env.pop("RNNLINT_SERVER", None)
    env["RNNLINT_SERVER_DIR"] = str(server_dir)
    env.update(extra)
    return env


def rnnlint(args: List[str], env: Dict[str, str], cwd: Path = ROOT, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rnnlint", *args], cwd=str(cwd), env=env,
                          capture_output=True, text=True, timeout=300, **kwargs)


def ping(env: Dict[str, str]) -> Optional[dict]:
    """The server's status as the client sees it, asked from a fresh process with `env`."""
    code = "import json; from rnnlint.client import ask; print(json.dumps(ask('ping')))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    return json.loads(out.stdout)


def served(env: Dict[str, str]) -> int:
    status = ping(env)
    assert status is not None, "no server answered"
    return status["requests"]


def wait_for(predicate, timeout: float = 30.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


@pytest.fixture(scope="module")
def server() -> Iterator[Dict[str, str]]:
    directory = _short_dir()
    env = _env(directory)
    started = rnnlint(["server", "start", "--idle-timeout", "600"], env)
    assert started.returncode == 0, started.stderr
    assert "server started" in started.stdout
    try:
        yield env
    finally:
        rnnlint(["server", "stop"], env)
        shutil.rmtree(directory, ignore_errors=True)


def in_process(env: Dict[str, str]) -> Dict[str, str]:
    return dict(env, RNNLINT_SERVER="off")


@pytest.mark.parametrize(
    "args",
    [
        ["check", "--no-cache", "fixtures/"],
        ["check", "--no-cache", "-q", "fixtures/projects/sentiment_lstm"],
        ["check", "--no-cache", "--format", "json", "fixtures/"],
        ["check", "--no-cache", "--format", "github", "fixtures/notebooks"],
        ["check", "--no-cache", "--format", "sarif", "fixtures/torch_wordlm_lstm_bptt_nodetach.py"],
        ["check", "--no-cache", "fixtures/keras_sensor_gru_clean.py"],
        ["check", "--no-cache", "no/such/file.py"],
        ["check", "--select", "RNN999", "fixtures/"],
        ["check", "--no-cache", "--fail-on", "error", "-j", "2", "fixtures/"],
    ],
    ids=["text", "quiet-project", "json", "github-notebooks", "sarif", "clean", "missing", "bad-select", "jobs"],
)
def test_forwarded_run_is_identical_to_in_process(server: Dict[str, str], args: List[str]) -> None:
    if not (ROOT / args[-1]).exists() and args[-1] not in ("no/such/file.py", "fixtures/"):
        pytest.fail(f"fixture path {args[-1]} is gone")
    before = served(server)
    forwarded = rnnlint(args, server)
    assert served(server) == before + 1, "the check did not go through the server"
    local = rnnlint(args, in_process(server))
    assert (forwarded.returncode, forwarded.stdout, forwarded.stderr) == (local.returncode, local.stdout, local.stderr)
    assert forwarded.returncode in (0, 1, 2)


def test_status_reports_a_running_server(server: Dict[str, str]) -> None:
    out = rnnlint(["server", "status"], server)
    assert out.returncode == 0
    assert f"pid {ping(server)['pid']}" in out.stdout


def test_client_cwd_config_environment_and_stdin_reach_the_worker(server: Dict[str, str]) -> None:
    project = Path(tempfile.mkdtemp(prefix="rnnlint-project-"))
    try:
        (project / "pyproject.toml").write_text('[tool.rnnlint]\nignore = ["RNN401"]\n')
        (project / "train.py").write_text(BUGGY)
        cache = project / "elsewhere-cache"
        env = dict(server, RNNLINT_CACHE_DIR=str(cache))
        before = served(server)
        forwarded = rnnlint(["check", "train.py"], env, cwd=project, input="ignored stdin\n")
        assert served(server) == before + 1
        assert forwarded.returncode == 1
        assert forwarded.stdout.startswith("train.py:22:5: RNN101 ")  # relative to the client's cwd
        assert "RNN401" not in forwarded.stdout  # the client's project config
        assert (cache / "CACHEDIR.TAG").is_file()  # the client's environment
        assert not (project / ".rnnlint_cache").exists()
        local = rnnlint(["check", "train.py"], dict(in_process(server), RNNLINT_CACHE_DIR=str(cache)), cwd=project)
        assert local.stdout == forwarded.stdout
    finally:
        shutil.rmtree(project, ignore_errors=True)


def test_fix_through_the_server_edits_the_clients_file(server: Dict[str, str]) -> None:
    project = Path(tempfile.mkdtemp(prefix="rnnlint-fix-"))
    try:
        (project / "train.py").write_text(BUGGY)
        before = served(server)
        out = rnnlint(["check", "--no-cache", "--no-config", "--fix", "--unsafe-fixes", "train.py"], server, cwd=project)
        assert served(server) == before + 1
        fixed = (project / "train.py").read_text()
        assert "clip_grad_norm_" in fixed, out.stderr
        assert "RNN101" not in out.stdout
    finally:
        shutil.rmtree(project, ignore_errors=True)


def test_output_file_is_written_relative_to_the_client(server: Dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text(BUGGY)
    out = rnnlint(["check", "--no-cache", "--format", "json", "-o", "report.json", "train.py"], server, cwd=tmp_path)
    assert out.returncode == 1
    report = json.loads((tmp_path / "report.json").read_text())
    assert sorted((f["code"], f["line"]) for f in report["findings"]) == [("RNN101", 22), ("RNN401", 8)]


def test_the_client_imports_neither_libcst_nor_the_cli(server: Dict[str, str]) -> None:
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "rnnlint", "check", "--no-cache",
         "fixtures/torch_wordlm_lstm_bptt_nodetach.py"],
        cwd=str(ROOT), env=server, capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 1 and "RNN507" in out.stdout
    imported = {line.split("|")[-1].strip() for line in out.stderr.splitlines() if line.startswith("import time:")}
    assert "rnnlint.client" in imported
    heavy = {name for name in imported if name.split(".")[0] in ("libcst", "typer", "click", "rich", "torch")}
    assert heavy == set() and "rnnlint.cli" not in imported


def test_ctrl_c_in_the_client_stops_the_worker(server: Dict[str, str], tmp_path: Path) -> None:
    for i in range(400):
        (tmp_path / f"train_{i}.py").write_text(BUGGY)
    before = served(server)
    client = subprocess.Popen(
        [sys.executable, "-m", "rnnlint", "check", "--no-cache", "-j", "1", str(tmp_path)],
        env=server, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert wait_for(lambda: served(server) > before, 10), "the check did not reach the server"
    assert client.poll() is None
    time.sleep(1.0)
    client.send_signal(signal.SIGINT)
    out, err = client.communicate(timeout=60)
    # 130 is the worker's own exit code for an interrupt: it stopped before reporting.
    assert client.returncode == 130, err
    assert "Found" not in out


def test_a_stale_socket_is_ignored(tmp_path: Path) -> None:
    directory = _short_dir()
    try:
        env = _env(directory)
        path = subprocess.run([sys.executable, "-c", "from rnnlint.client import socket_path; print(socket_path())"],
                              env=env, capture_output=True, text=True).stdout.strip()
        dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        dead.bind(path)  # a socket file nobody listens on: a server killed with SIGKILL
        dead.close()
        (tmp_path / "train.py").write_text(BUGGY)
        out = rnnlint(["check", "--no-cache", "--no-config", "train.py"], env, cwd=tmp_path)
        assert out.returncode == 1 and "RNN101" in out.stdout and "RNN401" in out.stdout
        assert ping(env) is None
        assert rnnlint(["server", "status"], env).returncode == 1
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def test_auto_mode_starts_a_server_and_idle_timeout_stops_it(tmp_path: Path) -> None:
    directory = _short_dir()
    try:
        env = _env(directory, RNNLINT_SERVER="auto")
        (tmp_path / "train.py").write_text(BUGGY)
        first = rnnlint(["check", "--no-cache", "--no-config", "train.py"], env, cwd=tmp_path)
        assert first.returncode == 1 and "RNN101" in first.stdout  # ran here while the server starts
        assert wait_for(lambda: ping(env) is not None), "RNNLINT_SERVER=auto started no server"
        second = rnnlint(["check", "--no-cache", "--no-config", "train.py"], env, cwd=tmp_path)
        assert served(env) == 1
        assert (second.returncode, second.stdout) == (first.returncode, first.stdout)
        assert rnnlint(["server", "stop"], env).stdout.startswith("rnnlint: server stopped")
        assert wait_for(lambda: ping(env) is None)

        started = rnnlint(["server", "start", "--idle-timeout", "1"], env)
        assert started.returncode == 0, started.stderr
        assert wait_for(lambda: not list(directory.glob("*.sock")), 20), "the idle server did not exit"
        assert rnnlint(["server", "status"], env).returncode == 1
        stopped = rnnlint(["server", "stop"], env)
        assert stopped.returncode == 0 and "no server running" in stopped.stdout
    finally:
        rnnlint(["server", "stop"], _env(directory))
        shutil.rmtree(directory, ignore_errors=True)


def test_server_off_never_forwards(server: Dict[str, str]) -> None:
    before = served(server)
    out = rnnlint(["check", "--no-cache", "fixtures/keras_sensor_gru_clean.py"], in_process(server))
    assert out.returncode == 0
    assert served(server) == before


def test_a_server_refuses_and_exits_once_its_rnnlint_changed(tmp_path: Path) -> None:
    """An edited or reinstalled rnnlint must never be answered by the old code in memory."""
    copy = tmp_path / "site"
    shutil.copytree(ROOT / "rnnlint", copy / "rnnlint", ignore=shutil.ignore_patterns("__pycache__", "runtime"))
    directory = _short_dir()
    try:
        env = _env(directory, PYTHONPATH=str(copy))
        started = rnnlint(["server", "start"], env, cwd=tmp_path)
        assert started.returncode == 0, started.stderr
        status = ping(env)
        assert status is not None and str(copy) not in status["socket"]
        path = status["socket"]
        with open(copy / "rnnlint" / "rules" / "rnn1_gradients.py", "a") as module:
            module.write("\n# edited\n")
        from rnnlint.client import connect, send_request

        sock = connect(path)
        assert sock is not None
        with sock:
            send_request(sock, {"op": "run", "argv": ["check", "x.py"], "cwd": str(tmp_path), "env": {}}, [0, 1, 2])
            answer = json.loads(sock.makefile("rb").readline())
        assert "refused" in answer
        assert wait_for(lambda: not os.path.exists(path), 20)
    finally:
        rnnlint(["server", "stop"], env)
        shutil.rmtree(directory, ignore_errors=True)


def test_servers_started_at_once_leave_exactly_one() -> None:
    """Parallel pre-commit hooks with RNNLINT_SERVER=auto can start several servers at the same
    moment: all but one must notice the other and exit."""
    directory = _short_dir()
    env = _env(directory)
    try:
        path = subprocess.run([sys.executable, "-c", "from rnnlint.client import socket_path; print(socket_path())"],
                              env=env, capture_output=True, text=True).stdout.strip()
        servers = [subprocess.Popen([sys.executable, "-m", "rnnlint.server", "--socket", path, "--idle-timeout", "60"],
                                    env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                   for _ in range(3)]
        assert wait_for(lambda: sum(s.poll() is not None for s in servers) == 2, 60)
        survivor = next(s for s in servers if s.poll() is None)
        status = ping(env)
        assert status is not None and status["pid"] == survivor.pid
        for s in servers:
            if s is not survivor:
                assert s.returncode == 0 and "already running" in s.stderr.read()
    finally:
        rnnlint(["server", "stop"], env)
        for s in servers:
            try:
                s.wait(timeout=20)
            except subprocess.TimeoutExpired:
                s.kill()
        shutil.rmtree(directory, ignore_errors=True)


def test_a_worker_whose_client_gave_up_writes_nothing(server: Dict[str, str]) -> None:
    """A client that stops waiting for the worker's pid checks in its own process; the worker
    must then stay silent, or the report would be printed twice."""
    from rnnlint.client import connect, send_request

    path = ping(server)["socket"]
    read_end, write_end = os.pipe()
    sock = connect(path)
    assert sock is not None
    try:
        request = {"op": "run", "argv": ["check", "--no-cache", "fixtures/torch_wordlm_lstm_bptt_nodetach.py"],
                   "cwd": str(ROOT), "env": dict(server), "umask": 0o022}
        send_request(sock, request, [0, write_end, write_end])
        assert "pid" in json.loads(sock.makefile("rb").readline())
    finally:
        sock.close()  # no go: the client gave up
        os.close(write_end)
    with os.fdopen(read_end, "rb") as output:
        assert output.read() == b""  # EOF once the worker exits, and nothing before it


def test_an_unsafe_socket_directory_is_never_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rnnlint.client import server_dir

    private = tmp_path / "private"
    monkeypatch.setenv("RNNLINT_SERVER_DIR", str(private))
    assert server_dir() == str(private)
    assert private.stat().st_mode & 0o777 == 0o700  # created private
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)  # anyone could plant a socket in it
    monkeypatch.setenv("RNNLINT_SERVER_DIR", str(shared))
    assert server_dir() is None
    link = tmp_path / "link"
    link.symlink_to(private)
    monkeypatch.setenv("RNNLINT_SERVER_DIR", str(link))
    assert server_dir() is None
