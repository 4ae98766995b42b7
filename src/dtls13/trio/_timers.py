"""The trio run's timer task, one for all its DTLS endpoints (`Timers`)."""

from __future__ import annotations

import heapq
import math
import weakref
from typing import TYPE_CHECKING, Any

import trio

if TYPE_CHECKING:
    from .endpoint import DTLSEndpoint


class Timers:
    """The trio run's timer task: it sleeps until the earliest timer of any endpoint's
    core, then runs the endpoints whose timer is due. One for all endpoints, not one each:
    a client endpoint per connection would otherwise start and end a task per connection.

    An endpoint keeps its earliest timer in ``_timer_at`` and arms it here (`arm`): a heap
    of (time, endpoint) entries, so a wake-up costs the due endpoints, not all of them. An
    entry that an earlier one superseded is skipped when it comes up. One earlier than the
    task's deadline moves that in place (no wakeup). Holds endpoints by weak reference.
    """

    _run_var: trio.lowlevel.RunVar[Timers] = trio.lowlevel.RunVar("dtls13_timers")

    def __init__(self) -> None:
        self.endpoints: dict[int, weakref.ReferenceType[DTLSEndpoint]] = {}
        self._heap: list[tuple[float, int]] = []  # (time, id of the endpoint)
        self.scope: trio.CancelScope | None = None  # the task sleeps in it
        # The scope's deadline, read without its property; while timers run, the earliest
        # timer armed meanwhile.
        self.deadline = math.inf
        self.now = trio.lowlevel.current_clock().current_time

    @classmethod
    def for_this_run(cls) -> Timers:
        try:
            return cls._run_var.get()
        except LookupError:
            timers = cls()
            cls._run_var.set(timers)
            trio.lowlevel.spawn_system_task(timer_loop, timers)
            return timers

    def add(self, endpoint: DTLSEndpoint) -> None:
        """Run `endpoint`'s timers from now on (until it closes or is collected)."""
        key = id(endpoint)
        endpoints = self.endpoints
        # (An id is reused only once its object is gone, and the callback runs first.)
        endpoints[key] = weakref.ref(endpoint, lambda _: endpoints.pop(key, None))
        if endpoint._timer_at < math.inf:
            self.arm(key, endpoint._timer_at)

    def arm(self, key: int, t: float) -> None:
        """The endpoint `key`'s earliest timer is now `t`."""
        heap = self._heap
        heapq.heappush(heap, (t, key))
        if len(heap) > 64 + 4 * len(self.endpoints):
            self._compact()
        if t < self.deadline:
            self.deadline = t
            scope = self.scope
            if scope is not None:
                scope.deadline = t

    def _compact(self) -> None:
        """One entry per endpoint again: superseded entries would otherwise pile up until
        their time came (at most the timers' horizon times the arming rate)."""
        heap = []
        for key, ref in self.endpoints.items():
            ep = ref()
            if ep is not None and not ep._closed and ep._timer_at < math.inf:
                heap.append((ep._timer_at, key))
        heapq.heapify(heap)
        self._heap = heap

    def run_due(self) -> float:
        """Run the endpoints whose earliest timer is due; the earliest timer left."""
        now = self.now()
        self.deadline = math.inf
        heap, endpoints = self._heap, self.endpoints
        while heap and heap[0][0] <= now:
            t, key = heapq.heappop(heap)
            ref = endpoints.get(key)
            ep = ref() if ref is not None else None
            if ep is None or ep._closed or ep._timer_at != t:
                continue  # gone, or this entry was superseded by an earlier one
            try:
                ep._run_timers()
            except Exception as exc:
                ep._internal_error(exc)
            # Timers the core armed while they ran are found here.
            try:
                t = ep._next_deadline()
            except Exception as exc:
                ep._internal_error(exc)
                t = now + 0.1
            ep._timer_at = t
            if t < math.inf:
                heapq.heappush(heap, (t, key))
        return min(heap[0][0] if heap else math.inf, self.deadline)


async def timer_loop(timers: Timers) -> None:
    while True:
        deadline = timers.run_due()
        scope = timers.scope = trio.CancelScope(deadline=deadline)
        timers.deadline = deadline
        with scope:
            await trio.lowlevel.wait_task_rescheduled(_until_the_deadline)
        timers.scope = None


def _until_the_deadline(_: Any) -> trio.lowlevel.Abort:  # it came (or the run ends)
    return trio.lowlevel.Abort.SUCCEEDED
