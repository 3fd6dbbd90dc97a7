"""Experiments: TOML validation, run folders and variants, populations, skipping finished
runs, failures recorded without stopping the grid, filesystem errors, provenance."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest

from om2p_lite.rl import rundir, scheduler, spec
from om2p_lite.rl.config import TrainConfig
from om2p_lite.rl.rundir import RunFileError, RunFolder

TINY = dict(steps=4, batch_size=8, hidden=8, depth=1, critic_hidden=8, critic_depth=1,
            eval_episodes=2, eval_max_steps=5, log_every=2, progress=False, threads=1)


def doc_of(root: Path, data: Path, algos=("bc",), seeds=(0, 1), **extra) -> dict:
    return {"results_dir": str(root),
            "grid": {"algos": list(algos), "tasks": ["spread"], "qualities": ["expert"],
                     "seeds": list(seeds)},
            "config": TINY | {"dataset": str(data)}, **extra}


def write_toml(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


GRID = '[grid]\nalgos = ["bc"]\ntasks = ["spread"]\nqualities = ["expert"]\nseeds = [0]\n'


@pytest.mark.parametrize("text, match", [
    ('result_dir = "x"\n' + GRID, r"unknown key\(s\) \['result_dir'\].*results_dir"),
    ('results_dir = 3\n' + GRID, "results_dir: must be a folder name"),
    ("[config]\nsteps = 3\n", "grid: missing"),
    (GRID.replace("seeds = [0]", "seed = [0]"), r"unknown key\(s\) \['seed'\]"),
    (GRID.replace("seeds = [0]", 'seeds = ["0"]'), "grid.seeds: must hold integers"),
    (GRID.replace("seeds = [0]", "seeds = [0, 0]"), r"grid.seeds: lists \['0'\] more"),
    (GRID.replace("seeds = [0]", "seeds = []"), "grid.seeds: must be a non-empty list"),
    (GRID.replace('algos = ["bc"]', 'algos = "bc"'), "grid.algos: must be a non-empty"),
    (GRID + "[config]\nlearning_rate = 1.0\n", "config: unknown config field"),
    (GRID + "[config]\nseed = 3\n", r"config: sets \['seed'\]"),
    ("config = 3\n" + GRID, "config: must be a table"),
    (GRID + "[algo.sac]\neta = 1.0\n", "algo.sac: unknown algorithm"),
    (GRID + "[variants]\n", "variants: must be a non-empty table"),
    (GRID + '[variants]\n"a b" = {eta = 1.0}\n', "variants.a b: name has characters"),
    (GRID + "[variants]\na = 3\n", "variants.a: must be a table"),
    (GRID + "[variants]\na = {task = 'tag'}\n", r"variants.a: sets \['task'\]"),
    (GRID + "[variants]\na = {etaa = 1.0}\n", "variants.a: unknown config field"),
    ("[grid\n", "not valid TOML"),
    (GRID + '[config]\nsteps = "five"\n', "config: config field 'steps': expected an integer"),
    (GRID + "[algo.bc]\nlr = true\n", "algo.bc: config field 'lr': expected a number"),
    (GRID + "[variants]\na = {q_norm = 1}\n", "variants.a: config field 'q_norm': expected"),
    (GRID + "[variants]\na = {eta = 1.0, algos = ['om2p']}\n",
     r"variants.a.algos: must be a non-empty list of the grid's algorithms, got \['om2p'\]"),
    (GRID + "[variants]\na = {eta = 1.0, algos = []}\n", "variants.a.algos: must be"),
    (GRID.replace("seeds = [0]", 'seeds = [0]\nexclude = ["spread/expert/cql"]'),
     r"grid.exclude: must list task/quality/algo cells of the grid, got \['spread/exp"),
    (GRID.replace("seeds = [0]", 'seeds = [0]\nexclude = ["spread/expert/bc", '
                  '"spread/expert/bc"]'), "grid.exclude: lists a cell more than once"),
])
def test_bad_experiment_files_name_the_key_and_the_fix(tmp_path: Path, text: str,
                                                       match: str) -> None:
    path = write_toml(tmp_path / "exp.toml", text)
    with pytest.raises(ValueError, match=match) as err:
        spec.load_experiment(path)
    assert str(path) in str(err.value) and "Fix:" in str(err.value)


def test_missing_file_and_folder_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        spec.load_experiment(tmp_path / "nope.toml")
    with pytest.raises(ValueError, match="is a folder, not a TOML file"):
        spec.load_experiment(tmp_path)


def test_runs_folders_order_variants_and_overrides(tmp_path: Path) -> None:
    doc = {"results_dir": str(tmp_path / "r"),
           "grid": {"algos": ["om2p", "bc"], "tasks": ["spread"], "qualities": ["expert"],
                    "seeds": [0, 1]},
           "config": {"steps": 10, "eta": 0.3}, "algo": {"om2p": {"eta": 0.7}}}
    runs = spec.experiment_runs(doc)
    assert [(c.seed, c.algo) for c in runs] == [(0, "om2p"), (0, "bc"), (1, "om2p"), (1, "bc")]
    assert runs[0].out_dir == str(tmp_path / "r/spread/expert/om2p/seed0")
    assert runs[0].eta == 0.7 and runs[1].eta == 0.3  # [algo.NAME] after [config]

    doc["variants"] = {"eta0": {"eta": 0.0}, "dr=1e-2": {"dr": 1e-2}}
    runs = spec.experiment_runs(doc, results_dir=tmp_path / "other", overrides={"steps": 3})
    assert len(runs) == 8 and all(c.steps == 3 for c in runs)
    assert runs[0].out_dir == str(tmp_path / "other/spread/expert/om2p/eta0/seed0")
    assert runs[1].out_dir == str(tmp_path / "other/spread/expert/om2p/dr=1e-2/seed0")
    assert (runs[0].eta, runs[1].eta, runs[1].dr) == (0.0, 0.7, 1e-2)  # variant after algo
    with pytest.raises(ValueError, match=r"overrides: sets \['seed'\]"):
        spec.experiment_runs(doc, overrides={"seed": 4})
    with pytest.raises(ValueError, match="run .*seed0: config field 'eta'"):
        spec.experiment_runs(doc, overrides={"eta": -1.0})


def test_variants_limited_to_algorithms_and_excluded_cells(tmp_path: Path) -> None:
    doc = {"results_dir": str(tmp_path / "r"),
           "grid": {"algos": ["om2p", "bc", "cql"], "tasks": ["spread", "world"],
                    "qualities": ["expert"], "seeds": [0],
                    "exclude": ["spread/expert/cql"]},
           "variants": {"eta0.3": {"eta": 0.3, "algos": ["om2p"]},
                        "eta3": {"eta": 3.0, "algos": ["om2p"]}}}
    runs = spec.runs_of(doc)
    got = [(r.cfg.task, r.cfg.algo, r.variant, r.cfg.eta) for r in runs]
    assert got == [("spread", "om2p", "eta0.3", 0.3), ("spread", "om2p", "eta3", 3.0),
                   ("spread", "bc", None, 1.0), ("world", "om2p", "eta0.3", 0.3),
                   ("world", "om2p", "eta3", 3.0), ("world", "bc", None, 1.0),
                   ("world", "cql", None, 1.0)]
    assert runs[2].out_dir == str(tmp_path / "r/spread/expert/bc/seed0")  # no variant level


def test_variant_cells_choose_a_setting_per_data_set(tmp_path: Path) -> None:
    doc = {"results_dir": str(tmp_path / "r"),
           "grid": {"algos": ["om2p", "bc"], "tasks": ["spread", "world"],
                    "qualities": ["expert", "medium"], "seeds": [0]},
           "variants": {"eta=0.3": {"eta": 0.3, "algos": ["om2p"],
                                    "cells": ["spread/expert", "world/medium"]},
                        "eta=3": {"eta": 3.0, "algos": ["om2p"], "cells": ["world/expert"]}}}
    got = [(r.cfg.task, r.cfg.quality, r.cfg.algo, r.variant, r.cfg.eta)
           for r in spec.runs_of(doc)]
    assert got == [("spread", "expert", "om2p", "eta=0.3", 0.3),
                   ("spread", "expert", "bc", None, 1.0),
                   ("spread", "medium", "bc", None, 1.0),  # no η chosen: no OM2P run
                   ("world", "expert", "om2p", "eta=3", 3.0),
                   ("world", "expert", "bc", None, 1.0),
                   ("world", "medium", "om2p", "eta=0.3", 0.3),
                   ("world", "medium", "bc", None, 1.0)]
    for bad in (["tag/expert"], [], "spread/expert", ["world/expert", "world/expert"]):
        doc["variants"]["eta=3"]["cells"] = bad
        with pytest.raises(ValueError, match=r"variants\.eta=3\.cells: must list.*Fix"):
            spec.runs_of(doc)


def test_plan_groups_runs_by_population_key_capped(tmp_path: Path, monkeypatch) -> None:
    doc = {"grid": {"algos": ["om2p", "bc"], "tasks": ["spread"], "qualities": ["expert"],
                    "seeds": [0, 1, 2]}}
    monkeypatch.setattr(scheduler, "population_key", lambda cfg: (cfg.algo,))
    plan = scheduler.plan_experiment(doc, results_dir=tmp_path, max_members=2)
    sizes = [[(r.cfg.algo, r.cfg.seed) for r in g] for g in plan.populations]
    assert sizes == [[("om2p", 0), ("om2p", 1)], [("om2p", 2)], [("bc", 0), ("bc", 1)],
                     [("bc", 2)]]
    assert plan.headline() == "6 runs, 0 finished, 6 to do"
    with pytest.raises(ValueError, match="max_members"):
        scheduler.plan_experiment(doc, results_dir=tmp_path, max_members=0)


def test_run_experiment_writes_results_and_skips_finished(tmp_path: Path, dataset_path,
                                                          capsys) -> None:
    doc = doc_of(tmp_path / "res", dataset_path, variants={"a": {"lr": 1e-3}})
    results = scheduler.run_experiment(doc, progress=True)
    assert [(r["seed"], r["variant"]) for r in results] == [(0, "a"), (1, "a")]
    out = capsys.readouterr().out
    assert "2 runs, 0 finished, 2 to do" in out and "[2/2]" in out
    folder = tmp_path / "res/spread/expert/bc/a/seed0"
    on_disk = json.loads((folder / "result.json").read_text())
    assert on_disk["variant"] == "a" and on_disk["config"]["lr"] == 1e-3
    assert not (folder / "checkpoint.pt").exists()  # deleted unless kept
    # provenance and config carry no absolute path of this machine
    text = json.dumps(on_disk)
    for prefix in ("/tmp", "/home", "/work", str(tmp_path)):
        assert prefix not in text, prefix
    assert on_disk["config"]["out_dir"] == "seed0"  # outside the checkout: its name only
    mtime = (folder / "result.json").stat().st_mtime_ns
    again = scheduler.run_experiment(doc, progress=True)
    assert "2 runs, 2 finished, 0 to do" in capsys.readouterr().out
    assert again == results and (folder / "result.json").stat().st_mtime_ns == mtime


def test_invalid_result_is_refused_and_other_settings_are_refused(tmp_path: Path,
                                                                  dataset_path, capsys) -> None:
    doc = doc_of(tmp_path / "res", dataset_path, seeds=(0,))
    scheduler.run_experiment(doc)
    result = tmp_path / "res/spread/expert/bc/seed0/result.json"
    result.write_text('{"return": NaN')  # damaged: refused, never run over
    log = (result.parent / "log.jsonl").read_bytes()
    with pytest.raises(RunFileError, match="result.json: not valid JSON.*Fix: delete it"):
        scheduler.run_experiment(doc)
    assert result.read_text() == '{"return": NaN' and (result.parent / "log.jsonl"
                                                        ).read_bytes() == log
    result.unlink()  # the fix: the grid remakes it
    assert scheduler.plan_experiment(doc).headline() == "1 runs, 0 finished, 1 to do"
    scheduler.run_experiment(doc)
    assert RunFolder(result.parent).read_result()["return"] is not None
    # fields only OM2P reads do not make a baseline's (here BC's) result stale
    other = doc | {"config": doc["config"] | {"xi": "beta55", "dr": 1e-2, "sample_steps": 3}}
    assert scheduler.plan_experiment(other).headline() == "1 runs, 1 finished, 0 to do"
    doc["config"] = doc["config"] | {"lr": 0.5}
    with pytest.raises(scheduler.ExperimentFailed, match=r"made with other settings \(\['lr'\]"):
        scheduler.run_experiment(doc)
    assert RunFolder(result.parent).read_result()["config"]["lr"] != 0.5  # nothing overwritten


def test_one_failing_run_is_recorded_and_the_grid_goes_on(tmp_path: Path, dataset_path,
                                                          monkeypatch, capsys) -> None:
    real = scheduler.train_population

    def flaky(cfgs: list[TrainConfig]) -> list[dict]:
        if any(c.seed == 1 for c in cfgs):
            raise TypeError("unsupported operand type(s)")  # a bug, not bad input
        return real(cfgs)

    monkeypatch.setattr(scheduler, "train_population", flaky)
    monkeypatch.setattr(scheduler, "population_key", lambda cfg: (cfg.algo,))  # one population
    doc = doc_of(tmp_path / "res", dataset_path, seeds=(0, 1, 2))
    with pytest.raises(scheduler.ExperimentFailed) as err:
        scheduler.run_experiment(doc, progress=True)
    failed = str(tmp_path / "res/spread/expert/bc/seed1")
    assert list(err.value.failures) == [failed]
    assert "TypeError: unsupported operand" in err.value.failures[failed]
    assert [r["seed"] for r in err.value.results] == [0, 2]  # retried member by member
    status = json.loads((Path(failed) / "status.json").read_text())
    assert status["status"] == "failed" and "TypeError" in status["error"]
    out = capsys.readouterr().out
    assert f"{failed}: FAILED: TypeError" in out and "failed: 1 of 3 runs" in out


def test_filesystem_problems_name_the_path_and_the_fix(tmp_path: Path, dataset_path) -> None:
    blocker = tmp_path / "res"
    blocker.write_text("a file where the results folder should be")
    doc = doc_of(blocker, dataset_path)
    with pytest.raises(ValueError, match=f"results_dir {blocker}: is a file. Fix: move or "
                                         f"delete {blocker}"):
        scheduler.run_experiment(doc)
    blocker.unlink()
    (blocker / "spread").mkdir(parents=True)
    (blocker / "spread/expert").write_text("")
    with pytest.raises(ValueError, match=f"needs {blocker / 'spread/expert'} to be a folder"):
        scheduler.run_experiment(doc)
    err = rundir.describe_os_error(PermissionError(13, "Permission denied", "/x/y"))
    assert err.startswith("/x/y: Permission denied. Fix: make it writable")


def test_unwritable_results_dir_is_refused(tmp_path: Path, dataset_path,
                                           monkeypatch) -> None:
    # as if the folder were someone else's (chmod cannot show it: root writes anywhere)
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    with pytest.raises(ValueError, match=rf"cannot write in {tmp_path} \(permission denied\)"
                                         r"\. Fix: make it writable"):
        scheduler.run_experiment(doc_of(tmp_path / "res", dataset_path))


def test_record_paths_are_repository_relative() -> None:
    from om2p_lite.runtime.record import portable_command, portable_path, repo_root

    root = repo_root()
    assert root is not None
    assert portable_path(root / "data/results/main.toml") == "data/results/main.toml"
    assert portable_path("data/x.npz") == "data/x.npz"
    assert portable_path("/somewhere/else/run7") == "run7"
    cmd = portable_command(["python", "-m", "om2p_lite", "grid", "--experiment",
                            str(root / "exp.toml"), "--out-dir=/tmp/q/run"])
    assert cmd == "python -m om2p_lite grid --experiment exp.toml --out-dir=run"
    assert portable_command(f"{root}/bench/x.py --n 3") == "bench/x.py --n 3"


def test_results_table_marks_dirty_runs_and_splits_variants(tmp_path: Path) -> None:
    import pandas as pd

    from om2p_lite.rl.results import (
        DIRTY_MARK,
        load_results,
        results_table,
        table_html,
        table_markdown,
    )

    def put(algo: str, seed: int, ret: float, commit: str, variant: str | None = None):
        folder = tmp_path / algo / (variant or "") / f"seed{seed}"
        folder.mkdir(parents=True)
        (folder / "result.json").write_text(json.dumps({
            "task": "spread", "quality": "expert", "algo": algo, "seed": seed,
            "variant": variant, "return": ret, "config": {"steps": 4},
            "provenance": {"git_commit": commit}}))

    put("om2p", 0, 2.0, "abc-dirty")
    put("om2p", 1, 4.0, "abc")
    put("bc", 0, 1.0, "abc")
    df = load_results(tmp_path)
    assert (df["variant"] == "").all()  # a run without a variant, as the book reads it
    assert df["dirty"].tolist() == [False, True, False]  # bc, om2p seed 0, om2p seed 1
    table = results_table(df)
    assert table.loc[("spread", "expert"), "om2p"] == f"**3.0 ± 1.0**{DIRTY_MARK}"
    assert table.loc[("spread", "expert"), "bc"] == "1.0 ± 0.0"
    assert table_markdown(table).endswith(table.attrs["footnote"])
    assert "uncommitted" in table_html(table)

    put("om2p", 0, 5.0, "abc", variant="eta0")
    df = load_results(tmp_path)
    assert set(results_table(df).columns) == {"om2p", "om2p/eta0", "bc"}
    clean = results_table(pd.DataFrame({"task": ["spread"], "quality": ["expert"],
                                        "algo": ["bc"], "seed": [0], "return": [1.0]}))
    assert "footnote" not in clean.attrs and DIRTY_MARK not in table_markdown(clean)

    (tmp_path / "bc/seed0/result.json").write_text("{")
    with pytest.raises(ValueError, match="result.json: not valid JSON.*Fix: delete it"):
        load_results(tmp_path)
    with pytest.raises(ValueError, match="is a file, not a results folder. Fix:"):
        load_results(tmp_path / "bc/seed0/result.json")
    with pytest.raises(FileNotFoundError, match="no such results folder. Fix:"):
        load_results(tmp_path / "nothing")


def test_a_diverging_member_fails_alone(tmp_path: Path, dataset_path) -> None:
    """η = 1e38 overflows one member of the population; the others finish, unchanged."""
    doc = doc_of(tmp_path / "res", dataset_path, algos=("om2p",), seeds=(0,),
                 variants={"ok": {"eta": 1.0}, "huge": {"eta": 1e38}})
    assert len(scheduler.plan_experiment(doc).populations) == 1
    with pytest.raises(scheduler.ExperimentFailed) as err:
        scheduler.run_experiment(doc)
    huge = str(tmp_path / "res/spread/expert/om2p/huge/seed0")
    assert list(err.value.failures) == [huge] and "non-finite" in err.value.failures[huge]
    assert json.loads((Path(huge) / "status.json").read_text())["status"] == "failed"
    alone = scheduler.run_experiment(doc | {"variants": {"ok": {"eta": 1.0}}},
                              results_dir=tmp_path / "alone")
    assert [r["return"] for r in err.value.results] == [alone[0]["return"]]


def test_a_result_is_stale_only_for_fields_its_algorithm_reads() -> None:
    def result(algo: str, **fields) -> dict:
        return {"config": dataclasses.asdict(TrainConfig(algo=algo, **fields))}

    assert scheduler.stale_fields(result("bc", eta=3.0, critic_hidden=8),
                                  TrainConfig(algo="bc")) == []
    assert scheduler.stale_fields(result("om2p", eta=3.0), TrainConfig(algo="om2p")) == ["eta"]
    assert scheduler.stale_fields(result("td3bc", flow_steps=2, alpha=1.0),
                        TrainConfig(algo="td3bc")) == ["alpha"]
    assert scheduler.stale_fields(result("omar", cql_alpha=2.0, threads=2),
                        TrainConfig(algo="omar")) == ["cql_alpha"]
    assert scheduler.stale_fields(result("bc", lr=1e-2), TrainConfig(algo="bc")) == ["lr"]
