"""The straight noise→action path and the flow-matching loss on it.

Not the mean-flow target (``meanflow``) nor the samplers (``sampling``).
Convention: noise at time 0, action at time 1. Taught in chapter 1 (book/01_flow_matching).
"""

from __future__ import annotations

import torch
from torch import nn


def interpolate(eps: torch.Tensor, a: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """x_r = (1 - r) ε + r a   (eq-path)."""
    return (1 - r) * eps + r * a  # (eq-path)


def conditional_velocity(eps: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """v = dx_r/dr = a - ε   (eq-cond-velocity)."""
    return a - eps  # (eq-cond-velocity)


def flow_matching_loss(net: nn.Module, o: torch.Tensor, a: torch.Tensor, r: torch.Tensor,
                       eps: torch.Tensor | None = None) -> torch.Tensor:
    """L_FM = E || u_θ(o, x_r, r, r) - (a - ε) ||²   (eq-fm-loss); sum over action dims."""
    eps = torch.randn_like(a) if eps is None else eps
    x_r = interpolate(eps, a, r)  # (B, act_dim)
    v = conditional_velocity(eps, a)
    u = net(o, x_r, r, r)
    return ((u - v) ** 2).sum(-1).mean()  # (eq-fm-loss)
