"""Tables and plotly figures from the ``bench/`` JSON files (chapter 09 and the README).

Not the benchmarks themselves (``bench/*.py`` measure and write the JSON); this only reads.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from om2p_lite.book.plots import PALETTE, lines

BENCHMARKS = ("sampling_latency", "train_step_cost", "scaling", "population", "peer",
              "first_critic")
DEFAULT_DIR = Path(__file__).resolve().parents[2] / "data" / "results" / "bench"


def load_results(folder: str | Path = DEFAULT_DIR) -> dict[str, dict[str, Any]]:
    """Every ``<benchmark>_<device>.json`` in ``folder``, keyed by file stem."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"no benchmark results at {folder}: run "
                                f"`python bench/run_all.py` first")
    out = {}
    for path in sorted(folder.glob("*.json")):
        payload = json.loads(path.read_text())
        if payload.get("benchmark") not in BENCHMARKS:
            raise ValueError(f"{path} is not a bench result (benchmark field "
                             f"{payload.get('benchmark')!r}; expected one of {BENCHMARKS})")
        out[path.stem] = payload
    return out


def _check(payload: Mapping[str, Any], benchmark: str) -> None:
    if payload.get("benchmark") != benchmark:
        raise ValueError(f"expected a {benchmark!r} result, got {payload.get('benchmark')!r}")


def latency_table(payload: Mapping[str, Any]) -> pd.DataFrame:
    """Rows (size, agents, batch), one column per sampler: time relative to the plain MLP."""
    _check(payload, "sampling_latency")
    df = pd.DataFrame(payload["results"])
    table = df.pivot_table(index=["size", "agents", "batch"], columns="method",
                           values="ratio_to_mlp", sort=False)
    mlp_us = df[df.method == "mlp"].set_index(["size", "agents", "batch"])["seconds"] * 1e6
    table.insert(0, "mlp_us", mlp_us)
    return table[["mlp_us", *list(dict.fromkeys(df.method))]]


def train_cost_table(payload: Mapping[str, Any]) -> pd.DataFrame:
    """Rows (size, kind, method): seconds, peak MiB and both relative to OM2P's fd step."""
    _check(payload, "train_step_cost")
    df = pd.DataFrame(payload["results"])
    cols = ["size", "kind", "label", "seconds", "peak_mib", "extra_mib", "time_vs_fd",
            "memory_vs_fd"]
    return df[[c for c in cols if c in df.columns]].set_index(["size", "kind", "label"])


def scaling_table(payload: Mapping[str, Any], sweep: str = "vs_agents") -> pd.DataFrame:
    """The agents (``vs_agents``) or batch (``vs_batch``) sweep with growth factors."""
    _check(payload, "scaling")
    if sweep not in ("vs_agents", "vs_batch"):
        raise ValueError(f"sweep must be 'vs_agents' or 'vs_batch', got {sweep!r}")
    return pd.DataFrame(payload[sweep])


def population_table(payload: Mapping[str, Any]) -> pd.DataFrame:
    """Rows (size, members): ms per member and step, per-member speed-up over one run, and
    OM2P's update time over MA-TD3+BC's with the counted FLOP ratio beside it (OM2P's file
    only: another algorithm's, ``bench/population.py --algo``, has the first two)."""
    _check(payload, "population")
    cols = ["size", "members", "ms_per_member_step", "vs_one_run", "om2p_vs_td3bc",
            "flop_ratio"]
    df = pd.DataFrame(payload["results"])
    return df[[c for c in cols if c in df.columns]].set_index(["size", "members"])


def first_critic_table(payload: Mapping[str, Any]) -> pd.DataFrame:
    """Rows (size, algo): ``agent.update`` ms with the first critic alone and with the whole
    ensemble, their ratio, and whether both gave bitwise the same parameters."""
    _check(payload, "first_critic")
    cols = ["size", "algo", "first_critic_ms", "whole_ensemble_ms", "ratio", "bitwise_same"]
    return pd.DataFrame(payload["results"])[cols].set_index(["size", "algo"])


def peer_table(payload: Mapping[str, Any]) -> pd.DataFrame:
    """One row per candidate against the official code: steps/s, the ratio to the official
    code's, achieved GFLOP/s and share of the matmul peak, peak memory."""
    _check(payload, "peer")
    cols = ["candidate", "threads", "steps_per_s", "vs_official", "gflops_per_s", "of_peak",
            "peak_rss_mib"]
    df = pd.DataFrame(payload["results"])
    return df[[c for c in cols if c in df.columns]].set_index("candidate")


def targets_table(results: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """Every target check of every result file, with the device it ran on."""
    rows = []
    for stem, payload in results.items():
        for check in payload.get("targets", []):
            rows.append({"file": stem, "device": payload["meta"].get("device"), **check})
    return pd.DataFrame(rows)


def latency_figure(payload: Mapping[str, Any], size: str | None = None, agents: int = 1):
    """Time relative to the MLP vs batch size, one line per sampler (log y)."""
    df = pd.DataFrame(payload["results"])
    _check(payload, "sampling_latency")
    size = size if size is not None else df["size"].iloc[0]
    sub = df[(df["size"] == size) & (df.agents == agents)]
    if sub.empty:
        raise ValueError(f"no latency rows for size={size!r}, agents={agents}; have "
                         f"{sorted(set(zip(df['size'], df.agents, strict=True)))}")
    batches = sorted(sub.batch.unique())
    ys = {m: [float(sub[(sub.method == m) & (sub.batch == b)].ratio_to_mlp.iloc[0])
              for b in batches] for m in dict.fromkeys(sub.method)}
    return lines([str(b) for b in batches], ys, log_y=True, xlabel="batch of actions",
                 ylabel="time / plain MLP", title=f"Sampling latency ({size}, "
                 f"{agents} agent{'s' if agents > 1 else ''}, {payload['meta']['device']})")


def train_cost_figure(payload: Mapping[str, Any], size: str | None = None,
                      kind: str = "full"):
    """Side-by-side bars: time and peak memory of each step relative to OM2P's fd step."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    _check(payload, "train_step_cost")
    df = pd.DataFrame(payload["results"])
    size = size if size is not None else df["size"].iloc[0]
    sub = df[(df["size"] == size) & (df.kind == kind)]
    if sub.empty:
        raise ValueError(f"no train-cost rows for size={size!r}, kind={kind!r}")
    fig = make_subplots(rows=1, cols=2, subplot_titles=["time / fd", "peak memory / fd"])
    for col, key in ((1, "time_vs_fd"), (2, "memory_vs_fd")):
        fig.add_trace(go.Bar(x=list(sub.label), y=list(sub[key]), showlegend=False,
                             marker_color=[PALETTE[i % len(PALETTE)] for i in range(len(sub))]),
                      row=1, col=col)
    fig.update_layout(title=f"Training-step cost, {kind} step ({size}, "
                            f"{payload['meta']['device']})", height=380)
    return fig


def scaling_figure(payload: Mapping[str, Any], sweep: str = "vs_agents"):
    """Growth of step and sampling time against growth of agents (or batch), with y = x."""
    df = scaling_table(payload, sweep)
    key = "agents" if sweep == "vs_agents" else "batch"
    x = [str(v) for v in df[key]]
    ys = {"linear (y = x)": list(df.size_growth), "training step": list(df.step_growth),
          "one-step sampling": list(df.sample_growth)}
    return lines(x, ys, log_y=True, xlabel=key, ylabel=f"time / time at {key}={x[0]}",
                 title=f"Scaling with {key} ({payload['meta']['device']})")
