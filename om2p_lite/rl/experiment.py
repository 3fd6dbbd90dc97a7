"""Experiments, by their old address: the names of ``rl.spec`` (the TOML grid and its runs),
``rl.scheduler`` (planning and running them), ``rl.cluster`` (Dask) and the run-folder
helpers they used, re-exported for the callers that import ``rl.experiment``.

New code imports from those modules; nothing is defined here.
"""

from __future__ import annotations

from om2p_lite.rl.cluster import check_dask_address, dask_client, dask_security, local_client
from om2p_lite.rl.rundir import RunFolder, check_folder, describe_os_error
from om2p_lite.rl.scheduler import (
    ExperimentFailed,
    Plan,
    classify,
    finished_result,
    plan_experiment,
    plan_populations,
    run_experiment,
    stale_fields,
    train_members,
)
from om2p_lite.rl.spec import (
    DEFAULT_RESULTS_DIR,
    Run,
    check_fields,
    experiment_cells,
    experiment_runs,
    load_experiment,
    read_toml,
    results_root,
    runs_of,
    validate_experiment,
)
from om2p_lite.rl.train import finish_run, record

__all__ = [
    "DEFAULT_RESULTS_DIR", "ExperimentFailed", "Plan", "Run", "RunFolder",
    "check_dask_address", "check_fields", "check_folder", "classify", "dask_client",
    "dask_security", "describe_os_error", "experiment_cells", "experiment_runs",
    "finish_run", "finished_result", "load_experiment", "local_client", "plan_experiment",
    "plan_populations", "read_toml", "record", "results_root", "run_experiment", "runs_of",
    "stale_fields", "train_members", "validate_experiment",
]
