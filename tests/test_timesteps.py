"""The ξ timestep family, the logit-normal sampler and (r, t) pairs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import integrate, stats

import om2p_lite as om
from om2p_lite.flows.timesteps import Xi


def _draws(xi, n=20_000, seed=0) -> np.ndarray:
    return om.Xi.parse(xi).sample(n, torch.Generator().manual_seed(seed)).squeeze(1).numpy()


@pytest.mark.parametrize("xi, law", [
    ([0, 0, 0, 0], stats.uniform()), ([5, 5, 0, 0], stats.beta(6, 6)),
    ([1, 2, 0, 0], stats.beta(2, 3)), ([-0.5, 0.5, 0, 0], stats.beta(0.5, 1.5)),
])
def test_beta_members_pass_ks(xi, law):
    assert stats.kstest(_draws(xi), law.cdf).pvalue > 1e-3


def test_ks_has_power_against_the_wrong_law():
    assert stats.kstest(_draws([5, 5, 0, 0]), stats.beta(2, 2).cdf).pvalue < 1e-6


@pytest.mark.parametrize("xi", [[2, 1, 1.5, -2], [0, 0, 3, 0], [-0.5, 0, 0, 2.0], [1, 1, -4, 4]])
def test_general_members_match_numerically_integrated_cdf(xi):
    a, b, c, d = xi

    def dens(s: float) -> float:
        return s**a * (1 - s) ** b * np.exp(c * s + d * s * s)

    z = integrate.quad(dens, 0, 1)[0]

    def cdf(x):
        return np.array([integrate.quad(dens, 0, v)[0] / z for v in np.atleast_1d(x)])

    draws = _draws(xi, n=5000)
    assert stats.kstest(draws, cdf).pvalue > 1e-3
    grid = np.linspace(0.05, 0.95, 7)
    assert np.allclose(Xi.parse(xi).cdf(torch.tensor(grid)).numpy(), cdf(grid), atol=1e-4)
    pdf = Xi.parse(xi).pdf(torch.tensor(grid)).numpy()
    assert np.allclose(pdf, [dens(s) / z for s in grid], rtol=1e-3)


def test_logit_normal_sampler_matches_its_law():
    ln = om.LogitNormal(-0.4, 1.0)
    draws = ln.sample(20_000, torch.Generator().manual_seed(0)).squeeze(1).numpy()
    logits = np.log(draws) - np.log1p(-draws)
    assert stats.kstest(logits, stats.norm(-0.4, 1.0).cdf).pvalue > 1e-3
    grid = torch.linspace(0.01, 0.99, 999, dtype=torch.float64)
    assert abs(float(torch.trapezoid(ln.pdf(grid), grid)) - 1) < 1e-2


@pytest.mark.parametrize("ratio", [0.0, 0.25, 1.0])
def test_r_t_pairs(ratio):
    r, t = om.sample_r_t(10_000, om.Xi(5, 5), ratio, torch.Generator().manual_seed(0))
    assert r.shape == t.shape == (10_000, 1)
    assert bool((r <= t).all()) and bool((r >= 0).all()) and bool((t <= 1).all())
    unequal = float((t > r).float().mean())
    assert abs(unequal - ratio) < 0.02


@pytest.mark.parametrize("bad, match", [
    ([1, 2, 3], "4 numbers"), ([1, 2, 3, 4, 5], "4 numbers"), ("abc", "unknown time sampler"),
    ([1, "x", 0, 0], "4 numbers"), ([-1, 0, 0, 0], "a > -1"), ([0, float("inf"), 0, 0], "finite"),
    (3.0, "4 numbers"),
])
def test_bad_xi_raises_clear_error(bad, match):
    with pytest.raises(ValueError, match=match):
        om.make_time_sampler(bad)


def test_bad_ratio_and_pairing():
    with pytest.raises(ValueError, match="ratio"):
        om.sample_r_t(4, om.Xi(), ratio=1.5)
    with pytest.raises(ValueError, match="unknown pairing"):
        om.sample_r_t(4, om.Xi(), pairing="shuffled")


def test_independent_pairs_are_unordered_draws_of_the_law():
    r, t = om.sample_r_t(20_000, om.Xi(4, 4), 0.25, torch.Generator().manual_seed(0),
                         pairing="independent")
    assert 0.45 < float((r < t).float().mean()) < 0.55  # either order, no r = t share
    for draws in (r, t):
        assert stats.kstest(draws.squeeze(1).numpy(), stats.beta(5, 5).cdf).pvalue > 1e-3
