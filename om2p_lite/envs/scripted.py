"""Hand-written MPE controllers that read only each agent's own observation.

Not learned and not optimal: good enough to serve as expert behaviour and as the fixed prey.
Each controller computes a force per agent and returns it in the asked action layout
(``as_layout``): the force itself (force-xy) or mpe2's 5-d action with the same force.
"""

from __future__ import annotations

import itertools

import numpy as np


def force_to_action(force: np.ndarray) -> np.ndarray:
    """Map a desired force (..., 2) in [-1, 1] to MPE's 5-dim action in [-1, 1]."""
    fx = np.clip(force[..., 0], -1.0, 1.0)
    fy = np.clip(force[..., 1], -1.0, 1.0)
    zero = np.zeros_like(fx)
    # env action (a + 1) / 2: u_x = a[2] - a[1], u_y = a[4] - a[3] (a[0] is "no-op")
    return np.stack([zero, -fx, fx, -fy, fy], axis=-1).astype(np.float32)


def as_layout(force: np.ndarray, layout: str) -> np.ndarray:
    """Desired forces (..., 2) as actions of ``layout``: force-xy clips them to [-1, 1],
    mpe2 maps them with ``force_to_action``; both give the world the same force."""
    if layout == "force-xy":
        return np.clip(force, -1.0, 1.0).astype(np.float32)
    if layout == "mpe2":
        return force_to_action(force)
    raise ValueError(f"action layout {layout!r} is unknown. Fix: use force-xy or mpe2")


def pd_force(target_rel: np.ndarray, vel: np.ndarray, kp: float, kd: float) -> np.ndarray:
    """A proportional-derivative push towards a relative target, in action units."""
    return kp * target_rel - kd * vel


def spread_policy(obs: np.ndarray, kp: float = 3.0, kd: float = 1.2,
                  layout: str = "force-xy") -> np.ndarray:
    """Assignment-based navigation: every agent solves the same N x N matching from its obs.

    Spread with N agents observes 6N numbers: own velocity and position (4), N landmarks
    (2N), N - 1 other agents (2N - 2) and their N - 1 messages (2N - 2), so N = width / 6.
    """
    b, a, width = obs.shape
    n = width // 6
    if width != 6 * n or n != a:
        raise ValueError(f"spread_policy expects {a} agents observing {6 * a} numbers each, "
                         f"got observations of shape {obs.shape}")
    out = np.zeros((b, a, 2), dtype=np.float32)
    perms = np.array(list(itertools.permutations(range(n))))  # (n!, n)
    for i in range(a):
        o = obs[:, i]
        pos = o[:, 2:4]
        lm = o[:, 4:4 + 2 * n].reshape(b, n, 2) + pos[:, None]  # absolute landmarks
        others = o[:, 4 + 2 * n:2 + 4 * n].reshape(b, n - 1, 2) + pos[:, None]
        agents = np.insert(others, i, pos, axis=1)  # (b, n, 2) in global agent order
        dist = np.linalg.norm(agents[:, :, None] - lm[:, None], axis=-1)  # (b, agent, lm)
        cost = dist[:, np.arange(n)[None], perms].sum(-1)  # (b, n!)
        best = perms[cost.argmin(1)]  # (b, n): landmark for each agent
        target = lm[np.arange(b), best[:, i]]
        out[:, i] = pd_force(target - pos, o[:, 0:2], kp, kd)
    return as_layout(out, layout)


def _flee_force(pos: np.ndarray, hunters_rel: np.ndarray, wall: float = 0.8) -> np.ndarray:
    """Repulsion from hunters (inverse square) plus a push back from the arena edge."""
    d2 = (hunters_rel**2).sum(-1, keepdims=True) + 1e-3
    away = -(hunters_rel / d2).sum(1)  # (b, 2)
    edge = np.where(np.abs(pos) > wall, -np.sign(pos) * (np.abs(pos) - wall) * 30.0, 0.0)
    force = away + edge
    norm = np.linalg.norm(force, axis=-1, keepdims=True) + 1e-8
    return force / norm


def tag_prey_policy(obs: np.ndarray) -> np.ndarray:
    """Fixed prey for simple_tag: flee the three predators, stay inside the arena."""
    pos, hunters = obs[:, 2:4], obs[:, 8:14].reshape(-1, 3, 2)
    return force_to_action(_flee_force(pos, hunters))


def world_prey_policy(obs: np.ndarray) -> np.ndarray:
    """Fixed prey for 3-vs-1 world: flee predators, drift towards the nearest food."""
    pos, food = obs[:, 2:4], obs[:, 6:10].reshape(-1, 2, 2)
    hunters = obs[:, 14:20].reshape(-1, 3, 2)
    seen = np.abs(hunters).sum(-1, keepdims=True) > 0  # hidden predators read as (0, 0)
    hunters = np.where(seen, hunters, 1e3)
    near = food[np.arange(len(food)), np.linalg.norm(food, axis=-1).argmin(1)]
    force = _flee_force(pos, hunters) + 0.3 * near / (np.linalg.norm(near, axis=-1, keepdims=True)
                                                      + 1e-8)
    return force_to_action(force)


def _chase(pos: np.ndarray, vel: np.ndarray, prey_rel: np.ndarray, prey_vel: np.ndarray,
           agent: int, n: int, radius: float, lead: float) -> np.ndarray:
    """Pursue a point beside the prey's predicted position, one side per predator."""
    angle = 2 * np.pi * agent / n
    offset = radius * np.array([np.cos(angle), np.sin(angle)], dtype=np.float32)
    dist = np.linalg.norm(prey_rel, axis=-1, keepdims=True)
    # far away: aim at the flank point; close in: aim straight at the prey
    aim = prey_rel + lead * prey_vel + np.where(dist > 2 * radius, offset, 0.0)
    return pd_force(aim, vel, kp=4.0, kd=0.5)


def tag_predator_policy(obs: np.ndarray, radius: float = 0.25, lead: float = 0.3,
                        layout: str = "force-xy") -> np.ndarray:
    """Chasing heuristic for simple_tag predators (prey is the last 'other agent')."""
    b, a, _ = obs.shape
    out = np.zeros((b, a, 2), dtype=np.float32)
    for i in range(a):
        o = obs[:, i]
        out[:, i] = _chase(o[:, 2:4], o[:, 0:2], o[:, 12:14], o[:, 14:16], i, a, radius, lead)
    return as_layout(out, layout)


def world_predator_policy(obs: np.ndarray, radius: float = 0.25, lead: float = 0.3,
                          layout: str = "force-xy") -> np.ndarray:
    """Chasing heuristic for 3-vs-1 world; a predator that cannot see the prey searches a forest."""
    b, a, _ = obs.shape
    out = np.zeros((b, a, 2), dtype=np.float32)
    for i in range(a):
        o = obs[:, i]
        prey_rel, prey_vel = o[:, 18:20], o[:, 20:22]
        forests = o[:, 10:14].reshape(b, 2, 2)
        near_forest = forests[np.arange(b), np.linalg.norm(forests, axis=-1).argmin(1)]
        hidden = (np.abs(prey_rel).sum(-1, keepdims=True) == 0)
        force = _chase(o[:, 2:4], o[:, 0:2], prey_rel, prey_vel, i, a, radius, lead)
        search = pd_force(near_forest, o[:, 0:2], kp=4.0, kd=0.5)
        out[:, i] = np.where(hidden, search, force)
    return as_layout(out, layout)


SCRIPTED = {
    "spread": spread_policy,
    "tag": tag_predator_policy,
    "world": world_predator_policy,
}
