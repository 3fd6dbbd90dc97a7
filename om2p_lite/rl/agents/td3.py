"""MA-TD3 (Fujimoto et al. 2018, per agent): a deterministic actor that climbs its first critic.

Not an offline method by design: it is TD3+BC without the behaviour term, so offline its
actor may leave the data's support (the baseline shows how far). It is also the learner
that trains the behaviour policies online (``data.behaviour_td3``).
"""

from __future__ import annotations

import torch

from om2p_lite.flows.ops import batch_mean
from om2p_lite.rl.agents.base import Batch, DeterministicActorAgent, Logs


class TD3Agent(DeterministicActorAgent):
    """L_π = Σ_i -mean_B Q_{i,1}(o_i, π_i(o_i)): TD3+BC's actor loss without its BC term
    and without λ. Twin critics with the clipped (min) target, target smoothing, and the
    actor and both targets stepping every 2 updates (TD3's delay), all from the base."""

    name = "td3"
    policy_delay = 2
    member_streams = True

    def actor_loss(self, batch: Batch) -> tuple[torch.Tensor, Logs]:
        """Σ_i -mean_B Q_{i,1}(o_i, tanh μ_i(o_i)), the critics frozen (dQ/da only)."""
        a_pi, q = self.policy_q1(batch["obs"])  # (B, A): the first critic, frozen
        loss_q = -batch_mean(q)  # (A,)
        return loss_q.sum(), {"q_loss": loss_q.detach(), "q_pi": batch_mean(q.detach())}
