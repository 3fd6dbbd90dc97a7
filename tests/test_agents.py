"""Every algorithm trains one step on every task; agents learn independently; critic pieces
do what their equations say."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from om2p_lite.data import OfflineDataset
from om2p_lite.rl.agents import ALGORITHMS, AgentDims, make_agent
from om2p_lite.rl.config import TrainConfig
from om2p_lite.rl.critics import (
    StackedCritic,
    critic_loss,
    make_target,
    normalised_q_loss,
    polyak_update,
    td_target,
)
from om2p_lite.rl.train import train

TINY = dict(steps=2, batch_size=8, hidden=16, depth=1, critic_hidden=16, critic_depth=1,
            cql_samples=2, omar_samples=4, omar_elites=2, flow_steps=2, diffusion_steps=2,
            eval_every=0, eval_episodes=2, eval_max_steps=2, log_every=1, progress=False)


pytestmark = pytest.mark.usefixtures("one_thread")


def synthetic(task: str, n: int = 64, A: int = 3, D: int = 6, d: int = 2,
              seed: int = 0) -> OfflineDataset:
    """A random dataset with the documented fields (no environment needed)."""
    g = np.random.default_rng(seed)
    ends = np.arange(n) % 8 == 7
    return OfflineDataset(
        obs=g.normal(size=(n, A, D)).astype(np.float32),
        actions=g.uniform(-1, 1, (n, A, d)).astype(np.float32),
        rewards=g.normal(size=(n, A)).astype(np.float32),
        next_obs=g.normal(size=(n, A, D)).astype(np.float32),
        terminals=np.zeros(n, bool), timeouts=ends, episode_starts=np.roll(ends, 1),
        metadata={"task": task, "quality": "random", "act_dims": [d] * A})


@pytest.fixture(scope="module")
def task_data() -> dict[str, OfflineDataset]:
    """Tiny real datasets (random behaviour) for each task, from the library's generator."""
    from om2p_lite.data.generate import make_dataset

    out = {}
    for task in ("spread", "tag", "world", "halfcheetah"):
        n = 1000 if task == "halfcheetah" else 50
        out[task], _ = make_dataset(task, "random", 0, n_transitions=n)
    return out


@pytest.mark.parametrize("task", ["spread", "tag", "world", "halfcheetah"])
def test_every_algorithm_smoke_step_on_every_task(task: str, task_data) -> None:
    ds = task_data[task]
    for algo in ALGORITHMS:
        cfg = TrainConfig(algo=algo, task=task, quality="random", **TINY)
        summary = train(cfg, dataset=ds)
        logs = summary["last_logs"]
        assert logs and all(np.isfinite(v) for v in logs.values()), (algo, logs)
        assert np.isfinite(summary["final"]["return"]), algo
        act = summary["agent"].act(torch.as_tensor(ds.obs[:5]))
        assert act.shape == ds.actions[:5].shape and act.abs().max() <= 1


def _cfg(**kw) -> TrainConfig:
    return dataclasses.replace(TrainConfig(**TINY), **kw)


@pytest.mark.parametrize("algo", ALGORITHMS)
def test_agents_are_independent_learners(algo: str) -> None:
    """Changing agent 0's data never changes agent 1's or 2's parameters after an update."""
    ds = synthetic("spread")
    batch = {k: v[:16] for k, v in ds.batch(np.arange(64)).items()}
    other = {k: v.clone() for k, v in batch.items()}
    other["obs"][:, 0] += 1.0
    other["actions"][:, 0] = -other["actions"][:, 0]
    other["rewards"][:, 0] += 5.0
    dims = AgentDims(3, 6, 2, (2, 2, 2))
    states = []
    for b in (batch, other):
        torch.manual_seed(0)
        agent = make_agent(algo, dims, _cfg(algo=algo))
        for _ in range(2):
            agent.update(b)
        states.append(agent.state_dict())
    changed_0 = False
    for name, p in states[0].items():
        q = states[1][name]
        if p.dim() >= 1 and p.shape[0] == 3 and "act_mask" not in name:
            torch.testing.assert_close(p[1:], q[1:], rtol=0, atol=0, msg=name)
            changed_0 |= not torch.equal(p[0], q[0])
        elif p.dim() >= 1 and p.shape[0] == 6:  # critic ensemble: members are (q, agent)
            pq, qq = p.view(2, 3, *p.shape[1:]), q.view(2, 3, *q.shape[1:])
            torch.testing.assert_close(pq[:, 1:], qq[:, 1:], rtol=0, atol=0, msg=name)
    assert changed_0


def test_td_target_bootstraps_unless_terminal() -> None:
    q_next = torch.tensor([[[1.0, 2.0]], [[3.0, 4.0]]])  # (n_q=2, B=1, A=2)
    r = torch.tensor([[0.5, 0.5]])
    y = td_target(q_next, r, torch.zeros(1), gamma=0.9)
    torch.testing.assert_close(y, torch.tensor([[0.5 + 0.9 * 2.0, 0.5 + 0.9 * 3.0]]))
    y_min = td_target(q_next, r, torch.zeros(1), gamma=0.9, reduce="min")
    torch.testing.assert_close(y_min, torch.tensor([[0.5 + 0.9, 0.5 + 1.8]]))
    torch.testing.assert_close(td_target(q_next, r, torch.ones(1), 0.9), r)
    # timeouts are not dones: the dataset's batch() marks terminals only
    ds = synthetic("spread")
    assert ds.batch(np.flatnonzero(ds.timeouts))["dones"].sum() == 0


def test_critic_shapes_polyak_and_normalised_q() -> None:
    critic = StackedCritic(3, 6, 2, 16, 2)
    q = critic(torch.randn(5, 3, 6), torch.randn(5, 3, 2))
    assert q.shape == (2, 5, 3)
    assert critic_loss(q, torch.zeros(5, 3)) > 0
    target = make_target(critic)
    with torch.no_grad():
        for p in critic.parameters():
            p.add_(1.0)
    before = [p.clone() for p in target.parameters()]
    polyak_update(target, critic, 0.1)
    for b, t, p in zip(before, target.parameters(), critic.parameters(), strict=True):
        torch.testing.assert_close(t, 0.9 * b + 0.1 * p)
    qv = torch.tensor([[-2.0, 4.0], [-4.0, 8.0]], requires_grad=True)  # (B=2, A=2)
    loss = normalised_q_loss(qv)
    torch.testing.assert_close(loss, torch.tensor(1.0 - 1.0))
    loss.backward()
    assert (qv.grad < 0).all()  # minimising the loss raises Q


def test_q_loss_without_normalisation_is_minus_mean_q():
    from om2p_lite.rl.critics import normalised_q_loss

    q = torch.tensor([[1.0, -4.0], [3.0, 2.0]])  # (B=2, A=2)
    assert torch.allclose(normalised_q_loss(q, normalise=False), torch.tensor(-2.0 - -1.0))
    assert torch.allclose(normalised_q_loss(q), torch.tensor(-2.0 / 2.0 - (-1.0 / 3.0)))


def test_pairing_is_validated_and_reaches_the_agent():
    with pytest.raises(ValueError, match="pairing"):
        TrainConfig(pairing="shuffled").validate()
    assert TrainConfig(pairing="independent").validate().pairing == "independent"
