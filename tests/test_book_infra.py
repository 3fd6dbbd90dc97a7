"""Tests for the book's own tooling: the no-outputs check and the browser check's page list.

Not tests of the library or of the chapters (nbval runs those).
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def load_script(name: str):
    """Import scripts/<name>.py as a module (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


def write_notebook(path: Path, outputs: list, execution_count: int | None) -> Path:
    cell = {"cell_type": "code", "metadata": {}, "source": "1 + 1",
            "outputs": outputs, "execution_count": execution_count}
    path.write_text(json.dumps({"cells": [cell], "metadata": {}, "nbformat": 4,
                                "nbformat_minor": 5}))
    return path


def test_no_outputs_check_passes_a_stripped_notebook(tmp_path: Path) -> None:
    check = load_script("check_no_outputs")
    clean = write_notebook(tmp_path / "clean.ipynb", [], None)
    assert check.main(["--worktree", str(clean)]) == 0


def test_no_outputs_check_names_each_offending_notebook(tmp_path: Path, capsys) -> None:
    check = load_script("check_no_outputs")
    output = {"output_type": "execute_result", "data": {"text/plain": "2"}, "metadata": {},
              "execution_count": 3}
    dirty = write_notebook(tmp_path / "dirty.ipynb", [output], 3)
    counted = write_notebook(tmp_path / "counted.ipynb", [], 7)
    assert check.main(["--worktree", str(dirty), str(counted)]) == 1
    printed = capsys.readouterr().out
    assert "dirty.ipynb" in printed and "1 output(s)" in printed
    assert "counted.ipynb" in printed and "execution_count 7" in printed


def test_book_notebooks_carry_no_outputs() -> None:
    check = load_script("check_no_outputs")
    if not list((REPO / "book").glob("*.ipynb")):
        pytest.skip("no chapter notebooks yet")
    assert check.main([]) == 0


def test_browser_check_opens_every_page_of_the_toc() -> None:
    browser_check = load_script("browser_check")
    pages = browser_check.toc_docnames(REPO / "_toc.yml")
    assert pages[0] == "book/intro"
    assert "book/00_what_is_om2p" in pages
    assert len(pages) == len(set(pages))
    missing = [p for p in pages
               if not any((REPO / f"{p}{ext}").is_file() for ext in (".md", ".ipynb"))]
    assert not missing, f"pages in _toc.yml without a source file: {missing}"


def test_toc_parser_walks_parts_and_sections(tmp_path: Path) -> None:
    browser_check = load_script("browser_check")
    toc = tmp_path / "_toc.yml"
    toc.write_text("format: jb-book\nroot: intro\nparts:\n  - caption: A\n    chapters:\n"
                   "      - file: a.ipynb\n        sections:\n          - file: a1\n"
                   "  - caption: B\n    chapters:\n      - file: b\n")
    assert browser_check.toc_docnames(toc) == ["intro", "a", "a1", "b"]
