"""Run chapters top to bottom, one kernel each, and record pass/fail and seconds per chapter.

Used by `make test-gpu` (every chapter at smoke on CUDA, record in data/results/gpu/) and to
measure how long each chapter takes at a budget (the numbers behind the book's cell timeout):

    OM2P_BUDGET=book python scripts/run_chapters.py book/02_mean_flow.ipynb --record t.json
    OM2P_DEVICE=cuda python scripts/run_chapters.py --record data/results/gpu/smoke.json

The budget and device come from OM2P_BUDGET / OM2P_DEVICE as in every chapter. The record
holds, per chapter, the status, the wall and CPU seconds (the kernel's user + system time,
less sensitive to a busy machine than the wall time), the slowest cell and the error, plus
the device, the machine's load average before and after, and the git commit. Notebooks are
executed in memory: nothing is written next to them. Exits 1 if any chapter failed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def git_commit() -> str:
    """The library's record of the commit: '-dirty' marks changed code, and a copy of the
    tree sent to another node names its commit in OM2P_GIT_COMMIT."""
    from om2p_lite.runtime.record import git_commit as commit_of

    return commit_of(REPO)


def device_name() -> str:
    """What OM2P_DEVICE (or the default) resolves to, as the chapters print it."""
    from om2p_lite.runtime.device import describe_device, pick_device

    return describe_device(pick_device())


def _children_cpu() -> float:
    """User + system CPU seconds of this process's finished, waited-for children."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_chapter(path: Path, cell_timeout: int) -> dict:
    """Execute one notebook with its folder as the working directory; time it and its cells."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=cell_timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    cell_seconds: list[float] = []
    t_cell = [0.0]

    def before(**_: object) -> None:
        t_cell[0] = time.perf_counter()

    def after(**_: object) -> None:
        cell_seconds.append(time.perf_counter() - t_cell[0])

    client.on_cell_execute = before
    client.on_cell_executed = after
    cpu0 = _children_cpu()
    t0 = time.perf_counter()
    status, error = "passed", None
    try:
        client.execute()
    except (CellExecutionError, CellTimeoutError) as exc:
        lines = [ln for ln in str(exc).splitlines() if ln.strip()] or ["?"]
        status, error = "failed", f"code cell {len(cell_seconds)}: {lines[-1][:300]}"
    except Exception as exc:  # a kernel that dies or will not start
        status, error = "failed", f"{type(exc).__name__}: {exc}"[:300]
    seconds = time.perf_counter() - t0
    cpu = _children_cpu() - cpu0  # the kernel's CPU time: it has exited and been waited for
    slowest = max(range(len(cell_seconds)), key=cell_seconds.__getitem__, default=None)
    return {"chapter": path.name, "status": status, "seconds": round(seconds, 1),
            "cpu_seconds": round(cpu, 1),
            "slowest_cell": None if slowest is None else
            {"index": slowest, "seconds": round(cell_seconds[slowest], 1)},
            "error": error}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path,
                        help="chapters to run (default: every book/NN_*.ipynb)")
    parser.add_argument("--record", type=Path, default=None, help="write the record here (JSON)")
    parser.add_argument("--cell-timeout", type=int, default=1800, help="seconds per cell")
    parser.add_argument("--note", action="append", default=[], metavar="KEY=VALUE",
                        help="add KEY: VALUE to the record (repeatable)")
    args = parser.parse_args(argv)
    notebooks = args.notebooks or sorted((REPO / "book").glob("[0-9][0-9]_*.ipynb"))
    missing = [str(p) for p in notebooks if not p.is_file()]
    if missing:
        print(f"run_chapters: no such notebook(s): {missing}. Fix: pass book/NN_name.ipynb")
        return 2

    notes = dict(n.split("=", 1) for n in args.note if "=" in n)
    if len(notes) != len(args.note):
        print(f"run_chapters: --note takes KEY=VALUE, got {args.note}")
        return 2
    load_before = os.getloadavg()
    record = {"budget": os.environ.get("OM2P_BUDGET", "book"),
              "device": device_name(), "host_cpus": os.cpu_count(),
              "python": platform.python_version(), "commit": git_commit(),
              "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "load_before": [round(x, 2) for x in load_before], **notes, "chapters": []}
    for path in notebooks:
        result = run_chapter(path.resolve(), args.cell_timeout)
        record["chapters"].append(result)
        print(f"{result['status']:6s} {result['seconds']:7.1f}s "
              f"(cpu {result['cpu_seconds']:.0f}s)  {path.name}"
              + (f"  ({result['error']})" if result["error"] else ""), flush=True)
    record["load_after"] = [round(x, 2) for x in os.getloadavg()]
    record["passed"] = all(c["status"] == "passed" for c in record["chapters"])
    record["total_seconds"] = round(sum(c["seconds"] for c in record["chapters"]), 1)
    if args.record:
        args.record.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.record.with_suffix(args.record.suffix + ".tmp")
        tmp.write_text(json.dumps(record, indent=2) + "\n")
        tmp.replace(args.record)
        print(f"record: {args.record}")
    print(f"run_chapters: {len(notebooks)} chapters, "
          f"{sum(c['status'] == 'passed' for c in record['chapters'])} passed, "
          f"{record['total_seconds']} s, device {record['device']}, "
          f"load {record['load_before'][0]} -> {record['load_after'][0]}")
    return 0 if record["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
