"""Roll learned policies out in the real environment: several episodes at once, one vector.

Not training: no gradients, no data. Returns the task's team return (as OMAR, Pan et al. 2022,
scores it: the agents' mean, or the first predator's on Tag and World) and, when the
reference table exists, the normalised score 100 (R - R_random) / (R_expert - R_random).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def normalised_or_none(task: str, value: float, reward_variant: str = "mpe2",
                       action_layout: str = "force-xy", behaviour: str | None = None
                       ) -> float | None:
    """Normalised score from ``data/reference_returns.csv``, or None if it has no row yet
    (``action_layout``: the MPE layout of the data, mpe2 for the stored results;
    ``behaviour``: the MPE data's behaviour, which picks the references' rows)."""
    try:
        from om2p_lite.data.reference import normalized_score

        return float(normalized_score(task, value, reward_variant,
                                      action_layout=action_layout, behaviour=behaviour))
    except (KeyError, FileNotFoundError, ImportError):
        return None


@torch.no_grad()
def evaluate_agent(agent: Any, task: str, n_episodes: int = 10, seed: int = 0,
                   device: torch.device | str = "cpu", reward_variant: str = "mpe2",
                   max_steps: int | None = None,
                   action_layout: str | None = None) -> dict[str, Any]:
    """Mean and std of ``n_episodes`` episode returns of ``agent.act`` (first episode per env).

    The policy's noise comes from a generator seeded with ``seed`` (as do the environments),
    so an evaluation is repeatable. ``max_steps`` truncates long episodes (smoke tests).
    ``action_layout`` is MPE's (``agent_layout``: by default the one the agent acts in).
    """
    return evaluate_population(agent, task, n_episodes, [seed], device, reward_variant,
                               max_steps, action_layout)[0]


def agent_layout(agent: Any, task: str) -> str:
    """The MPE action layout ``agent`` acts in, read off its action width (2: force-xy, 5:
    mpe2); the default layout for other tasks or an agent that does not say its width."""
    from om2p_lite.envs import DEFAULT_ACTION_LAYOUT, MPE_TASKS, layout_of_width, parse_task

    width = getattr(getattr(agent, "dims", None), "act_dim", None)
    if parse_task(task)[0] not in MPE_TASKS or not isinstance(width, int):
        return DEFAULT_ACTION_LAYOUT
    return layout_of_width(width)


@torch.no_grad()
def evaluate_population(agent: Any, task: str, n_episodes: int, seeds: list[int],
                        device: torch.device | str = "cpu", reward_variant: str = "mpe2",
                        max_steps: int | None = None,
                        action_layout: str | None = None,
                        behaviour: str | None = None) -> list[dict[str, Any]]:
    """``evaluate_agent`` for each member of a population at once: one vector of P·E envs.

    Member m's E environments and its policy noise are seeded with ``seeds[m]`` exactly as
    its own run's evaluation is, and its columns of the agent axis (P·A) only ever see its
    own environments, so its returns equal those of the run on its own. ``action_layout``
    None: the layout of the agent's action width (``agent_layout``). ``behaviour``: that of
    the training data, whose references normalise the score.
    """
    from om2p_lite.envs import VecEnv, team_score
    from om2p_lite.envs.vector import env_seed

    P, E = len(seeds), n_episodes
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    env_seeds = [env_seed(s, k) for s in seeds for k in range(E)]
    layout = action_layout or agent_layout(agent, task)
    with VecEnv(task, P * E, reward_variant=reward_variant, seeds=env_seeds,
                action_layout=layout) as venv:
        spec = venv.spec
        A, D = spec.n_agents, spec.obs_dim
        obs = venv.reset()  # (P·E, A, D)
        returns = np.zeros(P * E)
        done = np.zeros(P * E, dtype=bool)
        limit = max_steps or spec.episode_length
        for _ in range(limit):
            o = torch.as_tensor(obs, dtype=torch.float32).view(P, E, A, D)
            o = o.transpose(0, 1).reshape(E, P * A, D).to(device)  # member-major agent axis
            a = agent.act(o, gens).cpu()  # (E, P·A, d)
            actions = a.view(E, P, A, -1).transpose(0, 1).reshape(P * E, A, -1).numpy()
            _, rewards, terminals, timeouts, obs = venv.step(actions)
            returns += np.where(done, 0.0, team_score(rewards, spec.score))
            done |= terminals | timeouts
            if done.all():
                break
    out = []
    for member in returns.reshape(P, E):
        mean = float(member.mean())
        out.append({"return_mean": mean, "return_std": float(member.std()),
                     "returns": member.tolist(),
                     "normalised": normalised_or_none(task, mean, reward_variant, layout,
                                                      behaviour)})
    return out
