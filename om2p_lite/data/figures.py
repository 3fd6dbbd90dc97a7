"""Plotly figures for chapter 04: task trajectories, return histograms, action distributions.

Not general plotting helpers (those are ``om2p_lite.book.plots``): each figure reads a dataset or
rolls a behaviour policy and nothing else.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from om2p_lite.data.dataset import OfflineDataset

COLOURS = {"random": "#9e9e9e", "medium-replay": "#f2a541", "medium": "#3c8dbc",
           "expert": "#c0392b"}


def rollout_positions(task: str, quality: str = "expert", seed: int = 0,
                      behaviour: str | None = None) -> dict[str, np.ndarray]:
    """One MPE episode of the ``quality`` behaviour (scripted or trained): positions
    (T + 1, n, 2) per entity kind."""
    from om2p_lite.data.behaviour import behaviour_policy
    from om2p_lite.envs import make_env

    env = make_env(task)
    rng = np.random.default_rng(seed)
    policy = behaviour_policy(env.spec, quality, behaviour=behaviour)
    obs = env.reset(seed=seed)
    frames = [env.render_positions()]
    for _ in range(env.spec.episode_length):
        obs, *_ = env.step(policy(obs[None], rng)[0])
        frames.append(env.render_positions())
    return {k: np.stack([f[k] for f in frames]) for k in frames[0]}


def trajectory_figure(task: str, quality: str = "expert", seed: int = 0,
                      behaviour: str | None = None) -> Any:
    """Paths of learners (and prey) over one episode, landmarks as grey discs."""
    import plotly.graph_objects as go

    from om2p_lite.data.behaviour import resolve_behaviour

    behaviour = resolve_behaviour(task, behaviour)
    pos = rollout_positions(task, quality, seed, behaviour)
    fig = go.Figure()
    lm = pos["landmarks"][0]
    fig.add_trace(go.Scatter(x=lm[:, 0], y=lm[:, 1], mode="markers", name="landmarks",
                             marker={"size": 14, "color": "#555", "symbol": "circle-open"}))
    for kind, colour in (("learners", "#1f77b4"), ("prey", "#2ca02c")):
        for i in range(pos[kind].shape[1]):
            xy = pos[kind][:, i]
            fig.add_trace(go.Scatter(x=xy[:, 0], y=xy[:, 1], mode="lines+markers",
                                     name=f"{kind[:-1] if kind == 'learners' else 'prey'} {i}",
                                     line={"color": colour}, marker={"size": 4}))
            fig.add_trace(go.Scatter(x=xy[-1:, 0], y=xy[-1:, 1], mode="markers",
                                     showlegend=False, marker={"size": 10, "color": colour}))
    fig.update_layout(title=f"{task}: one {behaviour} {quality} episode (dots = end)",
                      width=480, height=460, xaxis={"range": [-1.6, 1.6]},
                      yaxis={"range": [-1.6, 1.6], "scaleanchor": "x"})
    return fig


def return_histogram(datasets: dict[str, OfflineDataset], title: str = "") -> Any:
    """Overlaid histograms of episode returns, one colour per quality."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for quality, ds in datasets.items():
        fig.add_trace(go.Histogram(x=ds.episode_returns(), name=quality, opacity=0.6,
                                   marker_color=COLOURS.get(quality), nbinsx=40))
    fig.update_layout(barmode="overlay", title=title or "episode returns by quality",
                      xaxis_title="team return", yaxis_title="episodes", height=350)
    return fig


def mpe_force(actions: np.ndarray) -> np.ndarray:
    """MPE's effective force (..., 2) from an action in [-1, 1]: the 2-d force-xy action
    itself, or (a2 - a1, a4 - a3) / 2 from mpe2's 5-d one."""
    if actions.shape[-1] == 2:
        return actions
    return np.stack([actions[..., 2] - actions[..., 1], actions[..., 4] - actions[..., 3]],
                    axis=-1) / 2.0


def action_histogram(datasets: dict[str, OfflineDataset], agent: int = 0) -> Any:
    """Per-agent distribution of the x-force each quality applied (MPE) or action 0 (others)."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for quality, ds in datasets.items():
        a = ds.actions[:, agent]
        x = mpe_force(a)[:, 0] if a.shape[-1] in (2, 5) else a[:, 0]  # MPE: 2 or 5 wide
        fig.add_trace(go.Histogram(x=x, name=quality, opacity=0.6, histnorm="probability",
                                   marker_color=COLOURS.get(quality), nbinsx=60))
    fig.update_layout(barmode="overlay", title=f"agent {agent}: action distribution",
                      xaxis_title="x-force (MPE) / action 0", yaxis_title="fraction",
                      height=350)
    return fig


def coverage_figure(datasets: dict[str, OfflineDataset], agent: int = 0,
                    max_points: int = 3000) -> Any:
    """Where agent ``agent`` was (MPE obs[2:4] is its position) under each quality."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for quality, ds in datasets.items():
        xy = ds.obs[:max_points, agent, 2:4]
        fig.add_trace(go.Scatter(x=xy[:, 0], y=xy[:, 1], mode="markers", name=quality,
                                 marker={"size": 3, "color": COLOURS.get(quality),
                                         "opacity": 0.5}))
    fig.update_layout(title=f"states visited by agent {agent}", width=480, height=460,
                      yaxis={"scaleanchor": "x"})
    return fig
