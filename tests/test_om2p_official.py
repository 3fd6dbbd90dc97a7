"""``om2p-official`` does what the released OM2P code does: raw network output as the action,
independent uniform (t_start, t_stop), du/dt = 0, an unnormalised Q term of weight 1, the
squared error averaged over action dims; and the released target's sign, checked."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from om2p_lite.flows.meanflow import du_dr, meanflow_target
from om2p_lite.rl.agents import AgentDims, make_agent
from om2p_lite.rl.config import TrainConfig

DIMS = AgentDims(2, 3, 2, (2, 1))  # agent 1 has one real action dim (the other is padding)
# settings the algorithm must override: each would change the loss if it were read
IGNORED = dict(eta=5.0, q_norm=True, xi="beta55", pairing="sorted", ratio=0.5,
               estimator="jvp", adaptive_p=1.0, sample_steps=3)


def _cfg(**kw) -> TrainConfig:
    return TrainConfig(algo="om2p-official", hidden=16, depth=1, critic_hidden=16,
                       critic_depth=1, **kw)


class SlotActor(torch.nn.Module):
    """net(o, x, s3, s4) = 2x + 0.3 s3 - 0.7 s4 + Σ o: tells its two time inputs apart."""

    def forward(self, o: torch.Tensor, x: torch.Tensor, s3: torch.Tensor,
                s4: torch.Tensor) -> torch.Tensor:
        s3, s4 = (s.expand(*x.shape[:-1], 1) for s in (s3, s4))
        return 2 * x + 0.3 * s3 - 0.7 * s4 + o.sum(-1, keepdim=True)


class MeanQ(torch.nn.Module):
    """Q_j(o, a) = (j + 1) · (Σ_d a + 1) for two critics: their mean is 1.5 (Σ_d a + 1)."""

    def forward(self, o: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        base = a.sum(-1) + 1.0
        return torch.stack([base, 2 * base])


def test_the_action_is_the_clipped_network_output_at_noise_0_1() -> None:
    torch.manual_seed(0)
    agent = make_agent("om2p-official", DIMS, _cfg(**IGNORED))
    with torch.no_grad():
        agent.actor.net.net[-1].weight.mul_(20)  # outputs well outside [-1, 1]
    obs, eps = torch.randn(64, 2, 3), torch.randn(64, 2, 2)
    zero = torch.zeros(64, 2, 1)
    raw = agent.actor(obs, eps, zero, zero + 1)  # the released (o, ε, t_start=0, t_stop=1)
    a = agent.policy(obs, eps)
    assert torch.equal(a, raw.clamp(-1, 1))
    assert (raw.abs() > 1).any() and a.abs().max() <= 1
    assert not torch.allclose(a, (eps + raw).clamp(-1, 1))  # not OM2P's ε + u
    assert not torch.allclose(a, agent.actor(obs, eps, zero + 1, zero).clamp(-1, 1))
    gen = torch.Generator().manual_seed(3)
    eps_eval = agent.noise(obs, torch.Generator().manual_seed(3))
    assert torch.equal(agent.act(obs, gen), agent.policy(obs, eps_eval) * agent.act_mask)


def test_time_pairs_are_independent_uniform_draws_whatever_the_config() -> None:
    agent = make_agent("om2p-official", DIMS, _cfg(**IGNORED))
    torch.manual_seed(1)
    r, t = agent.sample_times(20_000)  # (B, A, 1) each
    r, t = r.flatten().double(), t.flatten().double()
    assert 0.48 < (r < t).double().mean() < 0.52  # unordered, not r = min
    assert (r != t).all()  # no r = t share (OM2P's ratio)
    for x in (r, t):  # U[0, 1): mean 1/2, variance 1/12, flat deciles
        assert abs(x.mean() - 0.5) < 0.01 and abs(x.var() - 1 / 12) < 0.003
        assert torch.histc(x, 10, 0, 1).div(len(x)).sub(0.1).abs().max() < 0.01
    assert abs(torch.corrcoef(torch.stack([r, t]))[0, 1]) < 0.03


def test_actor_loss_is_mean_over_action_dims_plus_unnormalised_q_by_hand() -> None:
    """L = Σ_i [mean_b mean_{real d} (net(o, x_s, σ, s) - (a - ε))² - mean_b mean_j Q_j],
    x_s = (1 - s) ε + s a at s = t_stop, σ = t_start, a_π = clip(net(o, ε', 0, 1))."""
    agent = make_agent("om2p-official", DIMS, _cfg(**IGNORED))
    agent.actor, agent.critic = SlotActor(), MeanQ()
    g = torch.Generator().manual_seed(5)
    B = 3
    obs = torch.randn(B, 2, 3, generator=g) * 0.1
    act = torch.rand(B, 2, 2, generator=g) * 2 - 1
    act[:, 1, 1] = 0.0  # padding
    s = torch.rand(B, 2, 1, generator=g)  # t_stop (x sits here: our r)
    sigma = torch.rand(B, 2, 1, generator=g)  # t_start (our t)
    eps_bc, eps_pi = torch.randn(2, B, 2, 2, generator=g)
    draws = [eps_bc, eps_pi]
    agent.sample_times = lambda batch_size: (s, sigma)
    agent.randn = lambda *shape, agent_dim=-2, generator=None: draws.pop(0).clone()
    loss, logs = agent.actor_loss({"obs": obs, "actions": act})
    assert not draws
    want = 0.0
    for i in range(2):
        n = DIMS.act_dims[i]
        bc, q = 0.0, 0.0
        for b in range(B):
            o_sum = obs[b, i].sum().item()
            sb, gb = s[b, i, 0].item(), sigma[b, i, 0].item()
            err = 0.0
            for k in range(n):
                e, a = eps_bc[b, i, k].item(), act[b, i, k].item()
                x = (1 - sb) * e + sb * a
                u = 2 * x + 0.3 * gb - 0.7 * sb + o_sum
                err += (u - (a - e)) ** 2
            bc += err / n / B  # mean over the agent's real action dims, then the batch
            a_pi = [min(1.0, max(-1.0, 2 * eps_pi[b, i, k].item() - 0.7 + o_sum))
                    for k in range(n)]
            q += 1.5 * (sum(a_pi) + 1.0) / B
        want += bc - 1.0 * q  # weight 1, no division by mean |Q|
    assert loss.item() == pytest.approx(want, rel=1e-6)
    assert logs["du_dr_zero_frac"].tolist() == [1.0, 1.0]  # du/dt = 0


def test_released_target_sign_is_the_identity_for_x_at_the_other_end() -> None:
    """For the exact mean velocity of dx/dτ = x, with x at r (= t_stop) and the interval
    [t, r]: our target v + (t - r) du/dr is u; the released v - (t_start - t_stop) du/dt_stop,
    i.e. ``meanflow_target`` with r and t swapped, is not."""
    def u_exact(o, x, r, t):  # (x_r - x_t) / (r - t), x_t = x_r e^{t - r}
        return x * (1 - torch.exp(t - r)) / (r - t)

    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 1, generator=g, dtype=torch.float64)
    r, t = torch.rand(2, 256, 1, generator=g, dtype=torch.float64)
    u, dudr = du_dr(u_exact, None, x, r, t, x, "jvp")  # v(x) = x along the path
    torch.testing.assert_close(meanflow_target(x, r, t, dudr), u)
    released = x - (t - r) * dudr  # vel - (t_start - t_stop) * dudt, t_start = t, t_stop = r
    torch.testing.assert_close(released, meanflow_target(x, t, r, dudr))
    gap = (released - u).abs()
    torch.testing.assert_close(gap, (2 * (t - r) * dudr).abs())
    assert gap.median() > 1e-2


def test_population_members_get_the_released_settings() -> None:
    agent = make_agent("om2p-official", AgentDims(4, 3, 2, (2,) * 4), _cfg())
    agent.set_members([_cfg(seed=0), dataclasses.replace(_cfg(**IGNORED), seed=1)])
    assert agent.eta.tolist() == [1.0] * 4 and not agent.q_norm.any()
    assert {c.pairing for c in agent.member_cfgs} == {"independent"}
    assert agent.estimator == "zero" and agent.cfg.adaptive_p == 0.0
