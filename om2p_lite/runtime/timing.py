"""Median wall time of a callable, with warm-up and CUDA synchronisation.

Not a benchmark suite (see ``bench/``): one honest measurement helper they share.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch


def median_seconds(fn: Callable[[], object], repeats: int = 20, warmup: int = 3,
                   device: torch.device | str | None = None) -> float:
    """Median seconds per call of ``fn`` over ``repeats`` after ``warmup`` calls."""
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got {repeats}, {warmup}")
    cuda = device is not None and torch.device(device).type == "cuda"
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
