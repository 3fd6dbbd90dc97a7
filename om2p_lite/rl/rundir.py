"""A run folder's files, written safely: one owner at a time, atomic writes, safe checkpoints,
and the run's log (``RunLog``: ``log.jsonl`` and ``metrics.csv``).

Not the training loop (``population``): these are the file rules every run folder follows.
A checkpoint holds tensors and plain Python types only and is read with
``torch.load(weights_only=True)``, so a crafted file cannot run code.
"""

from __future__ import annotations

import json
import math
import os
import socket
import time
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

LOCK_NAME = ".lock"
STATUS_NAME = "status.json"


class RunFolderBusy(RuntimeError):
    """Another process owns the run folder."""


class CheckpointError(ValueError):
    """A checkpoint file that is missing, empty, truncated or unsafe to load."""


class NonFiniteError(RuntimeError):
    """A run's loss or parameters became NaN or infinite."""

    def __init__(self, message: str, members: list[int] | None = None, step: int = 0):
        super().__init__(message)
        self.members = members or []
        self.step = step


def _tmp_name(path: Path) -> Path:
    """A temporary name beside ``path`` that no other writer can pick."""
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to a unique temporary file, then rename it over ``path``."""
    path = Path(path)
    tmp = _tmp_name(path)
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` atomically: readers see the old file or the new one, never a part."""
    return atomic_write_bytes(path, text.encode())


def _non_finite_key(obj: Any, where: str = "") -> str | None:
    """The dotted key of the first NaN/inf float in ``obj``, or None."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return where or "<value>"
    if isinstance(obj, dict):
        for k, v in obj.items():
            found = _non_finite_key(v, f"{where}.{k}" if where else str(k))
            if found:
                return found
    if isinstance(obj, list | tuple):
        for i, v in enumerate(obj):
            found = _non_finite_key(v, f"{where}[{i}]")
            if found:
                return found
    return None


def atomic_write_json(path: str | Path, obj: Any, indent: int | None = 1) -> Path:
    """Write ``obj`` as strict JSON atomically; NaN or inf is refused, naming its key."""
    bad = _non_finite_key(obj)
    if bad is not None:
        raise ValueError(f"{Path(path).name}: value at '{bad}' is not finite; JSON has no "
                         f"NaN or inf. Fix: find why the run produced it (a diverged run "
                         f"stops with NonFiniteError) instead of writing it")
    return atomic_write_text(path, json.dumps(obj, indent=indent, allow_nan=False) + "\n")


def save_checkpoint(path: str | Path, blob: dict[str, Any]) -> Path:
    """``torch.save`` ``blob`` (tensors and plain types only) atomically to ``path``."""
    path = Path(path)
    tmp = _tmp_name(path)
    try:
        torch.save(blob, tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True``; ``CheckpointError`` says what is wrong."""
    path = Path(path)
    fix = ("Fix: delete it to start the run afresh (or train with resume=False), or restore "
           "the file from its source")
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found. Fix: give a run folder with a "
                              f"checkpoint.pt written by training")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: checkpoint is empty (a write was cut off?). {fix}")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except pickle_errors() as err:
        text = str(err)
        if "weights_only" in text or "Unsupported global" in text or "GLOBAL" in text:
            raise CheckpointError(f"{path}: checkpoint holds Python objects other than "
                                  f"tensors and plain types, which could run code when "
                                  f"loaded; refused. Fix: only load checkpoints written "
                                  f"by this library") from None
        raise CheckpointError(f"{path}: checkpoint is truncated or corrupt ({type(err).__name__}"
                              f": {text.splitlines()[0] if text else ''}). {fix}") from None
    if not isinstance(blob, dict) or "step" not in blob:
        raise CheckpointError(f"{path}: not a training checkpoint (no 'step'). {fix}")
    return blob


def pickle_errors() -> tuple[type[BaseException], ...]:
    """What a bad file makes ``torch.load`` raise."""
    import pickle
    import zipfile

    return (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, zipfile.BadZipFile,
            OSError, KeyError, AttributeError, TypeError, ImportError, IndexError)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
                              f"taken over", RuntimeWarning, stacklevel=3)
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


def write_status(folder: str | Path, status: str, **fields: Any) -> Path:
    """``status.json`` = {"status": ..., **fields}, atomically (e.g. failed, with the error)."""
    return atomic_write_json(Path(folder) / STATUS_NAME, {"status": status, **fields})


def clear_status(folder: str | Path) -> None:
    """Remove a previous attempt's ``status.json``."""
    (Path(folder) / STATUS_NAME).unlink(missing_ok=True)


class RunLog:
    """Rows as JSONL (one write per row) plus ``metrics.csv`` (rewritten atomically).

    In memory only when there is no folder. The folder's owner (``run_folder_lock``)
    is the only writer; on resume the rows after the checkpoint's step are dropped
    (atomically), so the log of a resumed run equals that of a run that never stopped.
    """

    def __init__(self, out_dir: Path | None, resume_step: int | None = None):
        self.rows: list[dict[str, Any]] = []
        self.path = out_dir / "log.jsonl" if out_dir else None
        if self.path and resume_step is not None and self.path.exists():
            kept = []
            for line in self.path.read_text().splitlines():
                try:
                    kept.append(json.loads(line))
                except ValueError:  # a line cut off by a kill: the checkpoint predates it
                    break
            self.rows = [r for r in kept if r["step"] <= resume_step]
            atomic_write_text(self.path, "".join(_line(r) for r in self.rows))
        elif self.path and self.path.exists():
            self.path.unlink()

    def add(self, row: dict[str, Any]) -> None:
        """Append a row (and write it through in one write call)."""
        self.rows.append(row)
        if self.path:
            with open(self.path, "a") as fh:
                fh.write(_line(row))

    def write_csv(self) -> None:
        """metrics.csv: one line per row, union of scalar columns, written atomically.

        List values (an evaluation's per-episode ``returns``) stay in ``log.jsonl`` only.
        """
        if self.path and self.rows:
            import pandas as pd

            scalars = [{k: v for k, v in r.items() if not isinstance(v, list)}
                       for r in self.rows]
            atomic_write_text(self.path.with_name("metrics.csv"),
                              pd.DataFrame(scalars).to_csv(index=False))


def _line(row: dict[str, Any]) -> str:
    return json.dumps(row) + "\n"
