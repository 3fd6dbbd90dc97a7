"""The small interface every multi-agent task sits behind: arrays in, arrays out.

Not a simulator: concrete tasks wrap `mpe2` and `gymnasium_robotics.mamujoco_v1`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class EnvSpec:
    """What a learner needs to know about a task, fixed for its lifetime."""

    task: str  # scenario, e.g. "spread" (also for the task spreadN: n_agents says N)
    n_agents: int  # learning agents (a scripted prey is not one of them)
    obs_dims: tuple[int, ...]  # per-agent observation sizes
    act_dims: tuple[int, ...]  # per-agent action sizes; actions live in [-1, 1]
    episode_length: int  # steps before a timeout
    reward_variant: str = "mpe2"  # which reward function made the rewards
    score: str = "mean"  # "mean": mean over agents; "first": agent 0 (OMAR's convention)
    agent_names: tuple[str, ...] = field(default_factory=tuple)
    notes: str = ""  # one line on the task's configuration
    action_layout: str = "native"  # MPE: force-xy (2-d force) | mpe2 (5-d); others: native

    @property
    def obs_dim(self) -> int:
        """Padded observation width: the largest per-agent size."""
        return max(self.obs_dims)

    @property
    def act_dim(self) -> int:
        """Padded action width: the largest per-agent size."""
        return max(self.act_dims)


class MultiAgentEnv(Protocol):
    """One episode-at-a-time environment with stacked per-agent arrays."""

    spec: EnvSpec

    def reset(self, seed: int | None = None) -> np.ndarray:
        """Start an episode; return observations (n_agents, obs_dim), zero padded."""
        ...

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool, bool]:
        """Apply actions (n_agents, act_dim) in [-1, 1]; return obs, rewards, terminal, timeout."""
        ...

    def close(self) -> None:
        """Release simulator resources."""
        ...


def pad_stack(rows: list[np.ndarray], width: int) -> np.ndarray:
    """Stack 1-D per-agent arrays into (n_agents, width) float32, zero padded on the right."""
    out = np.zeros((len(rows), width), dtype=np.float32)
    for i, row in enumerate(rows):
        out[i, : row.shape[0]] = row
    return out


def team_score(rewards: np.ndarray, score: str) -> np.ndarray:
    """Collapse per-agent rewards (..., n_agents) to the task's reported team reward (...)."""
    if score == "mean":
        return rewards.mean(axis=-1)
    if score == "first":
        return rewards[..., 0]
    raise ValueError(f"unknown score rule {score!r}; use 'mean' or 'first'")
