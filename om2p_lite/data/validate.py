"""Field-by-field checks of a dataset file: shapes, dtypes, values, episode structure, checksum.

Not a repair tool: it reads only (never writes or deletes) and raises one ``DatasetError``.
Shapes, dtypes and sizes are checked from the ``.npy`` headers inside the zip before any
array is read, so a file whose header lies cannot make it allocate what the header claims.
"""

from __future__ import annotations

import json
import math
import zipfile
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from om2p_lite.data.errors import DatasetError
from om2p_lite.data.format import (
    ARRAY_FIELDS,
    FLOAT_FIELDS,
    FORMAT_VERSION,
    REQUIRED_META,
    checksum_arrays,
)

REGENERATE = "regenerate it with `python -m om2p_lite data make --task T --quality Q --seed S`"
NDIM = {"obs": 3, "actions": 3, "rewards": 2, "next_obs": 3, "terminals": 1, "timeouts": 1,
        "episode_starts": 1}
AXES = {"obs": "(N, n_agents, obs_dim)", "actions": "(N, n_agents, act_dim)",
        "rewards": "(N, n_agents)", "next_obs": "(N, n_agents, obs_dim)", "terminals": "(N,)",
        "timeouts": "(N,)", "episode_starts": "(N,)"}
ACTION_TOL = 1e-6
CHUNK = 65_536  # rows per block in the next_obs continuity check


class Header(NamedTuple):
    """What an ``.npy`` member's header declares, read before any of its data."""

    shape: tuple[int, ...]
    dtype: np.dtype
    fortran_order: bool

    @property
    def ndim(self) -> int:
        return len(self.shape)


MAX_DEFLATE_RATIO = 1100  # deflate cannot shrink data more than ~1032-fold


def _read_header(zf: zipfile.ZipFile, info: zipfile.ZipInfo, f: str, archive_size: int
                 ) -> Header:
    """A member's declared shape and dtype, checked against the bytes the archive holds, so
    that no array is allocated from a header that lies (e.g. a 196 TiB shape)."""
    name = info.filename[:-4]
    fmt = np.lib.format
    try:
        with zf.open(info) as fp:
            version = fmt.read_magic(fp)
            if version == (1, 0):
                shape, fortran, dtype = fmt.read_array_header_1_0(fp)
            elif version == (2, 0):
                shape, fortran, dtype = fmt.read_array_header_2_0(fp)
            else:
                raise ValueError(f".npy format version {version} (numpy.savez writes 1.0)")
            header_bytes = fp.tell()
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, SyntaxError) as err:
        raise DatasetError(f, name, f"has an unreadable array header ({err})", REGENERATE) \
            from err
    if dtype.hasobject:
        raise DatasetError(f, name, f"cannot be read without pickle (dtype {dtype} holds "
                           f"Python objects)", "store plain numeric/bool arrays, never Python "
                           "objects")
    declared = math.prod(shape) * dtype.itemsize
    if info.file_size != header_bytes + declared:
        raise DatasetError(f, name, f"its header declares shape {shape} of {dtype} "
                           f"({declared:,} bytes) but the archive holds "
                           f"{max(info.file_size - header_bytes, 0):,} bytes for it",
                           REGENERATE)
    stored = info.compress_type == zipfile.ZIP_STORED
    if info.compress_size > archive_size or (
            info.file_size > info.compress_size * (1 if stored else MAX_DEFLATE_RATIO)):
        raise DatasetError(f, name, f"declares {info.file_size:,} bytes, more than its "
                           f"{info.compress_size:,} stored bytes can hold (the file is "
                           f"{archive_size:,} bytes)", REGENERATE)
    return Header(tuple(shape), dtype, fortran)


def read_headers(path: str | Path) -> dict[str, Header]:
    """Every member's declared shape and dtype, from the ``.npy`` headers inside the
    ``.npz`` zip, checked against the archive's sizes; no array data is read."""
    path = Path(path)
    f = str(path)
    try:
        with zipfile.ZipFile(path) as zf:
            headers = {}
            for info in zf.infolist():
                if not info.filename.endswith(".npy"):
                    raise DatasetError(f, info.filename, "is not a .npy array member",
                                       f"remove it; allowed fields are {list(ARRAY_FIELDS)} "
                                       f"+ metadata")
                headers[info.filename[:-4]] = _read_header(zf, info, f, path.stat().st_size)
    except (OSError, zipfile.BadZipFile, EOFError, ValueError) as err:
        if isinstance(err, DatasetError):
            raise
        raise DatasetError(f, "<file>", f"not a readable .npz archive ({err})", REGENERATE) \
            from err
    return headers


def read_npz(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Load every array of an ``.npz`` (no pickles) and parse its metadata JSON; shapes,
    dtypes and sizes are checked from the headers before any array is read."""
    path = Path(path)
    f = str(path)
    if not path.is_file():
        raise DatasetError(f, "<file>", "no such file", f"check the path, or {REGENERATE}")
    headers = read_headers(path)
    if "metadata" not in headers:
        raise DatasetError(f, "metadata", "missing", "write the metadata JSON string "
                           "(use om2p_lite.data.save_dataset)")
    head = headers.pop("metadata")
    if head.dtype.kind != "U" or head.shape != ():
        raise DatasetError(f, "metadata", f"must be a 0-d string, got shape {head.shape} of "
                           f"{head.dtype}", REGENERATE)
    try:
        npz = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise DatasetError(f, "<file>", f"not a readable .npz archive ({err})", REGENERATE) \
            from err
    with npz:
        meta_text = str(_member(npz, "metadata", f))
        try:
            meta = json.loads(meta_text)
        except json.JSONDecodeError as err:
            raise DatasetError(f, "metadata", f"is not valid JSON ({err})", REGENERATE) \
                from err
        if not isinstance(meta, dict):
            raise DatasetError(f, "metadata", "must be a JSON object", REGENERATE)
        _check_meta(meta, f)
        _check_shapes(headers, meta, f)  # from the headers: nothing absurd is allocated
        arrays = {name: _member(npz, name, f) for name in headers}
    return arrays, meta


def _member(npz: Any, name: str, f: str) -> np.ndarray:
    """One array of an open ``.npz``, as a ``DatasetError`` on failure."""
    try:
        return npz[name]
    except ValueError as err:  # object arrays need pickle, which we refuse
        raise DatasetError(f, name, f"cannot be read without pickle ({err})",
                           "store plain numeric/bool arrays, never Python objects") from err
    except (OSError, zipfile.BadZipFile, EOFError) as err:
        raise DatasetError(f, name, f"is truncated or corrupt ({err})", REGENERATE) from err


def _check_meta(meta: dict[str, Any], f: str) -> None:
    """Required keys, the format version and self-consistent agent sizes."""
    for key in REQUIRED_META:
        if key not in meta:
            raise DatasetError(f, f"metadata.{key}", "missing", REGENERATE)
    if meta["format_version"] != FORMAT_VERSION:
        raise DatasetError(f, "metadata.format_version",
                           f"is {meta['format_version']!r}, this library reads {FORMAT_VERSION}",
                           "regenerate the file with this version of om2p_lite")
    n = meta["n_agents"]
    if not isinstance(n, int) or n < 1:
        raise DatasetError(f, "metadata.n_agents", f"must be a positive int, got {n!r}",
                           REGENERATE)
    for key in ("obs_dims", "act_dims"):
        dims = meta[key]
        if (not isinstance(dims, list) or len(dims) != n
                or not all(isinstance(x, int) and x > 0 for x in dims)):
            raise DatasetError(f, f"metadata.{key}", f"must list {n} positive ints (one per "
                               f"agent), got {dims!r}", REGENERATE)


def _check_shapes(arrays: dict[str, np.ndarray] | dict[str, Header], meta: dict[str, Any],
                  f: str) -> int:
    """Presence, dtype, rank, a shared N > 0, agent count and padded widths (of arrays, or
    of the headers that declare them); return N."""
    for name in ARRAY_FIELDS:
        if name not in arrays:
            raise DatasetError(f, name, f"missing (expected shape {AXES[name]})", REGENERATE)
    extra = sorted(set(arrays) - set(ARRAY_FIELDS))
    if extra:
        raise DatasetError(f, extra[0], "is not part of format_version 1",
                           f"remove it; allowed fields are {list(ARRAY_FIELDS)} + metadata")
    for name in ARRAY_FIELDS:
        a = arrays[name]
        want = np.float32 if name in FLOAT_FIELDS else np.bool_
        if a.dtype != want:
            raise DatasetError(f, name, f"has dtype {a.dtype}, expected {np.dtype(want)}",
                               f"convert with .astype(np.{np.dtype(want).name})")
        if a.ndim != NDIM[name]:
            raise DatasetError(f, name, f"has shape {a.shape}, expected {AXES[name]}",
                               "store one row per transition with agents on axis 1")
    n_rows = arrays["obs"].shape[0]
    if n_rows == 0:
        raise DatasetError(f, "obs", "has no transitions (N = 0)", REGENERATE)
    for name in ARRAY_FIELDS:
        if arrays[name].shape[0] != n_rows:
            raise DatasetError(f, name, f"has {arrays[name].shape[0]} rows but obs has "
                               f"{n_rows}", "every field needs one row per transition")
    n_agents = meta["n_agents"]
    for name in ("obs", "actions", "rewards", "next_obs"):
        if arrays[name].shape[1] != n_agents:
            raise DatasetError(f, name, f"has {arrays[name].shape[1]} agents on axis 1 but "
                               f"metadata.n_agents is {n_agents}",
                               "make metadata.n_agents match the data (or fix the array)")
    for name, key in (("obs", "obs_dims"), ("next_obs", "obs_dims"), ("actions", "act_dims")):
        width = max(meta[key])
        if arrays[name].shape[2] != width:
            raise DatasetError(f, name, f"has width {arrays[name].shape[2]} but "
                               f"max(metadata.{key}) is {width}",
                               "pad every agent to the largest per-agent size")
    return n_rows


def _check_values(arrays: dict[str, np.ndarray], meta: dict[str, Any], f: str) -> None:
    """Finite floats, actions in [-1, 1], zero padding."""
    for name in FLOAT_FIELDS:
        bad = ~np.isfinite(arrays[name])
        if bad.any():
            row = int(np.argwhere(bad)[0][0])
            raise DatasetError(f, name, f"has {int(bad.sum())} NaN/inf values (first at row "
                               f"{row})", "drop or repair those transitions before saving")
    act = arrays["actions"]
    out = np.abs(act) > 1.0 + ACTION_TOL
    if out.any():
        row = int(np.argwhere(out)[0][0])
        raise DatasetError(f, "actions", f"has {int(out.sum())} values outside [-1, 1] (first "
                           f"at row {row}, max |a| = {float(np.abs(act).max()):.3g})",
                           "rescale actions from the environment's box to [-1, 1]")
    for name, key in (("obs", "obs_dims"), ("next_obs", "obs_dims"), ("actions", "act_dims")):
        for i, dim in enumerate(meta[key]):
            if np.any(arrays[name][:, i, dim:] != 0):
                raise DatasetError(f, name, f"agent {i} has non-zero padding beyond its "
                                   f"{key[:-1]} of {dim}", "zero the padded columns")


def _check_episodes(arrays: dict[str, np.ndarray], f: str) -> None:
    """Episodes tile the file: start at row 0, end (terminal or timeout) right before a start."""
    term, tout, start = arrays["terminals"], arrays["timeouts"], arrays["episode_starts"]
    end = term | tout
    if np.any(term & tout):
        row = int(np.flatnonzero(term & tout)[0])
        raise DatasetError(f, "timeouts", f"row {row} is both a terminal and a timeout",
                           "a time-limit end is a timeout only; keep terminals for true ends")
    if not start[0]:
        raise DatasetError(f, "episode_starts", "row 0 is not an episode start",
                           "set episode_starts[0] = True")
    if not end[-1]:
        raise DatasetError(f, "timeouts", "the last row ends no episode",
                           "drop the unfinished episode or mark its last row as a timeout")
    mismatch = end[:-1] != start[1:]
    if mismatch.any():
        row = int(np.flatnonzero(mismatch)[0])
        what = ("ends an episode but row {r1} is not a start" if end[row] else
                "does not end an episode but row {r1} starts one")
        raise DatasetError(f, "episode_starts", f"row {row} " + what.format(r1=row + 1),
                           "every episode end must be followed by a start, and vice versa")
    nxt, obs = arrays["next_obs"], arrays["obs"]
    for lo in range(0, len(end) - 1, CHUNK):  # chunks keep memory flat on 1M-row files
        hi = min(lo + CHUNK, len(end) - 1)
        gap = np.abs(nxt[lo:hi] - obs[lo + 1:hi + 1]).reshape(hi - lo, -1).max(1)
        bad = (gap > 1e-5) & ~end[lo:hi]
        if bad.any():
            row = lo + int(np.flatnonzero(bad)[0])
            raise DatasetError(f, "next_obs", f"row {row} does not equal obs of row {row + 1} "
                               "inside one episode", "keep transitions in time order, and "
                               "mark episode boundaries in episode_starts/timeouts")


def validate_arrays(arrays: dict[str, np.ndarray], meta: dict[str, Any], file: str,
                    verify_checksum: bool = True) -> None:
    """Run every check; raise ``DatasetError`` naming the file, field and fix on the first."""
    _check_meta(meta, file)
    _check_shapes(arrays, meta, file)
    _check_values(arrays, meta, file)
    _check_episodes(arrays, file)
    if verify_checksum:
        actual = checksum_arrays(arrays)
        if actual != meta["checksum"]:
            raise DatasetError(file, "metadata.checksum", f"is {meta['checksum']!r} but the "
                               f"arrays hash to {actual!r} (the data changed after writing)",
                               REGENERATE)
