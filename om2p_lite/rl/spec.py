"""An experiment's spec: a TOML grid of runs → validated ``Run``s (one ``TrainConfig`` each).

Not the scheduler that trains them and skips finished ones (``rl.scheduler``), nor a run
folder's files (``rl.rundir``). Every error names the file, the key, the problem and the fix.

Experiment file (TOML)::

    results_dir = "data/results/main"   # run folders {task}/{quality}/{algo}/seed{seed} below
    [grid]
    algos = ["om2p", "bc"]; tasks = ["spread"]; qualities = ["expert"]; seeds = [0, 1, 2]
    [config]                             # TrainConfig fields shared by every run
    steps = 2000
    [algo.om2p]                          # per-algorithm fields
    eta = 1.0
    [variants]                           # optional: every grid cell once per variant,
    eta1 = { eta = 1.0 }                 # run folders {task}/{quality}/{algo}/{variant}/seed{s}
    eta0 = { eta = 0.0, algos = ["om2p"] }   # ``algos``: only these algorithms get it
    "eta=0.3" = { eta = 0.3, cells = ["world/expert"] }  # ``cells``: only these data sets

An algorithm that no variant applies to runs once per cell, without a variant folder; one
that some variant applies to runs only in its variants (with ``cells``, a setting chosen per
data set: the data sets a variant does not list get none of its runs).
``[grid] exclude = ["spread/expert/cql"]`` (optional) drops those task/quality/algo cells.

A run's fields are ``[config]``, then ``[algo.NAME]``, then its variant, then the caller's
``overrides``; the grid sets algo, task, quality, seed and the run folder.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

from om2p_lite.rl.config import TrainConfig
from om2p_lite.rl.rundir import RunFolder

DEFAULT_RESULTS_DIR = "data/results/main"
TOP_LEVEL_KEYS = ("results_dir", "grid", "config", "algo", "variants")
GRID_KEYS = ("algos", "tasks", "qualities", "seeds")
GRID_OPTIONAL = ("exclude",)  # task/quality/algo cells of the product that do not run
VARIANT_ALGOS = "algos"  # a variant's own key: the algorithms it applies to (default: all)
VARIANT_CELLS = "cells"  # and the task/quality data sets it applies to (default: all)
VARIANT_KEYS = (VARIANT_ALGOS, VARIANT_CELLS)
# set by the grid for each run, so no table may set them
GRID_FIELDS = ("algo", "task", "quality", "seed", "out_dir")
VARIANT_NAME = re.compile(r"[A-Za-z0-9._=-]+")


@dataclasses.dataclass(frozen=True)
class Run:
    """One run of an experiment: its validated config and variant name (None: no variants)."""

    cfg: TrainConfig
    variant: str | None = None

    @property
    def out_dir(self) -> str:
        return self.cfg.out_dir

    @property
    def folder(self) -> RunFolder:
        return RunFolder(self.cfg.out_dir)


# ----------------------------------------------------------------------------- reading


def read_toml(path: str | Path) -> dict[str, Any]:
    """Parse a TOML file, naming the file in any error."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: experiment/config file does not exist. Fix: check "
                                f"the path (relative paths start from {Path.cwd().name}/)")
    if not path.is_file():
        raise ValueError(f"{path}: is a folder, not a TOML file. Fix: name the .toml file")
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: the same parser, packaged as tomli
        import tomli as tomllib
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: cannot be read ({err}). Fix: make it a readable UTF-8 "
                         f"TOML file") from err
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{path}: not valid TOML: {err}. Fix: correct the line named") from err


def load_experiment(path: str | Path) -> dict[str, Any]:
    """Read and validate an experiment TOML file (unknown top-level keys are refused)."""
    return validate_experiment(read_toml(path), where=str(path))


def _bad(where: str, key: str, problem: str, fix: str) -> ValueError:
    return ValueError(f"{where}: {key}: {problem}. Fix: {fix}")


def check_fields(values: Any, where: str, key: str) -> dict[str, Any]:
    """A table of TrainConfig fields: a table, no grid fields, every name and type valid."""
    if not isinstance(values, dict):
        raise _bad(where, key, f"must be a table of config fields, got {values!r}",
                   f"write it as [{key}] with lines such as steps = 100")
    grid_set = sorted(set(values) & set(GRID_FIELDS))
    if grid_set:
        raise _bad(where, key, f"sets {grid_set}, which the grid sets for each run",
                   "list algorithms, tasks, qualities and seeds in [grid]; results_dir "
                   "places the run folders")
    try:
        TrainConfig.from_dict(dict(values))
    except (TypeError, ValueError) as err:
        if "Fix:" in str(err):
            raise ValueError(f"{where}: {key}: {err}") from err
        raise _bad(where, key, str(err), "correct the field named") from err
    return values


def _str_list(grid: dict[str, Any], key: str, where: str) -> None:
    items = grid[key]
    kind = int if key == "seeds" else str
    if not isinstance(items, list) or not items:
        raise _bad(where, f"grid.{key}", f"must be a non-empty list, got {items!r}",
                   f"write {key} = [...]")
    for item in items:
        if not isinstance(item, kind) or isinstance(item, bool) or (kind is int and item < 0):
            want = "integers >= 0" if kind is int else "strings"
            raise _bad(where, f"grid.{key}", f"must hold {want}, got {item!r}",
                       f"write e.g. {key} = {[0, 1] if kind is int else ['spread']}")
    dup = sorted({str(i) for i in items if items.count(i) > 1})
    if dup:
        raise _bad(where, f"grid.{key}", f"lists {dup} more than once",
                   "list each value once (runs with equal values share one folder)")


def validate_experiment(doc: Any, where: str = "experiment") -> dict[str, Any]:
    """Check an experiment document's structure; return it unchanged.

    Raises a ``ValueError`` naming the file, the key, the problem and the fix.
    """
    if not isinstance(doc, dict):
        raise _bad(where, "document", f"must be a TOML table, got {type(doc).__name__}",
                   "pass the dict load_experiment returns")
    unknown = sorted(set(doc) - set(TOP_LEVEL_KEYS))
    if unknown:
        raise _bad(where, "top level", f"unknown key(s) {unknown}",
                   f"use only {list(TOP_LEVEL_KEYS)} (TrainConfig fields go in [config])")
    if "results_dir" in doc and (not isinstance(doc["results_dir"], str)
                                 or not doc["results_dir"].strip()):
        raise _bad(where, "results_dir", f"must be a folder name, got {doc['results_dir']!r}",
                   'write e.g. results_dir = "data/results/main"')
    grid = doc.get("grid")
    if not isinstance(grid, dict):
        raise _bad(where, "grid", "missing or not a table",
                   f"add a [grid] table with {list(GRID_KEYS)}")
    extra = sorted(set(grid) - set(GRID_KEYS) - set(GRID_OPTIONAL))
    missing = [k for k in GRID_KEYS if k not in grid]
    if extra or missing:
        problem = ", ".join(([f"unknown key(s) {extra}"] if extra else [])
                            + ([f"missing {missing}"] if missing else []))
        raise _bad(where, "grid", problem,
                   f"[grid] takes {list(GRID_KEYS)} and optionally {list(GRID_OPTIONAL)}")
    for key in GRID_KEYS:
        _str_list(grid, key, where)
    if "exclude" in grid:
        _check_exclude(grid, where)
    check_fields(doc.get("config", {}), where, "config")
    algo_tables = doc.get("algo", {})
    if not isinstance(algo_tables, dict):
        raise _bad(where, "algo", "must hold one table per algorithm",
                   "write [algo.om2p] with its fields below")
    from om2p_lite.rl.agents import ALGORITHMS

    for name, values in algo_tables.items():
        if name not in ALGORITHMS:
            raise _bad(where, f"algo.{name}", "unknown algorithm", f"use one of {ALGORITHMS}")
        check_fields(values, where, f"algo.{name}")
    if "variants" in doc:
        variants = doc["variants"]
        if not isinstance(variants, dict) or not variants:
            raise _bad(where, "variants", "must be a non-empty table of named tables",
                       "write e.g. [variants.eta0] with eta = 0.0 below, or drop [variants]")
        for name, values in variants.items():
            if not VARIANT_NAME.fullmatch(name):
                raise _bad(where, f"variants.{name}", "name has characters other than "
                           "letters, digits and ._=-", "rename it, e.g. eta0.5 or dr=1e-3")
            if not isinstance(values, dict):
                check_fields(values, where, f"variants.{name}")
            only = values.get(VARIANT_ALGOS, grid["algos"])
            if (not isinstance(only, list) or not only
                    or any(a not in grid["algos"] for a in only)):
                raise _bad(where, f"variants.{name}.{VARIANT_ALGOS}",
                           f"must be a non-empty list of the grid's algorithms, got {only!r}",
                           f"write e.g. {VARIANT_ALGOS} = {grid['algos'][:1]}")
            _check_variant_cells(grid, values.get(VARIANT_CELLS), where, name)
            check_fields({k: v for k, v in values.items() if k not in VARIANT_KEYS}, where,
                         f"variants.{name}")
    return doc


def _check_exclude(grid: dict[str, Any], where: str) -> None:
    """``exclude`` lists task/quality/algo cells of the grid, each once."""
    items = grid["exclude"]
    cells = {f"{t}/{q}/{a}" for t in grid["tasks"] for q in grid["qualities"]
             for a in grid["algos"]}
    if not isinstance(items, list) or any(i not in cells for i in items):
        bad = items if not isinstance(items, list) else [i for i in items if i not in cells]
        raise _bad(where, "grid.exclude", f"must list task/quality/algo cells of the grid, "
                   f"got {bad!r}", 'write e.g. exclude = ["spread/expert/cql"]')
    if len(set(items)) != len(items):
        raise _bad(where, "grid.exclude", "lists a cell more than once", "list each once")


def _check_variant_cells(grid: dict[str, Any], cells: Any, where: str, name: str) -> None:
    """A variant's ``cells``, if given, lists task/quality data sets of the grid, each once."""
    if cells is None:
        return
    known = {f"{t}/{q}" for t in grid["tasks"] for q in grid["qualities"]}
    if (not isinstance(cells, list) or not cells or any(c not in known for c in cells)
            or len(set(cells)) != len(cells)):
        raise _bad(where, f"variants.{name}.{VARIANT_CELLS}",
                   f"must list task/quality data sets of the grid, each once, got {cells!r}",
                   f'write e.g. {VARIANT_CELLS} = ["{sorted(known)[0]}"]')


def _variants_of(doc: dict[str, Any], algo: str, task: str, quality: str
                 ) -> list[tuple[str | None, dict[str, Any]]]:
    """The variants (name, fields) of ``algo`` on data set ``task/quality``: [(None, {})]
    when no variant applies to ``algo``; [] when some do but none lists this data set."""
    mine = {name: fields for name, fields in (doc.get("variants") or {}).items()
            if algo in fields.get(VARIANT_ALGOS, [algo])}
    if not mine:
        return [(None, {})]
    return [(name, {k: v for k, v in fields.items() if k not in VARIANT_KEYS})
            for name, fields in mine.items()
            if f"{task}/{quality}" in fields.get(VARIANT_CELLS, [f"{task}/{quality}"])]


# ----------------------------------------------------------------------------- runs


def results_root(doc: dict[str, Any], results_dir: str | Path | None = None) -> Path:
    """The folder the run folders go below: ``results_dir`` if given, else the file's."""
    return Path(results_dir if results_dir is not None
                else doc.get("results_dir", DEFAULT_RESULTS_DIR))


def runs_of(doc: dict[str, Any], results_dir: str | Path | None = None,
            overrides: dict[str, Any] | None = None, where: str = "experiment") -> list[Run]:
    """Every run of an experiment document, validated, seed-major (``where``: its file)."""
    validate_experiment(doc, where)
    overrides = dict(check_fields(overrides or {}, where, "overrides"))
    root = results_root(doc, results_dir)
    # seed-major order: a grid cut short still has every cell at its first seeds
    return [_run(doc, root, task, quality, algo, seed, name, fields, overrides, where)
            for seed in doc["grid"]["seeds"]
            for task, quality, algo, name, fields in experiment_cells(doc)]


def experiment_cells(doc: dict[str, Any]) -> list[tuple[str, str, str, str | None,
                                                        dict[str, Any]]]:
    """(task, quality, algo, variant, its fields) of every cell the grid runs, in grid
    order, seeds aside: the one expansion of [grid], exclude and [variants]."""
    grid, excluded = doc["grid"], set(doc["grid"].get("exclude", []))
    return [(t, q, a, name, fields) for t in grid["tasks"] for q in grid["qualities"]
            for a in grid["algos"] if f"{t}/{q}/{a}" not in excluded
            for name, fields in _variants_of(doc, a, t, q)]


def _run(doc: dict[str, Any], root: Path, task: str, quality: str, algo: str, seed: int,
         name: str | None, fields: dict[str, Any], overrides: dict[str, Any],
         where: str) -> Run:
    """One run: ``[config]`` | ``[algo.NAME]`` | variant | overrides, validated."""
    out = RunFolder.of(root, task, quality, algo, seed, name).path
    values = (dict(doc.get("config", {})) | dict(doc.get("algo", {}).get(algo, {}))
              | dict(fields) | overrides)
    values |= {"algo": algo, "task": task, "quality": quality, "seed": seed,
               "out_dir": str(out)}
    try:
        cfg = TrainConfig.from_dict(values).validate()
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where}: run {out}: {err}") from err
    return Run(cfg, name)


def experiment_runs(doc: dict[str, Any], results_dir: str | Path | None = None,
                    overrides: dict[str, Any] | None = None) -> list[TrainConfig]:
    """Every run of an experiment document as a validated ``TrainConfig`` (seed-major)."""
    return [run.cfg for run in runs_of(doc, results_dir, overrides)]

