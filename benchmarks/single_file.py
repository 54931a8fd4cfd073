"""Benchmark: checking one training script, process start included, and the analysis cost
relative to libcst's parse. Prints figures and ratios measured in one run; asserts nothing
(timings belong here, not in the test suite).

    python benchmarks/single_file.py [FILE ...]

Rows, for each file (medians of 7 runs, whole process, `python -m rnnlint check -q`):
- python itself, and python + `import libcst`: the floor of any libcst-based linter;
- in-process, no cache: the first check of a file nobody checked before;
- in-process, cache hit: the same file unchanged (no libcst import);
- through a resident server (`rnnlint server start`), no cache: the client hands the check to
  a forked worker that has libcst and the rules loaded;
- through the server, cache hit.
The default files are the fixtures closest to 300 and to 200 lines.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT = ROOT / "fixtures"
TARGET = 0.300


def pick_files() -> list:
    if len(sys.argv) > 1:
        return [Path(p).resolve() for p in sys.argv[1:]]
    candidates = sorted(DEFAULT.glob("*.py"))
    lines = {p: len(p.read_text().splitlines()) for p in candidates}
    chosen = []
    for want in (300, 200):
        best = min(candidates, key=lambda p: abs(lines[p] - want))
        if best not in chosen:
            chosen.append(best)
    return chosen


def wall(cmd, env, repeat=7) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=str(ROOT))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def heavy_imports(cmd, env) -> str:
    stderr = subprocess.run([cmd[0], "-X", "importtime", *cmd[1:]], capture_output=True, text=True,
                            env=env, cwd=str(ROOT)).stderr
    found = sorted({ln.split("|")[-1].strip().split(".")[0] for ln in stderr.splitlines()
                    if ln.split("|")[-1].strip().split(".")[0] in ("torch", "tensorflow", "keras")})
    return ", ".join(found) or "none"


def main() -> None:
    # The interpreter writes no bytecode under PYTHONDONTWRITEBYTECODE; an installed wheel has it.
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "rnnlint")], stdout=subprocess.DEVNULL)
    py = sys.executable
    work = Path(tempfile.mkdtemp(prefix="rnnlint-bench-", dir="/tmp"))
    base = dict(os.environ)
    base.pop("RNNLINT_SERVER", None)
    base["RNNLINT_SERVER_DIR"] = str(work / "s")
    base["RNNLINT_CACHE_DIR"] = str(work / "cache")
    local = dict(base, RNNLINT_SERVER="off")
    try:
        t_python = wall([py, "-c", "pass"], local)
        t_libcst = wall([py, "-c", "import libcst"], local)
        print(f"python -c pass                                  {t_python:6.3f} s")
        print(f"python -c 'import libcst'                       {t_libcst:6.3f} s")
        served = subprocess.run([py, "-m", "rnnlint", "server", "start"], env=base, capture_output=True, text=True)
        if served.returncode != 0:
            print(f"(no server: {served.stderr.strip() or served.stdout.strip()})")
        for target in pick_files():
            lines = len(target.read_text().splitlines())
            name = target.relative_to(ROOT) if target.is_relative_to(ROOT) else target
            cold = [py, "-m", "rnnlint", "check", "-q", "--no-cache", str(target)]
            warm = [py, "-m", "rnnlint", "check", "-q", str(target)]
            print(f"\n{name} ({lines} lines), whole process; target < {TARGET:.3f} s")
            rows = [("in-process, no cache", cold, local), ("in-process, cache hit", warm, local)]
            if served.returncode == 0:
                rows += [("resident server, no cache", cold, base), ("resident server, cache hit", warm, base)]
            for label, cmd, env in rows:
                t = wall(cmd, env)
                mark = "under" if t < TARGET else "over"
                print(f"  {label:<30} {t:6.3f} s  ({t / t_python:4.1f}x python itself, {mark} target)")
            print(f"  torch/tensorflow/keras imported: in-process {heavy_imports(cold, local)}"
                  + (f", server client {heavy_imports(cold, base)}" if served.returncode == 0 else ""))
    finally:
        subprocess.run([py, "-m", "rnnlint", "server", "stop"], env=base, capture_output=True)
        shutil.rmtree(work, ignore_errors=True)

    # In-process: analysis (facts + rules + positions) against parse-only, same files, one run.
    import libcst as cst

    from rnnlint.config import Config
    from rnnlint.engine import check_source

    sources = [p.read_text() for p in sorted(DEFAULT.rglob("*.py"))]
    config = Config()
    start = time.perf_counter()
    for _ in range(3):
        for text in sources:
            cst.parse_module(text)
    t_parse = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(3):
        for text in sources:
            check_source("bench.py", text, config)
    t_full = time.perf_counter() - start
    print(f"\nfixtures: {len(sources)} files, parse-only {t_parse:.3f} s, full check {t_full:.3f} s, "
          f"ratio {t_full / t_parse:.2f}x parse (budget 2.5x)")


if __name__ == "__main__":
    main()
