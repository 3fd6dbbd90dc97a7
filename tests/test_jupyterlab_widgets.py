"""Live sliders in a real JupyterLab: the chapter runs, the slider moves, the figure follows.

Every build and notebook test of the book sets ``OM2P_STATIC=1``, so the ipywidgets code
paths of :mod:`om2p_lite.book.widgets` run nowhere else. For each (chapter, slider) case
this test

1. copies the chapter into a temporary server root (the repository's ``data/`` linked
   beside it, so the chapter reads ``../data`` as in ``book/``; the copy may be autosaved
   with outputs, ``book/`` is never touched);
2. starts ``jupyter lab`` on 127.0.0.1 with a token, its own config/data/settings folders,
   no news feed and no update check, and ``OM2P_STATIC`` unset at ``OM2P_BUDGET=smoke``;
3. opens the chapter in headless Chromium (Playwright) and runs, one by one as a reader
   would, the cells the slider needs: the setup cell, the slider's cell and every earlier
   cell that defines a name they use (found with ``ast``; nbval already runs every cell
   of every chapter, so the expensive figures in between are left out), failing on any
   error output;
4. presses the arrow key on the slider's handle, and checks that the read-out next to it
   and the plotly figure below it both change and that the new figure is drawn;

and fails on any console error or page error, and on any request to a host other than
127.0.0.1. The widget JavaScript must be served by the local server from the installed
``jupyterlab_widgets`` extension (checked among the requests), not fetched from a CDN.
"""

from __future__ import annotations

import ast
import builtins
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("OM2P_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update"]
WIDGETS_JS = "/lab/extensions/@jupyter-widgets/jupyterlab-manager/"
RUN_TIMEOUT_S = 600  # the slider's cells at smoke, on a busy 2-core machine
MOVE_TIMEOUT_S = 300  # one retraining after the slider moved


@dataclass(frozen=True)
class Case:
    """A chapter and the live slider in it, found by its description label."""

    notebook: str  # glob under book/, e.g. "02_*.ipynb"
    call: str  # text that marks the cell showing the slider
    label: str  # the slider's description, as shown left of it
    key: str = "ArrowRight"  # moves the slider one step


CASES = [Case("02_*.ipynb", "toy_dr_explorer(", "log10 Δr"),
         Case("07_*.ipynb", "eta_explorer(", "η")]


def names(source: str) -> tuple[set[str], set[str]]:
    """(names a cell binds, names it reads without binding them first in the cell)."""
    tree = ast.parse(source)
    bound: set[str] = set()
    read: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (bound if isinstance(node.ctx, ast.Store | ast.Del) else read).add(node.id)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            bound.add(node.name)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            bound.update((a.asname or a.name).split(".")[0] for a in node.names)
    return bound, read - bound - set(dir(builtins))


def cells_needed(cells: list[dict], call: str) -> list[int]:
    """Indices of the code cells to run for the cell containing ``call``, in order."""
    code = [i for i, c in enumerate(cells) if c["cell_type"] == "code"]
    target = next((i for i in code if call in "".join(cells[i]["source"])), None)
    assert target is not None, f"no code cell contains {call!r}"
    needed, wanted = {code[0], target}, names("".join(cells[target]["source"]))[1]
    for i in reversed([i for i in code if i < target]):
        bound, read = names("".join(cells[i]["source"]))
        if bound & wanted:
            needed.add(i)
            wanted = (wanted - bound) | read
    return sorted(needed | {code[0]})


def case_params() -> list[Any]:
    params = []
    for case in CASES:
        found = sorted((REPO / "book").glob(case.notebook))
        marks = [] if found else [pytest.mark.skip(reason=f"no book/{case.notebook} yet")]
        params.append(pytest.param(case, id=case.notebook.split("_")[0], marks=marks))
    return params


# JavaScript run in the page. `window.jupyterapp` is exposed by --expose-app-in-browser.
RUN_STATE_JS = """() => {
  const panel = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  if (!panel || !panel.content || !panel.content.model || !panel.sessionContext) return null;
  const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
  const executed = [];
  const errors = [];
  let index = 0;
  for (const cell of panel.content.model.cells) {
    if (cell.type === 'code') {
      if (cell.executionCount !== null) executed.push(index);
      for (const out of cell.outputs.toJSON()) {
        if (out.output_type === 'error') errors.push(out.ename + ': ' + out.evalue);
      }
    }
    index += 1;
  }
  return {executed: executed, errors: errors, status: kernel ? kernel.status : null};
}"""
RUN_CELL_JS = """(index) => {
  const panel = window.jupyterapp.shell.currentWidget;
  panel.content.activeCellIndex = index;
  panel.content.deselectAll();
  window.jupyterapp.commands.execute('notebook:run-cell');
  return true;
}"""
# The widget box around the slider labelled `label`: its read-out and figure.
BOX_STATE_JS = """(label) => {
  const sliders = Array.from(document.querySelectorAll('.widget-slider'));
  const slider = sliders.find(s => {
    const l = s.querySelector('.widget-label');
    return l && l.textContent.trim() === label;
  });
  if (!slider) return null;
  let box = slider.parentElement;
  while (box && !(box.classList.contains('widget-vbox') && box.querySelector('.widget-html')))
    box = box.parentElement;
  if (!box) return {found: true, readout: null, figure: null, drawn: false};
  const html = box.querySelector('.widget-html-content, .widget-html');
  const gd = box.querySelector('.js-plotly-plot');
  let figure = null;
  if (gd && gd.data) {
    figure = JSON.stringify(gd.data.map(t => [t.name, Array.from(t.x || []).slice(0, 8),
                                               Array.from(t.y || []).slice(0, 8)]));
  }
  return {found: true, readout: html ? html.textContent.trim() : null, figure: figure,
          drawn: !!(gd && gd.querySelector('svg.main-svg'))};
}"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float, what: str, poll: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.fixture
def lab(tmp_path: Path):
    """A JupyterLab server on 127.0.0.1 serving a copy of book/; yields (url, root, log)."""
    root = tmp_path / "root"
    (root / "book").mkdir(parents=True)
    (root / "data").symlink_to(REPO / "data")
    env = {k: v for k, v in os.environ.items() if k not in ("OM2P_STATIC", "PYTHONPATH")}
    for name, sub in [("JUPYTER_CONFIG_DIR", "config"), ("JUPYTER_DATA_DIR", "data"),
                      ("JUPYTER_RUNTIME_DIR", "runtime"), ("IPYTHONDIR", "ipython"),
                      ("JUPYTERLAB_SETTINGS_DIR", "settings"),
                      ("JUPYTERLAB_WORKSPACES_DIR", "workspaces")]:
        env[name] = str(tmp_path / "jupyter" / sub)
    env.update(OM2P_BUDGET="smoke", TQDM_DISABLE="1")
    token, port = secrets.token_hex(16), free_port()
    log = tmp_path / "jupyterlab.log"
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1",
           f"--port={port}", "--port-retries=0", f"--IdentityProvider.token={token}",
           f"--ServerApp.root_dir={root}", "--LabApp.expose_app_in_browser=True",
           "--ServerApp.terminals_enabled=False",
           # nothing from the internet: no news feed, no update check, no PyPI extension list
           "--LabApp.news_url=None", "--LabApp.extension_manager=readonly",
           "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")  # CI containers run as root
    with log.open("w") as log_file:
        server = subprocess.Popen(cmd, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                                  cwd=root)
    base = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        if server.poll() is not None:
            raise AssertionError(f"jupyter lab exited:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    try:
        wait_for(ready, 120, "jupyter lab to answer on 127.0.0.1")
        yield base, token, root, log
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@pytest.mark.slow
@pytest.mark.parametrize("case", case_params())
def test_live_slider_redraws_in_jupyterlab(case: Case, lab, tmp_path: Path) -> None:
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"no browser at {CHROMIUM}. Fix: `make setup` installs Debian's chromium, "
                    "or set OM2P_CHROMIUM=/path/to/chromium")
    from playwright.sync_api import sync_playwright

    base, token, root, log = lab
    chapter = sorted((REPO / "book").glob(case.notebook))[0]
    shutil.copy(chapter, root / "book" / chapter.name)
    run = cells_needed(json.loads(chapter.read_text(encoding="utf-8"))["cells"], case.call)

    problems: list[str] = []
    requests: list[str] = []

    def guard(route: Any) -> None:
        url = route.request.url
        parts = urlsplit(url)
        if parts.scheme in ("data", "blob", "about") or parts.hostname == "127.0.0.1":
            requests.append(url)
            route.continue_()
        else:
            problems.append(f"request to a host other than 127.0.0.1: {url}")
            route.abort("blockedbyclient")

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                     args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 1000},
                                      service_workers="block")
        context.route("**/*", guard)
        page = context.new_page()
        page.on("console", lambda m: m.type == "error" and problems.append(
            f"console error: {m.text[:300]}"))
        page.on("pageerror", lambda e: problems.append(f"page error: {str(e)[:300]}"))
        try:
            page.goto(f"{base}/lab/tree/book/{chapter.name}?token={token}",
                      wait_until="load", timeout=120_000)

            def kernel_idle() -> Any:
                state = page.evaluate(RUN_STATE_JS)
                return state if state and state["status"] == "idle" else None

            wait_for(kernel_idle, 120, "the notebook to open with an idle kernel")
            t0 = time.monotonic()
            for index in run:
                # not awaited: the command's promise settles only when the cell has run
                page.evaluate(RUN_CELL_JS, index)

                def finished(index: int = index) -> Any:
                    state = page.evaluate(RUN_STATE_JS)
                    if state and state["errors"]:
                        raise AssertionError(f"{chapter.name}: cell error {state['errors']}")
                    done = state and index in state["executed"] and state["status"] == "idle"
                    return state if done else None

                wait_for(finished, max(1.0, RUN_TIMEOUT_S - (time.monotonic() - t0)),
                         f"{chapter.name}, cell {index}, to run", poll=1)
            run_s = time.monotonic() - t0

            before = wait_for(lambda: (s := page.evaluate(BOX_STATE_JS, case.label))
                              and s["readout"] and s["figure"] and s["drawn"] and s, 60,
                              f"the '{case.label}' slider with a read-out and a drawn figure")
            handle = page.locator(".widget-slider", has_text=case.label).locator(
                ".noUi-handle").first
            handle.scroll_into_view_if_needed()
            handle.focus()
            page.keyboard.press(case.key)
            t1 = time.monotonic()

            def redrawn() -> Any:
                s = page.evaluate(BOX_STATE_JS, case.label)
                changed = (s and s["drawn"] and s["readout"] != before["readout"]
                           and s["figure"] != before["figure"])
                return s if changed else None

            after = wait_for(redrawn, MOVE_TIMEOUT_S,
                             f"the read-out and figure to change after moving '{case.label}'")
            move_s = time.monotonic() - t1
            page.screenshot(path=str(tmp_path / f"jupyterlab_{chapter.stem}.png"), full_page=True)
        except Exception:
            print(f"--- jupyter lab log (tail) ---\n{log.read_text()[-4000:]}")
            raise
        finally:
            browser.close()

    print(f"{chapter.name}: cells {run} ran in {run_s:.0f} s; '{case.label}' moved, redrawn in "
          f"{move_s:.0f} s: {before['readout']!r} -> {after['readout']!r}")
    assert not problems, "\n".join(dict.fromkeys(problems))
    widget_js = [u for u in requests if WIDGETS_JS in urlsplit(u).path]
    assert widget_js, ("the ipywidgets manager was not loaded from the local JupyterLab "
                       f"(no request under {WIDGETS_JS}); is jupyterlab_widgets installed?")
    assert json.loads(after["figure"]) != json.loads(before["figure"])
