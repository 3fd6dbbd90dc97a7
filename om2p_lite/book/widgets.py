"""Live ipywidgets sliders that retrain a policy when moved (Jupyter, Colab).

Not for the static book: there the same sweep is precomputed and shown with a plotly slider.
Builds of the static book set ``OM2P_STATIC=1`` so chapters skip the live widgets.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import torch

STATIC_ENV = "OM2P_STATIC"


def is_live() -> bool:
    """True unless ``OM2P_STATIC=1`` (set by the book build and the notebook tests)."""
    return os.environ.get(STATIC_ENV, "") != "1"


def dr_label(log10_dr: float) -> str:
    """'Δr = 1e-08' for the slider's read-out."""
    return f"Δr = {10.0 ** log10_dr:.0e}"


def toy_dr_explorer(data: torch.Tensor, modes: torch.Tensor, train_kwargs: dict[str, Any],
                    n_samples: int = 2000, seed: int = 0,
                    fit: Callable[..., Any] | None = None) -> Any:
    """A Δr slider and an estimator menu; each change retrains a toy mean-flow policy and
    draws its one-step samples with their sliced Wasserstein distance to the data.

    The returned box's ``figure`` is the figure last drawn and its ``readout`` (an HTML
    widget) names the setting and its score, so a test can move the slider and check."""
    import ipywidgets as w
    from IPython.display import display

    from om2p_lite.book.metrics import sliced_wasserstein
    from om2p_lite.book.plots import scatter_clouds
    from om2p_lite.book.toytrain import fit_toy

    fit = fit or fit_toy
    slider = w.FloatSlider(value=-3, min=-12, max=-1, step=1, description="log10 Δr",
                           continuous_update=False)
    estimator = w.Dropdown(options=["fd", "jvp", "zero"], value="fd", description="du/dr")
    readout = w.HTML()
    out = w.Output()
    box = w.VBox([w.HBox([estimator, slider]), readout, out])
    box.readout = readout
    eps = torch.randn(n_samples, data.shape[1], generator=torch.Generator().manual_seed(seed))

    def update(*_: object) -> None:
        policy = fit("meanflow", data, estimator=estimator.value, dr=10.0 ** slider.value,
                     seed=seed, **train_kwargs)
        samples = policy.sample(n_samples, 1, eps)
        sw = sliced_wasserstein(samples, data[:n_samples])
        name = estimator.value + (f", {dr_label(slider.value)}" if estimator.value == "fd"
                                  else "")
        readout.value = f"{name}: sliced Wasserstein {sw:.3f}"
        box.figure = scatter_clouds({f"{name}: SW = {sw:.3f}": samples}, modes)
        with out:
            out.clear_output(wait=True)
            display(box.figure)

    slider.observe(update, names="value")
    estimator.observe(update, names="value")
    update()
    return box


ETAS = (0.0, 0.1, 0.3, 1.0, 3.0, 10.0)


def eta_explorer(cfg: Any, dataset: Any = None, etas: tuple[float, ...] = ETAS,
                 value: float = 1.0, train_fn: Callable[..., Any] | None = None) -> Any:
    """An η slider; each move retrains OM2P (``cfg`` with that η) and redraws the learning
    curve of every η tried so far, with the new run's final return in a read-out.

    ``cfg`` is a ``TrainConfig`` small enough to train in about a minute (chapter 07 sets
    it); ``dataset`` is passed to ``train_fn`` (default ``rl.train.train``). The returned
    box keeps ``history`` (η → evaluation rows), ``figure`` and ``readout``."""
    import dataclasses
    import time

    import ipywidgets as w
    from IPython.display import display

    from om2p_lite.book.plots import lines

    if value not in etas:
        raise ValueError(f"value: η = {value} is not one of the slider's {etas}. Fix: add "
                         f"it to etas or pick one of them")
    if train_fn is None:
        from om2p_lite.rl.train import train as train_fn
    slider = w.SelectionSlider(options=list(etas), value=value, description="η",
                               continuous_update=False)
    readout = w.HTML()
    out = w.Output()
    box = w.VBox([slider, readout, out])
    box.readout, box.history = readout, {}

    def update(*_: object) -> None:
        eta = float(slider.value)
        t0 = time.time()
        summary = train_fn(dataclasses.replace(cfg, eta=eta, out_dir="", progress=False),
                           dataset)
        seconds = time.time() - t0
        box.history[eta] = summary["evals"]
        final = summary["evals"][-1]["return"]
        readout.value = (f"η = {eta:g}: final return {final:.2f} "
                         f"({cfg.steps} steps, {seconds:.0f} s)")
        tried = sorted(box.history)
        steps = [e["step"] for e in summary["evals"]]
        box.figure = lines(steps, {f"η = {e:g}": [row["return"] for row in box.history[e]]
                                   for e in tried},
                           title=f"OM2P on {cfg.task} {cfg.quality}: every η tried",
                           xlabel="training step", ylabel="return")
        with out:
            out.clear_output(wait=True)
            display(box.figure)

    slider.observe(update, names="value")
    update()
    return box
