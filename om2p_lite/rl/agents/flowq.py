"""Flow+Q: a K-step flow-matching policy per agent with the same normalised Q term as OM2P.

Not a one-step policy: the Q gradient flows back through all K Euler steps.
"""

from __future__ import annotations

import torch

from om2p_lite.flows.flow import flow_matching_loss
from om2p_lite.flows.sampling import sample_flow
from om2p_lite.flows.stacked import sample_stacked
from om2p_lite.rl.agents.base import GenerativeQAgent


class FlowQAgent(GenerativeQAgent):
    """v_θ(o_i, x, τ, τ) per agent; actions by ``cfg.flow_steps`` Euler steps   (eq-euler)."""

    name = "flowq"

    def generative_loss(self, obs: torch.Tensor, actions: torch.Tensor,
                        ) -> tuple[torch.Tensor, dict[str, float]]:
        """L_FM summed over agents   (eq-fm-loss)."""
        B, A, _ = actions.shape
        r = torch.rand(B, A, 1, device=obs.device)
        loss = flow_matching_loss(self.actor, obs, actions, r) * A  # mean over (B, A) → Σ_A
        return loss, {"fm_loss": float(loss.detach()) / A}

    def policy(self, obs: torch.Tensor, eps: torch.Tensor | None = None) -> torch.Tensor:
        """K-step Euler sample (gradients flow through every step)."""
        eps = self.noise(obs) if eps is None else eps
        return sample_stacked(sample_flow, self.actor, obs, eps, steps=self.cfg.flow_steps)
