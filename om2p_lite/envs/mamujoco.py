"""Two-agent HalfCheetah ("2x3": each agent drives one leg's three joints) via MaMuJoCo.

Not a MuJoCo wrapper of our own: `gymnasium_robotics.mamujoco_v1` builds it. We use
``agent_obsk=0`` (each agent sees only its own joints), as OMAR's HalfCheetah runs did.
"""

from __future__ import annotations

import contextlib
import io
import logging

import numpy as np

from om2p_lite.envs.base import EnvSpec, pad_stack

EPISODE_LENGTH = 1000
AGENT_OBSK = 0  # 0: own joints only (OMAR's setting); 1 adds the neighbouring joints

_log = logging.getLogger(__name__)


def _quiet_mujoco() -> None:
    """Send MuJoCo's C warnings to Python logging instead of a MUJOCO_LOG.TXT in the cwd."""
    import mujoco

    mujoco.set_mju_user_warning(lambda msg: _log.debug("mujoco: %s", msg))


class HalfCheetahEnv:
    """MaMuJoCo HalfCheetah 2x3 with stacked per-agent arrays and a shared team reward."""

    def __init__(self, agent_obsk: int = AGENT_OBSK) -> None:
        _quiet_mujoco()
        with contextlib.redirect_stderr(io.StringIO()):  # drop an unrelated Adroit notice
            from gymnasium_robotics import mamujoco_v1

        self.env = mamujoco_v1.parallel_env("HalfCheetah", "2x3", agent_obsk=agent_obsk,
                                            max_episode_steps=EPISODE_LENGTH)
        self.names = list(self.env.possible_agents)
        obs_dims = tuple(int(self.env.observation_space(n).shape[0]) for n in self.names)
        act_dims = tuple(int(self.env.action_space(n).shape[0]) for n in self.names)
        self.spec = EnvSpec(task="halfcheetah", n_agents=len(self.names), obs_dims=obs_dims,
                            act_dims=act_dims, episode_length=EPISODE_LENGTH,
                            reward_variant="mamujoco", score="mean",
                            agent_names=tuple(self.names),
                            notes=f"HalfCheetah-v5 2x3, agent_obsk={agent_obsk}")
        self._low = [self.env.action_space(n).low for n in self.names]
        self._high = [self.env.action_space(n).high for n in self.names]

    def reset(self, seed: int | None = None) -> np.ndarray:
        """Start an episode; return (n_agents, obs_dim)."""
        obs, _ = self.env.reset(seed=seed)
        return pad_stack([obs[n] for n in self.names], self.spec.obs_dim)

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool, bool]:
        """Rescale [-1, 1] actions to each agent's box; return obs, rewards, terminal, timeout."""
        acts = {}
        for i, n in enumerate(self.names):
            a = np.clip(actions[i, : self.spec.act_dims[i]], -1.0, 1.0)
            acts[n] = (self._low[i] + (a + 1.0) * 0.5 * (self._high[i] - self._low[i])
                       ).astype(np.float32)
        obs, rew, term, trunc, _ = self.env.step(acts)
        next_obs = pad_stack([obs[n] for n in self.names], self.spec.obs_dim)
        rewards = np.array([rew[n] for n in self.names], dtype=np.float32)
        return next_obs, rewards, bool(any(term.values())), bool(any(trunc.values()))

    def close(self) -> None:
        """Close the MuJoCo environment."""
        self.env.close()
