"""The trainer: bad configs fail clearly, stop + resume equals no stop, OM2P improves on
Spread, and the CLI trains, evaluates, runs a grid (skipping finished runs) and tables it."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from om2p_lite.cli.main import main
from om2p_lite.data.run_data import check_dataset
from om2p_lite.rl.config import TrainConfig
from om2p_lite.rl.results import results_table, table_markdown
from om2p_lite.rl.train import train

SMALL = dict(batch_size=16, hidden=32, depth=2, critic_hidden=32, critic_depth=2,
             eval_episodes=2, log_every=1, progress=False)


@pytest.fixture(scope="module")
def spread_expert():
    from om2p_lite.data.generate import make_dataset

    return make_dataset("spread", "expert", 0, n_transitions=1000)[0]


@pytest.mark.parametrize("field, value, match", [
    ("eta", -0.1, "eta"), ("dr", 0.0, "Δr"), ("dr", -1e-3, "Δr"),
    ("task", "pong", "unknown task"), ("algo", "sac", "unknown algorithm"),
    ("estimator", "magic", "estimator"), ("xi", "1,2", "ξ|xi"), ("ratio", 1.5, "ratio"),
    ("stop_at", 5, "stop_at"), ("quality", "great", "quality")])
def test_bad_config_gives_clear_error(field: str, value, match: str) -> None:
    cfg = dataclasses.replace(TrainConfig(steps=5), **{field: value})
    with pytest.raises(ValueError, match=match) as err:
        cfg.validate()
    assert "Fix" in str(err.value) or "choose" in str(err.value) or "use" in str(err.value)


def test_budget_presets_validate() -> None:
    from om2p_lite.rl.config import budget_config
    from om2p_lite.runtime.budget import PRESETS

    for name in PRESETS:
        assert budget_config(name, algo="bc").algo == "bc"
    with pytest.raises(ValueError, match="unknown budget"):
        budget_config("huge")


def test_dataset_of_another_task_is_rejected(spread_expert) -> None:
    with pytest.raises(ValueError, match="task 'spread'.*Fix"):
        check_dataset(spread_expert, TrainConfig(task="tag", quality="expert"))
    with pytest.raises(ValueError, match="quality"):
        check_dataset(spread_expert, TrainConfig(task="spread", quality="random"))
    with pytest.raises(ValueError, match="unknown config field"):
        TrainConfig.from_dict({"learning_rate": 1.0})


@pytest.mark.parametrize("algo", ["om2p", "td3bc"])
def test_stop_and_resume_is_bit_identical(algo: str, spread_expert, tmp_path: Path) -> None:
    base = TrainConfig(algo=algo, steps=8, eval_every=4, checkpoint_every=0, **SMALL)
    whole = train(dataclasses.replace(base, out_dir=str(tmp_path / "whole")),
                  dataset=spread_expert)
    split_dir = str(tmp_path / "split")
    first = train(dataclasses.replace(base, out_dir=split_dir, stop_at=5), dataset=spread_expert)
    assert not first["finished"] and (tmp_path / "split" / "checkpoint.pt").exists()
    resumed = train(dataclasses.replace(base, out_dir=split_dir), dataset=spread_expert)
    assert resumed["finished"]
    with pytest.raises(ValueError, match="different config"):
        train(dataclasses.replace(base, out_dir=split_dir, lr=1e-2), dataset=spread_expert)
    for (name, p), q in zip(whole["agent"].state_dict().items(),
                            resumed["agent"].state_dict().values(), strict=True):
        assert torch.equal(p, q), name

    def rows(d: str) -> list[dict]:
        lines = (Path(d) / "log.jsonl").read_text().splitlines()
        return [{k: v for k, v in json.loads(x).items() if k != "wall_s"} for x in lines]

    assert rows(str(tmp_path / "whole")) == rows(split_dir)


def test_eval_episodes_zero_trains_to_the_end_without_evaluating(spread_expert, tmp_path: Path,
                                                                 monkeypatch) -> None:
    import om2p_lite.rl.evaluate as evaluate

    def refuse(*args, **kwargs):
        raise AssertionError("evaluated although eval_episodes = 0")

    monkeypatch.setattr(evaluate, "evaluate_population", refuse)
    cfg = TrainConfig(algo="om2p", steps=4, eval_every=2, out_dir=str(tmp_path / "run"),
                      **{**SMALL, "eval_episodes": 0})
    summary = train(cfg, dataset=spread_expert)
    assert summary["finished"] and summary["final"] is None and summary["evals"] == []
    metrics = pd.read_csv(tmp_path / "run" / "metrics.csv")
    assert set(metrics["kind"]) == {"train"} and metrics["step"].max() == 4


def test_short_om2p_run_improves_return_on_spread(spread_expert) -> None:
    cfg = TrainConfig(algo="om2p", steps=200, batch_size=128, hidden=64, depth=2,
                      critic_hidden=64, critic_depth=2, lr=1e-3, eval_every=200,
                      eval_episodes=10, log_every=50, progress=False)
    evals = train(cfg, dataset=spread_expert)["evals"]
    assert evals[0]["step"] == 0 and evals[-1]["step"] == 200
    assert evals[-1]["return"] > evals[0]["return"] + 1.0, evals


def test_cli_train_evaluate_grid_table(tmp_path: Path, spread_expert, capsys) -> None:
    from om2p_lite.data import save_dataset

    data = save_dataset(spread_expert, tmp_path / "spread.npz")
    run = tmp_path / "run"
    flags = ["--steps", "3", "--batch-size", "8", "--hidden", "8", "--depth", "1",
             "--critic-hidden", "8", "--critic-depth", "1", "--eval-episodes", "2",
             "--progress", "false", "--dataset", str(data)]
    assert main(["train", "--algo", "bc", "--out-dir", str(run), *flags]) == 0
    result = json.loads((run / "result.json").read_text())
    for key in ("command", "seed", "device", "git_commit", "torch"):
        assert key in result["provenance"], key
    assert main(["evaluate", "--run", str(run), "--episodes", "2"]) == 0
    assert main(["train", "--eta", "-1", *flags]) == 2
    assert "eta" in capsys.readouterr().err

    exp = tmp_path / "exp.toml"
    exp.write_text(f'results_dir = "{tmp_path / "results"}"\n'
                   '[grid]\nalgos = ["om2p", "bc"]\ntasks = ["spread"]\n'
                   'qualities = ["expert"]\nseeds = [0, 1]\n'
                   f'[config]\nsteps = 2\nbatch_size = 8\nhidden = 8\ndepth = 1\n'
                   f'critic_hidden = 8\ncritic_depth = 1\neval_episodes = 2\n'
                   f'progress = false\ndataset = "{data}"\n[algo.om2p]\neta = 0.5\n')
    assert main(["grid", "--experiment", str(exp)]) == 0
    out = capsys.readouterr().out
    assert "4 runs, 0 finished, 4 to do" in out
    assert main(["grid", "--experiment", str(exp)]) == 0
    assert "4 runs, 4 finished, 0 to do" in capsys.readouterr().out
    assert main(["table", "--results", str(tmp_path / "results")]) == 0
    assert "| spread | expert |" in capsys.readouterr().out


def test_results_table_marks_best_in_bold() -> None:
    df = pd.DataFrame({"task": ["spread"] * 4, "quality": ["expert"] * 4,
                       "algo": ["om2p", "om2p", "bc", "bc"], "seed": [0, 1, 0, 1],
                       "return": [2.0, 4.0, 1.0, 1.0]})
    table = results_table(df)
    assert table.loc[("spread", "expert"), "om2p"] == "**3.0 ± 1.0**"
    assert table.loc[("spread", "expert"), "bc"] == "1.0 ± 0.0"
    assert "| spread | expert | **3.0 ± 1.0** | 1.0 ± 0.0 |" in table_markdown(table)
    from om2p_lite.rl.results import add_normalised

    norm = add_normalised(df.assign(normalised=np.nan), {"spread": (1.0, 3.0)})
    assert norm["normalised"].tolist() == [50.0, 150.0, 0.0, 0.0]


def test_results_table_html_bolds_the_best_cell():
    import pandas as pd

    from om2p_lite.rl.results import results_table, table_html

    df = pd.DataFrame({"task": ["spread"] * 4, "quality": ["expert"] * 4,
                       "algo": ["om2p", "om2p", "bc", "bc"], "seed": [0, 1, 0, 1],
                       "return": [-10.0, -12.0, -20.0, -22.0]})
    html = table_html(results_table(df))
    assert "<b>-11.0 ± 1.0</b>" in html and "<b>-21.0" not in html and "**" not in html


def test_grid_runs_through_a_local_dask_cluster(tmp_path: Path, spread_expert, capsys) -> None:
    pytest.importorskip("dask.distributed")
    from om2p_lite.data import save_dataset

    data = save_dataset(spread_expert, tmp_path / "spread.npz")
    exp = tmp_path / "exp.toml"
    exp.write_text(f'results_dir = "{tmp_path / "results"}"\n'
                   '[grid]\nalgos = ["bc"]\ntasks = ["spread"]\n'
                   'qualities = ["expert"]\nseeds = [0, 1]\n'
                   f'[config]\nsteps = 2\nbatch_size = 8\nhidden = 8\ndepth = 1\n'
                   f'critic_hidden = 8\ncritic_depth = 1\neval_episodes = 2\n'
                   f'progress = false\ndataset = "{data}"\n')
    assert main(["grid", "--experiment", str(exp), "--dask", "local:2"]) == 0
    assert len(list((tmp_path / "results").rglob("result.json"))) == 2
    assert main(["grid", "--experiment", str(exp), "--dask", "local:2"]) == 0  # nothing to do
    assert "2 runs, 2 finished, 0 to do" in capsys.readouterr().out
    (next((tmp_path / "results").rglob("result.json"))).unlink()
    assert main(["grid", "--experiment", str(exp), "--dask", "local:x"]) == 2
    assert "local:N" in capsys.readouterr().err
