"""Multi-agent tasks for om2p-lite: MPE Spread/Tag/World and MaMuJoCo HalfCheetah 2x3.

Not the simulators themselves (`mpe2`, `gymnasium_robotics`); those are imported on first use.
"""

from __future__ import annotations

from om2p_lite.envs.base import EnvSpec, MultiAgentEnv, team_score
from om2p_lite.envs.rollout import rollout_returns
from om2p_lite.envs.vector import VecEnv

TASKS = ("spread", "tag", "world", "halfcheetah")
MPE_TASKS = ("spread", "tag", "world")


def make_env(task: str, reward_variant: str = "mpe2") -> MultiAgentEnv:
    """Build one environment of ``task`` (actions in [-1, 1], per-agent rewards)."""
    if task in MPE_TASKS:
        from om2p_lite.envs.mpe import MPEEnv

        return MPEEnv(task, reward_variant)
    if task == "halfcheetah":
        from om2p_lite.envs.mamujoco import HalfCheetahEnv

        return HalfCheetahEnv()
    raise ValueError(f"unknown task {task!r}; choose one of {TASKS}")


def get_spec(task: str, reward_variant: str = "mpe2") -> EnvSpec:
    """The task's spec (builds and closes one environment)."""
    env = make_env(task, reward_variant)
    env.close()
    return env.spec


__all__ = ["TASKS", "MPE_TASKS", "EnvSpec", "MultiAgentEnv", "VecEnv", "make_env", "get_spec",
           "team_score", "rollout_returns"]
