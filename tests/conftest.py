"""Fixtures shared by the test modules."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One torch thread in every test module (restored after it): tiny nets on a shared
    2-core CPU are slowest when oversubscribed, and a test that wants more sets its own."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def dataset_path(tmp_path_factory) -> Path:
    """A small Spread expert dataset file (200 transitions) for tiny runs of the CLI."""
    from om2p_lite.data import save_dataset
    from om2p_lite.data.generate import make_dataset

    ds = make_dataset("spread", "expert", 0, n_transitions=200)[0]
    return save_dataset(ds, tmp_path_factory.mktemp("data") / "spread.npz")
