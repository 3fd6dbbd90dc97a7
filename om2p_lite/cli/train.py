"""The ``train``, ``evaluate``, ``grid`` and ``table`` sub-commands of ``python -m om2p_lite``.

Not the training logic (``train``): these parse flags or a TOML experiment, run, and record.

Experiment file (TOML)::

    results_dir = "data/results/main"     # one folder per task/quality/algo/seed below it
    [grid]
    algos = ["om2p", "bc"]; tasks = ["spread"]; qualities = ["expert"]; seeds = [0, 1, 2]
    [config]                               # TrainConfig fields shared by every run
    steps = 2000
    [algo.om2p]                            # per-algorithm overrides
    eta = 1.0
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from om2p_lite.rl.config import TrainConfig

RESULT = "result.json"


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One ``--field`` flag per ``TrainConfig`` field (default: unset, so files can fill it)."""
    for f in dataclasses.fields(TrainConfig):
        kind = {"int": int, "float": float, "bool": _bool}.get(str(f.type), str)
        parser.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, type=kind,
                            default=None, help=f"(default {f.default!r})")


def read_toml(path: str | Path) -> dict[str, Any]:
    """Parse a TOML file, naming the file in any error."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"experiment/config file {path} does not exist")
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: the same parser, packaged as tomli
        import tomli as tomllib
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{path} is not valid TOML: {err}") from err


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """TrainConfig from ``--config FILE`` (its [config] table or top level) then flags."""
    from om2p_lite.rl.config import PRESETS

    values: dict[str, Any] = {}
    if args.budget:
        from om2p_lite.runtime.budget import get_budget

        values.update(PRESETS[get_budget(args.budget).name])
    if args.config:
        doc = read_toml(args.config)
        values.update(doc.get("config", doc))
    names = [f.name for f in dataclasses.fields(TrainConfig)]
    values.update({k: getattr(args, k) for k in names if getattr(args, k) is not None})
    return TrainConfig.from_dict(values).validate()


def record(summary: dict[str, Any], command: str) -> dict[str, Any]:
    """The JSON-able result of a finished run, with everything needed to reproduce it."""
    from om2p_lite.data.generate import versions
    from om2p_lite.runtime.record import provenance

    cfg = summary["config"]
    final = summary["final"] or {}
    prov = provenance(seed=cfg["seed"], command=command)
    prov["device"] = summary["device"]
    return {"task": cfg["task"], "quality": cfg["quality"], "algo": cfg["algo"],
            "seed": cfg["seed"], "return": final.get("return"),
            "return_std": final.get("return_std"), "normalised": final.get("normalised"),
            "wall_s": round(summary["wall_s"], 2), "s_per_step": summary["s_per_step"],
            "evals": summary["evals"], "config": cfg, "dataset": summary.get("dataset"),
            "provenance": prov,
            "versions": versions()}


def run_one(cfg: TrainConfig, command: str, keep_checkpoint: bool = True) -> dict[str, Any]:
    """Train (resuming if a checkpoint is there) and write ``result.json`` when finished."""
    from om2p_lite.rl.train import train

    summary = train(cfg)
    if not summary["finished"]:
        return {"finished": False, "step": summary["step"]}
    result = record(summary, command)
    if cfg.out_dir:
        out = Path(cfg.out_dir)
        (out / RESULT).write_text(json.dumps(result, indent=1))
        if not keep_checkpoint and (out / "checkpoint.pt").exists():
            (out / "checkpoint.pt").unlink()
    return result


def _train(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    result = run_one(cfg, shlex.join(["python", "-m", "om2p_lite", *sys.argv[1:]]))
    print(json.dumps({k: v for k, v in result.items() if k not in ("evals", "config")},
                     indent=1, default=str))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    import torch

    from om2p_lite.rl.agents import make_agent
    from om2p_lite.rl.evaluate import evaluate_agent
    from om2p_lite.rl.train import dims_of, load_data
    from om2p_lite.runtime.device import pick_device

    run = Path(args.run)
    if not (run / "checkpoint.pt").exists():
        raise FileNotFoundError(f"{run}/checkpoint.pt not found: evaluate needs a run folder "
                                f"written by `train --out-dir`")
    blob = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=False)
    cfg = TrainConfig.from_dict(blob["config"])
    device = pick_device(args.device)
    agent = make_agent(cfg.algo, dims_of(load_data(cfg)), cfg).to(device)
    agent.load_full_state(blob["agent"])
    res = evaluate_agent(agent, cfg.task, args.episodes, seed=args.seed, device=device,
                         reward_variant=cfg.reward_variant)
    print(json.dumps({"run": str(run), "step": blob["step"], **res}, indent=1))
    return 0


def grid_runs(doc: dict[str, Any]) -> list[TrainConfig]:
    """Every (algo, task, quality, seed) config of an experiment document, validated."""
    grid = doc.get("grid")
    if not isinstance(grid, dict):
        raise ValueError("experiment file needs a [grid] table with algos, tasks, qualities, "
                         "seeds")
    missing = [k for k in ("algos", "tasks", "qualities", "seeds") if k not in grid]
    if missing:
        raise ValueError(f"experiment [grid] is missing {missing}")
    root = Path(doc.get("results_dir", "data/results/main"))
    runs = []
    # seed-major order: a grid cut short still has every cell at its first seeds
    for seed, task, quality, algo in itertools.product(grid["seeds"], grid["tasks"],
                                                       grid["qualities"], grid["algos"]):
        values = dict(doc.get("config", {})) | dict(doc.get("algo", {}).get(algo, {}))
        values |= {"algo": algo, "task": task, "quality": quality, "seed": seed,
                   "out_dir": str(root / task / quality / algo / f"seed{seed}")}
        runs.append(TrainConfig.from_dict(values).validate())
    return runs


def _grid(args: argparse.Namespace) -> int:
    doc = read_toml(args.experiment)
    runs = grid_runs(doc)
    todo = [c for c in runs if not (Path(c.out_dir) / RESULT).exists()]
    print(f"{len(runs)} runs, {len(runs) - len(todo)} finished, {len(todo)} to do",
          flush=True)
    if args.dry_run:
        for c in todo:
            print(c.out_dir)
        return 0
    command = shlex.join(["python", "-m", "om2p_lite", *sys.argv[1:]])
    if args.dask and todo:
        return _grid_dask(todo[: args.max_runs or None], args.dask, command,
                          args.keep_checkpoints)
    for k, cfg in enumerate(todo[: args.max_runs or None]):
        t0 = time.time()
        try:
            res = run_one(cfg, command, keep_checkpoint=args.keep_checkpoints)
        except (ValueError, FileNotFoundError, RuntimeError) as err:  # next run; rerun retries
            print(f"[{k + 1}/{len(todo)}] {cfg.out_dir}: FAILED: {err}", flush=True)
            continue
        print(f"[{k + 1}/{len(todo)}] {cfg.out_dir}: return {res.get('return')}, "
              f"{time.time() - t0:.1f} s", flush=True)
    return 0


def dask_client(address: str) -> Any:
    """A Dask client: ``local:N`` starts N single-threaded worker processes on 127.0.0.1
    (no dashboard); anything else is a running scheduler's address (e.g. a cluster's)."""
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError as err:
        raise ValueError("--dask needs Dask: pip install 'om2p-lite[scale]'") from err
    if address.startswith("local:"):
        try:
            n = int(address.split(":", 1)[1])
        except ValueError:
            n = 0
        if n < 1:
            raise ValueError(f"--dask {address!r}: write local:N with N >= 1 workers, "
                             f"or a scheduler address such as tcp://127.0.0.1:8786")
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                               host="127.0.0.1", dashboard_address=None)
        return Client(cluster)
    return Client(address)


def _grid_dask(todo: list[TrainConfig], address: str, command: str, keep: bool) -> int:
    """Run the grid's remaining runs as Dask tasks; each writes its own run folder."""
    from dask.distributed import as_completed

    client = dask_client(address)
    try:
        futures = {client.submit(run_one, cfg, command, keep, pure=False): cfg
                   for cfg in todo}
        for k, fut in enumerate(as_completed(futures)):
            cfg = futures[fut]
            try:
                res = fut.result()
            except (ValueError, FileNotFoundError, RuntimeError) as err:
                print(f"[{k + 1}/{len(todo)}] {cfg.out_dir}: FAILED: {err}", flush=True)
                continue
            print(f"[{k + 1}/{len(todo)}] {cfg.out_dir}: return {res.get('return')}",
                  flush=True)
    finally:
        cluster = getattr(client, "cluster", None)
        client.close()
        if cluster is not None:
            cluster.close()
    return 0


def _table(args: argparse.Namespace) -> int:
    from om2p_lite.rl.results import (
        add_normalised,
        dataset_references,
        load_results,
        results_table,
        table_markdown,
    )

    df = load_results(args.results)
    if args.metric == "normalised" and df["normalised"].isna().any():
        # no reference table row: use the random/expert datasets the runs trained on
        refs = dataset_references(sorted(set(df["task"])), args.data_budget)
        df = add_normalised(df, refs)
        df = df[df["normalised"].notna()]
    print(table_markdown(results_table(df, args.metric)))
    return 0


def register(subparsers: Any) -> None:
    """Add train / evaluate / grid / table to the main parser."""
    p = subparsers.add_parser("train", help="train one algorithm on one dataset (resumable)")
    p.add_argument("--budget", default=None, help="preset: smoke | book | full (then "
                   "--config, then flags override it)")
    p.add_argument("--config", default=None, help="TOML file of TrainConfig fields")
    add_config_flags(p)
    p.set_defaults(func=_train)

    p = subparsers.add_parser("evaluate", help="evaluate a run folder's checkpoint")
    p.add_argument("--run", required=True, help="run folder (train --out-dir)")
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--seed", type=int, default=12345)
    p.add_argument("--device", default=None)
    p.set_defaults(func=_evaluate)

    p = subparsers.add_parser("grid", help="run an experiment grid from a TOML file; "
                              "finished runs are skipped")
    p.add_argument("--experiment", required=True, help="TOML experiment file")
    p.add_argument("--dry-run", action="store_true", help="list the runs still to do")
    p.add_argument("--max-runs", type=int, default=0, help="stop after this many (0: all)")
    p.add_argument("--keep-checkpoints", action="store_true",
                   help="keep checkpoint.pt of finished runs (default: delete)")
    p.add_argument("--dask", default="", help="run through Dask: 'local:N' (N worker "
                   "processes on 127.0.0.1) or a scheduler address; default: in this process")
    p.set_defaults(func=_grid)

    p = subparsers.add_parser("table", help="print the results table (markdown)")
    p.add_argument("--results", default="data/results/main")
    p.add_argument("--metric", default="return", choices=["return", "normalised"])
    p.add_argument("--data-budget", default="smoke",
                   help="dataset budget whose random/expert returns normalise scores when "
                        "data/reference_returns.csv has no row")
    p.set_defaults(func=_table)
