"""The book's front door and its equation labels, read statically (no notebook is run).

The intro maps every chapter of ``_toc.yml`` in order, file numbers and titles agree, and
every equation label on a library line is defined in a chapter's markdown
(``$$ ... $$ (eq-name)``) and carried by a ``# (eq-name)`` comment on a code line of that
same chapter's notebook, so a grep for the label finds prose, notebook and library.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

from om2p_lite.book.labels import library_labels

REPO = Path(__file__).resolve().parent.parent
BOOK = REPO / "book"
DEFINED = re.compile(r"\$\$\s*\((eq-[a-z0-9-]+)\)")  # $$ ... $$ (eq-name)
REFERENCED = re.compile(r"\{eq\}`(eq-[a-z0-9-]+)`")
LINK = re.compile(r"^\| \[([^\]]+)\]\(([^)]+)\)", re.MULTILINE)  # a map row: | [title](file)
CORE = {"eq-mf-target", "eq-mf-loss", "eq-fd", "eq-td-target", "eq-actor-loss", "eq-q-loss",
        "eq-one-step", "eq-polyak"}


def toc_chapters() -> list[str]:
    """The toc's documents after the root, as ``book/NAME`` (the browser check's parser)."""
    spec = importlib.util.spec_from_file_location("browser_check",
                                                  REPO / "scripts" / "browser_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["browser_check"] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module.toc_docnames(REPO / "_toc.yml")[1:]


def notebooks() -> dict[str, dict]:
    """Chapter stem → its notebook JSON."""
    return {p.stem: json.loads(p.read_text()) for p in sorted(BOOK.glob("*.ipynb"))}


def cell_text(nb: dict, kind: str) -> str:
    """All the source of ``nb``'s cells of type ``kind``, joined."""
    return "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == kind)


def title(nb: dict) -> str:
    """The chapter's level-1 heading, without the '# '."""
    first = "".join(nb["cells"][0]["source"]).splitlines()[0]
    assert first.startswith("# "), f"first cell should open with the chapter's title: {first}"
    return first[2:].strip()


def test_intro_maps_every_chapter_in_toc_order_with_its_title() -> None:
    toc = [name.removeprefix("book/") for name in toc_chapters()]
    rows = LINK.findall((BOOK / "intro.md").read_text())
    linked = [Path(target).with_suffix("").as_posix() for _, target in rows]
    assert linked == toc, f"book/intro.md's map lists {linked}; _toc.yml has {toc}"
    nbs = notebooks()
    for text, target in rows:
        stem = Path(target).stem
        if stem in nbs:
            assert text == title(nbs[stem]), f"intro names {stem} {text!r}, the chapter " \
                                             f"{title(nbs[stem])!r}"


def test_toc_numbers_increase_and_match_each_title() -> None:
    numbered = [n for n in toc_chapters() if re.match(r"book/\d\d_", n)]
    numbers = [int(n.removeprefix("book/")[:2]) for n in numbered]
    assert numbers == sorted(set(numbers)), f"_toc.yml chapter numbers out of order: {numbers}"
    assert sorted(f"book/{stem}" for stem in notebooks()) == sorted(numbered)
    nbs = notebooks()
    for name, number in zip(numbered, numbers, strict=True):
        heading = title(nbs[name.removeprefix("book/")])
        assert heading.startswith(f"{number}. "), f"{name}: title {heading!r}"


def test_every_library_label_is_in_a_chapter_and_its_notebook_code() -> None:
    library = set(library_labels())
    assert CORE <= library, f"core labels missing from the library: {CORE - library}"
    nbs = notebooks()
    defined: dict[str, list[str]] = {}
    for stem, nb in nbs.items():
        for label in DEFINED.findall(cell_text(nb, "markdown")):
            defined.setdefault(label, []).append(stem)
    twice = {label: where for label, where in defined.items() if len(where) > 1}
    assert not twice, f"labels defined in more than one chapter: {twice}"
    problems = []
    for label in sorted(library):
        if label not in defined:
            problems.append(f"{label}: on a library line but defined in no chapter")
            continue
        stem = defined[label][0]
        comment = re.compile(rf"#.*\({re.escape(label)}\)")
        if not any(comment.search(line) for line in cell_text(nbs[stem], "code").splitlines()):
            problems.append(f"{label}: defined in {stem} but on none of its code lines "
                            f"(add '# ({label})' to the line that computes or shows it)")
    assert not problems, "\n".join(problems)


def test_every_equation_reference_resolves() -> None:
    nbs = notebooks()
    defined = {label for nb in nbs.values() for label in DEFINED.findall(cell_text(nb,
                                                                                  "markdown"))}
    pages = [cell_text(nb, "markdown") for nb in nbs.values()]
    pages += [p.read_text() for p in BOOK.glob("*.md")]
    dangling = {label for page in pages for label in REFERENCED.findall(page)} - defined
    assert not dangling, f"{{eq}} references to labels no chapter defines: {dangling}"
