"""The η-per-data-set experiment: written from a selection, read back as the runs it names."""

from __future__ import annotations

import pandas as pd
import pytest

from om2p_lite.book import eta_choice
from om2p_lite.rl import spec
from om2p_lite.rl.spec import read_toml


def test_selected_file_runs_each_data_set_at_its_eta(tmp_path) -> None:
    base = read_toml(eta_choice.BASE)
    chosen = pd.DataFrame([
        {"task": "world", "quality": "expert", "eta": 0.3},
        {"task": "world", "quality": "medium", "eta": 1.0},
        {"task": "spread", "quality": "expert", "eta": 0.3},
        {"task": "tag", "quality": "random", "eta": 10.0}])
    text = eta_choice.selected_toml(base, chosen, "data/results/x_eta", "line one\n\nline two")
    assert text.startswith("# line one\n#\n# line two\n")
    (tmp_path / "sel.toml").write_text(text)
    doc = read_toml(tmp_path / "sel.toml")
    assert doc["results_dir"] == "data/results/x_eta" and doc["grid"]["algos"] == ["om2p"]
    runs = spec.runs_of(doc, results_dir=tmp_path)
    got = {(r.cfg.task, r.cfg.quality): r.cfg.eta for r in runs if r.cfg.seed == 0}
    assert got == {("world", "expert"): 0.3, ("world", "medium"): 1.0,
                   ("spread", "expert"): 0.3, ("tag", "random"): 10.0}
    assert {r.cfg.seed for r in runs} == set(base["grid"]["seeds"])
    one = next(r for r in runs if r.cfg.task == "tag")
    assert one.variant == "eta=10" and one.cfg.steps == base["config"]["steps"]
    assert one.cfg.gamma == base["config"]["gamma"]  # the table's protocol, copied


def test_an_incomplete_selection_is_refused(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("OM2P_RESULTS_ROOT", str(tmp_path))  # no stored selection runs
    with pytest.raises(ValueError, match=r"0 of 120 selection runs.*Fix: finish them"):
        eta_choice.write_selected(out=tmp_path / "out.toml")
    assert not (tmp_path / "out.toml").exists()
    assert eta_choice.main(["--out", str(tmp_path / "out.toml")]) == 2
