"""BC: a deterministic tanh MLP per agent regressed onto the dataset's actions.

Not generative and not Q-aware: the simplest baseline, with no critic at all.
"""

from __future__ import annotations

import torch

from om2p_lite.flows.ops import batch_mean
from om2p_lite.flows.stacked import StackedMLP
from om2p_lite.rl.agents.base import Agent, AgentDims, Batch, Logs


class BCAgent(Agent):
    """min_θ Σ_i E ||tanh(μ_θ(o_i)) - a_i||²   (eq-bc-loss)."""

    name = "bc"
    member_streams = True

    def __init__(self, dims: AgentDims, cfg):
        super().__init__(dims, cfg)
        self.actor = StackedMLP(dims.n_agents, dims.obs_dim, dims.act_dim, cfg.hidden,
                                cfg.depth)
        self.adam("actor", self.actor)

    def policy(self, obs: torch.Tensor, eps: torch.Tensor | None = None) -> torch.Tensor:
        """a = tanh(μ_θ(o)); ``eps`` ignored."""
        return torch.tanh(self.actor(obs))

    def update(self, batch: Batch) -> Logs:
        """One regression step; logs each agent's loss."""
        err = ((self.policy(batch["obs"]) - batch["actions"]) * self.act_mask) ** 2
        per_agent = batch_mean(err.sum(-1))  # (A,)  (eq-bc-loss)
        self.step(self.optimizers["actor"], per_agent.sum())
        self.n_updates += 1
        return {"bc_loss": per_agent.detach()}
