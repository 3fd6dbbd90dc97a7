"""A run folder, owned by one process and written safely: ``RunFolder`` names its files and
reads and writes them (config, status, result, the claim), ``run_folder_lock`` makes one owner
at a time, atomic writes leave a whole file or the previous one, ``RunLog`` keeps the run's
log (``log.jsonl`` and ``metrics.csv``), and the fields a finished or resumed run may differ in.

Not the training loop (``train``), what each file must hold (``runfiles``: the file names,
the validators and ``read_run_file``) nor the lock itself (``runlock``): both are
re-exported here, so that callers need one module. A folder's owner is its only writer; a
damaged or foreign file is refused with one ``RunFileError`` line naming the file, the
problem and the fix.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import math
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from om2p_lite.rl.runfiles import (  # re-exported: rundir is the one door to a run folder
    CHECKPOINT_FORMAT,
    CHECKPOINT_NAME,
    CLAIM_NAME,
    CONFIG_NAME,
    LOCK_NAME,
    LOG_NAME,
    METRICS_NAME,
    RESULT_NAME,
    STATUS_NAME,
    CheckpointError,
    RunFileError,
    check_run_folder,
    check_training_checkpoint,
    damaged,
    load_checkpoint,
    pickle_errors,
    read_run_file,
)
from om2p_lite.rl.runlock import (  # re-exported: rundir is the one door to a run folder
    RunFolderBusy,
    read_lock,
    run_folder_lock,
)

__all__ = [
    "CHECKPOINT_FORMAT", "CHECKPOINT_NAME", "CLAIM_NAME", "CONFIG_NAME", "LOCK_NAME",
    "LOG_NAME", "METRICS_NAME", "RESULT_NAME", "STATUS_NAME", "DRIVING_FIELDS",
    "RESUME_FREE", "RESULT_FREE", "CheckpointError", "NonFiniteError", "RunFileError",
    "RunFolder", "RunFolderBusy", "RunLog", "atomic_write_bytes", "atomic_write_json",
    "atomic_write_text", "check_folder", "check_run_folder", "check_training_checkpoint",
    "damaged", "describe_os_error", "load_checkpoint", "pickle_errors", "read_lock",
    "read_run_file", "run_folder_lock", "save_checkpoint",
]

# TrainConfig fields that do not change what a run computes: one list, widened twice.
# How a run is driven (members of one population may differ in them: ``population_key``).
DRIVING_FIELDS = frozenset({"progress", "threads", "compile"})
# What a resumed run may change; the rest must match its checkpoint's config.
RESUME_FREE = DRIVING_FIELDS | {"stop_at", "checkpoint_every", "device", "out_dir"}
# What a finished result may differ in from the experiment and still count: the dataset is
# recorded by its checksum in the result, and its path may differ per machine.
RESULT_FREE = RESUME_FREE | {"dataset"}
# what a failing write (rather than a wrong path) raises: full disk, quota, size, I/O error
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO})


class NonFiniteError(RuntimeError):
    """A run's loss or parameters became NaN or infinite."""

    def __init__(self, message: str, members: list[int] | None = None, step: int = 0):
        super().__init__(message)
        self.members = members or []
        self.step = step


def _tmp_name(path: Path) -> Path:
    """A temporary name beside ``path`` that no other writer can pick."""
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


def atomic_write_bytes(path: str | Path, data: bytes | memoryview) -> Path:
    """Write ``data`` to a unique temporary file, then rename it over ``path``.

    A failed write (a full disk) leaves the previous file as it was and raises an
    ``OSError`` that says so, naming ``path``.
    """
    path = Path(path)
    tmp = _tmp_name(path)
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as err:
        if err.errno not in WRITE_ERRNOS:
            raise  # e.g. a folder where the file should be: describe_os_error's message
        raise OSError(err.errno, f"{err.strerror or err}: {path.name} was not "
                      f"replaced (the previous one, if any, is intact)", str(path)) from None
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
    """``torch.save`` ``blob`` (tensors and plain types only) atomically to ``path``.

    Serialised in memory first, so that a failed write is an ``OSError`` of
    ``atomic_write_bytes`` (previous checkpoint intact), not an error deep in torch's writer.
    """
    buf = io.BytesIO()
    torch.save(blob, buf)
    return atomic_write_bytes(path, buf.getbuffer())


class RunLog:
    """Rows as JSONL (one write per row) plus ``metrics.csv`` (rewritten atomically).

    In memory only when there is no folder. The folder's owner (``run_folder_lock``)
    is the only writer; on resume the rows after the checkpoint's step are dropped
    (atomically), so the log of a resumed run equals that of a run that never stopped.
    """

    def __init__(self, out_dir: Path | None, resume_step: int | None = None):
        self.rows: list[dict[str, Any]] = []
        self.path = out_dir / LOG_NAME if out_dir else None
        if self.path and resume_step is not None and self.path.exists():
            # checked rows; a last line cut off by a kill is dropped (the checkpoint predates it)
            self.rows = [r for r in read_run_file(self.path) if r["step"] <= resume_step]
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
            atomic_write_text(self.path.with_name(METRICS_NAME),
                              pd.DataFrame(scalars).to_csv(index=False))


def _line(row: dict[str, Any]) -> str:
    return json.dumps(row) + "\n"



# ----------------------------------------------------------------------------- folders


def check_folder(path: str | Path, what: str) -> Path:
    """Raise a ``ValueError`` naming the path and the fix if ``path`` cannot be a writable
    folder (a file stands on it or above it, or it is not writable)."""
    path = Path(path)
    probe = path
    while not probe.exists():
        if probe.is_symlink():
            raise ValueError(f"{what} {path}: {probe} is a broken link. Fix: remove it or "
                             f"point it at a folder")
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        where = "is a file" if probe == path else f"needs {probe} to be a folder, but it is a file"
        raise ValueError(f"{what} {path}: {where}. Fix: move or delete {probe}, or choose "
                         f"another {what}")
    if probe.exists() and not os.access(probe, os.W_OK | os.X_OK):
        raise ValueError(f"{what} {path}: cannot write in {probe} (permission denied). Fix: "
                         f"make it writable (chmod u+w {probe}) or choose another {what}")
    return path


def describe_os_error(err: OSError) -> str:
    """An ``OSError`` as 'path: problem. Fix: ...'."""
    path = err.filename or "a path"
    fixes = {
        NotADirectoryError: "a file stands where a folder is expected: move or delete it",
        IsADirectoryError: "a folder stands where a file is expected: move it or name a file",
        FileExistsError: "something already exists there: move or delete it, or choose "
                         "another name",
        PermissionError: "make it writable/readable (chmod) or choose another location",
        FileNotFoundError: "check the path; create the folder above it",
    }
    fix = next((f for kind, f in fixes.items() if isinstance(err, kind)),
               "check the path, the free disk space and the permissions")
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        fix = ("free space on that disk (or raise the quota), then rerun the same command: "
               "a run resumes from its last checkpoint")
    return f"{path}: {err.strerror or err}. Fix: {fix}"


class RunFolder:
    """One run's folder: the path of each of its files, and what is read and written there.

    ``RunFolder.of(root, task, quality, algo, seed, variant)`` is the layout of a results
    tree, ``{root}/{task}/{quality}/{algo}[/{variant}]/seed{seed}``. The trainer owns the
    folder while it trains (``lock``); the grid and ``train --out-dir`` claim it from
    before training until ``result.json`` is written (``claim``).
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)

    @classmethod
    def of(cls, root: str | Path, task: str, quality: str, algo: str, seed: int,
           variant: str | None = None) -> RunFolder:
        """The folder of one run of a results tree below ``root``."""
        base = Path(root) / task / quality / algo
        return cls((base / variant if variant else base) / f"seed{seed}")

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    @property
    def config_file(self) -> Path:
        return self.path / CONFIG_NAME

    @property
    def result_file(self) -> Path:
        return self.path / RESULT_NAME

    @property
    def status_file(self) -> Path:
        return self.path / STATUS_NAME

    @property
    def checkpoint_file(self) -> Path:
        return self.path / CHECKPOINT_NAME

    @property
    def log_file(self) -> Path:
        return self.path / LOG_NAME

    @property
    def metrics_file(self) -> Path:
        return self.path / METRICS_NAME

    def lock(self) -> contextlib.AbstractContextManager[Path]:
        """Own the folder for the block (``run_folder_lock``)."""
        return run_folder_lock(self.path)

    @contextmanager
    def claim(self) -> Iterator[None]:
        """Claim the run for this process from before training until its ``result.json``
        is written (the trainer owns the folder only while it trains). A second claimant
        gets ``RunFolderBusy``; a claim left by a killed process is taken over."""
        claim = self.path / CLAIM_NAME
        try:
            with run_folder_lock(claim):
                yield
        finally:
            with contextlib.suppress(OSError):
                claim.rmdir()  # empty once the lock is released, unless another claimant came

    def check(self) -> dict[str, Any]:
        """Every run file present, read and checked (``runfiles.check_run_folder``)."""
        return check_run_folder(self.path)

    def write_config(self, values: dict[str, Any]) -> Path:
        """``config.json``: the run's settings, atomically."""
        return atomic_write_json(self.config_file, values)

    def write_status(self, status: str, **fields: Any) -> Path:
        """``status.json`` = {"status": ..., **fields}, atomically (e.g. failed, the error)."""
        return atomic_write_json(self.status_file, {"status": status, **fields})

    def clear_status(self) -> None:
        """Remove a previous attempt's ``status.json``."""
        self.status_file.unlink(missing_ok=True)

    def mark_failed(self, error: str) -> None:
        """Leave ``status.json`` = failed (unless the trainer already did); a folder that
        cannot take it is left as it is (the grid's log names the problem)."""
        try:
            if self.status_file.is_file() and read_run_file(self.status_file)["status"] == "failed":
                return
            self.path.mkdir(parents=True, exist_ok=True)
            self.write_status("failed", step=None, error=error)
        except (OSError, ValueError):
            pass

    def read_result(self) -> dict[str, Any] | None:
        """``result.json`` (checked by ``read_run_file``), None if there is none; a damaged
        one raises ``RunFileError`` rather than being run over."""
        if not self.result_file.is_file():
            return None
        return read_run_file(self.result_file)

    def write_result(self, result: dict[str, Any], keep_checkpoint: bool = True) -> Path:
        """``result.json``, atomically; then drop the checkpoint unless ``keep_checkpoint``."""
        path = atomic_write_json(self.result_file, result)
        if not keep_checkpoint and self.checkpoint_file.exists():
            self.checkpoint_file.unlink()
        return path
