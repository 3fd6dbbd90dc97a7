"""The critic probe: Monte-Carlo targets with and without the time-limit tail, and the
probe's numbers and per-episode returns in every evaluation row of a real run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from om2p_lite.data.synthetic import toy_dataset
from om2p_lite.rl.config import TrainConfig
from om2p_lite.rl.convergence import CriticProbe, convergence, mc_returns
from om2p_lite.rl.train import train

TINY = dict(steps=6, batch_size=16, hidden=16, depth=1, critic_hidden=16, critic_depth=1,
            eval_every=3, eval_episodes=3, eval_max_steps=4, log_every=3, progress=False,
            threads=1)


def test_mc_returns_by_hand() -> None:
    ds = toy_dataset(n_eps=2, T=3)
    ds.rewards[:] = np.array([1.0, 2.0, 3.0, 1.0, 1.0, 1.0])[:, None]
    ds.terminals[5], ds.timeouts[5] = True, False  # the second episode truly ends
    g = 0.5
    plain = mc_returns(ds, g, tail=False)[:, 0]
    assert plain[:3].tolist() == [1 + g * 2 + g * g * 3, 2 + g * 3, 3.0]
    tailed = mc_returns(ds, g, tail_steps=2)[:, 0]  # tail: mean(2, 3) / (1 - γ) = 5
    assert tailed[2] == pytest.approx(3 + g * 5)
    assert tailed[0] == pytest.approx(plain[0] + g ** 3 * 5)
    assert tailed[3:].tolist() == plain[3:].tolist() == [1 + g + g * g, 1 + g, 1.0]
    with pytest.raises(ValueError, match="gamma: must lie in"):
        mc_returns(ds, 1.0)


def test_constant_reward_target_is_the_fixed_point() -> None:
    ds = toy_dataset(n_eps=3, T=25)
    ds.rewards[:] = -2.0
    assert np.allclose(mc_returns(ds, 0.99), -2.0 / (1 - 0.99))
    assert convergence(-100.0, -200.0) == 0.5


@pytest.fixture(scope="module")
def spread():
    from om2p_lite.data.generate import make_dataset

    return make_dataset("spread", "expert", 0, n_transitions=400)[0]


@pytest.mark.parametrize("algo", ["om2p", "td3bc", "bc"])
def test_eval_rows_carry_episodes_and_probe(algo: str, spread, tmp_path: Path) -> None:
    torch.manual_seed(0)
    cfg = TrainConfig(algo=algo, task="spread", out_dir=str(tmp_path), **TINY)
    out = train(cfg, dataset=spread)
    evals = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()
             if json.loads(line)["kind"] == "eval"]
    assert [e["step"] for e in evals] == [0, 3, 6]
    for e in evals:
        assert len(e["returns"]) == 3 and np.mean(e["returns"]) == pytest.approx(e["return"])
        if algo == "bc":
            assert "q_probe" not in e
        else:
            assert np.isfinite([e["q_probe"], e["q_pi_probe"], e["mc_probe"],
                                e["q_err_probe"]]).all()
            assert e["mc_probe"] < 0  # Spread's rewards are negative distances
    assert out["final"]["returns"] == evals[-1]["returns"]
    csv = pd.read_csv(tmp_path / "metrics.csv")
    assert "returns" not in csv.columns and len(csv) > len(evals)


def test_probe_is_the_same_rows_for_every_member(spread) -> None:
    from om2p_lite.rl.agents import dims_of, make_agent

    one, two = CriticProbe(spread, 0.99, 1, "cpu"), CriticProbe(spread, 0.99, 2, "cpu")
    A = spread.obs.shape[1]
    assert torch.equal(two.obs[:, :A], one.obs) and torch.equal(two.obs[:, A:], one.obs)
    cfg = TrainConfig(algo="td3bc", hidden=8, depth=1, critic_hidden=8, critic_depth=1)
    agent = make_agent("td3bc", dims_of(spread), cfg)
    before = [p.clone() for p in agent.parameters()]
    state = torch.get_rng_state()
    row = one.measure(agent)[0]
    assert set(row) == {"q_probe", "q_pi_probe", "mc_probe", "q_err_probe", "mc_rms_probe"}
    assert torch.equal(torch.get_rng_state(), state)  # training's random stream untouched
    assert all(torch.equal(a, b) for a, b in zip(before, agent.parameters(), strict=True))


class _FixedCritic:
    """A stand-in agent whose critic returns a given table of Q values, whatever the input."""

    uses_critic = True

    def __init__(self, q: torch.Tensor) -> None:
        self.q = q  # (B, P·A)

    def act(self, obs: torch.Tensor, gens: list) -> torch.Tensor:
        return torch.zeros(obs.shape[0], obs.shape[1], 1)

    def critic(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return self.q[None]  # one ensemble member


def test_relative_error_reads_where_the_mean_target_is_near_zero(spread) -> None:
    """‖Q − G‖/‖G‖ (eq-q-rel-err): 0 at the fixed point, 1 for a critic that says 0, and
    large for a critic whose mean is right but whose values are not, where the ratio of
    means would call it converged."""
    probe = CriticProbe(spread, 0.99, 2, "cpu")
    g = probe.g.clone()  # (B, 2·A)
    A = g.shape[1] // 2
    exact = probe.measure(_FixedCritic(g))
    assert [r["q_err_probe"] for r in exact] == pytest.approx([0.0, 0.0], abs=1e-6)
    zero = probe.measure(_FixedCritic(torch.zeros_like(g)))
    assert [r["q_err_probe"] for r in zero] == pytest.approx([1.0, 1.0], rel=1e-5)
    # member 0 exact, member 1 a constant at the mean target: its ratio of means is 1
    flat = torch.cat([g[:, :A], torch.full_like(g[:, A:], probe.mc)], 1)
    rows = probe.measure(_FixedCritic(flat))
    assert rows[1]["q_probe"] == pytest.approx(probe.mc, rel=1e-5)
    assert rows[0]["q_err_probe"] < 1e-6 < 0.05 < rows[1]["q_err_probe"]
    assert rows[0]["mc_rms_probe"] == pytest.approx(float(g.square().mean().sqrt()), rel=1e-5)


def test_mc_floor_tells_a_predictable_return_from_chance() -> None:
    """mc_floor: a regression of G on (o, a) reaches a small relative error where the return
    is a function of the last action, and stays near 1 where it is a coin flip; it leaves
    the caller's random stream alone."""
    from om2p_lite.rl.convergence import mc_floor

    ds = toy_dataset(n_eps=600, T=2)  # 1200 rows: 1000 probe rows, 200 to fit on
    ds.rewards[:] = 1.0 + ds.actions[:, :, 0]  # with γ = 0, G = r = 1 + a_0
    torch.manual_seed(7)
    before = torch.rand(1)
    torch.manual_seed(7)
    fit = mc_floor(ds, 0.0, steps=300, hidden=32, size=1000)
    assert torch.rand(1) == before
    ds.rewards[:] = np.random.default_rng(0).choice([0.0, 2.0], size=ds.rewards.shape)
    chance = mc_floor(ds, 0.0, steps=300, hidden=32, size=1000)  # same scale, no function
    assert fit < 0.3 < 0.6 < chance  # chance: 0.71 at best, the error of the mean
    with pytest.raises(ValueError, match="all probe rows"):
        mc_floor(ds, 0.5, steps=1, size=5000)
