"""Toy experiments too slow to rerun on every `book` build, made once and read from data/book/.

Not a cache: a stored result is a shipped artefact with its provenance, remade by a command,
and read only when it was made from exactly the settings a chapter asks for.

Each experiment is a function of its settings and a :class:`~om2p_lite.runtime.budget.Budget`.
At a budget in ``STORED_BUDGETS`` it looks for ``data/book/<name>-<budget>.json``; when the
file's ``spec`` (every input that shapes the result) equals the chapter's, the result is read
(seconds instead of minutes) and a line says which command remade it. Otherwise (the `smoke`
budget of the tests, or a reader who changed a setting) the experiment runs right there.

    python -m om2p_lite.book.stored                  # remake every stored result (`book`)
    python -m om2p_lite.book.stored xi_comparison    # just one
    python -m om2p_lite.book.stored --missing        # only what is absent or out of date,
                                                     # and chapter 04's datasets (`make book`)

Chapter 04's datasets are too large to ship (about 400 MB at `book`); ``--missing`` makes
any that ``data/cache/`` lacks (``om2p_lite.data.generate.get_dataset``, the same files the
chapter would make in its first run), so no chapter spends its cell time generating data.

Files are written atomically; a file that does not parse or lacks its fields is refused
with the command that remakes it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, NamedTuple

import torch

from om2p_lite.runtime.budget import Budget, get_budget

STORE_DIR = Path(__file__).resolve().parents[2] / "data" / "book"
STORED_BUDGETS = ("book",)
COMMAND = "python -m om2p_lite.book.stored"
N_TOY = 20_000  # joint actions in a toy data set

# Chapter 03's comparison, as the chapter sets it (the stored file is made from these).
XI_COMPARE: dict[str, tuple[list[float], str]] = {  # name: (ξ, pairing)
    "uniform ξ=[0,0,0,0], sorted": ([0, 0, 0, 0], "sorted"),
    "Beta ξ=[5,5,0,0], sorted": ([5, 5, 0, 0], "sorted"),
    "Beta(5,5) independent (public code)": ([4, 4, 0, 0], "independent"),
}
XI_RATIO = 0.25
XI_TOY = "ring"
XI_SEED = 0
# Chapter 04's datasets (seed 0): every task and quality it shows.
DATASET_TASKS = ("spread", "tag", "world", "halfcheetah")
DATASET_QUALITIES = ("random", "medium-replay", "medium", "expert")
DATASET_SEED = 0
# and, where its trained behaviour policy is shipped, the data it makes: (task, reward);
# Spread on mpe2's reward is the default data of the chapters that train live (05, 07)
TRAINED_DATASETS = (("spread", "mpe2"), ("spread", "omar"), ("tag", "mpe2"), ("world", "mpe2"))


class StoredResultError(ValueError):
    """A stored result file that cannot be used (names the file and the command)."""


def store_path(name: str, budget: Budget, store: Path | None = None) -> Path:
    """``data/book/<name>-<budget>.json`` (or under ``store``)."""
    return (store or STORE_DIR) / f"{name}-{budget.name}.json"


def read_stored(path: Path, name: str) -> dict[str, Any] | None:
    """The stored document at ``path``, None when there is none; refuses a damaged one."""
    if not path.is_file():
        return None
    fix = f"Fix: remake it with `{COMMAND} {name}` (or delete it)."
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StoredResultError(f"{path}: not readable JSON ({exc}). {fix}") from None
    missing = [k for k in ("spec", "result", "provenance") if not isinstance(doc, dict)
               or k not in doc]
    if missing:
        raise StoredResultError(f"{path}: missing field(s) {missing}. {fix}")
    return doc


def as_stored(spec: Mapping[str, Any]) -> dict[str, Any]:
    """``spec`` in the form it takes in a file (lists, str keys), to compare with one."""
    return json.loads(json.dumps(spec))


def load_or_run(name: str, spec: Mapping[str, Any], budget: Budget,
                run: Callable[[], dict[str, Any]], store: Path | None = None,
                quiet: bool = False) -> dict[str, Any]:
    """The stored result for ``spec`` when there is one, else ``run()``'s (not stored)."""
    spec = as_stored(spec)
    if budget.name in STORED_BUDGETS:
        path = store_path(name, budget, store)
        doc = read_stored(path, name)
        if doc is not None and doc["spec"] == spec:
            if not quiet:
                from om2p_lite.runtime.record import portable_path

                prov = doc["provenance"]
                print(f"Read from {portable_path(path)}, made by `{prov.get('command')}`"
                      f" on {prov.get('device')}, {prov.get('date')} in "
                      f"{doc.get('seconds', 0):.0f} s; with other settings this cell trains "
                      "the policies itself.")
            return doc["result"]
        if not quiet:
            why = "is for other settings" if doc is not None else "does not exist"
            print(f"{path.name} {why}: training here (remake it with `{COMMAND} {name}`).")
    return run()


def write_stored(name: str, spec: Mapping[str, Any], result: Mapping[str, Any],
                 budget: Budget, seconds: float, device: torch.device | str,
                 store: Path | None = None) -> Path:
    """Write ``{spec, result, provenance, seconds}`` atomically; returns the path."""
    from om2p_lite.rl.rundir import atomic_write_json
    from om2p_lite.runtime.record import provenance

    path = store_path(name, budget, store)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"spec": spec, "result": result, "seconds": round(seconds, 1),
           "provenance": provenance(seed=spec.get("seed"), device=device, budget=budget,
                                    command=f"{COMMAND} {name}")}
    return atomic_write_json(path, doc)


# --- chapter 03: uniform versus Beta-shaped ξ ---------------------------------------------

def xi_spec(budget: Budget, variants: Mapping[str, tuple[Sequence[float] | str, str]],
            ratio: float, toy: str, seed: int) -> dict[str, Any]:
    """Every input that shapes :func:`xi_comparison`'s result."""
    return {"experiment": "xi_comparison", "budget": asdict(budget), "toy": toy,
            "n_toy": N_TOY, "seed": seed, "ratio": ratio,
            "variants": {name: [xi if isinstance(xi, str) else list(xi), pairing]
                         for name, (xi, pairing) in variants.items()}}


def run_xi_comparison(budget: Budget, variants: Mapping[str, tuple[Sequence[float] | str, str]],
                      ratio: float, toy: str, seed: int,
                      device: torch.device | str = "cpu") -> dict[str, Any]:
    """Train a toy mean-flow policy per ξ variant and seed; one-step SW during training.

    Returns ``{"steps": [...], "curves": {name: [[sw at each step] per seed]}}``: seeds
    ``seed .. seed + budget.n_seeds - 1``, an evaluation every ``budget.eval_every`` steps on
    ``budget.n_samples`` samples, the data ``toy_joint_actions(N_TOY, toy)`` from ``seed``.
    """
    from om2p_lite.book.toys import toy_joint_actions
    from om2p_lite.book.toytrain import fit_toy

    data = toy_joint_actions(N_TOY, toy, generator=torch.Generator().manual_seed(seed))
    curves: dict[str, list[list[float]]] = {}
    steps: list[int] = []
    for name, (xi, pairing) in variants.items():
        runs = []
        for k in range(budget.n_seeds):
            fit = fit_toy("meanflow", data, xi=xi, ratio=ratio, pairing=pairing, seed=seed + k,
                          device=device, eval_every=budget.eval_every,
                          eval_samples=budget.n_samples, progress=True, **budget.toy_kwargs())
            runs.append([float(e["sw"]) for e in fit.evals])
            steps = [int(e["step"]) for e in fit.evals]
        curves[name] = runs
    return {"steps": steps, "curves": curves}


def xi_comparison(budget: Budget, variants: Mapping[str, tuple[Sequence[float] | str, str]]
                  | None = None, ratio: float = XI_RATIO, toy: str = XI_TOY,
                  seed: int = XI_SEED, device: torch.device | str = "cpu",
                  store: Path | None = None) -> dict[str, Any]:
    """Chapter 03's ξ comparison: stored at `book` for these settings, else trained here."""
    variants = XI_COMPARE if variants is None else variants
    spec = xi_spec(budget, variants, ratio, toy, seed)
    return load_or_run("xi_comparison", spec, budget,
                       lambda: run_xi_comparison(budget, variants, ratio, toy, seed, device),
                       store)


# --- chapter 10: how close can a critic come to the Monte-Carlo target at all? -----------

# A regression of G on (o, a) with the chosen protocol's critic size and budget
# (data/experiments/main_fast.toml; chapter 10 asserts they agree), on its γ.
FLOOR = dict(gamma=0.95, steps=10_000, hidden=64, depth=2, batch_size=256, lr=1e-3)
# the tiny rerun of the tests: a smoke data set (2500 rows) is smaller than the probe
FLOOR_SMOKE = dict(sets=[["world", "expert"]], steps=50, size=1000)


def floor_spec(budget: Budget, settings: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Every input that shapes :func:`run_critic_floor`'s result."""
    fit = dict(FLOOR if settings is None else settings)
    sets = [[t, q] for t in ("spread", "tag", "world") for q in DATASET_QUALITIES]
    if budget.name == "smoke":
        sets = FLOOR_SMOKE["sets"]
        fit |= {"steps": FLOOR_SMOKE["steps"], "size": FLOOR_SMOKE["size"]}
    return {"experiment": "critic_floor", "data_budget": budget.name, "sets": sets,
            "seed": DATASET_SEED, "action_layout": "force-xy", "behaviour": "scripted",
            "fit": fit}


def run_critic_floor(spec: Mapping[str, Any]) -> dict[str, Any]:
    """``{"task/quality": e}``: ``rl.convergence.mc_floor`` on each data set of ``spec``."""
    from om2p_lite.data.generate import get_dataset
    from om2p_lite.rl.convergence import mc_floor

    out = {}
    for task, quality in spec["sets"]:
        ds = get_dataset(task, quality, spec["seed"], spec["data_budget"],
                         action_layout=spec["action_layout"], behaviour=spec["behaviour"])
        out[f"{task}/{quality}"] = mc_floor(ds, **spec["fit"])
    return out


def critic_floor(budget: Budget, settings: Mapping[str, Any] | None = None,
                 store: Path | None = None) -> dict[str, Any]:
    """Chapter 10's critic floor: stored at `book` for these settings, else fitted here."""
    spec = floor_spec(budget, settings)
    return load_or_run("critic_floor", spec, budget, lambda: run_critic_floor(spec), store)


class StoredExperiment(NamedTuple):
    """A stored experiment: its settings at a budget, and how to run it on a device."""

    spec: Callable[[Budget], dict[str, Any]]
    run: Callable[[Budget, torch.device | str], dict[str, Any]]


EXPERIMENTS: dict[str, StoredExperiment] = {
    "xi_comparison": StoredExperiment(
        spec=lambda budget: xi_spec(budget, XI_COMPARE, XI_RATIO, XI_TOY, XI_SEED),
        run=lambda budget, device: run_xi_comparison(budget, XI_COMPARE, XI_RATIO, XI_TOY,
                                                     XI_SEED, device)),
    "critic_floor": StoredExperiment(
        spec=floor_spec, run=lambda budget, device: run_critic_floor(floor_spec(budget))),
}


def make_datasets(budget: Budget, seed: int = DATASET_SEED) -> list[str]:
    """Make chapter 04's datasets that ``data/cache/`` lacks; returns the ones it made."""
    from om2p_lite.data.behaviour import BEHAVIOUR_DIR, behaviour_file
    from om2p_lite.data.generate import dataset_path, get_dataset

    sets = [(task, "mpe2", "scripted") for task in DATASET_TASKS
            if task != "halfcheetah" or (BEHAVIOUR_DIR / "halfcheetah_td3.pt").exists()]
    sets += [(task, reward, "trained") for task, reward in TRAINED_DATASETS
             if behaviour_file(task, reward).exists()]  # the chapter skips the others too
    made = []
    for task, reward, behaviour in sets:
        for quality in DATASET_QUALITIES:
            if not dataset_path(task, quality, seed, budget.name, reward,
                                behaviour=behaviour).exists():
                t0 = time.perf_counter()
                get_dataset(task, quality, seed, budget.name, reward, progress=True,
                            behaviour=behaviour)
                made.append(f"{task}/{quality}" + ("" if behaviour == "scripted" else
                                                   f" ({behaviour}, {reward} reward)"))
                print(f"dataset {made[-1]} ({budget.name}): "
                      f"{time.perf_counter() - t0:.0f} s", flush=True)
    return made


def is_current(name: str, budget: Budget, store: Path | None = None) -> bool:
    """Whether ``name``'s stored file exists and was made from today's settings."""
    doc = read_stored(store_path(name, budget, store), name)
    return doc is not None and doc["spec"] == as_stored(EXPERIMENTS[name].spec(budget))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*",
                        help=f"experiments to remake (default: all of {sorted(EXPERIMENTS)})")
    parser.add_argument("--budget", default="book", help="budget (default book)")
    parser.add_argument("--missing", action="store_true",
                        help="only stored results that are absent or out of date, and "
                             "chapter 04's datasets that data/cache/ lacks")
    parser.add_argument("--store", type=Path, default=STORE_DIR, help="output folder")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.names) - set(EXPERIMENTS))
    if unknown:
        parser.error(f"unknown experiment(s) {unknown}: choose from {sorted(EXPERIMENTS)}")
    try:
        return _make(args, parser)
    except ValueError as err:  # a bad budget or a damaged stored file: say which, no trace
        print(f"error: {err}", file=sys.stderr)
        return 2


def _make(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """``main``'s work once the arguments parse: datasets, then the stored results."""
    budget = get_budget(args.budget)
    device = "cpu"  # the stored results are CPU results, whatever the machine has
    names = args.names or sorted(EXPERIMENTS)
    if args.missing:
        made = make_datasets(budget)
        names = [n for n in names if budget.name in STORED_BUDGETS
                 and not is_current(n, budget, args.store)]
        print(f"book data ({budget.name}): {len(made)} dataset(s) made, stored results to "
              f"remake: {names or 'none'}", flush=True)
    elif budget.name not in STORED_BUDGETS:
        parser.error(f"--budget {budget.name}: results are stored only for {STORED_BUDGETS}")
    for name in names:
        t0 = time.perf_counter()
        spec, result = EXPERIMENTS[name].spec(budget), EXPERIMENTS[name].run(budget, device)
        path = write_stored(name, spec, result, budget, time.perf_counter() - t0, device,
                            args.store)
        print(f"{name}: {time.perf_counter() - t0:.0f} s -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
