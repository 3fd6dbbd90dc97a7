"""An experiment's runs as a chapter reads them (``Sweep``, ``load_sweep``): its stored
results at the book budget, a tiny rerun at smoke, and how complete they are.

Not a runner: ``rl.scheduler.run_experiment`` makes the runs (the grid command's library
call); ``rl.results`` and ``book.curves`` read them. The smoke size (``SMOKE_OVERRIDES``,
``SMOKE_SEEDS``) lives in ``runtime.budget``, beside the other budgets.
"""

from __future__ import annotations

import copy
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from om2p_lite.book.curves import load_curves, load_train_logs
from om2p_lite.rl.results import KEYS, load_runs
from om2p_lite.rl.rundir import RESULT_NAME
from om2p_lite.runtime.budget import SMOKE_OVERRIDES, SMOKE_SEEDS, get_budget

REPO = Path(__file__).resolve().parents[2]
# stored results are read from here instead of data/results when set (tests of the book path)
RESULTS_ENV = "OM2P_RESULTS_ROOT"


def grid_command(experiment: str | Path) -> str:
    """The command that makes (or finishes) an experiment's stored results."""
    path = Path(experiment)
    try:
        path = path.resolve().relative_to(REPO)
    except ValueError:
        pass
    return f"python -m om2p_lite grid --experiment {path.as_posix()}"


def expected_runs(experiment: str | Path | Mapping[str, Any]) -> pd.DataFrame:
    """Seeds an experiment asks for per (task, quality, algo, variant), in its order."""
    from om2p_lite.rl.spec import experiment_cells, load_experiment, validate_experiment

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
        return grid_command(self.experiment)

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
        seeds, steps = self.runs["seed"].nunique(), self.runs["steps"].max()
        where = (f"stored results in {self.root.name}/, made by `{self.command}`"
                 if self.stored else f"a tiny rerun at the {self.budget} budget "
                 f"({seeds} seed{'s' * (seeds != 1)}, {steps:.0f} steps), not the book's "
                 f"results")
        return f"{self.name}: {completeness(self.counts)}; {where}"


def stored_results(experiment: str | Path) -> Path:
    """Where the stored results of ``experiment`` live: its ``results_dir`` below the
    repository, or below ``$OM2P_RESULTS_ROOT`` when that is set."""
    from om2p_lite.rl.spec import load_experiment

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
    from om2p_lite.rl.scheduler import ExperimentFailed, run_experiment
    from om2p_lite.rl.spec import load_experiment

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
            kept = [c for c in grid["exclude"] if _in_grid(c, grid)
                    and "/".join(c.split("/")[2:]) in grid["algos"]]
            grid["exclude"] = kept
            if not kept:
                del grid["exclude"]
        _narrow_variant_cells(doc)
        doc["grid"]["seeds"] = doc["grid"]["seeds"][:SMOKE_SEEDS]
        root = Path(tempfile.mkdtemp(prefix=f"om2p-{experiment.stem}-"))
        try:
            run_experiment(doc, results_dir=root,
                           overrides=SMOKE_OVERRIDES | dict(smoke_overrides or {}))
        except ExperimentFailed:
            pass  # recorded in the failed runs' status.json; load_runs reports them
    else:
        root = stored_results(experiment)
        if not (root.is_dir() and any(root.rglob(RESULT_NAME))):
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


def stored_progress(experiment: str | Path) -> tuple[int, int]:
    """(finished, expected) runs of ``experiment`` among its stored results."""
    root = stored_results(experiment)
    has = root.is_dir() and any(root.rglob(RESULT_NAME))
    runs = load_runs(root) if has else pd.DataFrame(columns=[*KEYS, "status"])
    counts = run_counts(runs, experiment)
    return int(counts["finished"].sum()), int(counts["expected"].sum())


def load_remade(remade: str | Path, older: str | Path, budget: str | None = None,
                **kwargs: Any) -> Sweep:
    """A chapter's sweep at the protocol the book chose (``remade``) once all its runs are
    stored; until then the ``older`` sweep, its ``note`` saying how far the remake has come
    and the command that resumes it. At smoke the remade file is rerun tiny, so the tests
    run the chapter's future path. ``kwargs`` go to ``load_sweep``."""
    remade, name = Path(remade), get_budget(budget).name
    if name == "smoke":
        return load_sweep(remade, name, **kwargs)
    done, total = stored_progress(remade)
    if done == total:
        return load_sweep(remade, name, **kwargs)
    sweep = load_sweep(older, name, **kwargs)
    sweep.note = (f"The remake at the chosen protocol, {remade.name}, has {done} of {total} "
                  f"runs stored (`{grid_command(remade)} --checkpoint-every 2000` makes or "
                  f"resumes them); until it is complete this section reads "
                  f"{Path(older).name}, made at the older, undertrained protocol.")
    return sweep


def _in_grid(cell: str, grid: dict[str, Any]) -> bool:
    """Whether a 'task/quality[/...]' cell's data set is in ``grid``."""
    task, quality = cell.split("/")[:2]
    return task in grid["tasks"] and quality in grid["qualities"]


def _narrow_variant_cells(doc: dict[str, Any]) -> None:
    """Keep each variant's ``cells`` that a smaller (smoke) grid still has; drop a variant
    left with none, as the full grid would not run it on those data sets either."""
    grid, variants = doc["grid"], doc.get("variants") or {}
    for name in list(variants):
        cells = variants[name].get("cells") if isinstance(variants[name], dict) else None
        if cells is None:
            continue
        kept = [c for c in cells if _in_grid(c, grid)]
        if kept:
            variants[name]["cells"] = kept
        else:
            del variants[name]


def _in_order(df: pd.DataFrame, order: Sequence[str]) -> pd.DataFrame:
    """Rows sorted (stably) by the position of their variant in ``order``."""
    rank = {v: i for i, v in enumerate(order)}
    return df.sort_values("variant", key=lambda c: c.map(rank).fillna(len(rank)),
                          kind="stable").reset_index(drop=True)

