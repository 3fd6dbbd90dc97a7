"""Training one run: ``train(cfg)`` trains one seed, a population of one.

Not an algorithm (``agents``) nor a command line (``cli.train``); the loop itself is
``population.train_population``. A run's data is ``data.run_data``, its log ``rundir.RunLog``.
"""

from __future__ import annotations

from typing import Any

from om2p_lite.rl.config import TrainConfig
from om2p_lite.rl.population import train_population


def train(cfg: TrainConfig, dataset: Any = None, resume: bool = True) -> dict[str, Any]:
    """Train ``cfg.algo`` on the dataset; evaluate, log and checkpoint; return a summary.

    A population of one (``population.train_population``). With ``out_dir`` set and a
    checkpoint there, the run continues from it (``resume``) and ends bit-identical (on
    CPU) to a run that never stopped. ``eval_episodes = 0`` skips evaluation (``final`` is
    then None). A loss or parameter that becomes NaN or infinite raises
    ``rundir.NonFiniteError`` and marks the run folder's ``status.json`` failed.
    """
    return train_population([cfg], dataset=dataset, resume=resume)[0]
