"""The ``python -m om2p_lite`` command line: one sub-command per job.

Not the logic itself: each command parses, validates and calls library functions.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from om2p_lite.cli.args import OneLineParser, count, positive, xi
from om2p_lite.runtime.checks import SettingError

if TYPE_CHECKING:
    from om2p_lite.runtime.budget import Budget

# modules that add their own sub-commands with ``register(subparsers)``
PLUGINS = ("om2p_lite.cli.data", "om2p_lite.cli.train", "om2p_lite.cli.bench")


def _info(args: argparse.Namespace) -> int:
    import torch

    from om2p_lite import __version__
    from om2p_lite.runtime.budget import get_budget
    from om2p_lite.runtime.device import describe_device, pick_device

    budget = get_budget(args.budget)
    print(json.dumps({"om2p_lite": __version__, "torch": torch.__version__,
                      "python": sys.version.split()[0],
                      "device": describe_device(pick_device(args.device)),
                      "budget": budget.__dict__}, indent=2))
    return 0


def check_toy_args(args: argparse.Namespace) -> Budget:
    """The ``toy`` command's settings, checked before anything runs by the rules ``train``
    and ``fit_toy`` use: the budget (the flag, else ``$OM2P_BUDGET``), estimator, Δr, ξ and
    ratio. Returns the budget; a ``SettingError`` names the first bad setting."""
    from om2p_lite.flows.meanflow import check_meanflow_settings
    from om2p_lite.runtime.budget import get_budget

    budget = get_budget(args.budget)
    check_meanflow_settings(args.estimator, args.dr, args.xi, args.ratio, warn=False)
    return budget  # (fit_toy checks them again, cheaply, and warns for an unresolved Δr)


def _toy(args: argparse.Namespace) -> int:
    import torch

    from om2p_lite.book.metrics import mode_coverage, sliced_wasserstein
    from om2p_lite.book.toys import toy_joint_actions, toy_modes
    from om2p_lite.book.toytrain import fit_toy
    from om2p_lite.runtime.device import pick_device

    budget = check_toy_args(args)
    gen = torch.Generator().manual_seed(args.seed)
    data = toy_joint_actions(20000, args.kind, generator=gen)
    fit = fit_toy(args.method, data, steps=args.steps or budget.toy_steps,
                  batch=budget.toy_batch, hidden=budget.toy_hidden, depth=budget.toy_depth,
                  estimator=args.estimator, dr=args.dr, xi=args.xi, ratio=args.ratio,
                  seed=args.seed, device=pick_device(args.device))
    samples = fit.sample(budget.n_samples, args.sample_steps)
    result = {"method": args.method, "estimator": args.estimator, "dr": args.dr,
              "xi": args.xi, "steps": len(fit.losses), "seconds": round(fit.seconds, 2),
              "final_loss": fit.losses[-1], "sample_steps": args.sample_steps,
              "sliced_wasserstein": sliced_wasserstein(samples, data[: budget.n_samples]),
              **mode_coverage(samples, toy_modes(args.kind))}
    print(json.dumps(result, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The full parser, with every available plugin's sub-commands."""
    from om2p_lite.flows.meanflow import DEFAULT_DR  # the plugins import torch anyway

    parser = OneLineParser(prog="python -m om2p_lite", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    info = sub.add_parser("info", help="versions, device and budget in use")
    info.add_argument("--budget", default=None, help="smoke | book | full")
    info.add_argument("--device", default=None, help="cpu | cuda | cuda:N")
    info.set_defaults(func=_info)

    toy = sub.add_parser("toy", help="fit a toy 2-D joint-action policy and score its samples")
    toy.add_argument("--method", default="meanflow",
                     choices=["mse", "gaussian", "flow", "meanflow"])
    toy.add_argument("--kind", default="ring", choices=["ring", "coordination"])
    toy.add_argument("--estimator", default="jvp", choices=["jvp", "fd", "zero", "jacobian"])
    toy.add_argument("--dr", type=float, default=DEFAULT_DR, help="finite-difference step "
                     f"Δr, in (0, 1] (default {DEFAULT_DR:g})")
    toy.add_argument("--xi", type=xi, default="uniform", help="name or 'a,b,c,d'")
    toy.add_argument("--ratio", type=float, default=0.25, help="fraction of r ≠ t pairs")
    toy.add_argument("--steps", type=count, default=0, help="training steps (0: budget's)")
    toy.add_argument("--sample-steps", type=positive, default=1, help="sampling steps K")
    toy.add_argument("--seed", type=count, default=0)
    toy.add_argument("--budget", default=None)
    toy.add_argument("--device", default=None)
    toy.set_defaults(func=_toy)

    for name in PLUGINS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name is not None and name.startswith(err.name):
                continue  # that part of the library is not installed in this version
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the command; no traceback for bad input.

    Bad input (a ``ValueError`` or a filesystem error) prints ``error: ...`` and returns 2;
    a run that cannot go on (its folder held by another process, a non-finite loss) prints
    the same way and returns 1. Anything else is a bug and keeps its traceback.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:  # the reader went away (e.g. `| head`): stop quietly
        sys.stderr.close()
        return 0
    except (ValueError, OSError) as err:
        print(f"error: {error_message(err, args)}", file=sys.stderr)
        return 2
    except RuntimeError as err:
        from om2p_lite.rl.rundir import NonFiniteError, RunFolderBusy

        if not isinstance(err, (NonFiniteError, RunFolderBusy)):
            raise  # a bug: keep its traceback
        print(f"error: {error_message(err)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted; finished runs are kept and a rerun resumes the rest",
              file=sys.stderr)
        return 130


def error_message(err: BaseException, args: argparse.Namespace | None = None) -> str:
    """The message for the user: filesystem errors name the path and a fix; a setting that
    came from a flag of ``args`` is named by that flag ('--dr'), not by its field ('dr')."""
    if isinstance(err, OSError) and err.filename:
        from om2p_lite.rl.rundir import describe_os_error

        return describe_os_error(err)
    if isinstance(err, SettingError) and err.label == err.field and \
            err.field in vars(args or argparse.Namespace()):
        return str(err.relabel(f"--{err.field.replace('_', '-')}"))
    return str(err)
