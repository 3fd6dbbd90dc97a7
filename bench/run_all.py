"""Run every benchmark at one budget, then write PROVENANCE.md beside the JSON files.

Not a benchmark itself: it calls ``sampling_latency``, ``train_step_cost`` and ``scaling``
as separate processes (each prints its ratio tables) and records how they were run.
Run: ``python bench/run_all.py`` (CPU budget: under 10 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

from benchlib import DEFAULT_OUT, ROOT

HERE = Path(__file__).resolve().parent
# per-budget arguments of each script; "cpu" is sized for < 10 minutes on a 2-core CPU
BUDGETS: dict[str, dict[str, list[str]]] = {
    "smoke": {
        "sampling_latency": ["--sizes", "64x2", "--batches", "1,64", "--agents", "1,3",
                             "--repeats", "1", "--warmup", "1", "--rounds", "1"],
        "train_step_cost": ["--sizes", "64x2", "--repeats", "1", "--warmup", "1",
                            "--batch", "64", "--rounds", "1"],
        "scaling": ["--sizes", "64x2", "--agents", "2,4,8", "--batches", "64,256",
                    "--repeats", "1", "--warmup", "1", "--rounds", "1"],
    },
    "cpu": {
        "sampling_latency": ["--sizes", "paper,book", "--agents", "1,3", "--repeats", "3",
                             "--warmup", "1", "--rounds", "2"],
        "train_step_cost": ["--sizes", "paper,book", "--repeats", "2", "--warmup", "1",
                            "--rounds", "2"],
        "scaling": ["--sizes", "book", "--repeats", "3", "--warmup", "1", "--rounds", "2"],
    },
    "gpu": {
        "sampling_latency": ["--sizes", "paper,book", "--agents", "1,3", "--repeats", "20",
                             "--warmup", "5", "--rounds", "3"],
        "train_step_cost": ["--sizes", "paper,book", "--repeats", "10", "--warmup", "5",
                            "--rounds", "3"],
        "scaling": ["--sizes", "paper,book", "--repeats", "10", "--warmup", "3",
                    "--rounds", "3"],
    },
}


def provenance_md(out: Path, budget: str, command: str, seconds: float, note: str) -> str:
    """A human-readable record of the run, from the JSON files it wrote."""
    lines = ["# Benchmark results: provenance", "",
             f"Made by `{command}` (budget `{budget}`) in {seconds / 60:.1f} min.", ""]
    if note:
        lines += [note, ""]
    for path in sorted(out.glob("*.json")):
        meta = json.loads(path.read_text())["meta"]
        lines += [f"## {path.name}", "",
                  f"- command: `{meta['command']}`",
                  f"- device: {meta['device']} ({meta.get('cpu', '')}, "
                  f"{meta.get('cpu_count')} logical CPUs); threads {meta['threads']}",
                  f"- torch {meta['torch']}, python {meta['python']}, om2p_lite "
                  f"{meta['om2p_lite']}",
                  f"- git commit {meta['git_commit']}, date {meta['date']}",
                  f"- timing: {meta.get('clock_note', 'median')}; median over "
                  f"{meta['repeats']} repeats after {meta['warmup']} warm-up calls, "
                  f"{meta.get('rounds', 1)} interleaved rounds",
                  *([f"- peak memory: {meta['memory_measure']}"]
                    if "memory_measure" in meta else []), ""]
    lines += ["Ratios measured within one run are what count: absolute times depend on the "
              "machine and its load.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budget", default="cpu", choices=sorted(BUDGETS))
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: auto)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--only", default="", help="comma list of scripts to run (default: all)")
    p.add_argument("--note", default="", help="a line for PROVENANCE.md (e.g. machine load)")
    args = p.parse_args(argv)
    scripts = list(BUDGETS[args.budget])
    if args.only:
        chosen = [s.strip() for s in args.only.split(",") if s.strip()]
        unknown = set(chosen) - set(scripts)
        if unknown:
            raise SystemExit(f"--only: unknown {sorted(unknown)}; choose from {scripts}")
        scripts = chosen
    common = ["--threads", str(args.threads), "--out", str(args.out)]
    if args.device:
        common += ["--device", args.device]
    start = time.perf_counter()
    for name in scripts:
        cmd = [sys.executable, str(HERE / f"{name}.py"), *BUDGETS[args.budget][name], *common]
        print(f"\n=== {name}: {' '.join(cmd[1:])}", flush=True)
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, cwd=ROOT)
        print(f"=== {name} took {time.perf_counter() - t0:.0f} s", flush=True)
    seconds = time.perf_counter() - start
    command = shlex.join(["python", "bench/run_all.py",
                          *(sys.argv[1:] if argv is None else argv)])
    (args.out / "PROVENANCE.md").write_text(
        provenance_md(args.out, args.budget, command.strip(), seconds, args.note))
    print(f"\nall benchmarks took {seconds / 60:.1f} min; wrote {args.out / 'PROVENANCE.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
