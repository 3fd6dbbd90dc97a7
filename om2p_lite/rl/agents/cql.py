"""MA-CQL(H) (Kumar et al. 2020, per agent, as OMAR's MPE baseline): a TD3-style actor per
agent with a conservative critic.

Not the SAC variant: the actor is deterministic, and the policy proposals of the
log-sum-exp are its action plus Gaussian noise (std ``policy_noise``, as OMAR's code).
"""

from __future__ import annotations

import math

import torch

from om2p_lite.flows.ops import batch_mean
from om2p_lite.rl.agents.base import Batch, DeterministicActorAgent, Logs, frozen


def importance_logsumexp(q: torch.Tensor, log_density: torch.Tensor) -> torch.Tensor:
    """CQL(H)'s estimate of log ∫ exp Q(o, a) da from K proposals a_k ~ μ   (eq-cql-lse).

    log (1/K Σ_k exp(Q(o, a_k)) / μ(a_k)): q (n_q, K, ...) and log μ (K, ...) → (n_q, ...).
    With K/2 uniform and K/2 policy proposals this is Kumar et al.'s (2020, App. F)
    1/(2N) Σ_unif exp Q / Unif + 1/(2N) Σ_π exp Q / π.
    """
    x = (q - log_density).movedim(1, -1).contiguous()  # proposals last: an order that
    return torch.logsumexp(x, dim=-1) - math.log(q.shape[1])  # ignores A  (eq-cql-lse)


class CQLAgent(DeterministicActorAgent):
    """Critic: L_TD + α_cql Σ_j E[log ∫ exp Q_j(o, a) da - Q_j(o, a_data)]   (eq-cql)."""

    name = "cql"
    member_streams = True
    reads = DeterministicActorAgent.reads | {"cql_alpha", "cql_samples"}

    def proposal_actions(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """n uniform and n noisy-policy actions (2n, B, A, d) and their log densities
        (2n, B, A) over each agent's real action dims.

        Uniform on [-1, 1]^{d_i}: log μ = d_i log(1/2). Policy: a = clip(π(o) + σ ε),
        log μ = Σ_d log N(σ ε_d; 0, σ²) (the density of the draw; clipping is ignored,
        as in OMAR's code).
        """
        n, sigma = self.cfg.cql_samples, self.cfg.policy_noise
        shape = (n, *obs.shape[:-1], self.dims.act_dim)  # (n, B, A, d)
        mask = self.act_mask
        uniform = (self.rand(*shape, agent_dim=-2) * 2 - 1) * mask
        log_uniform = (mask.sum(-1) * math.log(0.5)).expand(shape[:-1])  # (n, B, A)
        with torch.no_grad():
            a_pi = self.policy(obs).unsqueeze(0)  # (1, B, A, d)
        eps = self.randn(*shape, agent_dim=-2)
        noisy = (a_pi + sigma * eps).clamp(-1, 1) * mask
        log_gauss = ((-0.5 * eps**2 - math.log(sigma * math.sqrt(2 * math.pi))) * mask).sum(-1)
        return torch.cat([uniform, noisy]), torch.cat([log_uniform, log_gauss])

    def critic_regulariser(self, batch: Batch, q: torch.Tensor) -> tuple[torch.Tensor, Logs]:
        """α_cql · Σ_{j, i} mean_B [lse_ij - Q_ij(o, a_data)], the conservative gap   (eq-cql)."""
        obs = batch["obs"]
        props, log_mu = self.proposal_actions(obs)  # (2n, B, A, d), (2n, B, A)
        q_props = self.critic(obs.unsqueeze(0).expand(props.shape[0], *obs.shape), props)
        lse = importance_logsumexp(q_props, log_mu)  # (n_q, B, A)
        gap = batch_mean(lse - q, 1).sum(0)  # (A,)  (eq-cql)
        return self.cfg.cql_alpha * gap.sum(), {"cql_gap": gap.detach()}

    def actor_loss(self, batch: Batch) -> tuple[torch.Tensor, Logs]:
        """Maximise the (conservative) Q of the policy's action, per agent."""
        a_pi = self.policy(batch["obs"]) * self.act_mask
        with frozen(self.critic):
            q = self.critic(batch["obs"], a_pi).mean(0)  # (B, A)
        q_pi = batch_mean(q)  # (A,)
        return -q_pi.sum(), {"q_pi": q_pi.detach()}
