"""The ``data`` command: make | info | validate | import | download | export | reference |
train-behaviour.

Not the top-level parser: ``om2p_lite.cli.main`` calls ``register(subparsers)`` to add it.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from om2p_lite.cli.args import (
    OneLineParser,
    count,
    finite,
    nonnegative_real,
    positive,
    positive_real,
)
from om2p_lite.data.behaviour import BEHAVIOURS, QUALITIES
from om2p_lite.data.download import DEFAULT_REVISION, HUB_TASKS, REPO_ID
from om2p_lite.data.npy_io import ACTION_LAYOUTS as FILE_LAYOUTS
from om2p_lite.data.npy_io import IMPORT_QUALITIES, IMPORTED
from om2p_lite.envs import ACTION_LAYOUTS, DEFAULT_ACTION_LAYOUT, TASKS

LAYOUT_HELP = ("MPE's action per agent: force-xy, the paper's 2-d force (default), or mpe2, "
               "mpe2's 5-d action (the data of the results stored before the layouts)")
BEHAVIOUR_HELP = ("MPE behaviour: trained (D4RL-style from data/behaviour/TASK_td3.pt: its "
                  "snapshots + noise, its training replay for medium-replay) or scripted "
                  "(envs.scripted, the data of the stored results); default trained when "
                  "the task's policy file exists, else scripted (with a note)")


def _task(text: str) -> str:
    """``--task``: a standard task or spreadN, with the library's message when it is not."""
    from om2p_lite.envs import check_task

    try:
        return check_task(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from err


def _budget_name(name: str | None) -> str:
    """The budget name from the flag, else $OM2P_BUDGET, else 'book'."""
    from om2p_lite.runtime.budget import get_budget

    return get_budget(name).name


def cmd_make(args: argparse.Namespace) -> int:
    """Generate one dataset file (refuses to overwrite) and print its checksum and speed."""
    from om2p_lite.data.behaviour import default_behaviour
    from om2p_lite.data.dataset import save_dataset
    from om2p_lite.data.generate import dataset_path, make_dataset
    from om2p_lite.envs import task_name

    budget = _budget_name(args.budget)
    if args.n_agents is not None and args.task in TASKS:
        args.task, args.n_agents = task_name(args.task, args.n_agents), None
    behaviour, note = args.behaviour, ""
    if behaviour is None:  # the note follows the data: a refused request prints one line
        behaviour, note = default_behaviour(args.task, args.reward_variant, args.action_layout)
    argv = sys.argv[1:] if args.behaviour else [*sys.argv[1:], "--behaviour", behaviour]
    out = Path(args.out) if args.out else dataset_path(args.task, args.quality, args.seed,
                                                       budget, args.reward_variant,
                                                       args.action_layout, behaviour)
    if out.exists():
        print(f"error: {out} exists; choose another --out (nothing was written)",
              file=sys.stderr)
        return 2
    ds, stats = make_dataset(args.task, args.quality, args.seed, n_transitions=args.transitions,
                             budget=budget, reward_variant=args.reward_variant,
                             n_envs=args.n_envs, n_workers=args.workers, progress=True,
                             command=shlex.join(["python", "-m", "om2p_lite", *argv]),
                             n_agents=args.n_agents, action_layout=args.action_layout,
                             behaviour=behaviour)
    save_dataset(ds, out)
    if note:
        print(note, file=sys.stderr)
    rets = ds.episode_returns()
    print(f"wrote {out}\n  transitions {len(ds)}  episodes {len(rets)}  return "
          f"{rets.mean():.3f} +- {rets.std():.3f}\n  {ds.metadata['checksum']}\n  "
          f"{stats['transitions_per_s']:.0f} transitions/s ({stats['wall_s']:.1f} s)")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    """Print return statistics and metadata of one or more dataset files."""
    from om2p_lite.data.dataset import load_dataset
    from om2p_lite.data.generate import summarize

    for path in args.paths:
        ds = load_dataset(path)
        s = summarize(ds)
        source = ds.metadata.get("behaviour_source", "scripted (made before the option)")
        print(f"{path}\n  task {s['task']}  quality {s['quality']}  agents {s['agents']}  "
              f"transitions {s['transitions']}  episodes {s['episodes']}\n  return mean "
              f"{s['return_mean']:.3f}  std {s['return_std']:.3f}  min {s['return_min']:.3f}"
              f"  max {s['return_max']:.3f}  (score rule: {ds.metadata.get('score')})\n"
              f"  behaviour: {source}: {ds.metadata.get('behaviour')}\n  {s['checksum']}")
        if args.json:
            print(json.dumps(ds.metadata, indent=1, sort_keys=True))
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    """Validate files; print OK or the DatasetError; exit 1 if any failed."""
    from om2p_lite.data.dataset import load_dataset
    from om2p_lite.data.errors import DatasetError

    failed = 0
    for path in args.paths:
        try:
            load_dataset(path)
            print(f"OK   {path}")
        except DatasetError as err:
            print(f"FAIL {err}")
            failed += 1
    return 1 if failed else 0


def cmd_import(args: argparse.Namespace) -> int:
    """Import a per-agent .npy directory into one validated .npz."""
    from om2p_lite.data.dataset import save_dataset
    from om2p_lite.data.npy_io import import_npy

    ds = import_npy(args.src, args.task, args.action_low, args.action_high,
                    reward_variant=args.reward_variant, quality=args.quality,
                    action_layout=args.action_layout)
    save_dataset(ds, args.out)
    meta = ds.metadata
    print(f"wrote {args.out}: task {meta['task']}, {len(ds)} transitions, "
          f"{len(ds.episode_bounds())} episodes, {meta['checksum']}\n  train on it with: "
          f"python -m om2p_lite train --dataset {args.out} --task {meta['task']} "
          f"--quality {meta['quality']}")
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    """Fetch the authors' published sets from the Hub, check them, import each to one .npz."""
    from om2p_lite.data.download import download, provenance_path
    from om2p_lite.runtime.record import portable_path

    if args.folder and len(args.task) * len(args.quality) > 1:
        raise ValueError("--folder: names one set, but several --task/--quality were given. "
                         "Fix: pass one --task and one --quality with --folder")
    for task in args.task:
        for quality in args.quality:
            out = download(task, quality, args.seed, out_dir=args.out_dir,
                           revision=args.revision, endpoint=args.endpoint, repo_id=args.repo,
                           folder=args.folder, action_layout=args.action_layout,
                           cache_dir=args.cache_dir, force_download=args.force_download)
            if out is None:
                continue
            meta = json.loads(provenance_path(out).read_text())
            print(f"wrote {portable_path(out)}: task {meta['task']}, {meta['transitions']} "
                  f"transitions, {meta['dataset_checksum']}\n  from {meta['repo']} commit "
                  f"{meta['commit']} (pin it with --revision {meta['commit']})\n  file "
                  f"checksums in {portable_path(provenance_path(out))}\n  train on it with: "
                  f"python -m om2p_lite train --dataset {portable_path(out)} --task "
                  f"{meta['task']} --quality {quality}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Export one .npz to the per-agent .npy layout."""
    from om2p_lite.data.dataset import load_dataset
    from om2p_lite.data.npy_io import export_npy

    paths = export_npy(load_dataset(args.path), args.out)
    print(f"wrote {len(paths)} files to {args.out}")
    return 0


def cmd_reference(args: argparse.Namespace) -> int:
    """Build (or load) the random/medium/expert datasets and write the reference table."""
    from om2p_lite.data.reference import (
        REFERENCE_CSV,
        merge_rows,
        read_reference,
        reference_rows,
        write_reference,
    )

    rows = reference_rows(_budget_name(args.budget), args.seed,
                          tuple(args.tasks) if args.tasks else None, progress=True,
                          n_workers=args.workers, action_layout=args.action_layout,
                          behaviour=args.behaviour,
                          spread_rewards=tuple(args.spread_reward or ("mpe2", "omar")))
    out = Path(args.out) if args.out else REFERENCE_CSV
    path = write_reference(merge_rows(read_reference(out) if out.exists() else [], rows), out)
    for r in rows:
        print(f"{r['task']:12s} {r['reward_variant']:9s} {r['action_layout']:8s} "
              f"{r['behaviour']:8s} {r['quality']:7s} "
              f"{r['return_mean']:10.3f} +- {r['return_std']:.3f}  ({r['episodes']} episodes)")
    print(f"wrote {path}")
    return 0


def cmd_train_behaviour(args: argparse.Namespace) -> int:
    """Train online multi-agent TD3 (resumable), then ship its snapshots to data/behaviour."""
    from om2p_lite.data.behaviour import behaviour_file
    from om2p_lite.data.behaviour_td3 import OnlineConfig, export_behaviour, train_behaviour

    cfg = OnlineConfig(task=args.task, total_steps=args.steps, seed=args.seed,
                       eval_every=args.eval_every, n_envs=args.n_envs,
                       eval_episodes=args.eval_episodes, start_steps=args.start_steps,
                       reward_variant=args.reward_variant,
                       action_layout=args.action_layout,
                       central_critic=args.critics == "central", shaping=args.shaping,
                       expl_noise=args.expl_noise,
                       agent={k: v for k, v in (("critic_hidden", args.critic_hidden),
                                                ("lr", args.lr)) if v is not None}).validate()
    run_dir = Path(args.run_dir or f"runs/behaviour/{args.task}")
    curve = train_behaviour(cfg, run_dir)
    if args.export:
        from om2p_lite.data.generate import make_dataset

        rnd, _ = make_dataset(args.task, "random", seed=args.seed, n_transitions=10 * 1000,
                              reward_variant=args.reward_variant,
                              action_layout=args.action_layout)
        out = behaviour_file(args.task, args.reward_variant, args.action_layout)
        chosen = export_behaviour(run_dir, out, float(rnd.episode_returns().mean()),
                                  args.medium_return, args.expert_return)
        print(f"exported {chosen} to {out}")
    print(f"final return {curve[-1]['return']:.2f} after {curve[-1]['wall_s']:.0f} s")
    return 0


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``data`` command and its sub-commands to a top-level parser's subparsers."""
    data = subparsers.add_parser("data", help="make, inspect, validate, import and export "
                                 "offline datasets")
    sub = data.add_subparsers(dest="data_command", required=True)

    p = sub.add_parser("make", help="generate one dataset (task, quality, seed)")
    p.add_argument("--task", type=_task, required=True,
                   help=f"one of {', '.join(TASKS)}, or spreadN (Spread with N agents)")
    p.add_argument("--n-agents", type=positive, default=None,
                   help="Spread's agent count (the same as --task spreadN)")
    p.add_argument("--quality", choices=QUALITIES, required=True)
    p.add_argument("--seed", type=count, default=0)
    p.add_argument("--budget", choices=("smoke", "book", "full"), default=None,
                   help="size preset (default $OM2P_BUDGET or book)")
    p.add_argument("--transitions", type=int, default=None,  # make_dataset: >= 1 episode
                   help="override the preset size (at least one episode)")
    p.add_argument("--reward-variant", choices=("mpe2", "omar"), default="mpe2",
                   help="omar: OMAR's reshaped Spread reward (other tasks are unchanged)")
    p.add_argument("--action-layout", choices=ACTION_LAYOUTS, default=DEFAULT_ACTION_LAYOUT,
                   help=LAYOUT_HELP)
    p.add_argument("--behaviour", choices=BEHAVIOURS, default=None, help=BEHAVIOUR_HELP)
    p.add_argument("--n-envs", type=positive, default=None, help="environments stepped together "
                   "(changes the data; recorded in the metadata)")
    p.add_argument("--workers", type=positive, default=1,
                   help="processes (does not change data)")
    p.add_argument("--out", default=None, help="output .npz (default: the cache path)")
    p.set_defaults(func=cmd_make)

    p = sub.add_parser("info", help="print return statistics of dataset files")
    p.add_argument("paths", nargs="+")
    p.add_argument("--json", action="store_true", help="also print the full metadata")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("validate", help="check dataset files field by field")
    p.add_argument("paths", nargs="+")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("import", help="import a per-agent obs_i/acs_i/... .npy directory")
    p.add_argument("src")
    p.add_argument("--task", type=_task, required=True,
                   help="the task the files were made in; spread takes its agent count "
                   "from the files (4 agents: spread4)")
    p.add_argument("--out", required=True)
    p.add_argument("--action-low", type=finite, default=-1.0)
    p.add_argument("--action-high", type=finite, default=1.0)
    p.add_argument("--reward-variant", choices=("mpe2", "omar", "mamujoco"), default=None,
                   help="reward function of the files: required for spread (omar for "
                   "OMAR's public data); others default to their only one")
    p.add_argument("--quality", choices=IMPORT_QUALITIES, default=IMPORTED,
                   help="data set quality label (default: imported, behaviour unknown)")
    p.add_argument("--action-layout", choices=FILE_LAYOUTS, default="native",
                   help="the files' MPE actions, kept as they are: force-xy, 2-d forces (the "
                   "official OM2P data, the default task's own); mpe2, mpe2's 5-d actions; "
                   "native: either, told apart by their width")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("download", help="fetch the OM2P authors' published data set from the "
                       "Hugging Face Hub (needs the download extra), check it, import it")
    p.add_argument("--task", nargs="+", choices=tuple(HUB_TASKS), default=["spread"],
                   help="task(s) to fetch (default: spread)")
    p.add_argument("--quality", nargs="+", choices=QUALITIES, default=["expert"],
                   help="quality(ies) to fetch (default: expert)")
    p.add_argument("--seed", type=count, default=0, help="the set's seed folder, seed_S_data "
                   "(default 0)")
    p.add_argument("--out-dir", default=None, help="where the .npz and its provenance go "
                   "(default data/cache/official, or $OM2P_DATA_DIR/official); an existing "
                   "file is skipped, never replaced")
    p.add_argument("--revision", default=DEFAULT_REVISION, help="branch, tag or commit to "
                   "fetch (default main); the commit it resolves to is recorded")
    p.add_argument("--endpoint", default=None, help="Hub URL (default $HF_ENDPOINT, else "
                   "huggingface_hub's own, https://huggingface.co)")
    p.add_argument("--repo", default=REPO_ID, help=f"data set repository (default {REPO_ID})")
    p.add_argument("--folder", default=None, help="the set's folder in the repository "
                   "(default ENV/QUALITY/seed_S_data, ENV as the official code names the task)")
    p.add_argument("--action-layout", choices=FILE_LAYOUTS, default=None,
                   help="the files' actions (default: force-xy for MPE, native for "
                   "halfcheetah), as in data import")
    p.add_argument("--cache-dir", default=None, help="where the raw files are kept (default "
                   "huggingface_hub's cache, $HF_HOME/hub)")
    p.add_argument("--force-download", action="store_true", help="fetch the files again even "
                   "if cached (after a failed digest check)")
    p.set_defaults(func=cmd_download)

    p = sub.add_parser("export", help="export a dataset to the per-agent .npy layout")
    p.add_argument("path")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("reference", help="write data/reference_returns.csv")
    p.add_argument("--budget", choices=("smoke", "book", "full"), default=None)
    p.add_argument("--seed", type=count, default=0)
    p.add_argument("--tasks", nargs="*", choices=TASKS, default=None)
    p.add_argument("--workers", type=positive, default=1)
    p.add_argument("--action-layout", choices=ACTION_LAYOUTS, default=DEFAULT_ACTION_LAYOUT,
                   help=LAYOUT_HELP + "; the other layout's rows are kept")
    p.add_argument("--behaviour", choices=BEHAVIOURS, default=None,
                   help="MPE behaviour of the data sets (default: trained where a policy "
                   "ships, i.e. the 2-d force layout, else scripted); the other behaviour's "
                   "rows are kept")
    p.add_argument("--spread-reward", action="append", choices=("mpe2", "omar"),
                   default=None, help="only Spread's rows of this reward (repeatable; "
                   "default both): a trained Spread policy learnt one reward")
    p.add_argument("--out", default=None)
    p.set_defaults(func=cmd_reference)

    p = sub.add_parser("train-behaviour", help="online multi-agent TD3 behaviour policy "
                       "(data.behaviour_td3; resumable)")
    p.add_argument("--task", choices=TASKS, default="halfcheetah")
    p.add_argument("--steps", type=positive, default=80_000,
                   help="environment transitions (a multiple of --eval-every)")
    p.add_argument("--seed", type=count, default=0)
    p.add_argument("--eval-every", type=positive, default=4_000,
                   help="transitions between evaluations, snapshots and checkpoints "
                   "(a multiple of --n-envs)")
    p.add_argument("--n-envs", type=positive, default=1)
    p.add_argument("--eval-episodes", type=positive, default=3)
    p.add_argument("--start-steps", type=count, default=5_000,
                   help="uniform-random transitions before the actor acts and learns")
    p.add_argument("--reward-variant", choices=("mpe2", "omar"), default="mpe2",
                   help="omar: OMAR's reshaped Spread reward (other tasks are unchanged)")
    p.add_argument("--action-layout", choices=ACTION_LAYOUTS, default=DEFAULT_ACTION_LAYOUT,
                   help="MPE action: force-xy (the paper's 2-d force) or mpe2 (5-d)")
    p.add_argument("--critics", choices=("central", "independent"), default="central",
                   help="central: MATD3, each agent's critic sees every agent's observation "
                   "and action (OMAR's behaviour learner); independent: TD3 per agent")
    p.add_argument("--critic-hidden", type=positive, default=None,
                   help="critic width (default 64 on MPE, as OMAR's MATD3; 256 on "
                   "HalfCheetah)")
    p.add_argument("--lr", type=positive_real, default=None,
                   help="actor and critic step size (default 3e-4)")
    p.add_argument("--expl-noise", type=nonnegative_real, default=0.1,
                   help="std of the Gaussian exploration noise on the actor's actions")
    p.add_argument("--shaping", action="store_true",
                   help="Tag: learn from the reward plus MPE's optional predator shaping "
                   "(-0.1 x the predators' summed distance to the prey); the data, the replay and "
                   "the curve keep the task's reward")
    p.add_argument("--run-dir", default=None)
    p.add_argument("--export", action="store_true",
                   help="write data/behaviour/<task>[-omar][-mpe2]_td3.pt from the run's "
                   "snapshots, and its replay up to the medium snapshot beside it")
    p.add_argument("--medium-return", type=finite, default=None, help="with --export: the "
                   "medium snapshot is the one nearest this return (default: half-way from "
                   "random to the expert)")
    p.add_argument("--expert-return", type=finite, default=None, help="with --export: the "
                   "expert snapshot is the first reaching this return (default: the best)")
    p.set_defaults(func=cmd_train_behaviour)
    return data


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry (``python -m om2p_lite.cli.data ...``) until the top CLI wires it."""
    parser = OneLineParser(prog="om2p_lite")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except (ValueError, FileNotFoundError) as err:  # as the top-level command line does
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
