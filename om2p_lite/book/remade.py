"""Chapter 10's remade main table (main_fast.toml beside main_fast_eta.toml): per data set
and method the final score over seeds, and each OM2P row against the best stored
baseline, paired by seed (the seeds share batches' order and evaluation start states);
and the reading of cql_alpha_check.toml, which asks why CQL's critic reads Q/G near 10 on
Spread expert."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from om2p_lite.book.evidence import paired, seed_scores

CHOSEN = "om2p (chosen η)"  # main_fast_eta.toml's row, whatever η each data set chose
OM2P_ROWS = ("om2p", CHOSEN)  # the rows compared against the baselines
VERDICT_WORDS = {"above": "above", "below": "below", "equivalent": "equivalent within ±{m:g}",
                 "undecided": "undecided"}


def final_scores(main: pd.DataFrame, chosen: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per (task, quality, label, seed) the mean normalised score over the last
    evaluation's episodes, of the main table's ``main`` episodes and, where given, the
    chosen-η runs' ``chosen`` episodes under the label ``CHOSEN`` with their ``eta``."""
    out = [seed_scores(main).assign(eta=float("nan"))]
    if chosen is not None and len(chosen):
        eta = chosen["variant"].str.extract(r"eta=([0-9.eE+-]+)")[0].astype(float)
        tagged = chosen.assign(label=CHOSEN, eta=eta)
        etas = tagged.groupby(["task", "quality", "seed"], as_index=False)["eta"].first()
        scores = seed_scores(tagged).merge(etas, on=["task", "quality", "seed"])
        out.append(scores)
    return pd.concat(out, ignore_index=True)


def summary(final: pd.DataFrame) -> pd.DataFrame:
    """Per (task, quality, label): mean and std over seeds, the number of seeds and, for
    the chosen-η row, its η."""
    return final.groupby(["task", "quality", "label"], as_index=False, sort=False).agg(
        mean=("score", "mean"), std=("score", "std"), seeds=("seed", "size"),
        eta=("eta", "first"))


def against_best(final: pd.DataFrame, method: str, rivals: Sequence[str]) -> pd.DataFrame:
    """Per data set where ``method`` and a rival are stored: ``method`` against the rival
    with the best mean, paired by seed (``evidence.paired``: above / below by more than
    2 SE, equivalent within the margin, else undecided)."""
    rows = []
    for (task, quality), block in final.groupby(["task", "quality"], sort=False):
        by = {lab: g.set_index("seed")["score"] for lab, g in block.groupby("label")}
        present = [r for r in rivals if r in by and r != method]
        if method not in by or not present:
            continue
        rival = max(present, key=lambda r: by[r].mean())
        p = paired(by[method], by[rival])
        rows.append({"task": task, "quality": quality, "method": method,
                     "mean": float(by[method].mean()), "rival": rival,
                     "rival_mean": float(by[rival].mean()), "d": p["d"], "se": p["se"],
                     "n": p["n"], "ci95": p["ci95"], "verdict": p["verdict"]})
    return pd.DataFrame(rows, columns=["task", "quality", "method", "mean", "rival",
                                       "rival_mean", "d", "se", "n", "ci95", "verdict"])


def verdict_sentence(table: pd.DataFrame, name: str, margin: float,
                     against: str = "the best stored baseline") -> str:
    """How many data sets put ``name`` above, below, equivalent to or undecided
    ``against`` its rival (an ``against_best`` table)."""
    if not len(table):
        return f"{name}: no data set has it and {against} stored yet."
    counts = table["verdict"].value_counts()
    parts = [f"{VERDICT_WORDS[v].format(m=margin)} on {counts[v]}"
             for v in VERDICT_WORDS if counts.get(v, 0)]
    return (f"{name} against {against}, paired by seed: "
            + ", ".join(parts) + f" of {len(table)} data sets.")


def _by_algo(counts: pd.DataFrame) -> dict[str, tuple[int, int]]:
    """Each algorithm's (stored, expected) runs, in the file's order."""
    done = counts.groupby("algo", sort=False)[["finished", "expected"]].sum()
    return {a: (int(r.finished), int(r.expected)) for a, r in done.iterrows()}


def incomplete_algos(counts: pd.DataFrame) -> dict[str, tuple[int, int]]:
    """The algorithms of a sweep not all of whose runs are stored, with (stored, expected)
    runs (``sweeps.Sweep.counts``)."""
    return {a: (k, n) for a, (k, n) in _by_algo(counts).items() if k < n}


def progress_by_algo(counts: pd.DataFrame) -> str:
    """'om2p 36 of 36, cql 0 of 36, ...': each algorithm's stored runs against the file's."""
    return ", ".join(f"{a} {k} of {n}" for a, (k, n) in _by_algo(counts).items())


# cql_alpha_check.toml's reading rules, written before its runs: the ratio Q(o, a_data) / G
# at cql_alpha = 0 within RATIO_BAND and growing with cql_alpha -> (a); above NOT_PENALTY -> (b)
CQL_ALPHAS = (0.0, 0.1, 1.0)
RATIO_BAND = (0.5, 2.0)
NOT_PENALTY = 3.0
CQL_READINGS = {"a": "the penalty: CQL's conservative term sets the critic's level",
                "b": "not the penalty: something else in CQL's path sets the level",
                "c": "undecided"}


def cql_alpha_reading(conv: pd.DataFrame) -> dict[str, Any]:
    """cql_alpha_check.toml's rules on its runs' ``evidence.critic_convergence`` rows
    (labels ``cql/cql_alpha=A``): the ratio per cql_alpha and the reading, 'a', 'b', 'c',
    or None while a setting is missing."""
    alpha = conv["label"].str.extract(r"cql_alpha=([0-9.eE+-]+)")[0].astype(float)
    ratios = {float(a): float(r) for a, r in zip(alpha, conv["ratio"], strict=True)
              if pd.notna(a)}
    missing = [a for a in CQL_ALPHAS if a not in ratios]
    if missing:
        return {"ratios": ratios, "reading": None, "missing": missing}
    r = [ratios[a] for a in CQL_ALPHAS]
    low, high = RATIO_BAND
    if low <= r[0] <= high and r[0] < r[1] < r[2]:
        reading = "a"
    elif r[0] > NOT_PENALTY:
        reading = "b"
    else:
        reading = "c"
    return {"ratios": ratios, "reading": reading, "missing": []}


def cql_alpha_sentence(result: dict[str, Any]) -> str:
    """The reading of ``cql_alpha_reading`` in a sentence, with the three ratios."""
    ratios = ", ".join(f"{r:.2f} at cql_alpha = {a:g}" for a, r in
                       sorted(result["ratios"].items()))
    if result["reading"] is None:
        return (f"Not all settings stored yet (missing cql_alpha = "
                f"{', '.join(f'{a:g}' for a in result['missing'])}); so far Q/G reads "
                f"{ratios or 'nothing'}.")
    return (f"Q(o, a_data) / G reads {ratios}: reading ({result['reading']}), "
            f"{CQL_READINGS[result['reading']]}.")
