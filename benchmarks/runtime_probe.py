"""Wall time of `rnnlint check --runtime` on a typical ~200-line training script, process start
included (the child imports torch, runs the script's own setup and 20 of its training steps).

    python benchmarks/runtime_probe.py [--steps 20] [--repeat 3] [--script PATH]

Target: under 30 s on a 2-core laptop-class CPU. The script's own `python script.py` start-up
(importing torch, building data and model) is timed too, to show what the probe adds.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rnnlint.runtime.script import run_script  # noqa: E402

TARGET_S = 30.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--script", default=str(ROOT / "fixtures" / "runtime" / "typical_train.py"))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    lines = len(Path(args.script).read_text(encoding="utf-8").splitlines())

    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch"], check=True)
    torch_import = time.perf_counter() - started

    walls, inside = [], []
    for _ in range(args.repeat):
        started = time.perf_counter()
        result = run_script(args.script, steps=args.steps, timeout=300, device="cpu")
        walls.append(time.perf_counter() - started)
        if result.errors:
            print(f"probe failed: {result.errors[0].message}", file=sys.stderr)
            return 2
        inside.append(result.measurements["seconds"] if result.measurements else float("nan"))
    codes = sorted({f.code for f in result.findings}) or ["none"]
    print(f"script: {args.script} ({lines} lines), {args.steps} probe steps, {args.repeat} runs")
    print(f"python -c 'import torch': {torch_import:.2f} s")
    print(f"probe wall time (process start included): median {statistics.median(walls):.2f} s, "
          f"min {min(walls):.2f} s, max {max(walls):.2f} s (target < {TARGET_S:.0f} s)")
    print(f"  of which measured training steps and analysis: median {statistics.median(inside):.2f} s")
    print(f"findings: {', '.join(codes)}")
    return 0 if statistics.median(walls) < TARGET_S else 1


if __name__ == "__main__":
    raise SystemExit(main())
