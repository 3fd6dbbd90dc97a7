"""Multi-agent tasks for om2p-lite: MPE Spread/Tag/World and MaMuJoCo HalfCheetah 2x3.

Not the simulators themselves (`mpe2`, `gymnasium_robotics`); those are imported on first use.

The task names and ``make_env`` live in ``registry`` and are re-exported here, with the
vector of environments (``vector``) and the scorer of a policy (``rollout``).
"""

from __future__ import annotations

from om2p_lite.envs.base import EnvSpec, MultiAgentEnv, team_score
from om2p_lite.envs.mpe import (
    ACTION_LAYOUTS,
    DEFAULT_ACTION_LAYOUT,
    LEGACY_ACTION_LAYOUT,
    check_action_layout,
    layout_of_width,
)
from om2p_lite.envs.registry import (
    MPE_TASKS,
    SPREAD_AGENTS,
    SPREAD_RANGE,
    TASKS,
    check_task,
    dataset_layout,
    get_spec,
    make_env,
    parse_task,
    task_name,
)
from om2p_lite.envs.rollout import rollout_returns
from om2p_lite.envs.vector import VecEnv

__all__ = ["TASKS", "MPE_TASKS", "EnvSpec", "MultiAgentEnv", "VecEnv", "make_env", "get_spec",
           "team_score", "rollout_returns", "parse_task", "task_name", "check_task",
           "SPREAD_AGENTS", "SPREAD_RANGE", "ACTION_LAYOUTS", "DEFAULT_ACTION_LAYOUT",
           "LEGACY_ACTION_LAYOUT", "check_action_layout", "dataset_layout", "layout_of_width"]
