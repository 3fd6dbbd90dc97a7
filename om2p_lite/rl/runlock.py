"""One owner per run folder: ``run_folder_lock`` holds a lock file with this process's pid
and host for a block; a second owner gets ``RunFolderBusy``, a stale lock is taken over.

Not the run folder's files (``rundir``, which re-exports these, and ``runfiles``).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from om2p_lite.rl.runfiles import LOCK_NAME


class RunFolderBusy(RuntimeError):
    """Another process owns the run folder."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _caller_stacklevel() -> int:
    """The ``stacklevel`` that names the first frame outside this module and ``contextlib``,
    so a warning points at the caller's ``with`` line, not at ``contextlib``'s internals."""
    skip = {os.path.abspath(__file__), os.path.abspath(contextlib.__file__)}
    frame, level = sys._getframe(1), 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename) in skip:
        frame, level = frame.f_back, level + 1
    return level


def read_lock(lock: Path) -> dict[str, Any]:
    """The owner recorded in a lock file ({} if unreadable)."""
    try:
        owner = json.loads(lock.read_text())
        return owner if isinstance(owner, dict) else {}
    except (OSError, ValueError):
        return {}


@contextmanager
def run_folder_lock(path: str | Path) -> Iterator[Path]:
    """Own the run folder ``path`` for the block: a lock file with this pid and host.

    A second owner gets ``RunFolderBusy``. A stale lock (its process on this host is gone,
    e.g. a killed run) is reported with a warning and taken over; a lock from another
    host cannot be checked and is refused with the fix.
    """
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"{folder}: is a file, but a run folder is needed there. "
                                 f"Fix: choose another out_dir or move the file away")
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / LOCK_NAME
    me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
    for _ in range(3):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            owner = read_lock(lock)
            pid, host = owner.get("pid"), owner.get("host")
            if host == me["host"] and isinstance(pid, int) and not _pid_alive(pid):
                warnings.warn(f"{folder}: stale lock of process {pid} (no longer running) "
                              f"taken over", RuntimeWarning, stacklevel=_caller_stacklevel())
                lock.unlink(missing_ok=True)
                continue
            if not owner:  # being written right now, or garbage: look again shortly
                time.sleep(0.05)
                owner = read_lock(lock)
                if not owner:
                    raise RunFolderBusy(f"{folder}: unreadable lock file {lock}. Fix: if no "
                                        f"run uses this folder, delete {lock}") from None
                continue
            raise RunFolderBusy(f"{folder}: in use by process {pid} on {host}. Fix: wait for "
                                f"it to finish, use another out_dir, or, if that process is "
                                f"gone, delete {lock}") from None
        with os.fdopen(fd, "w") as fh:
            fh.write(json.dumps(me))
        break
    else:
        raise RunFolderBusy(f"{folder}: could not take the lock {lock}")
    try:
        yield folder
    finally:
        if read_lock(lock).get("pid") == me["pid"]:
            lock.unlink(missing_ok=True)
