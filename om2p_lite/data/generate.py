"""Make a dataset from (task, quality, seed, size) by rolling behaviour policies in vector envs.

Not a cache policy for other data: ``get_dataset`` only caches what ``make_dataset`` makes.
"""

from __future__ import annotations

import math
import os
import platform
import shlex
import sys
import time
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np

from om2p_lite.data.behaviour import (
    QUALITIES,
    SCRIPTED_PRESETS,
    TRAINED_STD,
    behaviour_file,
    behaviour_policy,
    resolve_behaviour,
)
from om2p_lite.data.dataset import OfflineDataset, load_dataset, save_dataset
from om2p_lite.data.errors import DatasetError
from om2p_lite.data.format import FORMAT_VERSION
from om2p_lite.data.replay import file_sha256
from om2p_lite.envs import (
    DEFAULT_ACTION_LAYOUT,
    MPE_TASKS,
    TASKS,
    VecEnv,
    check_action_layout,
    dataset_layout,
    parse_task,
    task_name,
)
from om2p_lite.runtime.budget import get_budget

DATA_DIR_ENV = "OM2P_DATA_DIR"
REPO_DATA = Path(__file__).resolve().parents[2] / "data"
# Transitions per dataset for each budget; "full" is the benchmark's scale (OMAR used 1M).
SIZES: dict[str, dict[str, int]] = {
    "smoke": {"mpe": 2_500, "halfcheetah": 4_000},
    "book": {"mpe": 50_000, "halfcheetah": 100_000},
    "full": {"mpe": 1_000_000, "halfcheetah": 1_000_000},
}
VERSIONED = ("numpy", "torch", "mpe2", "pettingzoo", "gymnasium", "gymnasium-robotics",
             "mujoco")


def cache_dir() -> Path:
    """Where generated datasets live: ``$OM2P_DATA_DIR`` or ``data/cache`` (git-ignored)."""
    return Path(os.environ.get(DATA_DIR_ENV, REPO_DATA / "cache"))


def dataset_size(task: str, budget: str) -> int:
    """Transitions for ``task`` at ``budget`` (smoke | book | full)."""
    if budget not in SIZES:
        raise ValueError(f"unknown budget {budget!r}; choose one of {sorted(SIZES)}")
    return SIZES[budget]["halfcheetah" if task == "halfcheetah" else "mpe"]


def _check_size(size: object, task: str, episode_length: int) -> int:
    """``size`` as an int of at least one episode, or a ``ValueError`` saying how to fix it."""
    if isinstance(size, bool) or not isinstance(size, int | np.integer):
        raise ValueError(f"n_transitions: expected a whole number, got {size!r}. Fix: ask "
                         f"for at least {episode_length} transitions (one {task} episode)")
    if size < episode_length:
        raise ValueError(f"n_transitions: {size} is less than one {task} episode "
                         f"({episode_length} steps), and a dataset holds whole episodes. Fix: "
                         f"ask for at least {episode_length} transitions (--transitions "
                         f"{episode_length}), or leave it unset for the budget's size")
    return int(size)


def dataset_path(task: str, quality: str, seed: int, budget: str,
                 reward_variant: str = "mpe2",
                 action_layout: str = DEFAULT_ACTION_LAYOUT,
                 behaviour: str | None = None) -> Path:
    """Cache file name of one (task, reward variant, action layout, behaviour, quality,
    seed, budget) dataset: ``{task}[-omar][-mpe2][-td3]-{quality}-s{seed}-{budget}.npz``,
    where ``-omar`` marks Spread's OMAR reward, ``-mpe2`` MPE's 5-d action layout and
    ``-td3`` MPE data of trained behaviour policies (the default force-xy, the scripted
    behaviour, random data, which no behaviour makes, and HalfCheetah add nothing: the
    names of every data set made before these options); behaviour None: the data set's
    default (``behaviour.default_behaviour_of``)."""
    behaviour = resolve_behaviour(task, behaviour, action_layout)
    base = parse_task(task)[0]
    variant = "" if reward_variant == "mpe2" or base != "spread" else f"-{reward_variant}"
    layout = "" if check_action_layout(action_layout) == DEFAULT_ACTION_LAYOUT \
        or base not in MPE_TASKS else f"-{action_layout}"
    trained = base in MPE_TASKS and behaviour == "trained" \
        and quality != "random"
    return cache_dir() / (f"{task}{variant}{layout}{'-td3' if trained else ''}-{quality}"
                          f"-s{seed}-{budget}.npz")


def versions() -> dict[str, str]:
    """Versions of the packages that shape the data (missing ones are skipped)."""
    out = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            out[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            pass
    return out


def default_n_envs(task: str, n_episodes: int) -> int:
    """Environments stepped together: enough to batch inference, few enough to stay small."""
    return max(1, min(n_episodes, 8 if task == "halfcheetah" else 50))


def make_dataset(task: str, quality: str, seed: int = 0, n_transitions: int | None = None,
                 budget: str = "smoke", reward_variant: str = "mpe2", n_envs: int | None = None,
                 n_workers: int = 1, progress: bool = False, command: str | None = None,
                 n_agents: int | None = None, action_layout: str = DEFAULT_ACTION_LAYOUT,
                 behaviour: str | None = None) -> tuple[OfflineDataset, dict[str, float]]:
    """Roll the ``quality`` behaviour policy until whole episodes fill ``n_transitions``.

    Deterministic in (task, quality, seed, size, n_envs, action layout): ``n_workers`` only
    spreads the same environments over processes. ``n_agents`` makes Spread with N agents
    (the same as ``task='spreadN'``; the metadata records the task name ``spreadN``).
    ``action_layout`` is MPE's action (force-xy, or mpe2 for the 5-d data sets made before
    it, bit for bit). ``behaviour`` (MPE) is scripted (the controllers of
    ``envs.scripted``) or trained (D4RL-style from the task's TD3 file,
    ``behaviour.behaviour_file``: medium and expert are its snapshots + N(0, TRAINED_STD²),
    medium-replay its training run's replay up to the medium snapshot); random is uniform
    either way, HalfCheetah always trained; None: the data set's default
    (``behaviour.default_behaviour_of``). The metadata records it (``behaviour_source``).
    Returns the dataset and timing stats.
    """
    check_action_layout(action_layout)
    if n_agents is not None and task in TASKS:
        task = task_name(task, n_agents)
    behaviour = resolve_behaviour(task, behaviour, action_layout)
    base, n_spread = parse_task(task)
    for name, value in (("n_envs", n_envs), ("n_workers", n_workers)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < 1):
            raise ValueError(f"{name}: must be a whole number >= 1, got {value!r}. Fix: "
                             f"use 1 or more (or leave n_envs unset for the default)")
    if quality not in QUALITIES:
        raise ValueError(f"unknown quality {quality!r}; choose one of {QUALITIES}")
    q_index, t_index = QUALITIES.index(quality), TASKS.index(base)
    env = VecEnv(task, 1, seed=0, reward_variant=reward_variant,
                 action_layout=action_layout)  # probe for the spec only
    spec = env.spec
    env.close()
    if n_agents is not None and spec.n_agents != n_agents:
        raise ValueError(f"task {task!r} has {spec.n_agents} agents but n_agents={n_agents} "
                         f"was asked. Fix: give the agent count once (task spreadN)")
    size = _check_size(n_transitions, task, spec.episode_length) if n_transitions is not None \
        else dataset_size(task, budget)
    n_episodes = math.ceil(size / spec.episode_length)
    source = "uniform" if quality == "random" else behaviour
    policy_file = behaviour_file(task, spec.reward_variant, spec.action_layout) \
        if source == "trained" else None
    if source == "trained" and quality == "medium-replay" and base in MPE_TASKS:
        from om2p_lite.data.replay import replay_dataset

        arrays, stats, extra = replay_dataset(task, spec, n_episodes)
        return _finish(arrays, stats, extra, spec, task, quality, seed, size, budget,
                       reward_variant, action_layout, source, policy_file, command, n_envs=0)
    n_envs = n_envs or default_n_envs(task, n_episodes)
    cap = n_episodes * spec.episode_length
    A, D, d = spec.n_agents, spec.obs_dim, spec.act_dim
    out = {"obs": np.zeros((cap, A, D), np.float32), "actions": np.zeros((cap, A, d), np.float32),
           "rewards": np.zeros((cap, A), np.float32), "next_obs": np.zeros((cap, A, D), np.float32),
           "terminals": np.zeros(cap, bool), "timeouts": np.zeros(cap, bool)}
    T = spec.episode_length
    ep = {k: np.zeros((n_envs, T) + v.shape[1:], v.dtype) for k, v in out.items()}
    t_in_ep = np.zeros(n_envs, dtype=int)
    # the standard tasks keep their original streams; Spread with N agents adds N
    rng = np.random.default_rng([seed, t_index, q_index] + ([n_spread] if n_spread else []))
    policies: dict[float, Any] = {}
    done_eps, write, t0, steps = 0, 0, time.time(), 0
    bar = _progress_bar(progress, n_episodes, f"{task}/{quality}")
    with VecEnv(task, n_envs, seed=seed * 1_000 + q_index, reward_variant=reward_variant,
                n_workers=n_workers, action_layout=action_layout) as venv:
        obs = venv.reset()
        while done_eps < n_episodes:
            frac = round(done_eps / n_episodes, 2)  # medium-replay progress, 1% resolution
            if frac not in policies:
                policies[frac] = behaviour_policy(spec, quality, progress=frac,
                                                  behaviour=behaviour)
            act = policies[frac](obs, rng)
            next_obs, rew, term, tout, obs_after = venv.step(act)
            steps += n_envs
            k_all = np.arange(n_envs)
            t = t_in_ep
            for name, val in (("obs", obs), ("actions", act), ("rewards", rew),
                              ("next_obs", next_obs), ("terminals", term), ("timeouts", tout)):
                ep[name][k_all, t] = val
            t_in_ep = t_in_ep + 1
            for k in np.flatnonzero(term | tout):  # env order breaks ties: deterministic
                if done_eps < n_episodes:
                    length = int(t_in_ep[k])
                    for name in out:
                        out[name][write:write + length] = ep[name][k, :length]
                    write += length
                    done_eps += 1
                    bar.update(1)
                t_in_ep[k] = 0
            obs = obs_after
    bar.close()
    wall = time.time() - t0
    arrays = {k: v[:write] for k, v in out.items()}
    stats = {"wall_s": wall, "env_steps": steps, "transitions": write,
             "transitions_per_s": write / max(wall, 1e-9)}
    return _finish(arrays, stats, {}, spec, task, quality, seed, size, budget, reward_variant,
                   action_layout, source, policy_file, command, n_envs)


def _finish(arrays: dict[str, np.ndarray], stats: dict[str, float], extra: dict[str, Any],
            spec: Any, task: str, quality: str, seed: int, size: int, budget: str,
            reward_variant: str, action_layout: str, source: str, policy_file: Path | None,
            command: str | None, n_envs: int) -> tuple[OfflineDataset, dict[str, float]]:
    """The dataset of ``arrays``: episode starts, metadata and checksum."""
    write, A, T = len(arrays["obs"]), spec.n_agents, spec.episode_length
    n_episodes = math.ceil(size / T)
    starts = np.zeros(write, bool)
    starts[0] = True
    ends = arrays["terminals"] | arrays["timeouts"]
    starts[1:] = ends[:-1]
    argv = (("task", task), ("quality", quality), ("seed", seed), ("n_transitions", size),
            ("reward_variant", reward_variant), ("action_layout", action_layout)) + \
        ((("behaviour", source),) if source == "trained" and parse_task(task)[0] in MPE_TASKS
         else ())
    meta = {
        "format_version": FORMAT_VERSION, "task": task, "quality": quality, "seed": seed,
        "reward_variant": spec.reward_variant, "n_agents": A, "obs_dims": list(spec.obs_dims),
        "act_dims": list(spec.act_dims), "action_layout": spec.action_layout,
        "agent_names": list(spec.agent_names),
        "episode_length": T, "score": spec.score, "env_notes": spec.notes,
        "n_transitions_requested": size, "n_episodes": n_episodes, "n_envs": n_envs,
        "behaviour": describe_behaviour(task, quality, source), "budget": budget,
        "behaviour_source": source,
        "command": command or "om2p_lite.data.generate.make_dataset(" + ", ".join(
            f"{k}={v!r}" for k, v in argv) + ")",
        "versions": versions(), "source": "generated by om2p_lite (no download)",
    }
    if policy_file is not None and policy_file.exists():
        meta |= {"behaviour_file": policy_file.name, "behaviour_sha256": file_sha256(policy_file)}
    meta |= extra
    ds = OfflineDataset(**arrays, episode_starts=starts, metadata=meta)
    ds.metadata["checksum"] = ds.checksum()
    return ds, stats


def describe_behaviour(task: str, quality: str, behaviour: str | None = None) -> str:
    """One line on which policy made the data (copied into the metadata and provenance)."""
    behaviour = behaviour or resolve_behaviour(task, None)  # "uniform" passes as it is
    name, task = task, parse_task(task)[0]  # spreadN behaves as Spread
    if quality == "random":
        return "uniform random actions in [-1, 1]"
    if task in SCRIPTED_PRESETS and behaviour == "trained":
        if quality == "medium-replay":
            return ("replay of the TD3 training run up to the medium snapshot (its "
                    "exploration actions), whole episodes evenly spaced over it")
        return (f"TD3 {quality} snapshot (data/behaviour/{name}*_td3.pt), Gaussian std "
                f"{TRAINED_STD}")
    if task in SCRIPTED_PRESETS:
        p = SCRIPTED_PRESETS[task]
        if quality == "medium-replay":
            return (f"scripted {task} controller, p_random annealed 1 -> "
                    f"{p['medium']['p_random']} over the episodes, std {p['medium']['std']}")
        return f"scripted {task} controller with {p[quality]}"
    if quality == "medium-replay":
        return "TD3 snapshots from the first to the medium one, in order, std 0.1"
    return f"TD3 {quality} snapshot (data/behaviour/{task}_td3.pt), Gaussian std 0.1"


def _progress_bar(enabled: bool, total: int, desc: str) -> Any:
    """A tqdm bar over episodes, or a silent stand-in."""
    if enabled:
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=desc, unit="ep")

    class _Silent:
        def update(self, n: int) -> None: ...
        def close(self) -> None: ...

    return _Silent()


def _cached(path: Path, action_layout: str, legacy: Path) -> OfflineDataset | None:
    """The data set cached at ``path`` if it holds ``action_layout``'s actions, else None.

    A file made before the layouts existed sits at the default layout's name but holds
    mpe2's 5-d actions: it is moved to its own name ``legacy`` (kept, not remade) first.
    """
    if not path.exists():
        return None
    ds = load_dataset(path)
    if dataset_layout(ds.metadata) == action_layout or path == legacy:
        return ds
    try:  # link, then unlink: never replaces a file another process put at ``legacy``
        os.link(path, legacy)
    except FileExistsError:
        pass
    path.unlink(missing_ok=True)
    return None


def get_dataset(task: str, quality: str, seed: int = 0, budget: str | None = None,
                reward_variant: str = "mpe2", progress: bool = False,
                n_workers: int = 1, action_layout: str = DEFAULT_ACTION_LAYOUT,
                behaviour: str | None = None) -> OfflineDataset:
    """Load the cached dataset, or make and cache it on first use (never downloads).

    ``behaviour`` None is the data set's default by a fixed rule
    (``behaviour.default_behaviour_of``: trained where a policy ships): a library call never
    switches behaviour because a policy file appeared or went."""
    budget = budget or get_budget().name
    behaviour = resolve_behaviour(task, behaviour, action_layout)
    path = dataset_path(task, quality, seed, budget, reward_variant, action_layout, behaviour)
    legacy = dataset_path(task, quality, seed, budget, reward_variant, "mpe2", behaviour)
    want = action_layout if parse_task(task)[0] in MPE_TASKS else "native"
    default = dataset_path(task, quality, seed, budget, reward_variant, behaviour=behaviour)
    if path == legacy != default:  # mpe2 asked: a pre-layout file may sit at the default name
        _cached(default, DEFAULT_ACTION_LAYOUT, legacy)
    if (ds := _cached(path, want, legacy)) is not None:
        return ds
    argv = ["python", "-m", "om2p_lite", "data", "make", "--task", task, "--quality", quality,
            "--seed", str(seed), "--budget", budget, "--reward-variant", reward_variant]
    if action_layout != DEFAULT_ACTION_LAYOUT:
        argv += ["--action-layout", action_layout]
    argv += ["--behaviour", behaviour]  # data make's default depends on the policy file
    ds, _ = make_dataset(task, quality, seed, budget=budget, reward_variant=reward_variant,
                         progress=progress, n_workers=n_workers, command=shlex.join(argv),
                         action_layout=action_layout, behaviour=behaviour)
    if path.exists():  # another process made it meanwhile: same command, so same bits
        return load_dataset(path)
    try:
        save_dataset(ds, path)
    except DatasetError:
        if not path.exists():
            raise
        return load_dataset(path)
    return ds


def summarize(ds: OfflineDataset) -> dict[str, Any]:
    """Return statistics of a dataset for ``data info``."""
    rets = ds.episode_returns()
    return {"task": ds.metadata.get("task"), "quality": ds.metadata.get("quality"),
            "transitions": len(ds), "episodes": len(rets), "agents": ds.n_agents,
            "return_mean": float(rets.mean()), "return_std": float(rets.std()),
            "return_min": float(rets.min()), "return_max": float(rets.max()),
            "checksum": ds.metadata.get("checksum"), "argv": " ".join(sys.argv)}
