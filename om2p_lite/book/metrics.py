"""Distances between sample clouds: sliced Wasserstein and mode coverage.

Not RL metrics (returns and normalised scores live with evaluation).
"""

from __future__ import annotations

import torch


def sliced_wasserstein(x: torch.Tensor, y: torch.Tensor, n_proj: int = 256,
                       generator: torch.Generator | None = None) -> float:
    """SW₂(x, y): mean over random directions θ of W₂ between the 1-D projections."""
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"need two (N, d) clouds of the same d, got {tuple(x.shape)} "
                         f"and {tuple(y.shape)}")
    x, y = x.detach().double().cpu(), y.detach().double().cpu()
    theta = torch.randn(x.shape[1], n_proj, generator=generator, dtype=torch.float64)
    theta = theta / theta.norm(dim=0, keepdim=True)
    qs = torch.linspace(0, 1, max(len(x), len(y)), dtype=torch.float64)
    px = torch.quantile(x @ theta, qs, dim=0)  # (Q, n_proj)
    py = torch.quantile(y @ theta, qs, dim=0)
    return float(((px - py) ** 2).mean().sqrt())


def mode_coverage(samples: torch.Tensor, modes: torch.Tensor,
                  radius: float = 0.2) -> dict[str, float]:
    """Fraction of samples within ``radius`` of some mode, and of modes that got a sample."""
    dist = torch.cdist(samples.detach().float().cpu(), modes.float())  # (N, M)
    near = dist.min(dim=1).values < radius
    hit = (dist < radius).any(dim=0)
    return {"on_mode": float(near.float().mean()), "modes_hit": float(hit.float().mean())}
