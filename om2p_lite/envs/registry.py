"""The task registry: task names, their parsing and checks, and building one environment.

Not the environments (``mpe``, ``mamujoco``) nor their batching (``vector``). Task names:
the four standard tasks of ``TASKS``, plus ``spreadN`` for Spread with N agents and N
landmarks (``spread4`` is the size the public OM2P code uses; plain ``spread`` has 3).
"""

from __future__ import annotations

import re

from om2p_lite.envs.base import EnvSpec, MultiAgentEnv
from om2p_lite.envs.mamujoco import HalfCheetahEnv
from om2p_lite.envs.mpe import (
    DEFAULT_ACTION_LAYOUT,
    MPEEnv,
    check_action_layout,
    layout_of_width,
)

TASKS = ("spread", "tag", "world", "halfcheetah")
MPE_TASKS = ("spread", "tag", "world")
SPREAD_AGENTS = 3  # agents (and landmarks) of the standard Spread task
SPREAD_RANGE = (2, 6)  # N allowed in ``spreadN`` (the scripted expert matches all N! pairs)
_SPREAD_N = re.compile(r"spread(\d+)")


def _task_help() -> str:
    lo, hi = SPREAD_RANGE
    return (f"Fix: choose one of {TASKS}, or spreadN for Spread with N = {lo}..{hi} agents "
            f"(e.g. spread4, the size of the public OM2P code)")


def parse_task(task: str) -> tuple[str, int | None]:
    """Split a task name into (scenario, agent count): 'spread4' → ('spread', 4).

    The standard tasks give (task, None): their agent count is fixed. Raises a
    ``ValueError`` that names the valid names for anything else.
    """
    if not isinstance(task, str):
        raise ValueError(f"task must be a name (text), got {task!r}. {_task_help()}")
    if task in TASKS:
        return task, None
    m = _SPREAD_N.fullmatch(task)
    if m:
        n = int(m.group(1))
        if n == SPREAD_AGENTS:
            raise ValueError(f"task {task!r}: Spread with {n} agents is the standard task. "
                             f"Fix: use 'spread'")
        lo, hi = SPREAD_RANGE
        if lo <= n <= hi:
            return "spread", n
        raise ValueError(f"task {task!r}: Spread supports {lo}..{hi} agents, got {n}. "
                         f"{_task_help()}")
    raise ValueError(f"unknown task {task!r}. {_task_help()}")


def task_name(scenario: str, n_agents: int | None = None) -> str:
    """The task name of ``scenario`` with ``n_agents`` agents (Spread only): ('spread', 4) →
    'spread4'; the standard count (or None) gives the plain name."""
    base, fixed = parse_task(scenario)
    if fixed is not None:
        raise ValueError(f"task_name takes a scenario such as 'spread', got {scenario!r}. "
                         f"Fix: pass the scenario and the agent count apart")
    if n_agents is None or (base == "spread" and n_agents == SPREAD_AGENTS):
        return base
    if base != "spread":
        raise ValueError(f"n_agents: only Spread takes an agent count, got n_agents="
                         f"{n_agents} for {base!r}. Fix: leave n_agents unset for {base}")
    name = f"spread{n_agents}"
    parse_task(name)  # range check, with the same message
    return name


def check_task(task: str) -> str:
    """Return ``task`` if it names a task (see ``parse_task``), else raise ``ValueError``."""
    parse_task(task)
    return task


def make_env(task: str, reward_variant: str = "mpe2", n_agents: int | None = None,
             action_layout: str = DEFAULT_ACTION_LAYOUT) -> MultiAgentEnv:
    """Build one environment of ``task`` (actions in [-1, 1], per-agent rewards).

    ``n_agents`` sets Spread's agent count (the same as the task name ``spreadN``).
    ``action_layout`` picks MPE's action (``ACTION_LAYOUTS``: force-xy, the paper's 2-d
    force, or mpe2's 5-d); HalfCheetah checks it and ignores it (its spec says native).
    """
    check_action_layout(action_layout)
    base, n = parse_task(task)
    if n_agents is not None:
        wanted = parse_task(task_name(base, n_agents))[1]  # None: the standard count
        if task != base and n != wanted:
            raise ValueError(f"task {task!r} has {n} agents but n_agents={n_agents} was asked. "
                             f"Fix: give the agent count once, by name (spreadN) or n_agents")
        n = wanted
    if base in MPE_TASKS:
        return MPEEnv(base, reward_variant, n_agents=n, action_layout=action_layout)
    return HalfCheetahEnv()


def get_spec(task: str, reward_variant: str = "mpe2",
             action_layout: str = DEFAULT_ACTION_LAYOUT) -> EnvSpec:
    """The task's spec (builds and closes one environment)."""
    env = make_env(task, reward_variant, action_layout=action_layout)
    env.close()
    return env.spec


def dataset_layout(meta: dict) -> str:
    """The action layout a data set's metadata says it holds: MPE files by their action
    width (2: force-xy, 5: mpe2; files older than the layouts are 5 wide), else native."""
    if parse_task(str(meta.get("task")))[0] not in MPE_TASKS:
        return "native"
    widths = set(meta.get("act_dims") or [])
    if len(widths) != 1:
        raise ValueError(f"act_dims: MPE agents share one action width, got "
                         f"{meta.get('act_dims')!r}")
    return layout_of_width(int(widths.pop()))
