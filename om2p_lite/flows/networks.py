"""Small MLPs: a generic ``mlp`` builder and the velocity network u(o, x, r, t).

Not agents or critics: those compose these blocks (see ``critics`` and ``agents``).
"""

from __future__ import annotations

import torch
from torch import nn


def mlp(in_dim: int, out_dim: int, hidden: int = 256, depth: int = 3,
        layer_norm: bool = False, activation: type[nn.Module] = nn.GELU) -> nn.Sequential:
    """``depth`` hidden layers of width ``hidden`` (optional LayerNorm), then a linear head."""
    if in_dim < 0 or out_dim <= 0 or hidden <= 0 or depth < 1:
        raise ValueError(f"mlp needs in_dim >= 0, out_dim > 0, hidden > 0, depth >= 1; "
                         f"got {in_dim=}, {out_dim=}, {hidden=}, {depth=}")
    layers: list[nn.Module] = []
    width = in_dim
    for _ in range(depth):
        layers.append(nn.Linear(width, hidden))
        if layer_norm:
            layers.append(nn.LayerNorm(hidden))
        layers.append(activation())
        width = hidden
    layers.append(nn.Linear(width, out_dim))
    return nn.Sequential(*layers)


class VelocityNet(nn.Module):
    """u_θ(o, x, r, t): average velocity from time r to t (instantaneous when t = r).

    Flow matching uses it with t = r; mean flow uses any r ≤ t. Inputs are concatenated:
    works batched (B, ·) and unbatched (·) so that ``torch.func`` can vmap it.
    """

    def __init__(self, obs_dim: int, act_dim: int, hidden: int = 256, depth: int = 3):
        super().__init__()
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.net = mlp(obs_dim + act_dim + 2, act_dim, hidden, depth)

    def forward(self, o: torch.Tensor, x: torch.Tensor, r: torch.Tensor,
                t: torch.Tensor) -> torch.Tensor:
        """o: (B, obs_dim), x: (B, act_dim), r, t: (B, 1) → u: (B, act_dim)."""
        return self.net(torch.cat([o, x, r, t], dim=-1))
