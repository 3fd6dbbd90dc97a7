"""Colab, simulated: every chapter's first cell installs the project into a bare runtime.

A Colab runtime is a Python with torch (Colab's own CUDA build), ipykernel and ipywidgets
preinstalled and a ``google.colab`` module imported by the kernel. This test builds one:

- a fresh virtual environment (Python 3.12, as Colab uses, when a ``python3.12`` that runs
  and a torch wheel for it are on this machine; otherwise the Python running the tests);
- "preinstalled" torch, ipykernel and ipywidgets: for the same Python, the test's own
  installations of them (and of their requirements) linked into a folder the runtime finds
  through a ``.pth`` file, the way a venv sees ``--system-site-packages``; for another
  Python, ``pip install torch==<this torch>`` into the runtime;
- a stand-in ``google.colab`` package, imported at start-up;
- a "GitHub": a git repository made from this work tree (tracked and untracked,
  non-ignored files), which the setup cell clones through ``OM2P_REPOSITORY=file://...``.

Then, in chapter order and with a fresh kernel per chapter started in the runtime's
``/content`` stand-in, it runs each chapter's setup cell (the clone, ``pip install -e`` of
the clone with the chapter's extras from the package index pip is configured with, the
chapter's imports) and, for the chapters in ``RUN_IN_FULL``, the whole chapter at
``OM2P_BUDGET=smoke`` with ``OM2P_STATIC`` unset, as a Colab user would. Chapters 00-03
run before anything installed the ``envs`` extra, so they prove they do not need it.
Finally it checks the preinstalled torch was kept. nbval already runs every chapter in the
project's own environment; this test is about the launch path.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parent.parent
CHAPTERS = sorted((REPO / "book").glob("[0-9][0-9]_*.ipynb"))
# The cheapest chapter that needs no extra, and the first that needs `envs` (it installs it).
RUN_IN_FULL = ("00", "04")
# Colab ships these (plotly draws in a notebook only where nbformat is installed).
COLAB_PREINSTALLED = ("torch", "ipykernel", "ipywidgets", "nbformat")
KERNEL = "colab-sim"
CELL_TIMEOUT = 900  # seconds: pip installing the envs extra from a cold cache is the longest
GOOGLE_COLAB_STUB = '''"""Stand-in for Colab's google.colab (tests/test_colab_launch.py).

Chapters only ask whether "google.colab" is in sys.modules.
"""
'''


def torch_version() -> str:
    return importlib.metadata.version("torch").split("+")[0]


def runnable_python312() -> str | None:
    """A python3.12 that starts and can install this torch from local wheels, else None."""
    exe = shutil.which("python3.12")
    if exe is None or subprocess.run([exe, "-c", "pass"], capture_output=True).returncode:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        probe = subprocess.run([exe, "-m", "pip", "download", "--no-index", "--no-deps", "-q",
                                "-d", tmp, f"torch=={torch_version()}"], capture_output=True)
    return exe if probe.returncode == 0 else None


def requirement_closure(names: tuple[str, ...]) -> list[importlib.metadata.Distribution]:
    """The installed distributions ``names`` need, their requirements included."""
    seen: dict[str, importlib.metadata.Distribution] = {}
    todo = list(names)
    while todo:
        name = re.sub(r"[-_.]+", "-", todo.pop()).lower()
        if name in seen:
            continue
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue  # an optional requirement that is not installed here
        seen[name] = dist
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return list(seen.values())


def link_preinstalled(base: Path) -> list[str]:
    """Symlink the top-level entries of COLAB_PREINSTALLED's closure into ``base``."""
    base.mkdir()
    linked: list[str] = []
    for dist in requirement_closure(COLAB_PREINSTALLED):
        site = Path(dist.locate_file(""))
        parts = [Path(str(f)).parts for f in dist.files or []]
        tops = {p[0] for p in parts if ".." not in p and p[0] != "__pycache__"}
        for top in sorted(tops):
            target = base / top
            if (site / top).exists() and not target.exists():
                target.symlink_to(site / top)
                linked.append(top)
    return linked


def make_origin(root: Path) -> Path:
    """A git repository holding this work tree (tracked and untracked, non-ignored files)."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard",
                             "-z"], cwd=REPO, capture_output=True, text=True, check=True)
    origin = root / "origin"
    for name in filter(None, listed.stdout.split("\0")):
        if (REPO / name).is_file():
            (origin / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, origin / name)
    git = ["git", "-C", str(origin), "-c", "user.name=test", "-c", "user.email=test@localhost"]
    subprocess.run([*git, "init", "-q", "-b", "main"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "work tree"], check=True)
    return origin


def site_packages(python: Path) -> Path:
    code = "import sysconfig; print(sysconfig.get_path('purelib'))"
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())


def make_runtime(root: Path) -> dict:
    """The bare Colab stand-in: venv, preinstalled packages, google.colab, kernelspec."""
    py312 = runnable_python312()
    venv = root / "runtime"
    subprocess.run([py312 or sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = site_packages(python)
    stub = root / "colab-stub"
    (stub / "google" / "colab").mkdir(parents=True)  # `google` stays a namespace package
    (stub / "google" / "colab" / "__init__.py").write_text(GOOGLE_COLAB_STUB)
    paths = [str(stub)]
    if py312 is None:
        base = root / "preinstalled"
        assert "torch" in link_preinstalled(base)
        paths.insert(0, str(base))
    else:
        subprocess.run([str(python), "-m", "pip", "install", "-q", f"torch=={torch_version()}",
                        *COLAB_PREINSTALLED[1:]], check=True)
    (site / "colab_sim.pth").write_text("\n".join([*paths, "import google.colab", ""]))
    spec = root / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Colab stand-in", "language": "python"}))
    content = root / "content"
    content.mkdir()
    return {"python": python, "venv": venv, "jupyter": root / "jupyter", "content": content}


def torch_in(python: Path) -> tuple[str, str]:
    out = subprocess.run([str(python), "-c", "import importlib.metadata as m, torch; "
                          "print(m.version('torch')); print(torch.__file__)"],
                         capture_output=True, text=True, check=True)
    version, where = out.stdout.split()
    return version, where


def cell_text(cell: dict) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", [])
                   if o.get("output_type") == "stream")


def run_chapter(path: Path, content: Path, full: bool) -> tuple[str, float]:
    """Run the setup cell (and, with ``full``, the whole chapter); return its text and time."""
    nb = nbformat.read(path, as_version=4)
    first = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code")
    if not full:
        nb.cells = nb.cells[: first + 1]
    client = NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name=KERNEL,
                            resources={"metadata": {"path": str(content)}})
    t0 = time.perf_counter()
    client.execute()
    return cell_text(nb.cells[first]), time.perf_counter() - t0


@pytest.mark.slow
def test_each_chapter_installs_itself_in_a_bare_colab_runtime(tmp_path, monkeypatch) -> None:
    assert CHAPTERS, "no chapters under book/"
    origin = make_origin(tmp_path)
    runtime = make_runtime(tmp_path)
    kept = torch_in(runtime["python"])
    for name in ("OM2P_STATIC", "OM2P_CHECKOUT", "PYTHONPATH", "VIRTUAL_ENV"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OM2P_BUDGET", "smoke")
    monkeypatch.setenv("OM2P_REPOSITORY", origin.as_uri())
    monkeypatch.setenv("JUPYTER_PATH", str(runtime["jupyter"]))
    monkeypatch.setenv("PATH", f"{runtime['venv'] / 'bin'}{os.pathsep}{os.environ['PATH']}")

    installed_extras: set[str] = set()
    times = {}
    for path in CHAPTERS:
        chapter = path.name[:2]
        extras = ("envs",) if int(chapter) >= 4 else ()
        try:
            text, seconds = run_chapter(path, runtime["content"], chapter in RUN_IN_FULL)
        except Exception as exc:  # name the chapter; nbclient's message has the traceback
            pytest.fail(f"{path.name} failed in the Colab stand-in: {exc}")
        times[path.name] = round(seconds, 1)
        assert f"om2p-lite setup (Colab), chapter {chapter}" in text, text
        assert f"with extras [{','.join(extras) or 'none'}]" in text, text
        fresh = "-".join(extras) not in installed_extras
        assert (": installed " if fresh else ": already installed ") in text, text
        installed_extras.add("-".join(extras))
        assert "working directory: " + str(runtime["content"] / "om2p-lite" / "book") in text

    checkout = runtime["content"] / "om2p-lite"
    remote = subprocess.run(["git", "-C", str(checkout), "remote", "get-url", "origin"],
                            capture_output=True, text=True, check=True).stdout.strip()
    assert remote == origin.as_uri()  # cloned from OM2P_REPOSITORY, not from the network
    assert torch_in(runtime["python"]) == kept  # Colab's own torch was not replaced
    print("seconds per chapter (setup only unless in RUN_IN_FULL):", times)
