"""TD3 as one stack: the offline agent's actor loss, and the online behaviour driver built on
it (runs, resumes bit for bit, refuses a damaged or foreign checkpoint, ships snapshots the
behaviour loader reads)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from om2p_lite.rl.agents import AgentDims, make_agent
from om2p_lite.rl.agents.td3 import TD3Agent
from om2p_lite.rl.config import TrainConfig
from om2p_lite.rl.rundir import CheckpointError, load_checkpoint, save_checkpoint

DIMS = AgentDims(3, 6, 2, (2, 2, 1))
TINY = dict(hidden=16, depth=2, critic_hidden=16, critic_depth=2, batch_size=8)


def _batch(B: int = 8) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {"obs": torch.randn(B, 3, 6, generator=g),
            "actions": torch.rand(B, 3, 2, generator=g) * 2 - 1,
            "rewards": torch.randn(B, 3, generator=g),
            "next_obs": torch.randn(B, 3, 6, generator=g), "dones": torch.zeros(B)}


def test_td3_actor_loss_is_minus_the_first_critic_and_moves_only_the_actor() -> None:
    torch.manual_seed(0)
    agent = make_agent("td3", DIMS, TrainConfig(algo="td3", **TINY))
    assert isinstance(agent, TD3Agent) and agent.policy_delay == 2
    batch = _batch()
    loss, logs = agent.actor_loss(batch)
    with torch.no_grad():
        a_pi = torch.tanh(agent.actor(batch["obs"])) * agent.act_mask
        q = agent.critic(batch["obs"], a_pi)  # (n_q, B, A)
    torch.testing.assert_close(loss, -q[0].mean(0).sum())  # Q1, not the ensemble or Q2
    assert not torch.allclose(-q[1].mean(0).sum(), loss)
    torch.testing.assert_close(logs["q_loss"], -q[0].mean(0))
    loss.backward()
    assert all(p.grad is None for p in agent.critic.parameters())  # critic frozen
    assert all(p.grad is not None for p in agent.actor.parameters())
    # padding dims get no action: agent 2 has one real action dim
    assert torch.equal(agent.act(batch["obs"])[:, 2, 1], torch.zeros(8))


def test_td3_is_td3bc_without_the_bc_term() -> None:
    """Same networks, same critic step; the actors differ only by the BC pull (and λ)."""
    states = {}
    for algo in ("td3", "td3bc"):
        torch.manual_seed(0)
        agent = make_agent(algo, DIMS, TrainConfig(algo=algo, **TINY))
        agent.update(_batch())  # a critic step only (the actor waits for update 2)
        states[algo] = agent.state_dict()
    assert all(torch.equal(v, states["td3bc"][k]) for k, v in states["td3"].items())


# ---- the online driver -------------------------------------------------------------------

pytest.importorskip("mpe2")


def _online(**kw):
    from om2p_lite.data.behaviour_td3 import OnlineConfig

    base = dict(task="spread", total_steps=300, n_envs=2, start_steps=50, eval_every=100,
                eval_episodes=2, log_every=50, agent=dict(TINY, batch_size=32))
    return OnlineConfig(**(base | kw))


def _train(cfg, folder: Path):
    from om2p_lite.data.behaviour_td3 import train_behaviour

    return train_behaviour(cfg, folder, progress=False)


@pytest.fixture(scope="module")
def whole_run(tmp_path_factory) -> tuple[Path, list[dict]]:
    """300 Spread transitions in one go: the run the resumed one must equal."""
    folder = tmp_path_factory.mktemp("whole")
    return folder, _train(_online(), folder)


def _rows(folder: Path) -> list[dict]:
    rows = [json.loads(line) for line in (folder / "log.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "wall_s"} for r in rows]


def test_driver_runs_and_writes_its_files(whole_run) -> None:
    folder, curve = whole_run
    assert [row["step"] for row in curve] == [100, 200, 300]
    assert all(np.isfinite(row["return"]) for row in curve)
    for name in ("checkpoint.pt", "log.jsonl", "curve.csv", "snapshots.pt"):
        assert (folder / name).is_file(), name
    blob = load_checkpoint(folder / "checkpoint.pt")
    # one update per transition after the 50 random ones
    assert blob["agent"]["n_updates"] == 300 - 50 and blob["buffer"]["obs"].shape == (300, 3, 18)
    kinds = [r["kind"] for r in _rows(folder)]
    assert kinds.count("eval") == 3 and "train" in kinds


def test_driver_resumes_bit_for_bit(whole_run, tmp_path, capsys) -> None:
    folder, curve = whole_run
    short = _train(_online(total_steps=200), tmp_path)
    assert [r["step"] for r in short] == [100, 200]
    resumed = _train(_online(), tmp_path)
    assert "resumed from" in capsys.readouterr().out
    assert [r["return"] for r in resumed] == [r["return"] for r in curve]
    a, b = load_checkpoint(folder / "checkpoint.pt"), load_checkpoint(tmp_path / "checkpoint.pt")
    for key in ("model",):
        for name, value in a["agent"][key].items():
            assert torch.equal(value, b["agent"][key][name]), name
    for name, value in a["buffer"].items():
        assert torch.equal(value, b["buffer"][name]), name
    for k in ("batch", "noise", "explore"):
        assert torch.equal(a["rng"][k], b["rng"][k]), k
    assert _rows(folder) == _rows(tmp_path)


def test_driver_refuses_damaged_foreign_or_changed_checkpoints(whole_run, tmp_path) -> None:
    folder, _ = whole_run
    good = (folder / "checkpoint.pt").read_bytes()
    ckpt = tmp_path / "checkpoint.pt"
    ckpt.write_bytes(good[: len(good) // 2])
    with pytest.raises(CheckpointError, match=r"checkpoint.pt.*truncated or corrupt.*Fix"):
        _train(_online(total_steps=400), tmp_path)
    blob = load_checkpoint(folder / "checkpoint.pt")
    blob["buffer"]["obs"] = blob["buffer"]["obs"][:, :, :5]
    save_checkpoint(ckpt, blob)
    with pytest.raises(CheckpointError, match=r"'buffer' must hold.*Fix"):
        _train(_online(total_steps=400), tmp_path)
    ckpt.write_bytes(good)
    with pytest.raises(ValueError, match=r"other settings \(\['expl_noise'\] differ\).*Fix"):
        _train(_online(total_steps=400, expl_noise=0.3), tmp_path)
    torch.save({"step": 1, "x": Path("not a tensor")}, ckpt)
    with pytest.raises(CheckpointError, match="Python objects.*refused"):
        _train(_online(total_steps=400), tmp_path)
    ckpt.unlink()
    (tmp_path / "ckpt.pt").write_bytes(b"old")
    with pytest.raises(CheckpointError, match="retired rl.td3_online.*Fix"):
        _train(_online(), tmp_path)


def test_driver_settings_are_checked_before_anything_runs(tmp_path) -> None:
    from om2p_lite.runtime.checks import SettingError

    for bad, field in ((dict(eval_every=120), "eval_every"), (dict(eval_every=99), "eval_every"),
                       (dict(expl_noise=-0.1), "expl_noise"),
                       (dict(agent={"algo": "bc"}), "agent.algo"),
                       (dict(agent={"lr": -1.0}), "lr")):
        with pytest.raises(SettingError) as err:
            _train(_online(**bad), tmp_path / "x")
        assert err.value.field == field and "Fix" in str(err.value)
    assert not (tmp_path / "x").exists()


def test_exported_snapshots_act_as_the_learner(whole_run, tmp_path) -> None:
    """The shipped layout: a snapshot is the learner's actor, and the loader's NumPy actor
    (ReLU, tanh, padding masked) computes that actor's actions."""
    from om2p_lite.data.behaviour import load_actor_snapshot
    from om2p_lite.data.behaviour_td3 import actor_state, export_behaviour, make_learner
    from om2p_lite.envs import get_spec
    from om2p_lite.flows.stacked import StackedLinear

    folder, curve = whole_run
    spec = get_spec("spread")  # the default 2-d force action
    learner = make_learner(_online(), AgentDims(3, 18, spec.act_dim, spec.act_dims))
    learner.load_full_state(load_checkpoint(folder / "checkpoint.pt")["agent"])
    last = torch.load(folder / "snapshots.pt", weights_only=True)["snapshots"][-1]["state"]
    assert all(torch.equal(v, last[k]) for k, v in actor_state(learner.actor).items())
    out = tmp_path / "spread_td3.pt"
    rets = [r["return"] for r in curve]
    chosen = export_behaviour(folder, out, random_return=min(rets) - 1.0)
    assert chosen["expert"] == int(np.argmax(rets))
    blob = torch.load(out, weights_only=True)
    assert blob["actor"] == {"hidden": 16, "depth": 2, "activation": "relu"}
    assert len(blob["snapshots"]) == chosen["expert"] + 1
    state = blob["snapshots"][chosen["expert"]]["state"]
    with torch.no_grad():
        for k, m in enumerate(x for x in learner.actor.net if isinstance(x, StackedLinear)):
            m.weight.copy_(state[f"weights.{k}"])
            m.bias.copy_(state[f"biases.{k}"])
    policy = load_actor_snapshot(out, get_spec("spread"), "expert")
    obs = np.random.default_rng(0).standard_normal((4, 3, 18)).astype(np.float32)
    np.testing.assert_allclose(policy(obs, np.random.default_rng(0)),
                               learner.act(torch.as_tensor(obs)).numpy(), atol=1e-5)


def test_replay_until_gives_the_first_transitions(whole_run) -> None:
    from om2p_lite.data.behaviour_td3 import replay_until

    folder, _ = whole_run
    first = replay_until(folder, 120)
    full = load_checkpoint(folder / "checkpoint.pt")["buffer"]
    assert all(torch.equal(v, full[k][:120]) for k, v in first.items())
    assert first["actions"].abs().max() <= 1 and set(first) == set(full)
    with pytest.raises(ValueError, match="not the first 301.*Fix"):
        replay_until(folder, 301)


def test_snapshot_choice_by_return() -> None:
    from om2p_lite.data.behaviour_td3 import choose_snapshots

    snaps = [{"return": r} for r in (-10.0, -8.0, -5.5, 0.0, -1.0)]
    assert choose_snapshots(snaps, random_return=-10.0) == {"expert": 3, "medium": 2}
    assert choose_snapshots(snaps, -10.0, medium_return=-8.5) == {"expert": 3, "medium": 1}
    assert choose_snapshots(snaps, -10.0, expert_return=-6.0) == {"expert": 2, "medium": 1}
    # an expert target never reached: the best snapshot
    assert choose_snapshots(snaps, -10.0, expert_return=5.0)["expert"] == 3


def test_critic_width_is_the_tasks_unless_asked(tmp_path) -> None:
    """MPE learners get maddpg-pytorch's settings (64-wide critics, γ 0.95, τ 0.01), HalfCheetah
    TD3's (256, 0.99, 0.005); agent fields and --critic-hidden win."""
    from om2p_lite.cli.main import main
    from om2p_lite.data.behaviour_td3 import OnlineConfig

    mpe, cheetah = (OnlineConfig(task=t).train_config() for t in ("spread", "halfcheetah"))
    assert (mpe.critic_hidden, mpe.gamma, mpe.tau) == (64, 0.95, 0.01)
    assert (cheetah.critic_hidden, cheetah.gamma, cheetah.tau) == (256, 0.99, 0.005)
    assert OnlineConfig(task="spread", agent={"gamma": 0.9}).train_config().gamma == 0.9
    assert OnlineConfig(task="tag", agent={"critic_hidden": 32}).train_config().critic_hidden == 32
    run = tmp_path / "run"
    assert main(["data", "train-behaviour", "--task", "spread", "--steps", "200",
                 "--eval-every", "200", "--start-steps", "100", "--eval-episodes", "1",
                 "--critic-hidden", "24", "--run-dir", str(run)]) == 0
    ckpt = load_checkpoint(run / "checkpoint.pt")
    assert ckpt["config"]["agent"] == {"critic_hidden": 24}


def test_joint_critic_sees_the_team_but_passes_each_agent_only_its_own_gradient() -> None:
    """MATD3's centralised critic: Q_i reads every agent's observation and action, and a
    gradient reaches a_j only through Q_j (maddpg-pytorch's per-agent actor loss)."""
    from om2p_lite.rl.critics import JointCritic

    torch.manual_seed(0)
    critic = JointCritic(3, 6, 2, hidden=16, depth=2, n_q=2)
    obs, act = torch.randn(5, 3, 6), torch.rand(5, 3, 2) * 2 - 1
    q = critic(obs, act)
    assert q.shape == (2, 5, 3)
    moved = act.clone()
    moved[:, 2] += 0.5  # agent 2's action changes every agent's Q
    assert (critic(obs, moved) - q).abs()[..., :2].min() > 0
    a = act.clone().requires_grad_(True)
    critic(obs, a).sum().backward()  # Σ_i Q_i: only Q_j's gradient reaches a_j
    for j in range(3):
        own = act.clone().requires_grad_(True)
        critic(obs, own)[..., j].sum().backward()
        assert torch.allclose(a.grad[:, j], own.grad[:, j], atol=1e-6)
    with pytest.raises(ValueError, match="team of 3"):
        critic(torch.randn(5, 4, 6), torch.rand(5, 4, 2))


def test_behaviour_learner_is_matd3_unless_asked(tmp_path) -> None:
    """The online learner's critics are centralised by default; --critics independent (or
    central_critic=False) gives TD3's per-agent critics."""
    from om2p_lite.data.behaviour_td3 import OnlineConfig, make_learner
    from om2p_lite.rl.critics import JointCritic, StackedCritic

    dims = AgentDims(3, 18, 2, (2, 2, 2))
    assert isinstance(make_learner(OnlineConfig(task="spread"), dims).critic, JointCritic)
    independent = OnlineConfig(task="spread", central_critic=False)
    assert isinstance(make_learner(independent, dims).critic, StackedCritic)


def test_predator_shaping_is_mpes_shape_term_and_only_tags() -> None:
    from om2p_lite.envs.mpe import MPEEnv, predator_shaping

    env = MPEEnv("tag")
    env.reset(seed=3)
    env.step(np.zeros((3, 2), dtype=np.float32))
    world = env.raw.world
    prey = [a for a in world.agents if not a.adversary][0].state.p_pos
    want = -0.1 * sum(np.linalg.norm(a.state.p_pos - prey) for a in world.agents if a.adversary)
    assert predator_shaping(world) == pytest.approx(want)
    assert np.allclose(env.last_shaping, want) and want < 0
    spread = MPEEnv("spread")
    spread.reset(seed=3)
    spread.step(np.zeros((3, 2), dtype=np.float32))
    assert not spread.last_shaping.any()


def test_shaped_run_learns_from_the_bonus_but_keeps_the_reward(tmp_path) -> None:
    from om2p_lite.data.behaviour_td3 import replay_until
    from om2p_lite.runtime.checks import SettingError

    with pytest.raises(SettingError, match="Tag's option"):
        _online(shaping=True).validate()
    plain = _train(_online(task="tag", total_steps=200), tmp_path / "plain")
    shaped = _train(_online(task="tag", total_steps=200, shaping=True), tmp_path / "shaped")
    a = load_checkpoint(tmp_path / "plain" / "checkpoint.pt")
    b = load_checkpoint(tmp_path / "shaped" / "checkpoint.pt")
    # the same transitions are collected until the first update moves the actor ...
    assert torch.equal(a["buffer"]["rewards"][:50], b["buffer"]["rewards"][:50])
    assert "bonus" not in a and b["bonus"].shape == (200, 3) and (b["bonus"] < 0).all()
    # ... the replay keeps the task's reward (collisions: 0 or multiples of 10) ...
    rew = replay_until(tmp_path / "shaped", 200)["rewards"]
    assert torch.equal(torch.remainder(rew, 10.0), torch.zeros_like(rew))
    # ... and the learner saw reward + bonus, so the weights differ
    assert any(not torch.equal(v, b["agent"]["model"][k]) for k, v in a["agent"]["model"].items()
               if "critic" in k)
    assert [r["step"] for r in shaped] == [r["step"] for r in plain]
    # a shaped run resumes only as a shaped run
    with pytest.raises(ValueError, match=r"\['shaping'\] differ"):
        _train(_online(task="tag", total_steps=300), tmp_path / "shaped")
