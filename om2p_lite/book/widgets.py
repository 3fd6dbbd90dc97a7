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
    draws its one-step samples with their sliced Wasserstein distance to the data."""
    import ipywidgets as w
    from IPython.display import display

    from om2p_lite.book.metrics import sliced_wasserstein
    from om2p_lite.book.plots import scatter_clouds
    from om2p_lite.book.toytrain import fit_toy

    fit = fit or fit_toy
    slider = w.FloatSlider(value=-3, min=-12, max=-1, step=1, description="log10 Δr",
                           continuous_update=False)
    estimator = w.Dropdown(options=["fd", "jvp", "zero"], value="fd", description="du/dr")
    out = w.Output()
    eps = torch.randn(n_samples, data.shape[1], generator=torch.Generator().manual_seed(seed))

    def update(*_: object) -> None:
        policy = fit("meanflow", data, estimator=estimator.value, dr=10.0 ** slider.value,
                     seed=seed, **train_kwargs)
        samples = policy.sample(n_samples, 1, eps)
        sw = sliced_wasserstein(samples, data[:n_samples])
        name = estimator.value + (f", {dr_label(slider.value)}" if estimator.value == "fd"
                                  else "")
        with out:
            out.clear_output(wait=True)
            display(scatter_clouds({f"{name}: SW = {sw:.3f}": samples}, modes))

    slider.observe(update, names="value")
    estimator.observe(update, names="value")
    update()
    return w.VBox([w.HBox([estimator, slider]), out])
