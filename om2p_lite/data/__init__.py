"""Offline multi-agent datasets: format, validation, generation, npy import/export, references.

Not a downloader: every dataset is generated here (or imported from files you already have).
"""

from __future__ import annotations

from om2p_lite.data.dataset import OfflineDataset, load_dataset, save_dataset
from om2p_lite.data.errors import DatasetError

__all__ = ["DatasetError", "OfflineDataset", "load_dataset", "save_dataset"]
