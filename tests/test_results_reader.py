"""Every stored result under data/results loads through the one reader (``rl.results``), and
what the CLI table and the book compute from it agrees with the result files read here by hand.

The oracle is ``json.load`` of each ``result.json`` and the folder layout
``{task}/{quality}/{algo}[/{variant}]/seed{k}``; nothing here repeats the reader's code.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from om2p_lite.book import stats, sweeps
from om2p_lite.rl.results import KEYS, load_results, load_runs, results_table, summarise

RESULTS = sweeps.REPO / "data" / "results"
EXPERIMENTS = sweeps.REPO / "data" / "experiments"
STORED = sorted(p.name for p in RESULTS.iterdir() if p.is_dir() and any(p.rglob("result.json")))


def by_hand(folder: Path) -> pd.DataFrame:
    """One row per result.json under ``folder``, read with json and the folder layout."""
    rows = []
    for path in sorted(folder.rglob("result.json")):
        res = json.loads(path.read_text())
        parts = path.parent.relative_to(folder).parts
        rows.append({"layout": (*parts[:3], parts[3] if len(parts) == 5 else "", parts[-1]),
                     "task": res["task"], "quality": res["quality"], "algo": res["algo"],
                     "variant": res.get("variant") or "", "seed": res["seed"],
                     "return": res["return"], "normalised": res["normalised"],
                     "steps": res["config"]["steps"], "path": str(path.parent)})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def stored() -> dict[str, tuple[pd.DataFrame, pd.DataFrame]]:
    """(load_runs, by_hand) of every stored experiment folder."""
    return {name: (load_runs(RESULTS / name), by_hand(RESULTS / name)) for name in STORED}


def test_the_stored_experiments_are_there() -> None:
    assert {"main", "main_book", "main_book_xi", "fig2_dr", "fig2_xi", "fig3_eta",
            "fig4_ablations", "budget_test"} <= set(STORED)


def test_every_stored_result_loads_with_its_keys(stored) -> None:
    for name, (runs, hand) in stored.items():
        assert len(runs) == len(hand) > 0, name  # one row per run folder, none unfinished
        assert (runs["status"] == "finished").all(), name
        runs = runs.set_index("path").loc[hand["path"]]
        for key in (*KEYS, "seed", "steps"):
            assert runs[key].tolist() == hand[key].tolist(), (name, key)
        for key in ("return", "normalised"):
            assert np.array_equal(runs[key].to_numpy(float), hand[key].to_numpy(float)), name
        # the result names the folder it lies in
        layout = [(t, q, a, v, f"seed{s}") for t, q, a, v, s in
                  runs[[*KEYS, "seed"]].itertuples(index=False)]
        assert layout == hand["layout"].tolist(), name
        assert runs["s_per_member_step"].notna().all() and (runs["population"] >= 1).all()
        assert runs["device"].isin([""]).sum() < len(runs), name  # devices recorded
        assert not runs["dirty"].any(), name  # every stored result names a clean commit


def test_the_table_and_the_book_read_the_same_runs(stored) -> None:
    for name, (runs, _) in stored.items():
        table = load_results(RESULTS / name)
        assert table["path"].tolist() == runs["path"].tolist(), name
        shared = [c for c in runs.columns if c != "normalised"]
        pd.testing.assert_frame_equal(table[shared], runs[shared], check_exact=True)


def test_main_book_table_matches_the_result_files(stored) -> None:
    """Chapter 10's table: mean ± std over seeds per cell, by the CLI path and the book's
    heatmap, against the same numbers computed from the files by hand."""
    runs, hand = stored["main_book"]
    expect = hand.groupby(["task", "quality", "algo"])["normalised"]
    mean, std, n = expect.mean(), expect.std(ddof=0), expect.count()
    s = summarise(load_results(RESULTS / "main_book"), "normalised") \
        .set_index(["task", "quality", "algo"])
    assert len(s) == len(mean) == 4 * 4 * 7  # every task, quality and algorithm
    assert np.allclose(s.loc[mean.index, "mean"], mean) and (s["n"] == 5).all()
    assert np.allclose(s.loc[std.index, "std"], std) and (n == 5).all()
    table = results_table(load_results(RESULTS / "main_book"), "normalised", digits=0)
    for (task, quality, algo), m in mean.items():
        assert table.loc[(task, quality), algo].strip("*").startswith(f"{m:.0f} ± "), algo
    rows, cols, z, _ = stats.score_matrix(runs, "normalised")
    for i, label in enumerate(rows):
        task, quality = label.split(" ", 1)
        for j, algo in enumerate(cols):
            assert math.isclose(z[i, j], mean[(task, quality, algo)]), (label, algo)


@pytest.mark.parametrize("name", ["fig4_ablations", "main_book_xi"])
def test_a_chapter_reads_its_stored_sweep_whole(name: str) -> None:
    sweep = sweeps.load_sweep(EXPERIMENTS / f"{name}.toml", "book")
    assert sweep.stored and sweep.root == RESULTS / name
    counts = sweep.counts
    assert (counts["finished"] == counts["expected"]).all() and counts["failed"].sum() == 0
    assert len(sweep.runs) == counts["expected"].sum()
    per_run = sweep.curves.groupby([*KEYS, "seed"])["step"].max()
    assert len(per_run) == len(sweep.runs)  # every finished run has its learning curve
    assert (per_run == int(sweep.runs["steps"].max())).all()
