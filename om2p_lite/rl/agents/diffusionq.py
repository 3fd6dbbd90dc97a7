"""Diffusion+Q (DOM2 / Diffusion-QL style): a DDPM policy per agent plus the normalised Q term.

Not a new diffusion core: noise schedule, loss and sampler come from ``om2p_lite.flows.diffusion``.
Denoising steps: ``cfg.diffusion_steps`` (default 5, Diffusion-QL's choice), VP schedule.
Every random number (x_T, the ancestral noise of each step, the training step k and noise)
comes from the agent's ``randn``/``rand``, so an evaluation with a seeded generator repeats.
"""

from __future__ import annotations

import torch

from om2p_lite.flows.diffusion import DiffusionSchedule, diffusion_loss, sample_diffusion
from om2p_lite.flows.stacked import sample_stacked
from om2p_lite.rl.agents.base import AgentDims, GenerativeQAgent, Generators, Logs


class DiffusionQAgent(GenerativeQAgent):
    """ε_θ(o_i, x_k, k/T, k/T) per agent; actions by T ancestral steps   (eq-ddpm-step)."""

    name = "diffusionq"
    member_streams = True
    reads = GenerativeQAgent.reads | {"diffusion_steps"}

    def __init__(self, dims: AgentDims, cfg):
        super().__init__(dims, cfg)
        self.schedule = DiffusionSchedule(cfg.diffusion_steps)

    def generative_loss(self, obs: torch.Tensor, actions: torch.Tensor,
                        ) -> tuple[torch.Tensor, Logs]:
        """L_DDPM summed over agents   (eq-ddpm-loss); one step index k per (sample, agent)."""
        B, A, d = actions.shape
        T = self.schedule.steps
        k = (self.rand(B, A, agent_dim=-1) * T).long().clamp(max=T - 1) + 1  # U{1..T}
        eps = self.randn(B, A, d)
        loss = diffusion_loss(self.actor, obs, actions, self.schedule, eps=eps, k=k,
                              reduce="agents")  # (A,)
        return loss.sum(), {"ddpm_loss": loss.detach()}

    def noise(self, obs: torch.Tensor, generator: Generators = None) -> torch.Tensor:
        """All of a sample's noise, (T, B, A, d): x_T first, then z for k = T..2."""
        shape = (self.schedule.steps, *obs.shape[:-1], self.dims.act_dim)
        return self.randn(*shape, agent_dim=-2, generator=generator).to(obs.dtype)

    def policy(self, obs: torch.Tensor, eps: torch.Tensor | None = None) -> torch.Tensor:
        """T-step ancestral sample (gradients flow through every step); ``eps`` from ``noise``."""
        eps = self.noise(obs) if eps is None else eps  # (T, B, A, d)
        return sample_stacked(sample_diffusion, self.actor, obs, eps[0],
                              schedule=self.schedule, noise=eps[1:].flatten(-2))
