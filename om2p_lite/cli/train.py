"""The ``train``, ``evaluate``, ``grid`` and ``table`` sub-commands of ``python -m om2p_lite``.

Not the training logic (``rl.train``) nor the experiment runner (``rl.scheduler``; the
experiment TOML format is ``rl.spec``'s): these parse flags, call them and print.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from om2p_lite.cli.args import boolean, count, positive
from om2p_lite.rl.config import TrainConfig, field_default

FLAG_HELP = {"behaviour": "scripted | trained (default: trained on spread, tag and world "
                          "with the force-xy action, scripted on spreadN and mpe2)"}


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One ``--field`` flag per ``TrainConfig`` field (default: unset, so files can fill it)."""
    for f in dataclasses.fields(TrainConfig):
        kind = {"int": int, "float": float, "bool": boolean}.get(str(f.type), str)
        parser.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, type=kind,
                            default=None, help=FLAG_HELP.get(
                                f.name, f"(default {field_default(f.name)!r})"))


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """TrainConfig from ``--budget``, then ``--config FILE`` (its [config] table or top
    level), then flags; validated (``TrainConfig.validate``: every flag's rule).

    ``$OM2P_BUDGET`` is checked exactly like ``--budget`` but sets no preset: the command a
    run records (result.json) must reproduce it, and an environment variable is not in it.
    """
    from om2p_lite.rl.spec import check_fields, read_toml
    from om2p_lite.runtime.budget import get_budget, train_preset

    values: dict[str, Any] = {}
    budget = get_budget(args.budget)  # the flag, else $OM2P_BUDGET: the same check
    if args.budget:
        values.update(train_preset(budget.name))
    if args.config:
        doc = read_toml(args.config)
        table = doc.get("config", doc)
        values.update(check_fields(table, args.config, "config" if "config" in doc else
                                   "top level"))
    names = [f.name for f in dataclasses.fields(TrainConfig)]
    values.update({k: getattr(args, k) for k in names if getattr(args, k) is not None})
    return TrainConfig.from_dict(values).validate()


def _command() -> str:
    from om2p_lite.runtime.record import portable_command

    return portable_command(["python", "-m", "om2p_lite", *sys.argv[1:]])


def _train(args: argparse.Namespace) -> int:
    from om2p_lite.rl.rundir import RunFolder, check_folder
    from om2p_lite.rl.train import finish_run, train

    cfg = config_from_args(args)
    with contextlib.ExitStack() as claim:
        if cfg.out_dir:  # owned from training until result.json is written
            claim.enter_context(RunFolder(check_folder(cfg.out_dir, "--out-dir")).claim())
        summary = train(cfg)
        if not summary["finished"]:
            print(json.dumps({"finished": False, "step": summary["step"]}))
            return 0
        result = finish_run(summary, _command())
    print(json.dumps({k: v for k, v in result.items() if k not in ("evals", "config")},
                     indent=1, default=str))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from om2p_lite.data.run_data import load_data
    from om2p_lite.rl.agents import dims_of, make_agent
    from om2p_lite.rl.evaluate import evaluate_agent
    from om2p_lite.rl.rundir import RunFolder
    from om2p_lite.runtime.device import pick_device

    run = Path(args.run)
    if not run.is_dir():
        problem = "is a file" if run.exists() else "does not exist"
        raise ValueError(f"--run {run}: {problem}. Fix: name a run folder written by "
                         f"`train --out-dir` or `grid`")
    blob = load_run_checkpoint(run)
    ckpt = RunFolder(run).checkpoint_file
    try:
        cfg = TrainConfig.from_stored(blob["config"]).validate()
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{ckpt}: holds no valid config ({err}). Fix: "
                         f"retrain the run") from err
    device = pick_device(args.device)
    agent = make_agent(cfg.algo, dims_of(load_data(cfg)), cfg).to(device)
    try:
        agent.load_full_state(blob["agent"])
    except (KeyError, RuntimeError, TypeError, ValueError) as err:
        raise ValueError(f"{ckpt}: its weights do not fit the {cfg.algo} "
                         f"agent its config describes ({type(err).__name__}: "
                         f"{str(err).splitlines()[0] if str(err) else ''}). Fix: retrain the "
                         f"run") from err
    res = evaluate_agent(agent, cfg.task, args.episodes, seed=args.seed, device=device,
                         reward_variant=cfg.reward_variant, action_layout=cfg.action_layout)
    print(json.dumps({"run": str(run), "step": blob["step"], **res}, indent=1))
    return 0


def load_run_checkpoint(run: Path) -> dict[str, Any]:
    """A run folder's checkpoint, loaded as data only (weights_only: no code can run)."""
    from om2p_lite.rl.rundir import CHECKPOINT_NAME, RunFolder, read_run_file

    path = RunFolder(run).checkpoint_file
    if not path.exists():
        raise ValueError(f"--run {run}: has no {CHECKPOINT_NAME}. Fix: train it with "
                         f"`train --out-dir {run}`, or run `grid --keep-checkpoints` (grid "
                         f"deletes the checkpoints of finished runs by default)")
    return read_run_file(path)


def _grid(args: argparse.Namespace) -> int:
    from om2p_lite.rl.cluster import dask_security
    from om2p_lite.rl.scheduler import ExperimentFailed, plan_experiment, run_experiment

    # resume-free settings (they do not change a run's result) that a command line may set
    overrides = {"checkpoint_every": args.checkpoint_every} if args.checkpoint_every else {}
    if args.dry_run:
        plan = plan_experiment(args.experiment, results_dir=args.results_dir,
                               overrides=overrides, max_members=args.max_members,
                               max_runs=args.max_runs, tasks=args.task, algos=args.algo,
                               qualities=args.quality)
        print(plan.headline())
        for out, err in plan.failures.items():
            print(f"{out}: {err}")
        for k, group in enumerate(plan.populations):
            print(f"population {k + 1} ({len(group)} member{'s' * (len(group) > 1)}):")
            for run in group:
                print(f"  {run.out_dir}")
        return 0
    tls = (args.dask_tls_ca, args.dask_tls_cert, args.dask_tls_key)
    security = dask_security(args.dask, *tls) if args.dask else None
    if any(tls) and not args.dask:
        raise ValueError("--dask-tls-*: given without --dask. Fix: add --dask tls://HOST:PORT "
                         "(your scheduler's address) or drop them")
    try:
        run_experiment(args.experiment, results_dir=args.results_dir, overrides=overrides,
                       max_members=args.max_members, dask=args.dask, dask_security=security,
                       progress=True, max_runs=args.max_runs, tasks=args.task,
                       algos=args.algo, qualities=args.quality,
                       keep_checkpoints=args.keep_checkpoints, command=_command())
    except ExperimentFailed as err:
        print(f"error: {len(err.failures)} of {err.total} runs failed (see above and each "
              f"run folder's status.json); rerun the same command to retry them",
              file=sys.stderr)
        return 1
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
                   "--config, then flags override it); without it TrainConfig's defaults "
                   "($OM2P_BUDGET is checked but sets no preset, so that the recorded command "
                   "reproduces the run)")
    p.add_argument("--config", default=None, help="TOML file of TrainConfig fields")
    add_config_flags(p)
    p.set_defaults(func=_train)

    p = subparsers.add_parser("evaluate", help="evaluate a run folder's checkpoint")
    p.add_argument("--run", required=True, help="run folder (train --out-dir)")
    p.add_argument("--episodes", type=positive, default=10)
    p.add_argument("--seed", type=count, default=12345)
    p.add_argument("--device", default=None)
    p.set_defaults(func=_evaluate)

    p = subparsers.add_parser("grid", help="run an experiment grid from a TOML file; "
                              "finished runs are skipped")
    p.add_argument("--experiment", required=True, help="TOML experiment file")
    p.add_argument("--results-dir", default=None,
                   help="write the run folders here instead of the file's results_dir")
    p.add_argument("--dry-run", action="store_true",
                   help="list the runs still to do, grouped into populations")
    p.add_argument("--max-runs", type=count, default=0,
                   help="train only this many of the runs still to do (0: all)")
    p.add_argument("--max-members", type=positive, default=16,
                   help="most runs trained together as one population per process")
    p.add_argument("--keep-checkpoints", action="store_true",
                   help="keep checkpoint.pt of finished runs (default: delete)")
    p.add_argument("--task", action="append", default=[],
                   help="only the runs on this task (repeatable): one share of the grid "
                        "for one machine, e.g. the MPE tasks on a GPU, MuJoCo on a CPU")
    p.add_argument("--algo", action="append", default=[],
                   help="only the runs of this algorithm (repeatable), e.g. the slow CQL "
                        "and OMAR on a GPU and the rest on a CPU")
    p.add_argument("--quality", action="append", default=[],
                   help="only the runs on data of this quality (repeatable), e.g. a slow "
                        "algorithm on the decisive experiment's data sets first")
    p.add_argument("--checkpoint-every", type=count, default=0,
                   help="steps between checkpoints, so that a stopped grid (a preempted "
                        "node) resumes its runs mid-way (0: the experiment's setting)")
    p.add_argument("--dask", default="", help="run through Dask: 'local:N' (N worker "
                   "processes on 127.0.0.1, reachable only with this run's own TLS "
                   "credentials) or a scheduler address (tls://HOST:PORT with the flags "
                   "below or Dask's distributed.comm.tls config); default: in this process")
    p.add_argument("--dask-tls-ca", default=None, metavar="FILE",
                   help="PEM certificate of the CA that signed your scheduler's certificate")
    p.add_argument("--dask-tls-cert", default=None, metavar="FILE",
                   help="PEM certificate of this client, signed by that CA")
    p.add_argument("--dask-tls-key", default=None, metavar="FILE",
                   help="PEM private key of that certificate (if not in its file)")
    p.set_defaults(func=_grid)

    p = subparsers.add_parser("table", help="print the results table (markdown)")
    p.add_argument("--results", default="data/results/main")
    p.add_argument("--metric", default="return", choices=["return", "normalised"])
    p.add_argument("--data-budget", default="smoke",
                   help="dataset budget whose random/expert returns normalise scores when "
                        "data/reference_returns.csv has no row")
    p.set_defaults(func=_table)
