"""Per-agent ensembles of Q critics (LayerNorm MLPs), their TD target and Polyak targets.

Not an actor and not a training loop: agents call these pieces inside their ``update``.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from om2p_lite.flows.stacked import StackedMLP


class StackedCritic(nn.Module):
    """Q_{i,j}(o_i, a_i) for agents i < A and ensemble members j < n_q, in one batched pass.

    Each agent has its own ``n_q`` critics on its own observation and action (independent
    learners, SPEC §1); all A·n_q networks are one ``StackedMLP`` with LayerNorm.
    """

    def __init__(self, n_agents: int, obs_dim: int, act_dim: int, hidden: int = 256,
                 depth: int = 3, n_q: int = 2, layer_norm: bool = True):
        super().__init__()
        if n_q < 1:
            raise ValueError(f"a critic ensemble needs n_q >= 1, got {n_q}")
        self.n_agents, self.n_q = n_agents, n_q
        self.net = StackedMLP(n_q * n_agents, obs_dim + act_dim, 1, hidden, depth, layer_norm)

    def forward(self, o: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """o: (B, A, obs), a: (B, A, act) → Q: (n_q, B, A)."""
        x = torch.cat([o, a], dim=-1)  # (B, A, in)
        x = x.unsqueeze(-3).expand(*x.shape[:-2], self.n_q, *x.shape[-2:])  # (B, n_q, A, in)
        q = self.net(x.reshape(*x.shape[:-3], self.n_q * self.n_agents, x.shape[-1]))
        q = q.reshape(*x.shape[:-3], self.n_q, self.n_agents)  # (B, n_q, A)
        return q.movedim(-2, 0)  # (n_q, B, A)


def td_target(q_next: torch.Tensor, rewards: torch.Tensor, dones: torch.Tensor,
              gamma: float, reduce: str = "mean") -> torch.Tensor:
    """y_i = r_i + γ (1 - d) · mean_j Q'_j(o'_i, a'_i)   (eq-td-target); detached.

    q_next: (n_q, B, A) from the target critics; rewards (B, A); dones (B,) are true
    terminations only (a timeout still bootstraps). ``reduce='min'`` is TD3's clipped target.
    """
    if reduce == "mean":
        q = q_next.mean(0)
    elif reduce == "min":
        q = q_next.min(0).values
    else:
        raise ValueError(f"unknown ensemble reduction {reduce!r}: use 'mean' or 'min'")
    return (rewards + gamma * (1.0 - dones).unsqueeze(-1) * q).detach()  # (eq-td-target)


def critic_loss(q: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Σ_j E (Q_j - y)², summed over agents so each agent's critic gets its own full gradient."""
    return ((q - y.unsqueeze(0)) ** 2).mean(1).sum()


def normalised_q_loss(q: torch.Tensor, normalise: bool = True) -> torch.Tensor:
    """L_Q = - mean Q(o, a_π) / sg(mean |Q|), per agent, summed over agents   (eq-q-loss).

    q: (n_q, B, A) or (B, A); the ensemble is averaged first. ``normalise=False`` drops the
    division (the ablation "no Q normalisation": L_Q = - mean Q).
    """
    q = q.mean(0) if q.dim() == 3 else q  # (B, A)
    if not normalise:
        return (-q.mean(0)).sum()
    return (-q.mean(0) / q.abs().mean(0).detach().clamp_min(1e-6)).sum()  # (eq-q-loss)


def make_target(module: nn.Module) -> nn.Module:
    """A frozen copy of ``module`` to be Polyak-averaged."""
    target = copy.deepcopy(module)
    for p in target.parameters():
        p.requires_grad_(False)
    return target


@torch.no_grad()
def polyak_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    """θ' ← (1 - τ) θ' + τ θ   (eq-polyak)."""
    for p_t, p in zip(target.parameters(), source.parameters(), strict=True):
        p_t.lerp_(p, tau)  # (eq-polyak)
