"""Live widgets retrain on change; plot helpers build the figures the chapters show."""

from __future__ import annotations

import torch

import om2p_lite as om


def test_is_live_follows_static_flag(monkeypatch):
    monkeypatch.setenv("OM2P_STATIC", "1")
    assert not om.widgets.is_live()
    monkeypatch.delenv("OM2P_STATIC")
    assert om.widgets.is_live()


def test_dr_explorer_retrains_when_the_slider_moves():
    data = om.toy_joint_actions(500, "coordination", generator=torch.Generator().manual_seed(0))
    calls = []

    def tiny_fit(method, data, **kwargs):
        calls.append(kwargs)
        return om.fit_toy(method, data, **kwargs)

    box = om.widgets.toy_dr_explorer(data, om.toy_modes("coordination"),
                                     {"steps": 3, "batch": 16, "hidden": 8, "depth": 1},
                                     n_samples=100, fit=tiny_fit)
    menu, slider = box.children[0].children
    assert len(calls) == 1 and calls[0]["estimator"] == "fd"
    slider.value = -8
    assert len(calls) == 2 and abs(calls[-1]["dr"] - 1e-8) < 1e-20
    menu.value = "jvp"
    assert calls[-1]["estimator"] == "jvp"


def test_plot_helpers_return_figures_with_the_data():
    x = [1e-3, 1e-2]
    fig = om.plots.lines(x, {"a": [1.0, 2.0]}, log_x=True)
    assert list(fig.data[0].y) == [1.0, 2.0] and fig.layout.xaxis.type == "log"
    cat = om.plots.lines(["jvp", "fd"], {"sw": [0.1, 0.2]})
    assert list(cat.data[0].x) == ["jvp", "fd"]
    bands = om.plots.bands([0, 1, 2], {"run": [[1, 2, 3], [3, 4, 5]]})
    assert list(bands.data[1].y) == [2.0, 3.0, 4.0]
    frames = {"k1": {"c": [0, 1]}, "k2": {"c": [1, 0]}}
    slider = om.plots.slider_lines([0, 1], frames)
    assert len(slider.layout.sliders[0].steps) == 2 and len(slider.data) == 2
    clouds = om.plots.slider_clouds({"a": torch.zeros(5, 2), "b": torch.ones(5, 2)},
                                    modes=torch.zeros(1, 2))
    assert [trace.visible for trace in clouds.data] == [True, False, None]
    table = om.plots.table(["h1", "h2"], [[1, 2], [3, 4]])
    assert list(table.data[0].cells.values[0]) == [1, 3]
