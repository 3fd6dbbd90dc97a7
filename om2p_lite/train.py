"""The one training loop for every offline multi-agent algorithm: config, data, logs, checkpoints.

Not an algorithm (``agents``) nor a command line (``train_cli``): ``train(cfg)`` runs one seed.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .agents import ALGORITHMS, AgentDims, make_agent
from .meanflow import ESTIMATORS

TASKS = ("spread", "tag", "world", "halfcheetah")
QUALITIES = ("random", "medium-replay", "medium", "expert")


@dataclass
class TrainConfig:
    """Every knob of one training run; defaults follow SPEC §4 scaled for a CPU."""

    algo: str = "om2p"  # om2p | bc | td3bc | cql | omar | flowq | diffusionq
    task: str = "spread"  # spread | tag | world | halfcheetah
    quality: str = "expert"  # random | medium-replay | medium | expert
    seed: int = 0  # training seed: initial weights, noise, batch order
    data_seed: int = 0  # seed of the dataset (one dataset serves every training seed)
    data_budget: str = "smoke"  # dataset size preset: smoke | book | full
    dataset: str = ""  # path to a dataset .npz; "" = generated/cached from the fields above
    reward_variant: str = "mpe2"  # Spread reward: mpe2 | omar
    steps: int = 1000  # gradient steps
    batch_size: int = 256  # transitions per step (same rows for every agent)
    lr: float = 3e-4  # Adam learning rate, actor and critic
    hidden: int = 256  # actor hidden width (paper: 512)
    depth: int = 3  # actor hidden layers (paper: 4)
    critic_hidden: int = 256  # critic hidden width (LayerNorm MLP)
    critic_depth: int = 3  # critic hidden layers
    n_q: int = 2  # critics per agent in the ensemble
    gamma: float = 0.99  # discount γ
    tau: float = 0.005  # Polyak rate τ of the target networks
    eta: float = 1.0  # weight η of the normalised Q term (0 = behaviour cloning)
    estimator: str = "fd"  # du/dr estimator: jvp | fd | zero | jacobian
    dr: float = 1e-3  # finite-difference step Δr (estimator fd)
    xi: str = "beta55"  # time sampler: uniform | beta55 | logit_normal | "a,b,c,d"
    ratio: float = 0.25  # fraction of (r, t) pairs with r ≠ t
    adaptive_p: float = 0.0  # MeanFlow adaptive-weight power p (0 = plain L2)
    sample_steps: int = 1  # OM2P sampling steps (1 = one-step policy)
    flow_steps: int = 10  # Euler steps K of the Flow+Q baseline
    diffusion_steps: int = 5  # denoising steps T of the Diffusion+Q baseline (Diffusion-QL: 5)
    alpha: float = 2.5  # TD3+BC's α (weight of the normalised Q term)
    policy_noise: float = 0.2  # TD3 target-smoothing / CQL proposal noise std
    noise_clip: float = 0.5  # TD3 target-smoothing noise clip
    cql_alpha: float = 1.0  # weight of the CQL conservative term (cql, omar)
    cql_samples: int = 10  # uniform and policy proposals each for CQL's logsumexp
    omar_coef: float = 0.7  # OMAR's weight c of the pull toward searched actions
    omar_iters: int = 2  # OMAR's search iterations
    omar_samples: int = 20  # OMAR's candidate actions per iteration
    omar_elites: int = 5  # OMAR's elites that refit the search Gaussian
    omar_sigma: float = 0.5  # OMAR's initial search std
    eval_every: int = 500  # steps between evaluations (also at 0 and the end); 0 = end only
    eval_episodes: int = 10  # episodes per evaluation, run as one vector of environments
    eval_max_steps: int = 0  # cap on steps per evaluation episode (0 = the task's own length)
    log_every: int = 100  # steps between training-loss log rows
    checkpoint_every: int = 0  # steps between checkpoints (0 = only at the end / stop_at)
    stop_at: int = 0  # stop after this step with a checkpoint, to resume later (0 = run on)
    out_dir: str = ""  # run folder for logs, checkpoint, result.json ("" = keep in memory)
    device: str = ""  # cpu | cuda | cuda:N ("" = CUDA if available)
    progress: bool = True  # show a tqdm progress bar
    threads: int = 0  # torch CPU threads (0 = torch's default)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build from a dict (e.g. TOML), rejecting unknown keys by name."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"unknown config field(s) {unknown}; valid fields: {sorted(names)}")
        return cls(**values)

    def validate(self) -> TrainConfig:
        """Raise a ``ValueError`` naming the first bad field and how to fix it."""
        from .timesteps import make_time_sampler

        def bad(field: str, problem: str, fix: str) -> ValueError:
            return ValueError(f"config field '{field}': {problem}. Fix: {fix}")

        if self.algo not in ALGORITHMS:
            raise bad("algo", f"unknown algorithm {self.algo!r}", f"use one of {ALGORITHMS}")
        if self.task not in TASKS:
            raise bad("task", f"unknown task {self.task!r}", f"use one of {TASKS}")
        if self.quality not in QUALITIES:
            raise bad("quality", f"unknown quality {self.quality!r}", f"use one of {QUALITIES}")
        if not (self.eta >= 0 and math.isfinite(self.eta)):
            raise bad("eta", f"η must be a finite number >= 0, got {self.eta}",
                      "use η = 0 for behaviour cloning or η > 0 for Q supervision")
        if self.estimator not in ESTIMATORS:
            raise bad("estimator", f"unknown du/dr estimator {self.estimator!r}",
                      f"use one of {ESTIMATORS}")
        if not (self.dr > 0 and math.isfinite(self.dr)):
            raise bad("dr", f"Δr must be > 0, got {self.dr}",
                      "use a positive step such as 1e-3 (in float32, below ~1e-6 is noise)")
        if not 0 <= self.ratio <= 1:
            raise bad("ratio", f"must lie in [0, 1], got {self.ratio}", "e.g. 0.25")
        for name in ("steps", "batch_size", "lr", "hidden", "depth", "critic_hidden",
                     "critic_depth", "n_q", "sample_steps", "flow_steps", "diffusion_steps",
                     "eval_episodes", "log_every", "cql_samples", "omar_samples"):
            if not getattr(self, name) > 0:
                raise bad(name, f"must be > 0, got {getattr(self, name)}", "use a positive value")
        for name in ("eval_every", "eval_max_steps", "checkpoint_every", "stop_at", "threads",
                     "seed", "data_seed", "omar_iters", "cql_alpha", "adaptive_p"):
            if getattr(self, name) < 0:
                raise bad(name, f"must be >= 0, got {getattr(self, name)}", "use 0 or more")
        if not 0 <= self.gamma < 1 or not 0 < self.tau <= 1:
            raise bad("gamma/tau", f"need 0 <= γ < 1 and 0 < τ <= 1, got {self.gamma}, "
                      f"{self.tau}", "use γ = 0.99, τ = 0.005")
        if not 0 <= self.omar_coef <= 1 or not 0 < self.omar_elites <= self.omar_samples:
            raise bad("omar_coef/omar_elites", "need 0 <= c <= 1 and 0 < elites <= samples",
                      "use omar_coef = 0.7, omar_elites = 5, omar_samples = 20")
        if self.stop_at and self.stop_at >= self.steps:
            raise bad("stop_at", f"{self.stop_at} is not before the last step {self.steps}",
                      "use 0 to run to the end, or a step below `steps`")
        try:
            make_time_sampler(parse_xi(self.xi))
        except ValueError as err:
            raise bad("xi", str(err), "use uniform, beta55, logit_normal or 'a,b,c,d' "
                      "with a, b > -1") from err
        return self


# Training presets per named budget (``budget.get_budget`` names); the paper's scale is
# "full" (public code: 4x512 MLPs, batch 256; our step count is smaller than its 1M).
PRESETS: dict[str, dict[str, Any]] = {
    "smoke": dict(steps=300, batch_size=128, lr=1e-3, hidden=64, depth=2, critic_hidden=64,
                  critic_depth=2, eval_every=0, eval_episodes=10, data_budget="smoke",
                  cql_samples=5, omar_samples=10, omar_elites=3),
    "book": dict(steps=5_000, batch_size=256, hidden=256, depth=3, critic_hidden=256,
                 critic_depth=3, eval_every=1_000, eval_episodes=20, data_budget="book"),
    "full": dict(steps=100_000, batch_size=256, hidden=512, depth=4, critic_hidden=512,
                 critic_depth=4, eval_every=10_000, eval_episodes=50, data_budget="full"),
}


def budget_config(budget: str | None = None, **overrides: Any) -> TrainConfig:
    """The preset of ``budget`` (default ``$OM2P_BUDGET``, else book) with ``overrides``."""
    from .budget import get_budget

    name = get_budget(budget).name
    return TrainConfig.from_dict(PRESETS[name] | overrides).validate()


def parse_xi(xi: str | list[float]) -> str | list[float]:
    """'uniform' | 'beta55' | 'logit_normal' | 'a,b,c,d' (or a list of 4 numbers)."""
    if isinstance(xi, str) and "," in xi:
        try:
            return [float(v) for v in xi.split(",")]
        except ValueError as err:
            raise ValueError(f"config field 'xi': {xi!r} is not 4 numbers 'a,b,c,d'. Fix: "
                             f"write e.g. '5,5,0,0' or a name such as 'beta55'") from err
    return xi


def load_data(cfg: TrainConfig) -> Any:
    """The run's dataset, checked to belong to ``cfg.task`` (and ``cfg.quality`` if recorded)."""
    from .data import load_dataset

    if cfg.dataset:
        ds = load_dataset(cfg.dataset)
    else:
        from .data.generate import get_dataset

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
    from .device import describe_device, pick_device
    from .evaluate import evaluate_agent
    from .seeding import seed_everything

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
