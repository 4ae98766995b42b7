"""The timer task shared by the endpoints of a trio run: a wake-up runs the endpoints whose
timer is due and touches no other, however many endpoints the run has; a timer superseded
by an earlier one runs once; a closed or collected endpoint is skipped."""

from __future__ import annotations

import gc
import math

import trio

from dtls13.trio._timers import Timers


class FakeEndpoint:
    """What the timer task uses of an endpoint, counting how often it is looked at."""

    def __init__(self, timer_at: float, then: float = math.inf) -> None:
        self._closed = False
        self._at = timer_at
        self.then = then  # its next timer once the due ones ran
        self.looked_at = 0
        self.ran = 0

    @property
    def _timer_at(self) -> float:
        self.looked_at += 1
        return self._at

    @_timer_at.setter
    def _timer_at(self, t: float) -> None:
        self._at = t

    def _run_timers(self) -> None:
        self.ran += 1

    def _next_deadline(self) -> float:
        return self.then

    def _internal_error(self, exc: BaseException) -> None:
        raise AssertionError(exc)


def _join(timers: Timers, *endpoints: FakeEndpoint) -> None:
    for ep in endpoints:
        timers.add(ep)  # type: ignore[arg-type]  # a stand-in with what Timers uses


def _timers_at(clock: list[float]) -> Timers:
    timers = Timers()
    timers.now = lambda: clock[0]
    return timers


def test_a_wake_up_touches_only_the_endpoints_that_are_due() -> None:
    async def main() -> None:
        clock = [100.0]
        timers = _timers_at(clock)
        idle = [FakeEndpoint(1e9) for _ in range(1000)]
        busy = FakeEndpoint(101.0, then=102.0)
        _join(timers, *idle, busy)
        for ep in idle:
            ep.looked_at = 0
        for step in range(1, 11):
            clock[0] = 100.0 + step
            assert timers.run_due() == 100.0 + step + 1
            busy.then += 1
        assert busy.ran == 10
        assert all(ep.ran == 0 and ep.looked_at == 0 for ep in idle)
        assert timers.deadline == math.inf  # nothing armed while they ran

    trio.run(main)


def test_a_timer_superseded_by_an_earlier_one_runs_once() -> None:
    async def main() -> None:
        clock = [0.0]
        timers = _timers_at(clock)
        ep = FakeEndpoint(math.inf)
        _join(timers, ep)
        for t in (5.0, 2.0):  # the endpoint arms 5, then an earlier 2
            ep._timer_at = t
            timers.arm(id(ep), t)
        assert timers.deadline == 2.0
        clock[0] = 3.0
        assert timers.run_due() == 5.0  # the superseded entry is still queued...
        clock[0] = 6.0
        assert timers.run_due() == math.inf  # ...and skipped when it comes up
        assert ep.ran == 1

    trio.run(main)


def test_closed_and_collected_endpoints_are_skipped_and_forgotten() -> None:
    async def main() -> None:
        clock = [0.0]
        timers = _timers_at(clock)
        closed, dropped = FakeEndpoint(1.0), FakeEndpoint(1.0)
        _join(timers, closed, dropped)
        closed._closed = True
        del dropped
        gc.collect()
        assert len(timers.endpoints) == 1  # the collected one left at once
        clock[0] = 2.0
        assert timers.run_due() == math.inf
        assert closed.ran == 0

    trio.run(main)


def test_a_timer_armed_before_the_endpoint_joined_is_kept() -> None:
    async def main() -> None:
        clock = [0.0]
        timers = _timers_at(clock)
        ep = FakeEndpoint(3.0)
        _join(timers, ep)
        assert timers.deadline == 3.0
        clock[0] = 3.0
        timers.run_due()
        assert ep.ran == 1

    trio.run(main)


def test_superseded_entries_do_not_pile_up() -> None:
    async def main() -> None:
        clock = [0.0]
        timers = _timers_at(clock)
        eps = [FakeEndpoint(math.inf) for _ in range(10)]
        _join(timers, *eps)
        for i in range(10_000):  # each arms an ever earlier timer, far in the future
            ep = eps[i % 10]
            t = 1e6 - i
            ep._timer_at = t
            timers.arm(id(ep), t)
        assert len(timers._heap) <= 64 + 4 * 10
        clock[0] = 2e6
        timers.run_due()
        assert all(ep.ran == 1 for ep in eps)

    trio.run(main)
