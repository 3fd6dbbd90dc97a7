"""Chapter 10's remade table: final scores with the chosen-η row, and OM2P against the best
stored baseline paired by seed, on constructed episodes."""

from __future__ import annotations

import pandas as pd

from om2p_lite.book import remade

SEEDS = (0, 1, 2)


def episodes(scores: dict[str, list[float]], task: str = "world",
             quality: str = "expert", variant: str = "") -> pd.DataFrame:
    """Two episodes (score ± 1) per seed at an early step (score - 30) and the last."""
    rows = []
    for algo, finals in scores.items():
        for step, shift in ((2000, -30.0), (10000, 0.0)):
            for s, v in zip(SEEDS, finals, strict=True):
                for k, e in enumerate((v - 1 + shift, v + 1 + shift)):
                    rows.append({"task": task, "quality": quality, "algo": algo,
                                 "variant": variant,
                                 "label": f"{algo}/{variant}" if variant else algo,
                                 "seed": s, "step": step, "episode": k, "return": e,
                                 "normalised": e})
    return pd.DataFrame(rows)


def test_final_scores_read_the_last_evaluation_and_tag_the_chosen_eta() -> None:
    main = episodes({"om2p": [50, 52, 54], "bc": [40, 41, 42]})
    chosen = episodes({"om2p": [60, 61, 62]}, variant="eta=0.1")
    final = remade.final_scores(main, chosen)
    table = remade.summary(final).set_index("label")
    assert table.loc["om2p", "mean"] == 52.0 and table.loc["bc", "seeds"] == 3
    assert table.loc[remade.CHOSEN, "mean"] == 61.0
    assert table.loc[remade.CHOSEN, "eta"] == 0.1 and pd.isna(table.loc["om2p", "eta"])
    assert set(remade.final_scores(main)["label"]) == {"om2p", "bc"}


def test_against_best_picks_the_best_rival_and_pairs_by_seed() -> None:
    main = pd.concat([
        episodes({"om2p": [50, 52, 54], "bc": [40, 41, 42], "td3bc": [45, 47, 49]}),
        episodes({"om2p": [10, 30, 20], "bc": [12, 29, 21]}, task="spread"),
        episodes({"om2p": [10, 11, 12], "bc": [30, 31, 32]}, task="tag"),
        episodes({"bc": [1, 2, 3]}, task="world", quality="random")])  # no OM2P stored
    final = remade.final_scores(main)
    table = remade.against_best(final, "om2p", ["bc", "td3bc", "cql"]).set_index("task")
    assert len(table) == 3  # world random has no OM2P run: not compared
    assert table.loc["world", "rival"] == "td3bc" and table.loc["world", "d"] == 5.0
    assert table.loc["world", "verdict"] == "above"  # d = 5, SE = 0
    assert table.loc["spread", "verdict"] == "equivalent"  # d within ±1 of 0, paired
    assert table.loc["tag", "verdict"] == "below"
    text = remade.verdict_sentence(table.reset_index(), "OM2P", 10.0)
    assert "above on 1" in text and "below on 1" in text and "±10 on 1" in text
    assert "of 3 data sets" in text
    assert "no data set" in remade.verdict_sentence(table.iloc[:0], "OM2P", 10.0)
    assert "against OM2P at η = 1" in remade.verdict_sentence(table, "X", 10.0,
                                                              "OM2P at η = 1")


def test_incomplete_algos_names_each_share_not_fully_stored() -> None:
    counts = pd.DataFrame({"task": ["world"] * 3, "quality": ["expert"] * 3,
                           "algo": ["om2p", "cql", "omar"], "variant": [""] * 3,
                           "finished": [3, 1, 0], "expected": [3, 3, 3]})
    assert remade.incomplete_algos(counts) == {"cql": (1, 3), "omar": (0, 3)}
    assert remade.incomplete_algos(counts.assign(finished=3)) == {}
    assert remade.progress_by_algo(counts) == "om2p 3 of 3, cql 1 of 3, omar 0 of 3"


def cql_conv(ratios: dict[float, float]) -> pd.DataFrame:
    """critic_convergence rows of cql_alpha_check's runs, one per cql_alpha."""
    return pd.DataFrame({"task": "spread", "quality": "expert",
                         "label": [f"cql/cql_alpha={a:g}" for a in ratios],
                         "ratio": list(ratios.values())})


def test_cql_alpha_reading_applies_the_files_rules() -> None:
    penalty = remade.cql_alpha_reading(cql_conv({0.0: 1.2, 0.1: 2.5, 1.0: 9.9}))
    assert penalty["reading"] == "a" and penalty["ratios"][0.1] == 2.5
    assert "reading (a), the penalty" in remade.cql_alpha_sentence(penalty)
    # the level does not grow with the penalty's weight: not (a), and in the band: (c)
    assert remade.cql_alpha_reading(cql_conv({0.0: 1.2, 0.1: 0.9, 1.0: 9.9}))["reading"] == "c"
    assert remade.cql_alpha_reading(cql_conv({0.0: 0.3, 0.1: 2.5, 1.0: 9.9}))["reading"] == "c"
    other = remade.cql_alpha_reading(cql_conv({0.0: 8.0, 0.1: 9.0, 1.0: 9.9}))
    assert other["reading"] == "b" and "not the penalty" in remade.cql_alpha_sentence(other)
    part = remade.cql_alpha_reading(cql_conv({1.0: 9.9}))
    assert part["reading"] is None and part["missing"] == [0.0, 0.1]
    assert "missing cql_alpha = 0, 0.1" in remade.cql_alpha_sentence(part)
