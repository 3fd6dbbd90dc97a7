"""What produced a number: command, seed, device, versions, git commit, date.

Not a results store: it returns a dict that callers write beside their results.
"""

from __future__ import annotations

import datetime as dt
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any


def git_commit(path: str | Path | None = None) -> str:
    """The current commit (with '-dirty' if the tree has changes), or 'unknown'."""
    cwd = Path(path) if path else Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True,
                             text=True, check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=cwd, capture_output=True, text=True, check=True,
                               timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{sha}-dirty" if dirty else sha


def provenance(seed: int | None = None, device: Any = None, budget: Any = None,
               command: str | None = None) -> dict[str, Any]:
    """A record to keep beside a result: how to reproduce it and on what it ran."""
    import torch

    from om2p_lite import __version__
    from om2p_lite.runtime.device import describe_device

    return {
        "command": command if command is not None else " ".join(sys.argv),
        "seed": seed,
        "device": describe_device(torch.device(device)) if device is not None else None,
        "budget": getattr(budget, "name", budget),
        "om2p_lite": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "git_commit": git_commit(),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
