"""The three MPE tasks (Spread, Tag, 3-vs-1 World) from `mpe2`, continuous actions, 25 steps.

Not a re-implementation of the physics: `mpe2` steps the world; we only map actions, run the
fixed prey and compute OMAR's reshaped Spread reward when asked.

Two action layouts per agent, both in [-1, 1] (``ACTION_LAYOUTS``):
  force-xy (the default): the 2-d force u = (x, y) itself, the action of the MPE fork that
    OMAR and the official OM2P code use (a Box(-1, 1, (2,)) scaled by MPE's sensitivity 5);
  mpe2: mpe2's own 5-d continuous action (no-op, left, right, down, up), the layout of
    om2p-lite's first data sets; three of its columns do nothing a force does not.
A force (x, y) steps the world exactly as the 5-d action [0, -x, x, -y, y] does: it is sent
through that action (``force_to_action``), so both layouts reach the same physics bit for bit.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from om2p_lite.envs.base import EnvSpec, pad_stack
from om2p_lite.envs.scripted import force_to_action, tag_prey_policy, world_prey_policy

EPISODE_LENGTH = 25
REWARD_VARIANTS = ("mpe2", "omar")
ACTION_LAYOUTS = ("force-xy", "mpe2")  # per-agent MPE actions: 2-d force | mpe2's 5-d
DEFAULT_ACTION_LAYOUT = "force-xy"  # the paper's (OMAR's fork); mpe2 = the data before it
LEGACY_ACTION_LAYOUT = "mpe2"  # what a data set or config that names no layout was made in
LAYOUT_WIDTHS = {"force-xy": 2, "mpe2": 5}  # action columns per agent


def check_action_layout(layout: object) -> str:
    """``layout`` if it names an MPE action layout, else a ``ValueError`` with the fix."""
    if layout not in ACTION_LAYOUTS:
        raise ValueError(f"action_layout: unknown {layout!r}. Fix: use one of "
                         f"{list(ACTION_LAYOUTS)} (force-xy: the paper's 2-d force, the "
                         f"default; mpe2: mpe2's 5-d action, om2p-lite's first data sets)")
    return str(layout)


def layout_of_width(width: int) -> str:
    """The MPE layout whose actions have ``width`` columns (2: force-xy, 5: mpe2)."""
    for layout, w in LAYOUT_WIDTHS.items():
        if w == width:
            return layout
    raise ValueError(f"MPE actions are {sorted(LAYOUT_WIDTHS.values())} wide (layouts "
                     f"{list(ACTION_LAYOUTS)}), got width {width}")


def _build(task: str, n_agents: int | None = None) -> Any:
    """Construct the unwrapped `mpe2` AEC environment for ``task`` (Spread: ``n_agents``)."""
    if n_agents is not None and task != "spread":
        raise ValueError(f"n_agents: only Spread takes an agent count, got {n_agents} for "
                         f"{task!r}. Fix: leave it unset")
    if task == "spread":
        from mpe2 import simple_spread_v3 as mod
        kwargs: dict[str, Any] = {"N": n_agents or 3, "local_ratio": 0.5}
    elif task == "tag":
        from mpe2 import simple_tag_v3 as mod
        kwargs = {"num_good": 1, "num_adversaries": 3, "num_obstacles": 2}
    elif task == "world":
        from mpe2 import simple_world_comm_v3 as mod
        kwargs = {"num_good": 1, "num_adversaries": 3, "num_obstacles": 1, "num_food": 2,
                  "num_forests": 2}
    else:
        raise ValueError(f"unknown MPE task {task!r}; use spread, tag or world")
    return mod.raw_env(max_cycles=EPISODE_LENGTH, continuous_actions=True, **kwargs)


def omar_spread_reward(world: Any) -> float:
    """OMAR's reshaped Spread reward: sum_l min(1 / d_l, 10) - 5 per collision (agent 0's view)."""
    pos = np.stack([a.state.p_pos for a in world.agents])  # (n, 2)
    lms = np.stack([lm.state.p_pos for lm in world.landmarks])
    d = np.linalg.norm(pos[:, None] - lms[None], axis=-1).min(0)  # closest agent per landmark
    return float(np.minimum(1.0 / np.maximum(d, 1e-8), 10.0).sum())


def predator_shaping(world: Any) -> float:
    """MPE's optional predator shaping (``shape`` in simple_tag's adversary reward, off in the
    task): -0.1 x the sum over predators of the distance to the nearest prey, for every
    predator. World's predator reward already carries its own, so it is for Tag only."""
    prey = [a.state.p_pos for a in world.agents if not a.adversary]
    return -0.1 * float(sum(min(np.linalg.norm(p - a.state.p_pos) for p in prey)
                            for a in world.agents if a.adversary))


def _omar_collisions(world: Any, i: int) -> int:
    """Number of other agents agent ``i`` overlaps (OMAR charges 5 for each)."""
    me = world.agents[i]
    return sum(1 for j, a in enumerate(world.agents) if j != i
               and np.linalg.norm(a.state.p_pos - me.state.p_pos) < a.size + me.size)


class MPEEnv:
    """One MPE episode at a time; the scripted prey (tag, world) acts inside ``step``.

    ``last_shaping`` (n_agents,) is MPE's optional predator shaping at the last step (Tag;
    zero elsewhere), which behaviour training may add to the reward it learns from.

    ``n_agents`` (Spread only) sets N agents and N landmarks; None is the standard 3.
    ``action_layout`` is one of ``ACTION_LAYOUTS`` (the prey always acts in mpe2's layout).
    """

    def __init__(self, task: str, reward_variant: str = "mpe2",
                 n_agents: int | None = None,
                 action_layout: str = DEFAULT_ACTION_LAYOUT) -> None:
        self.layout = check_action_layout(action_layout)
        if reward_variant not in REWARD_VARIANTS:
            raise ValueError(f"reward_variant must be one of {REWARD_VARIANTS}, got "
                             f"{reward_variant!r}")
        if reward_variant == "omar" and task != "spread":
            reward_variant = "mpe2"  # OMAR's Tag and World rewards are the MPE originals
        self.task = task
        self.raw = _build(task, n_agents)
        self.raw.reset(seed=0)
        names = list(self.raw.agents)
        self.learners = [n for n in names if not n.startswith("agent_") or task == "spread"]
        self.prey = [n for n in names if n not in self.learners]
        obs_dims = tuple(int(self.raw.observation_spaces[n].shape[0]) for n in self.learners)
        n = len(self.learners)
        notes = {"spread": f"{n} agents, {n} landmarks",
                 "tag": "3 learning predators vs 1 scripted prey, 2 obstacles",
                 "world": "3 learning predators (leader silent) vs 1 scripted prey, "
                          "1 obstacle, 2 food, 2 forests"}[task]
        self.spec = EnvSpec(task=task, n_agents=len(self.learners), obs_dims=obs_dims,
                            act_dims=(LAYOUT_WIDTHS[self.layout],) * len(self.learners),
                            episode_length=EPISODE_LENGTH, reward_variant=reward_variant,
                            score="mean" if task == "spread" else "first",
                            agent_names=tuple(self.learners), notes=notes,
                            action_layout=self.layout)
        self._t = 0
        self.last_shaping = np.zeros(self.spec.n_agents, dtype=np.float32)

    def reset(self, seed: int | None = None) -> np.ndarray:
        """Start an episode (seeded when ``seed`` is given); return (n_agents, obs_dim)."""
        self.raw.reset(seed=seed)
        self._t = 0
        return self._observe()

    def _observe(self) -> np.ndarray:
        """Stacked learner observations."""
        return pad_stack([self.raw.observe(n) for n in self.learners], self.spec.obs_dim)

    def _env_action(self, name: str, action: np.ndarray, layout: str) -> np.ndarray:
        """[-1, 1] policy action in ``layout`` to MPE's [0, 1] box; a speaking leader says
        nothing. A force (x, y) goes through its 5-d action [0, -x, x, -y, y]."""
        if layout == "force-xy":
            action = force_to_action(np.asarray(action[:2], dtype=np.float32))
        env_a = (np.clip(action[:5], -1.0, 1.0) + 1.0) / 2.0
        width = self.raw.action_spaces[name].shape[0]
        if width > 5:
            env_a = np.concatenate([env_a, np.zeros(width - 5)])
        return env_a.astype(np.float32)

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool, bool]:
        """Advance one world step; return obs, rewards (n_agents,), terminated, timeout."""
        width, got = LAYOUT_WIDTHS[self.layout], np.shape(actions)[-1]
        if got != width:
            hint = (f"build the task with action_layout={layout_of_width(got)!r}"
                    if got in LAYOUT_WIDTHS.values() else f"give {width} numbers per agent")
            raise ValueError(f"actions: {got} per agent, but the {self.layout} layout takes "
                             f"{width}. Fix: {hint}")
        per_agent = dict(zip(self.learners, actions, strict=True))
        if self.prey:
            prey_policy = tag_prey_policy if self.task == "tag" else world_prey_policy
            for name in self.prey:
                per_agent[name] = prey_policy(self.raw.observe(name)[None])[0]
        self.raw.current_actions = [  # the scripted prey acts in mpe2's layout
            self._env_action(n, per_agent[n], self.layout if n in self.learners else "mpe2")
            for n in self.raw.agents]
        self.raw._execute_world_step()  # one world step; the AEC wrapper would loop per agent
        self._t += 1
        if self.spec.reward_variant == "omar":
            shared = omar_spread_reward(self.raw.world)
            rewards = np.array([shared - 5.0 * _omar_collisions(self.raw.world, i)
                                for i in range(self.spec.n_agents)], dtype=np.float32)
        else:
            rewards = np.array([self.raw.rewards[n] for n in self.learners], dtype=np.float32)
        if self.task == "tag":  # a training-only signal (``last_shaping``); data keep rewards
            self.last_shaping[:] = predator_shaping(self.raw.world)
        return self._observe(), rewards, False, self._t >= EPISODE_LENGTH

    def render_positions(self) -> dict[str, np.ndarray]:
        """Entity positions for plotting a frame: learners, prey and landmarks."""
        world = self.raw.world
        by_name = {a.name: a.state.p_pos.copy() for a in world.agents}
        return {"learners": np.stack([by_name[n] for n in self.learners]),
                "prey": np.stack([by_name[n] for n in self.prey]) if self.prey else
                np.zeros((0, 2)),
                "landmarks": np.stack([lm.state.p_pos.copy() for lm in world.landmarks])}

    def close(self) -> None:
        """Nothing to release for MPE (no window is opened)."""
