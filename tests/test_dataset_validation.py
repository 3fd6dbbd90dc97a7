"""Malformed dataset files: each must raise one DatasetError naming file, field and fix,
and loading must never modify or delete any file in the directory."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from om2p_lite.data import DatasetError, load_dataset, save_dataset
from om2p_lite.data.format import checksum_arrays
from om2p_lite.data.synthetic import parts, toy_dataset, write_raw

Arrays = dict[str, np.ndarray]


def _dir_digest(folder: Path) -> dict[str, str]:
    """Name -> SHA-256 of every file in ``folder`` (to prove nothing was touched)."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def _mut(fn: Callable[[Arrays, dict], None], rehash: bool = True):
    """A case that edits arrays/metadata, re-hashing so only the intended check can fire."""
    def make(path: Path) -> Path:
        arrays, meta = parts(toy_dataset())
        fn(arrays, meta)
        if rehash and all(k in arrays for k in ("obs", "actions", "rewards", "next_obs",
                                                "terminals", "timeouts", "episode_starts")):
            try:
                meta["checksum"] = checksum_arrays(arrays)
            except Exception:  # noqa: BLE001 - odd shapes: keep the stale checksum
                pass
        return write_raw(path, arrays, meta)
    return make


def _set(field: str, value) -> Callable[[Arrays, dict], None]:
    def fn(a: Arrays, m: dict) -> None:
        a[field] = value(a[field]) if callable(value) else value
    return fn


def _poke(field: str, index: tuple, value: float) -> Callable[[Arrays, dict], None]:
    def fn(a: Arrays, m: dict) -> None:
        a[field][index] = value
    return fn


def _garbage(path: Path) -> Path:
    path.write_bytes(b"this is not a zip archive at all")
    return path


def _truncated(path: Path) -> Path:
    good = path.with_name("good_source.npz")
    save_dataset(toy_dataset(), good)
    path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    return path


def _no_meta(path: Path) -> Path:
    arrays, _ = parts(toy_dataset())
    return write_raw(path, arrays, None)


def _bad_json(path: Path) -> Path:
    arrays, _ = parts(toy_dataset())
    return write_raw(path, arrays, "{not json")


def _json_list(path: Path) -> Path:
    arrays, _ = parts(toy_dataset())
    return write_raw(path, arrays, json.dumps([1, 2, 3]))


def _pickled(path: Path) -> Path:
    arrays, meta = parts(toy_dataset())
    arrays["rewards"] = np.array([{"r": 1}], dtype=object)
    with open(path, "wb") as fh:
        np.savez(fh, **arrays, metadata=np.array(json.dumps(meta)))
    return path


def _stale_checksum(a: Arrays, m: dict) -> None:
    a["rewards"][3, 1] += 0.5  # data changed after writing; checksum left as it was


def _swap_episode_rows(a: Arrays, m: dict) -> None:
    for k in ("next_obs",):
        a[k][2] = a[k][2] + 1.0


def _both_end(a: Arrays, m: dict) -> None:
    a["terminals"][4] = True  # row 4 is already a timeout


def _end_without_start(a: Arrays, m: dict) -> None:
    a["timeouts"][1] = True


def _start_without_end(a: Arrays, m: dict) -> None:
    a["episode_starts"][2] = True


def _unfinished(a: Arrays, m: dict) -> None:
    a["timeouts"][-1] = False


def _two_agents_meta(a: Arrays, m: dict) -> None:
    m["n_agents"], m["obs_dims"], m["act_dims"] = 2, [4, 4], [2, 2]


CASES: dict[str, tuple[Callable[[Path], Path], str]] = {
    "missing_file": (lambda p: p, "<file>"),
    "not_a_zip": (_garbage, "<file>"),
    "truncated_zip": (_truncated, "<file>"),
    "no_metadata": (_no_meta, "metadata"),
    "metadata_not_json": (_bad_json, "metadata"),
    "metadata_not_object": (_json_list, "metadata"),
    "pickled_object_field": (_pickled, "rewards"),
    "metadata_no_checksum": (_mut(lambda a, m: m.pop("checksum"), False), "metadata.checksum"),
    "format_version_2": (_mut(lambda a, m: m.update(format_version=2)),
                         "metadata.format_version"),
    "n_agents_zero": (_mut(lambda a, m: m.update(n_agents=0)), "metadata.n_agents"),
    "obs_dims_wrong_length": (_mut(lambda a, m: m.update(obs_dims=[4, 4])),
                              "metadata.obs_dims"),
    "missing_rewards": (_mut(lambda a, m: a.pop("rewards"), False), "rewards"),
    "extra_field": (_mut(lambda a, m: a.update(foo=np.zeros(3)), False), "foo"),
    "obs_float64": (_mut(_set("obs", lambda x: x.astype(np.float64))), "obs"),
    "terminals_int": (_mut(_set("terminals", lambda x: x.astype(np.int64))), "terminals"),
    "rewards_1d": (_mut(_set("rewards", lambda x: x[:, 0].copy())), "rewards"),
    "actions_short": (_mut(_set("actions", lambda x: x[:-1].copy())), "actions"),
    "empty": (_mut(lambda a, m: a.update({k: v[:0] for k, v in a.items()})), "obs"),
    "agent_count_mismatch": (_mut(_two_agents_meta), "obs"),
    "obs_too_wide": (_mut(lambda a, m: m.update(obs_dims=[3, 3, 3])), "obs"),
    "nan_obs": (_mut(_poke("obs", (5, 1, 0), np.nan)), "obs"),
    "inf_reward": (_mut(_poke("rewards", (7, 2), np.inf)), "rewards"),
    "action_out_of_range": (_mut(_poke("actions", (3, 0, 1), 1.5)), "actions"),
    "nonzero_padding": (_mut(_poke("actions", (3, 2, 1), 0.3)), "actions"),
    "terminal_and_timeout": (_mut(_both_end), "timeouts"),
    "first_row_not_start": (_mut(_poke("episode_starts", (0,), False)), "episode_starts"),
    "last_row_unfinished": (_mut(_unfinished), "timeouts"),
    "end_without_next_start": (_mut(_end_without_start), "episode_starts"),
    "start_without_end": (_mut(_start_without_end), "episode_starts"),
    "next_obs_discontinuous": (_mut(_swap_episode_rows), "next_obs"),
    "stale_checksum": (_mut(_stale_checksum, rehash=False), "metadata.checksum"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_malformed_file_gives_one_clear_error(case: str, tmp_path: Path) -> None:
    """Every malformed case: DatasetError with the file, the field and a fix; no file touched."""
    make, field = CASES[case]
    keep = tmp_path / "precious.npz"
    save_dataset(toy_dataset(seed=1), keep)
    path = make(tmp_path / f"{case}.npz")
    before = _dir_digest(tmp_path)
    with pytest.raises(DatasetError) as info:
        load_dataset(path)
    err = info.value
    print(f"[{case}] {err}")
    assert err.field == field
    assert str(path) in str(err) and "Fix:" in str(err) and err.fix
    assert _dir_digest(tmp_path) == before  # nothing overwritten, nothing deleted
    load_dataset(keep)  # the good file still loads


def test_there_are_at_least_twenty_cases() -> None:
    assert len(CASES) >= 20


def test_writer_refuses_to_overwrite(tmp_path: Path) -> None:
    path = save_dataset(toy_dataset(seed=2), tmp_path / "d.npz")
    before = path.read_bytes()
    with pytest.raises(DatasetError, match="already exists"):
        save_dataset(toy_dataset(seed=3), path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.npz"]  # no temp file left behind


def test_writer_refuses_invalid_data_and_writes_nothing(tmp_path: Path) -> None:
    ds = toy_dataset()
    ds.actions[0, 0, 0] = 3.0
    with pytest.raises(DatasetError, match="actions"):
        save_dataset(ds, tmp_path / "bad.npz")
    assert list(tmp_path.iterdir()) == []


FLOATS = ("obs", "actions", "rewards", "next_obs")
SETTINGS = settings(max_examples=25, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


def _rejected(path: Path, arrays: Arrays, meta: dict, rehash: bool = True) -> DatasetError:
    """Write ``arrays`` raw (re-checksummed unless ``rehash`` is off) and return the load error."""
    if rehash:
        meta["checksum"] = checksum_arrays(arrays)
    with pytest.raises(DatasetError) as info:
        load_dataset(write_raw(path, arrays, meta))
    return info.value


@SETTINGS
@given(field=st.sampled_from(FLOATS), row=st.integers(0, 19), agent=st.integers(0, 2),
       col=st.integers(0, 3), bad=st.sampled_from([np.nan, np.inf, -np.inf]))
def test_any_non_finite_value_is_named(tmp_path: Path, field: str, row: int, agent: int,
                                       col: int, bad: float) -> None:
    arrays, meta = parts(toy_dataset())
    if field == "rewards":
        arrays[field][row, agent] = bad
    else:
        arrays[field][row, agent, col % arrays[field].shape[2]] = bad
    assert _rejected(tmp_path / "nf.npz", arrays, meta, rehash=False).field == field


@SETTINGS
@given(row=st.integers(0, 19), agent=st.integers(0, 1), col=st.integers(0, 1),
       size=st.floats(1.001, 1e6), sign=st.sampled_from([-1.0, 1.0]))
def test_any_action_outside_the_box_is_named(tmp_path: Path, row: int, agent: int, col: int,
                                             size: float, sign: float) -> None:
    arrays, meta = parts(toy_dataset())
    arrays["actions"][row, agent, col] = sign * size
    assert _rejected(tmp_path / "oob.npz", arrays, meta).field == "actions"


@SETTINGS
@given(row=st.integers(0, 19))
def test_flipping_any_episode_start_is_caught(tmp_path: Path, row: int) -> None:
    arrays, meta = parts(toy_dataset())
    arrays["episode_starts"][row] = ~arrays["episode_starts"][row]
    assert _rejected(tmp_path / "flip.npz", arrays, meta).field == "episode_starts"


@SETTINGS
@given(perm_seed=st.integers(0, 10_000))
def test_shuffled_rows_never_pass(tmp_path: Path, perm_seed: int) -> None:
    arrays, meta = parts(toy_dataset())
    perm = np.random.default_rng(perm_seed).permutation(20)
    if np.array_equal(perm, np.arange(20)):
        return
    arrays = {k: v[perm] for k, v in arrays.items()}
    _rejected(tmp_path / "perm.npz", arrays, meta, rehash=False)


@SETTINGS
@given(n_eps=st.integers(1, 5), T=st.integers(1, 6),
       obs_dims=st.lists(st.integers(1, 6), min_size=1, max_size=4),
       seed=st.integers(0, 1000))
def test_valid_datasets_round_trip_exactly(tmp_path: Path, n_eps: int, T: int,
                                           obs_dims: list[int], seed: int) -> None:
    act_dims = tuple(max(1, k // 2) for k in obs_dims)
    ds = toy_dataset(n_eps, T, tuple(obs_dims), act_dims, seed)
    path = tmp_path / f"rt-{n_eps}-{T}-{len(obs_dims)}-{seed}.npz"
    if path.exists():
        path.unlink()  # our own file from an earlier example of this property
    back = load_dataset(save_dataset(ds, path))
    assert back.checksum() == ds.checksum() == back.metadata["checksum"]
    for name, arr in ds.arrays().items():
        np.testing.assert_array_equal(getattr(back, name), arr)


def test_unwritable_output_paths_name_the_path_and_the_fix(tmp_path: Path) -> None:
    from om2p_lite.data.npy_io import export_npy

    ds = toy_dataset()
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    with pytest.raises(DatasetError, match=r"afile is a file, not a folder.*Fix"):
        save_dataset(ds, blocker / "sub" / "d.npz")
    (tmp_path / "dir.npz").mkdir()
    with pytest.raises(DatasetError, match=r"is a folder, not a file name.*Fix"):
        save_dataset(ds, tmp_path / "dir.npz")
    with pytest.raises(DatasetError, match=r"afile is a file, not a folder"):
        export_npy(ds, blocker / "npy")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if not os.access(locked, os.W_OK):  # root may write anywhere
            with pytest.raises(DatasetError, match=r"cannot be written.*Fix.*permissions"):
                save_dataset(ds, locked / "d.npz")
    finally:
        locked.chmod(0o700)
    assert blocker.read_text() == "x" and not list(tmp_path.glob("**/.*.tmp"))
