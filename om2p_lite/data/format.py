"""The on-disk dataset format: its version, its field lists and the checksum of its arrays.

Not the dataset class (``dataset``) nor the checks of a file (``validate``): the leaf both use.

File format (format_version 1), every array indexed by transition n < N:
  obs, next_obs (N, A, D) float32 | actions (N, A, d) float32 in [-1, 1] | rewards (N, A)
  float32 | terminals, timeouts, episode_starts (N,) bool | metadata: 0-d str, JSON.
Agents with smaller obs/action sizes are zero padded; their true sizes are metadata
``obs_dims`` / ``act_dims``. ``checksum`` is SHA-256 over the arrays (names, dtypes, shapes,
bytes), so equal checksums mean bit-identical data whatever the metadata says.
"""

from __future__ import annotations

import hashlib

import numpy as np

FORMAT_VERSION = 1
ARRAY_FIELDS = ("obs", "actions", "rewards", "next_obs", "terminals", "timeouts",
                "episode_starts")
FLOAT_FIELDS = ("obs", "actions", "rewards", "next_obs")
FLAG_FIELDS = ("terminals", "timeouts", "episode_starts")
REQUIRED_META = ("format_version", "task", "n_agents", "obs_dims", "act_dims", "checksum")


def checksum_arrays(arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 over the array fields in a fixed order: name, dtype, shape, then raw bytes."""
    h = hashlib.sha256()
    for name in ARRAY_FIELDS:
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(memoryview(a.reshape(-1).view(np.uint8)))  # no copy of large arrays
    return "sha256:" + h.hexdigest()
