"""OMAR (Pan et al. 2022): CQL critics plus an actor pulled toward better actions found by
zeroth-order (sampling) search on each agent's own Q.

Not a new critic: it is ``CQLAgent``'s; only the actor loss changes. The search follows the
published MPE code: a global Gaussian (μ = 0, σ = ``omar_sigma``) refitted for ``omar_iters``
iterations, μ ← the softmax(Q)-weighted mean of the candidates, σ ← their RMS spread about
it; the best candidate of the last iteration replaces π(o) as the target when its Q is higher.
"""

from __future__ import annotations

import torch

from om2p_lite.flows.ops import batch_mean
from om2p_lite.rl.agents.base import Batch, Logs, frozen
from om2p_lite.rl.agents.cql import CQLAgent
from om2p_lite.rl.agents.td3bc import action_mse


def softmax_refit(cand: torch.Tensor, q: torch.Tensor, n_top: int = 0,
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """OMAR's update of the search Gaussian from candidates (K, ..., d) and their Q (K, ...).

    μ = Σ_k softmax(Q)_k a_k over the ``n_top`` best candidates (0: all of them),
    σ = sqrt(mean_k (a_k - μ)²) over the same candidates   (eq-omar-refit).
    """
    if 0 < n_top < cand.shape[0]:
        top = q.topk(n_top, dim=0).indices  # (n_top, ...)
        q = torch.gather(q, 0, top)
        cand = torch.gather(cand, 0, top.unsqueeze(-1).expand(*top.shape, cand.shape[-1]))
    # candidates on the last axis: each (sample, agent) reduces in an order that does not
    # depend on how many agents (or population members) sit beside it
    cand_k = cand.movedim(0, -1).contiguous()  # (..., d, K)
    w = torch.softmax(q.movedim(0, -1).contiguous(), dim=-1).unsqueeze(-2)  # (..., 1, K)
    mu = (w * cand_k).sum(-1)  # (eq-omar-refit)
    sigma = ((cand_k - mu.unsqueeze(-1)) ** 2).mean(-1).sqrt()
    return mu, sigma


class OMARAgent(CQLAgent):
    """L_π = (1 - c) · (-Q(o, π(o))) + c · mean_d (π(o) - â)², â from the search   (eq-omar)."""

    name = "omar"
    reads = CQLAgent.reads | {"omar_coef", "omar_iters", "omar_samples", "omar_elites",
                              "omar_sigma"}

    @torch.no_grad()
    def search(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The best action of the last search iteration and its Q, per sample and agent:
        (B, A, d) and (B, A). Q is the first critic's, as in OMAR's code."""
        n, shape = self.cfg.omar_samples, (*obs.shape[:-1], self.dims.act_dim)
        mu = obs.new_zeros(shape)  # a global search: μ = 0 ...
        sigma = torch.full_like(mu, self.cfg.omar_sigma)  # ... σ = 2 covers [-1, 1]
        obs_n = obs.unsqueeze(0).expand(n, *obs.shape)
        for _ in range(self.cfg.omar_iters):
            eps = self.randn(n, *shape, agent_dim=-2)
            cand = (mu + sigma * eps).clamp(-1, 1) * self.act_mask  # (n, B, A, d)
            q = self.critic(obs_n, cand, n_q=1)[0]  # (n, B, A)
            mu, sigma = softmax_refit(cand, q, self.cfg.omar_elites)
        top_q, top_i = q.max(0)  # (B, A)
        top_a = torch.gather(cand, 0, top_i[None, ..., None].expand(1, *shape))[0]
        return top_a, top_q

    def actor_loss(self, batch: Batch) -> tuple[torch.Tensor, Logs]:
        """Σ_i mean_B [(1 - c)(-Q_i) + c · mean_d (π_i(o) - â_i)²]   (eq-omar)."""
        obs = batch["obs"]
        a_pi = self.policy(obs) * self.act_mask
        with frozen(self.critic):
            q = self.critic(obs, a_pi, n_q=1)[0]  # (B, A): first critic, as OMAR's code
        a_search, q_search = self.search(obs)
        better = (q_search > q.detach()).unsqueeze(-1)
        a_hat = torch.where(better, a_search, a_pi.detach())  # the rectified target
        pull = action_mse(a_pi, a_hat, self.act_mask)  # (B, A)
        c = self.cfg.omar_coef
        per_agent = batch_mean((1 - c) * -q + c * pull)  # (A,)  (eq-omar)
        return per_agent.sum(), {"q_pi": batch_mean(q.detach()),
                                 "omar_pull": batch_mean(pull.detach()),
                                 "omar_better": batch_mean(better[..., 0].float())}
