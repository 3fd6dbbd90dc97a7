"""Evidence for the results chapters: have the critics trained, paired comparisons by
evaluation seed with equivalence margins, and the decisive experiment's reading.

Not a runner and not a plot: it reads run folders (``rl.results.iter_runs``) and
``rl.convergence``'s numbers. The reading rules are those written in
``data/experiments/budget_test.toml`` before its runs; they are code here, once.

Comparisons pair by training seed: every algorithm's seed s draws the same batch indices and
is evaluated on the same start states (``EVAL_SEED_OFFSET + s``), so with d_s = (mean over
seed s's episodes of X) - (the same of Y), d = mean_s d_s and SE = sd(d_s) / √n.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from om2p_lite.rl.results import iter_runs
from om2p_lite.rl.rundir import CONFIG_NAME, read_run_file

SE_RULE = 2.0  # "X above Y" means d > 2 SE (the pre-registered rule)
CONVERGED = 0.5  # a critic has trained when Q(o, a_data) reaches half its MC target
MARGIN = 10.0  # equivalence margin in normalised points: the 90 % interval within ±10
# the critic probe's fields (rl.convergence.CriticProbe)
PROBES = ("q_probe", "q_pi_probe", "mc_probe", "q_err_probe", "mc_rms_probe")
NEAR_ZERO = 0.2  # a mean target below 0.2 of the targets' spread: the ratio cannot read
GENERATIVE_Q = ("flowq", "om2p", "om2p-official", "diffusionq")  # Q-guided generative actors
READINGS = {"a": "the budget was the cause",
            "b": "OM2P's one-step Q path is at fault",
            "c": "the data decide"}


def label(algo: str, variant: str) -> str:
    """A method's name in tables: ``algo`` or ``algo/variant``."""
    return f"{algo}/{variant}" if variant else algo


def _linear_normaliser(task: str, reward_variant: str, action_layout: str,
                       behaviour: str) -> tuple[float, float] | None:
    """(a, b) with normalised = a + b R for the references of the run's data, or None."""
    from om2p_lite.rl.evaluate import normalised_or_none

    n0, n1 = (normalised_or_none(task, x, reward_variant, action_layout, behaviour)
              for x in (0.0, 1.0))
    return None if n0 is None or n1 is None else (n0, n1 - n0)


def load_episodes(root: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Finished runs under ``root``: (episodes, probes).

    episodes: one row per run, evaluation and episode (keys, label, seed, step, episode,
    return, normalised); probes: one row per run and evaluation with the critic probe
    (q_probe, q_pi_probe, mc_probe, q_err_probe; NaN for a run without a critic or made
    before them).
    """
    from om2p_lite.rl.config import stored_value

    episodes, probes = [], []
    for _, keys, res in iter_runs(root, finished_only=True):
        stored = res.get("config", {})  # a run older than action_layout used mpe2's
        norm = _linear_normaliser(keys["task"], stored.get("reward_variant", "mpe2"),
                                  stored_value(stored, "action_layout"),
                                  stored_value(stored, "behaviour"))
        for ev in res.get("evals", []):
            rets = np.asarray(ev.get("returns") or [ev["return"]], dtype=float)
            base = keys | {"label": label(keys["algo"], keys["variant"]),
                           "step": int(ev["step"])}
            episodes.append(pd.DataFrame(base | {
                "episode": np.arange(len(rets)), "return": rets,
                "normalised": norm[0] + norm[1] * rets if norm else np.nan}))
            probes.append(base | {k: float(ev.get(k, np.nan))
                                  for k in PROBES})
    if not episodes:
        raise FileNotFoundError(f"{root}: no finished runs. Fix: run the experiment's grid "
                                f"command (its file names it) and read again")
    return pd.concat(episodes, ignore_index=True), pd.DataFrame(probes)


def seed_scores(episodes: pd.DataFrame, step: int | None = None,
                value: str = "normalised") -> pd.DataFrame:
    """Per (task, quality, label, seed): the mean ``value`` over its episodes at ``step``
    (None: each run's last evaluation)."""
    df = episodes
    if step is None:
        last = df.groupby(["task", "quality", "label", "seed"])["step"].transform("max")
        df = df[df["step"] == last]
    else:
        df = df[df["step"] == step]
    return (df.groupby(["task", "quality", "label", "seed"], as_index=False)[value].mean()
            .rename(columns={value: "score"}))


def paired(x: pd.Series, y: pd.Series, margin: float = MARGIN) -> dict[str, Any]:
    """Paired comparison of per-seed scores ``x`` - ``y`` (indexed by seed, common seeds only).

    Returns d, SE, n, the t-based 95 % and 90 % intervals, and the verdict: 'above' or
    'below' (|d| > 2 SE), 'equivalent' (90 % interval within ±margin) or 'undecided'.
    """
    from scipy.stats import t

    seeds = sorted(set(x.index) & set(y.index))
    d = np.array([x[s] - y[s] for s in seeds], dtype=float)
    n = len(d)
    if n < 2:
        return {"d": float(d.mean()) if n else float("nan"), "se": float("nan"), "n": n,
                "ci95": (float("nan"),) * 2, "ci90": (float("nan"),) * 2,
                "verdict": "undecided"}
    mean, se = float(d.mean()), float(d.std(ddof=1) / np.sqrt(n))
    h95, h90 = (float(t.ppf(q, n - 1)) * se for q in (0.975, 0.95))
    verdict = ("above" if mean > SE_RULE * se else "below" if mean < -SE_RULE * se
               else "equivalent" if abs(mean) + h90 <= margin else "undecided")
    return {"d": mean, "se": se, "n": n, "ci95": (mean - h95, mean + h95),
            "ci90": (mean - h90, mean + h90), "verdict": verdict}


def critic_convergence(probes: pd.DataFrame) -> pd.DataFrame:
    """Per (task, quality, label) at the last evaluation, means over seeds: Q(o, a_data),
    its MC target, their ratio (1 = the fixed point), the relative error ‖Q − G‖ / ‖G‖
    (``error``, 0 = the fixed point; NaN for runs made before it was logged) and the gap
    Q(o, a_π) - Q(o, a_data)."""
    df = probes.dropna(subset=["q_probe"])
    if "q_err_probe" not in df:
        df = df.assign(q_err_probe=np.nan)
    last = df.groupby(["task", "quality", "label", "seed"])["step"].transform("max")
    df = df[df["step"] == last].assign(ratio=lambda f: f["q_probe"] / f["mc_probe"],
                                       gap=lambda f: f["q_pi_probe"] - f["q_probe"])
    out = df.groupby(["task", "quality", "label"], as_index=False).agg(
        step=("step", "max"), q_data=("q_probe", "mean"), mc=("mc_probe", "mean"),
        ratio=("ratio", "mean"), error=("q_err_probe", "mean"), gap=("gap", "mean"),
        seeds=("seed", "size"))
    return out


def _targets(runs: pd.DataFrame) -> dict[tuple[str, str], np.ndarray]:
    """Per (task, quality) of a sweep's ``runs``: the MC targets G (eq-mc-target) of the
    very data set and γ that its first run's ``config.json`` names."""
    from om2p_lite.data.run_data import load_data
    from om2p_lite.rl.config import TrainConfig
    from om2p_lite.rl.convergence import mc_returns

    out = {}
    for (task, quality), block in runs.groupby(["task", "quality"], sort=False):
        # one older than action_layout names mpe2's 5-d data (TrainConfig.from_stored)
        cfg = TrainConfig.from_stored(read_run_file(Path(block["path"].iloc[0]) / CONFIG_NAME))
        out[(task, quality)] = mc_returns(load_data(cfg), cfg.gamma)
    return out


def target_spread(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (task, quality) of ``runs`` (a sweep's frame): the mean MC target Ḡ, the mean
    |G| and ``near_zero`` = |Ḡ| < NEAR_ZERO · mean |G|, where rewards of both signs cancel
    and a ratio of means cannot say whether a critic trained."""
    return pd.DataFrame([{"task": t, "quality": q, "mc": float(g.mean()),
                          "mc_abs": float(np.abs(g).mean()),
                          "near_zero": bool(abs(g.mean()) < NEAR_ZERO * np.abs(g).mean())}
                         for (t, q), g in _targets(runs).items()])


def train_log_convergence(logs: pd.DataFrame, mc: dict[tuple[str, str], float]
                          ) -> pd.DataFrame:
    """The same check for runs made before the probe: each run's last logged batch-mean
    Q(o, a_data) (``q_data``) against the mean MC target of its whole data set
    (``mc[(task, quality)]``), and the gap ``q_pi`` - ``q_data`` where the log has
    ``q_pi``; means over seeds per (task, quality, algo)."""
    df = logs.dropna(subset=["q_data"])
    last = df.groupby([*("task", "quality", "algo", "variant"), "seed"])["step"] \
        .transform("max")
    df = df[df["step"] == last]
    df = df.assign(mc=[mc[(t, q)] for t, q in zip(df["task"], df["quality"], strict=True)],
                   gap=df["q_pi"] - df["q_data"] if "q_pi" in df else np.nan)
    out = df.groupby(["task", "quality", "algo"], as_index=False).agg(
        step=("step", "max"), q_data=("q_data", "mean"), mc=("mc", "mean"),
        gap=("gap", "mean"), seeds=("seed", "size"))
    return out.assign(ratio=out["q_data"] / out["mc"])


def sweep_convergence(runs: pd.DataFrame, logs: pd.DataFrame) -> pd.DataFrame:
    """``train_log_convergence`` of a sweep (``sweeps.load_sweep(..., log_columns=
    ("q_data", "q_pi"))``): each data set's mean MC target from ``_targets``."""
    return train_log_convergence(logs, {k: float(g.mean())
                                        for k, g in _targets(runs).items()})


def reading(episodes: pd.DataFrame, probes: pd.DataFrame, om2p: Sequence[str],
            early_step: int, flowq: str = "flowq", improvers: Sequence[str] = ("flowq",
                                                                               "td3bc"),
            leaders: Sequence[str] = ("bc", "cql")) -> pd.DataFrame:
    """The decisive experiment's rules (budget_test.toml), one row per data set.

    ``om2p``: the OM2P settings (labels) whose better one is compared; ``early_step``: the
    evaluation that is main_book's protocol (the first evaluation after 0 when a run has
    none at that step, as in a tiny rerun). Columns: the predicates converged, tracks,
    improve, om2p_below, data_decide; ``readings`` ('a', 'b+c', 'none', ...) and ``text``.
    """
    final = seed_scores(episodes)
    conv = critic_convergence(probes)
    rows = []
    for (task, quality), block in final.groupby(["task", "quality"], sort=False):
        by = {lab: g.set_index("seed")["score"] for lab, g in block.groupby("label")}
        have = [m for m in om2p if m in by]
        if flowq not in by or not have:
            continue
        best = max(have, key=lambda m: by[m].mean())
        c = conv[(conv["task"] == task) & (conv["quality"] == quality)].set_index("label")
        ratios = [float(c.loc[m, "ratio"]) if m in c.index else float("nan")
                  for m in [flowq, *have]]
        converged = bool(np.all(np.asarray(ratios) >= CONVERGED))
        vs_flow = {m: paired(by[m], by[flowq]) for m in have}
        tracks = vs_flow[best]["d"] >= -SE_RULE * vs_flow[best]["se"]
        below = all(v["verdict"] == "below" for v in vs_flow.values())
        ep = episodes[(episodes["task"] == task) & (episodes["quality"] == quality)]
        steps = sorted(s for s in ep["step"].unique() if s > 0)
        early = early_step if early_step in steps else (steps[0] if steps else None)
        gains = {}
        for m in improvers:
            if m in by and early is not None:
                first = seed_scores(ep[ep["label"] == m], early).set_index("seed")["score"]
                gains[m] = paired(by[m], first)
        improve = bool(gains) and all(g["verdict"] == "above" for g in gains.values())
        generative = [m for m in by if m.split("/")[0] in GENERATIVE_Q]
        leads = {lead: all(paired(by[lead], by[m])["verdict"] == "above" for m in generative)
                 for lead in leaders if lead in by}
        data_decide = any(leads.values())
        found = (["a"] if converged and tracks else []) + \
            (["b"] if improve and below else []) + (["c"] if data_decide else [])
        rows.append({"task": task, "quality": quality, "om2p_best": best,
                     "flowq_ratio": ratios[0], "om2p_ratio": min(ratios[1:]),
                     "converged": converged, "tracks": bool(tracks),
                     "om2p_vs_flowq": vs_flow[best], "improve": improve, "gains": gains,
                     "om2p_below": below, "data_decide": data_decide,
                     "leaders": [k for k, v in leads.items() if v],
                     "readings": "+".join(found) or "none",
                     "text": "; ".join(READINGS[r] for r in found)
                     or "none of the three: undecided at this power"})
    return pd.DataFrame(rows)


def complete_sets(counts: pd.DataFrame) -> tuple[set[tuple[str, str]], list[str]]:
    """The (task, quality) data sets whose runs are all stored, and 'task quality (k of n
    runs)' for each one that is not (``sweeps.Sweep.counts``)."""
    done = counts.groupby(["task", "quality"], sort=False)[["finished", "expected"]].sum()
    complete = {k for k, r in done.iterrows() if r.finished == r.expected}
    pending = [f"{t} {q} ({int(r.finished)} of {int(r.expected)} runs)"
               for (t, q), r in done.iterrows() if (t, q) not in complete]
    return complete, pending


def complete_readings(episodes: pd.DataFrame, probes: pd.DataFrame, counts: pd.DataFrame,
                      om2p: Sequence[str], early_step: int) -> pd.DataFrame:
    """``reading`` on the data sets whose runs are all stored: a rule read on part of a
    data set's seeds decides nothing, so no such row is returned."""
    complete, _ = complete_sets(counts)
    out = reading(episodes, probes, om2p, early_step)
    keep = [(t, q) in complete for t, q in zip(out["task"], out["quality"], strict=True)]
    return out[keep].reset_index(drop=True) if len(out) else out


def reading_sentence(row: Any) -> str:
    """One row of ``reading`` as the sentence a chapter prints: the reading, the best
    OM2P against Flow+Q with its SE and 95 % interval, convergence and the leaders."""
    vs = row.om2p_vs_flowq
    return (f"*{row.task} {row.quality}:* reading **{row.readings}**, {row.text} (best OM2P "
            f"{row.om2p_best}: {vs['d']:+.1f} ± {vs['se']:.1f} points against Flow+Q, 95 % "
            f"interval {vs['ci95'][0]:+.1f} to {vs['ci95'][1]:+.1f}; critics converged: "
            f"{row.converged}; leaders by > 2 SE: {', '.join(row.leaders) or 'none'})")


# --- the protocol test (data/experiments/protocol_test.toml): which protocol trains critics
STABLE_WINDOW = 2000  # steps over which a trained critic's mean Q moves little
STABLE_SHARE = 0.05  # "little": by at most 5 % of ‖G‖
CLOSE = 0.5  # e = ‖Q − G‖ / ‖G‖ at most 0.5 (on every data set: the file's amendment)


def settled_step(curve: pd.DataFrame) -> float:
    """First evaluation step from which the critic is converged at every later one, NaN if
    never. ``curve``: one method on one data set, means over seeds by step (columns step,
    q_probe, q_err_probe, mc_rms_probe). Converged at n: |Q̄(n) − Q̄(n − STABLE_WINDOW)| ≤
    STABLE_SHARE · ‖G‖ (never against step 0's untrained critic) and e(n) ≤ CLOSE (the
    amendment in protocol_test.toml: stability alone passes a slow creep toward a far
    target)."""
    c = curve.sort_values("step").set_index("step")
    ok = {}
    for n, row in c.iterrows():
        if n - STABLE_WINDOW <= 0 or n - STABLE_WINDOW not in c.index:  # not vs step 0
            ok[n] = False
            continue
        moved = abs(row["q_probe"] - c.loc[n - STABLE_WINDOW, "q_probe"])
        ok[n] = bool(moved <= STABLE_SHARE * row["mc_rms_probe"]) and \
            bool(row["q_err_probe"] <= CLOSE)
    settled = float("nan")
    for n in sorted(ok, reverse=True):  # walk back from the end while it holds
        if not ok[n]:
            break
        settled = float(n)
    return settled


def protocol_reading(probes: pd.DataFrame, preferred: Sequence[str]
                     ) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The protocol test's rules (protocol_test.toml): per data set and protocol (label),
    the settled step; then the choice. A protocol qualifies when it settles on every data
    set; the qualifying one with the smallest worst-case settled step wins, ties going to
    the earlier of ``preferred``. If none qualifies: the one settled on most data sets
    (ties: ``preferred``), its steps the file's maximum, the others listed."""
    mean = (probes.dropna(subset=["q_probe"])
            .groupby(["task", "quality", "label", "step"], as_index=False)
            [["q_probe", "q_err_probe", "mc_rms_probe"]].mean())
    rows = [{"task": t, "quality": q, "label": lab, "settled": settled_step(g),
             "error": float(g.loc[g["step"].idxmax(), "q_err_probe"])}
            for (t, q, lab), g in mean.groupby(["task", "quality", "label"], sort=False)]
    table = pd.DataFrame(rows)
    n_sets = table.groupby(["task", "quality"]).ngroups
    order = {lab: k for k, lab in enumerate(preferred)}
    summary = []
    for lab, g in table.groupby("label"):
        done = int(g["settled"].notna().sum())
        summary.append({"label": lab, "settled_on": done,
                        "worst": float(g["settled"].max()) if done == n_sets else np.inf,
                        "rank": order.get(lab, len(order))})
    s = pd.DataFrame(summary)
    qualifying = s[s["settled_on"] == n_sets]
    if len(qualifying):
        best = qualifying.sort_values(["worst", "rank"]).iloc[0]
        steps = int(best["worst"])
    else:
        best = s.sort_values(["settled_on", "rank"], ascending=[False, True]).iloc[0]
        steps = int(mean["step"].max())
    unsettled = table[(table["label"] == best["label"]) & table["settled"].isna()]
    return table, {"protocol": best["label"], "steps": steps,
                   "qualifies": bool(len(qualifying)),
                   "unsettled": list(zip(unsettled["task"], unsettled["quality"],
                                         strict=True))}


# --- η per data set (issue 17, item 5), chosen on selection seeds never reported
def select_eta(scores: pd.DataFrame, selection_seeds: Sequence[int]) -> pd.DataFrame:
    """Per (task, quality): the η whose mean final score over ``selection_seeds`` is highest;
    of several within one SE (of the best's per-seed scores) of the best, the smallest (the
    one closest to behaviour cloning). ``scores``: seed_scores-like rows with an ``eta``
    column. The chosen η is then reported on other seeds only: the selection seeds' scores
    never enter a reported number."""
    sel = scores[scores["seed"].isin(list(selection_seeds))]
    if sel.empty:
        raise ValueError(f"select_eta: no scores on the selection seeds "
                         f"{list(selection_seeds)}. Fix: run the selection grid first")
    rows = []
    for (task, quality), block in sel.groupby(["task", "quality"], sort=False):
        stats = block.groupby("eta")["score"].agg(["mean", "std", "size"])
        best = stats["mean"].idxmax()
        se = stats.loc[best, "std"] / np.sqrt(stats.loc[best, "size"])
        close = stats[stats["mean"] >= stats.loc[best, "mean"] - (se if se == se else 0.0)]
        eta = float(min(close.index))
        rows.append({"task": task, "quality": quality, "eta": eta,
                     "best_eta": float(best), "mean": float(stats.loc[eta, "mean"]),
                     "best_mean": float(stats.loc[best, "mean"]),
                     "seeds": int(stats["size"].min())})
    return pd.DataFrame(rows)
