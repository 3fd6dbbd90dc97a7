"""Populations: P runs of one algorithm on one dataset stacked into ONE model, and back.

Not an algorithm (``agents``) nor the training loop (``train.train_population``, which trains
the members together and writes each member's run folder exactly as a run of its own
would): this is the stacking, i.e. which runs may share a model (``population_key``), their
states joined and split (``MemberLayout``), the stacked agent (``build_population``) and
each member's own batch (``sample_population_batch``).

How members stay independent: the agent axis becomes (member × agent), P·A long, and the
networks are already stacked per agent, so every per-agent quantity (Q normalisation,
adaptive weight, Adam's moments) is per member; each member has its own generators for
batch indices, noise and time samples; η, Δr, the fd/zero estimator and Q normalisation are
per-agent tensors; no loss term mixes members. Member m's parameters, losses and
evaluations are bit-identical on the CPU to a run of its own (tests/test_population.py).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from om2p_lite.rl.agents import AGENTS, Agent, AgentDims, make_agent
from om2p_lite.rl.config import TrainConfig
from om2p_lite.rl.rundir import (
    CHECKPOINT_NAME,
    DRIVING_FIELDS,
    damaged,
)
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
class MemberLayout:
    """Which entries of an agent's state are per agent (stacked over members) or shared."""

    n_agents: int  # A of one member
    model: dict[str, bool]
    optimizers: dict[str, list[bool]]

    @classmethod
    def of(cls, single: Agent, stacked: Agent) -> MemberLayout:
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
                     ) -> tuple[Agent, list[Agent], MemberLayout]:
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
        layout = MemberLayout.of(agent, agent)
    else:
        stacked_dims = AgentDims(P * A, dims.obs_dim, dims.act_dim, tuple(dims.act_dims) * P)
        agent = make_agent(cfg.algo, stacked_dims, cfg).to(device)
        agent.set_members(cfgs)
        layout = MemberLayout.of(singles[0], agent)
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

