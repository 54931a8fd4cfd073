"""The pre-commit hook as a user gets it: a temporary git repository whose
.pre-commit-config.yaml names this project by `repo:` and `rev:` (the hook definition comes from
our .pre-commit-hooks.yaml, installed by pre-commit into its own virtualenv with
`language: python`), `pre-commit install`, then real `git commit`s.

The project is snapshotted into a throwaway git repository first, so the hook tested is the
working tree's (tracked and new files alike), not the last commit's. Installing the hook's
environment needs the package index, like any pre-commit user; it happens once per module.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Dict

import pytest
from lintutil import ROOT

pytestmark = pytest.mark.slow

if shutil.which("git") is None:
    pytest.skip("git is not installed", allow_module_level=True)
try:
    import pre_commit  # noqa: F401
except ImportError:
    pytest.skip("pre-commit is not installed (pip install -e '.[dev]')", allow_module_level=True)

# What building and installing rnnlint from a checkout needs (see pyproject.toml's build config).
PROJECT_FILES = ("pyproject.toml", "README.md", ".pre-commit-hooks.yaml", "rnnlint", "rules")

BUGGY = textwrap.dedent(
    """\
    import torch
    from torch import nn

    model = nn.GRU(8, 32)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for x, y in loader:
        opt.zero_grad()
        out, _ = model(x)
        loss = ((out[-1] - y) ** 2).mean()
        loss.backward()
        opt.step()
    """
)
CLEAN = BUGGY.replace("    opt.step()", "    nn.utils.clip_grad_norm_(model.parameters(), 1.0)\n    opt.step()")


def run(args, cwd: Path, env: Dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=str(cwd), env=env, capture_output=True, text=True, timeout=600)


def git(cwd: Path, env: Dict[str, str], *args: str) -> subprocess.CompletedProcess:
    proc = run(["git", *args], cwd, env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> Dict[str, str]:
    base = tmp_path_factory.mktemp("precommit-env")
    gitconfig = base / "gitconfig"
    gitconfig.write_text("[user]\n\tname = rnnlint test\n\temail = test@example.invalid\n"
                         "[init]\n\tdefaultBranch = main\n[commit]\n\tgpgsign = false\n")
    out = dict(os.environ)
    out.update({
        "GIT_CONFIG_GLOBAL": str(gitconfig),  # no user hooksPath, signing or templates
        "GIT_CONFIG_NOSYSTEM": "1",
        "PRE_COMMIT_HOME": str(base / "pre-commit-home"),  # one hook environment per test module
        "PRE_COMMIT_COLOR": "never",
    })
    for name in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "SKIP"):
        out.pop(name, None)
    return out


@pytest.fixture(scope="module")
def hook_repo(tmp_path_factory, env) -> Dict[str, str]:
    """This project's working tree as a git repository: (path, commit) for `repo:` and `rev:`."""
    snapshot = tmp_path_factory.mktemp("rnnlint-snapshot")
    for name in PROJECT_FILES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, snapshot / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(source, snapshot / name)
    git(snapshot, env, "init", "-q")
    git(snapshot, env, "add", "-A")
    git(snapshot, env, "commit", "-q", "-m", "snapshot")
    rev = git(snapshot, env, "rev-parse", "HEAD").stdout.strip()
    return {"repo": str(snapshot), "rev": rev}


@pytest.fixture()
def user_repo(tmp_path, env, hook_repo) -> Path:
    """A user's repository with rnnlint's hook configured and installed, config committed."""
    repo = tmp_path / "user"
    repo.mkdir()
    git(repo, env, "init", "-q")
    (repo / ".pre-commit-config.yaml").write_text(textwrap.dedent(
        f"""\
        repos:
          - repo: {hook_repo['repo']}
            rev: {hook_repo['rev']}
            hooks:
              - id: rnnlint
        """
    ))
    proc = run([sys.executable, "-m", "pre_commit", "install"], repo, env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    git(repo, env, "add", ".pre-commit-config.yaml")
    # The first commit has no Python file: the hook is skipped and the commit goes through.
    commit = run(["git", "commit", "-m", "add pre-commit config"], repo, env)
    assert commit.returncode == 0, commit.stdout + commit.stderr
    assert "rnnlint" in commit.stdout + commit.stderr and "(no files to check)Skipped" in commit.stdout + commit.stderr
    return repo


def commit(repo: Path, env: Dict[str, str], files: Dict[str, str]) -> subprocess.CompletedProcess:
    for name, text in files.items():
        (repo / name).write_text(text)
        git(repo, env, "add", name)
    return run(["git", "commit", "-m", "change"], repo, env)


def head_count(repo: Path, env: Dict[str, str]) -> int:
    return int(git(repo, env, "rev-list", "--count", "HEAD").stdout)


def test_buggy_file_blocks_the_commit_and_the_fix_goes_through(user_repo, env):
    proc = commit(user_repo, env, {"train.py": BUGGY})
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output
    assert "rnnlint" in output and "Failed" in output and "- exit code: 1" in output
    assert "train.py:11:5: RNN101" in output
    assert head_count(user_repo, env) == 1  # nothing was committed

    proc = commit(user_repo, env, {"train.py": CLEAN})
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "Passed" in output and "RNN101" not in output
    assert head_count(user_repo, env) == 2


def test_no_python_files_skips_the_hook(user_repo, env):
    proc = commit(user_repo, env, {"notes.txt": "not python\n"})
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "(no files to check)Skipped" in output
    assert head_count(user_repo, env) == 2


def test_a_clean_file_beside_an_unstaged_buggy_one_passes(user_repo, env):
    # pre-commit hands the hook only the staged files: the untracked buggy one is not checked.
    (user_repo / "scratch.py").write_text(BUGGY)
    proc = commit(user_repo, env, {"model.py": CLEAN})
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "Passed" in output
