"""Against the official code, at the paper's size: training steps per second of the paper's
official JAX code (GitHub lizr16/OM2P) and of ``python -m om2p_lite train``, on the same data,
in one sitting.

Both programs run as they ship, as child processes, on 4-agent Spread (the official code's
data layout, ``<data-root>/simple_spread-4agent/expert/seed_0_data/``) at the paper's size:
actor 4x512, critics 2 x 4x512, batch 256, lr 1e-3, eta 1. One step = every agent updated
on one batch of 256. Steps per second are read from each program's own log:

    steps/s = (stop - start) / (t[stop] - t[start])

with t the official ``train.csv`` column ``time/total_time`` and om2p-lite's ``log.jsonl``
field ``wall_s``, both written at the logged step. Starting at step ``--start`` (20) leaves
out start-up: the official code's jit compile (about 100 s on a CPU) and the first steps.

Candidates: ``official`` (its du/dr = 0 mode, ``--agent.is_autograd=2``) and om2p-lite with
each ``estimator:threads`` of ``--ours`` (threads 0 = the library's adaptive count). Every
round runs every candidate once; the order alternates (A B ... B A), so a slow spell of a
shared machine hits all of them alike. ``--load N`` keeps N busy processes (a Python spin
loop each) running for the whole sitting: idle (0) and loaded (2) runs of the same script.
Also recorded: peak RSS of every run, the machine's float32 ``a @ b`` peak (measured before
the load starts), the FLOPs of one om2p-lite step (torch's FlopCounterMode around one
``agent.update``) and the arithmetic rate each om2p-lite candidate achieves.

The official code's MPE fork has 2 action dimensions per agent (the force itself),
om2p-lite's Spread 5: the official files are imported with ``--action-layout force-xy``,
which writes each force as the 5-d action that applies it (same observations, rewards and
transitions; the nets' input and output layers differ by 3 columns).

Run (idle machine, then with two busy processes; on 2 cores a round takes about 15 minutes
idle, 30-40 minutes under --load 2):
    python bench/peer.py --official-repo OM2P --official-python VENV/bin/python \
        --official-runner run_official.py --data-root DATA
    python bench/peer.py ... --load 2
writes data/results/bench/peer_cpu.json (``--load 2``: peer_load2_cpu.json).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import gc
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from benchlib import DEFAULT_OUT, ROOT, meta, print_table, write_json

from om2p_lite.rl.rundir import LOG_NAME

OFFICIAL_URL = "https://github.com/lizr16/OM2P"
ENV_NAME, N_AGENTS, QUALITY = "simple_spread", 4, "expert"
SEED_DIR = Path(f"{ENV_NAME}-{N_AGENTS}agent") / QUALITY / "seed_0_data"
TASK, REWARD_VARIANT = f"spread{N_AGENTS}", "omar"  # om2p-lite's name for the same task
# the paper's size (the official agents/fql_meanfield.py defaults: 4x512 actor and critics,
# two critics, batch 256) and the learning settings both programs get
HIDDEN, DEPTH, BATCH, LR, ETA = 512, 4, 256, 1e-3, 1.0
ESTIMATORS = ("fd", "zero")
TARGET_RATIO = 1.5  # issue: om2p-lite >= 1.5x the official code's steps/s at the same load
DEFAULT_OURS = "fd:0,zero:0,fd:1,fd:2,zero:1,zero:2"
SPIN = "while True:\n    pass\n"


# --- candidates and their commands --------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Candidate:
    """One program to time: the official code, or om2p-lite with an estimator and threads."""

    name: str
    estimator: str = ""  # om2p-lite only
    threads: int = 0  # om2p-lite's --threads (0: adaptive)

    @property
    def official(self) -> bool:
        return self.name == "official"


def parse_ours(text: str) -> list[Candidate]:
    """'fd:1,zero:0' → om2p-lite candidates (estimator, torch threads; 0 = adaptive)."""
    out: list[Candidate] = []
    for item in (s.strip() for s in text.split(",") if s.strip()):
        est, _, threads = item.partition(":")
        if est not in ESTIMATORS or not threads.isdigit():
            raise SystemExit(f"--ours: {item!r} is not ESTIMATOR:THREADS. Fix: write e.g. "
                             f"'fd:1,zero:0' (estimators {ESTIMATORS}; threads >= 0, 0 = "
                             f"the library's adaptive count)")
        cand = Candidate(f"ours-{est}-t{int(threads)}", est, int(threads))
        if cand in out:
            raise SystemExit(f"--ours: {item!r} is listed twice. Fix: list each once")
        out.append(cand)
    if not out:
        raise SystemExit("--ours: empty. Fix: give at least one ESTIMATOR:THREADS, e.g. fd:0")
    return out


def round_order(candidates: list[Candidate], round_index: int) -> list[Candidate]:
    """Forward in even rounds, backward in odd ones (A B ... B A): every candidate sits, on
    average, at the same place in the sitting."""
    return list(candidates) if round_index % 2 == 0 else list(reversed(candidates))


@dataclasses.dataclass(frozen=True)
class Official:
    """Where the official code, its Python, its runner and its data are."""

    repo: Path
    python: Path
    runner: Path
    data_root: Path


def check_official(repo: Path | None, python: Path | None, runner: Path | None,
                   data_root: Path | None) -> Official:
    """Refuse missing or wrong paths, all problems at once, each with its fix."""
    problems = []
    get = f"clone {OFFICIAL_URL} (the paper's official JAX code)"
    if repo is None:
        problems.append(f"--official-repo: not given. Fix: {get} and pass its folder")
    elif not (repo / "main.py").is_file() or not (repo / "agents" / "fql_meanfield.py").is_file():
        problems.append(f"--official-repo: {repo} holds no main.py and agents/fql_meanfield.py."
                        f" Fix: {get} and pass the folder of its main.py")
    if python is None:
        problems.append("--official-python: not given. Fix: pass the python of a virtual "
                        f"environment with the requirements of {OFFICIAL_URL} installed "
                        "(jax, flax, ml_collections, wandb, its multiagent-particle-envs)")
    elif not (python.is_file() and os.access(python, os.X_OK)):
        problems.append(f"--official-python: {python} is not an executable file. Fix: pass "
                        "e.g. VENV/bin/python of the official code's environment")
    if runner is None:
        problems.append("--official-runner: not given. Fix: pass a script that runs the "
                        "official main.py unchanged with wandb disabled and its hard-coded "
                        "dataset folder replaced by $OM2P_DATA_ROOT (it reads "
                        "OM2P_OFFICIAL_REPO and OM2P_DATA_ROOT and passes main.py's flags on)")
    elif not runner.is_file():
        problems.append(f"--official-runner: {runner} is not a file. Fix: pass the runner "
                        "script's path")
    if data_root is None:
        problems.append(f"--data-root: not given. Fix: pass the folder that holds {SEED_DIR}/"
                        "(obs_i, acs_i, rews_i, next_obs_i, dones_i .npy for 4 agents)")
    elif not (data_root / SEED_DIR / "obs_0.npy").is_file():
        problems.append(f"--data-root: {data_root / SEED_DIR / 'obs_0.npy'} does not exist. "
                        f"Fix: pass the folder that holds {SEED_DIR}/")
    if problems:
        raise SystemExit("\n".join(problems))
    return Official(repo.resolve(), python.absolute(), runner.resolve(), data_root.resolve())


def official_command(off: Official, steps: int, log_every: int,
                     save_dir: Path) -> tuple[list[str], dict[str, str]]:
    """The official main.py's flags for OM2P at the paper's size (du/dr = 0) and its env."""
    cmd = [str(off.python), str(off.runner), f"--env_name={ENV_NAME}",
           f"--agent={off.repo / 'agents' / 'fql_meanfield.py'}",
           "--agent.agent_name=fql_meanfield", "--agent.training_task=0",
           f"--data_type={QUALITY}", "--seed=0", f"--agent.lr={LR:g}",
           f"--agent.q_weight={ETA:g}", "--agent.q_algo=ql", "--agent.is_autograd=2",
           "--action_clip=1", f"--offline_steps={steps}", "--eval_interval=0",
           f"--log_interval={log_every}", f"--save_dir={save_dir}"]
    env = {**os.environ, "OM2P_OFFICIAL_REPO": str(off.repo),
           "OM2P_DATA_ROOT": str(off.data_root), "WANDB_SILENT": "true"}
    return cmd, env


def ours_command(cand: Candidate, dataset: Path, steps: int, log_every: int,
                 out_dir: Path) -> tuple[list[str], dict[str, str]]:
    """``python -m om2p_lite train`` at the paper's size, no evaluation, no progress bar."""
    cmd = [sys.executable, "-m", "om2p_lite", "train", "--dataset", str(dataset),
           "--task", TASK, "--quality", QUALITY, "--reward-variant", REWARD_VARIANT,
           "--algo", "om2p", "--hidden", str(HIDDEN), "--depth", str(DEPTH),
           "--critic-hidden", str(HIDDEN), "--critic-depth", str(DEPTH),
           "--batch-size", str(BATCH), "--lr", f"{LR:g}", "--eta", f"{ETA:g}",
           "--estimator", cand.estimator, "--steps", str(steps), "--log-every", str(log_every),
           "--eval-episodes", "0", "--threads", str(cand.threads), "--out-dir", str(out_dir),
           "--progress", "false"]
    return cmd, dict(os.environ)


# --- reading the programs' logs -----------------------------------------------------------------

def rate(times: dict[int, float], start: int, stop: int, source: Path) -> float:
    """(stop - start) / (t[stop] - t[start]) from a {step: seconds} log."""
    missing = [s for s in (start, stop) if s not in times]
    if missing:
        raise ValueError(f"{source}: no row for step {missing[0]} (logged steps "
                         f"{sorted(times)[:3]}...{sorted(times)[-3:]}). Fix: log every step "
                         f"that --start and --steps name, and train to --steps")
    seconds = times[stop] - times[start]
    if seconds <= 0:
        raise ValueError(f"{source}: time does not grow from step {start} to {stop}")
    return (stop - start) / seconds


def official_times(path: Path) -> dict[int, float]:
    """{step: time/total_time} from the official code's train.csv (header row, then one row
    per logged step; it writes ``step`` and ``time/total_time`` among its columns)."""
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    if not rows or not {"step", "time/total_time"} <= set(rows[0]):
        raise ValueError(f"{path}: no 'step' and 'time/total_time' columns in its header")
    header = rows[0]
    i_step, i_time = header.index("step"), header.index("time/total_time")
    times = {}
    for n, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise ValueError(f"{path}: line {n} has {len(row)} fields, the header "
                             f"{len(header)}")
        times[int(row[i_step])] = float(row[i_time])
    return times


def ours_times(path: Path) -> dict[int, float]:
    """{step: wall_s} of the training rows of om2p-lite's log.jsonl."""
    times = {}
    for line in path.read_text().splitlines():
        row = json.loads(line)
        if row.get("kind") == "train":
            times[int(row["step"])] = float(row["wall_s"])
    return times


def find_official_csv(save_dir: Path) -> Path:
    """The official code nests its train.csv under save_dir/<project>/<group>/<name>/."""
    found = sorted(save_dir.rglob("train.csv"))
    if len(found) != 1:
        raise ValueError(f"{save_dir}: expected one train.csv below it, found {len(found)}")
    return found[0]


# --- child processes ----------------------------------------------------------------------------

def run_child(cmd: list[str], env: dict[str, str], log: Path, timeout: float,
              cwd: Path = ROOT) -> dict[str, Any]:
    """Run ``cmd`` to its end with stdout and stderr in ``log``; its exit code, wall seconds
    and CPU seconds and peak resident memory (MiB) from its own rusage (``os.wait4``). A run
    past ``timeout`` is killed (its process group) and reported with ``timed_out``."""
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    timed_out = False
    try:
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() - t0 > timeout and not timed_out:
                os.killpg(proc.pid, 9)
                timed_out = True
            time.sleep(0.2)
    except BaseException:  # Ctrl-C does not reach the child's own session: stop it here
        os.killpg(proc.pid, 9)
        proc.wait()
        raise
    proc.returncode = os.waitstatus_to_exitcode(status)
    return {"rc": proc.returncode, "timed_out": timed_out, "wall_s": time.perf_counter() - t0,
            "cpu_s": usage.ru_utime + usage.ru_stime,
            "peak_rss_mib": usage.ru_maxrss / 1024}  # ru_maxrss: KiB on Linux


def start_load(n: int) -> list[subprocess.Popen]:
    """``n`` busy processes (a Python spin loop each) for the length of the sitting."""
    return [subprocess.Popen([sys.executable, "-c", SPIN], stdin=subprocess.DEVNULL)
            for _ in range(n)]


def stop_load(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.kill()
    for p in procs:
        p.wait(timeout=30)


def tail(path: Path, lines: int = 15) -> str:
    text = path.read_text(errors="replace").splitlines() if path.exists() else []
    return "\n".join(text[-lines:])


# --- the data set and the arithmetic ------------------------------------------------------------

def import_dataset(src: Path, work: Path) -> tuple[Path, str]:
    """The official files as an om2p-lite data set (``python -m om2p_lite data import``);
    2-d actions (the official MPE fork's forces) are read with ``--action-layout force-xy``,
    which gives the same force in om2p-lite's 5-d Spread actions. Returns the file and a
    note of how the actions were read."""
    width = np.load(src / "acs_0.npy", mmap_mode="r", allow_pickle=False).shape[1]
    layout = "force-xy" if width == 2 else "native"
    note = ("the official files; their 2-d actions (the official MPE fork's forces) read "
            "with --action-layout force-xy as the same force in Spread's 5-d actions"
            if layout == "force-xy" else "the official files unchanged")
    out = work / f"{TASK}_official.npz"
    cmd = [sys.executable, "-m", "om2p_lite", "data", "import", str(src), "--task", "spread",
           "--reward-variant", REWARD_VARIANT, "--quality", QUALITY, "--out", str(out),
           "--action-layout", layout]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    if res.returncode != 0:
        raise SystemExit(f"data import failed:\n{res.stdout}{res.stderr}")
    return out, note


def step_flops(dataset: Path, estimator: str) -> float:
    """Matrix-multiply FLOPs of one om2p-lite step at the paper's size (forward and backward
    of one ``agent.update``, counted by torch; mean over two updates)."""
    from population import population

    from om2p_lite.data.dataset import load_dataset

    calls = population("om2p", 1, HIDDEN, DEPTH, BATCH, load_dataset(dataset),
                       torch.device("cpu"), task=TASK, quality=QUALITY,
                       reward_variant=REWARD_VARIANT, lr=LR, eta=ETA, estimator=estimator)
    return calls["flops"]()


def matmul_peaks() -> dict[str, float]:
    """float32 ``a @ b`` rate (GFLOP/s) on one thread and on all cores."""
    from population import matmul_peak

    from om2p_lite.runtime.cores import usable_cores

    before = torch.get_num_threads()
    out = {}
    for n in sorted({1, usable_cores()}):
        torch.set_num_threads(n)
        out[f"{n}_threads"] = matmul_peak(torch.device("cpu")) / 1e9
    torch.set_num_threads(before)
    return out


def file_sha256(*paths: Path) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


# --- the sitting --------------------------------------------------------------------------------

def run_one(cand: Candidate, off: Official, dataset: Path, work: Path, tag: str,
            args: argparse.Namespace) -> dict[str, Any]:
    """One training run of ``cand``; its steps/s from --start to --steps, peak RSS, load."""
    folder = work / tag
    if cand.official:
        cmd, env = official_command(off, args.steps, args.log_every, folder)
    else:
        cmd, env = ours_command(cand, dataset, args.steps, args.log_every, folder)
    load0 = os.getloadavg()[0]
    res = run_child(cmd, env, work / f"{tag}.log", args.run_timeout)
    res.update(candidate=cand.name, load_before=load0, load_after=os.getloadavg()[0],
               steps_per_s=None)
    try:
        if res["rc"] != 0:
            raise ValueError(f"exit code {res['rc']}" + (" (timed out)" if res["timed_out"]
                                                         else ""))
        if cand.official:
            source = find_official_csv(folder)
            times = official_times(source)
        else:
            source = folder / LOG_NAME
            times = ours_times(source)
        res["steps_per_s"] = rate(times, args.start, args.steps, source)
    except (ValueError, OSError) as err:
        res["error"] = str(err)
        print(f"  {cand.name} failed: {err}\n{tail(work / f'{tag}.log')}", flush=True)
    return res


def summarise(cands: list[Candidate], runs: list[dict], flops: dict[str, float],
              peak: float) -> list[dict[str, Any]]:
    """Per candidate: median steps/s over rounds, ratio to the official's, GFLOP/s."""
    def median(name: str, key: str) -> float | None:
        vals = [r[key] for r in runs if r["candidate"] == name and r[key] is not None]
        return statistics.median(vals) if vals else None

    official = median("official", "steps_per_s")
    rows = []
    for c in cands:
        all_sps = [r["steps_per_s"] for r in runs
                   if r["candidate"] == c.name and r["steps_per_s"] is not None]
        sps = statistics.median(all_sps) if all_sps else None
        row = {"candidate": c.name, "estimator": c.estimator or "zero (is_autograd=2)",
               "threads": "jax" if c.official else c.threads, "steps_per_s": sps,
               "min": min(all_sps, default=None), "max": max(all_sps, default=None),
               "runs": len(all_sps), "vs_official": sps / official if sps and official else None,
               "peak_rss_mib": round(median(c.name, "peak_rss_mib") or 0)}
        if not c.official:
            row["gflop_per_step"] = flops[c.estimator] / 1e9
            row["gflops_per_s"] = flops[c.estimator] * sps / 1e9 if sps else None
            row["of_peak"] = row["gflops_per_s"] / peak if sps else None
        rows.append(row)
    return rows


def target_checks(rows: list[dict[str, Any]], load: int) -> list[dict[str, Any]]:
    """The issue's target: om2p-lite >= 1.5x the official code's steps/s, best candidate and
    each adaptive-thread (default) candidate."""
    ours = [r for r in rows if r["candidate"] != "official" and r["vs_official"]]
    checks = []
    if ours:
        best = max(ours, key=lambda r: r["vs_official"])
        checks.append({"target": f"best om2p-lite ({best['candidate']}) >= {TARGET_RATIO}x "
                                 f"official steps/s, --load {load}",
                       "ratio": best["vs_official"], "met": best["vs_official"] >= TARGET_RATIO})
    for r in ours:
        if r["threads"] == 0:
            checks.append({"target": f"{r['candidate']} (threads 0, the default) >= "
                                     f"{TARGET_RATIO}x official steps/s, --load {load}",
                           "ratio": r["vs_official"], "met": r["vs_official"] >= TARGET_RATIO})
    return checks


def run(args: argparse.Namespace) -> dict[str, Any]:
    off = check_official(args.official_repo, args.official_python, args.official_runner,
                         args.data_root)
    if args.start < 1 or args.steps <= args.start or args.start % args.log_every \
            or args.steps % args.log_every:
        raise SystemExit(f"--start {args.start}, --steps {args.steps}: need 0 < start < steps, "
                         f"both multiples of --log-every {args.log_every}. Fix: e.g. --start 20 "
                         f"--steps 140 --log-every 20")
    if args.rounds < 1 or args.load < 0:
        raise SystemExit("--rounds >= 1 and --load >= 0. Fix: e.g. --rounds 2 --load 0")
    cands = [Candidate("official"), *parse_ours(args.ours)]
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="om2p_peer_") as tmp:
        work = args.work_dir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        if any(work.iterdir()):
            raise SystemExit(f"--work-dir: {work} is not empty (a training run there would "
                             f"resume, not start). Fix: pass a new or empty folder")
        dataset, data_note = import_dataset(off.data_root / SEED_DIR, work)
        flops = {e: step_flops(dataset, e) for e in sorted({c.estimator for c in cands[1:]})}
        gc.collect()
        peaks = matmul_peaks()
        peak = max(peaks.values())
        print(f"matmul peak {peak:.1f} GFLOP/s; GFLOP per om2p-lite step "
              + ", ".join(f"{e} {f / 1e9:.1f}" for e, f in flops.items()), flush=True)
        load_before = os.getloadavg()
        spinners = start_load(args.load)
        runs = []
        t_sitting = time.perf_counter()
        try:
            for r in range(args.rounds):
                for pos, cand in enumerate(round_order(cands, r)):
                    time.sleep(args.pause if runs else 0)
                    res = run_one(cand, off, dataset, work, f"r{r}_{cand.name}", args)
                    res.update(round=r, position=pos)
                    runs.append(res)
                    print(f"  round {r} {cand.name:16s} {res['steps_per_s'] or 0:.3f} steps/s"
                          f"  ({res['wall_s']:.0f} s, CPU {res['cpu_s']:.0f} s, peak RSS "
                          f"{res['peak_rss_mib']:.0f} MiB, load {res['load_before']:.2f})",
                          flush=True)
        finally:
            stop_load(spinners)
        sitting_s = time.perf_counter() - t_sitting
        load_after = os.getloadavg()
    rows = summarise(cands, runs, flops, peak)
    checks = target_checks(rows, args.load)
    record = meta(argparse.Namespace(seed=0, repeats=args.rounds, warmup=0, clock="wall"),
                  torch.device("cpu"),
                  task=f"4-agent Spread ({TASK}), {QUALITY} files of the official layout",
                  dataset=data_note, official_code=OFFICIAL_URL,
                  official_sha256=file_sha256(off.repo / "main.py",
                                              off.repo / "agents" / "fql_meanfield.py"),
                  size=f"actor {DEPTH}x{HIDDEN}, critics 2 x {DEPTH}x{HIDDEN}, batch {BATCH}, "
                       f"lr {LR:g}, eta {ETA:g}",
                  steps=args.steps, start=args.start, log_every=args.log_every,
                  pause_s=args.pause,
                  rounds=args.rounds, load=args.load, sitting_s=sitting_s,
                  load_average_before=list(load_before), load_average_after=list(load_after),
                  matmul_peak_gflops=peaks, gflop_per_step={e: f / 1e9 for e, f in
                                                           flops.items()})
    record.update(
        threads="per candidate: om2p-lite's --threads; the official JAX code uses all cores",
        clock="wall",
        clock_note="steps/s = (steps - start) / (t[steps] - t[start]), t = the official "
                   "train.csv's time/total_time and om2p-lite's log.jsonl wall_s; one value "
                   "per run, the median over rounds per candidate",
        step="every agent updated on one batch of 256 (official: its 4 agents' updates; "
             "om2p-lite: one agent.update of the stacked agents)",
        peak_rss="ru_maxrss of each child process (os.wait4)",
        order="rounds alternate forward and backward through the candidates (A B ... B A)",
        of_peak="achieved GFLOP/s (torch-counted FLOPs x steps/s) / the larger matmul peak")
    payload = {"benchmark": "peer", "meta": record, "results": rows, "runs": runs,
               "targets": checks}
    show(rows, checks)
    name = "peer" if args.load == 0 else f"peer_load{args.load}"
    write_json(args.out, f"{name}_cpu", payload)
    return payload


def show(rows: list[dict[str, Any]], checks: list[dict[str, Any]]) -> None:
    print_table(rows, ["candidate", "threads", "steps_per_s", "min", "max", "vs_official",
                       "gflop_per_step", "gflops_per_s", "of_peak", "peak_rss_mib"],
                "Steps per second at the paper's size (median over rounds)")
    print_table(checks, ["target", "ratio", "met"], "Targets")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--official-repo", type=Path, help=f"the official code ({OFFICIAL_URL})")
    p.add_argument("--official-python", type=Path,
                   help="python of the environment the official code runs in")
    p.add_argument("--official-runner", type=Path,
                   help="script that runs its main.py (wandb off, data under --data-root)")
    p.add_argument("--data-root", type=Path, help=f"folder holding {SEED_DIR}/")
    p.add_argument("--ours", default=DEFAULT_OURS,
                   help="om2p-lite candidates ESTIMATOR:THREADS, comma-separated "
                        "(threads 0: adaptive)")
    p.add_argument("--rounds", type=int, default=2, help="every candidate once per round")
    p.add_argument("--load", type=int, default=0, help="busy background processes")
    p.add_argument("--steps", type=int, default=140, help="training steps per run")
    p.add_argument("--start", type=int, default=20, help="first step of the timed span")
    p.add_argument("--log-every", type=int, default=20, help="both programs' log interval")
    p.add_argument("--pause", type=float, default=0,
                   help="seconds to wait before each run but the first (lets the 1-minute "
                        "load average, which threads 0 reads, settle)")
    p.add_argument("--run-timeout", type=float, default=1800, help="seconds per run")
    p.add_argument("--work-dir", type=Path, default=None,
                   help="keep the runs' folders and logs here (default: a temporary folder)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for the JSON")
    return p


def main(argv: list[str] | None = None) -> dict[str, Any]:
    return run(parser().parse_args(argv))


if __name__ == "__main__":
    main()
