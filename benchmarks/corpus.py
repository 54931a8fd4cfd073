"""Benchmark at scale: rnnlint against libcst's own floor and against other libcst linters.

Builds a reproducible corpus (every .py file of a few installed pure-Python packages plus
rnnlint's fixtures), appends to every file a marker that imports torch and builds an
nn.LSTM (so no file is skipped by a pre-filter and the figures measure analysis), and prints,
in one run, wall times and ratios to row 1:

  1. libcst parse-only, one process
  2. libcst with Scope, QualifiedName and Position metadata, one process
  3. rnnlint cold, --jobs 1            4. rnnlint cold, all cores
  5. rnnlint warm (nothing changed)    6. rnnlint after touching one file
  7. rnnlint cold on the corpus without markers (the pre-filter at work)
  8. TorchFix and 9. Fixit on the marked corpus (in benchmarks/.venv; skipped with a
     message if they cannot be installed)

then the peak memory of rows 3 and 4 (and of row 3 on half the corpus, to show that memory
does not grow with the tree) and the whole-process time of checking one ~200-line fixture.

    python benchmarks/corpus.py [--limit N] [--skip-others] [--skip-metadata]

Timings are medians of --repeat runs for the fast rows and single runs for the slow ones;
on a shared machine compare the ratios, which are measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import List, Optional, Sequence

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("rich", "hypothesis", "_pytest", "click", "jsonschema", "setuptools")
MARKER = "\nimport torch as _bench_torch\n_bench_rnn = _bench_torch.nn.LSTM(8, 16)\n"
VENV = ROOT / "benchmarks" / ".venv"
OTHERS = ("torchfix==0.7.0", "fixit==2.2.1")


def build_corpus(target: Path, marked: bool, limit: Optional[int]) -> List[Path]:
    import importlib.util

    sources: List[Path] = []
    for name in PACKAGES:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            print(f"  (package {name} not installed; left out)")
            continue
        base = Path(list(spec.submodule_search_locations)[0])
        sources.extend(sorted(p for p in base.rglob("*.py") if "__pycache__" not in p.parts))
    sources.extend(sorted((ROOT / "fixtures").rglob("*.py")))
    if limit:
        sources = sources[:limit]
    files = []
    for i, source in enumerate(sources):
        dest = target / f"{i:04d}_{source.parent.name}_{source.name}"
        text = source.read_bytes()
        dest.write_bytes(text + (MARKER.encode() if marked else b""))
        files.append(dest)
    return files


def timed(cmd: Sequence[str], cwd: Optional[Path] = None, env=None) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    subprocess.run(list(cmd), cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def peak_rss(cmd: Sequence[str], cwd: Optional[Path] = None) -> str:
    """Peak resident memory (MiB) of the process and of its largest child (a worker)."""
    probe = (
        "import resource, subprocess, sys\n"
        "subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe, *cmd], cwd=cwd, capture_output=True, text=True)
    try:
        return f"{int(out.stdout.strip()) / 1024:.0f} MiB"
    except ValueError:
        return "n/a"


PARSE_ONLY = """
import sys, libcst
for path in sys.argv[1:]:
    try:
        libcst.parse_module(open(path, 'rb').read())
    except Exception:
        pass
"""

WITH_METADATA = """
import sys, libcst
from libcst.metadata import MetadataWrapper, PositionProvider, QualifiedNameProvider, ScopeProvider
for path in sys.argv[1:]:
    try:
        wrapper = MetadataWrapper(libcst.parse_module(open(path, 'rb').read()))
        wrapper.resolve(ScopeProvider); wrapper.resolve(QualifiedNameProvider); wrapper.resolve(PositionProvider)
    except Exception:
        pass
"""


def ensure_others() -> Optional[Path]:
    python = VENV / "bin" / "python"
    if not python.exists():
        print("  installing TorchFix and Fixit into benchmarks/.venv ...")
        if subprocess.run([sys.executable, "-m", "venv", str(VENV)]).returncode != 0:
            return None
    check = subprocess.run([str(python), "-c", "import torchfix, fixit"], capture_output=True)
    if check.returncode != 0:
        install = subprocess.run([str(python), "-m", "pip", "install", "-q", *OTHERS], capture_output=True, text=True)
        if install.returncode != 0:
            print(f"  TorchFix/Fixit could not be installed: {install.stderr.strip()[-300:]}")
            return None
    return VENV / "bin"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=None, help="Only the first N corpus files (quick look).")
    parser.add_argument("--repeat", type=int, default=3, help="Runs of each fast row (median).")
    parser.add_argument("--skip-others", action="store_true", help="Leave out TorchFix and Fixit.")
    parser.add_argument("--skip-metadata", action="store_true", help="Leave out row 2 (slow).")
    args = parser.parse_args()

    # Time rnnlint as installed: pip compiles a wheel's modules to bytecode at install time,
    # while an editable checkout under PYTHONDONTWRITEBYTECODE would compile them on every run.
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "rnnlint")], check=False)
    work = Path(tempfile.mkdtemp(prefix="rnnlint-bench-"))
    try:
        marked = work / "marked"
        plain = work / "plain"
        marked.mkdir()
        plain.mkdir()
        files = build_corpus(marked, True, args.limit)
        build_corpus(plain, False, args.limit)
        lines = sum(len(p.read_bytes().splitlines()) for p in files)
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        print(f"corpus: {len(files)} files, {lines} lines ({', '.join(PACKAGES)} + fixtures), {cores} cores")

        py = sys.executable
        names = [str(p) for p in files]
        rnnlint = [py, "-m", "rnnlint", "check", "--format", "json", "-q"]
        rows = []

        def row(label: str, seconds: Optional[float], note: str = "") -> None:
            rows.append((label, seconds, note))
            shown = "skipped" if seconds is None else f"{seconds:8.2f} s"
            print(f"  {label:<44} {shown}  {note}", flush=True)

        parse = timed([py, "-c", PARSE_ONLY, *names])
        row("1. libcst parse only (1 process)", parse)
        if args.skip_metadata:
            row("2. libcst + Scope/QualifiedName/Position", None, "(--skip-metadata)")
        else:
            row("2. libcst + Scope/QualifiedName/Position", timed([py, "-c", WITH_METADATA, *names]))

        def cold(jobs: str, corpus: Path) -> float:
            runs = []
            for _ in range(args.repeat):
                cache = work / f"cache-cold-{jobs}-{corpus.name}"
                shutil.rmtree(cache, ignore_errors=True)
                runs.append(timed([*rnnlint, "--cache-dir", str(cache), "-j", jobs, str(corpus)]))
            return statistics.median(runs)

        row("3. rnnlint cold, --jobs 1", cold("1", marked))
        row("4. rnnlint cold, all cores", cold("0", marked))
        cache = work / "cache-cold-0-marked"
        warm = statistics.median(timed([*rnnlint, "--cache-dir", str(cache), str(marked)]) for _ in range(args.repeat))
        row("5. rnnlint warm (cache hit)", warm)
        touched = []
        for i in range(args.repeat):
            victim = files[len(files) // 2]
            victim.write_bytes(victim.read_bytes() + f"\n# touched {i}\n".encode())
            touched.append(timed([*rnnlint, "--cache-dir", str(cache), str(marked)]))
        row("6. rnnlint after touching one file", statistics.median(touched))
        row("7. rnnlint cold, all cores, no markers", cold("0", plain))

        bin_dir = None if args.skip_others else ensure_others()
        if bin_dir is None:
            row("8. TorchFix 0.7 (marked corpus)", None, "(not run)")
            row("9. Fixit 2.2 (marked corpus)", None, "(not run)")
        else:
            row("8. TorchFix 0.7 (marked corpus)", timed([str(bin_dir / "torchfix"), "--select", "ALL", str(marked)]))
            fixit_dir = work / "fixit"
            shutil.copytree(marked, fixit_dir)
            row("9. Fixit 2.2 (marked corpus)", timed([str(bin_dir / "fixit"), "lint", str(fixit_dir)], cwd=fixit_dir))

        print("\nratios to row 1 (libcst parse only):")
        for label, seconds, _ in rows:
            if seconds is not None:
                print(f"  {label:<44} {seconds / parse:6.2f}x")
        by = {label.split(".")[0]: s for label, s, _ in rows}
        checks = [
            ("cold --jobs 1 / parse (target <= 2.5)", by["3"] / parse),
            ("cold all cores / parse (target <= 1.6)", by["4"] / parse),
            ("cold / warm (target >= 20)", by["4"] / by["5"]),
            ("touched / warm (target < 2)", by["6"] / by["5"]),
        ]
        if by.get("8"):
            checks.append(("TorchFix / rnnlint cold all cores (target >= 3)", by["8"] / by["4"]))
        if by.get("9"):
            checks.append(("Fixit / rnnlint cold all cores (target >= 3)", by["9"] / by["4"]))
        print("\nacceptance ratios:")
        for label, value in checks:
            print(f"  {label:<48} {value:6.2f}")

        print("\npeak memory (the largest file sets it; flat means the same peak for twice the files):")
        double = work / "double"
        shutil.copytree(marked, double / "a")
        shutil.copytree(marked, double / "b")
        largest = max(files, key=lambda p: p.stat().st_size)
        print(f"  largest file: {largest.name}, {len(largest.read_bytes().splitlines())} lines")
        print(f"  3. cold --jobs 1, corpus:          {peak_rss([*rnnlint, '--no-cache', '-j', '1', str(marked)])}")
        print(f"  3. cold --jobs 1, corpus twice:    {peak_rss([*rnnlint, '--no-cache', '-j', '1', str(double)])}")
        print(f"  4. cold all cores, largest process: {peak_rss([*rnnlint, '--no-cache', str(marked)])}")

        fixture = min((ROOT / "fixtures").glob("*.py"), key=lambda p: abs(len(p.read_text().splitlines()) - 200))
        one = [py, "-m", "rnnlint", "check", "-q", "--no-cache", str(fixture)]
        single = statistics.median(timed(one) for _ in range(7))
        bare = statistics.median(timed([py, "-c", "pass"]) for _ in range(7))
        print(f"\none file ({fixture.name}, {len(fixture.read_text().splitlines())} lines), whole process, no cache: "
              f"{single:.3f} s (python itself: {bare:.3f} s)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
