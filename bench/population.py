"""Population training: per-member throughput of P stacked runs, and OM2P's update cost
against MA-TD3+BC's, on World (3 agents, the smoke dataset).

Not a learning benchmark: only time counts. What is timed is the library's own code:
one training step = ``population.sample_population_batch`` (each member's own batch) +
``agent.update``; the update ratio times ``agent.update`` alone on a fixed batch, for
OM2P (fd) and MA-TD3+BC built by ``population.build_population`` at the same sizes.
Everything of one network size is timed interleaved in rounds (``benchlib``), so a slow
spell of a shared machine hits every candidate alike; ratios within one run are what count.
Run: ``python bench/population.py`` (writes data/results/bench/population_cpu.json);
``--algo cql`` (or any other algorithm) times that algorithm's training step alone, with no
update ratio, and writes population_cql_cpu.json: whether stacking seeds pays for it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from benchlib import (
    ROOT,
    base_parser,
    clock_of,
    interleaved_seconds,
    meta,
    parse_ints,
    parse_sizes,
    print_table,
    setup,
    update_flops,
    write_json,
)

from om2p_lite.rl.agents import ALGORITHMS, dims_of
from om2p_lite.rl.config import TrainConfig
from om2p_lite.rl.population import (
    BATCH_SEED_OFFSET,
    NOISE_SEED_OFFSET,
    build_population,
    sample_population_batch,
)

TASK, QUALITY = "world", "medium"
# the targets: per-member steps/s at P = 16 (2x64) >= 2x one run's; OM2P <= 1.3x TD3+BC
THROUGHPUT_TARGET = {"members": 16, "size": "64x2", "min_ratio": 2.0}
UPDATE_TARGET = 1.3
# "one run today": the single-run training step before populations (the commit before them)
BASELINE_COMMIT = "6fc7b86"
BASELINE_SERVER = """
import json, sys, time, torch
from om2p_lite.data import load_dataset
from om2p_lite.rl.agents import make_agent
from om2p_lite.rl.config import TrainConfig
from om2p_lite.rl.train import dims_of
path, threads, hidden, depth, batch = sys.argv[1], *map(int, sys.argv[2:6])
torch.set_num_threads(threads)
ds = load_dataset(path)
cfg = TrainConfig(task="world", quality="medium", batch_size=batch, hidden=hidden, depth=depth,
                  critic_hidden=hidden, critic_depth=depth)
torch.manual_seed(0)
agent = make_agent("om2p", dims_of(ds), cfg)
gen = torch.Generator().manual_seed(1)
print("ready", flush=True)
for line in sys.stdin:
    w, c = time.perf_counter(), time.process_time()
    agent.update(ds.sample(batch, generator=gen))  # the old train loop's step
    print(json.dumps([time.perf_counter() - w, time.process_time() - c]), flush=True)
"""


def population(algo: str, n_members: int, hidden: int, depth: int, batch: int, ds: Any,
               device: torch.device, compile_nets: bool = False,
               **fields: Any) -> dict[str, Callable]:
    """The timed calls of one population: a training step and an update on a fixed batch
    (``fields``: other TrainConfig fields, e.g. another task or estimator), and its agent."""
    cfg = TrainConfig(**{"task": TASK, "quality": QUALITY, **fields}, algo=algo,
                      batch_size=batch, hidden=hidden, depth=depth, critic_hidden=hidden,
                      critic_depth=depth, compile=compile_nets)
    cfgs = [dataclasses.replace(cfg, seed=s) for s in range(n_members)]
    agent, _, _ = build_population(cfgs, dims_of(ds), device)
    agent.want_logs = False  # as in training between log steps (every log_every-th logs)
    agent.generators = [torch.Generator().manual_seed(s + NOISE_SEED_OFFSET)
                        for s in range(n_members)]
    gens = [torch.Generator().manual_seed(s + BATCH_SEED_OFFSET) for s in range(n_members)]
    fixed = sample_population_batch(ds, gens, batch, device)

    def train_step() -> None:
        agent.update(sample_population_batch(ds, gens, batch, device))

    def update() -> None:
        agent.update(fixed)

    def flops() -> float:
        return update_flops(agent, fixed)

    return {"train_step": train_step, "update": update, "flops": flops,
            "agent": lambda: agent}


class BaselineStep:
    """The training step of one run at ``commit`` (extracted with ``git archive``), served by a
    subprocess so that it can be timed in rounds with this code's steps."""

    def __init__(self, commit: str, ds_path: Path, hidden: int, depth: int, batch: int,
                 threads: int):
        self.tmp = tempfile.TemporaryDirectory()
        archive = subprocess.run(["git", "archive", commit, "om2p_lite"], cwd=ROOT,
                                 capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", self.tmp.name], input=archive, check=True)
        env = {**os.environ, "PYTHONPATH": self.tmp.name}
        self.proc = subprocess.Popen([sys.executable, "-c", BASELINE_SERVER, str(ds_path),
                                      str(threads), str(hidden), str(depth), str(batch)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     env=env, cwd=self.tmp.name)
        if self.proc.stdout.readline().strip() != "ready":
            raise RuntimeError(f"baseline {commit} did not start")

    def step(self) -> tuple[float, float]:
        """One step; (wall, CPU) seconds as the subprocess measured them."""
        self.proc.stdin.write("step\n")
        self.proc.stdin.flush()
        wall, cpu = json.loads(self.proc.stdout.readline())
        return wall, cpu

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)
        self.tmp.cleanup()


def compare_baseline(args, ds_path: Path, hidden: int, depth: int, steps: dict[str, Callable],
                     clock: str) -> dict[str, float]:
    """Median seconds per step of the baseline's one run and of ``steps``, in rounds."""
    base = BaselineStep(args.baseline, ds_path, hidden, depth, args.batch, args.threads)
    times: dict[str, list[float]] = {"baseline": [], **{k: [] for k in steps}}
    try:
        for _ in range(args.warmup):
            base.step()
            for fn in steps.values():
                fn()
        for _ in range(args.rounds):
            for _ in range(args.repeats):
                wall, cpu = base.step()
                times["baseline"].append(cpu if clock == "cpu" else wall)
            for name, fn in steps.items():
                for _ in range(args.repeats):
                    w, c = time.perf_counter(), time.process_time()
                    fn()
                    times[name].append(time.process_time() - c if clock == "cpu"
                                       else time.perf_counter() - w)
    finally:
        base.close()
    return {k: statistics.median(v) for k, v in times.items()}


def matmul_peak(device: torch.device, n: int = 1024) -> float:
    """This machine's a @ b rate (FLOP/s) at the benchmark's thread count, float32."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    secs = interleaved_seconds({"mm": lambda: a @ b}, device, repeats=5, warmup=2,
                               rounds=1)["mm"]["wall"]
    return 2 * n**3 / secs


def run(args) -> dict:
    if args.threads == 0:  # what training does with threads = 0: the cores others leave idle
        from om2p_lite.runtime.cores import IdleCores

        args.threads = IdleCores().threads()
    device = setup(args)
    clock = clock_of(args, device)
    from om2p_lite.data.generate import dataset_path, get_dataset

    ds = get_dataset(TASK, QUALITY, 0, "smoke")
    ds_path = dataset_path(TASK, QUALITY, 0, "smoke")
    load_before = os.getloadavg()
    baseline: dict[str, Any] = {}
    om2p = args.algo == "om2p"  # only OM2P's file has the update ratio, baseline, compile
    members = parse_ints(args.members, "--members")
    rows, compile_rows = [], []
    peak = matmul_peak(device)
    for size, (hidden, depth) in parse_sizes(args.sizes).items():
        fns: dict[str, Callable] = {}
        flops: dict[int, int] = {}
        for P in members:
            timed = population(args.algo, P, hidden, depth, args.batch, ds, device)
            fns[f"train/{P}"] = timed["train_step"]
            flops[P] = (timed["flops"](),)
            if om2p:  # OM2P's update against MA-TD3+BC's, same members
                td3 = population("td3bc", P, hidden, depth, args.batch, ds, device)
                fns[f"om2p/{P}"] = timed["update"]
                fns[f"td3bc/{P}"] = td3["update"]
                flops[P] += (td3["flops"](),)
        secs = interleaved_seconds(fns, device, args.repeats, args.warmup, args.rounds)
        t = THROUGHPUT_TARGET
        if (args.baseline and om2p and size == t["size"]
                and {1, t["members"]} <= set(members)):
            med = compare_baseline(args, ds_path, hidden, depth,
                                   {"one_run": fns["train/1"],
                                    "population": fns[f"train/{t['members']}"]}, clock)
            baseline = {"commit": args.baseline, "size": size, "members": t["members"],
                        "baseline_step_s": med["baseline"], "one_run_step_s": med["one_run"],
                        "population_step_s": med["population"],
                        "one_run_vs_baseline": med["baseline"] / med["one_run"],
                        "per_member_vs_baseline":
                            med["baseline"] / (med["population"] / t["members"])}
            print(f"  vs one run at {args.baseline}: one run x"
                  f"{baseline['one_run_vs_baseline']:.2f}, per member at P={t['members']} x"
                  f"{baseline['per_member_vs_baseline']:.2f}", flush=True)
        base = secs["train/1"][clock] if "train/1" in secs else None
        for P in members:
            step = secs[f"train/{P}"][clock]
            row = {"algo": args.algo, "size": size, "hidden": hidden, "depth": depth,
                   "members": P, "step_s": step, "member_steps_per_s": P / step,
                   "ms_per_member_step": 1e3 * step / P,
                   "vs_one_run": base / (step / P) if base else None,
                   "wall_s": secs[f"train/{P}"]["wall"], "cpu_s": secs[f"train/{P}"]["cpu"],
                   "update_flops": flops[P][0]}
            if om2p:
                row.update({"om2p_update_s": secs[f"om2p/{P}"][clock],
                            "td3bc_update_s": secs[f"td3bc/{P}"][clock],
                            "td3bc_update_flops": flops[P][1],
                            "flop_ratio": flops[P][0] / flops[P][1],
                            "update_gflops_per_s": flops[P][0] / secs[f"om2p/{P}"][clock] / 1e9})
                row["om2p_vs_td3bc"] = row["om2p_update_s"] / row["td3bc_update_s"]
            rows.append(row)
            ratio = (f"  OM2P/TD3+BC update {row['om2p_vs_td3bc']:.2f}"
                     if om2p else "")
            print(f"  {args.algo} {size} P={P:3d} {row['ms_per_member_step']:7.2f} "
                  f"ms/member-step (x{row['vs_one_run'] or 0:.2f} one run){ratio}", flush=True)
        del fns
    if args.compile_members and om2p:
        compile_rows = compare_compile(args, ds, device, clock)
    checks = target_checks(rows, baseline) if om2p else []
    payload = {"benchmark": "population",
               "meta": meta(args, device, task=TASK, quality=QUALITY, batch=args.batch,
                            dataset=f"get_dataset({TASK!r}, {QUALITY!r}, 0, 'smoke'), "
                                    f"{len(ds)} transitions, 3 agents",
                            rounds=args.rounds, load_average_before=list(load_before),
                            load_average_after=list(os.getloadavg()),
                            matmul_peak_gflops=peak / 1e9,
                            algo=args.algo,
                            step="population.sample_population_batch + agent.update "
                                 + ("(OM2P, fd, eta 1, beta55 time sampler)"
                                    if om2p else f"({args.algo}, defaults)"),
                            update_ratio="agent.update on a fixed batch: OM2P (fd) / "
                                         "MA-TD3+BC, same members, sizes and batch"
                                         if om2p else None,
                            one_run="P = 1 of this run (the same code as a single run)"),
               "results": rows, "baseline": baseline, "compile": compile_rows,
               "targets": checks}
    show(rows, compile_rows, checks)
    name = "population" if om2p else f"population_{args.algo}"
    write_json(args.out, f"{name}_{device.type}", payload)
    return payload


def compare_compile(args, ds: Any, device: torch.device, clock: str) -> list[dict]:
    """OM2P's training step with ``TrainConfig.compile`` against eager, interleaved."""
    out = []
    for size, (hidden, depth) in parse_sizes(args.compile_sizes).items():
        P = args.compile_members
        eager = population("om2p", P, hidden, depth, args.batch, ds, device)["train_step"]
        compiled = population("om2p", P, hidden, depth, args.batch, ds, device, True)
        t0 = time.perf_counter()
        for _ in range(3):  # compile (the first calls), outside the timing
            compiled["train_step"]()
        compile_s = time.perf_counter() - t0
        secs = interleaved_seconds({"eager": eager, "compiled": compiled["train_step"]},
                                   device, args.repeats, args.warmup, args.rounds)
        row = {"size": size, "members": P, "eager_s": secs["eager"][clock],
               "compiled_s": secs["compiled"][clock], "compile_s": compile_s}
        row["speedup"] = row["eager_s"] / row["compiled_s"]
        out.append(row)
        print(f"  compile {size} P={P}: x{row['speedup']:.2f} (compiling took "
              f"{compile_s:.0f} s)", flush=True)
    return out


def target_checks(rows: list[dict], baseline: dict[str, Any]) -> list[dict]:
    """The issue's two targets, from this run's own rows."""
    checks = []
    t = THROUGHPUT_TARGET
    if baseline:
        ratio = baseline["per_member_vs_baseline"]
        checks.append({"target": f"per-member steps/s at P={t['members']}, {t['size']} >= "
                                 f"{t['min_ratio']}x one run's at {baseline['commit']}",
                       "ratio": ratio, "met": ratio >= t["min_ratio"]})
    for r in rows:
        if r["members"] == t["members"] and r["size"] == t["size"] and r["vs_one_run"]:
            checks.append({"target": f"per-member steps/s at P={t['members']}, {t['size']} "
                                     f">= {t['min_ratio']}x one run's (this code)",
                           "ratio": r["vs_one_run"], "met": r["vs_one_run"] >= t["min_ratio"]})
    for r in rows:
        checks.append({"target": f"OM2P update <= {UPDATE_TARGET}x MA-TD3+BC's "
                                 f"({r['size']}, P={r['members']})",
                       "ratio": r["om2p_vs_td3bc"], "met": r["om2p_vs_td3bc"] <= UPDATE_TARGET})
    return checks


def show(rows: list[dict], compile_rows: list[dict], checks: list[dict]) -> None:
    cols = ["algo", "size", "members", "ms_per_member_step", "member_steps_per_s",
            "vs_one_run", "om2p_update_s", "td3bc_update_s", "om2p_vs_td3bc", "flop_ratio",
            "update_gflops_per_s"]
    print_table(rows, [c for c in cols if c in rows[0]],
                "Population throughput (World) and OM2P / MA-TD3+BC update time")
    if compile_rows:
        print_table(compile_rows, ["size", "members", "eager_s", "compiled_s", "speedup",
                                   "compile_s"], "torch.compile (TrainConfig.compile)")
    if checks:
        print_table(checks, ["target", "ratio", "met"], "Targets")


def main(argv: list[str] | None = None) -> dict:
    p = base_parser(__doc__.splitlines()[0])
    p.set_defaults(threads=0, sizes="64x2,128x2", repeats=3, warmup=2)
    p.add_argument("--algo", default="om2p", choices=sorted(ALGORITHMS),
                   help="whose training step the throughput rows time (the update ratio, "
                        "baseline and compile comparison are OM2P's: om2p only)")
    p.add_argument("--members", default="1,4,16,32", help="population sizes P")
    p.add_argument("--batch", type=int, default=256, help="transitions per member and step")
    p.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds")
    p.add_argument("--baseline", default=BASELINE_COMMIT,
                   help="commit whose single-run step is 'one run today' ('' to skip)")
    p.add_argument("--compile-members", type=int, default=16,
                   help="P of the torch.compile comparison (0: skip it)")
    p.add_argument("--compile-sizes", default="64x2", help="sizes of that comparison")
    return run(p.parse_args(argv))


if __name__ == "__main__":
    main()
