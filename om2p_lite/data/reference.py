"""Reference returns (random / medium / expert) per task and the normalised score built on them.

Not an evaluator of learned policies: the numbers are our own datasets' mean episode returns.
The references depend on the data, so on MPE's action layout too (random actions in a 2-d
force box are not random actions in mpe2's 5-d one): each row names its ``action_layout``;
a table written before the column existed holds mpe2 rows (HalfCheetah: native). So do
the behaviour policies: each row names its ``behaviour`` (MPE scripted or trained;
HalfCheetah trained), a table older than that column holds scripted MPE rows.

Standing still is not skill: ``zero_action_normalised`` scores the policy that always acts
0 (no force, no torque) under the references, and ``ZERO_ACTION_BOUND`` is the rule.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from om2p_lite.data.behaviour import LEGACY_BEHAVIOUR, resolve_behaviour, task_behaviour
from om2p_lite.data.generate import REPO_DATA, get_dataset
from om2p_lite.envs import (
    DEFAULT_ACTION_LAYOUT,
    LEGACY_ACTION_LAYOUT,
    MPE_TASKS,
    check_action_layout,
)

REFERENCE_CSV = REPO_DATA / "reference_returns.csv"
COLUMNS = ("task", "reward_variant", "quality", "budget", "seed", "episodes", "return_mean",
           "return_std", "checksum", "action_layout", "behaviour")
REFERENCE_RUNS = (("spread", "mpe2"), ("spread", "omar"), ("tag", "mpe2"), ("world", "mpe2"),
                  ("halfcheetah", "mamujoco"))


def row_layout(task: str, action_layout: str) -> str:
    """The layout a reference row of ``task`` names: the MPE layout, else native."""
    return check_action_layout(action_layout) if task in MPE_TASKS else "native"


def reference_rows(budget: str = "book", seed: int = 0, tasks: tuple[str, ...] | None = None,
                   qualities: tuple[str, ...] = ("random", "medium", "expert"),
                   progress: bool = False, n_workers: int = 1,
                   action_layout: str = DEFAULT_ACTION_LAYOUT,
                   behaviour: str | None = None,
                   spread_rewards: tuple[str, ...] = ("mpe2", "omar")) -> list[dict]:
    """One row per (task, variant, quality): mean and std of the dataset's episode returns,
    the MPE data sets in ``action_layout`` made by ``behaviour`` (None: their default);
    Spread's rows for the rewards in ``spread_rewards`` (each trained Spread policy learnt
    one reward)."""
    rows = []
    for task, variant in REFERENCE_RUNS:
        if tasks is not None and task not in tasks:
            continue
        if task == "spread" and variant not in spread_rewards:
            continue
        for quality in qualities:
            ds = get_dataset(task, quality, seed, budget,
                             reward_variant="omar" if variant == "omar" else "mpe2",
                             progress=progress, n_workers=n_workers,
                             action_layout=action_layout, behaviour=behaviour)
            rets = ds.episode_returns()
            rows.append({"task": task, "reward_variant": variant, "quality": quality,
                         "budget": budget, "seed": seed, "episodes": len(rets),
                         "return_mean": round(float(rets.mean()), 4),
                         "return_std": round(float(rets.std()), 4),
                         "checksum": ds.metadata["checksum"],
                         "action_layout": row_layout(task, action_layout),
                         "behaviour": resolve_behaviour(task, behaviour, action_layout)})
    return rows


def _behaviour(r: dict) -> str:
    """A row's behaviour; a row without one is of scripted MPE data (HalfCheetah: trained)."""
    return r.get("behaviour") or task_behaviour(r["task"], LEGACY_BEHAVIOUR)


def _key(r: dict) -> tuple[str, str, str, str]:
    return r["task"], r["reward_variant"], r["action_layout"], _behaviour(r)


def merge_rows(old: list[dict], new: list[dict]) -> list[dict]:
    """Replace the old rows of every (task, variant, layout, behaviour) that ``new`` covers;
    keep the rest (the other layout's and behaviour's rows among them)."""
    covered = {_key(r) for r in new}
    kept = [r for r in old if _key(r) not in covered]
    order = {key: i for i, key in enumerate(REFERENCE_RUNS)}
    # the default layout's rows (HalfCheetah's, which has one, with them), then mpe2's
    layouts = {DEFAULT_ACTION_LAYOUT: 0, "native": 0, LEGACY_ACTION_LAYOUT: 1}
    quality = {"random": 0, "medium-replay": 1, "medium": 2, "expert": 3}
    rows = [r | {"behaviour": _behaviour(r)} for r in kept + new]
    # scripted rows first (the stored results'), trained MPE rows after them
    return sorted(rows, key=lambda r: (r["behaviour"] == "trained" and r["task"] in MPE_TASKS,
                                       layouts.get(r["action_layout"], 9),
                                       order.get((r["task"], r["reward_variant"]), 99),
                                       quality.get(r["quality"], 9)))


def write_reference(rows: list[dict], path: Path = REFERENCE_CSV) -> Path:
    """Write the table as CSV (this file is meant to be committed, so it is replaced)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return path


def read_reference(path: Path = REFERENCE_CSV) -> list[dict]:
    """Read the table; numbers come back as floats."""
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:
        for k in ("return_mean", "return_std"):
            r[k] = float(r[k])
        r["episodes"] = int(r["episodes"])
        if not r.get("action_layout"):  # a table older than the column: mpe2's data
            r["action_layout"] = row_layout(r["task"], LEGACY_ACTION_LAYOUT)
        r["behaviour"] = _behaviour(r)  # older than the column: scripted MPE data
    return rows


def normalized_score(task: str, returns: float | np.ndarray, reward_variant: str = "mpe2",
                     path: Path = REFERENCE_CSV, action_layout: str = DEFAULT_ACTION_LAYOUT,
                     behaviour: str | None = None) -> float | np.ndarray:
    """100 (R - R_random) / (R_expert - R_random) with our own random and expert references
    of the data sets in ``action_layout`` (MPE; HalfCheetah has one) made by ``behaviour``
    (MPE: scripted, the stored results', or trained; None: the data set's default,
    ``behaviour.default_behaviour_of``; HalfCheetah: its trained policy)."""
    variant = "mamujoco" if task == "halfcheetah" else reward_variant
    layout = row_layout(task, action_layout)
    source = resolve_behaviour(task, behaviour, action_layout)
    ref = {r["quality"]: r["return_mean"] for r in read_reference(path)
           if r["task"] == task and r["reward_variant"] == variant
           and r["action_layout"] == layout and r["behaviour"] == source}
    if "random" not in ref or "expert" not in ref:
        flag = ("" if layout != "mpe2" else " --action-layout mpe2") + \
            (f" --behaviour {source}" if task in MPE_TASKS else "")
        raise KeyError(f"no random/expert reference for {task} ({variant}, {layout} actions) "
                       f"of {source} data in {path}; run `python -m om2p_lite data "
                       f"reference{flag}`")
    return 100.0 * (np.asarray(returns) - ref["random"]) / (ref["expert"] - ref["random"])


# The rule that keeps standing still from passing for skill: under a task's references a
# policy that always acts 0 must score at most this many normalised points; a task whose
# references break it (HalfCheetah with its weak 356 expert: about 44) has its zero-action
# score reported beside every table of normalised scores until stronger references fix it.
# 10 points: a zero policy may sit a little above random (random actions can hurt, e.g.
# HalfCheetah's control cost), not a tenth of the way to the expert. For HalfCheetah
# (random -285, zero about 0) it asks for an expert of about 2,600 or more, near OMAR's.
ZERO_ACTION_BOUND = 10.0


def zero_action_returns(task: str, reward_variant: str = "mpe2",
                        action_layout: str = DEFAULT_ACTION_LAYOUT, episodes: int = 20,
                        seed: int = 0) -> np.ndarray:
    """Team returns of the policy that always acts 0: no force in either MPE layout (mpe2's
    0 in [-1, 1] is 0.5 on all five channels, a zero net force), zero torque in HalfCheetah.
    The agents stand still (MPE agents keep their start positions); the prey still flee."""
    from om2p_lite.envs import get_spec, rollout_returns

    width = get_spec(task, reward_variant, action_layout).act_dim
    return rollout_returns(task, lambda obs: np.zeros((*obs.shape[:2], width), np.float32),
                           episodes, seed, reward_variant, action_layout=action_layout)


def zero_action_normalised(task: str, reward_variant: str = "mpe2",
                           action_layout: str = DEFAULT_ACTION_LAYOUT,
                           behaviour: str | None = None, path: Path = REFERENCE_CSV,
                           episodes: int = 20, seed: int = 0) -> dict[str, float | bool]:
    """What standing still scores on ``task`` under its references: the mean zero-action
    return, its normalised score, and ``skill_like``, True when that score exceeds
    ``ZERO_ACTION_BOUND`` (then report it beside every normalised table of the task)."""
    ret = float(zero_action_returns(task, reward_variant, action_layout, episodes,
                                    seed).mean())
    score = float(normalized_score(task, ret, reward_variant, path, action_layout, behaviour))
    return {"return": ret, "normalised": score, "skill_like": score > ZERO_ACTION_BOUND}
