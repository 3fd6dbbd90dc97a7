"""Results of many runs → one tidy frame → the main table (mean ± std over seeds, best in bold).

Not a runner: ``grid`` (``rl.experiment``) writes the ``result.json`` files this module reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

KEYS = ("task", "quality", "algo", "seed")
DIRTY_MARK = "†"
DIRTY_NOTE = (f"{DIRTY_MARK} made from a working tree with uncommitted changes (git commit "
              f"recorded with -dirty): the code that made it is not exactly in the history")
ORDER = ("om2p", "om2p-official", "flowq", "diffusionq", "omar", "cql", "td3bc", "td3", "bc")
QUALITY_ORDER = ("random", "medium-replay", "medium", "expert")


def load_results(root: str | Path) -> pd.DataFrame:
    """One row per ``result.json`` under ``root``: keys, variant, return, normalised score,
    timing, the git commit and whether it was made from a dirty tree."""
    from om2p_lite.rl.rundir import RESULT_NAME, read_run_file
    from om2p_lite.runtime.record import is_dirty

    root = Path(root)
    if root.exists() and not root.is_dir():
        raise ValueError(f"{root}: is a file, not a results folder. Fix: name the folder "
                         f"that holds the run folders (the experiment's results_dir)")
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such results folder. Fix: run `python -m "
                                f"om2p_lite grid --experiment FILE` first, or name the "
                                f"folder it wrote")
    rows: list[dict[str, Any]] = []
    for path in sorted(root.rglob(RESULT_NAME)):
        res = read_run_file(path)  # checked: keys present, numbers numbers, or one-line error
        commit = res["provenance"].get("git_commit")
        rows.append({k: res[k] for k in KEYS} | {
            "variant": res.get("variant"),
            "return": res["return"], "normalised": res.get("normalised"),
            "steps": res["config"]["steps"], "wall_s": res.get("wall_s"),
            "s_per_step": res.get("s_per_step"), "git_commit": commit,
            "dirty": is_dirty(commit), "path": str(path.parent)})
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


def _columns(df: pd.DataFrame) -> list[str]:
    """Grouping columns of a table: task, quality, algo (and variant where runs have one)."""
    has_variant = "variant" in df.columns and df["variant"].notna().any()
    return ["task", "quality", "algo"] + (["variant"] if has_variant else [])


def summarise(df: pd.DataFrame, metric: str = "return") -> pd.DataFrame:
    """Mean, std and number of seeds of ``metric`` per (task, quality, algo[, variant]);
    ``dirty`` says whether any of the runs was made from a dirty tree."""
    if metric not in df.columns or df[metric].isna().all():
        raise ValueError(f"results have no {metric!r} values; use metric='return' or write "
                         f"the reference table (`python -m om2p_lite data reference`)")
    df = df.assign(dirty=df["dirty"] if "dirty" in df.columns else False)
    if "variant" in df.columns:
        df = df.assign(variant=df["variant"].fillna(""))
    g = df.groupby(_columns(df))
    s = pd.DataFrame({"mean": g[metric].mean(), "std": g[metric].std(ddof=0),
                      "n": g[metric].count(), "dirty": g["dirty"].any()}).reset_index()
    return s


def results_table(df: pd.DataFrame, metric: str = "return",
                  algos: Sequence[str] | None = None, digits: int = 1,
                  bold: str = "**") -> pd.DataFrame:
    """Rows task/quality, columns algorithms (``algo/variant`` where runs have variants),
    cells 'mean ± std'; the best mean of a row bold.

    Higher is better for returns and normalised scores. A cell with a run made from a dirty
    tree carries ``DIRTY_MARK``, and the table's ``attrs["footnote"]`` explains it.
    """
    s = summarise(df, metric)
    s["label"] = [f"{a}/{v}" if v else a for a, v in
                  zip(s["algo"], s["variant"] if "variant" in s else [""] * len(s),
                      strict=True)]
    present = list(dict.fromkeys(s["label"]))
    rank = {a: i for i, a in enumerate(ORDER)}
    algos = list(algos) if algos else sorted(
        present, key=lambda lab: (rank.get(lab.split("/")[0], len(ORDER)), present.index(lab)))
    s["qrank"] = s["quality"].map({q: i for i, q in enumerate(QUALITY_ORDER)}).fillna(99)
    table: dict[tuple[str, str], dict[str, str]] = {}
    for (task, _, quality), block in s.sort_values(["task", "qrank"]).groupby(
            ["task", "qrank", "quality"], sort=False):
        best = block["mean"].max()
        cells = {}
        for _, row in block.iterrows():
            text = f"{row['mean']:.{digits}f} ± {row['std']:.{digits}f}"
            text = f"{bold}{text}{bold}" if row["mean"] == best else text
            cells[row["label"]] = text + (DIRTY_MARK if row["dirty"] else "")
        table[(task, quality)] = {a: cells.get(a, "–") for a in algos}
    out = pd.DataFrame.from_dict(table, orient="index")
    out.index = pd.MultiIndex.from_tuples(out.index, names=["task", "quality"])
    if s["dirty"].any():
        out.attrs["footnote"] = DIRTY_NOTE
    return out


def table_markdown(table: pd.DataFrame) -> str:
    """A GitHub/MyST markdown table of ``results_table``'s output."""
    cols = list(table.columns)
    lines = ["| task | quality | " + " | ".join(cols) + " |",
             "|" + "---|" * (len(cols) + 2)]
    for (task, quality), row in table.iterrows():
        lines.append(f"| {task} | {quality} | " + " | ".join(str(row[c]) for c in cols) + " |")
    if table.attrs.get("footnote"):
        lines += ["", table.attrs["footnote"]]
    return "\n".join(lines)


def table_html(table: pd.DataFrame, bold: str = "**") -> str:
    """An HTML table of ``results_table``'s output, its ``bold`` markers turned into <b>."""
    import re

    pattern = re.compile(re.escape(bold) + r"(.+?)" + re.escape(bold))
    cells = table.map(lambda c: pattern.sub(r"<b>\1</b>", str(c)))
    html = cells.to_html(escape=False, classes="om2p-results")
    if table.attrs.get("footnote"):
        import html as html_lib

        html += f'\n<p class="om2p-results-note">{html_lib.escape(table.attrs["footnote"])}</p>'
    return html


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
