"""MA-CQL (as in OMAR's MPE code): a TD3-style actor per agent with a conservative critic.

Not the SAC variant: the actor is deterministic; the CQL term pushes down Q on random and
policy actions and up on dataset actions, per agent.
"""

from __future__ import annotations

import math

import torch

from om2p_lite.rl.agents.base import Batch, DeterministicActorAgent


class CQLAgent(DeterministicActorAgent):
    """Critic: L_TD + α_cql Σ_j E[log Σ_k exp Q_j(o, a_k) - Q_j(o, a_data)]   (eq-cql)."""

    name = "cql"

    def proposal_actions(self, obs: torch.Tensor) -> torch.Tensor:
        """n uniform and n noisy-policy actions: (2n, B, A, d)."""
        n = self.cfg.cql_samples
        shape = (n, *obs.shape[:-1], self.dims.act_dim)
        uniform = torch.rand(shape, device=obs.device) * 2 - 1
        with torch.no_grad():
            a_pi = self.policy(obs).unsqueeze(0)
        noisy = (a_pi + self.cfg.policy_noise * torch.randn(shape, device=obs.device)).clamp(-1, 1)
        return torch.cat([uniform, noisy]) * self.act_mask

    def critic_regulariser(self, batch: Batch, q: torch.Tensor) -> tuple:
        """The conservative gap, summed over critics and agents   (eq-cql)."""
        obs = batch["obs"]
        props = self.proposal_actions(obs)  # (2n, B, A, d)
        q_props = self.critic(obs.unsqueeze(0).expand(props.shape[0], *obs.shape), props)
        lse = torch.logsumexp(q_props, dim=1) - math.log(props.shape[0])  # (n_q, B, A)
        gap = (lse - q).mean(1).sum()  # (eq-cql)
        return self.cfg.cql_alpha * gap, {"cql_gap": float(gap.detach())}

    def actor_loss(self, batch: Batch) -> tuple:
        """Maximise the (conservative) Q of the policy's action, per agent."""
        a_pi = self.policy(batch["obs"]) * self.act_mask
        q = self.critic(batch["obs"], a_pi).mean(0)  # (B, A)
        return -q.mean(0).sum(), {"q_pi": float(q.mean().detach())}
