"""The ``python -m om2p_lite bench`` sub-command: runs ``bench/run_all.py`` from a checkout.

Not the benchmarks: they are plain scripts in ``bench/`` (not installed with the package).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from om2p_lite.cli.args import positive

RUN_ALL = Path(__file__).resolve().parents[2] / "bench" / "run_all.py"


def _bench(args: argparse.Namespace) -> int:
    if not RUN_ALL.is_file():
        raise FileNotFoundError(f"{RUN_ALL} not found: the benchmarks live in the source "
                                f"checkout's bench/ folder, not in an installed package")
    cmd = [sys.executable, str(RUN_ALL), "--budget", args.budget, "--threads",
           str(args.threads)]
    if args.device:
        cmd += ["--device", args.device]
    if args.only:
        cmd += ["--only", args.only]
    if args.note:
        cmd += ["--note", args.note]
    return subprocess.run(cmd, check=False).returncode


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``bench`` to the command line."""
    p = subparsers.add_parser("bench", help="sampling latency, training-step cost and "
                                            "scaling benchmarks (writes data/results/bench)")
    p.add_argument("--budget", default="cpu", choices=["smoke", "cpu", "gpu"])
    p.add_argument("--device", default=None, help="cpu | cuda | cuda:N (default: auto)")
    p.add_argument("--threads", type=positive, default=1, help="torch threads on CPU")
    p.add_argument("--only", default="", help="comma list of scripts to run")
    p.add_argument("--note", default="", help="a line for PROVENANCE.md")
    p.set_defaults(func=_bench)
