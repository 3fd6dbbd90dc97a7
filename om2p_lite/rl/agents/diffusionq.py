"""Diffusion+Q (DOM2 / Diffusion-QL style): a DDPM policy per agent plus the normalised Q term.

Not a new diffusion core: noise schedule, loss and sampler come from ``om2p_lite.flows.diffusion``.
Denoising steps: ``cfg.diffusion_steps`` (default 5, Diffusion-QL's choice), VP schedule.
"""

from __future__ import annotations

import torch

from om2p_lite.flows.diffusion import DiffusionSchedule, diffusion_loss, sample_diffusion
from om2p_lite.flows.stacked import sample_stacked
from om2p_lite.rl.agents.base import AgentDims, GenerativeQAgent


class DiffusionQAgent(GenerativeQAgent):
    """ε_θ(o_i, x_k, k/T, k/T) per agent; actions by T ancestral steps   (eq-ddpm-step)."""

    name = "diffusionq"

    def __init__(self, dims: AgentDims, cfg):
        super().__init__(dims, cfg)
        self.schedule = DiffusionSchedule(cfg.diffusion_steps)

    def generative_loss(self, obs: torch.Tensor, actions: torch.Tensor,
                        ) -> tuple[torch.Tensor, dict[str, float]]:
        """L_DDPM summed over agents   (eq-ddpm-loss); one step index k per (sample, agent)."""
        B, A, _ = actions.shape
        k = torch.randint(1, self.schedule.steps + 1, (B, A), device=obs.device)
        loss = diffusion_loss(self.actor, obs, actions, self.schedule, k=k) * A
        return loss, {"ddpm_loss": float(loss.detach()) / A}

    def policy(self, obs: torch.Tensor, eps: torch.Tensor | None = None) -> torch.Tensor:
        """T-step ancestral sample (gradients flow through every step)."""
        eps = self.noise(obs) if eps is None else eps
        return sample_stacked(sample_diffusion, self.actor, obs, eps, schedule=self.schedule)
