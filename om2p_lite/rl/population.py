"""Population training: P runs of one algorithm on one dataset trained as ONE stacked model.

Not an algorithm (``agents``) nor a command line: ``train_population(cfgs)`` trains the
members together and writes each member's run folder exactly as a run of its own would;
``train.train(cfg)`` is a population of one.

How members stay independent: the agent axis becomes (member × agent), P·A long, and the
networks are already stacked per agent, so every per-agent quantity (Q normalisation,
adaptive weight, Adam's moments) is per member; each member has its own generators for
batch indices, noise and time samples; η, Δr, the fd/zero estimator and Q normalisation are
per-agent tensors; no loss term mixes members. Member m's parameters, losses and
evaluations are bit-identical on the CPU to a run of its own (tests/test_population.py).
"""

from __future__ import annotations

import math
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from om2p_lite.data.run_data import check_dataset, load_data
from om2p_lite.rl.agents import AGENTS, Agent, AgentDims, dims_of, make_agent
from om2p_lite.rl.config import TrainConfig
from om2p_lite.rl.convergence import CriticProbe
from om2p_lite.rl.rundir import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_NAME,
    DRIVING_FIELDS,
    RESUME_FREE,
    NonFiniteError,
    RunFolder,
    RunLog,
    damaged,
    save_checkpoint,
)
from om2p_lite.runtime.cores import IdleCores
from om2p_lite.runtime.device import pick_device
from om2p_lite.runtime.record import portable_config
from om2p_lite.runtime.seeding import seed_everything

# Settings each member of a population may have of its own (everything else is shared).
PER_MEMBER_FIELDS: tuple[str, ...] = ("seed", "eta", "dr", "xi", "ratio", "estimator",
                                      "pairing", "q_norm", "out_dir")
BATCH_SEED_OFFSET = 1_000_003  # member seed + this seeds its batch indices
NOISE_SEED_OFFSET = 2_000_003  # member seed + this seeds its noise and time samples
EVAL_SEED_OFFSET = 10_000  # member seed + this seeds its evaluation


def population_key(cfg: TrainConfig) -> tuple:
    """Runs with equal keys can share one population (one stacked model).

    The key is every setting but the per-member and driving ones (``rundir.DRIVING_FIELDS``),
    plus the code path: the du/dr estimators ``fd`` and ``zero`` share one (a mask), ``jvp``
    and ``jacobian`` each have their own. An algorithm whose update does not draw through
    ``Agent.randn``/``rand`` (``member_streams``) keeps every run in a population of its own.
    """
    agent_cls = AGENTS.get(cfg.algo)
    stackable = bool(agent_cls and agent_cls.member_streams)
    skip = set(DRIVING_FIELDS) | (set(PER_MEMBER_FIELDS) if stackable else set())
    key = tuple((k, v) for k, v in asdict(cfg).items() if k not in skip)
    if stackable:
        key += (("du_dr_path", "fd|zero" if cfg.estimator in ("fd", "zero") else cfg.estimator),)
    return key


# --- stacking members' states into one agent and back ---------------------------------------

def join_members(parts: list[torch.Tensor], n_agents: int) -> torch.Tensor:
    """P member tensors (k·A, ...) → one (k·P·A, ...) laid out (k, member, agent)."""
    k, rest = parts[0].shape[0] // n_agents, parts[0].shape[1:]
    return torch.stack([p.reshape(k, n_agents, *rest) for p in parts], 1).reshape(-1, *rest)


def split_members(t: torch.Tensor, n_members: int, n_agents: int) -> list[torch.Tensor]:
    """Inverse of ``join_members``: (k·P·A, ...) → P tensors (k·A, ...)."""
    rest = t.shape[1:]
    v = t.reshape(-1, n_members, n_agents, *rest)
    return [v[:, m].reshape(-1, *rest).clone() for m in range(n_members)]


@dataclass
class _Layout:
    """Which entries of an agent's state are per agent (stacked over members) or shared."""

    n_agents: int  # A of one member
    model: dict[str, bool]
    optimizers: dict[str, list[bool]]

    @classmethod
    def of(cls, single: Agent, stacked: Agent) -> _Layout:
        big = stacked.state_dict()
        model = {k: v.shape != big[k].shape for k, v in single.state_dict().items()}
        opts = {}
        for name, opt in single.optimizers.items():
            ps = [p for g in opt.param_groups for p in g["params"]]
            qs = [p for g in stacked.optimizers[name].param_groups for p in g["params"]]
            opts[name] = [p.shape != q.shape for p, q in zip(ps, qs, strict=True)]
        return cls(single.dims.n_agents, model, opts)

    def join(self, states: list[dict[str, Any]]) -> dict[str, Any]:
        """Members' ``full_state`` dicts → the stacked agent's."""
        A, first = self.n_agents, states[0]
        model = {k: join_members([s["model"][k] for s in states], A) if per else v
                 for (k, v), per in zip(first["model"].items(), self.model.values(),
                                        strict=True)}
        opts = {}
        for name, flags in self.optimizers.items():
            sd = first["optimizers"][name]
            state = {i: {key: join_members([s["optimizers"][name]["state"][i][key]
                                            for s in states], A)
                         if flags[i] and isinstance(v, torch.Tensor) and v.dim() > 0 else v
                         for key, v in entry.items()}
                     for i, entry in sd["state"].items()}
            opts[name] = {"state": state, "param_groups": sd["param_groups"]}
        return {"model": model, "n_updates": first["n_updates"], "optimizers": opts}

    def split(self, state: dict[str, Any], n_members: int) -> list[dict[str, Any]]:
        """The stacked agent's ``full_state`` → one per member."""
        P, A = n_members, self.n_agents
        out: list[dict[str, Any]] = [{"model": {}, "n_updates": state["n_updates"],
                                      "optimizers": {}} for _ in range(P)]
        for (k, v), per in zip(state["model"].items(), self.model.values(), strict=True):
            parts = split_members(v, P, A) if per else [v.clone()] * P
            for m in range(P):
                out[m]["model"][k] = parts[m]
        for name, flags in self.optimizers.items():
            sd = state["optimizers"][name]
            for m in range(P):
                out[m]["optimizers"][name] = {"state": {}, "param_groups": sd["param_groups"]}
            for i, entry in sd["state"].items():
                for m in range(P):
                    out[m]["optimizers"][name]["state"][i] = {}
                for key, v in entry.items():
                    per = flags[i] and isinstance(v, torch.Tensor) and v.dim() > 0
                    parts = split_members(v, P, A) if per else [v] * P
                    for m in range(P):
                        out[m]["optimizers"][name]["state"][i][key] = parts[m]
        return out

    def finite_members(self, stacked: Agent, n_members: int) -> list[bool]:
        """Per member: are all its parameters and buffers finite? (one host sync)"""
        checks = [torch.isfinite(v.reshape(-1, n_members, self.n_agents, *v.shape[1:])
                                 ).flatten(2).all(-1).all(0)
                  for (k, v), per in zip(stacked.state_dict().items(), self.model.values(),
                                         strict=True)
                  if (per or n_members == 1) and v.is_floating_point() and v.dim() > 0]
        return torch.stack(checks).all(0).tolist() if checks else [True] * n_members


def build_population(cfgs: list[TrainConfig], dims: AgentDims, device: torch.device | str,
                     states: list[dict[str, Any] | None] | None = None,
                     ) -> tuple[Agent, list[Agent], _Layout]:
    """The stacked agent of members ``cfgs`` (agent axis P·A), each member initialised
    exactly as its own run (seeded with its seed) or loaded from ``states``.

    Returns (stacked agent, the members' own agents, the layout that joins and splits
    their states). A population of one is its own agent. With ``compile`` set, the stacked
    networks are compiled (``Agent.compile_networks``).
    """
    cfg, P, A = cfgs[0], len(cfgs), dims.n_agents
    states = states or [None] * P
    if P > 1 and not AGENTS[cfg.algo].member_streams:
        raise ValueError(f"algorithm {cfg.algo!r} draws randomness outside Agent.randn/rand, "
                         f"so its runs cannot share a population. Fix: train them one by one")
    singles = []
    for c, state in zip(cfgs, states, strict=True):  # each initialised as a run of its own
        seed_everything(c.seed)
        singles.append(make_agent(cfg.algo, dims, c).to(device))
        if state is not None:
            _load_member(singles[-1], state, c)
    if P == 1:
        agent = singles[0]
        layout = _Layout.of(agent, agent)
    else:
        stacked_dims = AgentDims(P * A, dims.obs_dim, dims.act_dim, tuple(dims.act_dims) * P)
        agent = make_agent(cfg.algo, stacked_dims, cfg).to(device)
        agent.set_members(cfgs)
        layout = _Layout.of(singles[0], agent)
        agent.load_full_state(layout.join([s if s is not None else single.full_state()
                                           for s, single in zip(states, singles, strict=True)]))
    if getattr(cfg, "compile", False):
        agent.compile_networks()
    return agent, singles, layout


def _load_member(agent: Agent, state: dict[str, Any], cfg: TrainConfig) -> None:
    """Load a member's checkpointed state; one that does not fit its agent is a
    ``CheckpointError`` naming the file."""
    try:
        agent.load_full_state(state)
    except (KeyError, RuntimeError, TypeError, ValueError) as err:
        where = Path(cfg.out_dir) / CHECKPOINT_NAME if cfg.out_dir else Path(CHECKPOINT_NAME)
        raise damaged(where, f"its weights do not fit the {cfg.algo} agent its config "
                             f"describes ({type(err).__name__}: "
                             f"{str(err).splitlines()[0] if str(err) else ''})") from None


# --- one member's bookkeeping ------------------------------------------------------------------

@dataclass
class _Member:
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
                     if k not in RESUME_FREE and saved.get(k) != v)
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


def sample_population_batch(ds: Any, gens: list[torch.Generator], batch_size: int,
                            device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """Each member's own batch (its generator's indices), side by side on the agent axis.

    obs/next_obs (B, P·A, D), actions (B, P·A, d), rewards and dones (B, P·A).
    """
    idx = np.stack([ds.sample_indices(batch_size, g).numpy() for g in gens], 1)  # (B, P)
    B, P = idx.shape
    A = ds.obs.shape[1]
    out = {"obs": ds.obs[idx].reshape(B, P * A, -1),
           "actions": ds.actions[idx].reshape(B, P * A, -1),
           "rewards": ds.rewards[idx].reshape(B, P * A),
           "next_obs": ds.next_obs[idx].reshape(B, P * A, -1),
           "dones": np.repeat(ds.terminals[idx].astype(np.float32), A, axis=1)}
    return {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)).to(device)
            for k, v in out.items()}


def _likely_cause(cfg: TrainConfig) -> str:
    causes = [f"the learning rate (lr = {cfg.lr:g}) is too large"]
    if cfg.eta > 1e3:
        causes.append(f"η = {cfg.eta:g} scales the Q term's gradient beyond float32")
    if cfg.algo == "om2p" and cfg.estimator == "fd":
        causes.append(f"Δr = {cfg.dr:g} is too small for float32 (fd divides by Δr)")
    return " or ".join(causes)


# --- the loop ----------------------------------------------------------------------------------

def _train_group(members: list[_Member], ds: Any, device: torch.device,
                 cores: IdleCores) -> list[dict[str, Any]]:
    """Train members that resume from the same step as one stacked agent."""
    from tqdm.auto import tqdm

    from om2p_lite.rl.evaluate import evaluate_population
    from om2p_lite.runtime.device import describe_device

    cfg = members[0].cfg
    P, dims = len(members), dims_of(ds)
    for m in members:
        m.batch_gen.manual_seed(m.cfg.seed + BATCH_SEED_OFFSET)
        m.noise_gen.manual_seed(m.cfg.seed + NOISE_SEED_OFFSET)
    agent, singles, layout = build_population([m.cfg for m in members], dims, device,
                                              [m.blob["agent"] if m.blob else None
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
    meta = getattr(ds, "metadata", {}) or {}
    variant = meta.get("reward_variant", cfg.reward_variant)
    last = cfg.stop_at or cfg.steps
    t0 = time.time()

    def wall(m: _Member) -> float:
        return m.wall0 + time.time() - t0

    def fail(step: int, bad: dict[int, str]) -> None:
        """Mark the bad members failed, checkpoint the healthy ones, raise."""
        for i, what in bad.items():
            m = members[i]
            if m.folder:
                m.folder.write_status("failed", step=step,
                                      error=f"non-finite {what} at step {step}")
                m.log.write_csv()
        healthy = [i for i in range(P) if i not in bad]
        if healthy:
            save(step, only=healthy, check=False)
        names = ", ".join(f"{members[i].out or f'member {i}'} (seed {members[i].cfg.seed}, "
                          f"{what})" for i, what in bad.items())
        raise NonFiniteError(f"training became non-finite at step {step}: {names}. Likely "
                             f"cause: {_likely_cause(members[min(bad)].cfg)}. Fix: lower lr "
                             f"or raise dr, then train again (status.json says failed)",
                             members=sorted(bad), step=step)

    def guard(step: int, rows: list[dict[str, float]] | None = None) -> None:
        """Stop if any member's logged loss or any parameter is NaN or infinite."""
        bad: dict[int, str] = {}
        for i, row in enumerate(rows or []):
            for k, v in row.items():
                if not math.isfinite(v):
                    bad[i] = f"loss {k} = {v}"
                    break
        for i, ok in enumerate(layout.finite_members(agent, P)):
            if not ok and i not in bad:
                bad[i] = "parameters"
        if bad:
            fail(step, bad)

    def save(step: int, only: list[int] | None = None, check: bool = True) -> None:
        if check:
            guard(step)
        todo = [i for i in (range(P) if only is None else only) if members[i].ckpt]
        if not todo:
            return
        parts = layout.split(agent.full_state(), P) if P > 1 else [agent.full_state()]
        for i in todo:
            m = members[i]
            save_checkpoint(m.ckpt, {"format": CHECKPOINT_FORMAT, "step": step,
                                     "agent": parts[i], "rng": _rng_blob(m),
                                     "config": asdict(m.cfg), "wall_s": wall(m)})
            m.log.write_csv()

    def evaluate(step: int) -> None:
        guard(step)
        seeds = [EVAL_SEED_OFFSET + m.cfg.seed for m in members]
        results = evaluate_population(agent, cfg.task, cfg.eval_episodes, seeds, device,
                                      variant, cfg.eval_max_steps or None)
        critics = probe.measure(agent)
        for m, res, critic in zip(members, results, critics, strict=True):
            m.log.add({"step": step, "kind": "eval", "return": res["return_mean"],
                       "return_std": res["return_std"], "normalised": res["normalised"],
                       "returns": res["returns"], **critic, "wall_s": wall(m)})

    evaluating = cfg.eval_episodes > 0
    probe = CriticProbe(ds, cfg.gamma, P, device) if evaluating else None
    if start == 0 and cfg.eval_every and evaluating:
        evaluate(0)
    desc = f"{cfg.algo}/{cfg.task}/{cfg.quality}" + (f" x{P}" if P > 1 else "")
    bar = tqdm(range(start + 1, last + 1), desc=desc, disable=not cfg.progress,
               initial=start, total=cfg.steps)
    gens = [m.batch_gen for m in members]
    step_time, logs = 0.0, {}
    for step in bar:
        ts = time.perf_counter()
        agent.want_logs = step % cfg.log_every == 0 or step == last
        batch = sample_population_batch(ds, gens, cfg.batch_size, device)
        logs = agent.update(batch)
        step_time += time.perf_counter() - ts
        if step % cfg.log_every == 0:
            rows = agent.member_logs(logs)
            guard(step, rows)
            for m, row in zip(members, rows, strict=True):
                m.log.add({"step": step, "kind": "train", **row, "wall_s": wall(m)})
            bar.set_postfix({k: f"{v:.3g}" for k, v in list(rows[0].items())[:3]})
            if cfg.threads == 0 and device.type == "cpu":
                torch.set_num_threads(cores.threads())
        if evaluating and ((cfg.eval_every and step % cfg.eval_every == 0) or step == cfg.steps):
            evaluate(step)
        if (cfg.checkpoint_every and step % cfg.checkpoint_every == 0) or step == last:
            save(step)
    bar.close()
    last_rows = agent.member_logs(logs) if logs else [{} for _ in members]
    if P > 1:
        for single, part in zip(singles, layout.split(agent.full_state(), P), strict=True):
            single.load_full_state(part)
    summaries = []
    for m, single, last_logs in zip(members, singles, last_rows, strict=True):
        m.log.write_csv()
        evals = [r for r in m.log.rows if r["kind"] == "eval"]
        summaries.append({
            "config": asdict(m.cfg), "finished": last == cfg.steps, "step": last,
            "final": evals[-1] if evals else None, "evals": evals, "last_logs": last_logs,
            "device": describe_device(device),
            "dataset": {k: meta.get(k) for k in ("task", "quality", "seed", "budget",
                                                 "checksum", "command")},
            "wall_s": wall(m), "s_per_step": step_time / max(last - start, 1),
            "population": P, "agent": single})
    return summaries


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
                for m, s in zip(group, _train_group(group, ds, device, cores), strict=True):
                    summaries[m.index] = s
    finally:
        torch.set_num_threads(threads_before)
    return summaries  # type: ignore[return-value]
