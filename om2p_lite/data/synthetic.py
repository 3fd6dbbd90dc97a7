"""Tiny synthetic datasets with a consistent episode structure, for tests and examples.

Not behaviour data: values are random; use ``om2p_lite.data.generate`` for real tasks.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from om2p_lite.data.dataset import OfflineDataset, to_npz_dict
from om2p_lite.data.format import FORMAT_VERSION


def toy_dataset(n_eps: int = 4, T: int = 5, obs_dims: tuple[int, ...] = (4, 4, 3),
                act_dims: tuple[int, ...] = (2, 2, 1), seed: int = 0) -> OfflineDataset:
    """A valid dataset whose next_obs chain, episodes and padding are all consistent."""
    rng = np.random.default_rng(seed)
    A, D, d = len(obs_dims), max(obs_dims), max(act_dims)
    N = n_eps * T
    states = rng.standard_normal((n_eps, T + 1, A, D)).astype(np.float32)
    for i, k in enumerate(obs_dims):
        states[:, :, i, k:] = 0.0
    obs = states[:, :-1].reshape(N, A, D)
    next_obs = states[:, 1:].reshape(N, A, D)
    actions = rng.uniform(-1, 1, (N, A, d)).astype(np.float32)
    for i, k in enumerate(act_dims):
        actions[:, i, k:] = 0.0
    rewards = rng.standard_normal((N, A)).astype(np.float32)
    ends = np.zeros(N, bool)
    ends[T - 1 :: T] = True
    starts = np.zeros(N, bool)
    starts[::T] = True
    meta = {"format_version": FORMAT_VERSION, "task": "spread", "quality": "expert", "seed": 0,
            "n_agents": A, "obs_dims": list(obs_dims), "act_dims": list(act_dims),
            "score": "mean"}
    ds = OfflineDataset(obs=obs, actions=actions, rewards=rewards, next_obs=next_obs,
                        terminals=np.zeros(N, bool), timeouts=ends, episode_starts=starts,
                        metadata=meta)
    ds.metadata["checksum"] = ds.checksum()
    return ds


def write_raw(path: Path, arrays: dict[str, np.ndarray], meta: dict | str | None) -> Path:
    """Write an .npz exactly as given (bypassing all validation), for malformed-file tests."""
    payload = dict(arrays)
    if meta is not None:
        payload["metadata"] = np.array(meta if isinstance(meta, str) else json.dumps(meta))
    with open(path, "wb") as fh:
        np.savez(fh, **payload)
    return path


def parts(ds: OfflineDataset) -> tuple[dict[str, np.ndarray], dict]:
    """Mutable copies of the arrays and metadata (with checksum) of a dataset."""
    payload = to_npz_dict(ds)
    meta = json.loads(str(payload.pop("metadata")))
    return {k: v.copy() for k, v in payload.items()}, meta
