"""Import and export of the public per-agent ``.npy`` layout used by OMAR-style datasets.

Not a downloader: point ``import_npy`` at a directory you already have. Layout, one file per
agent i: obs_i.npy (N, obs_dim_i), acs_i.npy (N, act_dim_i), rews_i.npy (N,),
next_obs_i.npy (N, obs_dim_i), dones_i.npy (N,).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from om2p_lite.data.behaviour import QUALITIES
from om2p_lite.data.dataset import OfflineDataset, unwritable
from om2p_lite.data.errors import DatasetError
from om2p_lite.data.format import FORMAT_VERSION
from om2p_lite.envs import (
    DEFAULT_ACTION_LAYOUT,
    MPE_TASKS,
    SPREAD_RANGE,
    get_spec,
    layout_of_width,
    parse_task,
    task_name,
)
from om2p_lite.envs.mpe import LAYOUT_WIDTHS

KINDS = ("obs", "acs", "rews", "next_obs", "dones")
IMPORTED = "imported"  # quality label of a data set whose behaviour policy is unknown
IMPORT_QUALITIES = (*QUALITIES, IMPORTED)
# reward functions an imported file may have been made with, per scenario (first = default)
IMPORT_REWARD_VARIANTS = {"spread": ("mpe2", "omar"), "tag": ("mpe2", "omar"),
                          "world": ("mpe2", "omar"), "halfcheetah": ("mamujoco",)}
# what a file's action columns are; the data set keeps them as they are, in the MPE task
# of that layout (envs.ACTION_LAYOUTS): "force-xy" = the 2-d force u = (x, y) itself, the
# action of the MPE fork of OMAR and the official OM2P code (om2p-lite's default layout);
# "mpe2" = mpe2's 5-d continuous action (om2p-lite's first data sets); "native" = om2p-lite's
# own columns: for MPE either of the two, told apart by their width (2 or 5).
ACTION_LAYOUTS = ("native", "force-xy", "mpe2")


def force_xy_to_mpe(xy: np.ndarray) -> np.ndarray:
    """(N, 2) forces in [-1, 1] → (N, 5) mpe2-layout actions with the same force: MPE's
    5-d action gives u = (a[2] - a[1], a[4] - a[3]) in its [0, 1] box (order no-op, left,
    right, down, up), which the policy's [-1, 1] box maps to as (a + 1) / 2."""
    x, y = xy[:, 0], xy[:, 1]
    return np.stack([np.zeros_like(x), -x, x, -y, y], axis=1)


def export_npy(ds: OfflineDataset, out_dir: str | Path) -> list[Path]:
    """Write the per-agent files (unpadded) into ``out_dir``; refuse to replace any file."""
    out_dir = Path(out_dir)
    dims_o, dims_a = ds.metadata["obs_dims"], ds.metadata["act_dims"]
    planned: dict[Path, np.ndarray] = {}
    for i in range(ds.n_agents):
        planned[out_dir / f"obs_{i}.npy"] = ds.obs[:, i, : dims_o[i]]
        planned[out_dir / f"acs_{i}.npy"] = ds.actions[:, i, : dims_a[i]]
        planned[out_dir / f"rews_{i}.npy"] = ds.rewards[:, i]
        planned[out_dir / f"next_obs_{i}.npy"] = ds.next_obs[:, i, : dims_o[i]]
        planned[out_dir / f"dones_{i}.npy"] = ds.terminals.astype(np.float32)
    taken = [p for p in planned if p.exists()]
    if taken:
        raise DatasetError(str(taken[0]), taken[0].stem, "already exists and would be "
                           "overwritten", "export into an empty or new directory")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        for path, arr in planned.items():
            np.save(path, np.ascontiguousarray(arr, dtype=np.float32))
    except OSError as err:
        raise unwritable(out_dir / "obs_0.npy", err) from err
    return list(planned)


def _agent_count(src: Path) -> int:
    """Number of agents = number of obs_i.npy files, which must be numbered 0..n-1."""
    found = sorted(int(m.group(1)) for p in src.glob("obs_*.npy")
                   if (m := re.fullmatch(r"obs_(\d+)\.npy", p.name)))
    if not found:
        raise DatasetError(str(src / "obs_0.npy"), "obs_0", "no obs_i.npy files in the "
                           "directory", "point --src at the folder holding obs_0.npy, ...")
    if found != list(range(len(found))):
        raise DatasetError(str(src), "obs_i", f"agent files are numbered {found}",
                           "number agents 0..n-1 without gaps")
    return len(found)


def _read(path: Path) -> np.ndarray:
    """np.load one file without pickles, as a DatasetError on failure."""
    if not path.is_file():
        raise DatasetError(str(path), path.stem, "missing", f"add {path.name} (every agent "
                           f"needs {', '.join(k + '_i.npy' for k in KINDS)})")
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise DatasetError(str(path), path.stem, f"not a readable .npy ({err})",
                           "re-export it with numpy.save") from err


def check_import_labels(task: str, quality: str, reward_variant: str | None,
                        action_low: float = -1.0, action_high: float = 1.0) -> str:
    """Refuse unknown labels before any file is read; return the reward variant to record.

    Spread's reward function is not in the files and changes every return, so it must be
    named (``mpe2``, or ``omar`` for OMAR's reshaped reward); the others have a default.
    """
    base = parse_task(task)[0]
    if quality not in IMPORT_QUALITIES:
        raise ValueError(f"quality: unknown label {quality!r}. Fix: use one of "
                         f"{IMPORT_QUALITIES} ({IMPORTED!r} when the behaviour is unknown)")
    valid = IMPORT_REWARD_VARIANTS[base]
    if reward_variant is None:
        if base == "spread":
            raise ValueError(f"reward_variant: Spread's rewards depend on the reward function, "
                             f"which the files do not say. Fix: name it, one of {valid} "
                             f"(--reward-variant omar for OMAR's public data)")
        reward_variant = valid[0]
    if reward_variant not in valid:
        raise ValueError(f"reward_variant: unknown {reward_variant!r} for {base}. Fix: use "
                         f"one of {valid}")
    if not (np.isfinite(action_low) and np.isfinite(action_high) and action_low < action_high):
        raise ValueError(f"action box: need finite low < high, got [{action_low}, "
                         f"{action_high}]. Fix: pass the box the files' actions live in, "
                         f"e.g. --action-low 0 --action-high 1")
    return reward_variant


def _check_against_task(src: Path, task: str, n_agents: int, obs_dims: list[int],
                        act_dims: list[int], reward_variant: str,
                        action_layout: str = "native") -> tuple[str, Any]:
    """The task name for ``n_agents`` agents and its spec, checked against the file shapes."""
    base, n_named = parse_task(task)
    if base == "spread" and n_named is None:
        lo, hi = SPREAD_RANGE
        if not lo <= n_agents <= hi:
            raise DatasetError(str(src), "obs_i", f"holds {n_agents} agents; Spread here "
                               f"supports {lo}..{hi}", "import a Spread set of that size")
        task = task_name("spread", n_agents)  # 4 files: spread4
    layout = _task_layout(src, base, act_dims, action_layout)
    spec = get_spec(task, reward_variant, layout)
    if spec.n_agents != n_agents:
        raise DatasetError(str(src), "obs_i", f"holds {n_agents} agents but {task} has "
                           f"{spec.n_agents}", "pass the task these files were made in "
                           "(--task spread takes any agent count)")
    for kind, dims, want in (("obs", obs_dims, spec.obs_dims), ("acs", act_dims,
                                                                 spec.act_dims)):
        for i, (got, exp) in enumerate(zip(dims, want, strict=True)):
            if got != exp:
                raise DatasetError(str(src / f"{kind}_{i}.npy"), f"{kind}_{i}", f"has width "
                                   f"{got} but agent {i} of {task} has {exp}",
                                   "import files made in this task (same agents and "
                                   "observation layout), or pass the right --task")
    return task, spec


def _task_layout(src: Path, base: str, act_dims: list[int], action_layout: str) -> str:
    """The task's action layout for files whose actions are ``action_layout`` (checked
    against their widths ``act_dims``); HalfCheetah's is its own (the default's)."""
    if base not in MPE_TASKS:
        if action_layout != "native":
            raise DatasetError(str(src), "acs_i", f"--action-layout {action_layout} names an "
                               f"MPE action layout, but {base} is not an MPE task",
                               "drop --action-layout (HalfCheetah has one layout)")
        return DEFAULT_ACTION_LAYOUT  # ignored by HalfCheetah
    widths = sorted(set(act_dims))
    if action_layout == "native":
        if len(widths) == 1 and widths[0] in LAYOUT_WIDTHS.values():
            return layout_of_width(widths[0])
        raise DatasetError(str(src / "acs_0.npy"), "acs_i", f"has action widths {act_dims}; "
                           f"MPE actions are 2 wide (force-xy) or 5 (mpe2) for every agent",
                           "import files made in this task, or pass --action-layout")
    want = LAYOUT_WIDTHS[action_layout]
    for i, got in enumerate(act_dims):
        if got != want:
            other = [k for k, w in LAYOUT_WIDTHS.items() if w == got]
            raise DatasetError(str(src / f"acs_{i}.npy"), f"acs_{i}", f"has width {got}, but "
                               f"--action-layout {action_layout} reads {want}-d actions",
                               f"use --action-layout {other[0]}" if other else
                               "import files made in this task")
    return action_layout


def import_npy(src: str | Path, task: str, action_low: float = -1.0, action_high: float = 1.0,
               reward_variant: str | None = None, quality: str = IMPORTED,
               action_layout: str = "native") -> OfflineDataset:
    """Read a per-agent directory into an OfflineDataset; episodes end where dones are set
    or where next_obs[n] differs from obs[n + 1]; actions are mapped from [low, high].

    The files must fit ``task`` (agent count, observation and action widths). Spread takes
    its agent count from the files: four agents' files become task ``spread4``. ``quality``
    is one of ``IMPORT_QUALITIES``; ``reward_variant`` must be named for Spread.
    ``action_layout`` (``ACTION_LAYOUTS``) names the files' MPE actions: force-xy (2-d
    forces, the official data) or mpe2 (5-d); native tells them apart by width. The data
    set keeps the columns and records the task's layout (``metadata['action_layout']``).
    """
    src = Path(src)
    if action_layout not in ACTION_LAYOUTS:
        raise ValueError(f"action layout {action_layout!r} is unknown. Fix: one of "
                         f"{list(ACTION_LAYOUTS)}")
    reward_variant = check_import_labels(task, quality, reward_variant, action_low,
                                         action_high)
    n_agents = _agent_count(src)
    per: dict[str, list[np.ndarray]] = {k: [] for k in KINDS}
    for i in range(n_agents):
        for k in KINDS:
            a = _read(src / f"{k}_{i}.npy").astype(np.float32)
            if k in ("rews", "dones"):
                a = a.reshape(a.shape[0], -1)
                if a.shape[1] != 1:
                    raise DatasetError(str(src / f"{k}_{i}.npy"), f"{k}_{i}",
                                       f"has shape {a.shape}, expected (N,)",
                                       "store one scalar per transition")
                a = a[:, 0]
            elif a.ndim != 2:
                raise DatasetError(str(src / f"{k}_{i}.npy"), f"{k}_{i}", f"has shape "
                                   f"{a.shape}, expected (N, dim)", "store one row per step")
            per[k].append(a)
    n_rows = per["obs"][0].shape[0]
    for k in KINDS:
        for i, a in enumerate(per[k]):
            if a.shape[0] != n_rows:
                raise DatasetError(str(src / f"{k}_{i}.npy"), f"{k}_{i}", f"has {a.shape[0]} "
                                   f"rows but obs_0 has {n_rows}", "all files need N rows")
    obs_dims = [a.shape[1] for a in per["obs"]]
    act_dims = [a.shape[1] for a in per["acs"]]
    task, spec = _check_against_task(src, task, n_agents, obs_dims, act_dims, reward_variant,
                                     action_layout)
    obs, next_obs = _pad(per["obs"], obs_dims), _pad(per["next_obs"], obs_dims)
    if (action_low, action_high) == (-1.0, 1.0):
        acts = per["acs"]  # already in [-1, 1]: keep the bits (a round trip is exact)
    else:
        scale = 2.0 / (action_high - action_low)
        acts = [(a - action_low) * scale - 1.0 for a in per["acs"]]
    actions = _pad(acts, act_dims)
    rewards = np.stack(per["rews"], axis=1)
    terminals = np.stack(per["dones"], axis=1).max(1) > 0.5
    jump = np.zeros(n_rows, bool)
    jump[:-1] = np.abs(next_obs[:-1] - obs[1:]).reshape(n_rows - 1, -1).max(1) > 1e-5
    jump[-1] = True
    ends = terminals | jump
    starts = np.zeros(n_rows, bool)
    starts[0] = True
    starts[1:] = ends[:-1]
    meta: dict[str, Any] = {
        "format_version": FORMAT_VERSION, "task": task, "quality": quality, "seed": None,
        "reward_variant": spec.reward_variant, "n_agents": n_agents, "obs_dims": obs_dims,
        "act_dims": act_dims, "score": spec.score, "episode_length": spec.episode_length,
        "agent_names": list(spec.agent_names), "env_notes": spec.notes,
        "behaviour": "unknown (imported)", "source": f"imported from {src.name}",
        "action_box": [action_low, action_high], "action_layout": spec.action_layout,
    }
    ds = OfflineDataset(obs=obs, actions=actions.astype(np.float32), rewards=rewards,
                        next_obs=next_obs, terminals=terminals, timeouts=ends & ~terminals,
                        episode_starts=starts, metadata=meta)
    ds.metadata["checksum"] = ds.checksum()
    return ds


def _pad(rows: list[np.ndarray], dims: list[int]) -> np.ndarray:
    """Stack per-agent (N, dim_i) arrays into (N, A, max dim), zero padded."""
    out = np.zeros((rows[0].shape[0], len(rows), max(dims)), np.float32)
    for i, a in enumerate(rows):
        out[:, i, : dims[i]] = a
    return out
