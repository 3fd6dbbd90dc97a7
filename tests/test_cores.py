"""The idle-core meter behind ``threads = 0``: measured from CPU counters, own load excluded."""

from __future__ import annotations

import os
import time

import pytest

from om2p_lite.runtime import cores
from om2p_lite.runtime.cores import IdleCores, busy_core_seconds

STAT = """cpu  300 0 100 1000 50 0 0 0 0 0
cpu0 100 0 50 500 25 0 0 0 0 0
cpu1 200 0 50 500 25 0 0 0 0 0
intr 12345
ctxt 999
"""


def test_busy_core_seconds_counts_all_but_idle_and_iowait_per_core():
    tick = os.sysconf("SC_CLK_TCK")
    assert busy_core_seconds(STAT) == pytest.approx(400 / tick)
    assert busy_core_seconds(STAT, {1}) == pytest.approx(250 / tick)
    assert busy_core_seconds("intr 1\n") is None


class Fake:
    """A machine whose counters the test drives: n cores, others' and our own busy seconds."""

    def __init__(self) -> None:
        self.t, self.busy, self.own = 0.0, 0.0, 0.0

    def advance(self, dt: float, others: float, own: float) -> None:
        self.t += dt
        self.busy += (others + own) * dt
        self.own += own * dt


def meter(fake: Fake, monkeypatch, n: int = 2) -> IdleCores:
    monkeypatch.setattr(cores, "usable_cores", lambda: n)
    m = IdleCores(window=0.0, read_busy=lambda: fake.busy, clock=lambda: fake.t,
                  own_cpu=lambda: fake.own)
    m.threads()  # the first look: its zero window sees nothing
    return m


def test_threads_follow_the_load_now_not_a_minute_ago(monkeypatch):
    fake = Fake()
    m = meter(fake, monkeypatch)
    fake.advance(5.0, others=2.0, own=0.0)  # another job holds both cores
    assert m.threads() == 1
    fake.advance(5.0, others=0.0, own=1.0)  # it ended: the next look sees both cores free
    assert m.threads() == 2
    fake.advance(5.0, others=1.0, own=1.0)  # one busy neighbour: one core for us
    assert m.idle() == pytest.approx(1.0)
    assert m.threads() == 1


def test_our_own_threads_are_not_counted_as_load(monkeypatch):
    fake = Fake()
    m = meter(fake, monkeypatch)
    fake.advance(3.0, others=0.0, own=2.0)  # we kept both cores busy ourselves
    assert m.idle() == pytest.approx(2.0)
    assert m.threads() == 2


def test_without_counters_the_load_average_stands_in(monkeypatch):
    monkeypatch.setattr(cores, "usable_cores", lambda: 4)
    monkeypatch.setattr(os, "getloadavg", lambda: (3.0, 0.0, 0.0))
    fake = Fake()
    m = IdleCores(window=0.0, read_busy=lambda: None, clock=lambda: fake.t,
                  own_cpu=lambda: fake.own)
    m.threads()
    fake.advance(5.0, others=0.0, own=0.0)
    assert m.threads() == 1
    monkeypatch.setattr(os, "getloadavg", lambda: (2.2, 0.0, 0.0))
    fake.advance(5.0, others=0.0, own=2.0)  # our own two threads are part of that load
    assert m.threads() == 4


def test_a_look_too_soon_after_the_last_repeats_its_answer(monkeypatch):
    fake = Fake()
    m = meter(fake, monkeypatch)
    m.window = 1.0
    fake.advance(2.0, others=2.0, own=0.0)
    assert m.idle() == pytest.approx(0.0)
    fake.advance(0.01, others=2.0, own=0.0)  # one counter tick: too soon to tell
    assert m.idle() == pytest.approx(0.0)
    fake.advance(2.0, others=0.0, own=0.0)  # measured from the last full look on
    assert m.idle() == pytest.approx(2.0 - 2.0 * 0.01 / 2.01, rel=1e-9)


def test_the_real_counters_give_a_sane_answer():
    m = IdleCores(window=0.5)
    first = m.idle()
    assert m.idle() == first  # straight after: too soon, the same answer
    time.sleep(0.5)
    assert 0.0 <= first <= m.n and 0.0 <= m.idle() <= m.n
    assert 1 <= m.threads() <= m.n
