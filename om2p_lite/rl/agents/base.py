"""What every offline multi-agent learner shares: shapes, optimisers, the critic step, acting.

Not an algorithm: each algorithm is a small subclass that names its actor, its losses and
how it samples actions; the critic, the TD target and the data batch code live here once.

Size: past 400 lines, and one job: the hierarchy every algorithm subclasses (``Agent``,
``ActorCriticAgent``, ``GenerativeQAgent``, ``DeterministicActorAgent``), read top to bottom
as one chain of ``super()`` calls; split, a reader of one algorithm would open three files.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from om2p_lite.flows.ops import batch_mean
from om2p_lite.flows.stacked import StackedMLP, StackedVelocityNet
from om2p_lite.rl.critics import (
    JointCritic,
    StackedCritic,
    critic_loss,
    make_target,
    normalised_q_loss,
    polyak_update,
    td_target,
)

if TYPE_CHECKING:
    from om2p_lite.rl.config import TrainConfig

Batch = dict[str, torch.Tensor]
Logs = dict[str, Any]  # per-agent tensors (A,) as ``update`` returns them (floats allowed)
Generators = torch.Generator | Sequence[torch.Generator] | None


def make_adam(params: Any, lr: float) -> torch.optim.Optimizer:
    """Adam with the multi-tensor (``foreach``) step: faster than the per-tensor loop, and,
    unlike the fused CPU kernel, it gives an element the same bits whether it sits in a
    vectorised chunk or in a tensor's scalar tail, so a population's member steps exactly
    as its own run does (tests/test_population.py)."""
    return torch.optim.Adam(params, lr=lr, foreach=True)


@contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """No weight gradients for ``module`` inside the block (gradients still flow through it).

    The actor's Q term needs dQ/da, not dQ/dθ_critic: skipping the critic's weight
    gradients saves their matrix products.
    """
    params = [p for p in module.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


@dataclass(frozen=True)
class AgentDims:
    """Shapes of a task's per-agent arrays (zero padded to the largest agent)."""

    n_agents: int  # learning agents A
    obs_dim: int  # padded observation width D
    act_dim: int  # padded action width d
    act_dims: tuple[int, ...]  # each agent's true action size (the rest is padding)

    def act_mask(self) -> torch.Tensor:
        """(A, d) mask: 1 on each agent's real action dims, 0 on padding."""
        mask = torch.zeros(self.n_agents, self.act_dim)
        for i, d in enumerate(self.act_dims):
            mask[i, :d] = 1.0
        return mask


def dims_of(ds: Any) -> AgentDims:
    """Per-agent shapes from a dataset's arrays (and its ``act_dims`` metadata if present)."""
    _, n_agents, obs_dim = ds.obs.shape
    act_dim = ds.actions.shape[2]
    act_dims = tuple((getattr(ds, "metadata", {}) or {}).get("act_dims", [act_dim] * n_agents))
    return AgentDims(int(n_agents), int(obs_dim), int(act_dim), act_dims)


class Agent(nn.Module):
    """A learner for all agents at once: ``update(batch) -> logs`` and ``act(obs) -> actions``.

    Batches are dicts of tensors: obs/next_obs (B, A, D), actions (B, A, d) in [-1, 1],
    rewards (B, A), dones (B,) or (B, A) (true terminations only). Networks are stacked over
    agents, so agent i's parameters only ever see agent i's columns (independent learners).

    A population of P runs is one agent whose agent axis is (member × agent), P·A long
    (``set_members``): per-member settings become per-agent tensors, and ``randn``/``rand``
    draw member m's slice from member m's generator, so member m computes exactly what a
    run of its own computes.
    """

    name: ClassVar[str] = "agent"
    uses_critic: ClassVar[bool] = False
    # True when every random draw of ``update`` goes through ``randn``/``rand`` and every
    # log is a per-agent tensor: then runs can share one stacked population.
    member_streams: ClassVar[bool] = False
    # The config fields this algorithm reads among those only some algorithms read; a field
    # no agent names is read by every one (lr, batch_size, hidden, ...). A change of a field
    # outside ``reads`` leaves its stored results valid (rl.agents.unread_fields). Measured,
    # not assumed: tests/test_agents.py changes each field and checks whose training changes.
    reads: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, dims: AgentDims, cfg: TrainConfig):
        super().__init__()
        self.dims, self.cfg = dims, cfg
        self.register_buffer("act_mask", dims.act_mask())
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.n_updates = 0
        # the per-member random streams (set by the trainer); None: torch's global RNG
        self.generators: list[torch.Generator] | None = None
        # compute the logs that cost extra passes (the trainer: only on the steps it logs)
        self.want_logs = True
        self.set_members([cfg])

    def set_members(self, cfgs: Sequence[TrainConfig]) -> None:
        """Make the agent a population of ``len(cfgs)`` members along its agent axis.

        ``dims.n_agents`` must be P·A. Subclasses read their per-member settings here (and
        call this first); settings that are not per member come from ``self.cfg``.
        """
        if not cfgs or self.dims.n_agents % len(cfgs):
            raise ValueError(f"{len(cfgs)} members do not divide {self.dims.n_agents} agents")
        self.member_cfgs = list(cfgs)
        self.n_members = len(cfgs)
        self.agents_per_member = self.dims.n_agents // self.n_members

    def per_agent(self, values: Sequence[float | bool], dtype: torch.dtype = torch.float32,
                  ) -> torch.Tensor:
        """One value per member → a (P·A,) tensor on the agent's device."""
        return torch.tensor(list(values), dtype=dtype).repeat_interleave(
            self.agents_per_member).to(self.act_mask.device)

    def compile_networks(self) -> None:
        """``torch.compile`` every stacked network's member-major pass (``TrainConfig.compile``).

        Fuses the element-wise work around the matrix products (bias, GELU, LayerNorm) in
        the forward and backward passes; the first steps pay the compilation.
        """
        for module in self.modules():
            if isinstance(module, StackedMLP) and "forward_members" not in vars(module):
                module.forward_members = torch.compile(module.forward_members, dynamic=False)

    def adam(self, name: str, module: nn.Module) -> torch.optim.Optimizer:
        """Register and return an Adam optimiser (lr from the config) for ``module``."""
        self.optimizers[name] = make_adam(module.parameters(), self.cfg.lr)
        return self.optimizers[name]

    @staticmethod
    def step(opt: torch.optim.Optimizer, loss: torch.Tensor) -> None:
        """zero_grad, backward, step."""
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def _draw(self, fn: Callable[..., torch.Tensor], shape: tuple[int, ...], agent_dim: int,
              generator: Generators) -> torch.Tensor:
        """``fn(shape)`` with member m's slice of axis ``agent_dim`` from member m's generator."""
        device = self.act_mask.device
        gens = self.generators if generator is None else generator
        if gens is None:
            return fn(shape, device=device)
        if isinstance(gens, torch.Generator):
            gens = [gens]
        if len(gens) == 1:
            return fn(shape, generator=gens[0], device=gens[0].device).to(device)
        P, n = len(gens), shape[agent_dim]
        if n % P:
            raise ValueError(f"axis {agent_dim} of {shape} ({n}) is not a multiple of the "
                             f"{P} members' generators")
        part = list(shape)
        part[agent_dim] = n // P
        return torch.cat([fn(part, generator=g, device=g.device) for g in gens],
                         dim=agent_dim).to(device)

    def randn(self, *shape: int, agent_dim: int = -2, generator: Generators = None,
              ) -> torch.Tensor:
        """N(0, I) draws of ``shape`` whose axis ``agent_dim`` is the agent axis (P·A).

        The one source of an agent's randomness (with ``rand``): ``generator`` (one, or one
        per member), else the trainer's per-member ``generators``, else torch's global RNG.
        """
        return self._draw(torch.randn, shape, agent_dim, generator)

    def rand(self, *shape: int, agent_dim: int = -2, generator: Generators = None,
             ) -> torch.Tensor:
        """U[0, 1) draws of ``shape`` whose axis ``agent_dim`` is the agent axis (P·A)."""
        return self._draw(torch.rand, shape, agent_dim, generator)

    def member_generators(self) -> list[torch.Generator | None]:
        """Each member's generator (``None`` each when drawing from torch's global RNG)."""
        return list(self.generators) if self.generators is not None else \
            [None] * self.n_members

    def noise(self, obs: torch.Tensor, generator: Generators = None) -> torch.Tensor:
        """ε ~ N(0, I) of shape (B, A, d) for observations (B, A, D)."""
        shape = (*obs.shape[:-1], self.dims.act_dim)
        return self.randn(*shape, generator=generator).to(obs.dtype)

    def policy(self, obs: torch.Tensor, eps: torch.Tensor | None = None) -> torch.Tensor:
        """Actions (B, A, d) in [-1, 1], with gradients; ``eps`` is the noise if stochastic."""
        raise NotImplementedError

    @torch.no_grad()
    def act(self, obs: torch.Tensor, generator: Generators = None) -> torch.Tensor:
        """Evaluation actions (B, A, d) for observations (B, A, D); no gradients."""
        return self.policy(obs, self.noise(obs, generator)) * self.act_mask

    def update(self, batch: Batch) -> Logs:
        """One gradient step on ``batch``; returns logs as per-agent tensors (A,).

        Tensors, not floats: converting costs a device sync, so the trainer converts only
        the steps it logs (``member_logs``).
        """
        raise NotImplementedError

    def member_logs(self, logs: Logs) -> list[dict[str, float]]:
        """Per member, the mean over its agents of each per-agent log (one host sync).

        Scalar logs (floats, 0-d tensors) are accepted from a population of one only.
        """
        P, n = self.n_members, self.dims.n_agents
        vectors = {k: v for k, v in logs.items()
                   if isinstance(v, torch.Tensor) and v.dim() == 1 and v.numel() == n}
        scalars = {k: v for k, v in logs.items() if k not in vectors}
        if scalars and P > 1:
            raise ValueError(f"{type(self).__name__}.update returned scalar logs "
                             f"{sorted(scalars)}: a population needs per-agent tensors (A,)")
        out: list[dict[str, float]] = [{} for _ in range(P)]
        if vectors:
            table = torch.stack([v.detach().float().view(P, -1).mean(1)
                                 for v in vectors.values()]).tolist()  # (K, P)
            for name, row in zip(vectors, table, strict=True):
                for m in range(P):
                    out[m][name] = row[m]
        for name, v in scalars.items():
            out[0][name] = float(v)
        return [{k: row[k] for k in logs if k in row} for row in out]

    def full_state(self) -> dict[str, Any]:
        """Everything needed to resume: parameters, buffers, optimisers, update count."""
        return {"model": self.state_dict(), "n_updates": self.n_updates,
                "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()}}

    def load_full_state(self, state: dict[str, Any]) -> None:
        """Inverse of ``full_state``."""
        self.load_state_dict(state["model"])
        self.n_updates = int(state["n_updates"])
        for k, o in self.optimizers.items():
            o.load_state_dict(state["optimizers"][k])


class ActorCriticAgent(Agent):
    """An agent with per-agent critic ensembles and a TD target from its own next actions.

    Subclasses set ``self.actor`` (+ optimiser) and implement ``policy`` and ``actor_loss``;
    they may change ``next_action`` (TD3's target smoothing), ``target_reduce`` and
    ``critic_regulariser`` (CQL's conservative term).
    """

    uses_critic = True
    reads = frozenset({"critic_hidden", "critic_depth", "n_q", "gamma", "tau"})
    target_reduce: ClassVar[str] = "mean"
    policy_delay: int = 1

    def __init__(self, dims: AgentDims, cfg: TrainConfig, *,
                 activation: type[nn.Module] = nn.GELU, layer_norm: bool = True,
                 central: bool = False):
        """``activation`` and ``layer_norm`` shape the critics (the defaults: every offline
        agent's; the online behaviour driver builds TD3's ReLU MLPs without LayerNorm);
        ``central`` makes them centralised (``JointCritic``, one team, the online MATD3)."""
        super().__init__(dims, cfg)
        critic = JointCritic if central else StackedCritic
        self.critic = critic(dims.n_agents, dims.obs_dim, dims.act_dim,
                             cfg.critic_hidden, cfg.critic_depth, cfg.n_q,
                             layer_norm=layer_norm, activation=activation)
        self.critic_target = make_target(self.critic)
        self.adam("critic", self.critic)

    def next_action(self, next_obs: torch.Tensor) -> torch.Tensor:
        """a' for the TD target: a sample of the current policy (as OM2P's public code,
        lizr16/OM2P agents/fql_meanfield.py:30-37)."""
        return self.policy(next_obs, self.noise(next_obs)) * self.act_mask

    def critic_regulariser(self, batch: Batch, q: torch.Tensor) -> tuple[torch.Tensor, Logs]:
        """Extra critic loss (none by default)."""
        return q.new_zeros(()), {}

    def update_critic(self, batch: Batch) -> Logs:
        """One TD step of every agent's critic ensemble   (eq-td-target)."""
        with torch.no_grad():
            a_next = self.next_action(batch["next_obs"])  # (B, A, d)
            y = td_target(self.critic_target(batch["next_obs"], a_next), batch["rewards"],
                          batch["dones"], self.cfg.gamma, self.target_reduce)  # (B, A)
        q = self.critic(batch["obs"], batch["actions"])  # (n_q, B, A)
        reg, logs = self.critic_regulariser(batch, q)
        loss_td = critic_loss(q, y, reduce="agents")  # (A,)
        self.step(self.optimizers["critic"], loss_td.sum() + reg)
        if self.want_logs:
            logs["q_data"] = batch_mean(q.detach().mean(0))
        return {"critic_loss": loss_td.detach(), **logs}

    def actor_loss(self, batch: Batch) -> tuple[torch.Tensor, Logs]:
        """The actor's loss on ``batch`` and its logs."""
        raise NotImplementedError

    def targets(self) -> list[tuple[nn.Module, nn.Module]]:
        """(target, online) pairs to Polyak-average after an actor step."""
        return [(self.critic_target, self.critic)]

    def update(self, batch: Batch) -> Logs:
        """Critic step every call; actor step and Polyak update every ``policy_delay`` calls."""
        logs = self.update_critic(batch)
        self.n_updates += 1
        if self.n_updates % self.policy_delay == 0:
            loss, actor_logs = self.actor_loss(batch)
            self.step(self.optimizers["actor"], loss)
            logs.update(actor_logs)
            for target, online in self.targets():
                polyak_update(target, online, self.cfg.tau)
        return logs


class GenerativeQAgent(ActorCriticAgent):
    """Generative actor + Q: L = L_gen + η · L_Q with a_π sampled WITH gradients.

    OM2P (one-step mean flow), Flow+Q (K-step Euler) and Diffusion+Q (DDPM) differ only
    in ``generative_loss`` and ``policy``; the normalised Q term is shared   (eq-actor-loss).
    Each has one stacked velocity (or noise) network per agent as its actor.
    """

    reads = ActorCriticAgent.reads | {"eta", "q_norm"}  # λ = η / sg(mean |Q|)

    def __init__(self, dims: AgentDims, cfg: Any):
        super().__init__(dims, cfg)
        self.actor = StackedVelocityNet(dims.n_agents, dims.obs_dim, dims.act_dim, cfg.hidden,
                                        cfg.depth)
        self.adam("actor", self.actor)

    def set_members(self, cfgs: Sequence[Any]) -> None:
        """Per member: η (a (P·A,) weight of the Q term) and Q normalisation on or off."""
        super().set_members(cfgs)
        self.register_buffer("eta", self.per_agent([c.eta for c in cfgs]), persistent=False)
        self.register_buffer("q_norm", self.per_agent([c.q_norm for c in cfgs], torch.bool),
                             persistent=False)
        self.q_members = [c.eta > 0 for c in cfgs]

    def generative_loss(self, obs: torch.Tensor, actions: torch.Tensor,
                        ) -> tuple[torch.Tensor, Logs]:
        """Behaviour-cloning part of the actor loss, summed over agents."""
        raise NotImplementedError

    def actor_loss(self, batch: Batch) -> tuple[torch.Tensor, Logs]:
        """L = L_gen + Σ_i η_i L_Q,i   (eq-actor-loss); L_Q not computed when every η is 0.

        The policy noise for L_Q is drawn even then, so a run's random stream is the same
        whatever its η (and a member's whatever its population).
        """
        obs = batch["obs"]
        loss, logs = self.generative_loss(obs, batch["actions"])
        eps = self.noise(obs)
        if any(self.q_members):
            a_pi = self.policy(obs, eps) * self.act_mask
            with frozen(self.critic):
                q_pi = self.critic(obs, a_pi)  # (n_q, B, A)
            loss_q = normalised_q_loss(q_pi, self.q_norm, reduce="agents")  # (A,)
            loss = loss + (self.eta * loss_q).sum()  # (eq-actor-loss)
            logs["q_loss"] = loss_q.detach()
            if self.want_logs:
                logs["q_pi"] = batch_mean(q_pi.detach().mean(0))
        return loss, logs

    def member_logs(self, logs: Logs) -> list[dict[str, float]]:
        """As ``Agent.member_logs``; a member with η = 0 logs no Q term (as its own run)."""
        rows = super().member_logs(logs)
        for row, uses_q in zip(rows, self.q_members, strict=True):
            if not uses_q:
                row.pop("q_loss", None)
                row.pop("q_pi", None)
        return rows


class DeterministicActorAgent(ActorCriticAgent):
    """A tanh MLP actor per agent with a Polyak target actor (TD3, TD3+BC, CQL, OMAR)."""

    target_reduce = "min"
    reads = ActorCriticAgent.reads | {"policy_noise", "noise_clip"}  # TD3's smoothing

    def __init__(self, dims: AgentDims, cfg: TrainConfig, *,
                 activation: type[nn.Module] = nn.GELU, layer_norm: bool = True,
                 central: bool = False):
        """``activation`` is the actor's and the critics'; ``layer_norm`` and ``central``
        the critics'."""
        super().__init__(dims, cfg, activation=activation, layer_norm=layer_norm,
                         central=central)
        self.actor = StackedMLP(dims.n_agents, dims.obs_dim, dims.act_dim, cfg.hidden,
                                cfg.depth, activation=activation)
        self.actor_target = make_target(self.actor)
        self.adam("actor", self.actor)

    def policy(self, obs: torch.Tensor, eps: torch.Tensor | None = None) -> torch.Tensor:
        """a = tanh(μ_θ(o)); deterministic, ``eps`` ignored."""
        return torch.tanh(self.actor(obs))

    def policy_q1(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(a_π, Q_1(o, a_π)) for an actor loss: the first critic's Q as TD3's, (B, A), with
        the critics frozen so that only dQ/da reaches the actor."""
        a_pi = self.policy(obs) * self.act_mask
        with frozen(self.critic):
            q = self.critic(obs, a_pi, n_q=1)[0]  # (B, A): first critic, as TD3
        return a_pi, q

    def next_action(self, next_obs: torch.Tensor) -> torch.Tensor:
        """TD3 target smoothing: tanh(μ'(o')) + clip(σ ε, ±c), clipped to [-1, 1]."""
        a = torch.tanh(self.actor_target(next_obs))
        noise = (self.cfg.policy_noise * self.noise(next_obs)).clamp(-self.cfg.noise_clip,
                                                                      self.cfg.noise_clip)
        return (a + noise).clamp(-1, 1) * self.act_mask

    def targets(self) -> list[tuple[nn.Module, nn.Module]]:
        """Critic and actor targets."""
        return [(self.critic_target, self.critic), (self.actor_target, self.actor)]
