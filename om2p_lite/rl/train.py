"""Training one run: ``train(cfg)`` trains one seed, a population of one; ``finish_run``
records its ``result.json``.

Not an algorithm (``agents``) nor a command line (``cli.train``); the loop itself is
``population.train_population``. A run's data is ``data.run_data``, its folder and log
``rundir.RunFolder`` and ``rundir.RunLog``.
"""

from __future__ import annotations

from typing import Any

from om2p_lite.data.generate import versions
from om2p_lite.rl.config import TrainConfig
from om2p_lite.rl.population import train_population
from om2p_lite.rl.rundir import RunFolder
from om2p_lite.runtime.record import portable_command, portable_config, provenance


def train(cfg: TrainConfig, dataset: Any = None, resume: bool = True) -> dict[str, Any]:
    """Train ``cfg.algo`` on the dataset; evaluate, log and checkpoint; return a summary.

    A population of one (``population.train_population``). With ``out_dir`` set and a
    checkpoint there, the run continues from it (``resume``) and ends bit-identical (on
    CPU) to a run that never stopped. ``eval_episodes = 0`` skips evaluation (``final`` is
    then None). A loss or parameter that becomes NaN or infinite raises
    ``rundir.NonFiniteError`` and marks the run folder's ``status.json`` failed.
    """
    return train_population([cfg], dataset=dataset, resume=resume)[0]


def record(summary: dict[str, Any], command: str | None = None,
           variant: str | None = None) -> dict[str, Any]:
    """The JSON-able result of a finished run, with everything needed to reproduce it
    (paths repository-relative)."""
    cfg = portable_config(summary["config"])
    final = summary["final"] or {}
    prov = provenance(seed=cfg["seed"], command=command)
    prov["device"] = summary["device"]
    dataset = dict(summary.get("dataset") or {})
    if dataset.get("command"):
        dataset["command"] = portable_command(dataset["command"])
    return {"task": cfg["task"], "quality": cfg["quality"], "algo": cfg["algo"],
            "variant": variant, "seed": cfg["seed"], "return": final.get("return"),
            "return_std": final.get("return_std"), "normalised": final.get("normalised"),
            "wall_s": round(summary["wall_s"], 2), "s_per_step": summary["s_per_step"],
            "population": summary.get("population", 1),  # members sharing s_per_step
            "evals": summary["evals"], "config": cfg, "dataset": dataset,
            "provenance": prov, "versions": versions()}


def finish_run(summary: dict[str, Any], command: str | None = None,
               variant: str | None = None, keep_checkpoint: bool = True) -> dict[str, Any]:
    """Record a finished run; write ``result.json`` (atomically) into its folder."""
    result = record(summary, command, variant)
    out = summary["config"].get("out_dir")
    if out:
        RunFolder(out).write_result(result, keep_checkpoint)
    return result

