"""Training: the loop that trains a population (``train_population``), ``train(cfg)`` (one
seed, a population of one) and the ``result.json`` a finished run records (``finish_run``).

Not an algorithm (``agents``), the stacking of members into one model (``population``) nor a
command line (``cli.train``). A run's data is ``data.run_data``, its folder and log
``rundir.RunFolder`` and ``rundir.RunLog``. The loop is ``_Group.train``: sample, update,
and, on schedule, log (``guard`` first: NaN or inf stops the run), evaluate and ``save``.
"""

from __future__ import annotations

import math
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import torch

from om2p_lite.data.generate import versions
from om2p_lite.data.run_data import check_dataset, load_data
from om2p_lite.rl.agents import Agent, dims_of
from om2p_lite.rl.config import STORED_DEFAULTS, TrainConfig
from om2p_lite.rl.convergence import CriticProbe
from om2p_lite.rl.population import (
    BATCH_SEED_OFFSET,
    EVAL_SEED_OFFSET,
    NOISE_SEED_OFFSET,
    MemberLayout,
    build_population,
    population_key,
    sample_population_batch,
)
from om2p_lite.rl.rundir import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_NAME,
    RESUME_FREE,
    NonFiniteError,
    RunFolder,
    RunLog,
    save_checkpoint,
)
from om2p_lite.runtime.cores import IdleCores
from om2p_lite.runtime.device import describe_device, pick_device
from om2p_lite.runtime.record import portable_command, portable_config, provenance

# --- one member's bookkeeping ------------------------------------------------------------------

@dataclass
class _Member:
    """One run of a population: its config, folder, checkpoint to resume, generators, log."""

    index: int
    cfg: TrainConfig
    out: Path | None
    blob: dict[str, Any] | None = None  # the checkpoint it resumes from
    batch_gen: torch.Generator = field(default_factory=torch.Generator)
    noise_gen: torch.Generator = field(default_factory=torch.Generator)
    start: int = 0
    wall0: float = 0.0
    log: RunLog | None = None

    @property
    def folder(self) -> RunFolder | None:
        return RunFolder(self.out) if self.out else None

    @property
    def ckpt(self) -> Path | None:
        return self.folder.checkpoint_file if self.folder else None


def _read_resume(member: _Member, resume: bool) -> None:
    """Load the member's checkpoint (if resuming and present) and check its config; every
    file of its folder is checked first (``RunFolder.check``), before any write."""
    ckpt = member.ckpt
    if not (resume and ckpt is not None and ckpt.exists()):
        return
    blob = member.folder.check()[CHECKPOINT_NAME]
    saved = blob.get("config", {})
    changed = sorted(k for k, v in asdict(member.cfg).items()
                     if k not in RESUME_FREE and saved.get(k, STORED_DEFAULTS.get(k)) != v)
    if changed:
        raise ValueError(f"{ckpt} was written with a different config ({changed} differ); "
                         f"Fix: use the same settings, another out_dir, or resume=False")
    member.blob, member.start = blob, int(blob["step"])
    member.wall0 = float(blob.get("wall_s", 0.0))


def _rng_blob(member: _Member) -> dict[str, Any]:
    state = {"batch": member.batch_gen.get_state(), "noise": member.noise_gen.get_state(),
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _restore_rng(member: _Member) -> None:
    rng = member.blob["rng"] if member.blob else None
    if rng is None:
        return
    member.batch_gen.set_state(rng["batch"])
    member.noise_gen.set_state(rng["noise"])
    torch.set_rng_state(rng["torch"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])


def _likely_cause(cfg: TrainConfig) -> str:
    causes = [f"the learning rate (lr = {cfg.lr:g}) is too large"]
    if cfg.eta > 1e3:
        causes.append(f"η = {cfg.eta:g} scales the Q term's gradient beyond float32")
    if cfg.algo == "om2p" and cfg.estimator == "fd":
        causes.append(f"Δr = {cfg.dr:g} is too small for float32 (fd divides by Δr)")
    return " or ".join(causes)


# --- the loop ----------------------------------------------------------------------------------

@dataclass
class _Group:
    """Members that resume from the same step, trained as one stacked agent: the loop's state
    and what it does besides the update (``guard``, ``save``, ``evaluate``, ``fail``)."""

    members: list[_Member]
    ds: Any
    device: torch.device
    agent: Agent
    singles: list[Agent]
    layout: MemberLayout
    meta: dict[str, Any]
    t0: float = 0.0
    probe: CriticProbe | None = None

    @classmethod
    def start(cls, members: list[_Member], ds: Any, device: torch.device) -> _Group:
        """Seed each member's streams, build (or resume) the stacked agent, open the logs and
        write each folder's ``config.json``."""
        for m in members:
            m.batch_gen.manual_seed(m.cfg.seed + BATCH_SEED_OFFSET)
            m.noise_gen.manual_seed(m.cfg.seed + NOISE_SEED_OFFSET)
        agent, singles, layout = build_population([m.cfg for m in members], dims_of(ds),
                                                  device, [m.blob["agent"] if m.blob else None
                                                           for m in members])
        for m in members:
            _restore_rng(m)
        agent.generators = [m.noise_gen for m in members]
        start = members[0].start
        for m in members:
            m.log = RunLog(m.out, resume_step=start if start else None)
            if m.folder:
                m.folder.clear_status()
                m.folder.write_config(portable_config(asdict(m.cfg)))
        group = cls(members, ds, device, agent, singles, layout,
                    getattr(ds, "metadata", {}) or {})
        group.t0 = time.time()
        cfg = members[0].cfg
        if cfg.eval_episodes > 0:
            group.probe = CriticProbe(ds, cfg.gamma, len(members), device)
        return group

    @property
    def cfg(self) -> TrainConfig:
        return self.members[0].cfg

    @property
    def size(self) -> int:
        return len(self.members)

    def wall(self, m: _Member) -> float:
        return m.wall0 + time.time() - self.t0

    def fail(self, step: int, bad: dict[int, str]) -> NoReturn:
        """Mark the bad members failed, checkpoint the healthy ones, raise."""
        members = self.members
        for i, what in bad.items():
            m = members[i]
            if m.folder:
                m.folder.write_status("failed", step=step,
                                      error=f"non-finite {what} at step {step}")
                m.log.write_csv()
        healthy = [i for i in range(self.size) if i not in bad]
        if healthy:
            self.save(step, only=healthy, check=False)
        names = ", ".join(f"{members[i].out or f'member {i}'} (seed {members[i].cfg.seed}, "
                          f"{what})" for i, what in bad.items())
        raise NonFiniteError(f"training became non-finite at step {step}: {names}. Likely "
                             f"cause: {_likely_cause(members[min(bad)].cfg)}. Fix: lower lr "
                             f"or raise dr, then train again (status.json says failed)",
                             members=sorted(bad), step=step)

    def guard(self, step: int, rows: list[dict[str, float]] | None = None) -> None:
        """Stop if any member's logged loss or any parameter is NaN or infinite."""
        bad: dict[int, str] = {}
        for i, row in enumerate(rows or []):
            for k, v in row.items():
                if not math.isfinite(v):
                    bad[i] = f"loss {k} = {v}"
                    break
        for i, ok in enumerate(self.layout.finite_members(self.agent, self.size)):
            if not ok and i not in bad:
                bad[i] = "parameters"
        if bad:
            self.fail(step, bad)

    def save(self, step: int, only: list[int] | None = None, check: bool = True) -> None:
        """Checkpoint the members (``only`` these), after a ``guard`` unless ``check`` is off."""
        if check:
            self.guard(step)
        P = self.size
        todo = [i for i in (range(P) if only is None else only) if self.members[i].ckpt]
        if not todo:
            return
        full = self.agent.full_state()
        parts = self.layout.split(full, P) if P > 1 else [full]
        for i in todo:
            m = self.members[i]
            save_checkpoint(m.ckpt, {"format": CHECKPOINT_FORMAT, "step": step,
                                     "agent": parts[i], "rng": _rng_blob(m),
                                     "config": asdict(m.cfg), "wall_s": self.wall(m)})
            m.log.write_csv()

    def evaluate(self, step: int) -> None:
        """Evaluate every member (its own seed) and probe its critic; log one row each."""
        from om2p_lite.rl.evaluate import evaluate_population  # looked up now: tests swap it

        self.guard(step)
        cfg = self.cfg
        seeds = [EVAL_SEED_OFFSET + m.cfg.seed for m in self.members]
        variant = self.meta.get("reward_variant", cfg.reward_variant)
        results = evaluate_population(self.agent, cfg.task, cfg.eval_episodes, seeds,
                                      self.device, variant, cfg.eval_max_steps or None,
                                      cfg.action_layout, cfg.behaviour)
        critics = self.probe.measure(self.agent)
        for m, res, critic in zip(self.members, results, critics, strict=True):
            m.log.add({"step": step, "kind": "eval", "return": res["return_mean"],
                       "return_std": res["return_std"], "normalised": res["normalised"],
                       "returns": res["returns"], **critic, "wall_s": self.wall(m)})

    def train(self, cores: IdleCores) -> list[dict[str, Any]]:
        """Train from the members' step to ``stop_at`` (or the end); one summary each."""
        from tqdm.auto import tqdm

        cfg, agent, members, P = self.cfg, self.agent, self.members, self.size
        start, last, device = members[0].start, cfg.stop_at or cfg.steps, self.device
        evaluating = self.probe is not None
        if start == 0 and cfg.eval_every and evaluating:
            self.evaluate(0)
        desc = f"{cfg.algo}/{cfg.task}/{cfg.quality}" + (f" x{P}" if P > 1 else "")
        bar = tqdm(range(start + 1, last + 1), desc=desc, disable=not cfg.progress,
                   initial=start, total=cfg.steps)
        gens = [m.batch_gen for m in members]
        step_time, logs = 0.0, {}
        for step in bar:
            ts = time.perf_counter()
            agent.want_logs = step % cfg.log_every == 0 or step == last
            batch = sample_population_batch(self.ds, gens, cfg.batch_size, device)
            logs = agent.update(batch)
            step_time += time.perf_counter() - ts
            if step % cfg.log_every == 0:
                rows = agent.member_logs(logs)
                self.guard(step, rows)
                for m, row in zip(members, rows, strict=True):
                    m.log.add({"step": step, "kind": "train", **row, "wall_s": self.wall(m)})
                bar.set_postfix({k: f"{v:.3g}" for k, v in list(rows[0].items())[:3]})
                if cfg.threads == 0 and device.type == "cpu":
                    torch.set_num_threads(cores.threads())
            if evaluating and ((cfg.eval_every and step % cfg.eval_every == 0)
                               or step == cfg.steps):
                self.evaluate(step)
            if (cfg.checkpoint_every and step % cfg.checkpoint_every == 0) or step == last:
                self.save(step)
        bar.close()
        return self.summaries(agent.member_logs(logs) if logs else [{} for _ in members],
                              step_time / max(last - start, 1), last)

    def summaries(self, last_rows: list[dict[str, Any]], s_per_step: float,
                  last: int) -> list[dict[str, Any]]:
        """Each member's summary (its own agent loaded with its share of the stacked one)."""
        P, meta = self.size, self.meta
        if P > 1:
            for single, part in zip(self.singles, self.layout.split(self.agent.full_state(), P),
                                    strict=True):
                single.load_full_state(part)
        out = []
        for m, single, last_logs in zip(self.members, self.singles, last_rows, strict=True):
            m.log.write_csv()
            evals = [r for r in m.log.rows if r["kind"] == "eval"]
            out.append({
                "config": asdict(m.cfg), "finished": last == self.cfg.steps, "step": last,
                "final": evals[-1] if evals else None, "evals": evals, "last_logs": last_logs,
                "device": describe_device(self.device),
                "dataset": {k: meta.get(k) for k in ("task", "quality", "seed", "budget",
                                                     "checksum", "command")},
                "wall_s": self.wall(m), "s_per_step": s_per_step,
                "population": P, "agent": single})
        return out


def train_population(cfgs: list[TrainConfig], dataset: Any = None,
                     resume: bool = True) -> list[dict[str, Any]]:
    """Train the runs ``cfgs`` (equal ``population_key``) as one stacked model.

    Returns one summary per member, in order, the same dict ``train`` returns (plus
    ``population``: how many members trained together). Each member with an ``out_dir``
    owns its folder for the duration (``run_folder_lock``) and resumes from its own
    checkpoint; members whose checkpoints stand at different steps train as successive
    populations, each from its own step.
    """
    if not cfgs:
        raise ValueError("train_population needs at least one config")
    cfgs = [c.validate() for c in cfgs]
    key0 = dict(population_key(cfgs[0]))
    for i, c in enumerate(cfgs[1:], 1):
        key = dict(population_key(c))
        if key != key0:
            diff = sorted(k for k in key0.keys() | key.keys() if key0.get(k) != key.get(k))
            raise ValueError(f"config {i} differs from config 0 in {diff}, which members of "
                             f"one population must share. Fix: group runs by "
                             f"population_key(cfg)")
    outs = [c.out_dir for c in cfgs if c.out_dir]
    dup = sorted({o for o in outs if outs.count(o) > 1})
    if dup:
        raise ValueError(f"out_dir {dup} given to more than one member. Fix: one folder per run")
    ds = dataset if dataset is not None else load_data(cfgs[0])
    for c in cfgs:
        check_dataset(ds, c)
    device = pick_device(cfgs[0].device or None)
    threads_before = torch.get_num_threads()
    cores = IdleCores()
    if device.type == "cpu":
        torch.set_num_threads(cfgs[0].threads or cores.threads())
    members = [_Member(i, c, Path(c.out_dir) if c.out_dir else None) for i, c in enumerate(cfgs)]
    try:
        with ExitStack() as locks:
            for m in members:
                if m.folder:
                    locks.enter_context(m.folder.lock())
            for m in members:
                _read_resume(m, resume)
            summaries: list[dict[str, Any] | None] = [None] * len(members)
            for step in sorted({m.start for m in members}):
                group = [m for m in members if m.start == step]
                for m, s in zip(group, _Group.start(group, ds, device).train(cores),
                                strict=True):
                    summaries[m.index] = s
    finally:
        torch.set_num_threads(threads_before)
    return summaries  # type: ignore[return-value]


def train(cfg: TrainConfig, dataset: Any = None, resume: bool = True) -> dict[str, Any]:
    """Train ``cfg.algo`` on the dataset; evaluate, log and checkpoint; return a summary.

    A population of one (``train_population``). With ``out_dir`` set and a
    checkpoint there, the run continues from it (``resume``) and ends bit-identical (on
    CPU) to a run that never stopped. ``eval_episodes = 0`` skips evaluation (``final`` is
    then None). A loss or parameter that becomes NaN or infinite raises
    ``rundir.NonFiniteError`` and marks the run folder's ``status.json`` failed.
    """
    return train_population([cfg], dataset=dataset, resume=resume)[0]


# --- the result of a finished run --------------------------------------------------------------

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

