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


def test_every_stored_run_still_matches_its_experiment_file(monkeypatch) -> None:
    """A new TrainConfig field or default must not turn stored runs into 'made with other
    settings' (the grid would refuse them and the chapters would lose them)."""
    import warnings

    from om2p_lite.rl.scheduler import plan_experiment

    repo = RESULTS.parents[1]
    monkeypatch.chdir(repo)  # the files name their results_dir from the repository root
    files = sorted((repo / "data" / "experiments").glob("*.toml")) + [RESULTS / "main.toml"]
    for path in files:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # fig2_dr's deliberate tiny Δr
            plan = plan_experiment(path)
        assert not plan.failures, f"{path.name}: {plan.headline()}"
