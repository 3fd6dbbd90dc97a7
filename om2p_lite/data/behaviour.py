"""Behaviour policies that make the offline datasets: scripted, noisy, random and trained actors.

Not an offline learner: these only act in the environment; OM2P and baselines live elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from om2p_lite.envs.base import EnvSpec
from om2p_lite.envs.scripted import SCRIPTED

QUALITIES = ("random", "medium-replay", "medium", "expert")
BEHAVIOUR_DIR = Path(__file__).resolve().parents[2] / "data" / "behaviour"


class Policy(Protocol):
    """Batched decentralised policy: obs (E, A, obs_dim) -> actions (E, A, act_dim) in [-1, 1]."""

    def __call__(self, obs: np.ndarray, rng: np.random.Generator) -> np.ndarray: ...


def action_mask(spec: EnvSpec) -> np.ndarray:
    """(A, act_dim) float mask: 1 on each agent's real action dims, 0 on padding."""
    mask = np.zeros((spec.n_agents, spec.act_dim), dtype=np.float32)
    for i, d in enumerate(spec.act_dims):
        mask[i, :d] = 1.0
    return mask


@dataclass
class RandomPolicy:
    """Uniform actions in [-1, 1] on each agent's own dims."""

    spec: EnvSpec

    def __call__(self, obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Sample uniformly."""
        shape = (obs.shape[0], self.spec.n_agents, self.spec.act_dim)
        return rng.uniform(-1.0, 1.0, shape).astype(np.float32) * action_mask(self.spec)


@dataclass
class ScriptedPolicy:
    """A deterministic hand-written controller from `om2p_lite.envs.scripted`."""

    task: str
    layout: str = "force-xy"  # the action layout it answers in (envs.ACTION_LAYOUTS)

    def __call__(self, obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Act by the script."""
        return SCRIPTED[self.task](obs, layout=self.layout)


@dataclass
class ActorPolicy:
    """A trained deterministic actor, run in NumPy (tiny batches: no torch thread overhead)."""

    weights: list[np.ndarray]  # per layer (A, d_in, d_out)
    biases: list[np.ndarray]  # per layer (A, d_out)
    mask: np.ndarray  # (A, act_dim)

    @classmethod
    def from_state(cls, state: dict[str, torch.Tensor], mask: np.ndarray) -> ActorPolicy:
        """From a shipped snapshot: ``weights.k`` (A, d_in, d_out), ``biases.k`` (A, d_out)."""
        n = sum(1 for k in state if k.startswith("weights."))
        missing = [f"{kind}.{k}" for k in range(n) for kind in ("weights", "biases")
                   if f"{kind}.{k}" not in state]
        if n == 0 or missing:
            raise ValueError(f"actor snapshot lacks {missing or ['weights.0']}: not a TD3 "
                             f"actor written by data.behaviour_td3 (or the older "
                             f"rl.td3_online)")
        return cls([state[f"weights.{k}"].detach().cpu().numpy().copy() for k in range(n)],
                   [state[f"biases.{k}"].detach().cpu().numpy().copy() for k in range(n)],
                   mask)

    def __call__(self, obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """a = tanh(MLP(o)) per agent with ReLU hidden layers (the TD3 actor's maths)."""
        h = np.swapaxes(obs.astype(np.float32), 0, 1)  # (A, B, in)
        last = len(self.weights) - 1
        for k, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = np.matmul(h, w) + b[:, None]  # (A, B, d_out)
            if k < last:
                h = np.maximum(h, 0.0)
        return (np.swapaxes(np.tanh(h), 0, 1) * self.mask).astype(np.float32)


@dataclass
class NoisyPolicy:
    """Base policy + Gaussian noise, replaced by a uniform action with probability ``p_random``.

    The per agent-step mixture is what makes medium data multimodal: a (1 - p) peak at the
    base action and a p-weighted uniform floor.
    """

    base: Policy
    spec: EnvSpec
    std: float = 0.1  # Gaussian noise on the base action
    p_random: float = 0.0  # chance an agent acts uniformly at random on a step

    def __call__(self, obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Perturb the base actions; independent draws per environment and agent."""
        a = self.base(obs, rng)
        a = a + self.std * rng.standard_normal(a.shape).astype(np.float32)
        uniform = rng.uniform(-1.0, 1.0, a.shape).astype(np.float32)
        swap = rng.random(a.shape[:2])[..., None] < self.p_random  # (E, A, 1)
        a = np.where(swap, uniform, a)
        return (np.clip(a, -1.0, 1.0) * action_mask(self.spec)).astype(np.float32)


# Scripted behaviour presets (MPE). p_random for "medium" was calibrated so that the mean
# return sits about half-way between random and expert (see data/behaviour/PROVENANCE.md),
# in the mpe2 layout; the force-xy layout uses the same numbers, not recalibrated.
SCRIPTED_PRESETS: dict[str, dict[str, dict[str, float]]] = {
    "spread": {"expert": {"std": 0.1, "p_random": 0.0}, "medium": {"std": 0.3, "p_random": 0.7}},
    "tag": {"expert": {"std": 0.1, "p_random": 0.0}, "medium": {"std": 0.3, "p_random": 0.3}},
    "world": {"expert": {"std": 0.1, "p_random": 0.0}, "medium": {"std": 0.3, "p_random": 0.45}},
}


def load_actor_snapshot(path: Path, spec: EnvSpec, which: str | int) -> ActorPolicy:
    """Load a shipped TD3 actor: ``which`` is "expert", "medium" or a snapshot index.

    Reads the files of ``data.behaviour_td3.export_behaviour`` and those of the driver
    before it (``rl.td3_online``, e.g. the shipped ``halfcheetah_td3.pt``: no
    ``actor.activation``, ReLU like every actor written since).
    """
    blob = torch.load(path, map_location="cpu", weights_only=True)
    activation = blob.get("actor", {}).get("activation", "relu")
    if activation != "relu":
        raise ValueError(f"{path}: actor activation {activation!r}; ActorPolicy runs ReLU "
                         f"actors only. Fix: train it with data.behaviour_td3 (ReLU actors)")
    key = blob["chosen"][which] if isinstance(which, str) else which
    policy = ActorPolicy.from_state(blob["snapshots"][key]["state"], action_mask(spec))
    first, last = policy.weights[0].shape, policy.weights[-1].shape
    if first[:2] != (spec.n_agents, spec.obs_dim) or last[2] != spec.act_dim:
        raise ValueError(f"{path}: actor for {first[0]} agents, observation {first[1]}, action "
                         f"{last[2]}; task {spec.task!r} needs {spec.n_agents}, "
                         f"{spec.obs_dim}, {spec.act_dim}. Fix: use the task's own *_td3.pt")
    return policy


def behaviour_policy(spec: EnvSpec, quality: str, progress: float = 1.0) -> NoisyPolicy | Policy:
    """The policy that collects ``quality`` data; ``progress`` in [0, 1] drives medium-replay.

    medium-replay replays a learner's history: early episodes near random, late ones near
    medium (scripted tasks anneal p_random; trained tasks step through TD3 snapshots).
    """
    if quality not in QUALITIES:
        raise ValueError(f"unknown quality {quality!r}; choose one of {QUALITIES}")
    if quality == "random":
        return RandomPolicy(spec)
    if spec.task in SCRIPTED_PRESETS:
        preset = SCRIPTED_PRESETS[spec.task]
        if quality == "medium-replay":
            p_med = preset["medium"]["p_random"]
            p = 1.0 - progress * (1.0 - p_med)  # 1 (random) -> p_med over the dataset
            return NoisyPolicy(ScriptedPolicy(spec.task, spec.action_layout), spec,
                               std=preset["medium"]["std"], p_random=p)
        return NoisyPolicy(ScriptedPolicy(spec.task, spec.action_layout), spec,
                           **preset[quality])
    path = BEHAVIOUR_DIR / f"{spec.task}_td3.pt"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: train it with `python -m om2p_lite data "
                                f"train-behaviour --task {spec.task}` (see PROVENANCE.md)")
    if quality == "medium-replay":
        blob = torch.load(path, map_location="cpu", weights_only=True)
        last = blob["chosen"]["medium"]
        which = int(round(progress * last))
        return NoisyPolicy(load_actor_snapshot(path, spec, which), spec, std=0.1)
    return NoisyPolicy(load_actor_snapshot(path, spec, quality), spec, std=0.1)
