"""The in-memory offline dataset and its saving and loading (one uncompressed ``.npz`` each).

Not a loader of foreign formats (see ``npy_io``) and not a replay buffer that grows. The
on-disk format itself (fields, version, checksum) is ``format``; its checks are ``validate``.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from om2p_lite.data.errors import DatasetError
from om2p_lite.data.format import ARRAY_FIELDS, FORMAT_VERSION, checksum_arrays
from om2p_lite.data.validate import read_npz, validate_arrays

@dataclass
class OfflineDataset:
    """Joint transitions of all agents; row n of every array is the same time step."""

    obs: np.ndarray  # (N, A, D) float32
    actions: np.ndarray  # (N, A, d) float32, in [-1, 1]
    rewards: np.ndarray  # (N, A) float32, each agent's own reward
    next_obs: np.ndarray  # (N, A, D) float32
    terminals: np.ndarray  # (N,) bool, true environment termination (bootstrap stops)
    timeouts: np.ndarray  # (N,) bool, time-limit end (bootstrap continues)
    episode_starts: np.ndarray  # (N,) bool, first transition of an episode
    metadata: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        """Number of transitions N."""
        return int(self.obs.shape[0])

    @property
    def n_agents(self) -> int:
        """Number of learning agents A."""
        return int(self.obs.shape[1])

    def arrays(self) -> dict[str, np.ndarray]:
        """The array fields by name."""
        return {name: getattr(self, name) for name in ARRAY_FIELDS}

    def checksum(self) -> str:
        """SHA-256 of the arrays (see ``format``)."""
        return checksum_arrays(self.arrays())

    def sample_indices(self, batch_size: int, generator: torch.Generator | None = None
                       ) -> torch.Tensor:
        """Uniform transition indices (batch_size,), the same rows for every agent."""
        return torch.randint(0, len(self), (batch_size,), generator=generator)

    def sample(self, batch_size: int, generator: torch.Generator | None = None,
               device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
        """A batch: obs/next_obs (B, A, D), actions (B, A, d), rewards (B, A), dones (B,)."""
        return self.batch(self.sample_indices(batch_size, generator).numpy(), device)

    def batch(self, idx: np.ndarray, device: torch.device | str = "cpu"
              ) -> dict[str, torch.Tensor]:
        """The transitions at ``idx`` as float32 tensors; ``dones`` are terminals only."""
        out = {"obs": self.obs[idx], "actions": self.actions[idx], "rewards": self.rewards[idx],
               "next_obs": self.next_obs[idx],
               "dones": self.terminals[idx].astype(np.float32)}
        return {k: torch.from_numpy(np.ascontiguousarray(v)).to(device) for k, v in out.items()}

    def episode_bounds(self) -> list[tuple[int, int]]:
        """(start, stop) row ranges of each episode."""
        starts = np.flatnonzero(self.episode_starts)
        stops = np.append(starts[1:], len(self))
        return list(zip(starts.tolist(), stops.tolist(), strict=True))

    def episode_returns(self) -> np.ndarray:
        """Per-episode team return with the task's score rule (mean of agents, or agent 0)."""
        rule = self.metadata.get("score", "mean")
        team = self.rewards.mean(-1) if rule == "mean" else self.rewards[:, 0]
        csum = np.concatenate([[0.0], np.cumsum(team, dtype=np.float64)])
        return np.array([csum[b] - csum[a] for a, b in self.episode_bounds()])


def to_npz_dict(ds: OfflineDataset) -> dict[str, np.ndarray]:
    """Arrays plus the JSON metadata (with a fresh checksum) as a dict ready for ``np.savez``."""
    meta = dict(ds.metadata)
    meta["format_version"] = FORMAT_VERSION
    meta["checksum"] = ds.checksum()
    return {**ds.arrays(), "metadata": np.array(json.dumps(meta, sort_keys=True))}


def save_dataset(ds: OfflineDataset, path: str | Path, overwrite: bool = False) -> Path:
    """Validate, then write ``path`` atomically; never replaces a file unless ``overwrite``."""
    path = Path(path)
    if path.suffix != ".npz":
        raise DatasetError(str(path), "<file>", "dataset files must end in .npz",
                           "choose an output name ending in .npz")
    payload = to_npz_dict(ds)
    validate_arrays({k: v for k, v in payload.items() if k != "metadata"},
                    json.loads(str(payload["metadata"])), str(path))
    if path.is_dir():
        raise DatasetError(str(path), "<file>", "is a folder, not a file name",
                           f"name a file inside it, e.g. {path / 'data.npz'}")
    if path.exists() and not overwrite:
        raise DatasetError(str(path), "<file>", "a file already exists there and would be "
                           "overwritten", "choose another output path, or delete the old file "
                           "yourself if you really mean to replace it")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as fh:
            np.savez(fh, **payload)
    except OSError as err:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise unwritable(path, err) from err
    try:
        if overwrite:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # fails if someone created ``path`` meanwhile: never clobbers
    except FileExistsError as err:
        raise DatasetError(str(path), "<file>", "a file appeared there while writing",
                           "choose another output path") from err
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def unwritable(path: Path, err: OSError) -> DatasetError:
    """A filesystem error on writing ``path`` (a file where a folder should be, no
    permission, a full disk) as a ``DatasetError`` naming the path and the fix."""
    blocker = next((p for p in [path.parent, *path.parent.parents]
                    if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        return DatasetError(str(path), "<file>", f"cannot be written: {blocker} is a file, "
                            f"not a folder", "choose an output path whose folders are "
                            "folders, or move that file away")
    return DatasetError(str(path), "<file>", f"cannot be written ({err.strerror or err})",
                        "choose an output path in a folder you can write to (check its "
                        "permissions and free space)")


def load_dataset(path: str | Path, verify_checksum: bool = True) -> OfflineDataset:
    """Read and fully validate a dataset file; raise ``DatasetError`` on the first problem."""
    arrays, meta = read_npz(path)
    validate_arrays(arrays, meta, str(path), verify_checksum=verify_checksum)
    return OfflineDataset(**{k: arrays[k] for k in ARRAY_FIELDS}, metadata=meta)
