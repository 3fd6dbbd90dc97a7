"""Learning curves and training logs of an experiment's run folders as tidy frames
(chapters 06-10): one row per evaluation (``load_curves``) or per training-log row
(``load_train_logs``), keyed by ``KEYS`` = (task, quality, algo, variant) and the seed.

Not the run reader: ``rl.results`` finds and names the runs (``iter_runs``) and reads one row
per run (``load_runs``); this module reads their logs. ``book.plots`` draws the frames.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from om2p_lite.rl.results import KEYS, iter_runs, to_float
from om2p_lite.rl.rundir import LOG_NAME, METRICS_NAME, read_run_file


def _log_rows(folder: Path, result: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Training and evaluation rows of a run: metrics.csv, else log.jsonl (checked by
    ``rundir.read_run_file``), else its result's evaluations."""
    if (folder / METRICS_NAME).exists():
        try:
            return pd.read_csv(folder / METRICS_NAME).to_dict("records")
        except (OSError, ValueError) as err:
            raise ValueError(f"{folder / METRICS_NAME}: unreadable ({err}). Fix: delete the "
                             f"run folder and rerun the grid") from err
    if (folder / LOG_NAME).exists():
        return read_run_file(folder / LOG_NAME)
    return [dict(e, kind="eval") for e in (result or {}).get("evals", [])]


def _rows_of(root: str | Path, finished_only: bool) -> Iterable[tuple[dict[str, Any],
                                                                       list[dict[str, Any]]]]:
    """(keys, log rows) of every run under ``root``."""
    for folder, keys, result in iter_runs(root, finished_only):
        yield keys, _log_rows(folder, result)


def load_curves(root: str | Path, finished_only: bool = True) -> pd.DataFrame:
    """Tidy learning curves: one row per evaluation (keys, seed, step, return, normalised)."""
    rows = []
    for keys, log in _rows_of(root, finished_only):
        for row in log:
            if row.get("kind") == "eval":
                rows.append(keys | {"step": int(row["step"]), "return": to_float(row["return"]),
                                    "normalised": to_float(row.get("normalised"))})
    columns = [*KEYS, "seed", "step", "return", "normalised"]
    return pd.DataFrame(rows, columns=columns)


def load_train_logs(root: str | Path, columns: Sequence[str] = ("du_dr_zero_frac",),
                    finished_only: bool = True) -> pd.DataFrame:
    """Tidy training-log rows (keys, seed, step and ``columns``; NaN where a run lacks one)."""
    rows = []
    for keys, log in _rows_of(root, finished_only):
        for row in log:
            if row.get("kind") == "train":
                rows.append(keys | {"step": int(row["step"])}
                            | {c: to_float(row.get(c)) for c in columns})
    return pd.DataFrame(rows, columns=[*KEYS, "seed", "step", *columns])

