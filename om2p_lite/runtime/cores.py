"""How many CPU cores other processes leave idle, measured now rather than averaged.

``threads = 0`` sizes torch's thread pool by it: on a 2-core machine shared with a sweep,
two threads that fight another busy process are slower than one. The 1-minute load
average lags by a minute, so a run that starts just after another job ends would see
both cores busy; the machine's CPU counters (``/proc/stat``) show the cores' state now.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

PROC_STAT = Path("/proc/stat")


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask where the OS has one)."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return n or 1


def busy_core_seconds(text: str, cpus: set[int] | None = None) -> float | None:
    """Seconds the cores ``cpus`` (all if None) have been busy since boot, from /proc/stat text.

    Busy = every counter but idle and iowait. None if the text has no per-core lines.
    """
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    busy, seen = 0, False
    for line in text.splitlines():
        name, *fields = line.split()
        if not (name.startswith("cpu") and name[3:].isdigit()):
            continue
        if cpus is not None and int(name[3:]) not in cpus:
            continue
        ticks = [int(f) for f in fields[:8]]
        busy += sum(ticks) - ticks[3] - (ticks[4] if len(ticks) > 4 else 0)
        seen = True
    return busy / tick if seen else None


def _read_busy() -> float | None:
    """Busy core-seconds of the cores this process may use; None where /proc/stat is not."""
    try:
        cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
        return busy_core_seconds(PROC_STAT.read_text(), cpus)
    except (OSError, ValueError):
        return None


class IdleCores:
    """Cores that *other* processes left idle since the last look, a meter for one process.

    ``idle()`` compares the machine's busy core-seconds with this process's own CPU time
    over the interval since the previous call, so the process's own threads do not count
    as load. The first call measures a short ``window`` while this process waits; a call
    sooner than ``window`` after the last gives the last answer again. Where
    /proc/stat is missing (not Linux) the 1-minute load average stands in for the counters.
    """

    def __init__(self, window: float = 0.1, read_busy: Callable[[], float | None] = _read_busy,
                 clock: Callable[[], float] = time.monotonic,
                 own_cpu: Callable[[], float] = time.process_time) -> None:
        self.window, self.read_busy, self.clock, self.own_cpu = window, read_busy, clock, own_cpu
        self.n = usable_cores()
        self._last: tuple[float, float | None, float] | None = None
        self._idle = float(self.n)

    def _sample(self) -> tuple[float, float | None, float]:
        return self.clock(), self.read_busy(), self.own_cpu()

    def idle(self) -> float:
        """Cores others left idle since the previous call (or over ``window`` on the first)."""
        if self._last is None:
            self._last = self._sample()
            time.sleep(self.window)
        (t0, b0, o0), (t1, b1, o1) = self._last, self._sample()
        if t1 <= t0 or t1 - t0 < self.window:  # the counters tick at 100 Hz: too soon to
            return self._idle                     # tell, keep the last answer
        self._last = (t1, b1, o1)
        own = (o1 - o0) / (t1 - t0)
        if b0 is None or b1 is None:
            try:
                others = os.getloadavg()[0] - own
            except (OSError, AttributeError):
                return float(self.n)
        else:
            others = (b1 - b0) / (t1 - t0) - own
        self._idle = min(float(self.n), max(0.0, self.n - max(others, 0.0)))
        return self._idle

    def threads(self) -> int:
        """Torch threads to use: the idle cores, rounded, at least 1 and at most all."""
        return max(1, min(self.n, int(self.idle() + 0.5)))
