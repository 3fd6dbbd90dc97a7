"""Learning curves and per-variant summaries of an experiment's run folders (chapters 06-10).

Not a runner nor a plot: ``rl.experiment.run_experiment`` writes the run folders this module
reads; ``book.plots`` draws the frames it returns.

A run folder ``{root}/{task}/{quality}/{algo}[/{variant}]/seed{k}`` holds ``config.json``
from its start, ``log.jsonl`` / ``metrics.csv`` (train and eval rows) and, once finished,
``result.json``. Every frame here is tidy: one row per run (``load_runs``), per evaluation
(``load_curves``) or per training-log row (``load_train_logs``), keyed by
``KEYS`` = (task, quality, algo, variant) and the seed. Runs without variants get the
variant ``""``.

Bands are 95 % Student-t intervals of the mean over seeds (``band="ci95"``,
mean ± t₀.₉₇₅,ₙ₋₁ · s / √n, s the sample std) or mean ± one sample std (``band="std"``).
"""

from __future__ import annotations

import copy
import json
import math
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from om2p_lite.rl.rundir import CONFIG_NAME as CONFIG
from om2p_lite.rl.rundir import LOG_NAME, METRICS_NAME
from om2p_lite.rl.rundir import RESULT_NAME as RESULT
from om2p_lite.rl.rundir import STATUS_NAME as STATUS

KEYS = ("task", "quality", "algo", "variant")
CONFIG_COLUMNS = ("eta", "estimator", "dr", "xi", "pairing", "q_norm", "sample_steps",
                  "steps", "hidden", "depth", "batch_size", "lr", "eval_every",
                  "eval_episodes")
BANDS = ("ci95", "std")
REPO = Path(__file__).resolve().parents[2]
# stored results are read from here instead of data/results when set (tests of the book path)
RESULTS_ENV = "OM2P_RESULTS_ROOT"
# what a chapter at the smoke budget reruns: every variant, SMOKE_SEEDS seeds, tiny runs
SMOKE_SEEDS = 2
SMOKE_OVERRIDES: dict[str, Any] = dict(
    data_budget="smoke", steps=20, batch_size=32, hidden=16, depth=1, critic_hidden=16,
    critic_depth=1, eval_every=10, eval_episodes=2, log_every=5, progress=False, threads=1)


def _read_json(path: Path) -> Any:
    """A JSON file, or a ``ValueError`` naming it and the fix."""
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise ValueError(f"{path}: unreadable or not JSON ({err}). Fix: delete its run "
                         f"folder and rerun the experiment's grid command") from err


def _keys_from_path(folder: Path, root: Path) -> dict[str, Any]:
    """task, quality, algo, variant, seed from ``{task}/{quality}/{algo}[/{variant}]/seed{k}``."""
    parts = folder.relative_to(root).parts
    if len(parts) not in (4, 5) or not parts[-1].startswith("seed") or \
            not parts[-1][4:].isdigit():
        raise ValueError(f"{folder}: not a run folder of the layout "
                         f"task/quality/algo[/variant]/seedK under {root}. Fix: point at "
                         f"the experiment's results_dir")
    return {"task": parts[0], "quality": parts[1], "algo": parts[2],
            "variant": parts[3] if len(parts) == 5 else "", "seed": int(parts[-1][4:])}


def run_folders(root: str | Path) -> list[Path]:
    """Every run folder under ``root`` (a folder with a config.json or result.json), sorted."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no results folder. Fix: run `python -m om2p_lite "
                                f"grid --experiment FILE` (its results_dir) first")
    found = {p.parent for name in (RESULT, CONFIG) for p in root.rglob(name)}
    return sorted(found)


def _num(value: Any) -> float:
    """A float, NaN for None / missing."""
    return float("nan") if value is None else float(value)


def short_device(described: str | None) -> str:
    """``describe_device``'s text without the torch version or thread count: 'cpu' or
    'cuda (NVIDIA H100 80GB HBM3)'; '' when a result predates the record."""
    if not described:
        return ""
    name = str(described).split(", torch")[0]
    return "cpu" if name.startswith("cpu") else name


def devices_of(devices: Iterable[str]) -> str:
    """The distinct recorded devices of some runs, joined by ' + ' ('' when none); entries
    that are already such joins count by their parts."""
    return " + ".join(sorted({d for x in devices for d in str(x).split(" + ")} - {""}))


def load_runs(root: str | Path) -> pd.DataFrame:
    """One row per run folder: keys, seed, status (finished | failed | running), final
    return and normalised score, seconds per step, wall time, the config's main fields."""
    root = Path(root)
    rows = []
    for folder in run_folders(root):
        keys = _keys_from_path(folder, root)
        if (folder / RESULT).exists():
            res = _read_json(folder / RESULT)
            cfg = res.get("config", {})
            status = "finished"
            values = {"return": _num(res.get("return")),
                      "normalised": _num(res.get("normalised")),
                      "s_per_step": _num(res.get("s_per_step")),
                      "wall_s": _num(res.get("wall_s")),
                      "device": short_device(res.get("provenance", {}).get("device"))}
        else:
            cfg = _read_json(folder / CONFIG)
            st = _read_json(folder / STATUS) if (folder / STATUS).exists() else {}
            status = "failed" if st.get("status") == "failed" else "running"
            values = {k: float("nan") for k in ("return", "normalised", "s_per_step",
                                                 "wall_s")} | {"device": ""}
        values["population"] = (_num(res.get("population")) if status == "finished"
                                else float("nan"))
        rows.append(keys | {"status": status} | values
                    | {c: cfg.get(c) for c in CONFIG_COLUMNS} | {"path": str(folder)})
    if not rows:
        raise FileNotFoundError(f"{root}: no run folders. Fix: run `python -m om2p_lite grid "
                                f"--experiment FILE` first")
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


def _log_rows(folder: Path) -> list[dict[str, Any]]:
    """Training and evaluation rows of a run: metrics.csv, else log.jsonl, else result.json."""
    if (folder / METRICS_NAME).exists():
        try:
            return pd.read_csv(folder / METRICS_NAME).to_dict("records")
        except (OSError, ValueError) as err:
            raise ValueError(f"{folder / METRICS_NAME}: unreadable ({err}). Fix: delete the "
                             f"run folder and rerun the grid") from err
    if (folder / LOG_NAME).exists():
        rows = []
        for line in (folder / LOG_NAME).read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except ValueError:  # a run still writing its last line
                continue
        return rows
    if (folder / RESULT).exists():
        return [dict(e, kind="eval") for e in _read_json(folder / RESULT).get("evals", [])]
    return []


def _rows_of(root: str | Path, finished_only: bool) -> Iterable[tuple[dict[str, Any],
                                                                       list[dict[str, Any]]]]:
    root = Path(root)
    for folder in run_folders(root):
        if finished_only and not (folder / RESULT).exists():
            continue
        yield _keys_from_path(folder, root), _log_rows(folder)


def load_curves(root: str | Path, finished_only: bool = True) -> pd.DataFrame:
    """Tidy learning curves: one row per evaluation (keys, seed, step, return, normalised)."""
    rows = []
    for keys, log in _rows_of(root, finished_only):
        for row in log:
            if row.get("kind") == "eval":
                rows.append(keys | {"step": int(row["step"]), "return": _num(row["return"]),
                                    "normalised": _num(row.get("normalised"))})
    columns = [*KEYS, "seed", "step", "return", "normalised"]
    return pd.DataFrame(rows, columns=columns)


def load_train_logs(root: str | Path, columns: Sequence[str] = ("du_dr_zero_frac",),
                    finished_only: bool = True) -> pd.DataFrame:
    """Tidy training-log rows (keys, seed, step and ``columns``; NaN where a run lacks one)."""
    rows = []
    for keys, log in _rows_of(root, finished_only):
        for row in log:
            if row.get("kind") == "train":
                rows.append(keys | {"step": int(row["step"])}
                            | {c: _num(row.get(c)) for c in columns})
    return pd.DataFrame(rows, columns=[*KEYS, "seed", "step", *columns])


def interval(values: Sequence[float] | np.ndarray, band: str = "ci95",
             ) -> tuple[float, float, int]:
    """(mean, half-width, n) of the finite ``values``: the band's half-width is
    t₀.₉₇₅,ₙ₋₁ · s / √n (``ci95``) or s (``std``); 0 for fewer than two values."""
    if band not in BANDS:
        raise ValueError(f"band: unknown {band!r}. Fix: use one of {BANDS}")
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    n = len(x)
    if n == 0:
        return float("nan"), float("nan"), 0
    if n == 1:
        return float(x[0]), 0.0, 1
    s = float(x.std(ddof=1))
    if band == "std":
        return float(x.mean()), s, n
    from scipy.stats import t

    return float(x.mean()), float(t.ppf(0.975, n - 1)) * s / math.sqrt(n), n


def _summary(df: pd.DataFrame, by: Sequence[str], value: str, band: str) -> pd.DataFrame:
    if value not in df.columns:
        raise ValueError(f"value: no column {value!r}. Fix: use one of {list(df.columns)}")
    rows = []
    for key, group in df.groupby(list(by), sort=False, dropna=False):
        mean, half, n = interval(group[value].to_numpy(), band)
        rows.append(dict(zip(by, key if isinstance(key, tuple) else (key,), strict=True))
                    | {"mean": mean, "lo": mean - half, "hi": mean + half, "err": half,
                       "n": n})
    return pd.DataFrame(rows, columns=[*by, "mean", "lo", "hi", "err", "n"])


def curve_bands(curves: pd.DataFrame, value: str = "return", band: str = "ci95",
                ) -> pd.DataFrame:
    """Mean and band over seeds per (task, quality, algo, variant, step): columns mean, lo,
    hi, err (half-width) and n (seeds); variants in the order they first appear."""
    out = _summary(curves, [*KEYS, "step"], value, band)
    rank = {k: i for i, k in enumerate(dict.fromkeys(zip(*(out[c] for c in KEYS),
                                                          strict=True)))}
    out["_rank"] = [rank[k] for k in zip(*(out[c] for c in KEYS), strict=True)]
    return out.sort_values(["_rank", "step"], kind="stable").drop(columns="_rank") \
        .reset_index(drop=True)


def final_scores(runs: pd.DataFrame, value: str = "return", band: str = "ci95",
                 ) -> pd.DataFrame:
    """Final ``value`` per (task, quality, algo, variant) over its finished seeds: mean,
    lo, hi, err, n, in the order the runs first appear."""
    done = runs[runs["status"] == "finished"]
    return _summary(done, list(KEYS), value, band)


def zero_fraction(logs: pd.DataFrame, column: str = "du_dr_zero_frac") -> pd.DataFrame:
    """Share of exactly-zero du/dr estimates per variant, averaged over logged steps and
    seeds (mean, min and max over the rows; n = rows)."""
    if column not in logs.columns:
        raise ValueError(f"logs: no column {column!r}. Fix: load_train_logs(root, "
                         f"columns=[{column!r}])")
    rows = []
    for key, group in logs.groupby(list(KEYS), sort=False):
        x = group[column].to_numpy(dtype=float)
        x = x[np.isfinite(x)]
        rows.append(dict(zip(KEYS, key, strict=True))
                    | {"mean": float(x.mean()) if len(x) else float("nan"),
                       "min": float(x.min()) if len(x) else float("nan"),
                       "max": float(x.max()) if len(x) else float("nan"), "n": len(x)})
    return pd.DataFrame(rows, columns=[*KEYS, "mean", "min", "max", "n"])


def step_times(runs: pd.DataFrame, column: str = "s_per_member_step") -> pd.DataFrame:
    """Milliseconds per training step per variant over its finished seeds (mean, std, n):
    per member of its population (default) or of the whole population (``s_per_step``)."""
    done = runs[runs["status"] == "finished"]
    g = done.groupby(list(KEYS), sort=False)[column]
    out = pd.DataFrame({"ms_mean": 1e3 * g.mean(), "ms_std": 1e3 * g.std(ddof=1),
                        "n": g.count()})
    return out.reset_index()


def expected_runs(experiment: str | Path | Mapping[str, Any]) -> pd.DataFrame:
    """Seeds an experiment asks for per (task, quality, algo, variant), in its order."""
    from om2p_lite.rl.experiment import experiment_cells, load_experiment, validate_experiment

    doc = (validate_experiment(dict(experiment)) if isinstance(experiment, Mapping)
           else load_experiment(experiment))
    rows = [{"task": t, "quality": q, "algo": a, "variant": v or "",
             "expected": len(doc["grid"]["seeds"])} for t, q, a, v, _ in experiment_cells(doc)]
    return pd.DataFrame(rows, columns=[*KEYS, "expected"])


def run_counts(runs: pd.DataFrame, experiment: str | Path | Mapping[str, Any],
               ) -> pd.DataFrame:
    """Per (task, quality, algo, variant) of the experiment: finished, failed and expected
    runs, and the text 'k of n seeds' a chapter prints beside a partly finished sweep."""
    out = expected_runs(experiment)
    for status in ("finished", "failed"):
        counts = runs[runs["status"] == status].groupby(list(KEYS)).size()
        out[status] = [int(counts.get(tuple(row), 0)) for row in out[list(KEYS)].to_numpy()]
    out["text"] = [f"{k} of {n} seeds" for k, n in zip(out["finished"], out["expected"],
                                                        strict=True)]
    return out


def completeness(counts: pd.DataFrame) -> str:
    """One line on a sweep's state: 'all 50 runs finished' or 'k of n runs finished
    (variant a: 3 of 5 seeds, ...)'."""
    done, total = int(counts["finished"].sum()), int(counts["expected"].sum())
    if done == total:
        return f"all {total} runs finished"
    short = counts[counts["finished"] < counts["expected"]]
    names = [("/".join(str(v) for v in (row.task, row.quality, row.algo, row.variant) if v)
              + f": {row.text}") for row in short.itertuples()]
    return f"{done} of {total} runs finished ({'; '.join(names)})"


def welch_p(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided p-value of Welch's t-test that ``a`` and ``b`` have equal means (NaN if
    either has fewer than two finite values)."""
    x, y = (np.asarray(v, dtype=float) for v in (a, b))
    x, y = x[np.isfinite(x)], y[np.isfinite(y)]
    if len(x) < 2 or len(y) < 2:
        return float("nan")
    if x.std() == 0 and y.std() == 0:
        return 1.0 if x.mean() == y.mean() else 0.0
    from scipy.stats import ttest_ind

    return float(ttest_ind(x, y, equal_var=False).pvalue)


def verdicts(runs: pd.DataFrame, algo: str = "om2p", value: str = "normalised",
             alpha: float = 0.05, exclude: Sequence[str] = ()) -> pd.DataFrame:
    """Per (task, quality): ``algo`` against the best other algorithm by mean ``value``
    (never one of ``exclude``, e.g. another setting of the same algorithm); 'wins' /
    'loses' when Welch's test rejects equal means at ``alpha``, else 'ties'."""
    done = runs[(runs["status"] == "finished") & ~runs["algo"].isin(set(exclude) - {algo})]
    rows = []
    for (task, quality), block in done.groupby(["task", "quality"], sort=False):
        means = block.groupby("algo")[value].mean()
        if algo not in means or len(means) < 2:
            continue
        rival = means.drop(algo).idxmax()
        ours = block.loc[block["algo"] == algo, value].to_numpy()
        theirs = block.loc[block["algo"] == rival, value].to_numpy()
        p = welch_p(ours, theirs)
        diff = means[algo] - means[rival]
        verdict = "ties" if not p < alpha else ("wins" if diff > 0 else "loses")
        rows.append({"task": task, "quality": quality, "mean": means[algo], "rival": rival,
                     "rival_mean": means[rival], "diff": diff, "p": p, "verdict": verdict,
                     "n": len(ours), "rival_n": len(theirs)})
    return pd.DataFrame(rows, columns=["task", "quality", "mean", "rival", "rival_mean",
                                       "diff", "p", "verdict", "n", "rival_n"])


def verdict_text(table: pd.DataFrame, algo: str = "OM2P", alpha: float = 0.05) -> str:
    """A sentence built from ``verdicts``: where ``algo`` wins, loses and ties."""
    if table.empty:
        return f"No data set has finished runs of {algo} and another algorithm yet."
    parts = []
    for verdict, word in (("wins", "wins"), ("loses", "loses"), ("ties", "ties within noise")):
        rows = table[table["verdict"] == verdict]
        where = ", ".join(f"{r.task} {r.quality} ({'vs' if verdict != 'ties' else 'with'} "
                          f"{r.rival})" for r in rows.itertuples())
        parts.append(f"{word} on {len(rows)}" + (f": {where}" if len(rows) else ""))
    return (f"Against the best other algorithm of each data set (Welch's t-test, "
            f"α = {alpha}), {algo} " + "; ".join(parts) + f" (of {len(table)} data sets).")


def compare_to(runs: pd.DataFrame, reference: str, value: str = "return",
               band: str = "ci95", alpha: float = 0.05) -> pd.DataFrame:
    """Final ``value`` of every variant against the variant ``reference`` of the same
    (task, quality, algo): mean, err, n, diff to the reference, Welch's p and a verdict
    ('higher' / 'lower' when p < ``alpha``, else 'same within noise')."""
    done = runs[runs["status"] == "finished"]
    if reference not in set(done["variant"]):
        raise ValueError(f"reference: no finished runs of variant {reference!r}. Fix: use "
                         f"one of {sorted(set(done['variant']))}")
    table = final_scores(done, value, band)
    diffs, ps, words = [], [], []
    for row in table.itertuples():
        cell = done[(done["task"] == row.task) & (done["quality"] == row.quality)
                    & (done["algo"] == row.algo)]
        ref = cell.loc[cell["variant"] == reference, value].to_numpy()
        own = cell.loc[cell["variant"] == row.variant, value].to_numpy()
        p = welch_p(own, ref) if row.variant != reference else float("nan")
        diff = row.mean - float(np.mean(ref)) if len(ref) else float("nan")
        diffs.append(diff)
        ps.append(p)
        words.append("reference" if row.variant == reference else
                     "same within noise" if not p < alpha else
                     "higher" if diff > 0 else "lower")
    return table.assign(diff=diffs, p=ps, verdict=words)


def setting_label(estimator: str, dr: float | None) -> str:
    """'fd Δr=1e-08', 'jvp' or 'zero': how the book names a du/dr setting."""
    return f"fd Δr={dr:.0e}" if estimator == "fd" else str(estimator)


def dr_claim(compared: pd.DataFrame, runs: pd.DataFrame, zeros: pd.DataFrame | None = None,
             threshold: float = 1e-8) -> str:
    """What the runs say about 'Δr ≤ threshold is comparable to exact gradients', built
    from ``compare_to(runs, <the jvp variant>)`` and, if given, ``zero_fraction`` rows.

    In float32, fd at such steps is (mostly) the ``zero`` estimator; the sentence says
    whether those runs match ``jvp``, and whether ``zero`` itself matches ``jvp``.
    """
    settings = runs.drop_duplicates("variant").set_index("variant")
    est = settings["estimator"].to_dict()
    drs = settings["dr"].to_dict()
    small = [v for v in compared["variant"] if est.get(v) == "fd" and drs[v] <= threshold]
    zero = [v for v in compared["variant"] if est.get(v) == "zero"]
    if not small:
        return f"No finished fd runs with Δr ≤ {threshold:.0e} yet."
    by = compared.set_index("variant")
    same = [v for v in small if by.loc[v, "verdict"] == "same within noise"]
    frac = ""
    if zeros is not None and not zeros.empty:
        z = zeros.set_index("variant")["mean"]
        shares = [f"{100 * z[v]:.0f} %" for v in small if v in z]
        if shares:
            frac = (f" During training, {', '.join(shares)} of their du/dr estimates "
                    f"were exactly zero.")
    listed = ", ".join(f"{setting_label('fd', drs[v])}: {by.loc[v, 'mean']:.2f} "
                       f"(p = {by.loc[v, 'p']:.2f})" for v in small)
    ref = by.loc[by["verdict"] == "reference", "mean"].iloc[0]
    text = (f"Against jvp (final return {ref:.2f}), fd with Δr ≤ {threshold:.0e} ends at "
            f"{listed}: {len(same)} of {len(small)} settings are the same within noise."
            f"{frac}")
    z_same = None
    if zero:
        z_same = by.loc[zero[0], "verdict"] == "same within noise"
        text += (f" The zero estimator ends at {by.loc[zero[0], 'mean']:.2f}, "
                 + ("the same as jvp within noise." if z_same else
                    f"{by.loc[zero[0], 'verdict']} than jvp."))
    if len(same) == len(small):
        if z_same:
            return text + (" So the claim holds on this task, but because du/dr barely "
                           "matters here, not because the finite difference is accurate: "
                           "in float32 these steps are the zero estimator.")
        if z_same is False:
            return text + (" The tiny steps match jvp although zero does not: their "
                           "non-zero share carries some derivative information.")
        return text + " So the claim holds on this task."
    if z_same:
        return text + (" So the claim does not hold in float32 on our data, even though "
                       "zero matches jvp: the non-zero share of these estimates is rounding "
                       "noise divided by a tiny Δr, and it hurts.")
    return text + (" So the claim does not hold in float32 on our data: these steps are "
                   "(mostly) the zero estimator, and that trains differently from jvp.")


def sweep_frames(stats: pd.DataFrame, sweep: Mapping[str, str],
                 fixed: Mapping[str, str] | None = None, name: str = "selected setting",
                 ) -> tuple[list[int], dict[str, dict[str, list[float]]]]:
    """The frames of a static slider over a precomputed sweep (``plots.slider_lines``):
    for each variant of ``sweep`` (variant → slider label) its mean curve as ``name``,
    beside the mean curves of the ``fixed`` variants (variant → legend name).

    Returns the shared steps and ``frames[label][curve] = mean return per step`` (NaN
    where a variant has no evaluation at a step)."""
    steps = sorted(int(s) for s in stats["step"].unique())

    def mean_of(variant: str) -> list[float]:
        sub = stats[stats["variant"] == variant].set_index("step")["mean"]
        return [float(sub.get(s, float("nan"))) for s in steps]

    frames = {label: {name: mean_of(variant)} | {legend: mean_of(v) for v, legend in
                                                  (fixed or {}).items()}
              for variant, label in sweep.items()}
    return steps, frames


def _in_order(df: pd.DataFrame, order: Sequence[str]) -> pd.DataFrame:
    """Rows sorted (stably) by the position of their variant in ``order``."""
    rank = {v: i for i, v in enumerate(order)}
    return df.sort_values("variant", key=lambda c: c.map(rank).fillna(len(rank)),
                          kind="stable").reset_index(drop=True)


@dataclass
class Sweep:
    """An experiment's runs as a chapter reads them: stored results at the book budget, a
    tiny rerun at smoke. Frames are in the experiment file's variant order."""

    name: str  # the experiment file's stem, e.g. fig2_dr
    experiment: Path
    root: Path  # the results folder read
    budget: str
    stored: bool  # True: stored results; False: rerun tiny just now
    doc: dict[str, Any]
    runs: pd.DataFrame
    curves: pd.DataFrame
    logs: pd.DataFrame
    counts: pd.DataFrame
    order: list[str] = field(default_factory=list)
    note: str = ""  # set when the book read a tiny rerun because nothing was stored yet

    @property
    def command(self) -> str:
        """The command that makes (or finishes) the stored results."""
        try:
            path = self.experiment.resolve().relative_to(REPO).as_posix()
        except ValueError:
            path = self.experiment.as_posix()
        return f"python -m om2p_lite grid --experiment {path}"

    def plan(self) -> str:
        """The comment block at the top of the experiment file: what it runs, why, and its
        compute plan in CPU-hours."""
        lines = []
        for line in self.experiment.read_text().splitlines():
            if not line.startswith("#"):
                break
            lines.append(line)
        return "\n".join(lines)

    def status(self) -> str:
        """One line: which results these are and how complete."""
        where = (f"stored results in {self.root.name}/, made by `{self.command}`"
                 if self.stored else f"a tiny rerun at the {self.budget} budget "
                 f"({SMOKE_SEEDS} seeds, {self.runs['steps'].max():.0f} steps), not the "
                 f"book's results")
        return f"{self.name}: {completeness(self.counts)}; {where}"


def stored_results(experiment: str | Path) -> Path:
    """Where the stored results of ``experiment`` live: its ``results_dir`` below the
    repository, or below ``$OM2P_RESULTS_ROOT`` when that is set."""
    from om2p_lite.rl.experiment import load_experiment

    results_dir = Path(load_experiment(experiment).get("results_dir", "data/results/main"))
    if os.environ.get(RESULTS_ENV):
        return Path(os.environ[RESULTS_ENV]) / results_dir.name
    return results_dir if results_dir.is_absolute() else REPO / results_dir


def load_sweep(experiment: str | Path, budget: str | None = None,
               smoke_overrides: Mapping[str, Any] | None = None,
               smoke_grid: Mapping[str, list[Any]] | None = None,
               log_columns: Sequence[str] = ("du_dr_zero_frac",)) -> Sweep:
    """The runs of ``experiment`` for a chapter: at the ``smoke`` budget every variant is
    rerun tiny (``SMOKE_OVERRIDES``, ``SMOKE_SEEDS`` seeds, ``smoke_grid`` replacing [grid]
    entries such as the tasks) into a temporary folder through ``run_experiment``, the
    library call the grid command makes; at ``book`` / ``full`` the stored results are
    read (``stored_results``). Runs that fail are kept as 'failed'. A book build before any
    stored run exists reads a tiny rerun instead and says so (``Sweep.note``, printed), so
    the book still builds while a long sweep is under way."""
    from om2p_lite.rl.experiment import ExperimentFailed, load_experiment, run_experiment
    from om2p_lite.runtime.budget import get_budget

    name = get_budget(budget).name
    experiment = Path(experiment)
    doc = load_experiment(experiment)
    order = list(doc.get("variants") or [""])
    if name == "smoke":
        doc = copy.deepcopy(doc)
        unknown = sorted(set(smoke_grid or {}) - {"algos", "tasks", "qualities"})
        if unknown:
            raise ValueError(f"smoke_grid: unknown key(s) {unknown}. Fix: replace only "
                             f"algos, tasks or qualities")
        doc["grid"].update(smoke_grid or {})
        if "exclude" in doc["grid"]:  # only the cells the smaller grid still has
            grid = doc["grid"]
            kept = [c for c in grid["exclude"] if c.split("/")[0] in grid["tasks"]
                    and c.split("/")[1] in grid["qualities"]
                    and "/".join(c.split("/")[2:]) in grid["algos"]]
            grid["exclude"] = kept
            if not kept:
                del grid["exclude"]
        doc["grid"]["seeds"] = doc["grid"]["seeds"][:SMOKE_SEEDS]
        root = Path(tempfile.mkdtemp(prefix=f"om2p-{experiment.stem}-"))
        try:
            run_experiment(doc, results_dir=root,
                           overrides=SMOKE_OVERRIDES | dict(smoke_overrides or {}))
        except ExperimentFailed:
            pass  # recorded in the failed runs' status.json; load_runs reports them
    else:
        root = stored_results(experiment)
        if not (root.is_dir() and any(root.rglob(RESULT))):
            note = (f"No stored results of {experiment.name} yet: what follows is a tiny "
                    f"rerun at the smoke budget, not the book protocol. Make them with "
                    f"`python -m om2p_lite grid --experiment data/experiments/"
                    f"{experiment.name}` (its cost is at the top of the file).")
            print(note)
            sweep = load_sweep(experiment, "smoke", smoke_overrides, smoke_grid, log_columns)
            sweep.note = note
            return sweep
    runs = _in_order(load_runs(root), order)
    return Sweep(name=experiment.stem, experiment=experiment, root=root, budget=name,
                 stored=name != "smoke", doc=doc, runs=runs,
                 curves=_in_order(load_curves(root), order),
                 logs=_in_order(load_train_logs(root, log_columns), order),
                 counts=run_counts(runs, doc), order=order)


def variant_settings(runs: pd.DataFrame) -> pd.DataFrame:
    """The config fields (``CONFIG_COLUMNS``) of each variant, from its first run."""
    return runs.drop_duplicates("variant").set_index("variant")[list(CONFIG_COLUMNS)]


def comparison_text(compared: pd.DataFrame, labels: Mapping[str, str] | None = None,
                    what: str = "final return", alpha: float = 0.05) -> str:
    """A sentence built from ``compare_to``: each variant against the reference (mean ±
    band half-width, verdict, Welch's p), then which variant has the highest mean and
    whether its lead over the reference is beyond noise."""
    names = dict(labels or {})
    label = lambda v: names.get(v, v)  # noqa: E731
    ref = compared[compared["verdict"] == "reference"]
    if ref.empty:
        raise ValueError("compared: no reference row. Fix: pass the frame compare_to returns")
    ref_row = ref.iloc[0]
    parts = [f"{label(r.variant)} {r.mean:.2f} ± {r.err:.2f} ({r.verdict}, p = {r.p:.2f})"
             for r in compared.itertuples() if r.verdict != "reference"]
    best = compared.loc[compared["mean"].idxmax()]
    if best["verdict"] == "reference":
        tail = f"{label(best['variant'])} itself has the highest mean."
    elif best["verdict"] == "higher":
        tail = (f"The highest mean is {label(best['variant'])}'s, above "
                f"{label(ref_row['variant'])} beyond noise (p = {best['p']:.2f} < {alpha}).")
    else:
        tail = (f"The highest mean is {label(best['variant'])}'s, but its lead over "
                f"{label(ref_row['variant'])} is within noise (p = {best['p']:.2f}).")
    return (f"Against {label(ref_row['variant'])} ({what} {ref_row['mean']:.2f} ± "
            f"{ref_row['err']:.2f}, n = {ref_row['n']}): " + "; ".join(parts) + ". " + tail)


def ablation_text(compared: pd.DataFrame, labels: Mapping[str, str] | None = None) -> str:
    """Which variants end lower than the reference beyond noise, which within noise and
    which higher, as a sentence (the paper's Fig. 4 claim: removing any component lowers
    the return)."""
    names = dict(labels or {})
    ref = compared.loc[compared["verdict"] == "reference", "variant"]
    if ref.empty:
        raise ValueError("compared: no reference row. Fix: pass the frame compare_to returns")
    others = compared[compared["verdict"] != "reference"]
    groups = {word: [names.get(v, v) for v in others.loc[others["verdict"] == word,
                                                          "variant"]]
              for word in ("lower", "same within noise", "higher")}
    lower = groups["lower"]
    text = (f"Removing a component lowers the return beyond noise for {len(lower)} of "
            f"{len(others)} ablations" + (f" ({', '.join(lower)})" if lower else ""))
    for word in ("same within noise", "higher"):
        if groups[word]:
            text += f"; {', '.join(groups[word])}: {word}"
    ref_name = names.get(ref.iloc[0], ref.iloc[0])
    verdict = ("holds here for every component" if len(lower) == len(others) else
               "does not hold here for every component")
    return f"{text} (each against {ref_name}). The paper's claim {verdict}."


def plateau_check(curves: pd.DataFrame, at: float = 0.75, value: str = "return",
                  alpha: float = 0.05) -> dict[str, Any]:
    """Has one learning curve (the rows of one variant, several seeds) flattened? Compares
    each seed's ``value`` at the last step with its value at the evaluation nearest to
    ``at`` × the last step (paired t-test over seeds); 'flat' unless the end is higher
    beyond noise. Returns the two steps, their means, the p-value, the verdict and text."""
    if curves.empty:
        raise ValueError("curves: no rows. Fix: pass the curve rows of one finished variant")
    steps = sorted(curves["step"].unique())
    last = steps[-1]
    early = min(steps[:-1] or steps, key=lambda s: abs(s - at * last))
    wide = curves.pivot_table(index="seed", columns="step", values=value)[[early, last]]
    wide = wide.dropna()
    a, b = wide[early].to_numpy(), wide[last].to_numpy()
    p = float("nan")
    if len(a) >= 2 and np.any(a != b):
        from scipy.stats import ttest_rel

        p = float(ttest_rel(b, a).pvalue)
    rising = bool(p < alpha and b.mean() > a.mean())
    text = (f"mean {value} {a.mean():.2f} at step {early} and {b.mean():.2f} at step "
            f"{last} (paired t-test over {len(a)} seeds, p = {p:.2f}): "
            + ("still rising" if rising else "flat within noise"))
    return {"step_a": int(early), "step_b": int(last), "mean_a": float(a.mean()),
            "mean_b": float(b.mean()), "p": p, "flat": not rising, "text": text}


def score_matrix(runs: pd.DataFrame, value: str = "normalised",
                 algos: Sequence[str] | None = None,
                 ) -> tuple[list[str], list[str], np.ndarray, list[list[str]]]:
    """The main table as a heatmap's inputs: rows 'task quality', columns algorithms, the
    mean ``value`` over finished seeds (NaN where none) and 'mean ± std (n)' texts."""
    from om2p_lite.rl.results import ORDER, QUALITY_ORDER

    done = runs[runs["status"] == "finished"]
    present = list(dict.fromkeys(done["algo"]))
    cols = list(algos) if algos else [a for a in ORDER if a in present] + \
        [a for a in present if a not in ORDER]
    qrank = {q: i for i, q in enumerate(QUALITY_ORDER)}
    cells = sorted({(t, q) for t, q in zip(done["task"], done["quality"], strict=True)},
                   key=lambda tq: (tq[0], qrank.get(tq[1], 99)))
    z = np.full((len(cells), len(cols)), np.nan)
    text = [["–"] * len(cols) for _ in cells]
    for i, (task, quality) in enumerate(cells):
        for j, algo in enumerate(cols):
            x = done.loc[(done["task"] == task) & (done["quality"] == quality)
                         & (done["algo"] == algo), value].to_numpy(dtype=float)
            x = x[np.isfinite(x)]
            if len(x):
                z[i, j] = x.mean()
                sd = x.std(ddof=1) if len(x) > 1 else 0.0
                text[i][j] = f"{x.mean():.0f} ± {sd:.0f} ({len(x)})"
    return [f"{t} {q}" for t, q in cells], cols, z, text


def algo_costs(runs: pd.DataFrame) -> pd.DataFrame:
    """Per algorithm and task family (MPE, HalfCheetah): ms per training step and member,
    the hours its finished runs took (steps × time per member step) and the device(s)
    they ran on, so that a table never mixes a GPU's time with a CPU's unlabelled."""
    done = runs[runs["status"] == "finished"].assign(
        family=lambda d: np.where(d["task"] == "halfcheetah", "halfcheetah", "mpe"),
        seconds=lambda d: d["s_per_member_step"] * d["steps"].astype(float))
    rows = []
    for algo, block in done.groupby("algo", sort=False):
        row: dict[str, Any] = {"algo": algo, "runs": len(block)}
        for family in ("mpe", "halfcheetah"):
            part = block[block["family"] == family]
            row[f"ms_{family}"] = 1e3 * part["s_per_member_step"].mean()  # NaN when none
            row[f"hours_{family}"] = part["seconds"].sum() / 3600
            row[f"device_{family}"] = devices_of(part["device"])
        rows.append(row)
    return pd.DataFrame(rows, columns=["algo", "ms_mpe", "ms_halfcheetah", "hours_mpe",
                                       "hours_halfcheetah", "device_mpe",
                                       "device_halfcheetah", "runs"])
