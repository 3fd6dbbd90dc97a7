"""Published results (data/results/) name the clean commit that made them."""

from __future__ import annotations

import json
import re
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[1] / "data" / "results"


def test_every_stored_result_names_a_clean_commit() -> None:
    """A stored run with an 'unknown' or '-dirty' commit cannot be remade: none may land."""
    files = sorted(RESULTS.rglob("result.json"))
    assert len(files) > 100  # the shipped experiments are all there
    bad = []
    for path in files:
        commit = json.loads(path.read_text())["provenance"]["git_commit"]
        if not re.fullmatch(r"[0-9a-f]{40}", str(commit)):
            bad.append(f"{path.relative_to(RESULTS)}: {commit}")
    assert not bad, bad[:5]
