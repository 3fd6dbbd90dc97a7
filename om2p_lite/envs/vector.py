"""Many environments stepped together, optionally split across worker processes.

Not asynchronous: every call steps all environments once and waits for all of them.
"""

from __future__ import annotations

import multiprocessing as mp
from typing import Any

import numpy as np

from om2p_lite.envs.base import EnvSpec
from om2p_lite.envs.mpe import DEFAULT_ACTION_LAYOUT
from om2p_lite.envs.registry import make_env

StepBatch = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def env_seed(seed: int, index: int) -> int:
    """The reset seed of environment ``index`` in a vector seeded with ``seed``."""
    return seed * 100_003 + index


class _Group:
    """A list of environments stepped in order, resetting each one when its episode ends."""

    def __init__(self, task: str, reward_variant: str, seeds: list[int],
                 action_layout: str = DEFAULT_ACTION_LAYOUT) -> None:
        self.envs = [make_env(task, reward_variant, action_layout=action_layout)
                     for _ in seeds]
        self.seeds = seeds

    def reset(self) -> np.ndarray:
        """Seeded first reset of every environment."""
        return np.stack([e.reset(seed=s) for e, s in zip(self.envs, self.seeds, strict=True)])

    def step(self, actions: np.ndarray) -> StepBatch:
        """Step each environment; auto-reset the finished ones (their seeds continue)."""
        outs = [e.step(a) for e, a in zip(self.envs, actions, strict=True)]
        next_obs = np.stack([o[0] for o in outs])
        rewards = np.stack([o[1] for o in outs])
        terminals = np.array([o[2] for o in outs], dtype=bool)
        timeouts = np.array([o[3] and not o[2] for o in outs], dtype=bool)
        obs = next_obs.copy()
        for k in np.flatnonzero(terminals | timeouts):
            obs[k] = self.envs[k].reset()
        return next_obs, rewards, terminals, timeouts, obs

    def shaping(self) -> np.ndarray:
        """Each environment's ``last_shaping`` (zeros where a task has none), (E, A)."""
        return np.stack([getattr(e, "last_shaping", np.zeros(e.spec.n_agents, np.float32))
                         for e in self.envs])

    def close(self) -> None:
        """Close every environment."""
        for e in self.envs:
            e.close()


def _worker(conn: Any, task: str, reward_variant: str, seeds: list[int],
            action_layout: str) -> None:
    """Serve reset/step/close commands for one group of environments in a child process."""
    group = _Group(task, reward_variant, seeds, action_layout)
    while True:
        cmd, payload = conn.recv()
        if cmd == "reset":
            conn.send(group.reset())
        elif cmd == "step":
            conn.send(group.step(payload))
        else:
            group.close()
            conn.close()
            return


class VecEnv:
    """``n_envs`` copies of one task; ``n_workers > 1`` spreads them over processes.

    Environment k is reset with ``env_seed(seed, k)``, or with ``seeds[k]`` when given (a
    population's evaluation: each member's block of environments seeded as its own run's).
    ``action_layout``: MPE's action layout (``envs.ACTION_LAYOUTS``), the same in every copy.
    """

    def __init__(self, task: str, n_envs: int, seed: int = 0, reward_variant: str = "mpe2",
                 n_workers: int = 1, seeds: list[int] | None = None,
                 action_layout: str = DEFAULT_ACTION_LAYOUT) -> None:
        if n_envs < 1 or n_workers < 1:
            raise ValueError(f"n_envs and n_workers must be >= 1, got {n_envs}, {n_workers}")
        if seeds is not None and len(seeds) != n_envs:
            raise ValueError(f"seeds: need one per environment ({n_envs}), got {len(seeds)}")
        probe = make_env(task, reward_variant, action_layout=action_layout)
        self.spec: EnvSpec = probe.spec
        probe.close()
        self.n_envs = n_envs
        seeds = list(seeds) if seeds is not None else [env_seed(seed, k) for k in range(n_envs)]
        n_workers = min(n_workers, n_envs)
        self._chunks = [list(c) for c in np.array_split(np.arange(n_envs), n_workers)]
        if n_workers == 1:
            self._local: _Group | None = _Group(task, reward_variant, seeds, action_layout)
            self._conns: list[Any] = []
            self._procs: list[Any] = []
        else:
            self._local = None
            ctx = mp.get_context("spawn")
            self._conns, self._procs = [], []
            for chunk in self._chunks:
                parent, child = ctx.Pipe()
                proc = ctx.Process(target=_worker, daemon=True,
                                   args=(child, task, reward_variant, [seeds[k] for k in chunk],
                                         action_layout))
                proc.start()
                child.close()
                self._conns.append(parent)
                self._procs.append(proc)

    def reset(self) -> np.ndarray:
        """Seeded reset of all environments; return obs (n_envs, n_agents, obs_dim)."""
        if self._local is not None:
            return self._local.reset()
        for c in self._conns:
            c.send(("reset", None))
        return np.concatenate([c.recv() for c in self._conns])

    def step(self, actions: np.ndarray) -> StepBatch:
        """Step all; return next_obs, rewards (E, A), terminals (E,), timeouts (E,), obs.

        ``obs`` equals ``next_obs`` except where an episode ended: there it is the new reset.
        """
        if self._local is not None:
            return self._local.step(actions)
        for c, chunk in zip(self._conns, self._chunks, strict=True):
            c.send(("step", actions[chunk]))
        parts = [c.recv() for c in self._conns]
        return tuple(np.concatenate([p[i] for p in parts]) for i in range(5))  # type: ignore

    def shaping(self) -> np.ndarray:
        """The last step's training-only shaping per environment and agent, (E, A); local
        environments only (``n_workers = 1``)."""
        if self._local is None:
            raise ValueError("VecEnv.shaping: only for n_workers = 1. Fix: step the "
                             "environments in this process")
        return self._local.shaping()

    def close(self) -> None:
        """Shut down workers (if any) and environments."""
        if self._local is not None:
            self._local.close()
        for c in self._conns:
            c.send(("close", None))
        for p in self._procs:
            p.join(timeout=10)
        self._conns, self._procs = [], []

    def __enter__(self) -> VecEnv:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
