"""What produced a number: command, seed, device, versions, git commit, date.

Not a results store: it returns a dict that callers write beside their results. Paths in
it are repository-relative, so a result says nothing about the machine's folders.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import platform
import re
import shlex
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from om2p_lite import __version__

MODULE_COMMAND = "python -m om2p_lite"


@functools.lru_cache(maxsize=1)
def repo_root() -> Path | None:
    """The checkout holding this package (git's top level), or None when installed elsewhere."""
    here = Path(__file__).resolve().parent
    try:
        top = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=here,
                             capture_output=True, text=True, check=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    root = Path(top.stdout.strip()).resolve()
    return root if (root / "om2p_lite").is_dir() else None


def portable_path(path: str | Path) -> str:
    """``path`` as it may be recorded: relative paths as given, absolute paths inside the
    repository relative to its root, any other absolute path by its name only."""
    text = os.fspath(path)
    if not os.path.isabs(text):
        return Path(text).as_posix()
    resolved = Path(text).resolve()
    root = repo_root()
    if root is not None:
        try:
            return resolved.relative_to(root).as_posix() or "."
        except ValueError:
            pass
    return resolved.name


def portable_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """A run's config as it may be recorded: its path fields (``out_dir``, ``dataset``)
    made portable."""
    out = dict(config)
    for key in ("out_dir", "dataset"):
        if out.get(key):
            out[key] = portable_path(out[key])
    return out


def _portable_token(token: str) -> str:
    if token.startswith("--") and "=" in token:
        flag, value = token.split("=", 1)
        return f"{flag}={_portable_token(value)}"
    return portable_path(token) if os.path.isabs(token) else token


def portable_command(command: str | Sequence[str] | None = None) -> str:
    """A command line with every absolute path made portable (``portable_path``).

    ``None`` means this process's own ``sys.argv``; a run of ``python -m om2p_lite`` is
    written that way rather than as the path of ``__main__.py``.
    """
    if command is None:
        argv = list(sys.argv)
        if argv and Path(argv[0]).name == "__main__.py" and Path(argv[0]).parent.name == \
                "om2p_lite":
            return " ".join([MODULE_COMMAND, *(shlex.quote(_portable_token(a))
                                               for a in argv[1:])])
        argv = ["python", *argv] if argv and argv[0].endswith(".py") else argv
    elif isinstance(command, str):
        try:
            argv = shlex.split(command)
        except ValueError:  # unbalanced quotes: keep the text, strip the checkout's prefix
            return portable_text(command)
    else:
        argv = list(command)
    prefix = MODULE_COMMAND.split()
    if argv[: len(prefix)] == prefix:
        return " ".join([MODULE_COMMAND, *(shlex.quote(_portable_token(a))
                                           for a in argv[len(prefix):])])
    return shlex.join(_portable_token(a) for a in argv)


def portable_text(text: str) -> str:
    """Free text (an error message, a log line) with the checkout's absolute prefix removed."""
    root = repo_root()
    if root is None:
        return text
    return text.replace(str(root) + os.sep, "").replace(str(root), ".")


def git_commit(path: str | Path | None = None) -> str:
    """The current commit (with '-dirty' if tracked files have changes), or 'unknown'.

    Changes under ``data/results/`` do not count: a run that writes results there (a
    benchmark suite, a grid) would otherwise call every result after its first one dirty.
    """
    named = _commit_from_env()
    if named:  # the sender of a copied tree knows its commit best
        return named
    if path is None:
        return _package_commit()
    return _read_commit(Path(path))


@functools.lru_cache(maxsize=1)
def _package_commit() -> str:
    """The package's commit, read once per process: the code that runs is the code imported.

    Read once, a loaded machine cannot turn a later result's commit into 'unknown' (a
    ``git status`` over a large tree can take seconds while every core trains).
    """
    return _read_commit(Path(__file__).resolve().parent)


def _read_commit(cwd: Path) -> str:
    """``git rev-parse HEAD`` plus the dirty mark at ``cwd``, or 'unknown' without git."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True,
                             text=True, check=True, timeout=120).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no",
                                "--", ":/", ":(exclude,top)data/results"],
                               cwd=cwd, capture_output=True, text=True, check=True,
                               timeout=120).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{sha}-dirty" if dirty else sha


def _commit_from_env() -> str | None:
    """The commit named by ``OM2P_GIT_COMMIT``, for a copy of the tree sent to another node.

    A batch or GPU node often receives the source as an export of one commit (``git
    archive``, rsync of a checkout), with no ``.git`` or a stale one; whoever sends it names
    the commit, and that name wins. Anything that is not a 40-digit hexadecimal name
    (optionally with ``-dirty``) is refused.
    """
    value = os.environ.get("OM2P_GIT_COMMIT", "").strip()
    if not value:
        return None
    if not re.fullmatch(r"[0-9a-f]{40}(-dirty)?", value):
        raise ValueError(f"OM2P_GIT_COMMIT={value!r} is not a commit name. Fix: set it to "
                         "the output of `git rev-parse HEAD` of the tree this copy came from.")
    return value


def is_dirty(commit: str | None) -> bool:
    """Whether a recorded ``git_commit`` says the tree had uncommitted changes."""
    return bool(commit) and str(commit).endswith("-dirty")


def provenance(seed: int | None = None, device: Any = None, budget: Any = None,
               command: str | Sequence[str] | None = None) -> dict[str, Any]:
    """A record to keep beside a result: how to reproduce it and on what it ran.

    The command (default: this process's) is recorded with repository-relative paths.
    """
    import torch

    from om2p_lite.runtime.device import describe_device

    return {
        "command": portable_command(command),
        "seed": seed,
        "device": describe_device(torch.device(device)) if device is not None else None,
        "budget": getattr(budget, "name", budget),
        "om2p_lite": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "git_commit": git_commit(),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
