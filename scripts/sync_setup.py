"""Write the repository URL from pyproject.toml into the places that need a copy of it.

``[project.urls] Repository`` in ``pyproject.toml`` is the one place the URL is written by
hand. Two kinds of file need it where pyproject cannot be read:

- ``_config.yml`` (``repository.url``): Jupyter Book's launch and repository buttons;
- the setup block at the top of each chapter's first code cell: a notebook opened alone in
  Colab has nothing else to clone the repository from. The block ends with the one-line
  call ``setup_chapter("NN")`` (:mod:`om2p_lite.book.launch`); the rest of the cell, the
  chapter's own imports, is kept as it is.

    python scripts/sync_setup.py           # rewrite what differs
    python scripts/sync_setup.py --check   # exit 1 and name each stale file (tests run this)

Each notebook is read from disk just before it is written, and only its first code cell
changes, so edits to other cells made in the meantime are kept.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

REPO = Path(__file__).resolve().parent.parent
CALL_PREFIX = "setup_chapter("
SETUP_TEMPLATE = '''\
# Setup (written by scripts/sync_setup.py): on Colab, clone the repository and install what
# this chapter needs, keeping Colab's torch; elsewhere, check that om2p_lite is installed.
import os
import subprocess
import sys

if "google.colab" in sys.modules and "OM2P_CHECKOUT" not in os.environ:
    os.environ["OM2P_CHECKOUT"] = os.path.abspath("om2p-lite")
    if not os.path.isdir("om2p-lite"):
        clone_from = os.environ.get("OM2P_REPOSITORY", "{url}")
        subprocess.run(["git", "clone", "-q", "--depth", "1", clone_from, "om2p-lite"], check=True)
    sys.path.insert(0, os.environ["OM2P_CHECKOUT"])
from om2p_lite.book.launch import setup_chapter

setup_chapter("{chapter}")'''
CONFIG_URL = re.compile(r"^(repository:\n(?:[ \t]+.*\n|\s*\n)*?[ \t]+url:[ \t]*)(\S+)(.*)$",
                        re.MULTILINE)


def repository_url(pyproject: Path = REPO / "pyproject.toml") -> str:
    """``[project.urls] Repository`` from ``pyproject``: the one hand-written copy."""
    doc = tomllib.loads(pyproject.read_text())
    url = doc.get("project", {}).get("urls", {}).get("Repository")
    if not isinstance(url, str) or not url.startswith("https://"):
        raise SystemExit(f"{pyproject}: [project.urls] Repository is {url!r}. "
                         "Fix: set it to the repository's https URL.")
    return url


def setup_block(url: str, chapter: str) -> str:
    """The generated head of chapter ``chapter``'s first code cell."""
    return SETUP_TEMPLATE.replace("{url}", url).replace("{chapter}", chapter)


def chapter_of(notebook: Path) -> str:
    """The two-digit chapter number a ``book/NN_name.ipynb`` file name starts with."""
    match = re.match(r"(\d\d)_", notebook.name)
    if not match:
        raise SystemExit(f"{notebook}: name does not start with a chapter number. "
                         "Fix: name chapters NN_snake_case.ipynb.")
    return match.group(1)


def first_code_cell(nb: dict, path: Path) -> dict:
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "code":
            return cell
    raise SystemExit(f"{path}: no code cell. Fix: a chapter starts with its setup cell.")


def split_cell(source: str) -> tuple[str, str]:
    """(setup block, the chapter's own rest) of a first cell; ("", source) without a block."""
    lines = source.split("\n")
    for i, line in enumerate(lines):
        if line.startswith(CALL_PREFIX):
            return "\n".join(lines[: i + 1]), "\n".join(lines[i + 1:]).lstrip("\n")
    return "", source


def synced_source(source: str, block: str) -> str:
    """The first cell's source with its setup block replaced by (or prefixed with) ``block``."""
    _, rest = split_cell(source)
    return f"{block}\n\n{rest}" if rest.strip() else block


def dump_notebook(nb: dict) -> str:
    """Serialise like nbformat (sorted keys, one-space indent), so diffs stay minimal."""
    return json.dumps(nb, sort_keys=True, indent=1, ensure_ascii=False) + "\n"


def sync_notebook(path: Path, url: str, write: bool) -> bool:
    """True when the notebook's setup block is (or now is, with ``write``) up to date."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    cell = first_code_cell(nb, path)
    source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
    new = synced_source(source, setup_block(url, chapter_of(path)))
    if new == source:
        return True
    if write:
        nb = json.loads(path.read_text(encoding="utf-8"))  # re-read: keep others' edits
        cell = first_code_cell(nb, path)
        cell["source"] = new.splitlines(keepends=True)
        tmp = path.with_suffix(".ipynb.tmp")
        tmp.write_text(dump_notebook(nb), encoding="utf-8")
        tmp.replace(path)
    return False


def sync_config(path: Path, url: str, write: bool) -> bool:
    """True when ``repository.url`` in ``_config.yml`` is (or now is) ``url``."""
    text = path.read_text()
    match = CONFIG_URL.search(text)
    if not match:
        raise SystemExit(f"{path}: no 'repository: url:' entry. Fix: add one under "
                         "'repository:' (the Colab launch button needs it).")
    if match.group(2) == url:
        return True
    if write:
        path.write_text(text[: match.start(2)] + url + text[match.end(2):])
    return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="change nothing; exit 1 if any file is out of date")
    parser.add_argument("--root", type=Path, default=REPO, help="repository root")
    args = parser.parse_args(argv)
    root = args.root.resolve()
    url = repository_url(root / "pyproject.toml")
    stale = []
    if not sync_config(root / "_config.yml", url, write=not args.check):
        stale.append("_config.yml")
    for nb in sorted((root / "book").glob("[0-9][0-9]_*.ipynb")):
        if not sync_notebook(nb, url, write=not args.check):
            stale.append(str(nb.relative_to(root)))
    if args.check and stale:
        print("out of date with pyproject.toml (Fix: python scripts/sync_setup.py):")
        print("\n".join(f"  {name}" for name in stale))
        return 1
    for name in stale:
        print(f"updated {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
