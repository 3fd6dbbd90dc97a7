"""Plotly figures for the book, drawn from results the library computed.

Not a results store: every function takes arrays and returns a ``go.Figure``.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence

import numpy as np

LEGEND_BELOW = {"orientation": "h", "yanchor": "top", "y": -0.22, "x": 0}

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf")


def setup_plotly() -> str:
    """Pick a renderer that draws with no network: ``colab`` in Colab, else ``om2p``.

    ``om2p`` is plotly's ``notebook`` renderer (plotly.js embedded once per page, so the
    static book draws offline) without the MathJax script tag it would load from a CDN.
    """
    import plotly.io as pio
    from plotly.io.base_renderers import NotebookRenderer

    class OfflineNotebookRenderer(NotebookRenderer):
        """The ``notebook`` renderer minus its MathJax CDN tag (labels use Unicode, not TeX)."""

        def to_mimebundle(self, fig_dict: dict) -> dict:
            html = pio.to_html(fig_dict, config=self.config, auto_play=self.auto_play,
                               include_plotlyjs=self.include_plotlyjs, include_mathjax=False,
                               full_html=False, animation_opts=self.animation_opts,
                               default_width="100%", default_height=525, validate=False)
            return {"text/html": html}

    if "google.colab" in sys.modules:
        pio.renderers.default = "colab"
    else:
        pio.renderers["om2p"] = OfflineNotebookRenderer()
        pio.renderers.default = "om2p"
    return pio.renderers.default


def _np(y: object) -> np.ndarray:
    if hasattr(y, "detach"):
        y = y.detach().cpu().numpy()  # type: ignore[union-attr]
    return np.asarray(y, dtype=float)


def _x(x: object) -> object:
    """x values as floats when numeric, else as given (category labels)."""
    try:
        return _np(x)
    except (TypeError, ValueError):
        return list(x)  # type: ignore[call-overload]


def scatter_clouds(clouds: Mapping[str, object], modes: object | None = None,
                   title: str = "", size: float = 3.0, lim: float = 1.05):
    """One square panel per sample cloud (N, 2), with the data's modes marked."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    names = list(clouds)
    fig = make_subplots(rows=1, cols=len(names), subplot_titles=names,
                        horizontal_spacing=0.04)
    for i, name in enumerate(names, start=1):
        xy = _np(clouds[name])
        fig.add_trace(go.Scattergl(x=xy[:, 0], y=xy[:, 1], mode="markers", name=name,
                                   marker={"size": size, "opacity": 0.5,
                                           "color": PALETTE[(i - 1) % len(PALETTE)]},
                                   showlegend=False), row=1, col=i)
        if modes is not None:
            m = _np(modes)
            fig.add_trace(go.Scatter(x=m[:, 0], y=m[:, 1], mode="markers", name="modes",
                                     marker={"symbol": "x", "size": 8, "color": "black"},
                                     showlegend=i == 1), row=1, col=i)
        fig.update_xaxes(range=[-lim, lim], title_text="agent 1 action", row=1, col=i)
        fig.update_yaxes(range=[-lim, lim], scaleanchor=f"x{i if i > 1 else ''}", row=1, col=i)
    fig.update_yaxes(title_text="agent 2 action", row=1, col=1)
    fig.update_layout(title=title, height=340, width=max(360, 300 * len(names)),
                      margin={"t": 60, "b": 40, "l": 50, "r": 10})
    return fig


def lines(x: object, ys: Mapping[str, object], title: str = "", xlabel: str = "",
          ylabel: str = "", log_x: bool = False, log_y: bool = False, markers: bool = True):
    """Several named curves over a shared x."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for i, (name, y) in enumerate(ys.items()):
        fig.add_trace(go.Scatter(x=_x(x), y=_np(y), name=name,
                                 mode="lines+markers" if markers else "lines",
                                 line={"color": PALETTE[i % len(PALETTE)]}))
    fig.update_layout(title=title, xaxis_title=xlabel, yaxis_title=ylabel, height=420,
                      xaxis_type="log" if log_x else None, yaxis_type="log" if log_y else None,
                      legend=LEGEND_BELOW)
    return fig


def bands(x: object, runs: Mapping[str, object], title: str = "", xlabel: str = "",
          ylabel: str = ""):
    """Mean ± std bands over seeds: ``runs[name]`` is (n_seeds, len(x))."""
    import plotly.graph_objects as go

    fig = go.Figure()
    xs = _np(x)
    for i, (name, ys) in enumerate(runs.items()):
        arr = np.atleast_2d(_np(ys))
        mean, std = arr.mean(0), arr.std(0)
        color = PALETTE[i % len(PALETTE)]
        fig.add_trace(go.Scatter(x=np.concatenate([xs, xs[::-1]]),
                                 y=np.concatenate([mean + std, (mean - std)[::-1]]),
                                 fill="toself", fillcolor=color, opacity=0.2,
                                 line={"width": 0}, hoverinfo="skip", showlegend=False))
        fig.add_trace(go.Scatter(x=xs, y=mean, name=f"{name} (n={arr.shape[0]})",
                                 line={"color": color}))
    fig.update_layout(title=title, xaxis_title=xlabel, yaxis_title=ylabel, height=420,
                      legend=LEGEND_BELOW)
    return fig


def slider_lines(x: object, frames: Mapping[str, Mapping[str, object]], title: str = "",
                 xlabel: str = "", ylabel: str = "", slider_label: str = ""):
    """A precomputed sweep behind a plotly slider: ``frames[label][curve] = y``.

    The static book's stand-in for a live widget: every position was computed beforehand.
    """
    import plotly.graph_objects as go

    labels = list(frames)
    xs = _np(x)
    curves = list(frames[labels[0]])
    fig = go.Figure()
    for j, label in enumerate(labels):
        for i, curve in enumerate(curves):
            fig.add_trace(go.Scatter(x=xs, y=_np(frames[label][curve]), name=curve,
                                     visible=j == 0, line={"color": PALETTE[i % len(PALETTE)]}))
    steps = []
    for j, label in enumerate(labels):
        visible = [k // len(curves) == j for k in range(len(labels) * len(curves))]
        steps.append({"method": "update", "label": label,
                      "args": [{"visible": visible}, {"title": f"{title} — {label}"}]})
    fig.update_layout(title=f"{title} — {labels[0]}", xaxis_title=xlabel, yaxis_title=ylabel,
                      height=420, sliders=[{"active": 0, "steps": steps,
                                            "currentvalue": {"prefix": slider_label}}])
    return fig


def slider_clouds(frames: Mapping[str, object], modes: object | None = None,
                  title: str = "", lim: float = 1.05, slider_label: str = ""):
    """A precomputed sweep of 2-D sample clouds behind a plotly slider (one frame each)."""
    import plotly.graph_objects as go

    labels = list(frames)
    fig = go.Figure()
    for j, label in enumerate(labels):
        xy = _np(frames[label])
        fig.add_trace(go.Scattergl(x=xy[:, 0], y=xy[:, 1], mode="markers", name=label,
                                   visible=j == 0, showlegend=False,
                                   marker={"size": 3, "opacity": 0.5, "color": PALETTE[0]}))
    if modes is not None:
        m = _np(modes)
        fig.add_trace(go.Scatter(x=m[:, 0], y=m[:, 1], mode="markers", name="modes",
                                 marker={"symbol": "x", "size": 8, "color": "black"}))
    steps = []
    for j, label in enumerate(labels):
        visible = [k == j for k in range(len(labels))] + ([True] if modes is not None else [])
        steps.append({"method": "update", "label": label,
                      "args": [{"visible": visible}, {"title": f"{title} — {label}"}]})
    fig.update_layout(title=f"{title} — {labels[0]}", height=480, width=480,
                      xaxis={"range": [-lim, lim], "title": "agent 1 action"},
                      yaxis={"range": [-lim, lim], "title": "agent 2 action",
                             "scaleanchor": "x"},
                      sliders=[{"active": 0, "steps": steps,
                                "currentvalue": {"prefix": slider_label}}])
    return fig


def table(header: Sequence[str], rows: Sequence[Sequence[object]], title: str = ""):
    """A plain plotly table (numbers formatted by the caller)."""
    import plotly.graph_objects as go

    cols = list(zip(*rows, strict=True)) if rows else [[] for _ in header]
    fig = go.Figure(go.Table(header={"values": list(header)},
                             cells={"values": [list(c) for c in cols]}))
    fig.update_layout(title=title, height=60 + 30 * (len(rows) + 1),
                      margin={"t": 40, "b": 10})
    return fig


def _rgba(color: str, alpha: float) -> str:
    """'#1f77b4' → 'rgba(31, 119, 180, alpha)' for translucent bands."""
    r, g, b = (int(color[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r}, {g}, {b}, {alpha})"


def curve_bands(stats: object, group: str = "variant", labels: Mapping[str, str] | None = None,
                title: str = "", xlabel: str = "training step", ylabel: str = "return",
                band_name: str = "95% interval"):
    """Mean curves with shaded bands from a ``curves.curve_bands`` frame (columns
    ``group``, step, mean, lo, hi, n), one colour per value of ``group`` in frame order.

    ``labels`` renames groups (and picks / orders the ones drawn when given)."""
    import plotly.graph_objects as go

    names = list(labels) if labels else list(dict.fromkeys(stats[group]))  # type: ignore
    fig = go.Figure()
    for i, name in enumerate(names):
        sub = stats[stats[group] == name].sort_values("step")  # type: ignore[index]
        if sub.empty:
            continue
        x = _np(sub["step"])
        color = PALETTE[i % len(PALETTE)]
        fig.add_trace(go.Scatter(x=np.concatenate([x, x[::-1]]),
                                 y=np.concatenate([_np(sub["hi"]), _np(sub["lo"])[::-1]]),
                                 fill="toself", fillcolor=_rgba(color, 0.18), mode="lines",
                                 line={"width": 0}, hoverinfo="skip", showlegend=False))
        label = (labels or {}).get(name, str(name))
        fig.add_trace(go.Scatter(x=x, y=_np(sub["mean"]), line={"color": color},
                                 name=f"{label} (n={int(sub['n'].min())})"))
    fig.update_layout(title=f"{title} (bands: {band_name})" if title else "", height=440,
                      xaxis_title=xlabel, yaxis_title=ylabel, legend=LEGEND_BELOW)
    return fig


def errorbars(series: Mapping[str, tuple[object, object, object]],
              references: Mapping[str, tuple[float, float]] | None = None, title: str = "",
              xlabel: str = "", ylabel: str = "", log_x: bool = False):
    """Points with error bars, ``series[name] = (x, mean, err)``, joined by lines; each
    ``references[name] = (mean, err)`` is a horizontal line with a shaded band."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for i, (name, (x, mean, err)) in enumerate(series.items()):
        fig.add_trace(go.Scatter(x=_x(x), y=_np(mean), name=name, mode="lines+markers",
                                 error_y={"type": "data", "array": _np(err), "visible": True},
                                 line={"color": PALETTE[i % len(PALETTE)]}))
    for j, (name, (mean, err)) in enumerate((references or {}).items()):
        color = PALETTE[(len(series) + j) % len(PALETTE)]
        fig.add_hrect(y0=mean - err, y1=mean + err, fillcolor=color, opacity=0.15,
                      line_width=0)
        fig.add_hline(y=mean, line={"color": color, "dash": "dash"})
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", name=name,
                                 line={"color": color, "dash": "dash"}))
    fig.update_layout(title=title, xaxis_title=xlabel, yaxis_title=ylabel, height=420,
                      xaxis_type="log" if log_x else None, legend=LEGEND_BELOW)
    return fig


def bars(labels: Sequence[str], mean: object, err: object, title: str = "",
         ylabel: str = "", reference: str | None = None, text: Sequence[str] | None = None):
    """A bar per label with error bars; the bar named ``reference`` is drawn darker and
    its mean as a dashed line across the chart."""
    import plotly.graph_objects as go

    means = _np(mean)
    colors = [PALETTE[0] if lab == reference else _rgba(PALETTE[0], 0.55) for lab in labels]
    fig = go.Figure(go.Bar(x=list(labels), y=means, marker_color=colors,
                           error_y={"type": "data", "array": _np(err), "visible": True},
                           text=list(text) if text is not None else None,
                           textposition="auto" if text is not None else None,
                           showlegend=False))
    if reference is not None:
        fig.add_hline(y=float(means[list(labels).index(reference)]),
                      line={"color": "black", "dash": "dash"})
    fig.update_layout(title=title, yaxis_title=ylabel, height=420)
    return fig


def heatmap_table(z: object, rows: Sequence[str], cols: Sequence[str],
                  cell_text: Sequence[Sequence[str]], side_header: Sequence[str],
                  side_rows: Sequence[Sequence[object]], title: str = "",
                  colorbar: str = "", zmid: float | None = None):
    """A heatmap (``z``: rows × cols, ``cell_text`` printed in each cell) next to a table
    (``side_header``, ``side_rows``), e.g. normalised scores beside training times."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    widths, gap = (0.62, 0.38), 0.1
    fig = make_subplots(rows=1, cols=2, column_widths=list(widths), horizontal_spacing=gap,
                        specs=[[{"type": "heatmap"}, {"type": "table"}]])
    right = widths[0] * (1 - gap)  # where the heatmap's axis ends; the colour bar sits in the gap
    fig.add_trace(go.Heatmap(z=_np(z), x=list(cols), y=list(rows), text=[list(r) for r in
                                                                         cell_text],
                             texttemplate="%{text}", colorscale="RdBu", zmid=zmid,
                             colorbar={"title": colorbar, "x": right + 0.01,
                                       "xanchor": "left", "thickness": 12}), row=1, col=1)
    columns = list(zip(*side_rows, strict=True)) if side_rows else [[] for _ in side_header]
    fig.add_trace(go.Table(header={"values": list(side_header)},  # names: a wider column
                           columnwidth=[1.6] + [1.0] * (len(side_header) - 1),
                           cells={"values": [list(c) for c in columns]}), row=1, col=2)
    fig.update_yaxes(autorange="reversed", row=1, col=1)
    fig.update_layout(title=title, height=max(360, 60 + 32 * len(rows)),
                      margin={"t": 60, "b": 40, "l": 140, "r": 10})
    return fig
