"""Two-dimensional toy "joint actions" and a Gaussian whose average velocity is known exactly.

Not environments: no dynamics or rewards, only action distributions to learn and sample.
Used in chapters 1-3.
"""

from __future__ import annotations

import math

import torch
from torch import nn

TOY_KINDS = ("coordination", "ring")


def toy_modes(kind: str = "ring") -> torch.Tensor:
    """Mode centres (M, 2) in [-1, 1]²: two coordinated corners, or 8 points on a circle."""
    if kind == "coordination":
        return torch.tensor([[0.6, 0.6], [-0.6, -0.6]])
    if kind == "ring":
        angles = torch.arange(8) * (2 * math.pi / 8)
        return 0.65 * torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)
    raise ValueError(f"unknown toy kind {kind!r}: choose one of {TOY_KINDS}")


def toy_joint_actions(n: int, kind: str = "ring", std: float = 0.06,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """n joint actions (n, 2): agent 1's action in column 0, agent 2's in column 1.

    An equal mixture of small Gaussians at ``toy_modes(kind)``; each mode is a joint action
    that works only if both agents commit to it (the mean of the modes does not).
    """
    modes = toy_modes(kind)
    idx = torch.randint(len(modes), (n,), generator=generator)
    return (modes[idx] + std * torch.randn(n, 2, generator=generator)).clamp(-1, 1)


def no_obs(n: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """An empty observation batch (n, 0): the toy policies condition on nothing."""
    return torch.zeros(n, 0, device=device)


class GaussianAverageVelocity(nn.Module):
    """Exact average velocity u(x, r, t) for data N(μ, Σ) and noise N(0, I).

    Along x_τ = (1-τ)ε + τa the marginals are N(τμ, S_τ), S_τ = (1-τ)² I + τ² Σ, all
    commuting, so the flow is affine: x_t = tμ + S_t^{1/2} S_r^{-1/2} (x_r - rμ), and
    u = (x_t - x_r) / (t - r); at t = r it is the marginal velocity (eq-gauss-u).
    """

    def __init__(self, mu: torch.Tensor, cov: torch.Tensor):
        super().__init__()
        evals, evecs = torch.linalg.eigh(cov)
        if bool((evals <= 0).any()):
            raise ValueError("covariance must be positive definite")
        self.register_buffer("mu", mu)
        self.register_buffer("lam", evals)  # eigenvalues of Σ
        self.register_buffer("q", evecs)  # eigenvectors of Σ (columns)

    def _scale(self, tau: torch.Tensor) -> torch.Tensor:
        """Eigenvalues of S_τ^{1/2}: sqrt((1-τ)² + τ² λ)."""
        return torch.sqrt((1 - tau) ** 2 + tau**2 * self.lam)

    def velocity(self, x: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
        """Marginal velocity E[a - ε | x_τ = x] = μ + ½ Ṡ S⁻¹ (x - τμ)."""
        y = (x - tau * self.mu) @ self.q  # coordinates in Σ's eigenbasis
        s2 = (1 - tau) ** 2 + tau**2 * self.lam
        ds2 = -2 * (1 - tau) + 2 * tau * self.lam
        return self.mu + (0.5 * ds2 / s2 * y) @ self.q.T

    def forward(self, o: torch.Tensor, x: torch.Tensor, r: torch.Tensor,
                t: torch.Tensor) -> torch.Tensor:
        """u(x, r, t) for x: (B, d), r, t: (B, 1); o is ignored."""
        y = (x - r * self.mu) @ self.q  # (B, d)
        x_t = t * self.mu + (self._scale(t) / self._scale(r) * y) @ self.q.T
        gap = t - r
        same = gap.abs() < 1e-12
        u = (x_t - x) / torch.where(same, torch.ones_like(gap), gap)  # (eq-gauss-u)
        return torch.where(same, self.velocity(x, r), u)
