"""The run and learning-curve frames (``rl.results``, ``book.curves``), their statistics
(``book.stats``), sentences (``book.claims``) and sweeps (``book.sweeps``) on hand-made run
folders whose answers are known, and on a real two-run experiment."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from om2p_lite.book import claims, curves, stats, sweeps
from om2p_lite.rl import results
from om2p_lite.runtime import device

EXPERIMENT = {
    "results_dir": "unused",
    "grid": {"algos": ["om2p"], "tasks": ["world"], "qualities": ["expert"],
             "seeds": [0, 1, 2]},
    "variants": {"jvp": {"estimator": "jvp"}, "zero": {"estimator": "zero"},
                 "fd_1e-3": {"estimator": "fd", "dr": 1e-3},
                 "fd_1e-8": {"estimator": "fd", "dr": 1e-8}},
}
# final return of each (variant, seed); curves are 0 at step 0, half at 50, final at 100
FINAL = {"jvp": [10.0, 11.0, 12.0], "zero": [10.5, 11.5, 12.5], "fd_1e-3": [10.0, 11.0, 12.0],
         "fd_1e-8": [0.0, 1.0, 2.0]}
ZERO_FRAC = {"jvp": 0.0, "zero": 1.0, "fd_1e-3": 0.0, "fd_1e-8": 0.8}


def write_run(folder: Path, variant: str, seed: int, final: float | None,
              status: str | None = None) -> None:
    fields = EXPERIMENT["variants"][variant]
    cfg = {"algo": "om2p", "task": "world", "quality": "expert", "seed": seed,
           "estimator": fields["estimator"], "dr": fields.get("dr", 1e-3), "eta": 1.0,
           "steps": 100}
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(cfg))
    if status:
        (folder / "status.json").write_text(json.dumps({"status": status, "step": 50,
                                                        "error": "loss is NaN"}))
    if final is None:
        return
    evals = [{"step": s, "kind": "eval", "return": final * s / 100, "return_std": 1.0,
              "normalised": final * s, "wall_s": 0.1} for s in (0, 50, 100)]
    train = [{"step": s, "kind": "train", "mf_loss": 1.0, "du_dr_zero_frac": ZERO_FRAC[variant],
              "wall_s": 0.1} for s in (50, 100)]
    pd.DataFrame(train + evals).to_csv(folder / "metrics.csv", index=False)
    result = {"task": "world", "quality": "expert", "algo": "om2p", "variant": variant,
              "seed": seed, "return": final, "normalised": final * 100,
              "s_per_step": 0.01 * (2 if variant == "jvp" else 1), "wall_s": 1.0,
              "evals": evals, "config": cfg, "provenance": {}}
    (folder / "result.json").write_text(json.dumps(result))


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    for variant, finals in FINAL.items():
        for seed, final in enumerate(finals):
            write_run(tmp_path / "world" / "expert" / "om2p" / variant / f"seed{seed}",
                      variant, seed, final)
    return tmp_path


def test_runs_curves_and_logs_are_tidy(root: Path):
    runs = results.load_runs(root)
    assert len(runs) == 12 and set(runs["status"]) == {"finished"}
    assert runs.loc[runs["variant"] == "fd_1e-8", "dr"].unique().tolist() == [1e-8]
    cur = curves.load_curves(root)
    assert len(cur) == 12 * 3
    assert list(cur.columns) == [*results.KEYS, "seed", "step", "return", "normalised"]
    row = cur[(cur["variant"] == "jvp") & (cur["seed"] == 2) & (cur["step"] == 50)]
    assert row["return"].item() == 6.0
    logs = curves.load_train_logs(root)
    assert len(logs) == 12 * 2 and logs["du_dr_zero_frac"].notna().all()


def test_bands_are_student_t_intervals_or_std(root: Path):
    bands = stats.curve_bands(curves.load_curves(root))
    final = bands[(bands["variant"] == "jvp") & (bands["step"] == 100)].iloc[0]
    half = 4.302652729911275 * 1.0 / math.sqrt(3)  # t(0.975, 2) · s / √n with s = 1
    assert final["mean"] == pytest.approx(11.0) and final["n"] == 3
    assert final["hi"] - final["mean"] == pytest.approx(half)
    assert final["mean"] - final["lo"] == pytest.approx(half)
    std = stats.curve_bands(curves.load_curves(root), band="std")
    assert std.iloc[-1]["err"] == pytest.approx(1.0)
    start = bands[bands["step"] == 0]
    assert (start["err"] == 0).all()  # every seed starts at 0
    with pytest.raises(ValueError, match="band"):
        stats.curve_bands(curves.load_curves(root), band="iqr")


def test_final_scores_zero_fraction_step_times(root: Path):
    runs = results.load_runs(root)
    final = stats.final_scores(runs).set_index("variant")
    assert list(final.index) == ["fd_1e-3", "fd_1e-8", "jvp", "zero"]  # folder order
    assert final.loc["fd_1e-8", "mean"] == pytest.approx(1.0)
    assert final.loc["zero", "n"] == 3
    zeros = stats.zero_fraction(curves.load_train_logs(root)).set_index("variant")
    assert zeros.loc["fd_1e-8", "mean"] == pytest.approx(0.8)
    assert zeros.loc["jvp", "max"] == 0.0
    times = stats.step_times(runs, column="s_per_step").set_index("variant")
    assert times.loc["jvp", "ms_mean"] == pytest.approx(20.0)
    assert times.loc["zero", "ms_mean"] == pytest.approx(10.0)


def test_counts_say_k_of_n_seeds_for_a_partly_finished_sweep(root: Path):
    base = root / "world" / "expert" / "om2p"
    import shutil

    shutil.rmtree(base / "zero" / "seed2")
    write_run(base / "zero" / "seed2", "zero", 2, None)  # still running
    shutil.rmtree(base / "jvp" / "seed1")
    write_run(base / "jvp" / "seed1", "jvp", 1, None, status="failed")
    runs = results.load_runs(root)
    assert runs["status"].value_counts().to_dict() == {"finished": 10, "running": 1,
                                                       "failed": 1}
    counts = sweeps.run_counts(runs, EXPERIMENT).set_index("variant")
    assert counts.loc["zero", "text"] == "2 of 3 seeds"
    assert counts.loc["jvp", "failed"] == 1 and counts.loc["fd_1e-3", "finished"] == 3
    line = sweeps.completeness(counts.reset_index())
    assert line.startswith("10 of 12 runs finished") and "zero: 2 of 3 seeds" in line
    assert len(curves.load_curves(root)) == 10 * 3
    assert len(curves.load_curves(root, finished_only=False)) == 10 * 3  # no log yet
    assert stats.final_scores(runs).set_index("variant").loc["zero", "n"] == 2


def test_compare_and_the_dr_claim_are_computed(root: Path):
    runs = results.load_runs(root)
    table = stats.compare_to(runs, "jvp").set_index("variant")
    assert table.loc["jvp", "verdict"] == "reference"
    assert table.loc["fd_1e-3", "verdict"] == "same within noise"
    assert table.loc["fd_1e-3", "p"] == pytest.approx(1.0)
    assert table.loc["fd_1e-8", "verdict"] == "lower"
    zeros = stats.zero_fraction(curves.load_train_logs(root))
    text = claims.dr_claim(table.reset_index(), runs, zeros)
    assert "0 of 1 settings" in text and "80 %" in text
    assert "does not hold" in text and "zero matches jvp" in text
    with pytest.raises(ValueError, match="reference"):
        stats.compare_to(runs, "exact")


def test_verdicts_say_wins_loses_and_ties():
    rng = np.random.default_rng(0)
    rows = []
    for quality, shift in (("expert", 50.0), ("medium", -50.0), ("random", 0.1)):
        for algo in ("om2p", "bc", "td3bc"):
            base = 60.0 + (shift if algo == "om2p" else 0.0) - (5 if algo == "td3bc" else 0)
            for seed in range(5):
                rows.append({"task": "world", "quality": quality, "algo": algo,
                             "variant": "", "seed": seed, "status": "finished",
                             "normalised": base + rng.normal(0, 1)})
    table = stats.verdicts(pd.DataFrame(rows)).set_index("quality")
    assert table["verdict"].to_dict() == {"expert": "wins", "medium": "loses",
                                          "random": "ties"}
    assert set(table["rival"]) == {"bc"}
    text = claims.verdict_text(table.reset_index())
    assert "wins on 1: world expert (vs bc)" in text and "ties within noise on 1" in text
    # another OM2P setting, far ahead everywhere: it would be every rival, unless excluded
    other = pd.DataFrame(rows).query("algo == 'om2p'").assign(algo="om2p-b")
    other["normalised"] += 500.0
    both = pd.concat([pd.DataFrame(rows), other])
    assert set(stats.verdicts(both)["rival"]) == {"om2p-b"}
    kept = stats.verdicts(both, exclude=["om2p-b"]).set_index("quality")
    assert kept["verdict"].to_dict() == table["verdict"].to_dict()
    assert set(stats.verdicts(both, "om2p-b", exclude=["om2p"])["verdict"]) == {"wins"}


def test_interval_and_welch_edge_cases():
    assert stats.interval([3.0]) == (3.0, 0.0, 1)
    mean, half, n = stats.interval([float("nan"), 1.0, 3.0], band="std")
    assert (mean, n) == (2.0, 2) and half == pytest.approx(math.sqrt(2))
    assert math.isnan(stats.welch_p([1.0], [1.0, 2.0]))
    assert stats.welch_p([1.0, 1.0], [1.0, 1.0]) == 1.0
    assert claims.setting_label("fd", 1e-8) == "fd Δr=1e-08"


def test_bad_folders_get_clear_errors(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="grid --experiment"):
        results.load_runs(tmp_path / "nothing")
    with pytest.raises(FileNotFoundError, match="no run folders"):
        results.load_runs(tmp_path)
    bad = tmp_path / "world" / "expert" / "om2p" / "seed0"
    bad.mkdir(parents=True)
    (bad / "result.json").write_text("{not json")
    with pytest.raises(ValueError, match="result.json: not valid JSON.*Fix:"):
        results.load_runs(tmp_path)
    odd = tmp_path / "elsewhere"
    odd.mkdir()
    (odd / "config.json").write_text("{}")
    with pytest.raises(ValueError, match="not a run folder"):
        results.load_runs(tmp_path)


def test_a_real_tiny_experiment_loads(tmp_path: Path):
    from om2p_lite.rl.scheduler import run_experiment

    doc = {"grid": {"algos": ["om2p"], "tasks": ["world"], "qualities": ["expert"],
                    "seeds": [0]},
           "config": {"steps": 4, "batch_size": 16, "hidden": 8, "depth": 1,
                      "critic_hidden": 8, "critic_depth": 1, "eval_every": 2,
                      "eval_episodes": 2, "eval_max_steps": 3, "log_every": 2,
                      "progress": False},
           "variants": {"fd": {"estimator": "fd"}, "zero": {"estimator": "zero"}}}
    run_experiment(doc, results_dir=tmp_path)
    runs = results.load_runs(tmp_path)
    assert sorted(runs["variant"]) == ["fd", "zero"] and (runs["status"] == "finished").all()
    cur = curves.load_curves(tmp_path)
    assert sorted(cur["step"].unique()) == [0, 2, 4]
    assert sweeps.run_counts(runs, doc)["text"].tolist() == ["1 of 1 seeds"] * 2


def test_settings_comparison_text_and_slider_frames(root: Path):
    runs = results.load_runs(root)
    settings = stats.variant_settings(runs)
    assert settings.loc["fd_1e-8", "dr"] == 1e-8 and settings.loc["zero", "estimator"] == "zero"
    table = stats.compare_to(runs, "jvp")
    text = claims.comparison_text(table, labels={"zero": "the zero estimator"})
    assert text.startswith("Against jvp (final return 11.00 ± 2.48, n = 3)")
    assert "the zero estimator 11.50" in text and "fd_1e-8 1.00" in text
    assert "highest mean is the zero estimator's, but its lead over jvp is within noise" in text
    bands = stats.curve_bands(curves.load_curves(root))
    assert list(dict.fromkeys(bands["variant"])) == ["fd_1e-3", "fd_1e-8", "jvp", "zero"]
    steps, frames = stats.sweep_frames(bands, {"fd_1e-3": "1e-3", "fd_1e-8": "1e-8"},
                                        fixed={"jvp": "exact"}, name="fd")
    assert steps == [0, 50, 100] and list(frames) == ["1e-3", "1e-8"]
    assert frames["1e-8"] == {"fd": [0.0, 0.5, 1.0], "exact": [0.0, 5.5, 11.0]}
    times = stats.step_times(runs).set_index("variant")
    # no population field: the 3 jvp seeds share one s_per_step, so one population of 3
    assert times.loc["jvp", "ms_mean"] == pytest.approx(20.0 / 3)


def test_population_step_time_is_shared_by_its_members(root: Path):
    path = root / "world" / "expert" / "om2p" / "zero" / "seed0" / "result.json"
    result = json.loads(path.read_text())
    path.write_text(json.dumps(result | {"population": 4}))
    runs = results.load_runs(root).set_index(["variant", "seed"])
    assert runs.loc[("zero", 0), "s_per_member_step"] == pytest.approx(0.01 / 4)
    # older results without the field: the 9 runs (fd and zero) that share s_per_step
    assert runs.loc[("zero", 1), "s_per_member_step"] == pytest.approx(0.01 / 9)
    assert runs.loc[("jvp", 0), "population"] == 3


def test_sweep_reruns_tiny_at_smoke_and_reads_stored_results_at_book(tmp_path: Path,
                                                                     monkeypatch):
    experiment = tmp_path / "tiny.toml"
    experiment.write_text('# A tiny experiment.\n# Cost: none.\nresults_dir = "data/results/tiny"\n'
                          '[grid]\nalgos = ["bc"]\ntasks = ["world"]\n'
                          'qualities = ["expert"]\nseeds = [0, 1, 2]\n'
                          '[variants]\nlr3 = { lr = 1e-3 }\nlr4 = { lr = 1e-4 }\n')
    monkeypatch.setattr(sweeps, "SMOKE_OVERRIDES",
                        sweeps.SMOKE_OVERRIDES | {"steps": 4, "eval_every": 2,
                                                  "eval_max_steps": 3})
    sweep = sweeps.load_sweep(experiment, "smoke")
    assert not sweep.stored and sweep.order == ["lr3", "lr4"]
    assert sweep.plan() == "# A tiny experiment.\n# Cost: none."
    assert len(sweep.runs) == 2 * sweeps.SMOKE_SEEDS  # every variant, the first seeds
    assert sorted(sweep.runs["lr"].unique()) == [1e-4, 1e-3]
    assert "all 4 runs finished; a tiny rerun at the smoke budget" in sweep.status()
    assert f"({sweeps.SMOKE_SEEDS} seeds, " in sweep.status()
    one = dataclasses.replace(sweep, runs=sweep.runs[sweep.runs["seed"] == 0])
    assert "(1 seed, " in one.status()  # the seeds it ran: a one-seed file runs one
    assert sweep.root.is_dir() and "data/results" not in str(sweep.root)
    monkeypatch.setenv(sweeps.RESULTS_ENV, str(tmp_path / "stored"))
    (tmp_path / "stored" / "tiny").mkdir(parents=True)  # a sweep begun, nothing finished
    fallback = sweeps.load_sweep(experiment, "book")  # the book still builds, and says so
    assert not fallback.stored and "a tiny rerun at the smoke budget" in fallback.status()
    assert "grid --experiment data/experiments/tiny" in fallback.note
    (tmp_path / "stored" / "tiny").rmdir()
    sweep.root.rename(tmp_path / "stored" / "tiny")
    stored = sweeps.load_sweep(experiment, "book")
    assert stored.stored and stored.status().startswith("tiny: 4 of 6 runs finished")
    assert "lr3: 2 of 3 seeds" in stored.status()
    assert stored.command == f"python -m om2p_lite grid --experiment {experiment}"


def test_remade_sweep_is_read_once_complete_and_the_older_one_until_then(tmp_path: Path,
                                                                          monkeypatch):
    """load_remade: at smoke the remade file reruns tiny; at book the older sweep is read
    (its note names the remake's progress and command) until every remade run is stored."""
    text = ('# {name}.\nresults_dir = "data/results/{name}"\n[grid]\nalgos = ["bc"]\n'
            'tasks = ["world"]\nqualities = ["expert"]\nseeds = [0, 1]\n[config]\n'
            'steps = {steps}\n')
    old, new = tmp_path / "old.toml", tmp_path / "new.toml"
    old.write_text(text.format(name="old", steps=4))
    new.write_text(text.format(name="new", steps=6))
    monkeypatch.setattr(sweeps, "SMOKE_OVERRIDES",
                        sweeps.SMOKE_OVERRIDES | {"eval_every": 2, "eval_max_steps": 3})
    tiny = sweeps.load_remade(new, old, "smoke")
    assert tiny.name == "new" and not tiny.stored
    monkeypatch.setenv(sweeps.RESULTS_ENV, str(tmp_path / "stored"))
    (tmp_path / "stored").mkdir()
    sweeps.load_sweep(old, "smoke").root.rename(tmp_path / "stored" / "old")
    assert sweeps.stored_progress(new) == (0, 2)
    early = sweeps.load_remade(new, old, "book")
    assert early.name == "old" and early.stored
    assert "new.toml, has 0 of 2 runs stored" in early.note
    assert f"grid --experiment {new} --checkpoint-every 2000" in early.note
    tiny.root.rename(tmp_path / "stored" / "new")
    done = sweeps.load_remade(new, old, "book")
    assert done.name == "new" and done.stored and done.note == ""
    assert sweeps.stored_progress(new) == (2, 2)


def test_ablation_text_counts_the_components_that_matter(root: Path):
    table = stats.compare_to(results.load_runs(root), "jvp")
    text = claims.ablation_text(table, labels={"fd_1e-8": "tiny Δr"})
    assert text.startswith("Removing a component lowers the return beyond noise for 1 of "
                           "3 ablations (tiny Δr); fd_1e-3, zero: same within noise")
    assert text.endswith("does not hold here for every component.")
    with pytest.raises(ValueError, match="no reference row"):
        claims.ablation_text(table[table["verdict"] != "reference"])


def test_plateau_check_tells_flat_from_rising():
    def rows(values_by_seed):
        return pd.DataFrame([{"seed": s, "step": step, "return": v}
                             for s, vals in values_by_seed.items()
                             for step, v in zip((0, 500, 1000, 1500, 2000), vals,
                                                strict=True)])
    rising = stats.plateau_check(rows({s: [0, 1, 2, 3 + 0.1 * s, 5 + 0.2 * s]
                                        for s in range(5)}))
    assert (rising["step_a"], rising["step_b"]) == (1500, 2000) and not rising["flat"]
    assert "still rising" in rising["text"] and rising["mean_b"] == pytest.approx(5.4)
    flat = stats.plateau_check(rows({s: [0, 4, 5, 5 + (-1) ** s, 5 - (-1) ** s]
                                      for s in range(5)}))
    assert flat["flat"] and "flat within noise" in flat["text"]
    with pytest.raises(ValueError, match="no rows"):
        stats.plateau_check(rows({})[:0])


def test_score_matrix_and_algo_costs_build_the_main_table():
    rows = []
    for task, quality, algo, vals in (("world", "expert", "bc", [90.0, 110.0]),
                                      ("world", "expert", "om2p", [100.0]),
                                      ("world", "random", "om2p", [5.0, 7.0]),
                                      ("halfcheetah", "expert", "om2p", [50.0, 50.0])):
        for seed, v in enumerate(vals):
            rows.append({"task": task, "quality": quality, "algo": algo, "variant": "",
                         "seed": seed, "status": "finished", "normalised": v,
                         "s_per_member_step": 0.01 if task == "world" else 0.02,
                         "steps": 360, "device": "cuda (H100)" if task == "world" else "cpu"})
    runs = pd.DataFrame(rows)
    labels, cols, z, text = stats.score_matrix(runs)
    assert labels == ["halfcheetah expert", "world random", "world expert"]
    assert cols == ["om2p", "bc"]  # the table's algorithm order
    assert z[2].tolist() == [100.0, 100.0] and math.isnan(z[0, 1])
    assert text[2][1] == "100 ± 14 (2)" and text[0][1] == "–"
    costs = stats.algo_costs(runs).set_index("algo")
    assert costs.loc["om2p", "ms_mpe"] == pytest.approx(10.0)
    assert costs.loc["om2p", "ms_halfcheetah"] == pytest.approx(20.0)
    assert costs.loc["om2p", "hours_mpe"] == pytest.approx(3 * 3.6 / 3600)
    assert costs.loc["om2p", "hours_halfcheetah"] == pytest.approx(2 * 7.2 / 3600)
    assert costs.loc["om2p", "device_mpe"] == "cuda (H100)"
    assert costs.loc["om2p", "device_halfcheetah"] == "cpu"
    assert costs.loc["bc", "device_halfcheetah"] == ""
    assert math.isnan(costs.loc["bc", "ms_halfcheetah"]) and costs.loc["bc", "runs"] == 2


def test_short_device_names_the_device_without_versions():
    assert device.short_device("cuda (NVIDIA H100 80GB HBM3), torch 2.11.0+cu130") == \
        "cuda (NVIDIA H100 80GB HBM3)"
    assert device.short_device("cpu (1 threads), torch 2.13.0+cpu") == "cpu"
    assert device.short_device(None) == ""
    assert device.devices_of(["cpu", "", "cuda (H100)", "cpu"]) == "cpu + cuda (H100)"
    assert device.devices_of([""]) == ""


def test_smoke_grid_must_name_grid_entries(tmp_path: Path):
    with pytest.raises(ValueError, match="smoke_grid: unknown"):
        sweeps.load_sweep(Path(__file__).parents[1] / "data" / "experiments" /
                          "main_book.toml", "smoke", smoke_grid={"seeds": [0]})
