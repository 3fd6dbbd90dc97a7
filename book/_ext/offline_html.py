"""Sphinx extension: keep the built book free of requests to other hosts and of page errors.

Not a theme tweak: it only removes sphinx-thebe's loader. Thebe is off here, its loader
names a CDN, and sphinx-thebe 0.3 adds it twice, which is a page error ("THEBE_JS_URL has
already been declared") in every browser.
"""

from __future__ import annotations

from typing import Any

from sphinx.application import Sphinx


def _drop_thebe(app: Sphinx, pagename: str, templatename: str, context: dict, doctree: Any) -> None:
    """Remove sphinx-thebe's scripts from every page: launching thebe is disabled."""
    scripts = context.get("script_files")
    if not scripts:
        return
    kept = []
    for script in scripts:
        filename = str(getattr(script, "filename", script) or "")
        body = str(getattr(script, "attributes", {}).get("body", ""))
        if "thebe" in filename or "THEBE_JS_URL" in body:
            continue
        kept.append(script)
    context["script_files"] = kept


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("html-page-context", _drop_thebe)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
