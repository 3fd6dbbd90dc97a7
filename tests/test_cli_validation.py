"""One validation for every entry point (issue 20): each command, ``TrainConfig`` and
``fit_toy`` refuse a bad setting with one line that names the field and the fix, exit code 2,
no traceback; and a walk over every sub-command's numeric flags with NaN, inf, 0 and -1.

Nothing here trains: the walk parses and runs each command's validator only.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import pickle
import subprocess
import sys
from collections.abc import Callable, Iterator

import pytest
import torch

from om2p_lite.cli.args import NUMERIC_TYPES, boolean, xi
from om2p_lite.cli.main import build_parser, check_toy_args, error_message, main
from om2p_lite.cli.train import config_from_args
from om2p_lite.flows.meanflow import DR_MAX, check_dr, check_estimator, du_dr
from om2p_lite.flows.networks import VelocityNet
from om2p_lite.flows.timesteps import XI_MAX, Xi, make_time_sampler
from om2p_lite.rl.config import TrainConfig
from om2p_lite.runtime.budget import BUDGET_ENV, get_budget
from om2p_lite.runtime.checks import SettingError

# (argv, environment, what the one line must name): the inputs issue 20 found accepted
LISTED = [
    (["toy", "--steps", "-1"], {}, "--steps"),
    (["toy", "--dr", "nan"], {}, "--dr"),
    (["toy", "--dr", "0"], {}, "--dr"),
    (["toy", "--dr", "inf"], {}, "--dr"),
    (["toy", "--estimator", "fd", "--dr", "1e-50"], {}, "--dr"),
    (["train", "--dr", "1e30"], {}, "config field 'dr'"),
    (["train", "--xi", "0,0,1e308,1e308"], {}, "config field 'xi'"),
    (["train"], {BUDGET_ENV: "nope"}, BUDGET_ENV),
    (["toy"], {BUDGET_ENV: "nope"}, BUDGET_ENV),
]


def _one_error_line(err: str, names: str) -> None:
    """``err`` is one 'error: ...' line naming ``names`` with a fix, and no traceback."""
    assert "Traceback" not in err
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert err.startswith("error: ") and names in err and "Fix: " in err, err


def _run(argv: list[str]) -> int:
    """``main(argv)``'s exit code, also when argparse refuses and exits."""
    try:
        return main(argv)
    except SystemExit as stop:
        return int(stop.code or 0)


@pytest.mark.parametrize("argv, env, names", LISTED)
def test_listed_inputs_get_one_line_and_exit_2(argv, env, names, monkeypatch, capsys):
    monkeypatch.delenv(BUDGET_ENV, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert _run(argv) == 2
    _one_error_line(capsys.readouterr().err, names)


@pytest.mark.parametrize("argv, env, names", [LISTED[0], LISTED[6], LISTED[7]])
def test_listed_inputs_through_the_module_entry_point(argv, env, names):
    res = subprocess.run([sys.executable, "-m", "om2p_lite", *argv], capture_output=True,
                         text=True, check=False, timeout=300,
                         env={**_env_without_budget(), **env})
    assert res.returncode == 2 and res.stdout == ""
    _one_error_line(res.stderr, names)


def _env_without_budget() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k != BUDGET_ENV}


# ---- the walk over every sub-command's numeric flags -------------------------------------

WALK_VALUES = ("nan", "inf", "0", "-1")
# The values of WALK_VALUES that a flag legitimately takes; every other one must be refused.
# Keyed by flag, or by "command flag" where the same flag means different things.
ALLOWED: dict[str, set[str]] = {
    # seeds: any integer >= 0
    "--seed": {"0"}, "--data-seed": {"0"},
    # counts where 0 means 'off', 'all' or 'the default'
    "toy --steps": {"0"},  # 0: the budget's steps
    "grid --max-runs": {"0"},  # 0: all runs still to do
    "grid --checkpoint-every": {"0"},  # 0: the experiment's setting
    **{f"train {flag}": {"0"} for flag in (
        "--eval-every", "--eval-episodes", "--eval-max-steps", "--checkpoint-every",
        "--stop-at", "--threads",  # 0: at the end only / none / the task's / adapt
        "--eta", "--alpha", "--policy-noise", "--noise-clip", "--cql-alpha",  # 0: no term
        "--adaptive-p",  # 0: plain L2
        "--gamma", "--omar-coef",  # in [0, 1) and [0, 1]
        "--omar-elites")},  # 0: all candidates
    "toy --ratio": {"0"}, "train --ratio": {"0"},  # 0: all pairs r = t (flow matching)
    # an action box's bounds: any finite number (their order is checked with the files)
    "data import --action-low": {"0", "-1"}, "data import --action-high": {"0", "-1"},
    # target returns (any finite number) and a random start that may be skipped
    "data train-behaviour --medium-return": {"0", "-1"},
    "data train-behaviour --expert-return": {"0", "-1"},
    "data train-behaviour --start-steps": {"0"},
    "data train-behaviour --expl-noise": {"0"},  # 0: no exploration noise
}
# the commands whose plain int/float flags a validator checks (parse, then this, then run)
VALIDATORS: dict[str, Callable[[argparse.Namespace], object]] = {
    "toy": check_toy_args, "train": config_from_args,
}
# plain int flags whose rule needs what only the run knows, checked by the library before any
# work: the walk runs the real command (with these extra arguments) on the values the parser
# takes, and expects exit 2
RUN_TO_REFUSE = {  # make_dataset: at least one episode of the task
    "data make --transitions": ["--out", "walk.npz"]}
NON_NUMERIC = {None, str, boolean, xi}  # argument types the walk has no numbers for


def _leaf_parsers(parser: argparse.ArgumentParser, path: tuple[str, ...] = (),
                  ) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """(command words, parser) for every sub-command that runs, e.g. ('data', 'make')."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
    for sub in subs:
        for name, child in sub.choices.items():
            yield from _leaf_parsers(child, (*path, name))


def _required(parser: argparse.ArgumentParser) -> list[str]:
    """Placeholder values for the arguments a command requires (nothing reads them)."""
    argv: list[str] = []
    for a in parser._actions:
        if isinstance(a, argparse._HelpAction) or not (a.required or not a.option_strings):
            continue
        value = str(next(iter(a.choices))) if a.choices else \
            "spread" if a.dest == "task" else "placeholder"
        argv += [value] if not a.option_strings else [a.option_strings[0], value]
    return argv


def _numeric_flags() -> list[tuple[tuple[str, ...], argparse.ArgumentParser, argparse.Action]]:
    """Every numeric option of every sub-command, found in the parsers."""
    found = []
    for path, parser in _leaf_parsers(build_parser()):
        for a in parser._actions:
            if not a.option_strings or isinstance(a, argparse._HelpAction):
                continue
            if a.type in NUMERIC_TYPES:
                found.append((path, parser, a))
            else:  # a new type of flag: say here whether the walk must try numbers on it
                assert a.type in NON_NUMERIC or a.type.__name__ == "_task", (path, a)
            name = f"{' '.join(path)} {a.option_strings[0]}"
            if a.type in (int, float):  # plain numbers: a validator must check them
                assert path[0] in VALIDATORS or name in RUN_TO_REFUSE, name
    return found


def test_the_walk_finds_the_numeric_flags_of_every_command():
    flags = {f"{' '.join(path)} {a.option_strings[0]}" for path, _, a in _numeric_flags()}
    for expected in ("toy --dr", "toy --steps", "train --lr", "train --steps", "grid --max-runs",
                     "evaluate --episodes", "data make --transitions", "bench --threads",
                     "data train-behaviour --eval-every", "data import --action-low"):
        assert expected in flags
    assert len(flags) > 50  # train alone has one flag per numeric TrainConfig field


def test_every_numeric_flag_refuses_nan_inf_and_the_values_it_cannot_mean(monkeypatch,
                                                                          capsys, tmp_path):
    monkeypatch.delenv(BUDGET_ENV, raising=False)
    monkeypatch.chdir(tmp_path)  # a command run to its refusal writes nothing, and here
    wrong = []
    for path, parser, action in _numeric_flags():
        flag, command = action.option_strings[0], " ".join(path)
        allowed = ALLOWED.get(f"{command} {flag}", ALLOWED.get(flag, set()))
        for value in WALK_VALUES:
            refused, message = _refused(path, parser, [f"{flag}={value}"],
                                        RUN_TO_REFUSE.get(f"{command} {flag}"), capsys)
            if refused != (value not in allowed):
                wrong.append(f"{command} {flag} {value}: {'refused' if refused else 'taken'}")
            elif refused:  # one line naming the flag (or the config field) and a fix
                field = f"'{action.dest}'"
                assert message.count("\n") == 0 and "Fix: " in message, message
                assert flag in message or field in message, message
    capsys.readouterr()
    assert not wrong, wrong


def _refused(path: tuple[str, ...], parser: argparse.ArgumentParser, argv: list[str],
             run: list[str] | None, capsys: pytest.CaptureFixture[str]) -> tuple[bool, str]:
    """(refused?, the one-line message) for ``argv`` given to the command at ``path``:
    parsed by the real parser, then checked by the command's validator; nothing runs, but
    with ``run`` (extra arguments) a value the parser takes goes to the real command."""
    import contextlib
    import io

    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            args = parser.parse_args([*_required(parser), *argv])
    except SystemExit as stop:
        assert stop.code == 2
        return True, err.getvalue().rstrip("\n")
    if run is not None:
        capsys.readouterr()
        code = main([*path, *_required(parser), *argv, *run])
        return code == 2, capsys.readouterr().err.rstrip("\n").removeprefix("error: ")
    validator = VALIDATORS.get(path[0])
    if validator is None:
        return False, ""
    try:
        validator(args)
    except ValueError as bad:
        return True, error_message(bad, args)
    return False, ""


# ---- the shared rules, each written once -------------------------------------------------

def test_train_and_toy_refuse_a_bad_setting_with_the_same_rule():
    data = torch.rand(10, 2)
    for dr in (math.nan, 0.0, -1e-3, math.inf, 1e30, DR_MAX * (1 + 1e-9)):
        with pytest.raises(SettingError) as by_config:
            TrainConfig(dr=dr).validate()
        with pytest.raises(SettingError) as by_toy:
            from om2p_lite.book.toytrain import fit_toy

            fit_toy("mse", data, dr=dr)  # refused for every method, as train does
        assert by_config.value.field == by_toy.value.field == "dr"
        if math.isfinite(dr):  # (NaN and inf meet TrainConfig's every-float rule first)
            assert by_config.value.problem == by_toy.value.problem
    assert check_dr(DR_MAX) == 1.0 and check_dr(1e-50, torch.float64) == 1e-50
    with pytest.raises(SettingError, match="0 in torch.float32"):
        check_dr(1e-50)


def test_fit_toy_refuses_steps_it_cannot_train_before_training():
    from om2p_lite.book.toytrain import fit_toy

    for steps in (0, -1):
        with pytest.raises(SettingError, match=r"^steps: must be an integer >= 1"):
            fit_toy("meanflow", torch.rand(10, 2), steps=steps)
    with pytest.raises(SettingError, match=r"^lr: "):
        fit_toy("flow", torch.rand(10, 2), lr=math.nan)


@pytest.mark.parametrize("bad", [[0, 0, 1e308, 1e308], [0, 0, XI_MAX * 2, 0],
                                 [XI_MAX * 2, 0, 0, 0], [0, 0, -math.inf, 0]])
def test_xi_whose_density_overflows_is_refused(bad):
    with pytest.raises(SettingError, match="xi: ξ") as err:
        make_time_sampler(bad)
    assert err.value.field == "xi"
    with pytest.raises(SettingError):
        Xi(*bad)  # built directly, too


@pytest.mark.parametrize("xi_", [(XI_MAX, XI_MAX, 0, 0), (0, 0, XI_MAX, -XI_MAX),
                                 (-0.999, XI_MAX, -XI_MAX, XI_MAX), (0, 0, XI_MAX, XI_MAX)])
def test_xi_at_the_bound_is_a_finite_normalised_density(xi_):
    law = Xi(*xi_)
    tau = torch.linspace(0, 1, 100_001, dtype=torch.float64)[1:-1]
    assert bool(torch.isfinite(law.pdf(tau)).all())
    draws = law.sample(2000, torch.Generator().manual_seed(0)).squeeze(1).double().sort().values
    assert bool(((draws >= 0) & (draws <= 1)).all())
    # the draws follow the normalised CDF (Kolmogorov-Smirnov distance; 1% level ~0.036)
    empirical = (torch.arange(2000, dtype=torch.float64) + 0.5) / 2000
    assert float((law.cdf(draws) - empirical).abs().max()) < 0.05


def test_budget_from_the_environment_is_checked_like_the_flag(monkeypatch):
    monkeypatch.setenv(BUDGET_ENV, "nope")
    with pytest.raises(SettingError) as from_env:
        get_budget()
    with pytest.raises(SettingError) as from_flag:
        get_budget("nope")
    assert (from_env.value.field, from_flag.value.field) == (BUDGET_ENV, "budget")
    assert from_env.value.problem == from_flag.value.problem == "unknown budget 'nope'"
    # train checks $OM2P_BUDGET but takes its preset from --budget only (the recorded
    # command must reproduce a run): a valid value leaves TrainConfig's defaults
    monkeypatch.setenv(BUDGET_ENV, "smoke")
    args = build_parser().parse_args(["train"])
    assert config_from_args(args).steps == TrainConfig().steps


def test_a_tensor_dr_is_never_read_per_step_but_a_float_one_is_checked():
    meta = torch.full((1, 3, 1), 1e-3, device="meta")  # reading a meta tensor raises
    check_estimator("fd", meta)
    net = VelocityNet(0, 2, hidden=8, depth=1)
    o, x, v = torch.zeros(4, 0), torch.randn(4, 2), torch.randn(4, 2)
    r, t = torch.zeros(4, 1), torch.ones(4, 1)
    for dr in (math.nan, 2.0):
        with pytest.raises(SettingError, match="Δr must be > 0"):
            du_dr(net, o, x, r, t, v, "fd", dr)


def test_om2p_agent_checks_each_members_dr_once_at_construction():
    from om2p_lite.rl.agents import AgentDims, make_agent

    cfg = dataclasses.replace(TrainConfig(hidden=8, depth=1, critic_hidden=8, critic_depth=1),
                              dr=math.nan)  # not validated: the agent still refuses it
    with pytest.raises(SettingError, match="Δr"):
        make_agent("om2p", AgentDims(3, 6, 2, (2, 2, 2)), cfg)


def test_setting_errors_survive_pickling():
    err = SettingError("dr", "a problem", "a fix").relabel("--dr")
    back = pickle.loads(pickle.dumps(err))
    assert str(back) == str(err) == "--dr: a problem. Fix: a fix" and back.field == "dr"
