"""Flow+Q: a K-step flow-matching policy per agent with the same normalised Q term as OM2P.

Not a one-step policy: the Q gradient flows back through all K Euler steps.
"""

from __future__ import annotations

import torch

from om2p_lite.flows.flow import flow_matching_loss
from om2p_lite.flows.sampling import sample_flow
from om2p_lite.flows.stacked import sample_stacked
from om2p_lite.rl.agents.base import GenerativeQAgent, Logs


class FlowQAgent(GenerativeQAgent):
    """v_θ(o_i, x, τ, τ) per agent; actions by ``cfg.flow_steps`` Euler steps   (eq-euler)."""

    name = "flowq"
    member_streams = True
    reads = GenerativeQAgent.reads | {"flow_steps"}

    def generative_loss(self, obs: torch.Tensor, actions: torch.Tensor,
                        ) -> tuple[torch.Tensor, Logs]:
        """L_FM = Σ_i E ||v_θ(o_i, x_r, r, r) - (a_i - ε)||²   (eq-fm-loss), per agent,
        with time and noise from the agent's streams."""
        B, A, d = actions.shape
        r = self.rand(B, A, 1)  # (B, A, 1)
        eps = self.randn(B, A, d)
        loss = flow_matching_loss(self.actor, obs, actions, r, eps, reduce="agents")  # (A,)
        return loss.sum(), {"fm_loss": loss.detach()}

    def policy(self, obs: torch.Tensor, eps: torch.Tensor | None = None) -> torch.Tensor:
        """K-step Euler sample (gradients flow through every step)."""
        eps = self.noise(obs) if eps is None else eps
        return sample_stacked(sample_flow, self.actor, obs, eps, steps=self.cfg.flow_steps)
