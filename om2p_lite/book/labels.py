"""Where the library computes each labelled equation of the book: its ``(eq-…)`` lines.

Not the book's labels themselves (the chapters define those in their markdown): this reads
the library's own source, so a chapter can show a line and a test can compare the sets.
"""

from __future__ import annotations

import re
from pathlib import Path

LABEL = re.compile(r"\((eq-[a-z0-9]+(?:-[a-z0-9]+)*)\)")
LIBRARY = Path(__file__).resolve().parents[1]  # the om2p_lite package folder


def library_labels(root: Path = LIBRARY) -> dict[str, list[tuple[str, int, str]]]:
    """Label → every (path, line number, stripped text) of a library line that carries it."""
    found: dict[str, list[tuple[str, int, str]]] = {}
    for path in sorted(root.rglob("*.py")):
        name = path.relative_to(root.parent).as_posix()
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for label in LABEL.findall(line):
                found.setdefault(label, []).append((name, number, line.strip()))
    return found


def library_lines(label: str) -> str:
    """The library's lines that carry ``label``, one ``path:line: text`` each."""
    rows = library_labels().get(label)
    if not rows:
        raise KeyError(f"{label}: no library line carries it. Fix: end the line that "
                       f"computes it with the comment # ({label})")
    return "\n".join(f"{path}:{number}: {text}" for path, number, text in rows)
