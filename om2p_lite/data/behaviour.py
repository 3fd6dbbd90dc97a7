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
# Where MPE data come from: trained TD3 snapshots (D4RL-style, like OMAR's MATD3 data: the
# default, ``default_behaviour_of``) or scripted controllers (envs.scripted, the data of
# every result stored before the trained policies). HalfCheetah has no script: always trained.
BEHAVIOURS = ("scripted", "trained")
DEFAULT_BEHAVIOUR = "trained"  # what a data set that names none gets, where a policy ships
LEGACY_BEHAVIOUR = "scripted"  # what a record without the field was made with
TRAINED_STD = 0.1  # Gaussian noise on a trained snapshot's actions (medium, expert)


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
        own = behaviour_file(spec_task(spec), spec.reward_variant, spec.action_layout).name
        raise ValueError(f"{path}: actor for {first[0]} agents, observation {first[1]}, action "
                         f"{last[2]}; task {spec.task!r} needs {spec.n_agents}, "
                         f"{spec.obs_dim}, {spec.act_dim} ({spec.action_layout} actions). Fix: use "
                         f"the task's own {own}")
    return policy


def behaviour_file(task: str, reward_variant: str = "mpe2",
                   action_layout: str = "force-xy") -> Path:
    """The trained policy file of a task: ``data/behaviour/{task}[-omar][-mpe2]_td3.pt``,
    ``-omar`` for Spread trained on OMAR's reward and ``-mpe2`` for MPE's 5-d action layout
    (the names of the data-set cache; HalfCheetah: ``halfcheetah_td3.pt``)."""
    from om2p_lite.envs import MPE_TASKS, parse_task

    base = parse_task(task)[0]
    variant = f"-{reward_variant}" if base == "spread" and reward_variant != "mpe2" else ""
    layout = f"-{action_layout}" if base in MPE_TASKS and action_layout != "force-xy" else ""
    return BEHAVIOUR_DIR / f"{task}{variant}{layout}_td3.pt"


def check_behaviour(behaviour: str) -> str:
    """``behaviour`` if it is one of ``BEHAVIOURS``, else a one-line ``ValueError``."""
    if behaviour not in BEHAVIOURS:
        raise ValueError(f"behaviour: unknown {behaviour!r}. Fix: use one of "
                         f"{list(BEHAVIOURS)} (trained needs data/behaviour/TASK_td3.pt)")
    return behaviour


def default_behaviour_of(task: str, action_layout: str = "force-xy") -> str:
    """The behaviour of a data set that names none, by a fixed rule (never a file's
    presence): trained on Spread, Tag and World with the paper's 2-d force, the data sets a
    policy ships for; scripted on spreadN and in mpe2's 5-d layout, where none ships;
    HalfCheetah's trained policy always. An unknown task gets the default (its own check
    reports it)."""
    from om2p_lite.envs import MPE_TASKS, parse_task

    try:
        base, n_agents = parse_task(task)
    except ValueError:
        return DEFAULT_BEHAVIOUR
    if base not in MPE_TASKS or (n_agents is None and action_layout == "force-xy"):
        return DEFAULT_BEHAVIOUR
    return LEGACY_BEHAVIOUR


def resolve_behaviour(task: str, behaviour: str | None,
                      action_layout: str = "force-xy") -> str:
    """The behaviour that makes the data set: ``task_behaviour`` of ``behaviour``, or
    ``default_behaviour_of`` the data set when it is None or ""."""
    return task_behaviour(task, behaviour) if behaviour else default_behaviour_of(
        task, action_layout)


def task_behaviour(task: str, behaviour: str) -> str:
    """The behaviour that really makes ``task``'s data: HalfCheetah's is always trained."""
    from om2p_lite.envs import MPE_TASKS, parse_task

    return check_behaviour(behaviour) if parse_task(task)[0] in MPE_TASKS else "trained"


def default_behaviour(task: str, reward_variant: str = "mpe2",
                      action_layout: str = "force-xy") -> tuple[str, str]:
    """The behaviour ``data make`` uses when not told: ``default_behaviour_of``'s rule, but
    scripted, with a one-line note naming the command that trains the policy, where the
    rule says trained and the policy file is missing (a checkout without it still makes
    data)."""
    rule = default_behaviour_of(task, action_layout)
    if rule == "scripted" or task_behaviour(task, "scripted") == "trained" or \
            behaviour_file(task, reward_variant, action_layout).exists():
        return rule, ""  # HalfCheetah (always trained) has nothing to choose
    path = behaviour_file(task, reward_variant, action_layout)
    flags = (f" --reward-variant {reward_variant}" if reward_variant != "mpe2" else "") + \
        (f" --action-layout {action_layout}" if action_layout != "force-xy" else "")
    return "scripted", (f"note: {path.name} not found, so {task} data come from the scripted "
                        f"controller; train the policy with `python -m om2p_lite data "
                        f"train-behaviour --task {task}{flags} --export` (see "
                        f"data/behaviour/PROVENANCE.md)")


def spec_task(spec: EnvSpec) -> str:
    """The task name of ``spec`` (``spreadN`` for Spread with N agents)."""
    from om2p_lite.envs import task_name

    return task_name(spec.task, spec.n_agents if spec.task == "spread" else None)


def load_policy_file(path: Path, spec: EnvSpec) -> dict:
    """The blob of a trained policy file, refused (one line with the fix) when it is
    missing, was trained on another reward or has another action width than ``spec``."""
    if not path.exists():
        flags = (f" --reward-variant {spec.reward_variant}"
                 if spec.task == "spread" and spec.reward_variant != "mpe2" else "") + \
            (f" --action-layout {spec.action_layout}"
             if spec.task in SCRIPTED_PRESETS and spec.action_layout != "force-xy" else "")
        raise FileNotFoundError(f"{path} is missing: train it with `python -m om2p_lite data "
                                f"train-behaviour --task {spec_task(spec)}{flags} --export` (see "
                                f"PROVENANCE.md), or use --behaviour scripted")
    blob = torch.load(path, map_location="cpu", weights_only=True)
    cfg = blob.get("config", {}) if isinstance(blob, dict) else {}
    trained_on = cfg.get("reward_variant", "mpe2")
    if spec.task == "spread" and trained_on != spec.reward_variant:
        raise ValueError(f"{path}: trained on the {trained_on!r} reward, the data set asks "
                         f"for {spec.reward_variant!r}. Fix: use the file of that reward "
                         f"({behaviour_file(spec_task(spec), spec.reward_variant).name})")
    return blob


def behaviour_policy(spec: EnvSpec, quality: str, progress: float = 1.0,
                     behaviour: str | None = None) -> NoisyPolicy | Policy:
    """The policy that collects ``quality`` data; ``progress`` in [0, 1] drives medium-replay.

    medium-replay replays a learner's history: early episodes near random, late ones near
    medium (scripted tasks anneal p_random; HalfCheetah steps through its TD3 snapshots).
    ``behaviour`` (MPE): scripted controllers or the task's trained snapshots
    (``behaviour_file``) with N(0, TRAINED_STD²), None: ``default_behaviour_of``; trained
    MPE medium-replay is the run's own replay (``generate`` reads it; no policy makes it).
    """
    if quality not in QUALITIES:
        raise ValueError(f"unknown quality {quality!r}; choose one of {QUALITIES}")
    if quality == "random":
        return RandomPolicy(spec)
    trained = resolve_behaviour(spec_task(spec), behaviour, spec.action_layout) == "trained"
    if trained and spec.task in SCRIPTED_PRESETS:
        if quality == "medium-replay":
            raise ValueError("trained medium-replay is the training run's replay, not a "
                             "policy's roll-outs. Fix: make it with generate.make_dataset")
        path = behaviour_file(spec_task(spec), spec.reward_variant, spec.action_layout)
        load_policy_file(path, spec)
        return NoisyPolicy(load_actor_snapshot(path, spec, quality), spec, std=TRAINED_STD)
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
