"""MPE's two action layouts as part of a data set's and a run's identity: force-xy (the
paper's 2-d force, the default) and mpe2 (the 5-d action every stored result was made with)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from om2p_lite.cli.data import main as data_main
from om2p_lite.data import load_dataset, save_dataset
from om2p_lite.data.generate import dataset_path, get_dataset, make_dataset
from om2p_lite.rl.config import STORED_DEFAULTS, TrainConfig, field_default, stored_value

pytest.importorskip("mpe2")

# Smoke-size (2,500 transitions, seed 0) checksums that commit 9603947, before the layouts,
# made: the mpe2 layout must go on making exactly these data.
PRE_LAYOUT_SMOKE = {
    ("spread", "expert"): "sha256:37e192f32367ccb146f33f9909791fc18a0b919e0345771fb91de5caccbaef92",
    ("tag", "medium"): "sha256:a35d7d0378a545905875e066645e7a5cee64a2eb1e6a3d74b128100627d16b3d",
    ("world", "medium-replay"):
        "sha256:f65cbf529f87dcfddcd29cba3d2626ccf2f04fb649b5825e384cf26cbdf5502a",
    ("spread4", "random"):
        "sha256:a96475b5eb2735039352a26e05d6bb135319ff1e64565f3a91a2f460fd39c4d5",
}
STORED_CONFIG = Path(__file__).resolve().parents[1] / "data" / "results" / "budget_test" / \
    "world" / "medium-replay" / "om2p" / "eta0.3" / "seed0" / "config.json"


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty data cache ($OM2P_DATA_DIR) for the test."""
    monkeypatch.setenv("OM2P_DATA_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.mark.parametrize("task, quality", sorted(PRE_LAYOUT_SMOKE))
def test_mpe2_layout_makes_the_data_of_the_stored_results_bit_for_bit(task, quality) -> None:
    ds, _ = make_dataset(task, quality, seed=0, budget="smoke", action_layout="mpe2",
                         behaviour="scripted")  # mpe2's layout has no trained policy
    assert ds.metadata["checksum"] == PRE_LAYOUT_SMOKE[(task, quality)]
    assert ds.actions.shape[2] == 5 and ds.metadata["action_layout"] == "mpe2"


@pytest.mark.parametrize("layout, width", [("force-xy", 2), ("mpe2", 5)])
def test_make_and_validate_each_layout_at_smoke_size(layout: str, width: int, cache: Path,
                                                     capsys) -> None:
    """`data make --action-layout` writes the layout's own cache name; the file validates,
    records its layout and holds every agent's action in [-1, 1] at the layout's width."""
    args = ["data", "make", "--task", "tag", "--quality", "expert", "--budget", "smoke",
            "--transitions", "100", "--behaviour", "scripted"]  # the policy is force-xy only
    assert data_main([*args, "--action-layout", layout]) == 0
    path = dataset_path("tag", "expert", 0, "smoke", action_layout=layout, behaviour="scripted")
    assert path.name == {"force-xy": "tag-expert-s0-smoke.npz",
                         "mpe2": "tag-mpe2-expert-s0-smoke.npz"}[layout]
    assert data_main(["data", "validate", str(path)]) == 0
    ds = load_dataset(path)
    assert ds.actions.shape == (100, 3, width) and ds.metadata["act_dims"] == [width] * 3
    assert ds.metadata["action_layout"] == layout and np.abs(ds.actions).max() <= 1.0
    rets = ds.episode_returns()
    assert rets.mean() > make_dataset("tag", "random", n_transitions=100, action_layout=layout,
                                      behaviour="scripted")[0].episode_returns().mean()
    assert "OK" in capsys.readouterr().out


def test_the_cache_name_marks_only_the_non_default_layout_of_mpe() -> None:
    assert dataset_path("spread", "expert", 0, "book", behaviour="scripted").name == \
        "spread-expert-s0-book.npz"
    assert dataset_path("spread", "expert", 0, "book").name == \
        "spread-td3-expert-s0-book.npz"  # the default data: the trained policy's
    assert dataset_path("spread", "expert", 0, "book", "omar", "mpe2").name == \
        "spread-omar-mpe2-expert-s0-book.npz"
    assert dataset_path("halfcheetah", "expert", 0, "book", action_layout="mpe2").name == \
        "halfcheetah-expert-s0-book.npz"
    with pytest.raises(ValueError, match="action_layout: unknown 'xy'"):
        dataset_path("spread", "expert", 0, "book", action_layout="xy")


@pytest.mark.parametrize("argv", [
    ["data", "make", "--task", "spread", "--quality", "random", "--action-layout", "xy"],
    ["data", "reference", "--action-layout", "5d"],
    ["data", "import", "src", "--task", "spread", "--out", "x.npz", "--action-layout", "xy"],
])
def test_cli_refuses_an_unknown_layout_in_one_line(argv: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as err:
        data_main(argv)
    msg = capsys.readouterr().err
    assert err.value.code == 2 and len(msg.strip().splitlines()) == 1
    assert "--action-layout" in msg and "invalid choice" in msg and "Fix:" in msg


@pytest.mark.parametrize("first", ["force-xy", "mpe2"])
def test_a_pre_layout_cache_file_moves_to_its_mpe2_name(first: str, cache: Path) -> None:
    """A 5-d (scripted) file cached before the layouts sits at the default name: asking for
    either layout moves it to the mpe2 name (kept, not remade); force-xy then makes the 2-d
    set."""
    old, _ = make_dataset("spread", "expert", seed=0, n_transitions=50, action_layout="mpe2",
                          behaviour="scripted")
    del old.metadata["action_layout"]  # as the files made before the layouts
    default = dataset_path("spread", "expert", 0, "smoke", behaviour="scripted")
    save_dataset(old, default)
    if first == "mpe2":
        assert get_dataset("spread", "expert", 0, "smoke", action_layout="mpe2",
                           behaviour="scripted").checksum() == old.checksum()
        assert not default.exists()
    new = get_dataset("spread", "expert", 0, "smoke", behaviour="scripted")
    assert new.actions.shape[2] == 2 and new.metadata["action_layout"] == "force-xy"
    moved = dataset_path("spread", "expert", 0, "smoke", action_layout="mpe2",
                         behaviour="scripted")
    assert load_dataset(moved).checksum() == old.checksum()
    assert get_dataset("spread", "expert", 0, "smoke", action_layout="mpe2",
                       behaviour="scripted").checksum() == old.checksum()
    assert load_dataset(default).checksum() == new.checksum()


def test_a_stored_config_without_the_field_is_mpe2_and_a_new_one_force_xy() -> None:
    values = json.loads(STORED_CONFIG.read_text())
    assert "action_layout" not in values  # made before the field
    assert TrainConfig.from_stored(values).action_layout == "mpe2"
    assert TrainConfig.from_stored({**values, "action_layout": "force-xy"}).action_layout == \
        "force-xy"
    assert TrainConfig().action_layout == TrainConfig.from_dict({}).action_layout == "force-xy"
    assert stored_value(values, "action_layout") == "mpe2" == STORED_DEFAULTS["action_layout"]
    assert stored_value(values, "eta") == 0.3 and stored_value({}, "eta") == field_default("eta")
    assert field_default("action_layout") == "force-xy"
    with pytest.raises(ValueError, match="config field 'action_layout': unknown MPE action "
                       "layout 'xy'. Fix: use one of"):
        TrainConfig(action_layout="xy").validate()


def test_an_old_run_regenerates_its_old_5d_data(cache: Path) -> None:
    """load_data and sweep_convergence read a stored config.json without the field as mpe2:
    the data set they make is the one the run trained on (smoke size here)."""
    from om2p_lite.book.evidence import sweep_convergence
    from om2p_lite.data.run_data import load_data
    from om2p_lite.rl.convergence import mc_returns

    values = json.loads(STORED_CONFIG.read_text()) | {"data_budget": "smoke"}
    ds = load_data(TrainConfig.from_stored(values))
    assert ds.metadata["checksum"] == PRE_LAYOUT_SMOKE[("world", "medium-replay")]
    run = cache.parent / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps(values))
    runs = pd.DataFrame({"task": ["world"], "quality": ["medium-replay"], "path": [str(run)]})
    logs = pd.DataFrame({"task": ["world"], "quality": ["medium-replay"], "algo": ["om2p"],
                         "variant": ["eta0.3"], "seed": [0], "step": [10], "q_data": [1.0],
                         "q_pi": [1.5]})
    out = sweep_convergence(runs, logs)
    assert out["mc"].item() == pytest.approx(float(mc_returns(ds, values["gamma"]).mean()))
    with pytest.raises(ValueError, match="holds mpe2 actions .* Fix: set action_layout = "
                       "'mpe2'"):
        load_data(TrainConfig.from_dict(values | {"dataset": str(
            save_dataset(ds, cache / "old.npz"))}))


def test_references_are_per_layout_and_an_old_table_is_mpe2(tmp_path: Path) -> None:
    from om2p_lite.data.reference import (
        REFERENCE_CSV,
        merge_rows,
        normalized_score,
        read_reference,
        write_reference,
    )

    def rows(layout: str | None, lo: float, hi: float) -> list[dict]:
        extra = {} if layout is None else {"action_layout": layout}
        return [{"task": "tag", "reward_variant": "mpe2", "quality": q, "budget": "smoke",
                 "seed": 0, "episodes": 10, "return_mean": m, "return_std": 1.0,
                 "checksum": "x", **extra} for q, m in (("random", lo), ("expert", hi))]

    old = write_reference(rows(None, 0.0, 10.0), tmp_path / "old.csv")  # no layout column
    assert {r["action_layout"] for r in read_reference(old)} == {"mpe2"}
    assert normalized_score("tag", 5.0, path=old, action_layout="mpe2") == pytest.approx(50.0)
    with pytest.raises(KeyError, match=r"tag \(mpe2, force-xy actions\).*data reference "
                       r"--behaviour scripted`"):  # force-xy data have no reference there
        normalized_score("tag", 5.0, path=old, behaviour="scripted")
    both = merge_rows(read_reference(old), rows("force-xy", 2.0, 4.0))
    path = write_reference(both, tmp_path / "both.csv")
    assert normalized_score("tag", 3.0, path=path, behaviour="scripted") == pytest.approx(50.0)
    assert normalized_score("tag", 3.0, path=path, action_layout="mpe2") == pytest.approx(30.0)
    assert len(merge_rows(both, rows("mpe2", 1.0, 2.0))) == 4  # replaces only mpe2's rows
    shipped = read_reference(REFERENCE_CSV)
    assert {(r["task"], r["action_layout"]) for r in shipped if r["task"] == "halfcheetah"} \
        == {("halfcheetah", "native")}
    assert {r["action_layout"] for r in shipped if r["task"] != "halfcheetah"} >= {"mpe2"}


def test_import_keeps_the_files_columns_in_the_task_of_their_layout(tmp_path: Path) -> None:
    """2-d forces (the official data) are the default task's own actions; 5-d files are the
    mpe2 task's; native tells them apart by width; a wrong width names the right flag."""
    from om2p_lite.data.errors import DatasetError
    from om2p_lite.data.npy_io import export_npy, import_npy

    for layout, width in (("force-xy", 2), ("mpe2", 5)):
        ds, _ = make_dataset("spread", "expert", n_transitions=50, action_layout=layout)
        export_npy(ds, tmp_path / layout)
        for flag in (layout, "native"):
            back = import_npy(tmp_path / layout, "spread", reward_variant="mpe2",
                              action_layout=flag)
            assert back.checksum() == ds.checksum() and back.actions.shape[2] == width
            assert back.metadata["action_layout"] == layout
    with pytest.raises(DatasetError, match="acs_0.*width 5, but --action-layout force-xy "
                       "reads 2-d actions.*Fix: use --action-layout mpe2"):
        import_npy(tmp_path / "mpe2", "spread", reward_variant="mpe2", action_layout="force-xy")
    with pytest.raises(DatasetError, match="width 2, but --action-layout mpe2.*force-xy"):
        import_npy(tmp_path / "force-xy", "spread", reward_variant="mpe2", action_layout="mpe2")


def test_train_refuses_an_unknown_layout_in_one_line(capsys) -> None:
    from om2p_lite.cli.main import main

    assert main(["train", "--algo", "bc", "--task", "spread", "--action-layout", "xy",
                 "--steps", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "action_layout" in err[0] and "Fix: use one of" in err[0]
