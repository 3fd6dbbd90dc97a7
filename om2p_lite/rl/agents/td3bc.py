"""MA-TD3+BC (Fujimoto & Gu 2021, per agent): deterministic actor, λ-scaled Q plus BC term.

Not conservative in the critic (see ``cql``): the behaviour term lives in the actor loss.
"""

from __future__ import annotations

import torch

from om2p_lite.flows.ops import batch_mean
from om2p_lite.rl.agents.base import Batch, DeterministicActorAgent, Logs
from om2p_lite.rl.critics import normalised_q_loss


def action_mse(a: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(a - target)² averaged over each agent's real action dims: (..., A, d) → (..., A).

    The MEAN over action dimensions, as TD3+BC's ``F.mse_loss`` and OMAR's pull term take it
    (a sum would scale the term with the action size: 5 dims would make α = 2.5 act as 0.5).
    """
    return (((a - target) * mask) ** 2).sum(-1) / mask.sum(-1)  # (eq-td3bc)


class TD3BCAgent(DeterministicActorAgent):
    """L_π = -λ Q(o, π(o)) + mean_d (π(o) - a)², λ = α / sg(mean |Q|), per agent   (eq-td3bc).

    Q is the first critic's, the BC term the mean squared error over the agent's real action
    dimensions; the actor steps every 2 updates (TD3's delay).
    """

    name = "td3bc"
    reads = DeterministicActorAgent.reads | {"alpha"}
    policy_delay = 2
    member_streams = True

    def actor_loss(self, batch: Batch) -> tuple[torch.Tensor, Logs]:
        """Σ_i [α · (-mean Q_i / sg(mean |Q_i|)) + mean_B mean_d (π_i(o) - a_i)²]."""
        a_pi, q = self.policy_q1(batch["obs"])  # (B, A): the first critic, frozen
        loss_q = normalised_q_loss(q, reduce="agents")  # (A,) = -mean Q / mean |Q|
        bc = batch_mean(action_mse(a_pi, batch["actions"], self.act_mask))  # (A,)
        loss = (self.cfg.alpha * loss_q + bc).sum()  # (eq-td3bc)
        return loss, {"q_loss": loss_q.detach(), "bc_loss": bc.detach(),
                      "q_pi": batch_mean(q.detach())}
