"""Live widgets retrain on change; plot helpers build the figures the chapters show."""

from __future__ import annotations

import pytest
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
    first = box.figure
    assert box.readout.value.startswith("fd, Δr = 1e-03: sliced Wasserstein")
    with pytest.warns(om.PrecisionWarning, match="Δr = 1e-08"):  # as train warns for it
        slider.value = -8
    assert len(calls) == 2 and abs(calls[-1]["dr"] - 1e-8) < 1e-20
    assert box.figure is not first and "Δr = 1e-08" in box.figure.layout.annotations[0].text
    assert box.readout.value.startswith("fd, Δr = 1e-08")
    menu.value = "jvp"
    assert calls[-1]["estimator"] == "jvp" and box.readout.value.startswith("jvp:")


def test_eta_explorer_retrains_and_redraws_when_the_slider_moves():
    cfg = om.TrainConfig(task="world", quality="expert", steps=4, batch_size=16, hidden=8,
                         depth=1, critic_hidden=8, critic_depth=1, eval_every=2,
                         eval_episodes=2, eval_max_steps=3, log_every=2, progress=False)
    etas = []

    def tiny_train(cfg, dataset):
        etas.append(cfg.eta)
        return om.train(cfg, dataset)

    box = om.widgets.eta_explorer(cfg, etas=(0.0, 1.0, 3.0), value=1.0, train_fn=tiny_train)
    slider = box.children[0]
    assert etas == [1.0] and box.readout.value.startswith("η = 1: final return")
    assert [t.name for t in box.figure.data] == ["η = 1"]
    assert list(box.figure.data[0].x) == [0, 2, 4]
    slider.value = 3.0
    assert etas == [1.0, 3.0] and box.readout.value.startswith("η = 3: final return")
    assert [t.name for t in box.figure.data] == ["η = 1", "η = 3"]
    assert sorted(box.history) == [1.0, 3.0]
    with pytest.raises(ValueError, match="not one of the slider"):
        om.widgets.eta_explorer(cfg, etas=(0.0, 1.0), value=2.0, train_fn=tiny_train)


def test_figure_helpers_for_the_experiment_chapters():
    import pandas as pd

    stats = pd.DataFrame({"variant": ["a", "a", "b", "b"], "step": [0, 10, 0, 10],
                          "mean": [0.0, 1.0, 0.0, 2.0], "lo": [0.0, 0.5, 0.0, 1.0],
                          "hi": [0.0, 1.5, 0.0, 3.0], "n": [5, 5, 3, 3]})
    fig = om.plots.curve_bands(stats, labels={"b": "B", "a": "A"}, title="t")
    assert [t.name for t in fig.data if t.showlegend is not False] == ["B (n=3)", "A (n=5)"]
    assert list(fig.data[0].y) == [0.0, 3.0, 1.0, 0.0]  # band: hi forward, lo back
    assert fig.layout.legend.orientation == "h" and "95%" in fig.layout.title.text
    eb = om.plots.errorbars({"fd": ([1e-3, 1e-8], [1.0, 2.0], [0.1, 0.2])},
                            references={"jvp": (1.5, 0.3)}, log_x=True)
    assert list(eb.data[0].error_y.array) == [0.1, 0.2] and eb.layout.xaxis.type == "log"
    assert [t.name for t in eb.data] == ["fd", "jvp"] and len(eb.layout.shapes) == 2
    bar = om.plots.bars(["full", "η = 0"], [3.0, 1.0], [0.5, 0.4], reference="full")
    assert list(bar.data[0].y) == [3.0, 1.0] and bar.layout.shapes[0].y0 == 3.0
    heat = om.plots.heatmap_table([[1.0, 2.0]], ["world expert"], ["om2p", "bc"],
                                  [["1", "2"]], ["algo", "ms"], [["om2p", 3], ["bc", 1]])
    assert heat.data[0].type == "heatmap" and heat.data[1].type == "table"
    assert list(heat.data[1].cells.values[1]) == [3, 1]


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
