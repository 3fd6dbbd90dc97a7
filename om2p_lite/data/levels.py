"""What each behaviour-training run reached, beside the published data sets' expert levels.

Reads the learning curves kept beside the policy files (``data/behaviour/*_curve.csv``, one
row per evaluation: step, return, wall seconds), so that a chapter can say, from the
measurement, which level each task reached on this CPU, what the run cost, and what a run
to OMAR's one million transitions would cost at the same pace.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

from om2p_lite.data.behaviour import BEHAVIOUR_DIR
from om2p_lite.data.behaviour_td3 import CURVE_COLUMNS
from om2p_lite.envs import MPE_TASKS

# Expert levels to compare with, by (task, reward variant): OMAR's published expert data
# sets' mean returns (Spread on OMAR's reward; Tag and World on OMAR's scenarios, whose prey
# is a trained policy and not our fixed script, so theirs and ours differ in kind), and for
# HalfCheetah 2x3 the level of a MATD3 expert of that benchmark.
PUBLISHED_EXPERT: dict[tuple[str, str], float] = {
    ("spread", "omar"): 531.0, ("tag", "mpe2"): 207.9, ("world", "mpe2"): 85.2,
    ("halfcheetah", "own"): 3000.0}
# where the published level measures the same task as ours (Tag and World: another prey)
COMPARABLE = {("spread", "omar"), ("halfcheetah", "own")}
FULL_TRANSITIONS = 1_000_000  # OMAR's data-set size, and its behaviour runs' length
_NAME = re.compile(r"^(?P<task>[a-z]+\d*)(?P<omar>-omar)?(?P<layout>-mpe2)?_td3"
                   r"(?:_(?P<tag>[a-z0-9_]+?))?_curve\.csv$")


def read_curve(path: Path) -> list[dict[str, float]]:
    """The rows of one curve file as floats; a clear error if its columns are not the
    driver's (step, return, wall_s)."""
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows or not set(CURVE_COLUMNS) <= set(rows[0]):
        raise ValueError(f"{path}: not a behaviour curve (needs step, return, wall_s rows). "
                         f"Fix: use the curve.csv a train-behaviour run writes")
    return [{k: float(r[k]) for k in CURVE_COLUMNS} for r in rows]


def curve_level(path: Path) -> dict[str, object]:
    """One run's summary: task, reward, whether its policy is shipped, steps, best and last
    return, wall hours, and the wall hours of 1M transitions at the same pace."""
    m = _NAME.match(path.name)
    if m is None:
        raise ValueError(f"{path.name}: not named TASK[-omar][-mpe2]_td3[_NOTE]_curve.csv. "
                         f"Fix: keep the name export gives it")
    rows = read_curve(path)
    reward = "omar" if m["omar"] else "mpe2" if m["task"] in MPE_TASKS else "own"
    steps, wall = rows[-1]["step"], rows[-1]["wall_s"]
    best = max(rows, key=lambda r: r["return"])
    policy = path.with_name(path.name.replace("_curve.csv", ".pt"))
    return {"curve": path.name, "task": m["task"], "reward": reward,
            "run": m["tag"] or "shipped", "shipped": m["tag"] is None and policy.exists(),
            "steps": int(steps), "best return": best["return"], "best at": int(best["step"]),
            "last return": rows[-1]["return"],
            "published expert": PUBLISHED_EXPERT.get((m["task"], reward)),
            "comparable": (m["task"], reward) in COMPARABLE,
            "wall h": wall / 3600, "1M wall h": wall / steps * FULL_TRANSITIONS / 3600}


def behaviour_levels(folder: Path = BEHAVIOUR_DIR) -> list[dict[str, object]]:
    """``curve_level`` of every curve in ``folder``, with the best return as a fraction of
    the published expert level where there is one."""
    out = []
    for path in sorted(folder.glob("*_curve.csv")):
        row = curve_level(path)
        ref = row["published expert"]
        row["best / published"] = (row["best return"] / ref) if ref else None
        out.append(row)
    return out
