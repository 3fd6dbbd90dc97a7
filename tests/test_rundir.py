"""Run folders fail safely: a checkpoint cannot run code, a bad one gets a clear error, one
process owns a folder at a time, JSON never holds NaN, and a killed run's lock is reported."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from om2p_lite.rl.config import TrainConfig
from om2p_lite.rl.rundir import (
    LOCK_NAME,
    CheckpointError,
    RunFolderBusy,
    atomic_write_json,
    atomic_write_text,
    load_checkpoint,
    run_folder_lock,
    save_checkpoint,
)
from om2p_lite.rl.train import train

TINY = TrainConfig(steps=3, batch_size=8, hidden=8, depth=1, critic_hidden=8, critic_depth=1,
                   eval_every=0, eval_episodes=2, eval_max_steps=3, log_every=1,
                   progress=False, threads=1)


@pytest.fixture(scope="module")
def spread():
    from om2p_lite.data.generate import make_dataset

    return make_dataset("spread", "expert", 0, n_transitions=200)[0]


class _Payload:
    """Unpickling this calls ``Path.touch(marker)``: proof that loading ran code."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_checkpoint_with_a_pickled_callable_is_refused_and_runs_nothing(spread,
                                                                       tmp_path: Path) -> None:
    run = tmp_path / "run"
    cfg = dataclasses.replace(TINY, out_dir=str(run))
    train(cfg, dataset=spread)
    blob = torch.load(run / "checkpoint.pt", weights_only=True)
    marker = tmp_path / "pwned"
    blob["agent"]["payload"] = _Payload(marker)
    torch.save(blob, run / "checkpoint.pt")  # what a crafted file looks like
    with pytest.raises(CheckpointError, match="checkpoint.pt.*refused.*Fix"):
        load_checkpoint(run / "checkpoint.pt")
    with pytest.raises(CheckpointError, match="refused"):
        train(dataclasses.replace(cfg, steps=5), dataset=spread)  # resuming reads it
    assert not marker.exists()
    # control: the payload does run code when loaded unsafely (so the test can fail)
    torch.load(run / "checkpoint.pt", weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize("damage", ["empty", "truncated", "garbage", "missing"])
def test_bad_checkpoint_gives_a_clear_error(damage: str, tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"step": 3, "agent": {"w": torch.randn(100, 100)}})
    assert load_checkpoint(path)["step"] == 3
    data = path.read_bytes()
    if damage == "empty":
        path.write_bytes(b"")
    elif damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(b"not a checkpoint at all")
    else:
        path.unlink()
    with pytest.raises(CheckpointError, match=f"{path.name}.*(Fix|afresh)") as err:
        load_checkpoint(path)
    assert str(path) in str(err.value)


def test_truncated_checkpoint_stops_resume_with_the_fix(spread, tmp_path: Path) -> None:
    run = tmp_path / "run"
    cfg = dataclasses.replace(TINY, out_dir=str(run), stop_at=2)
    train(cfg, dataset=spread)
    ckpt = run / "checkpoint.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="truncated or corrupt.*resume=False"):
        train(dataclasses.replace(cfg, stop_at=0), dataset=spread)
    assert train(dataclasses.replace(cfg, stop_at=0), dataset=spread, resume=False)["finished"]


def test_lock_refuses_a_second_owner_and_reports_a_stale_lock(tmp_path: Path) -> None:
    run = tmp_path / "run"
    with run_folder_lock(run):
        owner = json.loads((run / LOCK_NAME).read_text())
        assert owner["pid"] == os.getpid() and owner["host"]
        with pytest.raises(RunFolderBusy, match=f"process {os.getpid()}.*Fix"):
            with run_folder_lock(run):
                pass
    assert not (run / LOCK_NAME).exists()  # released
    # a lock left by a process that is gone (a killed run) is reported and taken over
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    pid = int(dead.stdout)
    import socket

    (run / LOCK_NAME).write_text(json.dumps({"pid": pid, "host": socket.gethostname()}))
    with pytest.warns(RuntimeWarning, match=f"stale lock of process {pid}") as caught:
        with run_folder_lock(run):
            assert json.loads((run / LOCK_NAME).read_text())["pid"] == os.getpid()
    assert caught[0].filename == __file__  # it names the caller's line, not contextlib's
    (run / LOCK_NAME).write_text(json.dumps({"pid": pid, "host": socket.gethostname()}))
    with pytest.warns(RuntimeWarning, match="stale lock") as caught, contextlib.ExitStack() as st:
        st.enter_context(run_folder_lock(run))
    assert caught[0].filename == __file__  # also through an ExitStack
    # another host's lock cannot be checked: refused
    (run / LOCK_NAME).write_text(json.dumps({"pid": 1, "host": "elsewhere"}))
    with pytest.raises(RunFolderBusy, match="elsewhere"):
        with run_folder_lock(run):
            pass


def test_training_refuses_a_folder_another_process_owns(spread, tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run).mkdir()
    (run / LOCK_NAME).write_text(json.dumps({"pid": os.getppid(), "host": os.uname()[1]}))
    with pytest.raises(RunFolderBusy):
        train(dataclasses.replace(TINY, out_dir=str(run)), dataset=spread)
    assert not (run / "log.jsonl").exists()  # nothing written into someone else's folder
    with pytest.raises(NotADirectoryError, match="is a file.*Fix"):
        (tmp_path / "file").write_text("x")
        train(dataclasses.replace(TINY, out_dir=str(tmp_path / "file")), dataset=spread)


def test_atomic_json_refuses_nan_by_key_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "result.json"
    atomic_write_json(path, {"return": 1.5})
    with pytest.raises(ValueError, match="'final.return' is not finite"):
        atomic_write_json(path, {"final": {"return": float("nan")}})
    assert json.loads(path.read_text()) == {"return": 1.5}  # the old file is intact
    atomic_write_text(tmp_path / "x.txt", "hello")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.json", "x.txt"]
