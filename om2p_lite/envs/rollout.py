"""Evaluate a batched decentralised policy: roll whole episodes, return team returns.

Not a data collector (``om2p_lite.data.generate`` records transitions); this only scores.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from om2p_lite.envs.base import team_score
from om2p_lite.envs.mpe import DEFAULT_ACTION_LAYOUT
from om2p_lite.envs.vector import VecEnv

ActFn = Callable[[np.ndarray], np.ndarray]  # obs (E, A, obs_dim) -> actions (E, A, act_dim)


def rollout_returns(task: str, act_fn: ActFn, episodes: int = 10, seed: int = 0,
                    reward_variant: str = "mpe2", n_workers: int = 1,
                    action_layout: str = DEFAULT_ACTION_LAYOUT) -> np.ndarray:
    """Team return (the task's score rule) of ``episodes`` parallel episodes, shape (episodes,)."""
    with VecEnv(task, episodes, seed=seed, reward_variant=reward_variant,
                n_workers=n_workers, action_layout=action_layout) as env:
        obs, ret = env.reset(), np.zeros(episodes)
        done = np.zeros(episodes, bool)
        for _ in range(env.spec.episode_length):
            _, r, term, tout, obs = env.step(act_fn(obs))
            ret += np.where(done, 0.0, team_score(r, env.spec.score))
            done |= term | tout
    return ret
