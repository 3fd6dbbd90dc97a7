"""Statistics of run frames for the results chapters (06-10): bands over seeds, final
scores, Welch's tests and verdicts, and the main table's heatmap and costs.

Not a reader and not prose: ``rl.results`` / ``book.curves`` make the frames read here, and
``book.claims`` turns these numbers into sentences.

Bands are 95 % Student-t intervals of the mean over seeds (``band="ci95"``,
mean ± t₀.₉₇₅,ₙ₋₁ · s / √n, s the sample std) or mean ± one sample std (``band="std"``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from om2p_lite.rl.results import CONFIG_COLUMNS, KEYS, ORDER, QUALITY_ORDER
from om2p_lite.runtime.device import devices_of

BANDS = ("ci95", "std")


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


def variant_settings(runs: pd.DataFrame) -> pd.DataFrame:
    """The config fields (``CONFIG_COLUMNS``) of each variant, from its first run."""
    return runs.drop_duplicates("variant").set_index("variant")[list(CONFIG_COLUMNS)]


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


def score_matrix(runs: pd.DataFrame, value: str = "normalised",
                 algos: Sequence[str] | None = None,
                 ) -> tuple[list[str], list[str], np.ndarray, list[list[str]]]:
    """The main table as a heatmap's inputs: rows 'task quality', columns algorithms, the
    mean ``value`` over finished seeds (NaN where none) and 'mean ± std (n)' texts."""
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

