"""The behaviour-levels table reads the shipped curves and refuses files it cannot read."""

from __future__ import annotations

from pathlib import Path

import pytest

from om2p_lite.data.levels import behaviour_levels, curve_level


def _curve(path: Path, rows: list[tuple[int, float, float]]) -> Path:
    path.write_text("step,return,wall_s\n" + "".join(f"{s},{r},{w}\n" for s, r, w in rows))
    return path


def test_level_of_a_curve(tmp_path) -> None:
    path = _curve(tmp_path / "spread-omar_td3_curve.csv",
                  [(10_000, 100.0, 36.0), (20_000, 480.0, 72.0), (30_000, 450.0, 108.0)])
    (tmp_path / "spread-omar_td3.pt").write_bytes(b"x")
    row = curve_level(path)
    assert (row["task"], row["reward"], row["shipped"], row["run"]) == \
        ("spread", "omar", True, "shipped")
    assert (row["steps"], row["best return"], row["best at"], row["last return"]) == \
        (30_000, 480.0, 20_000, 450.0)
    assert row["wall h"] == pytest.approx(108 / 3600)
    assert row["1M wall h"] == pytest.approx(108 / 30_000 * 1e6 / 3600)
    _curve(tmp_path / "tag_td3_unshaped_curve.csv", [(10_000, 2.0, 50.0)])
    rows = {r["curve"]: r for r in behaviour_levels(tmp_path)}
    assert rows["spread-omar_td3_curve.csv"]["best / published"] == pytest.approx(480 / 531)
    tag = rows["tag_td3_unshaped_curve.csv"]
    assert (tag["run"], tag["shipped"], tag["comparable"]) == ("unshaped", False, False)
    assert rows["spread-omar_td3_curve.csv"]["comparable"]


def test_bad_curves_are_refused(tmp_path) -> None:
    with pytest.raises(ValueError, match="not named.*Fix"):
        curve_level(_curve(tmp_path / "notes.csv", [(1, 1.0, 1.0)]))
    bad = tmp_path / "tag_td3_curve.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="not a behaviour curve.*Fix"):
        curve_level(bad)


def test_shipped_curves_read() -> None:
    rows = behaviour_levels()
    assert {"spread", "halfcheetah"} <= {r["task"] for r in rows}
    spread = [r for r in rows if r["task"] == "spread" and r["reward"] == "omar"]
    assert spread and spread[0]["shipped"] and spread[0]["best / published"] > 0.8
