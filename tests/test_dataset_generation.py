"""Dataset generation, checksums, sampling, npy import/export and the data CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from om2p_lite.cli.data import main as data_main
from om2p_lite.data import DatasetError, load_dataset, save_dataset
from om2p_lite.data.generate import get_dataset, make_dataset
from om2p_lite.data.npy_io import export_npy, import_npy
from om2p_lite.data.synthetic import toy_dataset

pytest.importorskip("mpe2")


@pytest.fixture(scope="module")
def spread_expert():
    """A 10-episode Spread expert dataset, made once for the module."""
    ds, _ = make_dataset("spread", "expert", seed=3, n_transitions=250)
    return ds


def test_same_command_and_seed_give_the_same_checksum_twice(spread_expert) -> None:
    again, _ = make_dataset("spread", "expert", seed=3, n_transitions=250)
    other, _ = make_dataset("spread", "expert", seed=4, n_transitions=250)
    assert again.checksum() == spread_expert.checksum() == spread_expert.metadata["checksum"]
    assert other.checksum() != spread_expert.checksum()


def test_generated_dataset_is_valid_and_structured(spread_expert, tmp_path: Path) -> None:
    ds = load_dataset(save_dataset(spread_expert, tmp_path / "s.npz"))
    assert len(ds) == 250 and ds.n_agents == 3 and ds.obs.shape == (250, 3, 18)
    assert ds.actions.shape == (250, 3, 2) and np.abs(ds.actions).max() <= 1.0
    assert ds.metadata["action_layout"] == "force-xy"  # the paper's 2-d force per agent
    assert ds.episode_starts.sum() == 10 and ds.timeouts.sum() == 10 and not ds.terminals.any()
    assert {"versions", "command", "behaviour", "seed"} <= set(ds.metadata)
    assert ds.metadata["versions"]["mpe2"]


def test_qualities_are_ordered_on_every_mpe_task() -> None:
    for task in ("spread", "tag", "world"):
        means = {q: make_dataset(task, q, seed=0, n_transitions=1000, behaviour="scripted")[0]
                 .episode_returns().mean() for q in ("random", "medium", "expert")}
        assert means["expert"] > means["medium"] > means["random"], (task, means)


def test_sample_gives_shared_indices_for_all_agents(spread_expert) -> None:
    gen = torch.Generator().manual_seed(0)
    batch = spread_expert.sample(64, gen)
    assert batch["obs"].shape == (64, 3, 18) and batch["rewards"].shape == (64, 3)
    assert batch["dones"].shape == (64,) and batch["obs"].dtype == torch.float32
    idx = spread_expert.sample_indices(64, torch.Generator().manual_seed(0)).numpy()
    np.testing.assert_array_equal(batch["actions"].numpy(), spread_expert.actions[idx])


def test_episode_returns_match_a_loop(spread_expert) -> None:
    rets = spread_expert.episode_returns()
    team = spread_expert.rewards.mean(-1)
    assert np.allclose(rets, team.reshape(10, 25).sum(1), atol=1e-4)


def test_npy_export_import_round_trip_is_bit_exact(spread_expert, tmp_path: Path) -> None:
    files = export_npy(spread_expert, tmp_path / "npy")
    assert {p.name for p in files} >= {"obs_0.npy", "acs_2.npy", "rews_1.npy",
                                       "next_obs_2.npy", "dones_0.npy"}
    back = import_npy(tmp_path / "npy", "spread", reward_variant="mpe2")
    assert back.checksum() == spread_expert.checksum()
    with pytest.raises(DatasetError, match="already exists"):
        export_npy(spread_expert, tmp_path / "npy")


def test_import_rescales_a_unit_box_and_reports_missing_files(tmp_path: Path) -> None:
    ds = toy_dataset(obs_dims=(18, 18, 18), act_dims=(5, 5, 5))  # Spread's shapes
    export_npy(ds, tmp_path / "a")
    for p in (tmp_path / "a").glob("acs_*.npy"):
        a = np.load(p)
        p.unlink()
        np.save(p, (a + 1.0) / 2.0)  # a [0, 1] action box
    back = import_npy(tmp_path / "a", "spread", action_low=0.0, action_high=1.0,
                      reward_variant="omar")
    np.testing.assert_allclose(back.actions, ds.actions, atol=1e-6)
    (tmp_path / "a" / "rews_1.npy").unlink()
    with pytest.raises(DatasetError) as info:
        import_npy(tmp_path / "a", "spread", reward_variant="omar")
    assert info.value.field == "rews_1"


def test_get_dataset_caches_on_first_use(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("OM2P_DATA_DIR", str(tmp_path))
    ds = get_dataset("tag", "random", seed=0, budget="smoke")
    files = list(tmp_path.glob("*.npz"))
    assert len(files) == 1 and files[0].name == "tag-random-s0-smoke.npz"
    mtime = files[0].stat().st_mtime_ns
    again = get_dataset("tag", "random", seed=0, budget="smoke")
    assert again.checksum() == ds.checksum() and files[0].stat().st_mtime_ns == mtime


def test_cli_make_info_validate_refuses_overwrite(tmp_path: Path, capsys) -> None:
    out = tmp_path / "w.npz"
    args = ["data", "make", "--task", "world", "--quality", "medium", "--seed", "1",
            "--transitions", "100", "--out", str(out)]
    assert data_main(args) == 0
    first = out.read_bytes()
    assert data_main(args) == 2  # exists: nothing written
    assert out.read_bytes() == first
    assert data_main(["data", "info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "return mean" in text and "sha256:" in text and "transitions/s" in text
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"junk")
    assert data_main(["data", "validate", str(out), str(bad)]) == 1
    text = capsys.readouterr().out
    assert f"OK   {out}" in text and "FAIL" in text and "Fix:" in text


def test_normalised_score_uses_our_random_and_expert(tmp_path: Path) -> None:
    from om2p_lite.data.reference import normalized_score, write_reference

    rows = [{"task": "tag", "reward_variant": "mpe2", "quality": q, "budget": "smoke",
             "seed": 0, "episodes": 10, "return_mean": m, "return_std": 1.0, "checksum": "x",
             "action_layout": "force-xy", "behaviour": "trained"}  # the default data's rows
            for q, m in (("random", 2.0), ("medium", 7.0), ("expert", 12.0))]
    path = write_reference(rows, tmp_path / "ref.csv")
    assert normalized_score("tag", 7.0, path=path) == pytest.approx(50.0)
    assert normalized_score("tag", 12.0, path=path) == pytest.approx(100.0)
    with pytest.raises(KeyError, match="data reference"):
        normalized_score("spread", 1.0, path=path)


def test_medium_replay_improves_over_the_file() -> None:
    ds, _ = make_dataset("tag", "medium-replay", seed=0, n_transitions=2000)
    rets = ds.episode_returns()
    half = len(rets) // 2
    assert rets[half:].mean() > rets[:half].mean()


@pytest.mark.parametrize("n", [0, 1, 24, -5])
def test_make_refuses_less_than_one_episode(n: int, tmp_path: Path, capsys) -> None:
    with pytest.raises(ValueError, match=r"n_transitions: .*one spread episode \(25 steps\)"
                       r".*Fix: ask for at least 25"):
        make_dataset("spread", "random", n_transitions=n)
    out = tmp_path / "x.npz"
    assert data_main(["data", "make", "--task", "spread", "--quality", "random",
                      "--transitions", str(n), "--out", str(out)]) == 2
    assert "at least 25 transitions" in capsys.readouterr().err and not out.exists()


def test_make_one_episode_is_the_smallest_dataset() -> None:
    ds, _ = make_dataset("tag", "random", n_transitions=25)
    assert len(ds) == 25 and ds.episode_starts.sum() == 1


def test_spread_with_four_agents_by_name_or_option(tmp_path: Path) -> None:
    by_name, _ = make_dataset("spread4", "expert", seed=1, n_transitions=50)
    by_option, _ = make_dataset("spread", "expert", seed=1, n_transitions=50, n_agents=4)
    assert by_name.checksum() == by_option.checksum()
    assert by_name.obs.shape == (50, 4, 24) and by_name.actions.shape == (50, 4, 2)
    meta = by_name.metadata
    assert meta["task"] == "spread4" and meta["n_agents"] == 4 and "4 landmarks" in \
        meta["env_notes"]
    # the standard task's data stream is unchanged by the option
    three, _ = make_dataset("spread", "expert", seed=1, n_transitions=50, n_agents=3)
    assert three.metadata["task"] == "spread" and three.obs.shape[1] == 3
    with pytest.raises(ValueError, match="only Spread takes an agent count"):
        make_dataset("tag", "random", n_transitions=25, n_agents=4)
    with pytest.raises(ValueError, match="has 4 agents but n_agents=5"):
        make_dataset("spread4", "random", n_transitions=25, n_agents=5)
    args = ["data", "make", "--task", "spread", "--n-agents", "4", "--quality", "expert",
            "--seed", "1", "--transitions", "50"]
    assert data_main([*args, "--out", str(tmp_path / "a.npz")]) == 0
    assert load_dataset(tmp_path / "a.npz").checksum() == by_name.checksum()
    from om2p_lite.data.generate import dataset_path

    assert dataset_path("spread4", "expert", 1, "smoke", "omar").name == \
        "spread4-omar-expert-s1-smoke.npz"


def test_scripted_expert_beats_random_with_four_agents() -> None:
    means = {q: make_dataset("spread4", q, seed=0, n_transitions=250)[0]
             .episode_returns().mean() for q in ("random", "expert")}
    assert means["expert"] > means["random"] + 5.0, means


def test_cli_make_refuses_an_unknown_task_with_the_valid_names(capsys) -> None:
    with pytest.raises(SystemExit):
        data_main(["data", "make", "--task", "spread9", "--quality", "random"])
    assert "spreadN" in capsys.readouterr().err


def test_make_refuses_bad_env_counts_with_a_fix() -> None:
    for kw in ({"n_envs": 0}, {"n_workers": 0}, {"n_envs": 1.5}):
        with pytest.raises(ValueError, match=r"(n_envs|n_workers): must be a whole number.*Fix"):
            make_dataset("spread", "random", n_transitions=25, **kw)
