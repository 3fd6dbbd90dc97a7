"""η per data set, as the paper tunes it: read the selection sweep by its rule, and write the
experiment that reports OM2P at the chosen η on the main table's own seeds.

The selection (``eta_select.toml``) runs on seeds no table reports; ``evidence.select_eta``
is its rule. ``write_selected`` turns the choice into an experiment file with one variant per
chosen η, each listing the data sets that chose it (``[variants] cells``), so the table's
second OM2P row comes from a file written, and committed, before any of its runs.

    python -m om2p_lite.book.eta_choice        # writes data/experiments/main_fast_eta.toml
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from om2p_lite.book import evidence
from om2p_lite.book.sweeps import REPO, Sweep, grid_command, load_sweep, stored_progress
from om2p_lite.rl.rundir import atomic_write_text
from om2p_lite.rl.spec import read_toml

EXPERIMENTS = REPO / "data" / "experiments"
SELECTION = EXPERIMENTS / "eta_select.toml"
BASE = EXPERIMENTS / "main_fast.toml"
OUT = EXPERIMENTS / "main_fast_eta.toml"
COMMAND = "python -m om2p_lite.book.eta_choice"


def chosen_eta(select: Sweep) -> pd.DataFrame:
    """Per (task, quality) the η that ``evidence.select_eta`` picks from the selection
    sweep's final scores on its own seeds."""
    episodes, _ = evidence.load_episodes(select.root)
    scores = evidence.seed_scores(episodes)
    eta_of = {evidence.label(r.algo, r.variant): r.eta for r in select.runs.itertuples()}
    scores["eta"] = scores["label"].map(eta_of)
    return evidence.select_eta(scores, select.doc["grid"]["seeds"])


def _value(v: Any) -> str:
    """One TOML value (the types experiment files use)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    raise TypeError(f"no TOML form for {type(v).__name__}")


def _table(name: str, values: dict[str, Any]) -> str:
    return f"[{name}]\n" + "".join(f"{k} = {_value(v)}\n" for k, v in values.items())


def selected_toml(base: dict[str, Any], chosen: pd.DataFrame, results_dir: str,
                  header: str) -> str:
    """The experiment text: ``base``'s [config] and [algo.om2p] on its seeds, OM2P only,
    one variant ``eta=X`` per chosen η listing its data sets."""
    grid = dict(base["grid"]) | {"algos": ["om2p"]}
    grid.pop("exclude", None)
    cells = [f"{r.task}/{r.quality}" for r in chosen.itertuples()]
    grid["tasks"] = [t for t in grid["tasks"] if any(c.startswith(f"{t}/") for c in cells)]
    grid["qualities"] = [q for q in grid["qualities"] if any(c.endswith(f"/{q}")
                                                             for c in cells)]
    parts = ["".join(f"# {line}\n".replace("# \n", "#\n") for line in header.splitlines()),
             f"results_dir = {_value(results_dir)}\n", _table("grid", grid),
             _table("config", base.get("config", {})),
             _table("algo.om2p", base.get("algo", {}).get("om2p", {}))]
    for eta in sorted(chosen["eta"].unique()):
        mine = [f"{r.task}/{r.quality}" for r in chosen.itertuples() if r.eta == eta]
        parts.append(_table(f'variants."eta={eta:g}"',
                            {"eta": float(eta), "algos": ["om2p"], "cells": mine}))
    return "\n".join(parts)


def write_selected(selection: Path = SELECTION, base: Path = BASE, out: Path = OUT,
                   budget: str = "book") -> Path:
    """Write ``out`` from the complete selection; refuse an incomplete one, and never replace
    a different file already there (its runs may have started)."""
    done, total = stored_progress(selection)
    if budget != "smoke" and done < total:
        raise ValueError(f"{selection.name}: {done} of {total} selection runs are stored. "
                         f"Fix: finish them first ({grid_command(selection)} "
                         f"--checkpoint-every 2000)")
    chosen = chosen_eta(load_sweep(selection, budget))
    doc = read_toml(base)
    rel = Path(doc["results_dir"])
    header = (f"OM2P at the η chosen per data set on the selection seeds of {selection.name}\n"
              f"(evidence.select_eta, the rule that file states), run on the seeds of\n"
              f"{base.name}, whose [config] and [algo.om2p] it copies: the main table's second\n"
              f"OM2P row. Written by `{COMMAND}` from the {done} stored selection runs,\n"
              f"before any of its own runs. Make or resume them with\n"
              f"  {grid_command(out)} --checkpoint-every 2000")
    text = selected_toml(doc, chosen, str(rel.with_name(rel.name + "_eta")), header)
    if out.exists() and out.read_text() != text:
        raise ValueError(f"{out}: already written, with other content. Fix: keep it (its "
                         f"runs may have started), or move it away to write it again")
    atomic_write_text(out, text)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help="experiment file to write")
    args = parser.parse_args(argv)
    try:
        print(f"wrote {write_selected(out=args.out)}")
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
