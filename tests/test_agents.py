"""Every algorithm trains one step on every task; agents learn independently; critic pieces
do what their equations say."""

from __future__ import annotations

import dataclasses
import math

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
        assert logs and all(np.isfinite(np.asarray(v, dtype=float)).all()
                            for v in logs.values()), (algo, logs)
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


def test_first_critic_alone_is_the_ensembles_first_and_costs_its_share_only() -> None:
    """critic(o, a, n_q=1) is exactly Q_1 of the full pass (TD3's and OMAR's actor read it);
    the other critics get no gradient, and an n_q outside 1..n_q is a clear error."""
    critic = StackedCritic(3, 6, 2, 16, 2, n_q=3)
    o, a = torch.randn(4, 5, 3, 6), torch.randn(4, 5, 3, 2)
    full = critic(o, a)
    assert full.shape == (3, 4, 5, 3)
    for k in (1, 2):
        assert torch.equal(critic(o, a, n_q=k), full[:k])
    critic(o, a, n_q=1).sum().backward()
    w = critic.net.net[0].weight.grad.view(3, 3, *critic.net.net[0].weight.shape[1:])
    assert w[0].abs().sum() > 0 and not w[1:].any()  # (critic, agent) members
    with pytest.raises(ValueError, match="n_q must be in 1..3, got 4"):
        critic(o, a, n_q=4)


def test_q_loss_without_normalisation_is_minus_mean_q():
    from om2p_lite.rl.critics import normalised_q_loss

    q = torch.tensor([[1.0, -4.0], [3.0, 2.0]])  # (B=2, A=2)
    assert torch.allclose(normalised_q_loss(q, normalise=False), torch.tensor(-2.0 - -1.0))
    assert torch.allclose(normalised_q_loss(q), torch.tensor(-2.0 / 2.0 - (-1.0 / 3.0)))


def test_pairing_is_validated_and_reaches_the_agent():
    with pytest.raises(ValueError, match="pairing"):
        TrainConfig(pairing="shuffled").validate()
    assert TrainConfig(pairing="independent").validate().pairing == "independent"


# --- the baselines as their papers define them, each against a hand computation ----------

DIMS = AgentDims(2, 3, 2, (2, 1))  # agent 1 has one real action dim (the other is padding)
OBS = torch.zeros(2, 2, 3)  # (B, A, D); the fixed critic below ignores observations
A_PI = torch.tensor([[[0.5, -0.5], [0.2, 0.9]], [[-1.0, 0.0], [0.4, 0.3]]])  # (B, A, d)
DATA = torch.tensor([[[0.5, 0.5], [0.0, 0.0]], [[0.0, 0.0], [1.0, 0.0]]])


class FixedQ(torch.nn.Module):
    """Q_j(o, a) = (j + 1) · (Σ_d a + 1) for critics j < n_q: (n_q, ..., A)."""

    def __init__(self, n_q: int = 2):
        super().__init__()
        self.n_q = n_q

    def forward(self, o: torch.Tensor, a: torch.Tensor, n_q: int | None = None,
                ) -> torch.Tensor:
        base = a.sum(-1) + 1.0
        return torch.stack([(j + 1) * base for j in range(n_q or self.n_q)])


def _q0(row: list[float]) -> float:
    """The first critic of ``FixedQ`` by hand."""
    return sum(row) + 1.0


def _fixed_agent(algo: str, **kw):
    agent = make_agent(algo, DIMS, _cfg(algo=algo, **kw))
    agent.critic = FixedQ()
    agent.policy = lambda obs, eps=None: A_PI.clone()
    return agent


def _real(i: int) -> int:
    return DIMS.act_dims[i]


def test_td3bc_actor_loss_is_the_papers_with_mse_over_action_dims() -> None:
    """L = Σ_i [-λ_i mean_b Q + mean_b mean_{real d} (π - a)²], λ_i = α / mean_b |Q|."""
    alpha = 2.5
    agent = _fixed_agent("td3bc", alpha=alpha)
    loss, logs = agent.actor_loss({"obs": OBS, "actions": DATA})
    want = 0.0
    for i in range(2):
        q = [_q0(A_PI[b, i, :_real(i)].tolist()) for b in range(2)]
        lam = alpha / (sum(abs(x) for x in q) / 2)
        bc = sum(sum((A_PI[b, i, k].item() - DATA[b, i, k].item()) ** 2
                     for k in range(_real(i))) / _real(i) for b in range(2)) / 2
        want += -lam * sum(q) / 2 + bc
    assert loss.item() == pytest.approx(want, rel=1e-6)
    assert logs["bc_loss"].shape == (2,)


def test_importance_logsumexp_estimates_the_log_integral_of_exp_q() -> None:
    from om2p_lite.rl.agents.cql import importance_logsumexp

    d = 3
    log_unif = d * math.log(0.5)  # U[-1, 1]^d
    q = torch.full((1, 7, 1), 2.0)  # Q = 2 everywhere: log ∫ exp Q = 2 + d log 2
    got = importance_logsumexp(q, torch.full((7, 1), log_unif))
    assert got.item() == pytest.approx(2.0 + d * math.log(2.0), rel=1e-6)
    w = torch.tensor([0.5, -1.0, 2.0])  # Q(a) = w·a: log ∫ = Σ_d log(2 sinh(w_d) / w_d)
    a = torch.rand(200_000, d, generator=torch.Generator().manual_seed(0)) * 2 - 1
    got = importance_logsumexp((a @ w)[None, :, None], torch.full((200_000, 1), log_unif))
    exact = sum(math.log(2 * math.sinh(x) / x) for x in w.tolist())
    assert got.item() == pytest.approx(exact, abs=0.02)


def test_cql_regulariser_is_the_importance_corrected_logsumexp() -> None:
    """CQL(H): log 1/(2n) [Σ_unif exp(Q - log 0.5^d_i) + Σ_π exp(Q - log N(σε; 0, σ²))]."""
    n, sigma, cql_alpha = 2, 0.5, 1.5
    agent = _fixed_agent("cql", cql_samples=n, policy_noise=sigma, cql_alpha=cql_alpha)
    gen = torch.Generator().manual_seed(3)
    U = torch.rand(n, 2, 2, 2, generator=gen)  # (n, B, A, d)
    E = torch.randn(n, 2, 2, 2, generator=gen)
    agent.rand = lambda *shape, agent_dim=-2, generator=None: U.clone()
    agent.randn = lambda *shape, agent_dim=-2, generator=None: E.clone()
    q_data = FixedQ()(OBS, DATA)  # (n_q, B, A)
    reg, logs = agent.critic_regulariser({"obs": OBS, "actions": DATA}, q_data)
    want = 0.0
    log_norm = math.log(sigma * math.sqrt(2 * math.pi))
    for j in range(2):
        for i in range(2):
            gaps = []
            for b in range(2):
                terms = []
                for k in range(n):
                    a = [2 * U[k, b, i, m].item() - 1 for m in range(_real(i))]
                    terms.append((j + 1) * _q0(a) - _real(i) * math.log(0.5))
                for k in range(n):
                    e = [E[k, b, i, m].item() for m in range(_real(i))]
                    a = [min(1.0, max(-1.0, A_PI[b, i, m].item() + sigma * e[m]))
                         for m in range(_real(i))]
                    log_mu = sum(-x * x / 2 - log_norm for x in e)
                    terms.append((j + 1) * _q0(a) - log_mu)
                lse = math.log(sum(math.exp(t) for t in terms) / (2 * n))
                gaps.append(lse - q_data[j, b, i].item())
            want += sum(gaps) / 2
    assert reg.item() == pytest.approx(cql_alpha * want, rel=1e-5)
    assert logs["cql_gap"].shape == (2,)


def test_omar_search_is_global_with_a_softmax_weighted_update() -> None:
    """μ0 = 0, σ0 = omar_sigma; μ ← Σ softmax(Q) a, σ ← RMS spread; best of the last round."""
    n, iters, sigma0 = 3, 2, 2.0
    agent = _fixed_agent("omar", omar_samples=n, omar_iters=iters, omar_sigma=sigma0,
                         omar_elites=0)
    gen = torch.Generator().manual_seed(4)
    draws = [torch.randn(n, 2, 2, 2, generator=gen) for _ in range(iters)]
    queue = list(draws)
    agent.randn = lambda *shape, agent_dim=-2, generator=None: queue.pop(0).clone()
    a_best, q_best = agent.search(OBS)
    assert not queue  # one draw per iteration
    for b in range(2):
        for i in range(2):
            d = 2  # padding dims are searched too, but masked to 0
            mask = [1.0 if m < _real(i) else 0.0 for m in range(d)]
            mu, sig = [0.0] * d, [sigma0] * d
            for it in range(iters):
                cand = [[min(1.0, max(-1.0, mu[m] + sig[m] * draws[it][k, b, i, m].item()))
                         * mask[m] for m in range(d)] for k in range(n)]
                q = [_q0(c) for c in cand]
                z = sum(math.exp(x - max(q)) for x in q)
                w = [math.exp(x - max(q)) / z for x in q]
                mu = [sum(w[k] * cand[k][m] for k in range(n)) for m in range(d)]
                sig = [math.sqrt(sum((cand[k][m] - mu[m]) ** 2 for k in range(n)) / n)
                       for m in range(d)]
            k_best = max(range(n), key=lambda k: q[k])
            assert a_best[b, i].tolist() == pytest.approx(cand[k_best], abs=1e-6)
            assert q_best[b, i].item() == pytest.approx(q[k_best], abs=1e-6)


def test_omar_actor_loss_pulls_with_the_mse_over_action_dims() -> None:
    """L = Σ_i mean_b [(1 - c)(-Q) + c mean_{real d} (π - â)²], â the better of π and search."""
    c = 0.7
    agent = _fixed_agent("omar", omar_coef=c)
    a_search = torch.tensor([[[1.0, 1.0], [-1.0, 0.0]], [[0.0, 0.5], [0.9, 0.0]]])
    q_search = torch.tensor([[10.0, -10.0], [10.0, 10.0]])  # better, worse; better, better
    agent.search = lambda obs: (a_search, q_search)
    loss, _ = agent.actor_loss({"obs": OBS, "actions": DATA})
    want = 0.0
    for i in range(2):
        per_b = []
        for b in range(2):
            pi = [A_PI[b, i, m].item() for m in range(_real(i))]
            q = _q0(pi)
            hat = [a_search[b, i, m].item() for m in range(_real(i))] \
                if q_search[b, i].item() > q else pi
            pull = sum((x - y) ** 2 for x, y in zip(pi, hat, strict=True)) / _real(i)
            per_b.append((1 - c) * -q + c * pull)
        want += sum(per_b) / 2
    assert loss.item() == pytest.approx(want, rel=1e-6)


@pytest.mark.parametrize("algo", ["bc", "td3bc", "cql", "omar", "flowq", "diffusionq"])
def test_baselines_draw_every_random_number_from_the_agent(algo: str) -> None:
    """With randn/rand on a private stream, an update leaves torch's global RNG untouched."""
    agent = make_agent(algo, AgentDims(3, 6, 2, (2, 2, 1)), _cfg(algo=algo))
    private = torch.Generator().manual_seed(0)
    agent.randn = lambda *shape, agent_dim=-2, generator=None: torch.randn(
        shape, generator=generator or private)
    agent.rand = lambda *shape, agent_dim=-2, generator=None: torch.rand(
        shape, generator=generator or private)
    batch = {k: v[:16] for k, v in synthetic("spread", d=2).batch(np.arange(64)).items()}
    state = torch.get_rng_state()
    for _ in range(2):  # the second update also steps the delayed actors
        agent.update(batch)
    assert torch.equal(torch.get_rng_state(), state)
    if algo != "bc":
        assert not torch.equal(private.get_state(), torch.Generator().manual_seed(0)
                               .get_state())


@pytest.mark.parametrize("algo", ALGORITHMS)
def test_evaluation_actions_repeat_for_one_generator_seed(algo: str) -> None:
    """act(obs, generator) depends on the generator only, never on torch's global RNG."""
    cfg = _cfg(algo=algo, diffusion_steps=4, flow_steps=3)
    torch.manual_seed(0)
    agent = make_agent(algo, AgentDims(3, 6, 2, (2, 2, 2)), cfg)
    obs = torch.randn(5, 3, 6)
    torch.manual_seed(1)
    a1 = agent.act(obs, torch.Generator().manual_seed(7))
    torch.manual_seed(2)
    a2 = agent.act(obs, torch.Generator().manual_seed(7))
    assert torch.equal(a1, a2)
    if algo in ("om2p", "om2p-official", "flowq", "diffusionq"):  # stochastic: seed matters
        assert not torch.equal(a1, agent.act(obs, torch.Generator().manual_seed(8)))


@pytest.mark.parametrize("algo", ["bc", "td3bc", "td3", "cql", "omar", "flowq", "diffusionq",
                                  "om2p-official"])
def test_baseline_population_equals_its_runs_alone(algo: str, task_data, tmp_path) -> None:
    """Members stacked along the agent axis (P·A) compute what their own runs compute:
    per-agent operations only, every draw from the member's own stream."""
    from om2p_lite.rl.population import population_key
    from om2p_lite.rl.train import train_population

    base = _cfg(algo=algo, quality="random", steps=4, eval_episodes=0, log_every=1,
                threads=1)
    cfgs = [dataclasses.replace(base, seed=s, eta=e, out_dir=str(tmp_path / f"m{s}"))
            for s, e in ((0, 1.0), (1, 0.5))]
    assert population_key(cfgs[0]) == population_key(cfgs[1])  # they do share a population
    together = train_population(cfgs, dataset=task_data["spread"])
    assert [s["population"] for s in together] == [2, 2]
    for cfg, b in zip(cfgs, together, strict=True):
        a = train(dataclasses.replace(cfg, out_dir=str(tmp_path / f"alone{cfg.seed}")),
                  dataset=task_data["spread"])
        for (name, p), q in zip(a["agent"].state_dict().items(),
                                b["agent"].state_dict().values(), strict=True):
            assert torch.equal(p, q), (algo, name)
        assert a["last_logs"] == b["last_logs"]


# which algorithms read each field that only some read, as rl.config.FIELD_READERS said before
# the table moved into the agents' ``reads`` (an agent's new field must be added here too)
_CRITICS = {"om2p", "om2p-official", "td3bc", "td3", "cql", "omar", "flowq", "diffusionq"}
_SMOOTHED = {"td3bc", "td3", "cql", "omar"}
EXPECTED_READERS = {
    **dict.fromkeys(("critic_hidden", "critic_depth", "n_q", "gamma", "tau"), _CRITICS),
    **dict.fromkeys(("eta", "q_norm"), {"om2p", "flowq", "diffusionq"}),
    **dict.fromkeys(("xi", "ratio", "pairing", "estimator", "dr", "adaptive_p",
                     "sample_steps"), {"om2p"}),
    "flow_steps": {"flowq"}, "diffusion_steps": {"diffusionq"}, "alpha": {"td3bc"},
    **dict.fromkeys(("policy_noise", "noise_clip"), _SMOOTHED),
    **dict.fromkeys(("cql_alpha", "cql_samples"), {"cql", "omar"}),
    **dict.fromkeys(("omar_coef", "omar_iters", "omar_samples", "omar_elites", "omar_sigma"),
                    {"omar"}),
}


def test_field_readers_come_from_the_agents_reads() -> None:
    """The agents' ``reads`` add up to the table the scheduler's stale check used, and name
    only TrainConfig fields; ``unread_fields`` is its complement per algorithm."""
    from om2p_lite.rl.agents import AGENTS, field_readers, unread_fields

    assert field_readers() == EXPECTED_READERS
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    for algo, cls in AGENTS.items():
        assert cls.reads <= names, algo
        assert unread_fields(algo) == {k for k, v in EXPECTED_READERS.items()
                                       if algo not in v}, algo


# a value other than TINY's or the default for every field some algorithm does not read
OTHER_VALUES = {"critic_hidden": 8, "critic_depth": 2, "n_q": 3, "gamma": 0.5, "tau": 0.3,
                "eta": 3.0, "q_norm": False, "xi": "beta55", "ratio": 0.9,
                "pairing": "independent", "estimator": "jvp", "dr": 1e-2, "adaptive_p": 0.5,
                "sample_steps": 4, "flow_steps": 3, "diffusion_steps": 3, "alpha": 1.0,
                "policy_noise": 0.4, "noise_clip": 0.1, "cql_alpha": 3.0, "cql_samples": 3,
                "omar_coef": 0.3, "omar_iters": 2, "omar_samples": 5, "omar_elites": 3,
                "omar_sigma": 1.0}


def _two_updates(algo: str, **fields) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """An agent's state after two updates on a fixed batch, and its seeded actions."""
    batch = {k: v[:16] for k, v in synthetic("spread").batch(np.arange(64)).items()}
    torch.manual_seed(0)
    agent = make_agent(algo, AgentDims(3, 6, 2, (2, 2, 2)), _cfg(algo=algo, **fields))
    for _ in range(2):
        agent.update(batch)
    return agent.state_dict(), agent.act(batch["obs"], torch.Generator().manual_seed(3))


def _same(a: tuple[dict[str, torch.Tensor], torch.Tensor],
          b: tuple[dict[str, torch.Tensor], torch.Tensor]) -> bool:
    return a[0].keys() == b[0].keys() and torch.equal(a[1], b[1]) and all(
        a[0][k].shape == b[0][k].shape and torch.equal(a[0][k], b[0][k]) for k in a[0])


@pytest.mark.parametrize("algo", ALGORITHMS)
def test_field_readers_name_exactly_the_fields_each_algorithm_reads(algo: str) -> None:
    """An algorithm trains and acts bit-identically whatever the fields it is not listed as
    reading hold (so the grid may keep its stored results when one of them changes,
    rl.scheduler.stale_fields), and each field it is listed as reading changes it."""
    from om2p_lite.rl.agents import field_readers, unread_fields

    assert set(OTHER_VALUES) == set(field_readers())
    base = _two_updates(algo)
    unread = {k: v for k, v in OTHER_VALUES.items() if k in unread_fields(algo)}
    assert _same(base, _two_updates(algo, **unread)), sorted(unread)
    for k in sorted(set(OTHER_VALUES) - set(unread)):
        assert not _same(base, _two_updates(algo, **{k: OTHER_VALUES[k]})), k
