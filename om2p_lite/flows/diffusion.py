"""A DDPM-style diffusion policy core (noise prediction, ancestral sampling), as Diffusion-QL.

Not an agent: no critic or Q term here (the diffusion+Q baseline composes these pieces).

Conventions, which differ from the flow modules on purpose (they follow DDPM): step k = 0 is
the clean action a, step k = T is (almost) pure noise. The noise predictor is the same
``VelocityNet`` class, ε_θ(o, x_k, τ, τ) with the normalised step τ = k / T fed as both
time inputs, so one network class serves flow, mean flow and diffusion.

Diffusion-QL (Wang et al. 2023) uses the VP schedule below with T = 5 steps by default;
DOM2 builds on it. The benchmark's "50-step diffusion sampler" is this sampler with T = 50,
our default; pass ``steps`` to change it.
"""

from __future__ import annotations

import math

import torch

from om2p_lite.flows.meanflow import VelocityFn
from om2p_lite.flows.ops import batch_mean

SCHEDULES = ("vp", "cosine")


def _check_steps(steps: int) -> None:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"diffusion needs an int number of steps >= 1, got {steps!r} "
                         f"(Diffusion-QL uses 5; the benchmarks use 50)")


def vp_betas(steps: int, beta_min: float = 0.1, beta_max: float = 10.0) -> torch.Tensor:
    """Diffusion-QL's discrete VP schedule   (eq-vp-betas).

    β_k = 1 - exp(-β_min / T - (β_max - β_min)(2k - 1) / (2T²)), k = 1..T, so that
    ᾱ_T = exp(-(β_min + (β_max - β_min)/2)) ≈ 0.006 whatever T is.
    """
    _check_steps(steps)
    k = torch.arange(1, steps + 1, dtype=torch.float64)
    log_alpha = -beta_min / steps - 0.5 * (beta_max - beta_min) * (2 * k - 1) / steps**2
    return 1 - torch.exp(log_alpha)  # (eq-vp-betas)


def cosine_betas(steps: int, s: float = 0.008) -> torch.Tensor:
    """Nichol & Dhariwal's cosine schedule: ᾱ(τ) ∝ cos²((τ + s)/(1 + s) · π/2), β ≤ 0.999."""
    _check_steps(steps)
    tau = torch.arange(steps + 1, dtype=torch.float64) / steps
    abar = torch.cos((tau + s) / (1 + s) * math.pi / 2) ** 2
    return (1 - abar[1:] / abar[:-1]).clamp(max=0.999)


class DiffusionSchedule:
    """The variance schedule β_1..β_T and every coefficient derived from it (float64, CPU).

    ``alpha_bar[k-1]`` is ᾱ_k = Π_{j≤k} (1 - β_j); the posterior q(x_{k-1} | x_k, a) has
    mean c_a(k) a + c_x(k) x_k and variance β̃_k = β_k (1 - ᾱ_{k-1}) / (1 - ᾱ_k)
    (eq-ddpm-posterior).
    """

    def __init__(self, steps: int = 50, kind: str = "vp", beta_min: float = 0.1,
                 beta_max: float = 10.0):
        _check_steps(steps)
        if kind not in SCHEDULES:
            raise ValueError(f"unknown diffusion schedule {kind!r}: choose one of {SCHEDULES}")
        if kind == "vp" and not 0 <= beta_min < beta_max:
            raise ValueError(f"VP schedule needs 0 <= beta_min < beta_max, got "
                             f"{beta_min=}, {beta_max=}")
        self.steps, self.kind = steps, kind
        betas = vp_betas(steps, beta_min, beta_max) if kind == "vp" else cosine_betas(steps)
        alphas = 1 - betas
        abar = torch.cumprod(alphas, 0)
        abar_prev = torch.cat([torch.ones(1, dtype=torch.float64), abar[:-1]])
        self.betas, self.alphas, self.alpha_bar, self.alpha_bar_prev = \
            betas, alphas, abar, abar_prev
        self.posterior_var = betas * (1 - abar_prev) / (1 - abar)  # β̃_k (eq-ddpm-posterior)
        self.coef_a = betas * abar_prev.sqrt() / (1 - abar)  # c_a(k)
        self.coef_x = (1 - abar_prev) * alphas.sqrt() / (1 - abar)  # c_x(k)
        self._cache: dict[tuple[torch.device, torch.dtype], dict[str, torch.Tensor]] = {}

    def __repr__(self) -> str:
        return f"DiffusionSchedule(steps={self.steps}, kind={self.kind!r})"

    def on(self, like: torch.Tensor) -> dict[str, torch.Tensor]:
        """ᾱ and friends as tensors on ``like``'s device and dtype (cached)."""
        key = (like.device, like.dtype)
        if key not in self._cache:
            self._cache[key] = {"alpha_bar": self.alpha_bar.to(like.device, like.dtype)}
        return self._cache[key]


def diffuse(a: torch.Tensor, eps: torch.Tensor, abar: torch.Tensor) -> torch.Tensor:
    """x_k = sqrt(ᾱ_k) a + sqrt(1 - ᾱ_k) ε   (eq-ddpm-forward)."""
    return abar.sqrt() * a + (1 - abar).sqrt() * eps  # (eq-ddpm-forward)


def diffusion_loss(net: VelocityFn, o: torch.Tensor, a: torch.Tensor,
                   schedule: DiffusionSchedule, eps: torch.Tensor | None = None,
                   k: torch.Tensor | None = None, reduce: str = "mean") -> torch.Tensor:
    """L_DDPM = E_{k, ε} || ε_θ(o, x_k, k/T, k/T) - ε ||²   (eq-ddpm-loss).

    k ~ Uniform{1..T} drawn per action, shape ``a.shape[:-1]``: (B,) for one network, (B, M)
    for a stacked one (each member its own step). Summed over action dims, averaged over the
    rest (as ``flow``); ``reduce='agents'`` averages over the batch only, giving the (M,)
    per-member losses of a stacked network.
    """
    if reduce not in ("mean", "agents"):
        raise ValueError(f"unknown reduction {reduce!r}: use 'mean' or 'agents'")
    eps = torch.randn_like(a) if eps is None else eps
    if k is None:
        k = torch.randint(1, schedule.steps + 1, a.shape[:-1], device=a.device)
    abar = schedule.on(a)["alpha_bar"][k - 1].unsqueeze(-1)  # (B, 1) or (B, M, 1)
    x_k = diffuse(a, eps, abar)  # (B, act_dim) or (B, M, act_dim)
    tau = (k.to(a.dtype) / schedule.steps).unsqueeze(-1)  # like abar
    eps_hat = net(o, x_k, tau, tau)
    sq_err = ((eps_hat - eps) ** 2).sum(-1)  # (B,) or (B, M)
    if reduce == "agents":  # per member, in an order that does not depend on M
        return batch_mean(sq_err)  # (eq-ddpm-loss)
    return sq_err.mean()  # (eq-ddpm-loss)


def sample_diffusion(net: VelocityFn, o: torch.Tensor, act_dim: int,
                     schedule: DiffusionSchedule, eps: torch.Tensor | None = None,
                     clip: bool = True, generator: torch.Generator | None = None,
                     noise: torch.Tensor | None = None) -> torch.Tensor:
    """Ancestral DDPM sampling from x_T = ε, T network calls   (eq-ddpm-step).

    â = (x_k - sqrt(1 - ᾱ_k) ε_θ) / sqrt(ᾱ_k), clipped to [-1, 1] when ``clip`` (as
    Diffusion-QL's clip_denoised); x_{k-1} = c_a(k) â + c_x(k) x_k + sqrt(β̃_k) z, no noise
    at the last step. Gradients flow through unless the caller uses ``torch.no_grad``.

    Every random number can come from the caller: ``eps`` is x_T and ``noise`` (T - 1, B,
    act_dim) the z of steps k = T..2 in that order; what is not given is drawn with
    ``generator`` (torch's global RNG when None).
    """
    n = o.shape[0]
    x = torch.randn(n, act_dim, device=o.device, dtype=o.dtype, generator=generator) \
        if eps is None else eps  # (B, act_dim) = x_T
    s = schedule
    if noise is not None and tuple(noise.shape) != (s.steps - 1, *x.shape):
        raise ValueError(f"noise must hold one draw per step k = T..2 of shape "
                         f"{(s.steps - 1, *x.shape)}, got {tuple(noise.shape)}")
    for k in range(s.steps, 0, -1):
        i = k - 1
        tau = torch.full((n, 1), k / s.steps, device=x.device, dtype=x.dtype)
        eps_hat = net(o, x, tau, tau)
        abar = float(s.alpha_bar[i])
        a_hat = (x - math.sqrt(1 - abar) * eps_hat) / math.sqrt(abar)  # (eq-ddpm-step)
        if clip:
            a_hat = a_hat.clamp(-1, 1)
        x = float(s.coef_a[i]) * a_hat + float(s.coef_x[i]) * x  # posterior mean
        if k > 1:
            z = torch.randn(x.shape, device=x.device, dtype=x.dtype, generator=generator) \
                if noise is None else noise[s.steps - k]
            x = x + math.sqrt(float(s.posterior_var[i])) * z  # (eq-ddpm-step)
    return x.clamp(-1, 1) if clip else x


class GaussianNoisePredictor(torch.nn.Module):
    """The exact (optimal) noise predictor E[ε | x_k] for data N(μ, diag σ²)   (eq-gauss-eps).

    With x_k = sqrt(ᾱ) a + sqrt(1-ᾱ) ε: E[ε | x_k] = sqrt(1-ᾱ)(x_k - sqrt(ᾱ) μ) / (ᾱ σ² + 1-ᾱ).
    Reads k from τ = k/T, so it only answers on the schedule's grid; o is ignored.
    """

    def __init__(self, mu: torch.Tensor, std: torch.Tensor, schedule: DiffusionSchedule):
        super().__init__()
        if bool((std <= 0).any()):
            raise ValueError("std must be positive")
        self.schedule = schedule
        self.register_buffer("mu", mu)
        self.register_buffer("var", std**2)

    def forward(self, o: torch.Tensor, x: torch.Tensor, r: torch.Tensor,
                t: torch.Tensor) -> torch.Tensor:
        """ε̂(x, k) for x: (B, d), r = t = k/T: (B, 1)."""
        k = torch.round(r[:, 0] * self.schedule.steps).long().clamp(1, self.schedule.steps)
        abar = self.schedule.on(x)["alpha_bar"][k - 1].unsqueeze(-1)  # (B, 1)
        return (1 - abar).sqrt() * (x - abar.sqrt() * self.mu) / \
            (abar * self.var + 1 - abar)  # (eq-gauss-eps)
