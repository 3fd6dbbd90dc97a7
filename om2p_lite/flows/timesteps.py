"""Time sampling for flow and mean-flow training: the ξ family, logit-normal, (r, t) pairs.

Not the samplers of actions (see ``sampling``). The ξ family is this project's
reconstruction of the paper's "generalised timestep distribution" (its exact form is not public).
Taught in chapter 3 (book/03_timesteps).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

GRID_SIZE = 8193  # points of the inverse-CDF grid; CDF error ~ 1e-7 for smooth densities


@dataclass(frozen=True)
class Xi:
    """p_ξ(τ) ∝ τ^a (1 - τ)^b exp(c τ + d τ²) on [0, 1]; ξ = [0,0,0,0] is uniform."""

    a: float = 0.0
    b: float = 0.0
    c: float = 0.0
    d: float = 0.0

    @classmethod
    def parse(cls, xi: Xi | Sequence[float]) -> Xi:
        """Accept an ``Xi`` or 4 numbers [a, b, c, d]; reject anything else clearly."""
        if isinstance(xi, Xi):
            return xi
        try:
            values = [float(v) for v in xi]
        except (TypeError, ValueError) as err:
            raise ValueError(f"ξ must be 4 numbers [a, b, c, d], got {xi!r}") from err
        if len(values) != 4:
            raise ValueError(f"ξ must be 4 numbers [a, b, c, d], got {len(values)}: {xi!r}")
        if not all(math.isfinite(v) for v in values):
            raise ValueError(f"ξ must be finite numbers, got {xi!r}")
        a, b, c, d = values
        if a <= -1 or b <= -1:
            raise ValueError(f"ξ needs a > -1 and b > -1 for a normalisable density, got {xi!r}")
        return cls(a, b, c, d)

    @property
    def is_beta(self) -> bool:
        """True when c = d = 0, so p_ξ is exactly Beta(a + 1, b + 1)."""
        return self.c == 0.0 and self.d == 0.0

    def log_unnormalised(self, tau: torch.Tensor) -> torch.Tensor:
        """log p̃_ξ(τ) = a log τ + b log(1 - τ) + c τ + d τ²   (eq-xi-density)."""
        out = self.c * tau + self.d * tau**2
        if self.a != 0.0:
            out = out + self.a * torch.log(tau)
        if self.b != 0.0:
            out = out + self.b * torch.log1p(-tau)
        return out

    def _grid(self) -> tuple[torch.Tensor, torch.Tensor, float]:
        """(τ grid, unnormalised CDF on it, log-shift) in float64.

        The grid is τ = (1 - cos πs)/2 for uniform s, dense at both ends where τ^a and
        (1 - τ)^b may spike; the integrand in s behaves like s^(2a+1) near 0, so the two
        end cells are integrated exactly for that power and the rest by the trapezoid rule.
        """
        s = torch.linspace(0.0, 1.0, GRID_SIZE, dtype=torch.float64)
        h = float(s[1])
        tau = (1 - torch.cos(torch.pi * s)) / 2
        inner = tau[1:-1]
        logp = self.log_unnormalised(inner)
        shift = float(logp.max())
        g = torch.exp(logp - shift) * (torch.pi / 2) * torch.sin(torch.pi * s[1:-1])
        cells = torch.cat([g[:1] * h / (2 * self.a + 2), (g[1:] + g[:-1]) * h / 2,
                           g[-1:] * h / (2 * self.b + 2)])
        cdf = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(cells, 0)])
        return tau, cdf, shift

    def pdf(self, tau: torch.Tensor) -> torch.Tensor:
        """Normalised density at τ (numerically normalised unless Beta)."""
        tau = torch.as_tensor(tau, dtype=torch.float64)
        if self.is_beta:
            return torch.distributions.Beta(self.a + 1, self.b + 1).log_prob(tau).exp()
        _, cdf, shift = self._grid()
        return torch.exp(self.log_unnormalised(tau) - shift) / cdf[-1]

    def cdf(self, tau: torch.Tensor) -> torch.Tensor:
        """CDF at τ, by interpolation of the integrated grid."""
        tau = torch.as_tensor(tau, dtype=torch.float64).clamp(0.0, 1.0)
        grid, cdf, _ = self._grid()
        return _interp(tau, grid, cdf / cdf[-1])

    def sample(self, n: int, generator: torch.Generator | None = None,
               device: torch.device | str = "cpu") -> torch.Tensor:
        """n draws (n, 1) in float32: exact Beta sampling when c = d = 0, else inverse-CDF grid."""
        if self.a == self.b == self.c == self.d == 0.0:
            return torch.rand(n, 1, generator=generator).to(device)
        if self.is_beta:
            g1 = _gamma(self.a + 1, n, generator)
            g2 = _gamma(self.b + 1, n, generator)
            return (g1 / (g1 + g2)).float().unsqueeze(1).to(device)
        grid, cdf, _ = self._grid()
        u = torch.rand(n, generator=generator, dtype=torch.float64)
        return _interp(u, cdf / cdf[-1], grid).float().unsqueeze(1).to(device)


def _gamma(shape: float, n: int, generator: torch.Generator | None) -> torch.Tensor:
    """Gamma(shape, 1) draws from a seeded generator (torch's Gamma takes none)."""
    # Marsaglia-Tsang for shape >= 1, boosted by U^(1/shape) for shape < 1.
    boost = shape < 1.0
    k = shape + 1.0 if boost else shape
    d = k - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    out = torch.empty(n, dtype=torch.float64)
    filled = 0
    while filled < n:
        m = 2 * (n - filled) + 16
        z = torch.randn(m, generator=generator, dtype=torch.float64)
        u = torch.rand(m, generator=generator, dtype=torch.float64)
        v = (1 + c * z) ** 3
        ok = (v > 0) & (torch.log(u) < 0.5 * z**2 + d - d * v + d * torch.log(v.clamp_min(1e-300)))
        accepted = (d * v)[ok][: n - filled]
        out[filled: filled + len(accepted)] = accepted
        filled += len(accepted)
    if boost:
        out = out * torch.rand(n, generator=generator, dtype=torch.float64) ** (1.0 / shape)
    return out


def _interp(x: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear interpolation of increasing ``xp`` (flat segments are safe)."""
    idx = torch.searchsorted(xp, x.contiguous()).clamp(1, len(xp) - 1)
    x0, x1, f0, f1 = xp[idx - 1], xp[idx], fp[idx - 1], fp[idx]
    w = torch.where(x1 > x0, (x - x0) / (x1 - x0).clamp_min(1e-300), torch.zeros_like(x))
    return f0 + w.clamp(0, 1) * (f1 - f0)


@dataclass(frozen=True)
class LogitNormal:
    """τ = sigmoid(μ + σ z), z ~ N(0, 1): MeanFlow's time sampler, kept for comparison."""

    mu: float = -0.4
    sigma: float = 1.0

    def sample(self, n: int, generator: torch.Generator | None = None,
               device: torch.device | str = "cpu") -> torch.Tensor:
        """n draws (n, 1)."""
        z = torch.randn(n, 1, generator=generator)
        return torch.sigmoid(self.mu + self.sigma * z).to(device)

    def pdf(self, tau: torch.Tensor) -> torch.Tensor:
        """Density of the logit-normal law at τ in (0, 1)."""
        tau = torch.as_tensor(tau, dtype=torch.float64).clamp(1e-12, 1 - 1e-12)
        logit = torch.log(tau) - torch.log1p(-tau)
        norm = math.sqrt(2 * math.pi) * self.sigma
        return torch.exp(-0.5 * ((logit - self.mu) / self.sigma) ** 2) / (norm * tau * (1 - tau))


TimeSampler = Xi | LogitNormal


def make_time_sampler(spec: TimeSampler | Sequence[float] | str) -> TimeSampler:
    """An ``Xi``/``LogitNormal``, 4 numbers ξ (or the text 'a,b,c,d'), or a name:
    'uniform' / 'beta55' / 'logit_normal'."""
    if isinstance(spec, Xi | LogitNormal):
        return spec
    if isinstance(spec, str) and "," in spec:  # "a,b,c,d", as configs and flags write ξ
        try:
            spec = [float(v) for v in spec.split(",")]
        except ValueError as err:
            raise ValueError(f"ξ {spec!r} is not 4 numbers 'a,b,c,d'; write e.g. '5,5,0,0' "
                             f"or a name such as 'beta55'") from err
    if isinstance(spec, str):
        named = {"uniform": Xi(), "beta55": Xi(5, 5), "logit_normal": LogitNormal()}
        if spec not in named:
            raise ValueError(f"unknown time sampler {spec!r}: use one of {sorted(named)} "
                             f"or 4 numbers [a, b, c, d]")
        return named[spec]
    return Xi.parse(spec)


PAIRINGS = ("sorted", "independent")


def sample_r_t(n: int, sampler: TimeSampler, ratio: float = 0.25,
               generator: torch.Generator | None = None,
               device: torch.device | str = "cpu",
               pairing: str = "sorted") -> tuple[torch.Tensor, torch.Tensor]:
    """(r, t), each (n, 1), from two draws of ``sampler``.

    ``sorted`` (MeanFlow): r = min, t = max, and with prob. 1 - ratio, t = r.
    ``independent`` (the public OM2P code): r and t are the two draws as they come, in either
    order, with no r = t share (``ratio`` is ignored); the identity holds for t < r too.
    """
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"ratio (fraction of r ≠ t pairs) must be in [0, 1], got {ratio}")
    if pairing not in PAIRINGS:
        raise ValueError(f"unknown pairing {pairing!r}: choose one of {PAIRINGS}")
    tau = sampler.sample(2 * n, generator=generator).view(n, 2)
    if pairing == "independent":
        return tau[:, :1].to(device), tau[:, 1:].to(device)
    r, t = tau.min(dim=1, keepdim=True).values, tau.max(dim=1, keepdim=True).values
    equal = torch.rand(n, 1, generator=generator) >= ratio
    t = torch.where(equal, r, t)
    return r.to(device), t.to(device)
