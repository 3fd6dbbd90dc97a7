"""om2p-lite: a small PyTorch library that teaches and reproduces OM2P (offline multi-agent
mean-flow policies). Names are imported lazily so ``import om2p_lite`` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    "Budget": "budget", "get_budget": "budget", "BUDGETS": "budget",
    "pick_device": "device", "describe_device": "device",
    "seed_everything": "seeding",
    "mlp": "networks", "VelocityNet": "networks",
    "interpolate": "flow", "conditional_velocity": "flow", "flow_matching_loss": "flow",
    "du_dr": "meanflow", "meanflow_target": "meanflow", "meanflow_loss": "meanflow",
    "adaptive_weight": "meanflow", "ESTIMATORS": "meanflow",
    "sample_flow": "sampling", "sample_meanflow": "sampling",
    "Xi": "timesteps", "LogitNormal": "timesteps", "make_time_sampler": "timesteps",
    "sample_r_t": "timesteps",
    "toy_modes": "toys", "toy_joint_actions": "toys", "no_obs": "toys",
    "GaussianAverageVelocity": "toys",
    "sliced_wasserstein": "metrics", "mode_coverage": "metrics",
    "fit_toy": "toytrain", "ToyFit": "toytrain",
    "fd_error_sweep": "meanflow", "provenance": "record", "git_commit": "record",
    "median_seconds": "timing",
    "DiffusionSchedule": "diffusion", "diffusion_loss": "diffusion",
    "sample_diffusion": "diffusion",
    "StackedMLP": "stacked", "StackedVelocityNet": "stacked", "stacked_du_dr": "stacked",
    "sample_stacked": "stacked", "StackedCritic": "critics",
    "TrainConfig": "train", "budget_config": "train",
    "evaluate_agent": "evaluate", "make_agent": "agents", "ALGORITHMS": "agents",
    "load_results": "results", "results_table": "results", "table_markdown": "results",
    "table_html": "results",
    "plots": "plots", "widgets": "widgets", "bench_report": "bench_report",
}


def __getattr__(name: str) -> Any:
    """Import the module that defines ``name`` on first use."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'om2p_lite' has no attribute {name!r}")
    module = importlib.import_module(f".{_EXPORTS[name]}", __name__)
    return getattr(module, name) if hasattr(module, name) else module


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
