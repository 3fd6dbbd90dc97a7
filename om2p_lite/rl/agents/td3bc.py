"""MA-TD3+BC (Fujimoto & Gu 2021, per agent): deterministic actor, λ-scaled Q plus BC term.

Not conservative in the critic (see ``cql``): the behaviour term lives in the actor loss.
"""

from __future__ import annotations

from om2p_lite.rl.agents.base import Batch, DeterministicActorAgent
from om2p_lite.rl.critics import normalised_q_loss


class TD3BCAgent(DeterministicActorAgent):
    """L_π = α · (-Q / sg(mean |Q|)) + ||π(o) - a||², per agent; actor step every 2 updates."""

    name = "td3bc"
    policy_delay = 2

    def actor_loss(self, batch: Batch) -> tuple:
        """TD3+BC's λ = α / mean |Q| makes the Q term scale-free   (eq-td3bc)."""
        a_pi = self.policy(batch["obs"]) * self.act_mask
        q = self.critic(batch["obs"], a_pi)[0]  # (B, A): first critic, as TD3
        loss_q = normalised_q_loss(q)
        bc = ((a_pi - batch["actions"]) ** 2).sum(-1).mean(0).sum()
        return self.cfg.alpha * loss_q + bc, {"q_loss": float(loss_q.detach()),
                                              "bc_loss": float(bc.detach()),
                                              "q_pi": float(q.mean().detach())}
