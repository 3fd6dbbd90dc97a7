"""The one training loop for every offline multi-agent algorithm: config, data, logs, checkpoints.

Not an algorithm (``agents``) nor a command line (``cli.train``): ``train(cfg)`` runs one seed.
"""

from __future__ import annotations

import json
import os
import random
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from om2p_lite.rl.agents import AgentDims, make_agent
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
    """Rows as JSONL (every row) plus ``metrics.csv`` (rewritten); in memory when no folder."""

    def __init__(self, out_dir: Path | None, resume_step: int | None = None):
        self.rows: list[dict[str, Any]] = []
        self.path = out_dir / "log.jsonl" if out_dir else None
        if self.path and resume_step is not None and self.path.exists():
            kept = [json.loads(line) for line in self.path.read_text().splitlines() if line]
            self.rows = [r for r in kept if r["step"] <= resume_step]
            self.path.write_text("".join(json.dumps(r) + "\n" for r in self.rows))
        elif self.path and self.path.exists():
            self.path.unlink()

    def add(self, row: dict[str, Any]) -> None:
        """Append a row (and write it through)."""
        self.rows.append(row)
        if self.path:
            with open(self.path, "a") as fh:
                fh.write(json.dumps(row) + "\n")

    def write_csv(self) -> None:
        """metrics.csv: one line per row, union of columns."""
        if self.path and self.rows:
            import pandas as pd

            pd.DataFrame(self.rows).to_csv(self.path.with_name("metrics.csv"), index=False)


def _rng_state(gen: torch.Generator) -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
             "python": random.getstate(), "data": gen.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any], gen: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    gen.set_state(state["data"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, step: int, agent: Any, gen: torch.Generator,
                    cfg: TrainConfig, wall: float) -> None:
    """Model, optimisers, every RNG and the batch sampler's state, written atomically."""
    blob = {"step": step, "agent": agent.full_state(), "rng": _rng_state(gen),
            "config": asdict(cfg), "wall_s": wall}
    tmp = path.with_name(path.name + ".tmp")
    torch.save(blob, tmp)
    os.replace(tmp, path)


def train(cfg: TrainConfig, dataset: Any = None, resume: bool = True) -> dict[str, Any]:
    """Train ``cfg.algo`` on the dataset; evaluate, log and checkpoint; return a summary.

    With ``out_dir`` set and a checkpoint there, the run continues from it (``resume``) and
    ends bit-identical (on CPU) to a run that never stopped.
    """
    from om2p_lite.rl.evaluate import evaluate_agent
    from om2p_lite.runtime.device import describe_device, pick_device
    from om2p_lite.runtime.seeding import seed_everything

    cfg.validate()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    ds = dataset if dataset is not None else load_data(cfg)
    check_dataset(ds, cfg)
    device = pick_device(cfg.device or None)
    seed_everything(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed + 1_000_003)  # batch indices only
    agent = make_agent(cfg.algo, dims_of(ds), cfg).to(device)
    out = Path(cfg.out_dir) if cfg.out_dir else None
    ckpt = out / "checkpoint.pt" if out else None
    start, wall0 = 0, 0.0
    if out:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(asdict(cfg), indent=1))
    if resume and ckpt is not None and ckpt.exists():
        blob = torch.load(ckpt, map_location="cpu", weights_only=False)  # RNG states stay on CPU
        free = {"stop_at", "progress", "threads", "checkpoint_every", "device", "out_dir"}
        changed = sorted(k for k, v in asdict(cfg).items()
                         if k not in free and blob["config"].get(k) != v)
        if changed:
            raise ValueError(f"{ckpt} was written with a different config ({changed} differ); "
                             f"Fix: use the same settings, another out_dir, or resume=False")
        agent.load_full_state(blob["agent"])
        _set_rng_state(blob["rng"], gen)
        start, wall0 = int(blob["step"]), float(blob["wall_s"])
    log = RunLog(out, resume_step=start if start else None)
    meta = getattr(ds, "metadata", {}) or {}
    variant = meta.get("reward_variant", cfg.reward_variant)
    last = cfg.stop_at or cfg.steps

    def evaluate(step: int) -> dict[str, Any]:
        res = evaluate_agent(agent, cfg.task, cfg.eval_episodes, seed=10_000 + cfg.seed,
                             device=device, reward_variant=variant,
                             max_steps=cfg.eval_max_steps or None)
        row = {"step": step, "kind": "eval", "return": res["return_mean"],
               "return_std": res["return_std"], "normalised": res["normalised"],
               "wall_s": wall0 + time.time() - t0}
        log.add(row)
        return row

    from tqdm.auto import tqdm

    t0 = time.time()
    if start == 0 and cfg.eval_every:
        evaluate(0)
    bar = tqdm(range(start + 1, last + 1), desc=f"{cfg.algo}/{cfg.task}/{cfg.quality}",
               disable=not cfg.progress, initial=start, total=cfg.steps)
    step_time, logs = 0.0, {}
    for step in bar:
        ts = time.time()
        batch = ds.sample(cfg.batch_size, generator=gen, device=device)
        logs = agent.update(batch)
        step_time += time.time() - ts
        if step % cfg.log_every == 0:
            log.add({"step": step, "kind": "train", **logs,
                     "wall_s": wall0 + time.time() - t0})
            bar.set_postfix({k: f"{v:.3g}" for k, v in list(logs.items())[:3]})
        if (cfg.eval_every and step % cfg.eval_every == 0) or step == cfg.steps:
            evaluate(step)
        if ckpt is not None and ((cfg.checkpoint_every and step % cfg.checkpoint_every == 0)
                                 or step == last):
            save_checkpoint(ckpt, step, agent, gen, cfg, wall0 + time.time() - t0)
    bar.close()
    log.write_csv()
    evals = [r for r in log.rows if r["kind"] == "eval"]
    n_steps = last - start
    summary = {"config": asdict(cfg), "finished": last == cfg.steps, "step": last,
               "final": evals[-1] if evals else None, "evals": evals,
               "last_logs": logs, "device": describe_device(device),
               "dataset": {k: meta.get(k) for k in ("task", "quality", "seed", "budget",
                                                    "checksum", "command")},
               "wall_s": wall0 + time.time() - t0,
               "s_per_step": step_time / max(n_steps, 1), "agent": agent}
    return summary
