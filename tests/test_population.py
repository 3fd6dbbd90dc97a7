"""A population of runs trained as one stacked model is the same thing as the runs trained
one by one: parameters, losses, evaluations and run folders, also across a stop and resume.

Bit-identical on the CPU, not merely close: inside a stacked network every member's rows
are one contiguous block in the forward and the backward pass (``ops.swap_axes``), so
member m's matrix products, bias-gradient sums and Adam steps run the same kernels on the
same numbers as in a network of its own; losses are per-agent vectors whose sum couples
nothing (its gradient is 1 for every term).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from om2p_lite.rl.config import TrainConfig
from om2p_lite.rl.population import (
    PER_MEMBER_FIELDS,
    join_members,
    population_key,
    split_members,
)
from om2p_lite.rl.rundir import NonFiniteError
from om2p_lite.rl.train import train, train_population
from om2p_lite.runtime.record import portable_config

BASE = TrainConfig(steps=6, batch_size=16, hidden=32, depth=2, critic_hidden=32,
                   critic_depth=2, eval_every=3, eval_episodes=2, eval_max_steps=5,
                   log_every=1, progress=False, threads=1)
# four members: their own seeds, η (one without the Q term), Δr, estimator, ξ and pairing
MEMBERS = [dict(seed=0, eta=1.0, dr=1e-3, estimator="fd"),
           dict(seed=1, eta=0.0, dr=1e-2, estimator="fd", xi="uniform"),
           dict(seed=2, eta=0.5, estimator="zero", pairing="independent"),
           dict(seed=3, eta=2.0, dr=1e-2, estimator="fd", xi="2,2,0,0", q_norm=False)]


@pytest.fixture(scope="module")
def spread():
    from om2p_lite.data.generate import make_dataset

    return make_dataset("spread", "expert", 0, n_transitions=500)[0]


def configs(root: Path, **extra) -> list[TrainConfig]:
    return [dataclasses.replace(BASE, out_dir=str(root / f"m{i}"), **m, **extra)
            for i, m in enumerate(MEMBERS)]


def rows(folder: str | Path) -> list[dict]:
    """log.jsonl without the wall clock."""
    lines = (Path(folder) / "log.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(x).items() if k != "wall_s"} for x in lines]


# the critic probe runs the stacked networks on 4096 rows, where matmul kernels
# may round differently with the population's size: equal to float32 rounding, not bits
PROBE_FIELDS = ("q_probe", "q_pi_probe", "q_err_probe")


def assert_same_run(a: dict, b: dict) -> None:
    for (name, p), q in zip(a["agent"].state_dict().items(),
                            b["agent"].state_dict().values(), strict=True):
        assert torch.equal(p, q), name
    ra, rb = rows(a["config"]["out_dir"]), rows(b["config"]["out_dir"])
    exact = [[{k: v for k, v in r.items() if k not in PROBE_FIELDS} for r in x]
             for x in (ra, rb)]
    assert exact[0] == exact[1]
    for x, y in zip(ra, rb, strict=True):
        for k in set(PROBE_FIELDS) & (x.keys() | y.keys()):
            assert x.get(k) == pytest.approx(y.get(k), rel=1e-5), k
    assert a["last_logs"] == b["last_logs"]


@pytest.fixture(scope="module")
def alone(spread, tmp_path_factory) -> list[dict]:
    """Each member's configuration trained as a run of its own."""
    root = tmp_path_factory.mktemp("alone")
    return [train(cfg, dataset=spread) for cfg in configs(root)]


def test_population_equals_separate_runs(spread, alone, tmp_path: Path) -> None:
    cfgs = configs(tmp_path)
    assert len({population_key(c) for c in cfgs}) == 1
    together = train_population(cfgs, dataset=spread)
    for a, b in zip(alone, together, strict=True):
        assert b["population"] == len(MEMBERS) and a["population"] == 1
        assert_same_run(a, b)
        assert a["evals"] and [{k: v for k, v in e.items() if k != "wall_s"}
                               for e in a["evals"]] == \
            [{k: v for k, v in e.items() if k != "wall_s"} for e in b["evals"]]
        assert "du_dr_zero_frac" in a["last_logs"]
        folder = Path(b["config"]["out_dir"])
        for name in ("config.json", "log.jsonl", "metrics.csv", "checkpoint.pt"):
            assert (folder / name).is_file(), name
        written = json.loads((folder / "config.json").read_text())
        assert written == portable_config(b["config"])  # no path of this machine
        assert written["out_dir"] == folder.name and folder.is_absolute()
    assert "q_loss" in together[0]["last_logs"] and "q_loss" not in together[1]["last_logs"]
    assert together[2]["last_logs"]["du_dr_zero_frac"] == 1.0  # the zero estimator
    assert together[0]["last_logs"]["du_dr_zero_frac"] < 1.0
    # the members really differ (the test would pass vacuously otherwise)
    p0, p1 = (together[i]["agent"].actor.net.net[0].weight for i in (0, 1))
    assert not torch.equal(p0, p1)


def test_population_resumes_bit_identically(spread, alone, tmp_path: Path) -> None:
    first = train_population(configs(tmp_path, stop_at=4), dataset=spread)
    assert not any(s["finished"] for s in first)
    resumed = train_population(configs(tmp_path), dataset=spread)
    for a, b in zip(alone, resumed, strict=True):
        assert b["finished"]
        assert_same_run(a, b)


def test_members_at_different_steps_train_as_successive_populations(spread, alone,
                                                                   tmp_path: Path) -> None:
    cfgs = configs(tmp_path)
    train(dataclasses.replace(cfgs[1], stop_at=2), dataset=spread)
    train(dataclasses.replace(cfgs[3], stop_at=2), dataset=spread)
    together = train_population(cfgs, dataset=spread)
    for a, b in zip(alone, together, strict=True):
        assert_same_run(a, b)
    assert [s["population"] for s in together] == [2, 2, 2, 2]


def test_population_key_separates_code_paths_and_shared_settings(spread, monkeypatch) -> None:
    assert {"seed", "eta", "dr", "xi", "estimator", "pairing", "q_norm", "out_dir"} <= \
        set(PER_MEMBER_FIELDS)
    fd = population_key(BASE)
    assert population_key(dataclasses.replace(BASE, estimator="zero", seed=5, eta=0.1)) == fd
    assert population_key(dataclasses.replace(BASE, estimator="jvp")) != fd
    assert population_key(dataclasses.replace(BASE, sample_steps=2)) != fd
    assert population_key(dataclasses.replace(BASE, lr=1e-2)) != fd
    # an algorithm whose draws bypass Agent.randn keeps every run alone
    from om2p_lite.rl.agents import OM2PAgent

    monkeypatch.setattr(OM2PAgent, "member_streams", False)
    assert population_key(BASE) != population_key(dataclasses.replace(BASE, seed=1))
    monkeypatch.undo()
    with pytest.raises(ValueError, match="lr"):
        train_population([BASE, dataclasses.replace(BASE, seed=1, lr=1e-2)], dataset=spread)
    with pytest.raises(ValueError, match="out_dir"):
        train_population([dataclasses.replace(BASE, out_dir="x"),
                          dataclasses.replace(BASE, seed=1, out_dir="x")], dataset=spread)


def test_join_and_split_members_are_inverse() -> None:
    parts = [torch.randn(2 * 3, 4) for _ in range(5)]  # (k·A, ·) with k = 2 critics, A = 3
    joined = join_members(parts, 3)
    assert joined.shape == (2 * 5 * 3, 4)
    # layout (critic, member, agent): member 1's agent 2 of critic 1
    assert torch.equal(joined[1 * 15 + 1 * 3 + 2], parts[1][1 * 3 + 2])
    for a, b in zip(parts, split_members(joined, 5, 3), strict=True):
        assert torch.equal(a, b)


def test_a_diverging_member_fails_alone_and_says_why(spread, tmp_path: Path) -> None:
    good, bad = (dataclasses.replace(BASE, seed=s, out_dir=str(tmp_path / f"m{s}"), eval_every=0,
                                     eval_episodes=0, **kw)
                 for s, kw in ((0, {}), (1, {"eta": 3e38})))  # η·∇Q overflows float32
    with pytest.raises(NonFiniteError, match=r"step \d+.*m1.*η = 3e\+38") as err:
        train_population([good, bad], dataset=spread)
    assert err.value.members == [1]
    status = json.loads((tmp_path / "m1" / "status.json").read_text())
    assert status["status"] == "failed" and status["step"] == err.value.step
    assert not (tmp_path / "m0" / "status.json").exists()
    # the healthy member kept its work: it resumes alone from the failure step and finishes
    alone = train(good, dataset=spread)
    assert alone["finished"] and rows(good.out_dir)[-1]["step"] == BASE.steps


def test_a_diverging_run_stops_with_status_failed(spread, tmp_path: Path) -> None:
    cfg = dataclasses.replace(BASE, lr=1e30, out_dir=str(tmp_path / "run"), eval_every=0)
    with pytest.raises(NonFiniteError, match=r"learning rate \(lr = 1e\+30\)"):
        train(cfg, dataset=spread)
    status = json.loads((tmp_path / "run" / "status.json").read_text())
    assert status["status"] == "failed" and "non-finite" in status["error"]
    assert not (tmp_path / "run" / "checkpoint.pt").exists()  # nothing non-finite is kept


def test_optimiser_and_polyak_steps_do_not_depend_on_where_an_element_sits() -> None:
    """An element of a long tensor (a vectorised chunk) and the same element alone (the
    scalar path) get the same Adam and Polyak steps: what a member relies on, whose slice
    of a stacked tensor sits elsewhere than in its own run's. (The fused CPU Adam kernel
    fails this: its scalar tail rounds differently; that is why agents use ``foreach``.)"""
    from om2p_lite.rl.agents.base import make_adam
    from om2p_lite.rl.critics import polyak_update

    g = torch.Generator().manual_seed(0)
    n = 512
    whole = torch.nn.Parameter(torch.randn(n, 1, generator=g))
    alone = [torch.nn.Parameter(whole.detach()[i:i + 1].clone()) for i in range(n)]
    opt_whole, opt_alone = make_adam([whole], 3e-4), make_adam(alone, 3e-4)
    for _ in range(4):
        grad = torch.randn(n, 1, generator=g) * 1e-2
        whole.grad = grad.clone()
        for i, p in enumerate(alone):
            p.grad = grad[i:i + 1].clone()
        opt_whole.step()
        opt_alone.step()
    assert all(torch.equal(p.detach(), whole.detach()[i:i + 1]) for i, p in enumerate(alone))
    target = torch.nn.Linear(n, 1, bias=False)
    source = torch.nn.Linear(n, 1, bias=False)
    lone_t, lone_s = torch.nn.Linear(1, 1, bias=False), torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        lone_t.weight.copy_(target.weight[:, -1:])
        lone_s.weight.copy_(source.weight[:, -1:])
    polyak_update(target, source, 0.005)
    polyak_update(lone_t, lone_s, 0.005)
    assert torch.equal(lone_t.weight, target.weight[:, -1:])
