"""Per-agent ensembles of Q critics (LayerNorm MLPs), their TD target and Polyak targets.

Not an actor and not a training loop: agents call these pieces inside their ``update``.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from om2p_lite.flows.ops import batch_mean, swap_axes
from om2p_lite.flows.stacked import StackedMLP


class StackedCritic(nn.Module):
    """Q_{i,j}(o_i, a_i) for agents i < A and ensemble members j < n_q, in one batched pass.

    Each agent has its own ``n_q`` critics on its own observation and action (independent
    learners, as in OM2P's framework and public code, github lizr16/OM2P); all A·n_q
    networks are one ``StackedMLP`` with LayerNorm.
    """

    def __init__(self, n_agents: int, obs_dim: int, act_dim: int, hidden: int = 256,
                 depth: int = 3, n_q: int = 2, layer_norm: bool = True,
                 activation: type[nn.Module] = nn.GELU):
        super().__init__()
        if n_q < 1:
            raise ValueError(f"a critic ensemble needs n_q >= 1, got {n_q}")
        self.n_agents, self.n_q = n_agents, n_q
        self.net = StackedMLP(n_q * n_agents, obs_dim + act_dim, 1, hidden, depth, layer_norm,
                              activation)

    def forward(self, o: torch.Tensor, a: torch.Tensor, n_q: int | None = None,
                ) -> torch.Tensor:
        """o: (..., A, obs), a: (..., A, act) → Q: (n_q, ..., A); members are (critic, agent).

        ``n_q`` < the ensemble's runs only the first ``n_q`` critics (TD3's and OMAR's
        actor read the first alone), so the others cost nothing.
        """
        x = torch.cat([o, a], dim=-1)  # (..., A, in)
        lead, (A, d_in) = x.shape[:-2], x.shape[-2:]
        n_q = self.n_q if n_q is None else n_q
        if not 1 <= n_q <= self.n_q:
            raise ValueError(f"StackedCritic: n_q must be in 1..{self.n_q}, got {n_q}")
        xm = swap_axes(x.reshape(-1, A, d_in), 0, 1)  # (A, N, in), member-major
        xm = xm.unsqueeze(0).expand(n_q, A, *xm.shape[1:]).reshape(n_q * A, -1, d_in)
        # members are critic-major, so the first n_q critics are the first n_q * A members
        q = self.net.forward_members(xm, n_q * A).view(n_q, A, -1)  # (n_q, A, N)
        return swap_axes(q, 1, 2).reshape(n_q, *lead, A)  # (n_q, ..., A)


class JointCritic(nn.Module):
    """Centralised critics (MADDPG, MATD3): Q_{i,j}(o_1..o_A, a_1..a_A) for agent i of a team
    of ``team``, the online behaviour learner's (OMAR's data come from MATD3); the offline
    agents keep ``StackedCritic``'s independent learners.

    Every agent's action enters every critic, but a gradient reaches agent i's action only
    through agent i's own critic, as in maddpg-pytorch, where agent i's actor loss is -Q_i
    alone. The layout stays the stacked one: (…, A, ·) in, (n_q, …, A) out.
    """

    def __init__(self, team: int, obs_dim: int, act_dim: int, hidden: int = 256,
                 depth: int = 3, n_q: int = 2, layer_norm: bool = True,
                 activation: type[nn.Module] = nn.GELU):
        super().__init__()
        self.team, self.n_q = team, n_q
        self.inner = StackedCritic(team, team * obs_dim, team * act_dim, hidden, depth, n_q,
                                   layer_norm, activation)
        own = torch.zeros(team, team, act_dim)  # (A, A, d): agent i's own block of row i
        own[torch.arange(team), torch.arange(team)] = 1.0
        self.register_buffer("own", own.reshape(team, team * act_dim), persistent=False)

    def forward(self, o: torch.Tensor, a: torch.Tensor, n_q: int | None = None,
                ) -> torch.Tensor:
        """o: (..., A, obs), a: (..., A, act) → Q: (n_q, ..., A) (``n_q``: as
        ``StackedCritic``)."""
        *lead, A, D = o.shape
        if A != self.team:
            raise ValueError(f"JointCritic: a team of {self.team} agents, got {A}")
        o_all = o.reshape(*lead, 1, A * D).expand(*lead, A, A * D)  # (..., A, A·D)
        a_all = a.reshape(*lead, 1, -1).expand(*lead, A, self.own.shape[1])  # (..., A, A·d)
        a_all = a_all.detach() * (1 - self.own) + a_all * self.own  # own action's gradient
        return self.inner(o_all, a_all, n_q)


def td_target(q_next: torch.Tensor, rewards: torch.Tensor, dones: torch.Tensor,
              gamma: float, reduce: str = "mean") -> torch.Tensor:
    """y_i = r_i + γ (1 - d) · mean_j Q'_j(o'_i, a'_i)   (eq-td-target); detached.

    q_next: (n_q, B, A) from the target critics; rewards (B, A); dones (B,) or (B, A) (a
    population's members each have their own rows) are true terminations only (a timeout
    still bootstraps). ``reduce='min'`` is TD3's clipped target.
    """
    if reduce == "mean":
        q = q_next.mean(0)
    elif reduce == "min":
        q = q_next.min(0).values
    else:
        raise ValueError(f"unknown ensemble reduction {reduce!r}: use 'mean' or 'min'")
    not_done = 1.0 - (dones if dones.dim() == rewards.dim() else dones.unsqueeze(-1))
    return (rewards + gamma * not_done * q).detach()  # (eq-td-target)


def _reduce_agents(per_agent: torch.Tensor, reduce: str) -> torch.Tensor:
    """'sum' over agents (a scalar to minimise) or 'agents' (the (A,) vector itself)."""
    if reduce == "sum":
        return per_agent.sum()
    if reduce == "agents":
        return per_agent
    raise ValueError(f"unknown reduction {reduce!r}: use 'sum' or 'agents'")


def critic_loss(q: torch.Tensor, y: torch.Tensor, reduce: str = "sum") -> torch.Tensor:
    """Σ_j E (Q_j - y)², summed over agents so each agent's critic gets its own full gradient.

    ``reduce='agents'`` returns the (A,) per-agent terms instead of their sum.
    """
    return _reduce_agents(batch_mean((q - y.unsqueeze(0)) ** 2, 1).sum(0), reduce)


def normalised_q_loss(q: torch.Tensor, normalise: bool | torch.Tensor = True,
                      reduce: str = "sum") -> torch.Tensor:
    """L_Q = - mean Q(o, a_π) / sg(mean |Q|), per agent, summed over agents   (eq-q-loss).

    q: (n_q, B, A) or (B, A); the ensemble is averaged first. ``normalise=False`` drops the
    division (the ablation "no Q normalisation": L_Q = - mean Q); a bool tensor (A,) chooses
    per agent (the members of a population). ``reduce='agents'`` returns the (A,) terms.
    """
    q = q.mean(0) if q.dim() == 3 else q  # (B, A)
    minus_q = -batch_mean(q)  # (A,)
    scale = batch_mean(q.abs().detach()).clamp_min(1e-6)  # sg(mean |Q|), per agent
    if isinstance(normalise, torch.Tensor):
        return _reduce_agents(minus_q / torch.where(normalise, scale, 1.0), reduce)
    if not normalise:
        return _reduce_agents(minus_q, reduce)
    return _reduce_agents(minus_q / scale, reduce)  # (eq-q-loss)


def make_target(module: nn.Module) -> nn.Module:
    """A frozen copy of ``module`` to be Polyak-averaged."""
    target = copy.deepcopy(module)
    for p in target.parameters():
        p.requires_grad_(False)
    return target


@torch.no_grad()
def polyak_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    """θ' ← (1 - τ) θ' + τ θ   (eq-polyak); one fused call over all parameters."""
    targets, sources = list(target.parameters()), list(source.parameters())
    if len(targets) != len(sources):
        raise ValueError(f"polyak_update: target has {len(targets)} parameters, source "
                         f"{len(sources)}")
    torch._foreach_lerp_(targets, sources, tau)  # (eq-polyak)
