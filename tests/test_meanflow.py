"""Mean-flow target and du/dr estimators: exactness, convergence, float32 behaviour, errors."""

from __future__ import annotations

import pytest
import torch

import om2p_lite as om
from om2p_lite.flows.meanflow import du_dr

torch.set_default_dtype(torch.float32)


def _net_and_batch(dtype: torch.dtype, n: int = 64, seed: int = 0):
    torch.manual_seed(seed)
    net = om.VelocityNet(3, 2, hidden=32, depth=2).to(dtype)
    o = torch.randn(n, 3, dtype=dtype)
    x = torch.randn(n, 2, dtype=dtype)
    v = torch.randn(n, 2, dtype=dtype)
    r = torch.rand(n, 1, dtype=dtype) * 0.9
    t = r + (1 - r) * torch.rand(n, 1, dtype=dtype)
    return net, o, x, r, t, v


def _double_backward_jvp(net, o, x, r, t, v):
    """Reference du/dr by the double-backward trick: jvp = d/dw [(Jᵀ w) · (v, 1)]."""
    x = x.clone().requires_grad_(True)
    r = r.clone().requires_grad_(True)
    u = net(o, x, r, t)
    w = torch.zeros_like(u, requires_grad=True)
    gx, gr = torch.autograd.grad(u, (x, r), grad_outputs=w, create_graph=True)
    (jvp,) = torch.autograd.grad((gx * v).sum() + gr.sum(), w)
    return jvp


def test_jvp_matches_double_autograd_in_float64():
    net, o, x, r, t, v = _net_and_batch(torch.float64)
    _, dudr = du_dr(net, o, x, r, t, v, "jvp")
    ref = _double_backward_jvp(net, o, x, r, t, v)
    assert torch.allclose(dudr, ref, atol=1e-12, rtol=1e-10)
    assert ref.abs().max() > 1e-3  # the derivative is not trivially zero


def test_jacobian_estimator_matches_jvp():
    net, o, x, r, t, v = _net_and_batch(torch.float64)
    _, exact = du_dr(net, o, x, r, t, v, "jvp")
    u, jac = du_dr(net, o, x, r, t, v, "jacobian")
    assert torch.allclose(jac, exact, atol=1e-12)
    assert torch.allclose(u, net(o, x, r, t))


def test_fd_converges_to_jvp_at_first_order_in_float64():
    net, o, x, r, t, v = _net_and_batch(torch.float64)
    _, exact = du_dr(net, o, x, r, t, v, "jvp")
    errors = []
    for dr in (1e-2, 1e-3, 1e-4, 1e-5):
        _, fd = du_dr(net, o, x, r, t, v, "fd", dr)
        errors.append(float((fd - exact).abs().max()))
    ratios = [errors[i] / errors[i + 1] for i in range(3)]
    assert all(5 < q < 20 for q in ratios), (errors, ratios)  # error ∝ Δr
    assert errors[-1] < 1e-4 * max(1.0, float(exact.abs().max()))


def test_fd_in_float32_is_exactly_zero_for_most_samples_at_tiny_step():
    net, o, x, _, t, v = _net_and_batch(torch.float32, n=2000)
    r = torch.rand(2000, 1)  # uniform r in [0, 1)
    _, fd = du_dr(net, o, x, r, t.clamp_min(r), v, "fd", 1e-8)
    zero_rows = (fd == 0).all(dim=1).float().mean()
    assert zero_rows > 0.5, float(zero_rows)
    # the non-zero rows are rounding noise, far from the true derivative
    _, exact = du_dr(net.double(), o.double(), x.double(), r.double(), t.clamp_min(r).double(),
                     v.double(), "jvp")
    nonzero = ~(fd == 0).all(dim=1)
    if nonzero.any():
        err = (fd[nonzero].double() - exact[nonzero]).abs().mean()
        assert err > exact.abs().mean()


def test_zero_estimator_and_gradients_flow_through_jvp_primal():
    net, o, x, r, t, v = _net_and_batch(torch.float32)
    u, dudr = du_dr(net, o, x, r, t, v, "zero")
    assert torch.equal(dudr, torch.zeros_like(u))
    a = torch.rand(64, 2) * 2 - 1
    loss, logs = om.meanflow_loss(net, o, a, r, t, "jvp")
    loss.backward()
    grads = [p.grad for p in net.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0
    assert logs["mf_loss"] > 0


def test_meanflow_target_reduces_to_flow_matching_when_r_equals_t():
    net, o, x, r, _, v = _net_and_batch(torch.float64)
    _, dudr = du_dr(net, o, x, r, r, v, "jvp")
    assert torch.equal(om.meanflow_target(v, r, r, dudr), v)


def test_adaptive_weight():
    sq = torch.tensor([0.0, 1.0, 3.0])
    assert torch.equal(om.adaptive_weight(sq, p=0.0), torch.ones(3))
    w = om.adaptive_weight(sq, p=1.0, c=1.0)
    assert torch.allclose(w, torch.tensor([1.0, 0.5, 0.25]))
    with pytest.raises(ValueError, match="p >= 0"):
        om.adaptive_weight(sq, p=-1.0)


@pytest.mark.parametrize("estimator, dr, match", [
    ("fd", 0.0, "Δr must be > 0"), ("fd", -1e-3, "Δr must be > 0"),
    ("fd", float("nan"), "Δr must be > 0"), ("exact", 1e-3, "unknown du/dr estimator"),
])
def test_bad_estimator_arguments_raise_clear_errors(estimator, dr, match):
    net, o, x, r, t, v = _net_and_batch(torch.float32, n=4)
    with pytest.raises(ValueError, match=match):
        du_dr(net, o, x, r, t, v, estimator, dr)


def test_gaussian_closed_form_makes_the_meanflow_residual_vanish():
    torch.manual_seed(0)
    mu = torch.tensor([0.3, -0.2], dtype=torch.float64)
    cov = torch.tensor([[0.2, 0.05], [0.05, 0.1]], dtype=torch.float64)
    exact = om.GaussianAverageVelocity(mu, cov)
    n = 256
    o = torch.zeros(n, 0, dtype=torch.float64)
    x = torch.randn(n, 2, dtype=torch.float64)
    r = torch.rand(n, 1, dtype=torch.float64) * 0.9
    t = r + 0.05 + (0.95 - r) * torch.rand(n, 1, dtype=torch.float64)
    v = exact.velocity(x, r)  # marginal velocity at (x, r)
    u, dudr = du_dr(exact, o, x, r, t, v, "jvp")
    residual = u - om.meanflow_target(v, r, t, dudr)
    assert residual.abs().max() < 1e-10
    # a wrong average velocity leaves a residual: the check has teeth
    wrong = lambda o_, x_, r_, t_: 1.1 * exact(o_, x_, r_, t_)  # noqa: E731
    u2, d2 = du_dr(wrong, o, x, r, t, v, "jvp")
    assert (u2 - om.meanflow_target(v, r, t, d2)).abs().max() > 1e-3


def test_gaussian_one_step_samples_have_the_data_mean_and_covariance():
    mu = torch.tensor([0.3, -0.2], dtype=torch.float64)
    cov = torch.tensor([[0.2, 0.05], [0.05, 0.1]], dtype=torch.float64)
    exact = om.GaussianAverageVelocity(mu, cov)
    gen = torch.Generator().manual_seed(0)
    eps = torch.randn(200_000, 2, generator=gen, dtype=torch.float64)
    o = torch.zeros(len(eps), 0, dtype=torch.float64)
    a = om.sample_meanflow(exact, o, 2, steps=1, eps=eps, clip=False)
    assert torch.allclose(a.mean(0), mu, atol=5e-3)
    assert torch.allclose(torch.cov(a.T), cov, atol=5e-3)
    # K-step Euler on the instantaneous velocity is only first-order accurate
    a10 = om.sample_flow(lambda o_, x_, r_, t_: exact.velocity(x_, r_), o, 2, 10, eps, False)
    a100 = om.sample_flow(lambda o_, x_, r_, t_: exact.velocity(x_, r_), o, 2, 100, eps, False)
    err10 = (torch.cov(a10.T) - cov).abs().max()
    err100 = (torch.cov(a100.T) - cov).abs().max()
    assert err100 < err10


def test_one_step_meanflow_beats_one_step_flow_on_multimodal_toy():
    data = om.toy_joint_actions(8000, "ring", generator=torch.Generator().manual_seed(0))
    eps = torch.randn(2000, 2, generator=torch.Generator().manual_seed(5))
    sw = {}
    for method in ("meanflow", "flow"):
        fit = om.fit_toy(method, data, steps=1000, batch=256, hidden=64, depth=2, lr=2e-3)
        samples = fit.sample(2000, steps=1, eps=eps)
        assert samples.abs().max() <= 1
        sw[method] = om.sliced_wasserstein(samples, data[:2000],
                                           generator=torch.Generator().manual_seed(1))
    assert sw["meanflow"] < 0.5 * sw["flow"], sw
