"""What each file of a run folder is called and must hold, read through one validator.

Not the writing side (``rundir``: atomic writes, the lock, ``RunLog``, ``RunFolder``): this is
the leaf both sides share. Every read of a run file on resume or by the grid goes through
``read_run_file``, which checks its structure and raises one ``RunFileError`` line naming the
file, the problem and the fix. A checkpoint holds tensors and plain Python types only and is
read with ``torch.load(weights_only=True)``, so a crafted file cannot run code.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch

# the files of a run folder {root}/{task}/{quality}/{algo}[/{variant}]/seed{seed}
LOCK_NAME = ".lock"  # the owner while it trains (``rundir.run_folder_lock``)
CLAIM_NAME = ".claim"  # a claim lock: held from training until result.json (``RunFolder.claim``)
STATUS_NAME = "status.json"
CHECKPOINT_NAME = "checkpoint.pt"
LOG_NAME = "log.jsonl"
METRICS_NAME = "metrics.csv"  # the scalar columns of log.jsonl (``rundir.RunLog.write_csv``)
RESULT_NAME = "result.json"
CONFIG_NAME = "config.json"

CHECKPOINT_FORMAT = 2  # the layout of a training checkpoint (``check_training_checkpoint``)
RESULT_KEYS = ("task", "quality", "algo", "seed", "return", "config", "provenance")
# how to get past a damaged file, per file name
FIXES = {
    CHECKPOINT_NAME: "delete it (or train with resume=False) to start the run afresh, or "
                     "restore the file from its source",
    LOG_NAME: "delete the run folder to start the run afresh, or restore the file",
    RESULT_NAME: "delete it and rerun the grid, which remakes it, or restore the file",
    CONFIG_NAME: "delete it (training writes it again) or restore the file",
    STATUS_NAME: "delete it (a rerun writes it again) or restore the file",
}


class RunFileError(ValueError):
    """A run folder's file that is damaged or foreign (one line: file, problem, fix)."""


class CheckpointError(RunFileError):
    """A checkpoint file that is missing, empty, truncated, unsafe or not of this library."""


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True``; ``CheckpointError`` says what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found. Fix: give a run folder with a "
                              f"checkpoint.pt written by training")
    if path.stat().st_size == 0:
        raise damaged(path, "checkpoint is empty (a write was cut off?)")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except pickle_errors() as err:
        text = str(err)
        if "weights_only" in text or "Unsupported global" in text or "GLOBAL" in text:
            raise CheckpointError(f"{path}: checkpoint holds Python objects other than "
                                  f"tensors and plain types, which could run code when "
                                  f"loaded; refused. Fix: only load checkpoints written "
                                  f"by this library") from None
        raise damaged(path, f"checkpoint is truncated or corrupt ({type(err).__name__}: "
                            f"{_first_line(text)})") from None
    if not isinstance(blob, dict) or "step" not in blob:
        raise damaged(path, "not a training checkpoint (no 'step')")
    return blob


def pickle_errors() -> tuple[type[BaseException], ...]:
    """What a bad file makes ``torch.load`` raise."""
    import pickle
    import zipfile

    return (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, zipfile.BadZipFile,
            OSError, KeyError, AttributeError, TypeError, ImportError, IndexError)


def damaged(path: str | Path, problem: str) -> RunFileError:
    """The one-line error for a damaged or foreign run file: 'path: problem. Fix: ...'."""
    path = Path(path)
    fix = FIXES.get(path.name, "delete the run folder to start the run afresh, or restore "
                               "the file")
    kind = CheckpointError if path.suffix == ".pt" else RunFileError
    return kind(f"{path}: {problem}. Fix: {fix}")


def _first_line(text: str) -> str:
    return text.splitlines()[0] if text else ""


def _short(value: Any) -> str:
    """``repr(value)`` cut to 60 characters (it stays on one line)."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _refuse_constant(name: str) -> float:
    raise ValueError(f"non-finite number {name}")


def _json_file(path: Path, strict: bool = True) -> Any:
    """A JSON file's value (NaN/inf refused when ``strict``); damage is a ``RunFileError``."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise damaged(path, f"not UTF-8 text ({err.reason} at byte {err.start})") from None
    try:
        return json.loads(text, parse_constant=_refuse_constant if strict else None)
    except ValueError as err:
        raise damaged(path, f"not valid JSON ({_first_line(str(err))})") from None


def _object(path: Path, value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise damaged(path, f"must hold a JSON object ({what}), got {type(value).__name__}")
    return value


def _read_result(path: Path) -> dict[str, Any]:
    """result.json: the keys a result has, each of its type (finite numbers or null)."""
    res = _object(path, _json_file(path), "a run's result")
    missing = [k for k in RESULT_KEYS if k not in res]
    if missing:
        raise damaged(path, f"lacks the result key(s) {missing}")
    for key in ("task", "quality", "algo"):
        if not isinstance(res[key], str):
            raise damaged(path, f"'{key}' must be a string, got {_short(res[key])}")
    if not _is_int(res["seed"]) or res["seed"] < 0:
        raise damaged(path, f"'seed' must be an integer >= 0, got {_short(res['seed'])}")
    for key in ("return", "return_std", "normalised", "wall_s", "s_per_step"):
        if res.get(key) is not None and not _is_number(res[key]):
            raise damaged(path, f"'{key}' must be a number or null, got {_short(res[key])}")
    if res.get("variant") is not None and not isinstance(res["variant"], str):
        raise damaged(path, f"'variant' must be a string or null, got {_short(res['variant'])}")
    for key in ("config", "provenance"):
        if not isinstance(res[key], dict):
            raise damaged(path, f"'{key}' must be a JSON object, got {_short(res[key])}")
    if not _is_int(res["config"].get("steps")):
        raise damaged(path, f"'config.steps' must be an integer, got "
                            f"{_short(res['config'].get('steps'))}")
    evals = res.get("evals", [])
    if not isinstance(evals, list) or not all(isinstance(e, dict) for e in evals):
        raise damaged(path, "'evals' must be a list of JSON objects")
    return res


def _read_config(path: Path) -> dict[str, Any]:
    """config.json: a run's settings, at least its algorithm, task and seed."""
    cfg = _object(path, _json_file(path), "a run's settings")
    for key, ok, want in (("algo", isinstance(cfg.get("algo"), str), "a string"),
                          ("task", isinstance(cfg.get("task"), str), "a string"),
                          ("seed", _is_int(cfg.get("seed")), "an integer")):
        if not ok:
            raise damaged(path, f"'{key}' must be {want}, got {_short(cfg.get(key))}")
    return cfg


def _read_status(path: Path) -> dict[str, Any]:
    """status.json: {"status": str, ...}."""
    status = _object(path, _json_file(path), 'e.g. {"status": "failed"}')
    if not isinstance(status.get("status"), str):
        raise damaged(path, f"'status' must be a string, got {_short(status.get('status'))}")
    return status


def _read_log(path: Path) -> list[dict[str, Any]]:
    """log.jsonl: one JSON object per line with an integer ``step`` and a string ``kind``
    (other keys free, list values allowed). A last line cut off by a kill is dropped."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise damaged(path, f"not UTF-8 text ({err.reason} at byte {err.start})") from None
    rows = []
    for i, line in enumerate(lines, 1):
        try:
            row = json.loads(line)
        except ValueError:
            if i == len(lines):  # a write cut off by a kill: the checkpoint predates it
                break
            raise damaged(path, f"line {i} is not valid JSON: {_short(line)}") from None
        if not isinstance(row, dict):
            raise damaged(path, f"line {i} must be a JSON object with 'step' and 'kind', got "
                                f"{_short(row)}")
        if not _is_int(row.get("step")) or row["step"] < 0:
            raise damaged(path, f"line {i}: 'step' must be an integer >= 0, got "
                                f"{_short(row.get('step'))}")
        if not isinstance(row.get("kind"), str):
            raise damaged(path, f"line {i}: 'kind' must be a string, got "
                                f"{_short(row.get('kind'))}")
        rows.append(row)
    return rows


def _cpu_rng_state_ok(state: Any) -> bool:
    """Whether ``state`` is a state a CPU ``torch.Generator`` accepts (tried on a new one)."""
    try:
        torch.Generator().set_state(state)
    except (RuntimeError, TypeError, ValueError):
        return False
    return True


def _check_agent_state(path: Path, agent: Any) -> None:
    """The ``agent`` entry: {"model": {name: tensor}, "n_updates": int, "optimizers": ...}."""
    if not isinstance(agent, dict):
        raise damaged(path, f"'agent' must be a table of weights, got {type(agent).__name__}")
    model, opts = agent.get("model"), agent.get("optimizers")
    if not isinstance(model, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in model.items()):
        raise damaged(path, "'agent.model' must map parameter names to tensors")
    if not _is_int(agent.get("n_updates")):
        raise damaged(path, f"'agent.n_updates' must be an integer, got "
                            f"{_short(agent.get('n_updates'))}")
    if not isinstance(opts, dict) or not all(
            isinstance(o, dict) and isinstance(o.get("state"), dict)
            and isinstance(o.get("param_groups"), list) for o in opts.values()):
        raise damaged(path, "'agent.optimizers' must map names to optimiser states "
                            "({'state': ..., 'param_groups': [...]})")


def _check_rng(path: Path, rng: Any) -> None:
    """The ``rng`` entry: valid CPU generator states ``batch``, ``noise``, ``torch``."""
    if not isinstance(rng, dict):
        raise damaged(path, f"'rng' must be a table of generator states, got "
                            f"{type(rng).__name__}")
    for key in ("batch", "noise", "torch"):
        if key not in rng:
            raise damaged(path, f"'rng.{key}' is missing")
        if not _cpu_rng_state_ok(rng[key]):
            raise damaged(path, f"'rng.{key}' is not a CPU random generator state "
                                f"({_short(getattr(rng[key], 'shape', rng[key]))})")
    cuda = rng.get("cuda", [])
    if not isinstance(cuda, list | tuple) or not all(
            isinstance(t, torch.Tensor) and t.dtype == torch.uint8 for t in cuda):
        raise damaged(path, "'rng.cuda' must be a list of CUDA generator states (uint8)")


def check_training_checkpoint(path: str | Path, blob: dict[str, Any]) -> dict[str, Any]:
    """Raise a ``CheckpointError`` unless ``blob`` has the layout ``train`` writes
    (format, step, agent, rng, config, wall_s), so resume meets no surprise later."""
    path = Path(path)
    fmt = blob.get("format", CHECKPOINT_FORMAT)
    if fmt != CHECKPOINT_FORMAT:
        raise damaged(path, f"has format {_short(fmt)}, this library reads format "
                            f"{CHECKPOINT_FORMAT}")
    if not _is_int(blob["step"]) or blob["step"] < 0:
        raise damaged(path, f"'step' must be an integer >= 0, got {_short(blob['step'])}")
    if "agent" not in blob:
        raise damaged(path, "has no 'agent' entry (the weights and optimiser states)")
    _check_agent_state(path, blob["agent"])
    if blob.get("rng") is not None:
        _check_rng(path, blob["rng"])
    if not isinstance(blob.get("config", {}), dict):
        raise damaged(path, f"'config' must be a table, got {_short(blob['config'])}")
    wall = blob.get("wall_s", 0.0)
    if not _is_number(wall) or not math.isfinite(wall) or wall < 0:
        raise damaged(path, f"'wall_s' must be a finite number >= 0, got {_short(wall)}")
    return blob


def _read_checkpoint(path: Path) -> dict[str, Any]:
    return check_training_checkpoint(path, load_checkpoint(path))


READERS = {CHECKPOINT_NAME: _read_checkpoint, LOG_NAME: _read_log, RESULT_NAME: _read_result,
           CONFIG_NAME: _read_config, STATUS_NAME: _read_status}


def read_run_file(path: str | Path) -> Any:
    """Read one run file (checkpoint.pt, log.jsonl, result.json, config.json, status.json),
    checking its structure; damage or a foreign file raises one ``RunFileError`` line."""
    path = Path(path)
    reader = READERS.get(path.name)
    if reader is None:
        raise ValueError(f"{path}: not a run file. Fix: name one of {sorted(READERS)}")
    return reader(path)


def check_run_folder(folder: str | Path) -> dict[str, Any]:
    """Every run file present in ``folder``, read and checked (``read_run_file``), by name:
    resume and the grid call it before writing anything, so damage changes nothing."""
    folder = Path(folder)
    return {name: read_run_file(folder / name) for name in READERS
            if (folder / name).is_file()}
