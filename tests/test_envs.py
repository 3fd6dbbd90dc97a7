"""Environments, the vector runner, scripted behaviour and the online TD3 behaviour driver."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from om2p_lite.data.behaviour import NoisyPolicy, RandomPolicy, ScriptedPolicy
from om2p_lite.envs import VecEnv, make_env, team_score
from om2p_lite.envs.scripted import tag_prey_policy, world_prey_policy

pytest.importorskip("mpe2")


@pytest.mark.parametrize("task,obs_dim,score", [("spread", 18, "mean"), ("tag", 16, "first"),
                                               ("world", 28, "first")])
def test_mpe_specs(task: str, obs_dim: int, score: str) -> None:
    """The default action is the paper's 2-d force; mpe2's 5-d one is a layout away."""
    for env, width in ((make_env(task), 2), (make_env(task, action_layout="force-xy"), 2),
                       (make_env(task, action_layout="mpe2"), 5)):
        s = env.spec
        assert s.n_agents == 3 and s.obs_dims == (obs_dim,) * 3 and s.act_dims == (width,) * 3
        assert s.episode_length == 25 and s.score == score
        assert s.action_layout == {2: "force-xy", 5: "mpe2"}[width]
        assert env.reset(seed=0).shape == (3, obs_dim)
    with pytest.raises(ValueError, match="action_layout: unknown 'xy'. Fix: use one of"):
        make_env(task, action_layout="xy")


@pytest.mark.parametrize("task", ["spread", "tag", "world", "spread4"])
def test_both_layouts_step_the_world_identically(task: str) -> None:
    """A 2-d force (x, y) reaches the physics exactly as the 5-d action [0, -x, x, -y, y]:
    the same next positions and velocities of every entity (the prey's too), the same
    observations and rewards, step after step, forces beyond the box clipped alike."""
    from om2p_lite.data.npy_io import force_xy_to_mpe

    xy_env, five_env = make_env(task), make_env(task, action_layout="mpe2")
    obs_xy, obs_5 = xy_env.reset(seed=3), five_env.reset(seed=3)
    rng = np.random.default_rng(1)
    n = xy_env.spec.n_agents
    moved = 0.0
    for _ in range(25):
        np.testing.assert_array_equal(obs_xy, obs_5)
        xy = rng.uniform(-1.3, 1.3, (n, 2)).astype(np.float32)
        five = force_xy_to_mpe(np.clip(xy, -1, 1))  # the same force in mpe2's layout
        before = xy_env.render_positions()["learners"]
        obs_xy, r_xy, _, t_xy = xy_env.step(xy)
        obs_5, r_5, _, t_5 = five_env.step(five)
        for a, b in zip(xy_env.raw.world.agents, five_env.raw.world.agents, strict=True):
            np.testing.assert_array_equal(a.state.p_pos, b.state.p_pos)
            np.testing.assert_array_equal(a.state.p_vel, b.state.p_vel)
        np.testing.assert_array_equal(r_xy, r_5)
        assert t_xy == t_5
        moved += np.abs(xy_env.render_positions()["learners"] - before).sum()
    assert moved > 1.0  # the forces did move the agents
    with pytest.raises(ValueError, match="5 per agent, but the force-xy layout takes 2. "
                       "Fix: build the task with action_layout='mpe2'"):
        xy_env.step(np.zeros((n, 5), np.float32))
    with pytest.raises(ValueError, match="2 per agent, but the mpe2 layout takes 5"):
        five_env.step(np.zeros((n, 2), np.float32))


def test_spread_with_n_agents_by_name_or_option() -> None:
    from om2p_lite.envs import parse_task, task_name

    for env in (make_env("spread4"), make_env("spread", n_agents=4), make_env("spread4",
                                                                              n_agents=4)):
        s = env.spec
        assert s.n_agents == 4 and s.obs_dims == (24,) * 4 and s.act_dims == (2,) * 4
        assert s.task == "spread" and s.notes == "4 agents, 4 landmarks" and s.score == "mean"
        assert env.reset(seed=0).shape == (4, 24)
    assert make_env("spread", n_agents=3).spec.n_agents == 3
    assert make_env("spread2").spec.obs_dims == (12, 12)
    assert parse_task("spread4") == ("spread", 4) and parse_task("tag") == ("tag", None)
    assert task_name("spread", 4) == "spread4" and task_name("spread", 3) == "spread"
    with pytest.raises(ValueError, match="has 4 agents but n_agents=5.*Fix"):
        make_env("spread4", n_agents=5)
    with pytest.raises(ValueError, match="only Spread takes an agent count.*Fix"):
        make_env("tag", n_agents=4)
    for bad, match in (("spread3", "standard task.*Fix: use 'spread'"),
                       ("spread12", "supports 2..6 agents"), ("pong", "unknown task.*spreadN")):
        with pytest.raises(ValueError, match=match):
            make_env(bad)


def test_vec_env_and_omar_reward_run_with_four_agents() -> None:
    with VecEnv("spread4", 2, seed=1, reward_variant="omar") as env:
        obs = env.reset()
        _, rew, *_ = env.step(np.zeros((2, 4, 2), np.float32))
    assert obs.shape == (2, 4, 24) and rew.shape == (2, 4)


@pytest.mark.parametrize("layout", ["force-xy", "mpe2"])
@pytest.mark.parametrize("task, n", [("spread", None), ("tag", None), ("world", None),
                                     ("spread", 4)])
def test_fast_step_matches_the_pettingzoo_parallel_api(task: str, n: int | None,
                                                       layout: str) -> None:
    """Our direct world step gives the same obs and rewards as mpe2's public parallel API."""
    from om2p_lite.envs.mpe import _build

    ours = make_env(task, n_agents=n, action_layout=layout)
    ref_raw = _build(task, n)
    from pettingzoo.utils.conversions import aec_to_parallel
    from pettingzoo.utils.wrappers import ClipOutOfBoundsWrapper, OrderEnforcingWrapper

    ref = aec_to_parallel(OrderEnforcingWrapper(ClipOutOfBoundsWrapper(ref_raw)))
    obs = ours.reset(seed=7)
    ref_obs, _ = ref.reset(seed=7)
    rng = np.random.default_rng(0)
    prey = {"tag": tag_prey_policy, "world": world_prey_policy}.get(task)
    for _ in range(25):
        np.testing.assert_allclose(obs, np.stack([ref_obs[n] for n in ours.learners]))
        act = rng.uniform(-1, 1, (len(ours.learners), ours.spec.act_dim)).astype(np.float32)
        acts = {n: ours._env_action(n, a, layout)
                for n, a in zip(ours.learners, act, strict=True)}
        for n in ours.prey:
            acts[n] = ours._env_action(n, prey(ref_obs[n][None])[0], "mpe2")
        obs, rew, term, tout = ours.step(act)
        ref_obs, ref_rew, _, ref_trunc, _ = ref.step(acts)
        np.testing.assert_allclose(rew, [ref_rew[n] for n in ours.learners], rtol=1e-6)
    assert tout and all(ref_trunc.values()) and not term


def test_actions_map_to_forces() -> None:
    five, xy = make_env("spread", action_layout="mpe2"), make_env("spread")
    push = np.zeros((3, 5), np.float32)
    push[:, 1], push[:, 2] = -1.0, 1.0  # full +x force
    for env, act in ((five, push), (xy, np.tile([[1.0, 0.0]], (3, 1)).astype(np.float32))):
        env.reset(seed=0)
        for _ in range(3):
            obs, *_ = env.step(act)
        assert (obs[:, 0] > 0.5).all() and np.allclose(obs[:, 1], 0.0)


def test_omar_spread_reward_formula() -> None:
    from om2p_lite.envs.mpe import omar_spread_reward

    env = make_env("spread", "omar")
    env.reset(seed=0)
    world = env.raw.world
    for a, p in zip(world.agents, ([0, 0], [1, 0], [0, 1]), strict=True):
        a.state.p_pos = np.array(p, float)
    for lm, p in zip(world.landmarks, ([0, 0.5], [2, 0], [0, 0.05]), strict=True):
        lm.state.p_pos = np.array(p, float)
    # closest agent distances: 0.5, 1.0, 0.05 -> 2 + 1 + min(20, 10)
    assert omar_spread_reward(world) == pytest.approx(13.0)


def test_vec_env_is_seeded_and_auto_resets() -> None:
    with VecEnv("spread", 4, seed=5) as a, VecEnv("spread", 4, seed=5) as b:
        oa, ob = a.reset(), b.reset()
        np.testing.assert_array_equal(oa, ob)
        assert not np.allclose(oa[0], oa[1])  # different envs, different starts
        act = np.zeros((4, 3, 2), np.float32)
        for t in range(25):
            next_obs, rew, term, tout, obs = a.step(act)
            assert rew.shape == (4, 3) and not term.any()
            assert tout.all() == (t == 24)
        assert not np.allclose(next_obs, obs)  # obs is the fresh reset after the timeout


def test_worker_processes_do_not_change_the_data() -> None:
    def roll(workers: int, layout: str) -> np.ndarray:
        with VecEnv("tag", 4, seed=1, n_workers=workers, action_layout=layout) as env:
            obs, out = env.reset(), []
            rng = np.random.default_rng(0)
            for _ in range(5):
                act = rng.uniform(-1, 1, (4, 3, env.spec.act_dim)).astype(np.float32)
                obs = env.step(act)[4]
                out.append(obs)
        return np.stack(out)

    np.testing.assert_array_equal(roll(1, "force-xy"), roll(2, "force-xy"))
    np.testing.assert_array_equal(roll(1, "mpe2"), roll(2, "mpe2"))  # workers get the layout


@pytest.mark.parametrize("layout", ["force-xy", "mpe2"])
@pytest.mark.parametrize("task", ["spread", "tag", "world", "spread4"])
def test_scripted_expert_beats_random(task: str, layout: str) -> None:
    rng = np.random.default_rng(0)
    with VecEnv(task, 20, seed=3, action_layout=layout) as env:
        rets = {}
        expert = ScriptedPolicy(env.spec.task, env.spec.action_layout)
        for name, pol in (("random", RandomPolicy(env.spec)),
                          ("expert", NoisyPolicy(expert, env.spec, std=0.1))):
            obs, total = env.reset(), 0.0
            for _ in range(25):
                _, r, _, _, obs = env.step(pol(obs, rng))
                total += team_score(r, env.spec.score).sum()
            rets[name] = total / 20
    assert rets["expert"] > rets["random"] + 1.0, rets


def test_spread_policy_refuses_observations_of_another_size() -> None:
    from om2p_lite.envs.scripted import spread_policy

    with pytest.raises(ValueError, match="expects 3 agents observing 18"):
        spread_policy(np.zeros((2, 3, 16), np.float32))


def test_halfcheetah_2x3() -> None:
    pytest.importorskip("mujoco")
    env = make_env("halfcheetah")
    s = env.spec
    assert s.n_agents == 2 and s.obs_dims == (11, 11) and s.act_dims == (3, 3)
    assert s.episode_length == 1000 and "agent_obsk=0" in s.notes
    obs = env.reset(seed=0)
    obs2, rew, term, tout = env.step(np.ones((2, 3), np.float32))
    assert obs.shape == obs2.shape == (2, 11) and rew.shape == (2,) and rew[0] == rew[1]
    assert not term and not tout
    env.close()


def test_td3_trains_tiny_and_resumes(tmp_path: Path, capsys) -> None:
    """The behaviour driver (data.behaviour_td3) on Spread; tests/test_td3.py checks more."""
    from om2p_lite.data.behaviour_td3 import OnlineConfig, train_behaviour

    cfg = OnlineConfig(task="spread", total_steps=200, n_envs=2, start_steps=50,
                       eval_every=100, eval_episodes=2,
                       agent={"batch_size": 32, "hidden": 16, "critic_hidden": 32})
    curve = train_behaviour(cfg, tmp_path)
    assert [row["step"] for row in curve] == [100, 200]
    assert (tmp_path / "curve.csv").exists() and (tmp_path / "snapshots.pt").exists()
    cfg.total_steps = 300
    curve = train_behaviour(cfg, tmp_path)
    assert "resumed from" in capsys.readouterr().out
    assert [row["step"] for row in curve] == [100, 200, 300]


def test_shipped_halfcheetah_actors_order_the_qualities() -> None:
    """The shipped TD3 snapshots: expert beats medium beats random (one short episode each)."""
    pytest.importorskip("mujoco")
    from om2p_lite.data.behaviour import BEHAVIOUR_DIR, load_actor_snapshot
    from om2p_lite.envs import get_spec

    path = BEHAVIOUR_DIR / "halfcheetah_td3.pt"
    if not path.exists():
        pytest.skip("halfcheetah_td3.pt not trained yet")
    spec = get_spec("halfcheetah")
    rng = np.random.default_rng(0)
    actors = {q: load_actor_snapshot(path, spec, q) for q in ("expert", "medium")}
    rets = {q: envs_rollout(lambda o, p=p: p(o, rng)) for q, p in actors.items()}
    rets["random"] = envs_rollout(lambda o: RandomPolicy(spec)(o, rng))
    assert rets["expert"] > rets["medium"] > rets["random"], rets


def envs_rollout(act_fn) -> float:
    """Return of one HalfCheetah episode."""
    from om2p_lite.envs import rollout_returns

    return float(rollout_returns("halfcheetah", act_fn, episodes=1, seed=11).mean())


@pytest.mark.parametrize("task", ["spread", "tag", "world"])
def test_scripted_controllers_apply_one_force_in_either_layout(task: str) -> None:
    """The script's mpe2 action is its force-xy force mapped by force_to_action, bit for bit."""
    from om2p_lite.envs.scripted import SCRIPTED, force_to_action

    env = make_env(task)
    obs = np.stack([env.reset(seed=s) for s in range(4)])
    xy, five = SCRIPTED[task](obs), SCRIPTED[task](obs, layout="mpe2")
    assert xy.shape == (4, 3, 2) and five.shape == (4, 3, 5) and np.abs(xy).max() <= 1.0
    np.testing.assert_array_equal(force_to_action(xy), five)
    with pytest.raises(ValueError, match="layout 'xy' is unknown"):
        SCRIPTED[task](obs, layout="xy")
