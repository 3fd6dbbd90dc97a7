"""The one error for a bad setting (``SettingError``: field, problem, fix) and the number rule
(``check_range``) that every entry point shares: the CLI, ``TrainConfig`` and ``fit_toy``.

Not the rules of one idea: Δr lives in ``flows.meanflow``, ξ in ``flows.timesteps``, budgets
in ``runtime.budget``; they raise this error too, so every caller names the field alike.
"""

from __future__ import annotations

import math
import numbers
from typing import Any


class SettingError(ValueError):
    """A setting failed its rule; ``field``, ``problem`` and ``fix`` say why.

    ``label`` is how the message names the field ('--dr', "config field 'dr'", or the field
    itself): the rule is written once, each entry point names the field its own way.
    """

    def __init__(self, field: str, problem: str, fix: str, label: str | None = None) -> None:
        self.field, self.problem, self.fix = field, problem, fix
        self.label = label or field
        super().__init__(f"{self.label}: {problem}. Fix: {fix}")

    def relabel(self, label: str) -> SettingError:
        """The same problem and fix under another name for the field."""
        return SettingError(self.field, self.problem, self.fix, label)

    def __reduce__(self) -> tuple[Any, ...]:  # picklable (Dask sends errors between processes)
        return SettingError, (self.field, self.problem, self.fix, self.label)


def check_range(field: str, value: Any, low: float | None = None, high: float | None = None,
                *, low_open: bool = False, high_open: bool = False, integer: bool = False,
                fix: str = "") -> Any:
    """``value`` if it is a finite number (an integer if ``integer``; bools are neither) in
    the interval from ``low`` to ``high`` (``None``: unbounded), else a ``SettingError``."""
    if integer:
        ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    else:
        ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and \
            math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if ok:
        return value
    kind = "an integer" if integer else "a finite number"
    if low is not None and high is not None:
        where = f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    elif low is not None:
        where = f"{'>' if low_open else '>='} {low:g}"
    elif high is not None:
        where = f"{'<' if high_open else '<='} {high:g}"
    else:
        where = ""
    raise SettingError(field, f"must be {kind} {where}".rstrip() + f", got {value!r}",
                       fix or f"use {kind} {where}".rstrip())
