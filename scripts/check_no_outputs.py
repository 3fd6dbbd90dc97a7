"""Fail if a chapter notebook carries outputs, execution counts or widget state.

Not a formatter: it only reports (`nbstripout` or `make hooks` does the stripping). For a
notebook tracked by git it checks the staged copy, i.e. what a commit would hold; for an
untracked one, or with --worktree, the file on disk.

    python scripts/check_no_outputs.py [--worktree] [NOTEBOOK ...]   (default: book/*.ipynb)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def staged_text(path: Path) -> str | None:
    """The staged (index) copy of `path`, or None when git does not track it."""
    try:
        rel = path.resolve().relative_to(REPO).as_posix()
        out = subprocess.run(["git", "show", f":{rel}"], cwd=REPO, capture_output=True,
                             text=True, check=False)
    except (ValueError, OSError):
        return None
    return out.stdout if out.returncode == 0 else None


def problems(notebook: dict) -> list[str]:
    """What a stripped notebook must not hold, one line per offending cell."""
    found = []
    for index, cell in enumerate(notebook.get("cells", [])):
        if cell.get("cell_type") != "code":
            continue
        if cell.get("outputs"):
            found.append(f"cell {index}: {len(cell['outputs'])} output(s)")
        if cell.get("execution_count") is not None:
            found.append(f"cell {index}: execution_count {cell['execution_count']}")
    if notebook.get("metadata", {}).get("widgets"):
        found.append("notebook metadata holds widget state")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path,
                        help="notebooks to check (default: book/*.ipynb)")
    parser.add_argument("--worktree", action="store_true",
                        help="check the files on disk even where git tracks them")
    args = parser.parse_args(argv)

    notebooks = args.notebooks or sorted((REPO / "book").glob("*.ipynb"))
    failed = 0
    for path in notebooks:
        text = None if args.worktree else staged_text(path)
        source = "staged" if text is not None else "file"
        if text is None:
            text = path.read_text(encoding="utf-8")
        try:
            notebook = json.loads(text)
        except json.JSONDecodeError as exc:
            print(f"FAIL {path} ({source}): not valid JSON: {exc}")
            failed += 1
            continue
        found = problems(notebook)
        if found:
            failed += 1
            print(f"FAIL {path} ({source}) carries outputs: {'; '.join(found)}")
            print("     fix: nbstripout " + str(path) + "  (and `make hooks` once per clone)")
    print(f"no-outputs check: {len(notebooks)} notebooks, {failed} with outputs")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
