"""The dataset a training config names: its file, or the generated and cached one.

Not the generator (``generate``) nor the checks of a file (``validate``): this picks the
data set from a ``TrainConfig``'s fields and checks it holds the config's task and quality.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from om2p_lite.data.dataset import OfflineDataset, load_dataset
from om2p_lite.data.generate import get_dataset
from om2p_lite.envs import MPE_TASKS, dataset_layout, parse_task

if TYPE_CHECKING:
    from om2p_lite.rl.config import TrainConfig


def load_data(cfg: TrainConfig) -> OfflineDataset:
    """The run's dataset, checked to belong to ``cfg.task`` (and ``cfg.quality`` if recorded)."""
    if cfg.dataset:
        ds = load_dataset(cfg.dataset)
    else:
        ds = get_dataset(cfg.task, cfg.quality, cfg.data_seed, cfg.data_budget,
                         reward_variant=cfg.reward_variant, action_layout=cfg.action_layout,
                         behaviour=cfg.behaviour)
    check_dataset(ds, cfg)
    return ds


def check_dataset(ds: Any, cfg: TrainConfig) -> None:
    """Raise if ``ds`` was made for another task, quality, MPE action layout or (generated
    data) MPE behaviour than the config names (the layout read off the actions' width:
    ``envs.dataset_layout``)."""
    meta = getattr(ds, "metadata", {}) or {}
    where = cfg.dataset or "the dataset"
    if meta.get("task", cfg.task) != cfg.task:
        raise ValueError(f"{where} holds task {meta['task']!r} but the config trains "
                         f"task {cfg.task!r}. Fix: set task = {meta['task']!r} or pass a "
                         f"{cfg.task!r} dataset")
    if meta.get("quality", cfg.quality) != cfg.quality:
        raise ValueError(f"{where} holds quality {meta['quality']!r} but the config says "
                         f"{cfg.quality!r}. Fix: set quality = {meta['quality']!r}")
    source = meta.get("behaviour_source", "scripted")  # a file older than the field
    if parse_task(cfg.task)[0] in MPE_TASKS and not cfg.dataset and source != "uniform" \
            and source != cfg.behaviour:
        raise ValueError(f"{where} was made by the {source} behaviour but the config says "
                         f"behaviour = {cfg.behaviour!r}. Fix: set behaviour = {source!r}")
    if parse_task(cfg.task)[0] in MPE_TASKS and "act_dims" in meta:
        layout = dataset_layout(meta)
        if layout != cfg.action_layout:
            raise ValueError(f"{where} holds {layout} actions ({meta['act_dims'][0]} per "
                             f"agent) but the config says action_layout = "
                             f"{cfg.action_layout!r}. Fix: set action_layout = {layout!r}")
