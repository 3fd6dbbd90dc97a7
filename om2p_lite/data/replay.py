"""The replay file of a behaviour-training run: its collected transitions up to the medium
snapshot, in whole episodes, for D4RL-style medium-replay data.

Not the online driver (``behaviour_td3``) nor the data-set maker (``generate``): this only
cuts the driver's replay buffer into episodes, writes them compactly and reads them back.
Compact: ``next_obs`` is not stored, since inside an episode it is the next row's ``obs``;
only each episode's last ``next_obs`` is kept (``final_obs``). Written atomically as an
``.npz`` of plain arrays plus a JSON string, read with ``np.load(allow_pickle=False)``.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from om2p_lite.data.behaviour import behaviour_file
from om2p_lite.rl.rundir import atomic_write_bytes

REPLAY_FORMAT = "om2p-replay-1"
ARRAYS = ("obs", "actions", "rewards", "terminals", "timeouts", "final_obs")


def replay_path(policy_file: str | Path) -> Path:
    """Where the replay file of the behaviour policy ``policy_file`` lives: beside it,
    ``{stem}_replay.npz`` (e.g. ``spread-omar_td3_replay.npz``)."""
    p = Path(policy_file)
    return p.with_name(f"{p.stem}_replay.npz")


def buffer_episodes(buf: dict[str, np.ndarray], n_envs: int, segment: int,
                    episode_length: int) -> dict[str, np.ndarray]:
    """Cut the driver's buffer rows into whole episodes, in the order the run collected them.

    Rows are step-major (``n_envs`` rows per environment step); the environments are made
    afresh every ``segment`` rows (the driver's ``eval_every``). An episode ends at a
    terminal or after ``episode_length`` steps; one cut short by a segment's end is dropped
    (it is not an episode of the task). Inside an episode ``next_obs`` must be the next
    ``obs``, which is checked (a buffer of another layout raises a ``ValueError``).
    """
    n = len(buf["obs"])
    if n % n_envs or segment % n_envs:
        raise ValueError(f"replay: {n} rows and segment {segment} must be multiples of "
                         f"n_envs {n_envs}. Fix: cut at a checkpoint step of the run")
    episodes: list[tuple[int, np.ndarray]] = []  # (first row, rows)
    for start in range(0, n, segment):
        stop = min(start + segment, n)
        for k in range(n_envs):
            rows = np.arange(start + k, stop, n_envs)
            first = 0
            for j, row in enumerate(rows):
                length = j - first + 1
                if bool(buf["dones"][row]) or length == episode_length:
                    episodes.append((int(rows[first]), rows[first:j + 1]))
                    first = j + 1
    episodes.sort(key=lambda e: e[0])  # collection order (ties cannot happen: rows differ)
    if not episodes:
        raise ValueError(f"replay: no whole episode of {episode_length} steps in {n} rows. "
                         f"Fix: cut later in the run")
    out: dict[str, list[np.ndarray]] = {k: [] for k in ARRAYS}
    for _, rows in episodes:
        if not np.array_equal(buf["next_obs"][rows[:-1]], buf["obs"][rows[1:]]):
            raise ValueError("replay: next_obs does not follow obs inside an episode, so the "
                             "buffer is not step-major with these n_envs / segment. Fix: pass "
                             "the run's own n_envs and eval_every")
        term = np.asarray(buf["dones"][rows], bool)
        out["obs"].append(buf["obs"][rows])
        out["actions"].append(buf["actions"][rows])
        out["rewards"].append(buf["rewards"][rows])
        out["terminals"].append(term)
        tout = np.zeros(len(rows), bool)
        tout[-1] = not term[-1]
        out["timeouts"].append(tout)
        out["final_obs"].append(buf["next_obs"][rows[-1]][None])
    return {k: np.concatenate(v).astype(np.float32 if k not in ("terminals", "timeouts")
                                        else bool) for k, v in out.items()}


def save_replay(path: str | Path, episodes: dict[str, np.ndarray], meta: dict[str, Any]
                ) -> Path:
    """Write ``episodes`` (``buffer_episodes``) and ``meta`` as one compressed .npz,
    atomically."""
    blob = io.BytesIO()
    np.savez_compressed(blob, **episodes,
                        metadata=np.array(json.dumps({"format": REPLAY_FORMAT, **meta})))
    atomic_write_bytes(Path(path), blob.getvalue())
    return Path(path)


def load_replay(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read a replay file: its arrays with ``next_obs`` rebuilt, and its metadata. Refuses a
    file that is not one (one-line ``ValueError`` naming the problem and the fix)."""
    path = Path(path)
    fix = "re-export it with `python -m om2p_lite data train-behaviour ... --export`"
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in ARRAYS}
            meta = json.loads(str(npz["metadata"]))
    except (KeyError, ValueError, OSError, zipfile.BadZipFile, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not a readable replay file ({type(err).__name__}: "
                         f"{err}). Fix: {fix}") from None
    if not isinstance(meta, dict) or meta.get("format") != REPLAY_FORMAT:
        got = meta.get("format") if isinstance(meta, dict) else meta
        raise ValueError(f"{path}: format {got!r}, expected {REPLAY_FORMAT!r}. Fix: {fix}")
    n = len(arrays["obs"])
    ends = np.flatnonzero(arrays["terminals"] | arrays["timeouts"])
    if any(len(arrays[k]) != n for k in ARRAYS[:5]) or n == 0 or ends[-1:].tolist() != [n - 1] \
            or len(ends) != len(arrays["final_obs"]):
        raise ValueError(f"{path}: arrays of unequal length or episodes without an end. "
                         f"Fix: {fix}")
    next_obs = np.empty_like(arrays["obs"])
    next_obs[:-1] = arrays["obs"][1:]
    next_obs[ends] = arrays["final_obs"]
    arrays["next_obs"] = next_obs
    return arrays, meta


def replay_dataset(task: str, spec: Any, n_episodes: int
                 ) -> tuple[dict[str, np.ndarray], dict[str, float], dict[str, Any]]:
    """Trained MPE medium-replay: ``n_episodes`` whole episodes of the training run's replay
    up to the medium snapshot (``data.replay``), evenly spaced over it in collection order
    (so the data keep the run's history from random to medium); all of them, and a smaller
    data set, when the replay holds fewer."""
    t0 = time.time()
    path = replay_path(behaviour_file(task, spec.reward_variant, spec.action_layout))
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: it is written with the policy file by "
                                f"`python -m om2p_lite data train-behaviour --task {task} "
                                f"--export` (see data/behaviour/PROVENANCE.md)")
    rep, meta = load_replay(path)
    want = {"task": task, "reward_variant": spec.reward_variant,
            "action_layout": spec.action_layout}
    bad = {k: meta.get(k) for k, v in want.items() if meta.get(k) != v}
    if bad or rep["actions"].shape[1:] != (spec.n_agents, spec.act_dim) \
            or rep["obs"].shape[1:] != (spec.n_agents, spec.obs_dim):
        raise ValueError(f"{path}: a replay of {bad or 'other shapes'}, not of {want}. Fix: "
                         f"re-export the policy of this task, reward and action layout")
    ends = np.flatnonzero(rep["terminals"] | rep["timeouts"])
    bounds = np.stack([np.r_[0, ends[:-1] + 1], ends + 1], 1)  # (episodes, [start, stop))
    total = len(bounds)
    pick = (np.arange(min(n_episodes, total)) * total) // min(n_episodes, total)
    rows = np.concatenate([np.arange(a, b) for a, b in bounds[pick]])
    arrays = {k: rep[k][rows] for k in ("obs", "actions", "rewards", "next_obs", "terminals",
                                        "timeouts")}
    wall = time.time() - t0
    stats = {"wall_s": wall, "env_steps": 0, "transitions": len(rows),
             "transitions_per_s": len(rows) / max(wall, 1e-9)}
    extra = {"replay_file": path.name, "replay_sha256": file_sha256(path),
             "replay_episodes": total, "replay_step": meta.get("step"),
             "n_episodes": len(pick)}
    return arrays, stats, extra


def file_sha256(path: Path) -> str:
    """``sha256:`` hex digest of a file (the behaviour files a data set was made from)."""
    return "sha256:" + hashlib.sha256(Path(path).read_bytes()).hexdigest()


__all__ = ["REPLAY_FORMAT", "buffer_episodes", "file_sha256", "load_replay", "replay_dataset",
           "replay_path", "save_replay"]
