"""The results chapters' evidence: paired comparisons and equivalence, the critic check and
the decisive experiment's reading rules (a), (b), (c) on constructed runs, and the loader on
a real tiny grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from om2p_lite.book import evidence as ev

SEEDS = (0, 1, 2)


def test_paired_verdicts() -> None:
    x = pd.Series([10.0, 11.0, 12.0], index=SEEDS)
    assert ev.paired(x + 5 + np.array([0, 0.1, -0.1]), x)["verdict"] == "above"
    assert ev.paired(x, x + 5 + np.array([0, 0.1, -0.1]))["verdict"] == "below"
    tie = ev.paired(x + np.array([0.1, -0.1, 0.0]), x)
    assert tie["verdict"] == "equivalent" and tie["ci90"][1] < ev.MARGIN
    noisy = ev.paired(x + np.array([30.0, -25.0, 1.0]), x)
    assert noisy["verdict"] == "undecided"  # no difference found is not a tie
    assert ev.paired(x.iloc[:1], x)["verdict"] == "undecided"


def frames(scores: dict[str, list[float]], early: dict[str, list[float]],
           ratios: dict[str, float]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Episodes (2 per seed, scores ± 1) at step 2 (early) and 20 (final), and probes."""
    eps, probes = [], []
    for lab, finals in scores.items():
        algo, _, variant = lab.partition("/")
        for step, values in ((2, early.get(lab, finals)), (20, finals)):
            for s, v in zip(SEEDS, values, strict=True):
                for k, e in enumerate((v - 1, v + 1)):
                    eps.append({"task": "world", "quality": "medium-replay", "algo": algo,
                                "variant": variant, "label": lab, "seed": s, "step": step,
                                "episode": k, "return": e, "normalised": e})
                if lab in ratios:
                    probes.append({"task": "world", "quality": "medium-replay",
                                   "label": lab, "seed": s, "step": step, "mc_probe": -10.0,
                                   "q_probe": -10.0 * ratios[lab], "q_pi_probe": -9.0})
    return pd.DataFrame(eps), pd.DataFrame(probes)


OM2P = ["om2p/eta0.3", "om2p/eta3"]


def read(scores, early=None, ratios=None) -> pd.Series:
    ratios = ratios or {"flowq": 0.8, "om2p/eta0.3": 0.7, "om2p/eta3": 0.6, "td3bc": 0.9}
    episodes, probes = frames(scores, early or {}, ratios)
    out = ev.reading(episodes, probes, OM2P, early_step=2)
    assert len(out) == 1
    return out.iloc[0]


def test_reading_a_budget_was_the_cause() -> None:
    row = read({"flowq": [50, 52, 54], "om2p/eta0.3": [49, 52, 55], "om2p/eta3": [20, 21, 22],
                "td3bc": [40, 41, 42], "bc": [30, 31, 32]})
    assert row["readings"] == "a" and row["om2p_best"] == "om2p/eta0.3"
    assert row["converged"] and row["tracks"] and not row["data_decide"]
    low = read({"flowq": [50, 52, 54], "om2p/eta0.3": [49, 52, 55], "om2p/eta3": [20, 21, 22],
                "td3bc": [40, 41, 42]}, ratios={"flowq": 0.8, "om2p/eta0.3": 0.3,
                                                "om2p/eta3": 0.6})
    assert not low["converged"] and low["readings"] == "none"


def test_reading_b_one_step_q_path() -> None:
    row = read({"flowq": [60, 61, 62], "om2p/eta0.3": [30, 31, 33], "om2p/eta3": [20, 22, 21],
                "td3bc": [50, 51, 52], "bc": [40, 40, 41]},
               early={"flowq": [30, 31, 30], "td3bc": [20, 22, 21]})
    assert row["readings"] == "b" and row["improve"] and row["om2p_below"]
    flat = read({"flowq": [60, 61, 62], "om2p/eta0.3": [30, 31, 33], "om2p/eta3": [20, 22, 21],
                 "td3bc": [50, 51, 52]}, early={"flowq": [60, 61, 62], "td3bc": [20, 22, 21]})
    assert not flat["improve"] and flat["readings"] == "none"  # Flow+Q did not gain


def test_reading_c_data_decide() -> None:
    row = read({"flowq": [30, 31, 32], "om2p/eta0.3": [29, 31, 33], "om2p/eta3": [20, 22, 21],
                "om2p-official": [10, 11, 12], "td3bc": [40, 41, 42], "bc": [80, 81, 82]})
    assert row["readings"] == "a+c" and row["leaders"] == ["bc"]
    assert "the data decide" in row["text"]



def test_only_complete_data_sets_are_read() -> None:
    episodes, probes = frames({"flowq": [30, 31, 32], "om2p/eta0.3": [29, 31, 33],
                               "om2p/eta3": [20, 22, 21], "bc": [80, 81, 82]}, {},
                              {"flowq": 0.8, "om2p/eta0.3": 0.7, "om2p/eta3": 0.6})
    counts = pd.DataFrame([{"task": "world", "quality": "medium-replay", "algo": a,
                            "finished": 3, "expected": 3} for a in ("bc", "flowq", "om2p")])
    complete, pending = ev.complete_sets(counts)
    assert complete == {("world", "medium-replay")} and pending == []
    rows = ev.complete_readings(episodes, probes, counts, OM2P, early_step=2)
    assert list(rows["readings"]) == ["a+c"]
    line = ev.reading_sentence(next(rows.itertuples()))
    assert line.startswith("*world medium-replay:* reading **a+c**") and "bc)" in line
    counts.loc[counts["algo"] == "om2p", "finished"] = 2  # one OM2P run missing
    complete, pending = ev.complete_sets(counts)
    assert complete == set() and pending == ["world medium-replay (8 of 9 runs)"]
    assert ev.complete_readings(episodes, probes, counts, OM2P, early_step=2).empty

@pytest.fixture(scope="module")
def tiny_grid(tmp_path_factory) -> Path:
    """A real grid on the generated smoke data set (in a temporary data folder, so that
    its config.json names it the way stored runs do)."""
    from om2p_lite.rl.scheduler import run_experiment

    root = tmp_path_factory.mktemp("grid")
    doc = {"results_dir": str(root / "r"),
           "grid": {"algos": ["bc", "flowq", "om2p"], "tasks": ["spread"],
                    "qualities": ["expert"], "seeds": [0, 1]},
           "config": dict(steps=4, batch_size=8, hidden=8, depth=1, critic_hidden=8,
                          critic_depth=1, eval_every=2, eval_episodes=3, eval_max_steps=5,
                          log_every=2, progress=False, threads=1, data_budget="smoke",
                          flow_steps=2),
           "variants": {"eta0.3": {"eta": 0.3, "algos": ["om2p"]},
                        "eta3": {"eta": 3.0, "algos": ["om2p"]}}}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OM2P_DATA_DIR", str(root / "data"))
        run_experiment(doc)
        yield root / "r"


def test_smoke_rerun_keeps_only_the_exclusions_of_its_smaller_grid(monkeypatch) -> None:
    from om2p_lite.book import sweeps

    seen = {}

    def run_experiment(doc: dict, **kwargs) -> None:  # the grid it would run, kept
        seen["doc"] = doc

    def stop(root: Path) -> None:
        raise StopIteration

    monkeypatch.setattr("om2p_lite.rl.scheduler.run_experiment", run_experiment)
    monkeypatch.setattr(sweeps, "load_runs", stop)
    with pytest.raises(StopIteration):
        sweeps.load_sweep(sweeps.REPO / "data/experiments/budget_test.toml", "smoke",
                          smoke_grid={"tasks": ["world"], "qualities": ["medium-replay"]})
    assert "exclude" not in seen["doc"]["grid"]
    with pytest.raises(StopIteration):
        sweeps.load_sweep(sweeps.REPO / "data/experiments/budget_test.toml", "smoke",
                          smoke_grid={"tasks": ["spread"]})
    assert "spread/expert/cql" in seen["doc"]["grid"]["exclude"]
    assert not any(c.startswith("world") for c in seen["doc"]["grid"]["exclude"])


def test_smoke_rerun_keeps_only_the_variant_cells_of_its_smaller_grid(monkeypatch) -> None:
    from om2p_lite.book import sweeps
    from om2p_lite.rl.spec import experiment_cells, validate_experiment

    seen = {}
    monkeypatch.setattr("om2p_lite.rl.scheduler.run_experiment",
                        lambda doc, **kwargs: seen.update(doc=doc))

    def stop(root: Path) -> None:
        raise StopIteration

    monkeypatch.setattr(sweeps, "load_runs", stop)
    with pytest.raises(StopIteration):
        sweeps.load_sweep(sweeps.REPO / "data/experiments/main_fast_eta.toml", "smoke",
                          smoke_grid={"tasks": ["spread"], "qualities": ["expert", "random"]})
    doc = seen["doc"]
    assert set(doc["variants"]) == {"eta=0.1", "eta=3"}  # eta=10 has no cell left: dropped
    assert doc["variants"]["eta=0.1"]["cells"] == ["spread/expert"]
    cells = {(t, q, v) for t, q, _, v, _ in experiment_cells(validate_experiment(doc))}
    assert cells == {("spread", "expert", "eta=0.1"), ("spread", "random", "eta=3")}


def test_load_episodes_and_reading_of_a_real_grid(tiny_grid: Path) -> None:
    episodes, probes = ev.load_episodes(tiny_grid)
    assert set(episodes["label"]) == {"bc", "flowq", "om2p/eta0.3", "om2p/eta3"}
    assert episodes.groupby(["label", "seed", "step"]).size().eq(3).all()
    assert probes.loc[probes["label"] == "bc", "q_probe"].isna().all()
    assert probes.loc[probes["label"] != "bc", "q_probe"].notna().all()
    conv = ev.critic_convergence(probes)
    assert set(conv["label"]) == {"flowq", "om2p/eta0.3", "om2p/eta3"}
    out = ev.reading(episodes, probes, OM2P, early_step=2000)
    assert len(out) == 1 and out.iloc[0]["readings"] in {"a", "b", "c", "a+c", "b+c", "none"}
    from om2p_lite.book.curves import load_train_logs
    from om2p_lite.rl.results import load_runs

    logs = load_train_logs(tiny_grid, ("q_data", "q_pi"))  # data set: the fixture's
    check = ev.sweep_convergence(load_runs(tiny_grid), logs)
    assert set(check["algo"]) == {"flowq", "om2p"} and (check["mc"] < 0).all()
    assert check["gap"].notna().all()
    assert np.allclose(check["ratio"], check["q_data"] / check["mc"])
    assert conv["error"].between(0, 10).all()  # logged by every new run with a critic
    spread = ev.target_spread(load_runs(tiny_grid))
    row = spread.iloc[0]  # Spread's rewards are all negative: a mean a ratio can read
    assert len(spread) == 1 and row["mc"] == pytest.approx(-row["mc_abs"])
    assert not row["near_zero"] and row["mc"] == pytest.approx(check["mc"].iloc[0])
    with pytest.raises(FileNotFoundError, match="no such results folder. Fix: run"):
        ev.load_episodes(tiny_grid / "spread" / "expert" / "nothing")
    (tiny_grid.parent / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no finished runs. Fix: run"):
        ev.load_episodes(tiny_grid.parent / "empty")


def protocol_probes(curves: dict[tuple[str, str], list[float]], err: float = 0.2
                    ) -> pd.DataFrame:
    """Probe rows of two seeds at steps 1000..6000 per (quality, label) from mean-Q curves."""
    rows = []
    for (quality, lab), qs in curves.items():
        for k, q in enumerate(qs):
            for s in (0, 1):
                rows.append({"task": "spread", "quality": quality, "label": lab, "seed": s,
                             "step": 1000 * (k + 1), "q_probe": q + (0.01 if s else -0.01),
                             "q_err_probe": err, "mc_rms_probe": 10.0})
    return pd.DataFrame(rows)


def test_protocol_reading_picks_the_first_protocol_settled_everywhere() -> None:
    rising = [-1.0, -2.0, -3.0, -4.0, -5.0, -6.0]  # moves 2 per 2000 steps > 5 % of 10
    flat_from_3000 = [-1.0, -4.0, -7.0, -7.1, -7.2, -7.2]  # settled from step 5000
    flat_from_4000 = [-1.0, -3.0, -5.0, -7.0, -7.1, -7.2]  # settled from step 6000
    probes = protocol_probes({
        ("expert", "td3bc/fast"): flat_from_3000, ("random", "td3bc/fast"): flat_from_4000,
        ("expert", "td3bc/omar"): flat_from_4000, ("random", "td3bc/omar"): flat_from_4000,
        ("expert", "td3bc/book"): rising, ("random", "td3bc/book"): flat_from_3000})
    table, choice = ev.protocol_reading(probes, ["td3bc/omar", "td3bc/fast", "td3bc/book"])
    settled = table.set_index(["quality", "label"])["settled"]
    assert settled[("expert", "td3bc/fast")] == 5000  # step 4000 moved 3.1 from step 2000
    assert settled[("random", "td3bc/fast")] == 6000
    assert np.isnan(settled[("expert", "td3bc/book")])
    # fast and omar both settle everywhere by 6000: the tie goes to the preferred omar
    assert choice == {"protocol": "td3bc/omar", "steps": 6000, "qualifies": True,
                      "unsettled": []}
    # a critic far from its target is not settled, however flat, on any data set (the
    # amendment: a slow creep toward a far target passed the stability test alone)
    far = protocol_probes({("expert", "td3bc/omar"): flat_from_3000,
                           ("random", "td3bc/omar"): flat_from_3000}, err=0.8)
    table, choice = ev.protocol_reading(far, ["td3bc/omar"])
    assert choice["qualifies"] is False and table["settled"].isna().all()
    assert sorted(choice["unsettled"]) == [("spread", "expert"), ("spread", "random")]
    assert choice["steps"] == 6000  # none qualifies: the file's longest
    creep = protocol_probes({("random", "td3bc/book"): [-3.9, -6.5, -9.1, -11.8, -14.4,
                                                         -17.0]}, err=0.9)
    creep["mc_rms_probe"] = 116.0  # Spread random under book: 5.3 per 2000 steps < 5.8
    assert np.isnan(ev.protocol_reading(creep, ["td3bc/book"])[0]["settled"].iloc[0])


def test_select_eta_uses_only_selection_seeds_and_prefers_the_smaller_of_a_near_tie() -> None:
    rows = []
    for eta, means in {0.3: [50.0, 52.0], 1.0: [51.0, 53.0], 3.0: [30.0, 31.0]}.items():
        for seed, m in zip((100, 101), means, strict=True):
            rows.append({"task": "world", "quality": "expert", "eta": eta, "seed": seed,
                         "score": m})
    rows.append({"task": "world", "quality": "expert", "eta": 3.0, "seed": 0,
                 "score": 500.0})  # a reported seed: must not sway the choice
    out = ev.select_eta(pd.DataFrame(rows), selection_seeds=(100, 101))
    row = out.iloc[0]
    assert row["best_eta"] == 1.0  # highest mean on the selection seeds
    assert row["eta"] == 0.3  # within one SE of it (SE = 1.41 / √2 = 1) and smaller
    with pytest.raises(ValueError, match="selection seeds"):
        ev.select_eta(pd.DataFrame(rows), selection_seeds=(7,))
