"""Time sampling for flow and mean-flow training: the ξ family, logit-normal, (r, t) pairs.

Not the samplers of actions (see ``sampling``). The ξ family is this project's
reconstruction of the paper's "generalised timestep distribution" (its exact form is not public).
Taught in chapter 3 (book/03_timesteps).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from om2p_lite.runtime.checks import SettingError, check_range

GRID_SIZE = 8193  # points of the inverse-CDF grid; CDF error ~ 1e-7 for smooth densities
XI_MAX = 1e4  # largest |a|, |b|, |c|, |d|: beyond it a peak of p_ξ spans < ~20 grid cells
XI_FIX = "use a name (uniform, beta55, logit_normal) or 4 numbers 'a,b,c,d' with -1 < a, b " \
    f"and every |value| <= {XI_MAX:g}, e.g. '5,5,0,0'"


@dataclass(frozen=True)
class Xi:
    """p_ξ(τ) ∝ τ^a (1 - τ)^b exp(c τ + d τ²) on [0, 1]; ξ = [0,0,0,0] is uniform.

    Every ``Xi`` is a finite, normalisable density: a, b > -1 (integrable ends) and
    |a|, |b|, |c|, |d| <= ``XI_MAX`` (no overflow, and no peak narrower than the grid).
    """

    a: float = 0.0
    b: float = 0.0
    c: float = 0.0
    d: float = 0.0

    def __post_init__(self) -> None:
        """Refuse (``SettingError`` on field 'xi') parameters with no usable density."""
        values = (self.a, self.b, self.c, self.d)
        if not all(isinstance(v, numbers.Real) and not isinstance(v, bool) and
                   math.isfinite(v) for v in values):
            raise SettingError("xi", f"ξ must be finite numbers, got {list(values)!r}", XI_FIX)
        if self.a <= -1 or self.b <= -1:
            raise SettingError("xi", f"ξ needs a > -1 and b > -1 for a normalisable density, "
                               f"got {list(values)!r}", XI_FIX)
        if max(abs(v) for v in values) > XI_MAX:
            raise SettingError("xi", f"ξ = {list(values)!r} has a value beyond ±{XI_MAX:g}: "
                               f"its density overflows or is a spike narrower than the "
                               f"{GRID_SIZE}-point time grid", XI_FIX)

    @classmethod
    def parse(cls, xi: Xi | Sequence[float]) -> Xi:
        """Accept an ``Xi`` or 4 numbers [a, b, c, d]; reject anything else clearly."""
        if isinstance(xi, Xi):
            return xi
        try:
            values = [float(v) for v in xi]
        except (TypeError, ValueError) as err:
            raise SettingError("xi", f"ξ must be 4 numbers [a, b, c, d], got {xi!r}",
                               XI_FIX) from err
        if len(values) != 4:
            raise SettingError("xi", f"ξ must be 4 numbers [a, b, c, d], got {len(values)}: "
                               f"{xi!r}", XI_FIX)
        return cls(*values)

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
    'uniform' / 'beta55' / 'logit_normal'. Anything else: a ``SettingError`` on 'xi'."""
    if isinstance(spec, Xi | LogitNormal):
        return spec
    if isinstance(spec, str) and "," in spec:  # "a,b,c,d", as configs and flags write ξ
        try:
            spec = [float(v) for v in spec.split(",")]
        except ValueError as err:
            raise SettingError("xi", f"ξ {spec!r} is not 4 numbers 'a,b,c,d'",
                               XI_FIX) from err
    if isinstance(spec, str):
        named = {"uniform": Xi(), "beta55": Xi(5, 5), "logit_normal": LogitNormal()}
        if spec not in named:
            raise SettingError("xi", f"unknown time sampler {spec!r}", XI_FIX)
        return named[spec]
    return Xi.parse(spec)


PAIRINGS = ("sorted", "independent")


def check_ratio(ratio: float) -> float:
    """The fraction of r ≠ t pairs, or a ``SettingError``: a finite number in [0, 1]."""
    return check_range("ratio", ratio, 0.0, 1.0, fix="use a fraction of (r, t) pairs with "
                       "r ≠ t in [0, 1], e.g. ratio = 0.25 (MeanFlow's)")


def check_pairing(pairing: str) -> str:
    """``pairing`` if it is one of ``PAIRINGS``, else a ``SettingError``."""
    if pairing not in PAIRINGS:
        raise SettingError("pairing", f"unknown pairing {pairing!r}",
                           f"use one of {', '.join(PAIRINGS)}")
    return pairing


def sample_r_t(n: int, sampler: TimeSampler, ratio: float = 0.25,
               generator: torch.Generator | None = None,
               device: torch.device | str = "cpu",
               pairing: str = "sorted") -> tuple[torch.Tensor, torch.Tensor]:
    """(r, t), each (n, 1), from two draws of ``sampler``.

    ``sorted`` (MeanFlow): r = min, t = max, and with prob. 1 - ratio, t = r.
    ``independent`` (the public OM2P code): r and t are the two draws as they come, in either
    order, with no r = t share (``ratio`` is ignored); the identity holds for t < r too.
    """
    check_ratio(ratio)
    check_pairing(pairing)
    tau = sampler.sample(2 * n, generator=generator).view(n, 2)
    if pairing == "independent":
        return tau[:, :1].to(device), tau[:, 1:].to(device)
    r, t = tau.min(dim=1, keepdim=True).values, tau.max(dim=1, keepdim=True).values
    equal = torch.rand(n, 1, generator=generator) >= ratio
    t = torch.where(equal, r, t)
    return r.to(device), t.to(device)
