"""Named compute budgets (`smoke`, `book`, `full`) that every chapter and command reads.

Not a config system: one row per name (``PRESETS``: the chapters' knobs and the training
preset), chosen by ``OM2P_BUDGET`` or an argument.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Any

from om2p_lite.runtime.checks import SettingError

BUDGET_ENV = "OM2P_BUDGET"


@dataclass(frozen=True)
class Budget:
    """How much compute a chapter or command may spend; one field per knob."""

    name: str
    toy_steps: int  # gradient steps for the 2-D toy policies
    toy_batch: int  # batch size for the 2-D toy policies
    toy_hidden: int  # hidden width of toy networks
    toy_depth: int  # hidden layers of toy networks
    toy_lr: float  # Adam learning rate for the toy policies
    n_samples: int  # samples drawn to evaluate a generative policy
    n_seeds: int  # independent seeds for curves with bands
    eval_every: int  # steps between evaluations inside a training curve
    sweep_points: int  # values per hyper-parameter sweep

    def toy_kwargs(self) -> dict[str, float]:
        """Keyword arguments of ``fit_toy`` that this budget sets."""
        return {"steps": self.toy_steps, "batch": self.toy_batch, "hidden": self.toy_hidden,
                "depth": self.toy_depth, "lr": self.toy_lr}


# The one table of budgets: per name, the chapters' knobs (a ``Budget``) and the
# ``TrainConfig`` preset that `train --budget NAME` and ``rl.config.budget_config`` start
# from. The paper's scale is "full" (public code: 4x512 MLPs, batch 256; our step count is
# smaller than its 1M).
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "smoke": {
        "budget": dict(toy_steps=600, toy_batch=256, toy_hidden=64, toy_depth=2, toy_lr=2e-3,
                       n_samples=1000, n_seeds=2, eval_every=150, sweep_points=3),
        "train": dict(steps=300, batch_size=128, lr=1e-3, hidden=64, depth=2,
                      critic_hidden=64, critic_depth=2, eval_every=0, eval_episodes=10,
                      data_budget="smoke", cql_samples=5),
    },
    "book": {
        "budget": dict(toy_steps=3000, toy_batch=512, toy_hidden=128, toy_depth=3,
                       toy_lr=1e-3, n_samples=4000, n_seeds=3, eval_every=250,
                       sweep_points=6),
        "train": dict(steps=5_000, batch_size=256, hidden=256, depth=3, critic_hidden=256,
                      critic_depth=3, eval_every=1_000, eval_episodes=20, data_budget="book"),
    },
    "full": {
        "budget": dict(toy_steps=20000, toy_batch=1024, toy_hidden=256, toy_depth=4,
                       toy_lr=5e-4, n_samples=20000, n_seeds=5, eval_every=1000,
                       sweep_points=12),
        "train": dict(steps=100_000, batch_size=256, hidden=512, depth=4, critic_hidden=512,
                      critic_depth=4, eval_every=10_000, eval_episodes=50,
                      data_budget="full"),
    },
}
BUDGETS: dict[str, Budget] = {name: Budget(name, **row["budget"])
                              for name, row in PRESETS.items()}


def train_preset(name: str | None = None) -> dict[str, Any]:
    """A copy of the ``TrainConfig`` fields that budget ``name`` (checked as by
    ``get_budget``; default ``$OM2P_BUDGET``, else book) sets."""
    return dict(PRESETS[get_budget(name).name]["train"])


def get_budget(name: str | None = None, **overrides: float) -> Budget:
    """Return the preset ``name`` (default: ``$OM2P_BUDGET``, else ``book``), with overrides.

    A name from the environment is checked exactly like one passed in (a ``--budget``
    flag): an unknown one is a ``SettingError`` that names where it came from.
    """
    field = "budget" if name is not None else BUDGET_ENV
    name = name if name is not None else os.environ.get(BUDGET_ENV, "book")
    key = name.strip().lower()
    if key not in BUDGETS:
        how = (f"set {BUDGET_ENV} to one of {', '.join(sorted(BUDGETS))}, or unset it (then: "
               f"book)" if field == BUDGET_ENV else f"use one of {', '.join(sorted(BUDGETS))}")
        raise SettingError(field, f"unknown budget {name!r}", how)
    budget = BUDGETS[key]
    unknown = set(overrides) - set(budget.__dataclass_fields__)
    if unknown:
        raise ValueError(f"unknown budget field(s) {sorted(unknown)}; fields: "
                         f"{sorted(budget.__dataclass_fields__)}")
    return replace(budget, **overrides) if overrides else budget


# What a chapter's sweep reruns at the smoke budget (``book.sweeps.load_sweep``): every
# variant, the first SMOKE_SEEDS seeds, tiny runs (these TrainConfig fields).
SMOKE_SEEDS = 2
SMOKE_OVERRIDES: dict[str, Any] = dict(
    data_budget="smoke", steps=20, batch_size=32, hidden=16, depth=1, critic_hidden=16,
    critic_depth=1, eval_every=10, eval_episodes=2, log_every=5, progress=False, threads=1)
