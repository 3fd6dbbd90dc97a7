"""Roll learned policies out in the real environment: several episodes at once, one vector.

Not training: no gradients, no data. Returns the task's team return (SPEC §6) and, when the
reference table exists, the normalised score 100 (R - R_random) / (R_expert - R_random).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def normalised_or_none(task: str, value: float, reward_variant: str = "mpe2") -> float | None:
    """Normalised score from ``data/reference_returns.csv``, or None if it has no row yet."""
    try:
        from om2p_lite.data.reference import normalized_score

        return float(normalized_score(task, value, reward_variant))
    except (KeyError, FileNotFoundError, ImportError):
        return None


@torch.no_grad()
def evaluate_agent(agent: Any, task: str, n_episodes: int = 10, seed: int = 0,
                   device: torch.device | str = "cpu", reward_variant: str = "mpe2",
                   max_steps: int | None = None) -> dict[str, Any]:
    """Mean and std of ``n_episodes`` episode returns of ``agent.act`` (first episode per env).

    The policy's noise comes from a generator seeded with ``seed`` (as do the environments),
    so an evaluation is repeatable. ``max_steps`` truncates long episodes (smoke tests).
    """
    from om2p_lite.envs import VecEnv, team_score

    gen = torch.Generator().manual_seed(seed)
    with VecEnv(task, n_episodes, seed=seed, reward_variant=reward_variant) as venv:
        spec = venv.spec
        obs = venv.reset()  # (E, A, D)
        returns = np.zeros(n_episodes)
        done = np.zeros(n_episodes, dtype=bool)
        limit = max_steps or spec.episode_length
        for _ in range(limit):
            o = torch.as_tensor(obs, dtype=torch.float32, device=device)
            actions = agent.act(o, gen).cpu().numpy()  # (E, A, d)
            _, rewards, terminals, timeouts, obs = venv.step(actions)
            returns += np.where(done, 0.0, team_score(rewards, spec.score))
            done |= terminals | timeouts
            if done.all():
                break
    mean = float(returns.mean())
    return {"return_mean": mean, "return_std": float(returns.std()), "returns": returns.tolist(),
            "normalised": normalised_or_none(task, mean, reward_variant)}
