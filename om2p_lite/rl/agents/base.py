"""What every offline multi-agent learner shares: shapes, optimisers, the critic step, acting.

Not an algorithm: each algorithm is a small subclass that names its actor, its losses and
how it samples actions; the critic, the TD target and the data batch code live here once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from om2p_lite.rl.critics import StackedCritic, critic_loss, make_target, polyak_update, td_target

if TYPE_CHECKING:
    from om2p_lite.rl.config import TrainConfig

Batch = dict[str, torch.Tensor]


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


class Agent(nn.Module):
    """A learner for all agents at once: ``update(batch) -> logs`` and ``act(obs) -> actions``.

    Batches are dicts of tensors: obs/next_obs (B, A, D), actions (B, A, d) in [-1, 1],
    rewards (B, A), dones (B,) (true terminations only). Networks are stacked over agents,
    so agent i's parameters only ever see agent i's columns (independent learners).
    """

    name: ClassVar[str] = "agent"
    uses_critic: ClassVar[bool] = False

    def __init__(self, dims: AgentDims, cfg: TrainConfig):
        super().__init__()
        self.dims, self.cfg = dims, cfg
        self.register_buffer("act_mask", dims.act_mask())
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.n_updates = 0

    def adam(self, name: str, module: nn.Module) -> torch.optim.Optimizer:
        """Register and return an Adam optimiser (lr from the config) for ``module``."""
        self.optimizers[name] = torch.optim.Adam(module.parameters(), lr=self.cfg.lr)
        return self.optimizers[name]

    @staticmethod
    def step(opt: torch.optim.Optimizer, loss: torch.Tensor) -> None:
        """zero_grad, backward, step."""
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def randn(self, *shape: int, agent_dim: int = -2,
              generator: torch.Generator | None = None) -> torch.Tensor:
        """N(0, I) draws of ``shape`` whose axis ``agent_dim`` is the agent axis A.

        The one source of an agent's randomness (with ``rand``), so that a population
        (members stacked along the agent axis) can give each member its own stream.
        """
        device = self.act_mask.device
        if generator is None:
            return torch.randn(shape, device=device)
        return torch.randn(shape, generator=generator).to(device)

    def rand(self, *shape: int, agent_dim: int = -2,
             generator: torch.Generator | None = None) -> torch.Tensor:
        """U[0, 1) draws of ``shape`` whose axis ``agent_dim`` is the agent axis A."""
        device = self.act_mask.device
        if generator is None:
            return torch.rand(shape, device=device)
        return torch.rand(shape, generator=generator).to(device)

    def noise(self, obs: torch.Tensor, generator: torch.Generator | None = None,
              ) -> torch.Tensor:
        """ε ~ N(0, I) of shape (B, A, d) for observations (B, A, D)."""
        shape = (*obs.shape[:-1], self.dims.act_dim)
        return self.randn(*shape, generator=generator).to(obs.dtype)

    def policy(self, obs: torch.Tensor, eps: torch.Tensor | None = None) -> torch.Tensor:
        """Actions (B, A, d) in [-1, 1], with gradients; ``eps`` is the noise if stochastic."""
        raise NotImplementedError

    @torch.no_grad()
    def act(self, obs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Evaluation actions (B, A, d) for observations (B, A, D); no gradients."""
        return self.policy(obs, self.noise(obs, generator)) * self.act_mask

    def update(self, batch: Batch) -> dict[str, float]:
        """One gradient step on ``batch``; returns scalar logs."""
        raise NotImplementedError

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
    target_reduce: ClassVar[str] = "mean"
    policy_delay: int = 1

    def __init__(self, dims: AgentDims, cfg: TrainConfig):
        super().__init__(dims, cfg)
        self.critic = StackedCritic(dims.n_agents, dims.obs_dim, dims.act_dim,
                                    cfg.critic_hidden, cfg.critic_depth, cfg.n_q)
        self.critic_target = make_target(self.critic)
        self.adam("critic", self.critic)

    def next_action(self, next_obs: torch.Tensor) -> torch.Tensor:
        """a' for the TD target: a sample of the current policy (SPEC §4)."""
        return self.policy(next_obs, self.noise(next_obs)) * self.act_mask

    def critic_regulariser(self, batch: Batch, q: torch.Tensor) -> tuple[torch.Tensor,
                                                                          dict[str, float]]:
        """Extra critic loss (none by default)."""
        return q.new_zeros(()), {}

    def update_critic(self, batch: Batch) -> dict[str, float]:
        """One TD step of every agent's critic ensemble   (eq-td-target)."""
        with torch.no_grad():
            a_next = self.next_action(batch["next_obs"])  # (B, A, d)
            y = td_target(self.critic_target(batch["next_obs"], a_next), batch["rewards"],
                          batch["dones"], self.cfg.gamma, self.target_reduce)  # (B, A)
        q = self.critic(batch["obs"], batch["actions"])  # (n_q, B, A)
        reg, logs = self.critic_regulariser(batch, q)
        loss_td = critic_loss(q, y)
        self.step(self.optimizers["critic"], loss_td + reg)
        return {"critic_loss": float(loss_td.detach()), "q_data": float(q.mean().detach()),
                **logs}

    def actor_loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        """The actor's loss on ``batch`` and its logs."""
        raise NotImplementedError

    def targets(self) -> list[tuple[nn.Module, nn.Module]]:
        """(target, online) pairs to Polyak-average after an actor step."""
        return [(self.critic_target, self.critic)]

    def update(self, batch: Batch) -> dict[str, float]:
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

    def __init__(self, dims: AgentDims, cfg: Any):
        super().__init__(dims, cfg)
        from om2p_lite.flows.stacked import StackedVelocityNet

        self.actor = StackedVelocityNet(dims.n_agents, dims.obs_dim, dims.act_dim, cfg.hidden,
                                        cfg.depth)
        self.adam("actor", self.actor)

    def generative_loss(self, obs: torch.Tensor, actions: torch.Tensor,
                        ) -> tuple[torch.Tensor, dict[str, float]]:
        """Behaviour-cloning part of the actor loss, summed over agents."""
        raise NotImplementedError

    def actor_loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        """L = L_gen + η · L_Q   (eq-actor-loss); L_Q skipped (not computed) when η = 0."""
        from om2p_lite.rl.critics import normalised_q_loss

        loss, logs = self.generative_loss(batch["obs"], batch["actions"])
        if self.cfg.eta > 0:
            a_pi = self.policy(batch["obs"], self.noise(batch["obs"])) * self.act_mask
            q_pi = self.critic(batch["obs"], a_pi)  # (n_q, B, A)
            loss_q = normalised_q_loss(q_pi, self.cfg.q_norm)
            loss = loss + self.cfg.eta * loss_q  # (eq-actor-loss)
            logs.update(q_loss=float(loss_q.detach()), q_pi=float(q_pi.mean().detach()))
        return loss, logs


class DeterministicActorAgent(ActorCriticAgent):
    """A tanh MLP actor per agent with a Polyak target actor (TD3+BC, CQL, OMAR)."""

    target_reduce = "min"

    def __init__(self, dims: AgentDims, cfg: TrainConfig):
        super().__init__(dims, cfg)
        from om2p_lite.flows.stacked import StackedMLP

        self.actor = StackedMLP(dims.n_agents, dims.obs_dim, dims.act_dim, cfg.hidden,
                                cfg.depth)
        self.actor_target = make_target(self.actor)
        self.adam("actor", self.actor)

    def policy(self, obs: torch.Tensor, eps: torch.Tensor | None = None) -> torch.Tensor:
        """a = tanh(μ_θ(o)); deterministic, ``eps`` ignored."""
        return torch.tanh(self.actor(obs))

    def next_action(self, next_obs: torch.Tensor) -> torch.Tensor:
        """TD3 target smoothing: tanh(μ'(o')) + clip(σ ε, ±c), clipped to [-1, 1]."""
        a = torch.tanh(self.actor_target(next_obs))
        noise = (self.cfg.policy_noise * self.noise(next_obs)).clamp(-self.cfg.noise_clip,
                                                                      self.cfg.noise_clip)
        return (a + noise).clamp(-1, 1) * self.act_mask

    def targets(self) -> list[tuple[nn.Module, nn.Module]]:
        """Critic and actor targets."""
        return [(self.critic_target, self.critic), (self.actor_target, self.actor)]
