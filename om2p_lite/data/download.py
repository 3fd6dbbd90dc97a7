"""Download of the OM2P authors' published data set from the Hugging Face Hub, checked, then
imported by ``npy_io.import_npy`` into one .npz with a provenance record beside it.

Not an importer or a reader of its own: it fetches the per-agent .npy files of one set with
``huggingface_hub`` (the optional ``download`` extra), checks their bytes against the Hub's
listing and their .npy headers against each other, and hands the folder to ``import_npy``.
The repository layout it assumes, ``{env}/{quality}/seed_{seed}_data/obs_i.npy`` (``env`` as
in ``HUB_TASKS``), is the one the official code's loader reads (``envs/env_utils.py``);
``folder`` overrides it for a repository laid out otherwise.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from om2p_lite.data.errors import DatasetError
from om2p_lite.data.npy_io import KINDS, check_import_labels, import_npy

REPO_ID = "zhuoran-li/offline_marl_dataset"  # the data set the official README links
DEFAULT_REVISION = "main"
# om2p-lite task -> (its folder in the repository, the files' reward function, their actions)
HUB_TASKS: dict[str, tuple[str, str, str]] = {
    "spread": ("simple_spread", "omar", "force-xy"),
    "tag": ("simple_tag", "omar", "force-xy"),
    "world": ("simple_world", "omar", "force-xy"),
    "halfcheetah": ("HalfCheetah-v2", "mamujoco", "native"),
}
CHUNK = 1 << 22  # elements per finiteness check: memory stays small on 1M-row files
REDOWNLOAD = "rerun with --force-download to fetch it again"


@dataclass(frozen=True)
class HubFile:
    """One file as the Hub lists it at a commit: path, size and the digests it gives."""

    path: str
    size: int | None
    sha256: str | None  # LFS files: SHA-256 of the content
    git_oid: str | None  # plain git files: SHA-1 of "blob <size>\\0" + content


def default_out_dir() -> Path:
    """``data/cache/official`` (or ``$OM2P_DATA_DIR/official``): git-ignored, like made sets."""
    from om2p_lite.data.generate import cache_dir

    return cache_dir() / "official"


def hub_folder(task: str, quality: str, seed: int) -> str:
    """The repository folder of one set, as the official loader names it."""
    return f"{HUB_TASKS[task][0]}/{quality}/seed_{seed}_data"


def output_path(out_dir: str | Path, task: str, quality: str, seed: int) -> Path:
    """The imported .npz of one set; its provenance is ``provenance_path`` of it."""
    return Path(out_dir) / f"official-{task}-{quality}-s{seed}.npz"


def provenance_path(npz: Path) -> Path:
    """``x.npz`` → ``x.provenance.json``: repo, commit, files with SHA-256, command, date."""
    return npz.with_suffix(".provenance.json")


def recorded_commit(npz: Path) -> str:
    """The commit an earlier download of ``npz`` came from, as its provenance says."""
    try:
        return str(json.loads(provenance_path(npz).read_text())["commit"])
    except (OSError, ValueError, KeyError, TypeError):
        return "unknown (no readable provenance beside it)"


def _hub() -> Any:
    """The ``huggingface_hub`` module, or a one-line error saying how to install it."""
    try:
        import huggingface_hub
    except ImportError as err:
        raise ValueError("huggingface_hub: not installed, and `data download` needs it. Fix: "
                         "pip install 'om2p-lite[download]' (or pip install huggingface_hub)"
                         ) from err
    return huggingface_hub


def _is_transport_error(err: BaseException) -> bool:
    """A connection-level failure of whichever HTTP client huggingface_hub uses."""
    roots = {cls.__module__.split(".")[0] for cls in type(err).__mro__}
    return bool(roots & {"httpx", "httpx2", "httpcore", "httpcore2", "requests", "urllib3"})


def hub_error(err: BaseException, repo_id: str, revision: str, endpoint: str
              ) -> ValueError | None:
    """A huggingface_hub or network failure as one line naming the problem and the fix;
    None for anything else (a bug, which keeps its traceback)."""
    from huggingface_hub import errors as hub_errors

    where = f"{repo_id} at {endpoint}"
    status = getattr(getattr(err, "response", None), "status_code", None)
    if isinstance(err, hub_errors.OfflineModeIsEnabled):
        return ValueError("HF_HUB_OFFLINE: is set, so huggingface_hub makes no request. Fix: "
                          "unset HF_HUB_OFFLINE (or set it to 0) to download")
    if isinstance(err, hub_errors.RevisionNotFoundError):
        return ValueError(f"--revision: {revision!r} is not a branch, tag or commit of "
                          f"{where}. Fix: pass one that exists (default {DEFAULT_REVISION})")
    if isinstance(err, hub_errors.GatedRepoError):
        return ValueError(f"--repo: {where} is gated. Fix: accept its terms on the Hub and "
                          f"log in (hf auth login)")
    if isinstance(err, hub_errors.RepositoryNotFoundError):
        return ValueError(f"--repo: no data set {where} (or it is private). Fix: check "
                          f"--repo and --endpoint (or HF_ENDPOINT), or log in")
    if isinstance(err, hub_errors.LocalEntryNotFoundError) or _is_transport_error(err):
        return ValueError(f"--endpoint: cannot reach {endpoint} ({type(err).__name__}: "
                          f"offline, or the server is down). Fix: connect to the internet, "
                          f"or pass a reachable --endpoint (or HF_ENDPOINT)")
    if isinstance(err, hub_errors.HfHubHTTPError):
        return ValueError(f"--endpoint: {endpoint} answered HTTP {status} for {repo_id}. Fix: "
                          f"retry later, or check --endpoint")
    return None


def _reraise(err: Exception, repo_id: str, revision: str, endpoint: str) -> None:
    """Raise ``err`` as its one-line ``hub_error``, or unchanged when it is not one."""
    mapped = hub_error(err, repo_id, revision, endpoint)
    if mapped is None:
        raise err
    raise mapped from err


def list_commit(repo_id: str, revision: str, endpoint: str) -> tuple[str, dict[str, HubFile]]:
    """Resolve ``revision`` to a commit and list the repository's files there."""
    hub = _hub()
    api = hub.HfApi(endpoint=endpoint)
    try:
        info = api.dataset_info(repo_id, revision=revision, files_metadata=True)
    except Exception as err:  # only download failures become one line (hub_error)
        _reraise(err, repo_id, revision, endpoint)
    files = {s.rfilename: HubFile(s.rfilename, s.size, s.lfs.sha256 if s.lfs else None,
                                  s.blob_id) for s in info.siblings or []}
    return str(info.sha), files


def plan_files(listing: dict[str, HubFile], folder: str, where: str) -> list[HubFile]:
    """The files one set needs (every agent's ``KINDS``), or an error naming what is missing."""
    agents = sorted(int(m.group(1)) for p in listing
                    if (m := re.fullmatch(re.escape(folder) + r"/obs_(\d+)\.npy", p)))
    if not agents:
        sets = sorted({p.rsplit("/", 1)[0] for p in listing if p.endswith("/obs_0.npy")})
        shown = ", ".join(sets[:12]) + (f", ... ({len(sets)} in all)" if len(sets) > 12 else "")
        raise ValueError(f"{folder}: no such set (no obs_0.npy) in {where}; sets there: "
                         f"{shown or 'none'}. Fix: choose --task/--quality/--seed of one of "
                         f"them, or pass --folder with the --task it was made in")
    needed = [f"{folder}/{k}_{i}.npy" for i in range(agents[-1] + 1) for k in KINDS]
    for path in needed:
        if path not in listing:
            raise ValueError(f"{path}: missing from {where} (every agent needs "
                             f"{', '.join(k + '_i.npy' for k in KINDS)}). Fix: pin a "
                             f"--revision that holds the whole set, or choose another set")
    return [listing[p] for p in needed]


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _git_oid(path: Path) -> str:
    """git's blob id of a file: SHA-1 of ``blob <size>\\0`` and the bytes."""
    h = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_bytes(local: Path, remote: HubFile, commit: str) -> dict[str, Any]:
    """Size and digest of a downloaded file against the Hub's listing; its record."""
    size = local.stat().st_size
    if remote.size is not None and size != remote.size:
        raise DatasetError(remote.path, "bytes", f"{size} bytes on disk, but the Hub lists "
                           f"{remote.size} at commit {commit[:12]} (a truncated or partial "
                           f"download)", REDOWNLOAD)
    sha = file_sha256(local)
    if remote.sha256 is not None:
        checked = "sha256 of the Hub's LFS listing"
        ok = sha == remote.sha256
    elif remote.git_oid is not None:
        checked = "git blob id of the Hub's listing"
        ok = _git_oid(local) == remote.git_oid
    else:
        checked, ok = "size only (the Hub listed no digest)", True
    if not ok:
        raise DatasetError(remote.path, "sha256", f"the content differs from the Hub's at "
                           f"commit {commit[:12]} (a corrupt or partial download)", REDOWNLOAD)
    return {"path": remote.path, "bytes": size, "sha256": sha, "checked_against": checked}


def npy_header(path: Path, name: str) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype from a .npy header; the file must hold exactly the bytes they need."""
    try:
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            read = {(1, 0): np.lib.format.read_array_header_1_0,
                    (2, 0): np.lib.format.read_array_header_2_0}.get(version)
            if read is None:
                raise ValueError(f"format version {version} is not 1.0 or 2.0")
            shape, _, dtype = read(fh)
            offset = fh.tell()
    except (ValueError, OSError, EOFError) as err:
        raise DatasetError(name, "header", f"not a .npy file ({err})", REDOWNLOAD) from err
    if dtype.kind not in "biuf":
        raise DatasetError(name, "dtype", f"holds {dtype} values, not numbers", "use a set "
                           "of numeric arrays")
    need = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    size = path.stat().st_size
    if size != need:
        raise DatasetError(name, "bytes", f"its header says {shape} {dtype} ({need} bytes), "
                           f"but the file has {size} (a truncated or padded file)", REDOWNLOAD)
    return tuple(shape), dtype


def check_npy_set(paths: dict[str, Path]) -> dict[str, list[int]]:
    """Headers consistent across one set's files (rows, obs = next_obs), values finite.

    ``paths`` maps repository paths (``.../obs_0.npy``) to local files; returns the shapes.
    """
    shapes = {name: npy_header(p, name) for name, p in paths.items()}
    first = next(iter(shapes))
    rows = shapes[first][0][0] if shapes[first][0] else 0
    for name, (shape, _) in shapes.items():
        kind, agent = Path(name).stem.rsplit("_", 1)
        want = "(N,) or (N, 1)" if kind in ("rews", "dones") else "(N, dim)"
        ok = (len(shape) == 1 or shape[1:] == (1,)) if kind in ("rews", "dones") \
            else len(shape) == 2
        if not ok or not shape or shape[0] != rows:
            raise DatasetError(name, "shape", f"its header says {shape}, but the set needs "
                               f"{want} with N = {rows} rows (as {first})", "rerun with "
                               "--force-download; if it stays, the repository's files "
                               "disagree: pin another --revision")
        if kind == "next_obs" and shape != shapes[name.replace("next_obs_", "obs_")][0]:
            raise DatasetError(name, "shape", f"{shape} differs from obs_{agent}.npy's",
                               "next_obs_i and obs_i must have the same shape")
    for name, p in paths.items():
        if shapes[name][1].kind == "f":
            _check_finite(np.load(p, mmap_mode="r", allow_pickle=False), name)
    return {name: list(shape) for name, (shape, _) in shapes.items()}


def _check_finite(arr: np.ndarray, name: str) -> None:
    """Refuse NaN or inf, reading a memory-mapped array a block of rows at a time."""
    step = max(1, CHUNK // max(1, int(np.prod(arr.shape[1:], dtype=np.int64))))
    for start in range(0, arr.shape[0], step):
        bad = ~np.isfinite(arr[start:start + step])
        if bad.any():
            row = start + int(np.argwhere(bad)[0][0])
            raise DatasetError(name, "values", f"non-finite value (NaN or inf) in row {row}",
                               "use a set of finite arrays")


def fetch(files: list[HubFile], repo_id: str, commit: str, endpoint: str,
          cache_dir: str | None, force: bool) -> dict[str, Path]:
    """Download (or find in the huggingface_hub cache) each file at ``commit``."""
    hub = _hub()
    out: dict[str, Path] = {}
    for f in files:
        try:
            out[f.path] = Path(hub.hf_hub_download(repo_id, f.path, repo_type="dataset",
                                                   revision=commit, cache_dir=cache_dir,
                                                   endpoint=endpoint, force_download=force))
        except Exception as err:  # only download failures become one line (hub_error)
            _reraise(err, repo_id, commit, endpoint)
    return out


def download(task: str, quality: str, seed: int = 0, out_dir: str | Path | None = None,
             revision: str = DEFAULT_REVISION, endpoint: str | None = None,
             repo_id: str = REPO_ID, folder: str | None = None,
             action_layout: str | None = None, cache_dir: str | None = None,
             force_download: bool = False, command: str | None = None,
             log: Callable[[str], object] = print) -> Path | None:
    """Fetch, check and import one set; return the .npz written, or None if it existed.

    An existing output is never replaced (it is skipped, with a message). The provenance
    record is written first and removed again if the .npz cannot be written, so a failed
    call leaves no output behind; every call re-checks the cached files' digests.
    """
    from om2p_lite.data.dataset import save_dataset
    from om2p_lite.rl.rundir import atomic_write_json
    from om2p_lite.runtime.record import portable_path, provenance

    out = output_path(out_dir or default_out_dir(), task, quality, seed)
    if out.exists():
        log(f"skip {portable_path(out)}: it exists (commit {recorded_commit(out)}); nothing "
            f"was fetched or replaced. Delete it to download it again")
        return None
    _, reward_variant, default_layout = HUB_TASKS[task]
    check_import_labels(task, quality, reward_variant)
    layout = action_layout or default_layout
    folder = (folder or hub_folder(task, quality, seed)).strip("/")
    endpoint = (endpoint or _hub().constants.ENDPOINT).rstrip("/")
    commit, listing = list_commit(repo_id, revision, endpoint)
    where = f"{repo_id}@{commit[:12]} ({endpoint})"
    files = plan_files(listing, folder, where)
    log(f"fetching {len(files)} files of {folder} from {where}")
    local = fetch(files, repo_id, commit, endpoint, cache_dir, force_download)
    records = [check_bytes(local[f.path], f, commit) for f in files]
    shapes = check_npy_set(local)
    ds = import_npy(local[files[0].path].parent, task, reward_variant=reward_variant,
                    quality=quality, action_layout=layout)
    ds.metadata["source"] = f"{repo_id}@{commit}/{folder}"
    record = {"repo": repo_id, "repo_type": "dataset", "endpoint": endpoint,
              "revision": revision, "commit": commit, "folder": folder,
              "task": ds.metadata["task"], "quality": quality, "seed": seed,
              "reward_variant": reward_variant, "action_layout": layout,
              "files": [{**r, "shape": shapes[r["path"]]} for r in records],
              "dataset": out.name, "dataset_checksum": ds.metadata["checksum"],
              "transitions": len(ds), "huggingface_hub": _hub().__version__,
              **{k: v for k, v in provenance(command=command).items()
                 if k in ("command", "om2p_lite", "python", "git_commit", "date")}}
    prov = provenance_path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(prov, record)
    try:
        save_dataset(ds, out)
    except BaseException:
        prov.unlink(missing_ok=True)
        raise
    return out
