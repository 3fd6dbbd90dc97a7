"""Turning noise into actions: K-step Euler for flow matching, 1- or K-step mean flow.

Not training code. Gradients flow through unless the caller wraps in ``torch.no_grad``
(the actor's Q term needs them through the one-step sample). Taught in chapters 1 and 2.
"""

from __future__ import annotations

import torch

from om2p_lite.flows.meanflow import VelocityFn


def _noise(o: torch.Tensor, act_dim: int, eps: torch.Tensor | None) -> torch.Tensor:
    return torch.randn(o.shape[0], act_dim, device=o.device, dtype=o.dtype) if eps is None \
        else eps


def _check_steps(steps: int) -> None:
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"number of sampling steps must be an int >= 1, got {steps!r}")


def sample_flow(net: VelocityFn, o: torch.Tensor, act_dim: int, steps: int = 10,
                eps: torch.Tensor | None = None, clip: bool = True) -> torch.Tensor:
    """Euler: x_{k+1} = x_k + h v_θ(o, x_k, τ_k, τ_k), h = 1/K   (eq-euler)."""
    _check_steps(steps)
    x = _noise(o, act_dim, eps)  # (B, act_dim)
    h = 1.0 / steps
    for k in range(steps):
        tau = torch.full((x.shape[0], 1), k * h, device=x.device, dtype=x.dtype)
        x = x + h * net(o, x, tau, tau)  # (eq-euler)
    return x.clamp(-1, 1) if clip else x


def sample_meanflow(net: VelocityFn, o: torch.Tensor, act_dim: int, steps: int = 1,
                    eps: torch.Tensor | None = None, clip: bool = True) -> torch.Tensor:
    """x_{τ'} = x_τ + (τ' - τ) u_θ(o, x_τ, τ, τ'); one step: ε + u_θ(o, ε, 0, 1) (eq-one-step)."""
    _check_steps(steps)
    x = _noise(o, act_dim, eps)  # (B, act_dim)
    grid = torch.linspace(0.0, 1.0, steps + 1).tolist()
    for r_, t_ in zip(grid[:-1], grid[1:], strict=True):
        r = torch.full((x.shape[0], 1), r_, device=x.device, dtype=x.dtype)
        t = torch.full((x.shape[0], 1), t_, device=x.device, dtype=x.dtype)
        x = x + (t_ - r_) * net(o, x, r, t)  # (eq-one-step); floats keep stacked shapes
    return x.clamp(-1, 1) if clip else x
