"""Shared plumbing for the ``bench/`` scripts: arguments, timing, peak memory, JSON, tables.

Not a benchmark itself. Timing reuses ``om2p_lite.runtime.timing.median_seconds`` (warm-up, CUDA
synchronisation); provenance reuses ``om2p_lite.provenance``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from om2p_lite.rl.rundir import atomic_write_text
from om2p_lite.runtime.device import pick_device
from om2p_lite.runtime.record import provenance
from om2p_lite.runtime.timing import median_seconds

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "data" / "results" / "bench"
# a simple_spread agent (mpe2, continuous actions): observation 18, action 5
OBS_DIM, ACT_DIM = 18, 5
# network sizes: the paper's public code uses 4 hidden layers of 512; the book trains 3x256
SIZES = {"paper": (512, 4), "book": (256, 3)}
MEMORY_MEASURE = {
    "cpu": "peak of live tensor memory over one training step from torch.profiler's memory "
           "timeline (profile_memory=True, export_memory_timeline(device='cpu')): parameters, "
           "optimiser state, data, gradients and activations, i.e. what "
           "torch.cuda.max_memory_allocated counts on a GPU; not allocator slack or RSS",
    "cuda": "torch.cuda.max_memory_allocated over one training step (reset before it); "
            "includes parameters, optimiser state and data, not the CUDA context",
}


def one_step_stacked(net: Callable[..., torch.Tensor], o: torch.Tensor,
                     eps: torch.Tensor) -> torch.Tensor:
    """a = clip(ε + u_θ(o, ε, 0, 1)) in one expression, for plain or stacked inputs (B, M, ·)
    (eq-one-step): the lean path, without ``sampling.sample_meanflow``'s step loop, so the
    latency benchmark can show that loop's fixed per-call overhead."""
    r = torch.zeros(*eps.shape[:-1], 1, device=eps.device, dtype=eps.dtype)
    return (eps + net(o, eps, r, r + 1)).clamp(-1, 1)  # (eq-one-step)


def base_parser(description: str) -> argparse.ArgumentParser:
    """Arguments every bench script takes."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: auto)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch.set_num_threads on CPU (default 1: steadier on a shared box)")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats per measurement")
    p.add_argument("--warmup", type=int, default=2, help="untimed calls before timing")
    p.add_argument("--sizes", default="paper,book",
                   help=f"comma list of network sizes from {sorted(SIZES)} or WxD, e.g. 64x2")
    p.add_argument("--clock", default="auto", choices=["auto", "wall", "cpu"],
                   help="what 'seconds' means: wall time, or process CPU time (auto: cpu on a "
                        "CPU with 1 thread, steadier on a shared machine; wall on CUDA)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for the JSON")
    p.add_argument("--seed", type=int, default=0)
    return p


def parse_sizes(text: str) -> dict[str, tuple[int, int]]:
    """'paper,book,64x2' → {'paper': (512, 4), 'book': (256, 3), '64x2': (64, 2)}."""
    sizes: dict[str, tuple[int, int]] = {}
    for name in (s.strip() for s in text.split(",") if s.strip()):
        if name in SIZES:
            sizes[name] = SIZES[name]
            continue
        try:
            width, depth = (int(v) for v in name.lower().split("x"))
        except ValueError as err:
            raise SystemExit(f"--sizes: {name!r} is neither one of {sorted(SIZES)} "
                             f"nor WIDTHxDEPTH like 64x2") from err
        sizes[name] = (width, depth)
    if not sizes:
        raise SystemExit("--sizes: give at least one size")
    return sizes


def parse_ints(text: str, what: str) -> list[int]:
    """'1,64,1024' → [1, 64, 1024], with an error that names the option."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError as err:
        raise SystemExit(f"{what}: expected comma-separated integers, got {text!r}") from err
    if not values or min(values) < 1:
        raise SystemExit(f"{what}: need positive integers, got {text!r}")
    return values


def setup(args: argparse.Namespace) -> torch.device:
    """Pick the device, fix the thread count and seed; return the device."""
    if args.threads < 1:
        raise SystemExit(f"--threads must be >= 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    return pick_device(args.device)


def meta(args: argparse.Namespace, device: torch.device, memory: bool = False,
         **extra: Any) -> dict[str, Any]:
    """Everything needed to judge and reproduce a benchmark JSON (``memory``: say how
    peak memory was measured)."""
    record = provenance(seed=args.seed, device=device, command=sys.argv)  # quoted: an
    # empty argument (`--baseline ''`) stays in the recorded command
    record.update(threads=torch.get_num_threads(), interop_threads=torch.get_num_interop_threads(),
                  device_type=device.type, cpu=platform.processor() or platform.machine(),
                  cpu_count=os.cpu_count(), platform=platform.platform(),
                  repeats=args.repeats, warmup=args.warmup, clock=clock_of(args, device),
                  clock_note="'seconds' is median " + (
                      "process CPU time per call (time.process_time; one torch thread)"
                      if clock_of(args, device) == "cpu" else
                      "wall time per call (time.perf_counter" +
                      (", CUDA synchronised)" if device.type == "cuda" else ")")) +
                  "; both clocks are kept as wall_s and cpu_s", **extra)
    if memory:
        record["memory_measure"] = MEMORY_MEASURE[device.type]
    if device.type == "cuda":
        record["gpu"] = torch.cuda.get_device_name(device)
    return record


def clock_of(args: argparse.Namespace, device: torch.device) -> str:
    """'cpu' (process CPU time) on a CPU with one thread unless asked otherwise, else 'wall'.

    On a shared CPU, wall time includes the time other processes held the core; with one
    torch thread, process CPU time is the work this computation did, and it equals wall
    time on an idle machine. GPUs are always timed by the wall clock, synchronised.
    """
    if args.clock == "auto":
        return "cpu" if device.type == "cpu" and torch.get_num_threads() == 1 else "wall"
    if args.clock == "cpu" and device.type == "cuda":
        raise SystemExit("--clock cpu is meaningless on CUDA: use wall (synchronised)")
    return args.clock


def _time(fn: Callable[[], object], device: torch.device, repeats: int,
          inner: int) -> dict[str, float]:
    """Median wall and process-CPU seconds per call over ``repeats`` timed loops of ``inner``."""
    cuda = device.type == "cuda"
    wall, cpu = [], []
    for _ in range(repeats):
        if cuda:
            torch.cuda.synchronize(device)
        w0, c0 = time.perf_counter(), time.process_time()
        for _ in range(inner):
            fn()
        if cuda:
            torch.cuda.synchronize(device)
        wall.append((time.perf_counter() - w0) / inner)
        cpu.append((time.process_time() - c0) / inner)
    return {"wall": statistics.median(wall), "cpu": statistics.median(cpu)}


def calibrate(fn: Callable[[], object], device: torch.device, warmup: int,
              min_seconds: float = 0.01) -> int:
    """Warm ``fn`` up and return how many calls make one timed repeat last ≥ min_seconds."""
    for _ in range(max(warmup, 1)):
        fn()
    probe = median_seconds(fn, repeats=1, warmup=0, device=device)
    if probe >= min_seconds:
        return 1
    return min(1000, max(1, int(min_seconds / max(probe, 1e-7))))


def interleaved_seconds(fns: dict[str, Callable[[], object]], device: torch.device,
                        repeats: int, warmup: int, rounds: int = 3,
                        min_seconds: float = 0.01) -> dict[str, dict[str, float]]:
    """Per fn, median seconds per call by the wall and the process-CPU clock.

    Every fn is timed in turn, ``rounds`` times (median over rounds of the medians over
    ``repeats``): a slow spell of a shared machine then hits all candidates alike, so the
    ratios between them stay fair. Warm-up and calibration happen once, before round one.
    """
    inner = {name: calibrate(fn, device, warmup, min_seconds) for name, fn in fns.items()}
    per: dict[str, list[dict[str, float]]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            per[name].append(_time(fn, device, repeats, inner[name]))
    return {name: {c: statistics.median(t[c] for t in v) for c in ("wall", "cpu")}
            for name, v in per.items()}


def peak_step_memory(step: Callable[[], object], device: torch.device) -> dict[str, float]:
    """Peak live tensor memory (MiB) over one call of ``step``, the same measure on both devices.

    CUDA: ``torch.cuda.max_memory_allocated``. CPU: the total of torch.profiler's memory
    timeline (``profile_memory=True``), which tracks every tensor the step touches, including
    parameters, optimiser state and data. ``extra_mib`` is the peak over the memory live when
    the step starts. Free the previous configuration's tensors before calling this.
    """
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        step()
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device)
        return {"peak_mib": peak / 2**20, "extra_mib": (peak - base) / 2**20}
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True,
                 with_stack=True) as prof:
        step()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "timeline.json"
        with warnings.catch_warnings():  # deprecated for CUDA; still the CPU tool in 2.13
            warnings.simplefilter("ignore", FutureWarning)
            prof.export_memory_timeline(str(path), device="cpu")
        _, sizes = json.loads(path.read_text())
    total = [sum(s) for s in sizes]
    return {"peak_mib": max(total) / 2**20, "extra_mib": (max(total) - total[0]) / 2**20}


def update_flops(agent: Any, batch: Any) -> float:
    """Matrix-multiply FLOPs of one ``agent.update`` (forward and backward), counted by torch:
    the mean over two updates (TD3+BC's actor steps on every second one)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        agent.update(batch)
        agent.update(batch)
    return counter.get_total_flops() / 2


def write_json(out_dir: Path, name: str, payload: dict[str, Any]) -> Path:
    """Write ``payload`` to ``out_dir/name.json`` (suffixed with the device type)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.json"
    atomic_write_text(path, json.dumps(payload, indent=2) + "\n")  # never a half file
    print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return path


def print_table(rows: Sequence[dict[str, Any]], columns: Sequence[str],
                title: str = "") -> None:
    """A plain fixed-width table; floats get 3 significant digits."""
    def fmt(v: Any) -> str:
        if isinstance(v, bool) or v is None:
            return {True: "yes", False: "NO", None: "-"}[v]
        if isinstance(v, float):
            return f"{v:.3g}"
        return str(v)

    cells = [[fmt(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    if title:
        print(f"\n{title}")
    print("  ".join(c.rjust(w) for c, w in zip(columns, widths, strict=True)))
    for row in cells:
        print("  ".join(v.rjust(w) for v, w in zip(row, widths, strict=True)))
