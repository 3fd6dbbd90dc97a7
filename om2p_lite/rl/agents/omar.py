"""OMAR (Pan et al. 2022): CQL critics plus an actor pulled toward better actions found by
zeroth-order (sampling) search on each agent's own Q.

Not a new critic: it is ``CQLAgent``'s; only the actor loss changes.
"""

from __future__ import annotations

import torch

from om2p_lite.rl.agents.base import Batch
from om2p_lite.rl.agents.cql import CQLAgent


class OMARAgent(CQLAgent):
    """L_π = (1 - c) · (-Q(o, π(o))) + c · ||π(o) - â||², â from CEM-like search   (eq-omar)."""

    name = "omar"

    @torch.no_grad()
    def search(self, obs: torch.Tensor, a_pi: torch.Tensor) -> torch.Tensor:
        """Iteratively resample around the best actions found so far (per sample and agent)."""
        n, iters = self.cfg.omar_samples, self.cfg.omar_iters
        mu, sigma = a_pi, torch.full_like(a_pi, self.cfg.omar_sigma)
        best_a, best_q = a_pi, self.critic(obs, a_pi).mean(0)  # (B, A, d), (B, A)
        obs_n = obs.unsqueeze(0).expand(n, *obs.shape)
        for _ in range(iters):
            cand = (mu + sigma * torch.randn(n, *mu.shape, device=mu.device)).clamp(-1, 1)
            cand = cand * self.act_mask
            q = self.critic(obs_n, cand).mean(0)  # (n, B, A)
            elite = q.topk(self.cfg.omar_elites, dim=0).indices  # (k, B, A)
            elites = torch.gather(cand, 0, elite.unsqueeze(-1).expand(-1, -1, -1, cand.shape[-1]))
            mu, sigma = elites.mean(0), elites.std(0) + 1e-3
            top_q, top_i = q.max(0)
            top_a = torch.gather(cand, 0, top_i[None, ..., None].expand(1, *cand.shape[1:]))[0]
            better = (top_q > best_q).unsqueeze(-1)
            best_a = torch.where(better, top_a, best_a)
            best_q = torch.maximum(top_q, best_q)
        return best_a

    def actor_loss(self, batch: Batch) -> tuple:
        """(1 - c) · (-Q) + c · ||π(o) - â||², per agent   (eq-omar)."""
        obs = batch["obs"]
        a_pi = self.policy(obs) * self.act_mask
        a_hat = self.search(obs, a_pi.detach())
        q = self.critic(obs, a_pi).mean(0)  # (B, A)
        pull = ((a_pi - a_hat) ** 2).sum(-1)  # (B, A)
        c = self.cfg.omar_coef
        loss = ((1 - c) * -q + c * pull).mean(0).sum()  # (eq-omar)
        return loss, {"q_pi": float(q.mean().detach()), "omar_pull": float(pull.mean().detach())}
