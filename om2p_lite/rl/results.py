"""Run folders → tidy frames → the main table: the one reader of ``result.json``.

Not a runner: ``grid`` (``rl.scheduler``) writes the run folders this module reads. The CLI's
``table``, the book's sweeps (``book.sweeps``), learning curves (``book.curves``) and evidence
(``book.evidence``) all read runs through ``iter_runs`` / ``load_runs``.

A run folder ``{root}/{task}/{quality}/{algo}[/{variant}]/seed{k}`` holds ``config.json``
from its start, ``log.jsonl`` / ``metrics.csv`` and, once finished, ``result.json``. A
finished run is named by its ``result.json`` (so a folder of any layout reads), a run still
under way or failed by that layout. Runs without a variant get the variant ``""``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from om2p_lite.rl.config import stored_value
from om2p_lite.rl.rundir import CONFIG_NAME, RESULT_NAME, STATUS_NAME, read_run_file
from om2p_lite.runtime.device import short_device
from om2p_lite.runtime.record import is_dirty

KEYS = ("task", "quality", "algo", "variant")  # one cell of a table; its runs differ by seed
CONFIG_COLUMNS = ("eta", "estimator", "dr", "xi", "pairing", "q_norm", "sample_steps",
                  "steps", "hidden", "depth", "batch_size", "lr", "eval_every",
                  "eval_episodes")
DIRTY_MARK = "†"
DIRTY_NOTE = (f"{DIRTY_MARK} made from a working tree with uncommitted changes (git commit "
              f"recorded with -dirty): the code that made it is not exactly in the history")
ORDER = ("om2p", "om2p-official", "flowq", "diffusionq", "omar", "cql", "td3bc", "td3", "bc")
QUALITY_ORDER = ("random", "medium-replay", "medium", "expert")
GRID_FIX = "run `python -m om2p_lite grid --experiment FILE` first, or name the folder it wrote"


# ----------------------------------------------------------------------------- reading

def to_float(value: Any) -> float:
    """A float, NaN for None / missing."""
    return float("nan") if value is None else float(value)


def run_folders(root: str | Path) -> list[Path]:
    """Every run folder under ``root`` (a folder with a config.json or result.json), sorted."""
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise ValueError(f"{root}: is a file, not a results folder. Fix: name the folder "
                         f"that holds the run folders (the experiment's results_dir)")
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such results folder. Fix: {GRID_FIX}")
    return sorted({p.parent for name in (RESULT_NAME, CONFIG_NAME) for p in root.rglob(name)})


def keys_from_path(folder: Path, root: Path) -> dict[str, Any]:
    """task, quality, algo, variant, seed from ``{task}/{quality}/{algo}[/{variant}]/seed{k}``."""
    parts = folder.relative_to(root).parts
    if len(parts) not in (4, 5) or not parts[-1].startswith("seed") or \
            not parts[-1][4:].isdigit():
        raise ValueError(f"{folder}: not a run folder of the layout "
                         f"task/quality/algo[/variant]/seedK under {root}. Fix: point at "
                         f"the experiment's results_dir")
    return {"task": parts[0], "quality": parts[1], "algo": parts[2],
            "variant": parts[3] if len(parts) == 5 else "", "seed": int(parts[-1][4:])}


def keys_of(result: dict[str, Any]) -> dict[str, Any]:
    """task, quality, algo, variant ("" when none), seed as a ``result.json`` records them."""
    return {"task": result["task"], "quality": result["quality"], "algo": result["algo"],
            "variant": result.get("variant") or "", "seed": result["seed"]}


def iter_runs(root: str | Path, finished_only: bool = False,
              ) -> Iterator[tuple[Path, dict[str, Any], dict[str, Any] | None]]:
    """(folder, keys, result or None) of every run folder under ``root``, in sorted order;
    each ``result.json`` read and checked (``rundir.read_run_file``: damage is one line)."""
    root = Path(root)
    for folder in run_folders(root):
        if (folder / RESULT_NAME).exists():
            result = read_run_file(folder / RESULT_NAME)
            yield folder, keys_of(result), result
        elif not finished_only:
            yield folder, keys_from_path(folder, root), None


def _row(folder: Path, keys: dict[str, Any], res: dict[str, Any] | None) -> dict[str, Any]:
    """One run as a row of ``load_runs``."""
    if res is not None:
        cfg, status = res["config"], "finished"
        commit = res["provenance"].get("git_commit")
        values = {k: to_float(res.get(k)) for k in ("return", "normalised", "s_per_step",
                                                     "wall_s")}
        values |= {"device": short_device(res["provenance"].get("device")),
                   "population": to_float(res.get("population")),
                   "git_commit": commit, "dirty": is_dirty(commit)}
    else:
        cfg = read_run_file(folder / CONFIG_NAME)
        st = read_run_file(folder / STATUS_NAME) if (folder / STATUS_NAME).exists() else {}
        status = "failed" if st.get("status") == "failed" else "running"
        values = {k: float("nan") for k in ("return", "normalised", "s_per_step", "wall_s")}
        values |= {"device": "", "population": float("nan"), "git_commit": None,
                   "dirty": False}
    return keys | {"status": status} | values | {c: cfg.get(c) for c in CONFIG_COLUMNS} \
        | {"action_layout": stored_value(cfg, "action_layout"),
           "behaviour": stored_value(cfg, "behaviour"), "path": str(folder)}


def load_runs(root: str | Path, finished_only: bool = False) -> pd.DataFrame:
    """One row per run folder: keys, seed, status (finished | failed | running), final
    return and normalised score, seconds per step (of the population and per member), wall
    time, device, git commit and whether its tree was dirty, the config's main fields."""
    rows = [_row(folder, keys, res) for folder, keys, res in iter_runs(root, finished_only)]
    if not rows:
        what = "finished runs (no result.json)" if finished_only else "run folders"
        raise FileNotFoundError(f"{root}: no {what}. Fix: {GRID_FIX}")
    return _per_member(pd.DataFrame(rows))


def _per_member(runs: pd.DataFrame) -> pd.DataFrame:
    """Add ``s_per_member_step``: a population's step time divided by its members.

    A result that predates the ``population`` field is counted with the finished runs that
    report the very same ``s_per_step``: the members of one population share that float.
    """
    done = runs["status"] == "finished"
    shared = runs[done].groupby("s_per_step")["s_per_step"].transform("size")
    members = runs["population"].where(runs["population"].notna(), shared)
    return runs.assign(population=members,
                       s_per_member_step=(runs["s_per_step"] / members).where(done))


def load_results(root: str | Path) -> pd.DataFrame:
    """The finished runs of ``load_runs`` for the main table, with ``normalised`` filled from
    the reference table where a result predates it."""
    df = load_runs(root, finished_only=True)
    missing = df["normalised"].isna()
    if missing.any():  # runs finished before the reference table existed
        from om2p_lite.rl.evaluate import normalised_or_none

        df.loc[missing, "normalised"] = [
            to_float(normalised_or_none(t, r, action_layout=lay, behaviour=b))
            for t, r, lay, b in zip(df.loc[missing, "task"], df.loc[missing, "return"],
                                    df.loc[missing, "action_layout"],
                                    df.loc[missing, "behaviour"], strict=True)]
    return df


# ----------------------------------------------------------------------------- the main table

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
