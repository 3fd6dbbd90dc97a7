"""A data set in the public per-agent layout (obs_i.npy, acs_i.npy, ...): labels validated
at import, its shapes checked against the task, 4-agent Spread trained on end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from om2p_lite.cli.data import main as data_main
from om2p_lite.data import DatasetError, load_dataset, save_dataset
from om2p_lite.data.generate import make_dataset
from om2p_lite.data.npy_io import IMPORT_QUALITIES, export_npy, import_npy
from om2p_lite.rl.config import TrainConfig

pytest.importorskip("mpe2")

TINY = dict(steps=2, batch_size=8, hidden=8, depth=1, critic_hidden=8, critic_depth=1,
            eval_every=0, eval_episodes=2, eval_max_steps=2, log_every=1, progress=False)


@pytest.fixture(scope="module")
def public_spread4(tmp_path_factory) -> Path:
    """A 4-agent Spread set written in the public per-agent layout, OMAR's reward."""
    ds, _ = make_dataset("spread4", "medium", seed=0, n_transitions=100,
                         reward_variant="omar")
    out = tmp_path_factory.mktemp("public") / "spread4"
    export_npy(ds, out)
    return out


def test_four_agent_files_import_as_spread4(public_spread4: Path) -> None:
    ds = import_npy(public_spread4, "spread", reward_variant="omar")
    meta = ds.metadata
    assert meta["task"] == "spread4" and meta["n_agents"] == 4 and ds.obs.shape == (100, 4, 24)
    assert meta["quality"] == "imported" and meta["reward_variant"] == "omar"
    assert meta["episode_length"] == 25 and meta["score"] == "mean"
    assert str(public_spread4.parent) not in json.dumps(meta)  # no machine paths recorded
    assert len(ds.episode_bounds()) == 4
    assert import_npy(public_spread4, "spread4", reward_variant="omar").checksum() == \
        ds.checksum()


@pytest.mark.parametrize("quality", IMPORT_QUALITIES)
def test_every_known_quality_label_is_accepted(public_spread4: Path, quality: str) -> None:
    ds = import_npy(public_spread4, "spread", reward_variant="omar", quality=quality)
    assert ds.metadata["quality"] == quality


@pytest.mark.parametrize("kwargs, match", [
    ({"quality": "great", "reward_variant": "omar"}, r"quality: unknown label 'great'.*Fix.*"
                                                     r"'random'.*'imported'"),
    ({"reward_variant": "unknown"}, r"reward_variant: unknown 'unknown'.*Fix.*'mpe2', 'omar'"),
    ({"reward_variant": "mamujoco"}, "reward_variant: unknown 'mamujoco'"),
    ({}, r"reward_variant: Spread's rewards depend.*Fix.*omar"),
    ({"reward_variant": "omar", "action_low": 1.0, "action_high": 0.0}, "action box"),
])
def test_bad_labels_are_refused_before_reading(kwargs: dict, match: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=match):
        import_npy(tmp_path / "nothing-here", "spread", **kwargs)  # no files needed


def test_files_of_another_task_are_refused_by_file_and_width(public_spread4: Path,
                                                            tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="holds 4 agents but tag has 3"):
        import_npy(public_spread4, "tag")
    three, _ = make_dataset("spread", "random", n_transitions=25)
    export_npy(three, tmp_path / "s3")
    with pytest.raises(DatasetError, match="holds 3 agents but spread4 has 4"):
        import_npy(tmp_path / "s3", "spread4", reward_variant="mpe2")
    with pytest.raises(DatasetError) as err:  # 3 agents as in tag, but Spread's widths
        import_npy(tmp_path / "s3", "tag")
    assert err.value.field == "obs_0" and "width 18" in str(err.value)


def test_cli_import_validates_labels_and_prints_how_to_train(public_spread4: Path,
                                                             tmp_path: Path, capsys) -> None:
    out = tmp_path / "imp.npz"
    base = ["data", "import", str(public_spread4), "--task", "spread", "--out", str(out)]
    for bad in (["--reward-variant", "whatever"], ["--reward-variant", "omar", "--quality",
                                                   "great"]):
        with pytest.raises(SystemExit):
            data_main(base + bad)
        assert "invalid choice" in capsys.readouterr().err and not out.exists()
    assert data_main(base) == 2  # Spread without its reward variant
    assert "reward_variant" in capsys.readouterr().err and not out.exists()
    assert data_main([*base, "--reward-variant", "omar"]) == 0
    text = capsys.readouterr().out
    assert "task spread4" in text and "--task spread4 --quality imported" in text
    assert load_dataset(out).metadata["task"] == "spread4"


def test_imported_four_agent_spread_trains_and_evaluates_in_spread4(public_spread4: Path,
                                                                   tmp_path: Path) -> None:
    from om2p_lite.rl.train import train

    path = save_dataset(import_npy(public_spread4, "spread", reward_variant="omar"),
                        tmp_path / "imp.npz")
    cfg = TrainConfig(algo="td3bc", task="spread4", quality="imported", dataset=str(path),
                      **TINY)
    summary = train(cfg)
    assert summary["finished"] and np.isfinite(summary["final"]["return"])
    assert summary["dataset"]["task"] == "spread4"
    with pytest.raises(ValueError, match="spread4"):
        train(TrainConfig(algo="bc", task="spread", quality="imported", dataset=str(path),
                          **TINY))


def test_imported_set_runs_without_evaluation(public_spread4: Path, tmp_path: Path) -> None:
    """eval_episodes = 0: no environment is built, and the run still finishes."""
    from om2p_lite.rl.train import train

    path = save_dataset(import_npy(public_spread4, "spread", reward_variant="omar"),
                        tmp_path / "imp.npz")
    cfg = TrainConfig(algo="bc", task="spread4", quality="imported", dataset=str(path),
                      **(TINY | {"eval_episodes": 0}))
    summary = train(cfg)
    assert summary["finished"] and summary["final"] is None


def test_cli_train_on_an_imported_set_writes_result_json(public_spread4: Path,
                                                         tmp_path: Path) -> None:
    from om2p_lite.cli.main import main

    data = tmp_path / "imp.npz"
    assert data_main(["data", "import", str(public_spread4), "--task", "spread", "--out",
                      str(data), "--reward-variant", "omar"]) == 0
    run = tmp_path / "run"
    flags = [f"--{k.replace('_', '-')}={str(v).lower() if isinstance(v, bool) else v}"
             for k, v in TINY.items()]
    assert main(["train", "--algo", "bc", "--task", "spread4", "--quality", "imported",
                 "--dataset", str(data), "--out-dir", str(run), *flags]) == 0
    result = json.loads((run / "result.json").read_text())
    assert result["task"] == "spread4" and result["quality"] == "imported"


def test_official_2d_forces_are_the_default_tasks_own_actions(public_spread4: Path,
                                                              tmp_path: Path) -> None:
    """--action-layout force-xy: files whose action is the 2-d force (the official OM2P
    code's MPE fork) are the default task's own actions, kept bit for bit; the same forces
    in mpe2's 5-d layout import into the mpe2 task and move every agent exactly alike."""
    from om2p_lite.data.npy_io import force_xy_to_mpe
    from om2p_lite.envs import make_env

    ds = import_npy(public_spread4, "spread", reward_variant="omar", action_layout="force-xy")
    native = import_npy(public_spread4, "spread", reward_variant="omar")
    assert ds.checksum() == native.checksum() and ds.actions.shape == (100, 4, 2)
    assert ds.metadata["action_layout"] == "force-xy"
    src = tmp_path / "five"
    src.mkdir()
    for path in public_spread4.glob("*.npy"):
        arr = np.load(path, allow_pickle=False)
        np.save(src / path.name, force_xy_to_mpe(arr) if path.name.startswith("acs_") else arr)
    five = import_npy(src, "spread", reward_variant="omar", action_layout="mpe2")
    assert five.metadata["action_layout"] == "mpe2" and five.actions.shape == (100, 4, 5)
    nexts = []
    for actions, layout in ((ds.actions[:5], "force-xy"), (five.actions[:5], "mpe2")):
        env = make_env("spread4", "omar", action_layout=layout)
        env.reset(seed=3)
        nexts.append(np.stack([env.step(a)[0] for a in actions]))
    np.testing.assert_array_equal(nexts[0], nexts[1])  # the same motion
    np.testing.assert_array_equal(force_xy_to_mpe(np.array([[0.5, -1.0]])),
                                  [[0.0, -0.5, 0.5, 1.0, -1.0]])
    with pytest.raises(DatasetError, match="acs_0.*width 2.*mpe2 reads 5-d"):
        import_npy(public_spread4, "spread", reward_variant="omar", action_layout="mpe2")
    with pytest.raises(ValueError, match="action layout 'xy' is unknown"):
        import_npy(src, "spread", reward_variant="omar", action_layout="xy")
    with pytest.raises(DatasetError, match="--action-layout force-xy names an MPE action "
                       "layout, but halfcheetah is not an MPE task"):
        import_npy(src, "halfcheetah", action_layout="force-xy")
