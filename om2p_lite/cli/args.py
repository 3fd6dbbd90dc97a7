"""The parser class and argument types every sub-command shares: one-line errors, counts,
finite numbers, true/false and ξ.

Not the rules of a run's settings (``TrainConfig.validate``, ``check_meanflow_settings``):
flags that those rules check are parsed as plain numbers and refused there, by field name.
"""

from __future__ import annotations

import argparse
import math
from typing import NoReturn


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line, 'error: PROG: problem. Fix: ...',
    exit status 2 (sub-parsers made by ``add_subparsers`` inherit the class)."""

    def error(self, message: str) -> NoReturn:
        """Print the one line and exit 2, as ``cli.main`` does for every other bad input."""
        fix = "" if "Fix:" in message else f". Fix: see `{self.prog} --help`"
        self.exit(2, f"error: {self.prog}: {message}{fix}\n")


def boolean(text: str) -> bool:
    """``true``/``false`` (also 1/0, yes/no, on/off)."""
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def _integer(text: str, least: int) -> int:
    """An integer >= ``least``, else an ``ArgumentTypeError`` (argparse's one-line error)."""
    try:
        value = int(text)
    except ValueError:
        value = least - 1
    if value < least:
        raise argparse.ArgumentTypeError(f"expected an integer >= {least}, got {text!r}")
    return value


def count(text: str) -> int:
    """An integer >= 0 (a seed, or a count where 0 means 'none' or 'the default')."""
    return _integer(text, 0)


def positive(text: str) -> int:
    """An integer >= 1 (a number of steps, episodes, workers, threads)."""
    return _integer(text, 1)


def finite(text: str) -> float:
    """Any finite number (NaN and ±inf refused), e.g. the bound of an action box."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def positive_real(text: str) -> float:
    """A finite number > 0 (a step size)."""
    value = finite(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def nonnegative_real(text: str) -> float:
    """A finite number >= 0 (a noise scale, where 0 means none)."""
    value = finite(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def xi(text: str) -> list[float] | str:
    """``--xi``: a name ('uniform', 'beta55', 'logit_normal') or 'a,b,c,d' (checked later by
    ``make_time_sampler``, the rule every entry point shares)."""
    if "," not in text:
        return text
    try:
        return [float(v) for v in text.split(",")]
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"--xi must be a name or 4 numbers 'a,b,c,d', "
                                         f"got {text!r}") from err


# the types of numeric flags; plain int/float flags are checked by a validator (TrainConfig,
# check_meanflow_settings), these by themselves (tests/test_cli_validation.py walks them all)
NUMERIC_TYPES = (int, float, count, positive, finite, positive_real, nonnegative_real)
