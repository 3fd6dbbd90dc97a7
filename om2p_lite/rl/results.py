"""Results of many runs → one tidy frame → the main table (mean ± std over seeds, best in bold).

Not a runner: ``train_cli grid`` writes the ``result.json`` files this module reads.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

KEYS = ("task", "quality", "algo", "seed")
ORDER = ("om2p", "flowq", "diffusionq", "omar", "cql", "td3bc", "bc")
QUALITY_ORDER = ("random", "medium-replay", "medium", "expert")


def load_results(root: str | Path) -> pd.DataFrame:
    """One row per ``result.json`` under ``root``: keys, return, normalised score, timing."""
    rows: list[dict[str, Any]] = []
    for path in sorted(Path(root).rglob("result.json")):
        res = json.loads(path.read_text())
        rows.append({k: res[k] for k in KEYS} | {
            "return": res["return"], "normalised": res.get("normalised"),
            "steps": res["config"]["steps"], "wall_s": res.get("wall_s"),
            "s_per_step": res.get("s_per_step"), "path": str(path.parent)})
    if not rows:
        raise FileNotFoundError(f"no result.json under {root}: run `python -m om2p_lite grid "
                                f"--experiment FILE` first")
    df = pd.DataFrame(rows)
    missing = df["normalised"].isna()
    if missing.any():  # runs finished before the reference table existed
        from om2p_lite.rl.evaluate import normalised_or_none

        df.loc[missing, "normalised"] = [
            normalised_or_none(t, r) for t, r in zip(df.loc[missing, "task"],
                                                     df.loc[missing, "return"], strict=True)]
    return df


def summarise(df: pd.DataFrame, metric: str = "return") -> pd.DataFrame:
    """Mean, std and number of seeds of ``metric`` per (task, quality, algo)."""
    if metric not in df.columns or df[metric].isna().all():
        raise ValueError(f"results have no {metric!r} values; use metric='return' or write "
                         f"the reference table (`python -m om2p_lite data reference`)")
    g = df.groupby(["task", "quality", "algo"])[metric]
    return pd.DataFrame({"mean": g.mean(), "std": g.std(ddof=0), "n": g.count()}).reset_index()


def results_table(df: pd.DataFrame, metric: str = "return",
                  algos: Sequence[str] | None = None, digits: int = 1,
                  bold: str = "**") -> pd.DataFrame:
    """Rows task/quality, columns algorithms, cells 'mean ± std'; the best mean of a row bold.

    Higher is better for returns and normalised scores.
    """
    s = summarise(df, metric)
    present = list(dict.fromkeys(s["algo"]))
    algos = list(algos) if algos else [a for a in ORDER if a in present] + \
        [a for a in present if a not in ORDER]
    s["qrank"] = s["quality"].map({q: i for i, q in enumerate(QUALITY_ORDER)}).fillna(99)
    table: dict[tuple[str, str], dict[str, str]] = {}
    for (task, _, quality), block in s.sort_values(["task", "qrank"]).groupby(
            ["task", "qrank", "quality"], sort=False):
        best = block["mean"].max()
        cells = {}
        for _, row in block.iterrows():
            text = f"{row['mean']:.{digits}f} ± {row['std']:.{digits}f}"
            cells[row["algo"]] = f"{bold}{text}{bold}" if row["mean"] == best else text
        table[(task, quality)] = {a: cells.get(a, "–") for a in algos}
    out = pd.DataFrame.from_dict(table, orient="index")
    out.index = pd.MultiIndex.from_tuples(out.index, names=["task", "quality"])
    return out


def table_markdown(table: pd.DataFrame) -> str:
    """A GitHub/MyST markdown table of ``results_table``'s output."""
    cols = list(table.columns)
    lines = ["| task | quality | " + " | ".join(cols) + " |",
             "|" + "---|" * (len(cols) + 2)]
    for (task, quality), row in table.iterrows():
        lines.append(f"| {task} | {quality} | " + " | ".join(str(row[c]) for c in cols) + " |")
    return "\n".join(lines)


def table_html(table: pd.DataFrame, bold: str = "**") -> str:
    """An HTML table of ``results_table``'s output, its ``bold`` markers turned into <b>."""
    import re

    pattern = re.compile(re.escape(bold) + r"(.+?)" + re.escape(bold))
    cells = table.map(lambda c: pattern.sub(r"<b>\1</b>", str(c)))
    return cells.to_html(escape=False, classes="om2p-results")


def dataset_references(tasks: Sequence[str], budget: str = "smoke", seed: int = 0,
                       ) -> dict[str, tuple[float, float]]:
    """(R_random, R_expert) per task from the cached datasets the grid trained on.

    Tasks whose random or expert dataset cannot be made here are left out.
    """
    from om2p_lite.data import load_dataset
    from om2p_lite.data.generate import dataset_path

    refs = {}
    for task in tasks:
        paths = [dataset_path(task, q, seed, budget) for q in ("random", "expert")]
        if all(p.exists() for p in paths):
            lo, hi = (float(load_dataset(p).episode_returns().mean()) for p in paths)
            refs[task] = (lo, hi)
    return refs


def add_normalised(df: pd.DataFrame, refs: dict[str, tuple[float, float]]) -> pd.DataFrame:
    """Fill ``normalised`` = 100 (R - R_random) / (R_expert - R_random) where refs exist."""
    df = df.copy()
    for task, (lo, hi) in refs.items():
        rows = df["task"] == task
        df.loc[rows, "normalised"] = 100.0 * (df.loc[rows, "return"] - lo) / (hi - lo)
    return df
