"""The first cell of every chapter: install what the chapter needs on Colab, check it elsewhere.

A chapter opened in Google Colab starts in a bare runtime: its first cell clones the
repository (the URL comes from ``pyproject.toml``; ``scripts/sync_setup.py`` writes it into
each chapter) and then calls :func:`setup_chapter`, which

1. installs the clone in editable mode with the chapter's extras (``envs`` from chapter 04
   on, for mpe2 and MaMuJoCo), pinning the torch that is already there so Colab keeps its
   own CUDA build (a constraints file ``torch==<installed version>``);
2. changes into the clone's ``book/`` folder, where the chapters read ``../data``;
3. prints what it did.

Anywhere else (a laptop, ``make book``, the tests) the project is installed already; the
function installs nothing and only checks that the chapter's extras are importable, so a
missing ``envs`` extra is reported in the first cell rather than deep inside a later one.

This module imports only the standard library: on Colab it runs before the project's
dependencies are installed.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

CHECKOUT_ENV = "OM2P_CHECKOUT"  # where the chapter's first cell cloned the repository
REPOSITORY_ENV = "OM2P_REPOSITORY"  # overrides the clone URL (a local path in the tests)
FIRST_ENVS_CHAPTER = 4  # chapters from here on step mpe2 / MaMuJoCo environments
# One importable module per extra: present means the extra is installed.
EXTRA_PROBES: dict[str, str] = {"envs": "mpe2", "book": "jupyter_book", "scale": "distributed"}
STAMP = "om2p-colab-installed"  # in the clone's .git/: "<extras>" once pip installed them


@dataclass
class SetupReport:
    """What :func:`setup_chapter` found and did (also printed as one or two lines)."""

    chapter: str
    extras: tuple[str, ...]
    colab: bool
    installed: bool = False
    torch: str | None = None
    checkout: str | None = None
    workdir: str = field(default_factory=os.getcwd)

    def lines(self) -> list[str]:
        """The human-readable summary printed by the chapter's first cell."""
        extras = ",".join(self.extras) or "none"
        torch = f"torch {self.torch}" if self.torch else "torch not installed"
        if self.colab:
            action = ("installed" if self.installed else "already installed")
            kept = f"kept {torch}" if self.torch else "torch came from the package index"
            return [f"om2p-lite setup (Colab), chapter {self.chapter}: {action} "
                    f"{self.checkout} with extras [{extras}]; {kept}",
                    f"working directory: {self.workdir}"]
        needs = f"needs extras [{extras}]: installed" if self.extras else "needs no extra"
        return [f"om2p-lite {_version()} from {Path(__file__).resolve().parents[1]}, {torch}; "
                f"chapter {self.chapter} {needs}"]


def chapter_extras(chapter: str | int) -> tuple[str, ...]:
    """The pip extras a chapter needs: ``("envs",)`` from chapter 04 on, else none.

    >>> chapter_extras("02"), chapter_extras(5)
    ((), ('envs',))
    """
    try:
        number = int(chapter)
    except (TypeError, ValueError):
        raise ValueError(f"chapter: {chapter!r} is not a chapter number. "
                         "Fix: pass the two digits the notebook's file name starts with, "
                         "e.g. setup_chapter('04').") from None
    return ("envs",) if number >= FIRST_ENVS_CHAPTER else ()


def in_colab() -> bool:
    """True inside a Google Colab runtime (its ``google.colab`` module is imported)."""
    return "google.colab" in sys.modules


def missing_extras(extras: tuple[str, ...]) -> list[str]:
    """The extras among ``extras`` whose probe module cannot be imported."""
    importlib.invalidate_caches()
    return [e for e in extras
            if e in EXTRA_PROBES and importlib.util.find_spec(EXTRA_PROBES[e]) is None]


def pip_command(checkout: Path, extras: tuple[str, ...], constraints: Path | None) -> list[str]:
    """The pip command that installs the clone (editable) with ``extras``."""
    target = f"{checkout}[{','.join(extras)}]" if extras else str(checkout)
    cmd = [sys.executable, "-m", "pip", "install", "-q", "-e", target]
    if constraints is not None:
        cmd += ["-c", str(constraints)]
    return cmd


def _torch_version() -> str | None:
    try:
        return importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        return None


def _version() -> str:
    from om2p_lite import __version__

    return __version__


def _install(checkout: Path, extras: tuple[str, ...], torch: str | None) -> bool:
    """pip-install the clone unless the stamp says these extras are in; True if pip ran.

    The stamp lives in the clone's ``.git/`` so the work tree stays clean (provenance
    records would otherwise call it dirty).
    """
    stamp = (checkout / ".git" if (checkout / ".git").is_dir() else checkout) / STAMP
    wanted = ",".join(extras) or "-"
    if stamp.is_file() and wanted in stamp.read_text().split():
        return False
    with tempfile.TemporaryDirectory() as tmp:
        constraints = None
        if torch is not None:  # keep the runtime's own (CUDA) torch: pip may not replace it
            constraints = Path(tmp) / "constraints.txt"
            constraints.write_text(f"torch=={torch}\n")
        cmd = pip_command(checkout, extras, constraints)
        print("om2p-lite setup:", " ".join(cmd[2:]), flush=True)
        done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"pip install of {checkout} failed (exit {done.returncode}):\n"
                           f"{done.stderr[-3000:]}\nFix: read pip's message above; "
                           "Runtime > Restart session and run this cell again.")
    previous = stamp.read_text().split() if stamp.is_file() else []
    stamp.write_text(" ".join([*previous, wanted]) + "\n")
    importlib.invalidate_caches()  # packages pip just added become importable
    return True


def setup_chapter(chapter: str | int, *, quiet: bool = False) -> SetupReport:
    """Make the running kernel ready for ``chapter``: install on Colab, check elsewhere.

    On Colab the repository must already be cloned at ``$OM2P_CHECKOUT`` (the chapter's
    first cell does that); the clone is pip-installed with :func:`chapter_extras` while the
    installed torch is held fixed, and the working directory becomes the clone's ``book/``.
    Elsewhere nothing is installed: a missing extra raises ``ImportError`` naming the fix.
    Prints a summary unless ``quiet``; returns it as a :class:`SetupReport`.
    """
    extras = chapter_extras(chapter)
    chapter = f"{int(chapter):02d}"
    torch = _torch_version()
    if in_colab():
        checkout_text = os.environ.get(CHECKOUT_ENV)
        if not checkout_text or not (Path(checkout_text) / "pyproject.toml").is_file():
            raise RuntimeError(f"{CHECKOUT_ENV}: {checkout_text!r} is not a clone of the "
                               "repository. Fix: run the chapter's first cell from its top "
                               "(it clones the repository and sets this variable).")
        checkout = Path(checkout_text).resolve()
        installed = _install(checkout, extras, torch)
        os.chdir(checkout / "book")
        report = SetupReport(chapter, extras, True, installed, torch, str(checkout))
    else:
        missing = missing_extras(extras)
        if missing:
            raise ImportError(f"chapter {chapter}: the om2p-lite extra(s) {missing} are not "
                              "installed. Fix: pip install -e '.["
                              f"{','.join(missing)}]' from the repository root "
                              "(or `make setup`), then restart the kernel.")
        report = SetupReport(chapter, extras, False, False, torch)
    if not quiet:
        print("\n".join(report.lines()), flush=True)
    return report
