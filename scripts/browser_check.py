"""Open every page of the built book in headless Chromium and check that it renders offline.

Not a unit test and not a link checker: `make test` runs it after building the book at
OM2P_BUDGET=smoke. It fails on any request that leaves 127.0.0.1, any console or page
error, any plotly figure that was not drawn, untypeset math, a page with more than one
title (level-1 heading), or a notebook chapter without its Colab button.

    python scripts/browser_check.py [--html _build/html] [--toc _toc.yml]
"""

from __future__ import annotations

import argparse
import functools
import http.server
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-quic",
    "--no-first-run",
    "--disable-sync",
    "--disable-domain-reliability",
    "--disable-client-side-phishing-detection",
    "--no-default-browser-check",
    # Belt and braces: no host name but the local one resolves, so even a request the
    # page-level interception below cannot see has nowhere to go.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
]
LOCAL_HOSTS = {"127.0.0.1"}
LOCAL_SCHEMES = {"data", "blob", "about"}

# JavaScript run in the page: what was drawn.
PAGE_STATE_JS = """() => {
  const divs = Array.from(document.querySelectorAll('.plotly-graph-div, .js-plotly-plot'));
  const uniq = Array.from(new Set(divs));
  const drawn = uniq.filter(d => d.querySelector('svg.main-svg') !== null).length;
  const math = document.querySelectorAll('div.math, span.math, .math-wrapper').length;
  const typeset = document.querySelectorAll('mjx-container').length;
  const titles = Array.from(document.querySelectorAll('article.bd-article h1'))
      .map(h => Array.from(h.childNodes).filter(n => !(n.classList
          && n.classList.contains('headerlink'))).map(n => n.textContent).join('').trim());
  return {figures: uniq.length, drawn: drawn, math: math, typeset: typeset, titles: titles};
}"""
DRAWN_JS = """() => {
  const divs = Array.from(new Set(document.querySelectorAll('.plotly-graph-div, .js-plotly-plot')));
  const mathDone = document.querySelectorAll('div.math, span.math').length === 0
      || document.querySelectorAll('mjx-container').length > 0;
  return mathDone && divs.every(d => d.querySelector('svg.main-svg') !== null);
}"""


@dataclass
class PageResult:
    """What one page showed: its problems (empty when it passed) and what was counted."""

    docname: str
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def toc_docnames(toc_path: Path) -> list[str]:
    """Every document named in a Jupyter Book `_toc.yml`, root first, in reading order."""
    import yaml

    toc = yaml.safe_load(toc_path.read_text())
    if not isinstance(toc, dict) or "root" not in toc:
        raise SystemExit(f"{toc_path}: no 'root' entry; is this a Jupyter Book _toc.yml?")
    names = [str(toc["root"])]

    def walk(entries: list[dict[str, Any]]) -> None:
        for entry in entries or []:
            if "file" in entry:
                names.append(str(entry["file"]))
            for key in ("parts", "chapters", "sections"):
                walk(entry.get(key, []))

    walk([{k: toc[k]} for k in ("parts", "chapters") if k in toc])
    return [n.removesuffix(".md").removesuffix(".ipynb") for n in names]


def serve(directory: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    """Serve `directory` on 127.0.0.1 at a free port from a daemon thread."""

    class QuietHandler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    handler = functools.partial(QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def check_page(context: Any, base: str, docname: str, book_root: Path, html: Path,
               shot_dir: Path, timeout_ms: int) -> PageResult:
    """Load one page, wait for figures and math, and record every problem it shows."""
    result = PageResult(docname)
    if not (html / f"{docname}.html").is_file():
        result.problems.append(f"{html / docname}.html was not built")
        return result

    page = context.new_page()
    page.on("console", lambda m: m.type == "error" and result.problems.append(
        f"console error: {m.text[:300]}"))
    page.on("pageerror", lambda e: result.problems.append(f"page error: {str(e)[:300]}"))
    page.on("websocket", lambda ws: result.problems.append(f"websocket opened: {ws.url}"))

    t0 = time.perf_counter()
    page.goto(f"{base}/{docname}.html", wait_until="load", timeout=timeout_ms)
    page.wait_for_load_state("networkidle", timeout=timeout_ms)
    try:
        page.wait_for_function(DRAWN_JS, timeout=timeout_ms)
    except Exception:  # playwright's TimeoutError; the counts below say what is missing
        pass
    state = page.evaluate(PAGE_STATE_JS)
    seconds = time.perf_counter() - t0

    if state["drawn"] < state["figures"]:
        result.problems.append(
            f"{state['figures'] - state['drawn']} of {state['figures']} plotly figures not "
            "drawn (no svg.main-svg): use the 'notebook' renderer, om.plots.setup_plotly()")
    if state["math"] and not state["typeset"]:
        result.problems.append(f"{state['math']} math blocks but MathJax typeset none")
    if len(state["titles"]) != 1:
        shown = "; ".join(t[:60] for t in state["titles"][:3])
        result.problems.append(
            f"{len(state['titles'])} level-1 headings, expected one title ({shown}); a markdown "
            "cell whose lines start with '# ' (a leftover jupytext comment?) does this")
    result.notes.append(f"figures {state['drawn']}/{state['figures']} drawn")
    result.notes.append(f"math {state['typeset']} typeset")

    if (book_root / f"{docname}.ipynb").is_file():
        colab = page.locator(f'a[href^="https://colab.research.google.com/"][href$="{docname}.ipynb"]')
        if colab.count() == 0:
            result.problems.append("no Colab launch button linking to this notebook")
        else:
            result.notes.append("colab link")

    shot = shot_dir / f"screenshot_{Path(docname).name}.png"
    page.screenshot(path=str(shot), full_page=True)
    result.notes.append(f"{seconds:.1f}s, {shot}")
    page.close()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--html", type=Path, default=REPO / "_build" / "html",
                        help="built book (default: _build/html)")
    parser.add_argument("--toc", type=Path, default=REPO / "_toc.yml",
                        help="table of contents listing the pages to open (default: _toc.yml)")
    parser.add_argument("--screenshots", type=Path, default=None,
                        help="folder for screenshot_<chapter>.png (default: parent of --html)")
    parser.add_argument("--chromium", default=CHROMIUM, help=f"browser binary ({CHROMIUM})")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per page wait")
    args = parser.parse_args(argv)

    html = args.html.resolve()
    book_root = args.toc.resolve().parent
    shot_dir = (args.screenshots or html.parent).resolve()
    if not (html / "index.html").is_file():
        print(f"browser check: {html}/index.html missing; build the book first (make book)")
        return 1
    if not Path(args.chromium).is_file():
        print(f"browser check: no browser at {args.chromium}; run `make setup` "
              "(installs Debian's chromium) or pass --chromium PATH")
        return 1
    shot_dir.mkdir(parents=True, exist_ok=True)
    docnames = toc_docnames(args.toc)

    from playwright.sync_api import sync_playwright

    server, base = serve(html)
    outside: list[str] = []

    def guard(route: Any) -> None:
        url = route.request.url
        parts = urlsplit(url)
        if parts.scheme in LOCAL_SCHEMES or parts.hostname in LOCAL_HOSTS:
            route.continue_()
        else:
            outside.append(url)
            route.abort("blockedbyclient")

    results: list[PageResult] = []
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=args.chromium, headless=True,
                                         args=CHROMIUM_ARGS)
            context = browser.new_context(viewport={"width": 1280, "height": 900},
                                          service_workers="block")
            context.route("**/*", guard)
            for docname in docnames:
                n_outside = len(outside)
                try:
                    result = check_page(context, base, docname, book_root, html, shot_dir,
                                        int(args.timeout * 1000))
                except Exception as exc:  # a page that will not even load
                    result = PageResult(docname, [f"could not load: {exc}".splitlines()[0]])
                for url in outside[n_outside:]:
                    result.problems.append(f"request to a host other than 127.0.0.1: {url}")
                results.append(result)
                status = "FAIL" if result.problems else "ok  "
                print(f"{status} {docname}: {', '.join(result.notes)}", flush=True)
                for problem, count in Counter(result.problems).items():
                    times = f" (x{count})" if count > 1 else ""
                    print(f"     {docname}: {problem}{times}", flush=True)
            browser.close()
    finally:
        server.shutdown()

    failed = [r for r in results if r.problems]
    print(f"browser check: {len(results)} pages, {len(results) - len(failed)} passed, "
          f"{len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
