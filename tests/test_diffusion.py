"""DDPM diffusion policy core: schedule, exact-predictor sampling, toy training, errors."""

from __future__ import annotations

import math

import pytest
import torch

import om2p_lite as om
from om2p_lite.flows.diffusion import (
    DiffusionSchedule,
    GaussianNoisePredictor,
    diffuse,
    diffusion_loss,
    sample_diffusion,
    vp_betas,
)

MU = torch.tensor([0.3, -0.2], dtype=torch.float64)
STD = torch.tensor([0.2, 0.5], dtype=torch.float64)


def test_vp_schedule_matches_diffusion_ql_formula_and_ends_near_noise():
    steps = 5
    betas = vp_betas(steps)
    k = 3  # closed form of Diffusion-QL's vp_beta_schedule at t = 3
    alpha = math.exp(-0.1 / steps - 0.5 * (10.0 - 0.1) * (2 * k - 1) / steps**2)
    assert betas[k - 1].item() == pytest.approx(1 - alpha, rel=1e-12)
    for n in (5, 50, 200):
        s = DiffusionSchedule(n)
        assert s.alpha_bar[-1].item() == pytest.approx(math.exp(-5.05), rel=1e-9)
        assert bool((s.betas > 0).all()) and bool((s.betas < 1).all())
        assert bool((s.alpha_bar[1:] < s.alpha_bar[:-1]).all())
    cos = DiffusionSchedule(50, "cosine")
    assert cos.alpha_bar[-1].item() < 1e-4


def _exact_sampler_moments(s: DiffusionSchedule) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance of the unclipped sampler's output with the Gaussian predictor.

    ε̂ = A_k (x - sqrt(ᾱ) μ) is affine, so x_{k-1} = m_k x_k + b_k + σ_k z stays Gaussian.
    """
    mean, var = torch.zeros(2, dtype=torch.float64), torch.ones(2, dtype=torch.float64)
    for k in range(s.steps, 0, -1):
        i = k - 1
        abar = s.alpha_bar[i]
        gain = (1 - abar).sqrt() / (abar * STD**2 + 1 - abar)  # ε̂ = gain (x - sqrt(ᾱ) μ)
        # â = (x - sqrt(1-ᾱ) ε̂) / sqrt(ᾱ) = p x + q
        p = (1 - (1 - abar).sqrt() * gain) / abar.sqrt()
        q = (1 - abar).sqrt() * gain * abar.sqrt() * MU / abar.sqrt()
        m = s.coef_a[i] * p + s.coef_x[i]
        mean = m * mean + s.coef_a[i] * q
        var = m**2 * var + (s.posterior_var[i] if k > 1 else 0.0)
    return mean, var


@pytest.mark.parametrize("steps", [5, 50])
def test_sampler_with_exact_predictor_has_the_predicted_moments(steps: int):
    s = DiffusionSchedule(steps)
    net = GaussianNoisePredictor(MU, STD, s)
    gen = torch.Generator().manual_seed(0)
    o = torch.zeros(40000, 0, dtype=torch.float64)
    x = sample_diffusion(net, o, 2, s, clip=False, generator=gen)
    mean, var = _exact_sampler_moments(s)
    assert torch.allclose(x.mean(0), mean, atol=0.01)
    assert torch.allclose(x.var(0), var, rtol=0.05)


def test_sampler_with_exact_predictor_reproduces_the_gaussian_as_steps_grow():
    gen = torch.Generator().manual_seed(1)
    o = torch.zeros(40000, 0, dtype=torch.float64)
    errors = []
    for steps in (5, 50, 500):
        s = DiffusionSchedule(steps)
        x = sample_diffusion(GaussianNoisePredictor(MU, STD, s), o, 2, s, clip=False,
                             generator=gen)
        assert torch.allclose(x.mean(0), MU, atol=0.01)
        errors.append(float((x.std(0) / STD - 1).abs().max()))
    # β̃ (the posterior variance) under-disperses at few steps; the gap closes as T grows
    assert errors[0] > 0.3, errors
    assert errors[0] > errors[1] > errors[2], errors
    assert errors[2] < 0.04, errors


def test_loss_is_zero_mean_for_the_exact_predictor_and_larger_for_a_wrong_one():
    s = DiffusionSchedule(20)
    gen = torch.Generator().manual_seed(2)
    a = MU + STD * torch.randn(20000, 2, dtype=torch.float64, generator=gen)
    o = torch.zeros(20000, 0, dtype=torch.float64)
    exact = GaussianNoisePredictor(MU, STD, s)
    wrong = GaussianNoisePredictor(MU + 0.5, STD, s)
    torch.manual_seed(0)
    l_exact = diffusion_loss(exact, o, a, s).item()
    torch.manual_seed(0)
    l_wrong = diffusion_loss(wrong, o, a, s).item()
    assert l_exact < 2.0  # < E||ε||² = 2: the predictor explains part of the noise
    assert l_wrong > l_exact + 0.05


def test_diffuse_and_loss_use_the_stated_step_and_time_input():
    s = DiffusionSchedule(10)
    a, eps = torch.full((3, 2), 0.5), torch.ones(3, 2)
    k = torch.tensor([1, 5, 10])
    seen: dict[str, torch.Tensor] = {}

    def spy(o, x, r, t):
        seen.update(x=x, r=r, t=t)
        return torch.zeros_like(x)

    loss = diffusion_loss(spy, torch.zeros(3, 0), a, s, eps=eps, k=k)
    abar = s.alpha_bar[k - 1].float().unsqueeze(-1)
    assert torch.allclose(seen["x"], diffuse(a, eps, abar))
    assert torch.allclose(seen["r"], k.float().unsqueeze(-1) / 10)
    assert torch.equal(seen["r"], seen["t"])
    assert loss.item() == pytest.approx(2.0)  # ||0 - ε||² with ε = 1 in 2 dims


def test_short_training_on_two_mode_toy_covers_both_modes():
    gen = om.seed_everything(0)
    data = om.toy_joint_actions(8000, "coordination", generator=gen)
    s = DiffusionSchedule(20)
    net = om.VelocityNet(0, 2, hidden=64, depth=2)
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    for _ in range(1200):
        batch = data[torch.randint(len(data), (256,), generator=gen)]
        loss = diffusion_loss(net, om.no_obs(256), batch, s)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        x = sample_diffusion(net, om.no_obs(2000), 2, s, generator=gen)
    assert x.abs().max() <= 1
    modes = om.toy_modes("coordination")
    cover = om.mode_coverage(x, modes, radius=0.25)
    assert cover["modes_hit"] == 1.0 and cover["on_mode"] > 0.8, cover
    share = (torch.cdist(x, modes).argmin(1) == 0).float().mean().item()
    assert 0.3 < share < 0.7, share  # neither mode collapsed


@pytest.mark.parametrize("bad", [0, -3, 2.5, "50", True])
def test_bad_step_counts_raise(bad):
    with pytest.raises(ValueError, match="steps"):
        DiffusionSchedule(bad)


def test_bad_schedule_raises():
    with pytest.raises(ValueError, match="schedule"):
        DiffusionSchedule(10, kind="linear")
    with pytest.raises(ValueError, match="beta_min"):
        DiffusionSchedule(10, beta_min=5.0, beta_max=1.0)


def test_gradients_flow_through_the_sampler_for_a_q_term():
    s = DiffusionSchedule(5)
    net = om.VelocityNet(3, 2, hidden=16, depth=1)
    a = sample_diffusion(net, torch.randn(4, 3), 2, s)
    a.sum().backward()
    assert all(p.grad is not None for p in net.parameters())


def test_loss_and_sampler_work_with_stacked_per_agent_networks():
    from om2p_lite.flows.stacked import StackedVelocityNet

    torch.manual_seed(0)
    s = DiffusionSchedule(4)
    net = StackedVelocityNet(3, 5, 2, hidden=16, depth=1)
    o, a = torch.randn(8, 3, 5), torch.rand(8, 3, 2) * 2 - 1
    loss = diffusion_loss(net, o, a, s)
    loss.backward()
    assert loss.ndim == 0 and torch.isfinite(loss)
    with torch.no_grad():
        x = sample_diffusion(net, o, 2, s, eps=torch.randn(8, 3, 2))
    assert x.shape == (8, 3, 2) and x.abs().max() <= 1
    # each member only sees its own slice: changing agent 0's observation moves only agent 0
    eps = torch.randn(8, 3, 2)
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        x1 = sample_diffusion(net, o, 2, s, eps=eps.clone(), clip=False, generator=gen)
        o2 = o.clone()
        o2[:, 0] += 1.0
        gen.manual_seed(5)
        x2 = sample_diffusion(net, o2, 2, s, eps=eps.clone(), clip=False, generator=gen)
    assert not torch.allclose(x1[:, 0], x2[:, 0])
    assert torch.allclose(x1[:, 1:], x2[:, 1:])


def test_every_sampling_draw_can_come_from_the_caller():
    """x_T and the ancestral noise of every step given: no global RNG is touched."""
    s = DiffusionSchedule(4)
    net = om.VelocityNet(3, 2, hidden=16, depth=1)
    o = torch.randn(6, 3)
    gen = torch.Generator().manual_seed(0)
    eps = torch.randn(6, 2, generator=gen)
    noise = torch.stack([torch.randn(6, 2, generator=gen) for _ in range(3)])  # k = 4, 3, 2
    state = torch.get_rng_state()
    with torch.no_grad():
        a1 = sample_diffusion(net, o, 2, s, eps=eps, noise=noise, clip=False)
        a2 = sample_diffusion(net, o, 2, s, eps=eps, noise=noise, clip=False)
        a3 = sample_diffusion(net, o, 2, s, eps=eps, noise=noise.flip(0), clip=False)
        # the same draws from a generator give the same sample
        gen.manual_seed(0)
        a4 = sample_diffusion(net, o, 2, s, clip=False, generator=gen)
    assert torch.get_rng_state().equal(state)
    assert torch.equal(a1, a2) and not torch.allclose(a1, a3)
    torch.testing.assert_close(a1, a4)
    with pytest.raises(ValueError, match=r"one draw per step k = T..2.*\(3, 6, 2\)"):
        sample_diffusion(net, o, 2, s, eps=eps, noise=noise[:2])


def test_loss_per_member_averages_the_batch_only():
    from om2p_lite.flows.stacked import StackedVelocityNet

    s = DiffusionSchedule(4)
    net = StackedVelocityNet(3, 5, 2, hidden=16, depth=1)
    o, a = torch.randn(8, 3, 5), torch.rand(8, 3, 2) * 2 - 1
    eps, k = torch.randn(8, 3, 2), torch.randint(1, 5, (8, 3))
    per = diffusion_loss(net, o, a, s, eps=eps, k=k, reduce="agents")
    assert per.shape == (3,)
    torch.testing.assert_close(per.mean(), diffusion_loss(net, o, a, s, eps=eps, k=k))
    with pytest.raises(ValueError, match="reduction"):
        diffusion_loss(net, o, a, s, reduce="sum")
