"""The straight noise→action path and the flow-matching loss on it.

Not the mean-flow target (``meanflow``) nor the samplers (``sampling``).
Convention: noise at time 0, action at time 1. Taught in chapter 1 (book/01_flow_matching).
"""

from __future__ import annotations

import torch
from torch import nn

from om2p_lite.flows.ops import batch_mean


def interpolate(eps: torch.Tensor, a: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """x_r = (1 - r) ε + r a   (eq-path)."""
    return (1 - r) * eps + r * a  # (eq-path)


def conditional_velocity(eps: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """v = dx_r/dr = a - ε   (eq-cond-velocity)."""
    return a - eps  # (eq-cond-velocity)


def flow_matching_loss(net: nn.Module, o: torch.Tensor, a: torch.Tensor, r: torch.Tensor,
                       eps: torch.Tensor | None = None, reduce: str = "mean") -> torch.Tensor:
    """L_FM = E || u_θ(o, x_r, r, r) - (a - ε) ||²   (eq-fm-loss); sum over action dims.

    ``reduce='agents'``: a (B, A, d) with r (B, A, 1) gives the (A,) per-agent losses (what
    Flow+Q trains with, one loss per agent or population member); ``'mean'`` the scalar.
    """
    eps = torch.randn_like(a) if eps is None else eps
    x_r = interpolate(eps, a, r)  # (B, act_dim)
    v = conditional_velocity(eps, a)
    u = net(o, x_r, r, r)
    sq_err = ((u - v) ** 2).sum(-1)  # (B,) or (B, A)
    if reduce == "agents":
        return batch_mean(sq_err)  # (A,)   (eq-fm-loss)
    if reduce != "mean":
        raise ValueError(f"unknown reduction {reduce!r}: use 'mean' or 'agents'")
    return sq_err.mean()  # (eq-fm-loss)
