"""Training one run: its data, its shapes, its log; ``train(cfg)`` runs one seed.

Not an algorithm (``agents``) nor a command line (``cli.train``); the loop itself is
``population.train_population``, of which a single run is a population of one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from om2p_lite.rl.agents import AgentDims
from om2p_lite.rl.config import TrainConfig


def load_data(cfg: TrainConfig) -> Any:
    """The run's dataset, checked to belong to ``cfg.task`` (and ``cfg.quality`` if recorded)."""
    from om2p_lite.data import load_dataset

    if cfg.dataset:
        ds = load_dataset(cfg.dataset)
    else:
        from om2p_lite.data.generate import get_dataset

        ds = get_dataset(cfg.task, cfg.quality, cfg.data_seed, cfg.data_budget,
                         reward_variant=cfg.reward_variant)
    check_dataset(ds, cfg)
    return ds


def check_dataset(ds: Any, cfg: TrainConfig) -> None:
    """Raise if ``ds`` was made for another task or quality than the config names."""
    meta = getattr(ds, "metadata", {}) or {}
    where = cfg.dataset or "the dataset"
    if meta.get("task", cfg.task) != cfg.task:
        raise ValueError(f"{where} holds task {meta['task']!r} but the config trains "
                         f"task {cfg.task!r}. Fix: set task = {meta['task']!r} or pass a "
                         f"{cfg.task!r} dataset")
    if meta.get("quality", cfg.quality) != cfg.quality:
        raise ValueError(f"{where} holds quality {meta['quality']!r} but the config says "
                         f"{cfg.quality!r}. Fix: set quality = {meta['quality']!r}")


def dims_of(ds: Any) -> AgentDims:
    """Per-agent shapes from a dataset's arrays (and its ``act_dims`` metadata if present)."""
    _, n_agents, obs_dim = ds.obs.shape
    act_dim = ds.actions.shape[2]
    act_dims = tuple((getattr(ds, "metadata", {}) or {}).get("act_dims", [act_dim] * n_agents))
    return AgentDims(int(n_agents), int(obs_dim), int(act_dim), act_dims)


class RunLog:
    """Rows as JSONL (one write per row) plus ``metrics.csv`` (rewritten atomically).

    In memory only when there is no folder. The folder's owner (``rundir.run_folder_lock``)
    is the only writer; on resume the rows after the checkpoint's step are dropped
    (atomically), so the log of a resumed run equals that of a run that never stopped.
    """

    def __init__(self, out_dir: Path | None, resume_step: int | None = None):
        from om2p_lite.rl.rundir import LOG_NAME, atomic_write_text, read_run_file

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
        """metrics.csv: one line per row, union of columns, written atomically."""
        if self.path and self.rows:
            import pandas as pd

            from om2p_lite.rl.rundir import atomic_write_text

            atomic_write_text(self.path.with_name("metrics.csv"),
                              pd.DataFrame(self.rows).to_csv(index=False))


def _line(row: dict[str, Any]) -> str:
    return json.dumps(row) + "\n"


def train(cfg: TrainConfig, dataset: Any = None, resume: bool = True) -> dict[str, Any]:
    """Train ``cfg.algo`` on the dataset; evaluate, log and checkpoint; return a summary.

    A population of one (``population.train_population``). With ``out_dir`` set and a
    checkpoint there, the run continues from it (``resume``) and ends bit-identical (on
    CPU) to a run that never stopped. ``eval_episodes = 0`` skips evaluation (``final`` is
    then None). A loss or parameter that becomes NaN or infinite raises
    ``rundir.NonFiniteError`` and marks the run folder's ``status.json`` failed.
    """
    from om2p_lite.rl.population import train_population

    return train_population([cfg], dataset=dataset, resume=resume)[0]
