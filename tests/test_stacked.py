"""Stacked per-member networks equal a Python loop over members, stay independent, and
give the same du/dr under every estimator."""

from __future__ import annotations

import pytest
import torch

from om2p_lite.flows.diffusion import DiffusionSchedule, sample_diffusion
from om2p_lite.flows.meanflow import du_dr
from om2p_lite.flows.networks import VelocityNet, mlp
from om2p_lite.flows.sampling import sample_flow, sample_meanflow
from om2p_lite.flows.stacked import StackedMLP, StackedVelocityNet, sample_stacked, stacked_du_dr

M, B, OBS, ACT = 3, 7, 5, 2




@pytest.mark.parametrize("layer_norm", [False, True])
def test_stacked_mlp_equals_loop(layer_norm: bool) -> None:
    torch.manual_seed(0)
    members = [mlp(OBS, ACT, 16, 2, layer_norm=layer_norm) for _ in range(M)]
    for seq in members:  # non-trivial LayerNorm affine
        for m in seq:
            if isinstance(m, torch.nn.LayerNorm):
                torch.nn.init.normal_(m.weight)
                torch.nn.init.normal_(m.bias)
    stacked = StackedMLP.from_mlps(members)
    x = torch.randn(B, M, OBS)
    loop = torch.stack([members[m](x[:, m]) for m in range(M)], dim=1)
    torch.testing.assert_close(stacked(x), loop, rtol=1e-5, atol=1e-6)
    assert stacked(x.unsqueeze(0).expand(4, B, M, OBS)).shape == (4, B, M, ACT)


def test_members_are_independent() -> None:
    torch.manual_seed(0)
    net = StackedMLP(M, OBS, ACT, 16, 2, layer_norm=True)
    x = torch.randn(B, M, OBS)
    net(x)[:, 0].sum().backward()
    for p in net.parameters():
        assert p.grad[1:].abs().max() == 0, "member 0's loss leaked into other members"
        assert p.grad[0].abs().max() > 0


def test_bad_shape_is_named() -> None:
    with pytest.raises(ValueError, match="expects"):
        StackedMLP(M, OBS, ACT)(torch.randn(B, M + 1, OBS))


def _stack_velocity(nets: list[VelocityNet]) -> StackedVelocityNet:
    s = StackedVelocityNet(len(nets), OBS, ACT, 16, 2)
    s.net = StackedMLP.from_mlps([n.net for n in nets])
    return s


def test_samplers_match_per_member_loop() -> None:
    torch.manual_seed(1)
    nets = [VelocityNet(OBS, ACT, 16, 2) for _ in range(M)]
    stacked = _stack_velocity(nets)
    o, eps = torch.randn(B, M, OBS), torch.randn(B, M, ACT)
    sched = DiffusionSchedule(4)
    for sampler, kw in ((sample_meanflow, {"steps": 1}), (sample_meanflow, {"steps": 3}),
                        (sample_flow, {"steps": 4})):
        got = sample_stacked(sampler, stacked, o, eps, **kw)
        want = torch.stack([sampler(nets[m], o[:, m], ACT, eps=eps[:, m], **kw)
                            for m in range(M)], 1)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    got = sample_stacked(sample_diffusion, stacked, o, eps, schedule=sched,
                         generator=torch.Generator().manual_seed(0))
    assert got.shape == (B, M, ACT) and got.abs().max() <= 1


def test_du_dr_estimators_agree_stacked() -> None:
    torch.manual_seed(2)
    net = StackedVelocityNet(M, OBS, ACT, 16, 2).double()
    o, x, v = (torch.randn(B, M, k, dtype=torch.float64) for k in (OBS, ACT, ACT))
    r = torch.rand(B, M, 1, dtype=torch.float64) * 0.5
    t = r + 0.3
    _, jvp = stacked_du_dr(net, o, x, r, t, v, "jvp")
    _, jac = stacked_du_dr(net, o, x, r, t, v, "jacobian")
    _, fd = stacked_du_dr(net, o, x, r, t, v, "fd", dr=1e-7)
    _, zero = du_dr(net, o, x, r, t, v, "zero")
    torch.testing.assert_close(jac, jvp)
    torch.testing.assert_close(fd, jvp, rtol=1e-5, atol=1e-6)
    assert zero.abs().max() == 0
    # member m's du/dr depends only on member m's inputs: same as a per-member VelocityNet
    nets = [VelocityNet(OBS, ACT, 16, 2).double() for _ in range(M)]
    stacked = _stack_velocity(nets).double()
    _, got = stacked_du_dr(stacked, o, x, r, t, v, "jvp")
    for m in range(M):
        _, want = du_dr(nets[m], o[:, m], x[:, m], r[:, m], t[:, m], v[:, m], "jvp")
        torch.testing.assert_close(got[:, m], want)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_stacked_on_cuda() -> None:
    net = StackedVelocityNet(M, OBS, ACT, 16, 2).cuda()
    o, x = torch.randn(B, M, OBS).cuda(), torch.randn(B, M, ACT).cuda()
    r = torch.rand(B, M, 1).cuda()
    u, d = stacked_du_dr(net, o, x, r, r + 0.1, torch.randn_like(x), "jvp")
    assert u.is_cuda and d.shape == (B, M, ACT)
