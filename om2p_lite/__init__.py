"""om2p-lite: a small PyTorch library that teaches and reproduces OM2P (offline multi-agent
mean-flow policies). Names are imported lazily so ``import om2p_lite`` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    # om2p_lite.book
    "bench_report": "book.bench_report",
    "curves": "book.curves", "stats": "book.stats", "claims": "book.claims",
    "sweeps": "book.sweeps", "load_sweep": "book.sweeps",
    "sliced_wasserstein": "book.metrics", "mode_coverage": "book.metrics",
    "plots": "book.plots",
    "toy_modes": "book.toys", "toy_joint_actions": "book.toys", "no_obs": "book.toys",
    "GaussianAverageVelocity": "book.toys",
    "fit_toy": "book.toytrain", "ToyFit": "book.toytrain",
    "widgets": "book.widgets",
    # om2p_lite.flows
    "DiffusionSchedule": "flows.diffusion", "diffusion_loss": "flows.diffusion",
    "sample_diffusion": "flows.diffusion",
    "interpolate": "flows.flow", "conditional_velocity": "flows.flow",
    "flow_matching_loss": "flows.flow",
    "du_dr": "flows.meanflow", "meanflow_target": "flows.meanflow",
    "meanflow_loss": "flows.meanflow", "adaptive_weight": "flows.meanflow",
    "ESTIMATORS": "flows.meanflow", "fd_error_sweep": "flows.meanflow",
    "PrecisionWarning": "flows.meanflow", "unresolved_share": "flows.meanflow",
    "mlp": "flows.networks", "VelocityNet": "flows.networks",
    "sample_flow": "flows.sampling", "sample_meanflow": "flows.sampling",
    "StackedMLP": "flows.stacked", "StackedVelocityNet": "flows.stacked",
    "stacked_du_dr": "flows.stacked", "sample_stacked": "flows.stacked",
    "Xi": "flows.timesteps", "LogitNormal": "flows.timesteps",
    "make_time_sampler": "flows.timesteps", "sample_r_t": "flows.timesteps",
    # om2p_lite.rl
    "make_agent": "rl.agents", "ALGORITHMS": "rl.agents", "OM2PAgent": "rl.agents",
    "TrainConfig": "rl.config", "budget_config": "rl.config",
    "StackedCritic": "rl.critics", "normalised_q_loss": "rl.critics",
    "train": "rl.train",
    "train_population": "rl.train", "population_key": "rl.population",
    "PER_MEMBER_FIELDS": "rl.population",
    "NonFiniteError": "rl.rundir", "CheckpointError": "rl.rundir", "RunFolderBusy": "rl.rundir",
    "run_folder_lock": "rl.rundir", "load_checkpoint": "rl.rundir",
    "RunFolder": "rl.rundir",
    "load_experiment": "rl.spec", "experiment_runs": "rl.spec",
    "run_experiment": "rl.scheduler", "ExperimentFailed": "rl.scheduler",
    "evaluate_agent": "rl.evaluate", "evaluate_population": "rl.evaluate",
    "load_runs": "rl.results", "load_results": "rl.results", "results_table": "rl.results",
    "table_markdown": "rl.results", "table_html": "rl.results",
    "summarise": "rl.results",
    # om2p_lite.runtime
    "Budget": "runtime.budget", "get_budget": "runtime.budget", "BUDGETS": "runtime.budget",
    "pick_device": "runtime.device", "describe_device": "runtime.device",
    "short_device": "runtime.device", "devices_of": "runtime.device",
    "provenance": "runtime.record", "git_commit": "runtime.record",
    "seed_everything": "runtime.seeding",
    "median_seconds": "runtime.timing",
}


def __getattr__(name: str) -> Any:
    """Import the module that defines ``name`` on first use."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'om2p_lite' has no attribute {name!r}")
    module = importlib.import_module(f".{_EXPORTS[name]}", __name__)
    return getattr(module, name) if hasattr(module, name) else module


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
