"""The sentences the results chapters print, computed from the numbers of ``book.stats``
(each chapter asserts that its numbers appear in them), so text and results stay in step.

Not statistics: ``book.stats`` makes the frames these functions read.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd


def setting_label(estimator: str, dr: float | None) -> str:
    """'fd Δr=1e-08', 'jvp' or 'zero': how the book names a du/dr setting."""
    return f"fd Δr={dr:.0e}" if estimator == "fd" else str(estimator)


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

