"""Benchmark: checking one training script, process start included, and the analysis cost
relative to libcst's parse. Prints figures and ratios measured in one run; asserts nothing
(timings belong here, not in the test suite).

    python benchmarks/single_file.py [FILE]
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT = ROOT / "fixtures"


def pick_file() -> Path:
    if len(sys.argv) > 1:
        return Path(sys.argv[1])
    candidates = sorted(DEFAULT.glob("*.py"), key=lambda p: -len(p.read_text().splitlines()))
    return candidates[0]


def wall(cmd, repeat=7) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    target = pick_file()
    lines = len(target.read_text().splitlines())
    py = sys.executable
    t_python = wall([py, "-c", "pass"])
    t_libcst = wall([py, "-c", "import libcst"])
    t_check = wall([py, "-m", "rnnlint", "check", "--no-config", "-q", str(target)])
    imports = subprocess.run(
        [py, "-X", "importtime", "-m", "rnnlint", "check", "--no-config", "-q", str(target)],
        capture_output=True, text=True,
    ).stderr
    heavy = sorted({ln.split("|")[-1].strip().split(".")[0] for ln in imports.splitlines()
                    if ln.split("|")[-1].strip().split(".")[0] in ("torch", "tensorflow", "keras")})

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

    print(f"file: {target.relative_to(ROOT) if target.is_relative_to(ROOT) else target} ({lines} lines)")
    print(f"python -c pass                      {t_python:6.3f} s")
    print(f"python -c 'import libcst'           {t_libcst:6.3f} s")
    print(f"rnnlint check FILE (whole process)  {t_check:6.3f} s   target < 0.300 s")
    print(f"  of which rnnlint beyond libcst    {t_check - t_libcst:6.3f} s")
    print(f"torch/tensorflow/keras imported:    {', '.join(heavy) or 'none'}")
    print(f"fixtures: {len(sources)} files, parse-only {t_parse:.3f} s, full check {t_full:.3f} s, "
          f"ratio {t_full / t_parse:.2f}x parse (budget 2.5x)")


if __name__ == "__main__":
    main()
