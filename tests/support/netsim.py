"""A seeded, simulated lossy network with a fake clock that drives sans-IO endpoints.

Each endpoint is anything with ``receive_datagram(data, addr, now)``,
``datagrams_to_send(now) -> [(lease_or_bytes, addr)]``, ``get_timer()`` and
``handle_timer(now)``. The network copies each datagram's bytes and releases the lease at
once, as a socket send would.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol


class Endpoint(Protocol):
    def receive_datagram(self, data: Any, addr: Any, now: float) -> None: ...
    def datagrams_to_send(self, now: float) -> list[tuple[Any, Any]]: ...
    def get_timer(self) -> float | None: ...
    def handle_timer(self, now: float) -> None: ...


@dataclass
class Impairments:
    """What the network does to each datagram, independently per datagram."""

    loss: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0  # chance of an extra delay that lets later datagrams pass
    corrupt: float = 0.0  # chance of flipping one random byte
    mtu: int | None = None  # larger datagrams are dropped, as a path with this MTU would
    delay: float = 0.010
    reorder_delay: float = 0.050


@dataclass
class Stats:
    sent: int = 0
    delivered: int = 0
    lost: int = 0
    duplicated: int = 0
    reordered: int = 0
    corrupted: int = 0
    too_big: int = 0
    bytes_sent: int = 0
    largest: int = 0
    by_sender: dict[Any, int] = field(default_factory=dict)
    corrupted_log: list[tuple[bytes, bytes]] = field(default_factory=list)  # (sent, delivered)


class SimNetwork:
    """Endpoints by address; datagrams in flight in a time-ordered queue."""

    def __init__(self, seed: int = 0, impairments: Impairments | None = None) -> None:
        self.rng = random.Random(seed)
        self.imp = impairments or Impairments()
        self.now = 0.0
        self.endpoints: dict[Any, Endpoint] = {}
        self._queue: list[tuple[float, int, Any, Any, bytes]] = []
        self._counter = 0
        self.stats = Stats()
        # A test's own man in the middle: (src, dst, data) -> data to deliver, or None.
        self.tamper: Callable[[Any, Any, bytes], bytes | None] | None = None

    def add(self, addr: Any, endpoint: Endpoint) -> None:
        self.endpoints[addr] = endpoint

    def _transmit(self, src: Any, dst: Any, data: bytes) -> None:
        imp = self.imp
        if self.tamper is not None:
            tampered = self.tamper(src, dst, data)
            if tampered is None:
                self.stats.lost += 1
                return
            data = tampered
        self.stats.sent += 1
        self.stats.bytes_sent += len(data)
        self.stats.largest = max(self.stats.largest, len(data))
        self.stats.by_sender[src] = self.stats.by_sender.get(src, 0) + 1
        if imp.mtu is not None and len(data) > imp.mtu:
            self.stats.too_big += 1
            return
        if self.rng.random() < imp.loss:
            self.stats.lost += 1
            return
        copies = 1
        if self.rng.random() < imp.duplicate:
            copies = 2
            self.stats.duplicated += 1
        for _ in range(copies):
            payload = data
            if imp.corrupt and self.rng.random() < imp.corrupt:
                buf = bytearray(data)
                buf[self.rng.randrange(len(buf))] ^= 1 << self.rng.randrange(8)
                payload = bytes(buf)
                self.stats.corrupted += 1
                self.stats.corrupted_log.append((data, payload))
            at = self.now + imp.delay
            if self.rng.random() < imp.reorder:
                at += self.rng.uniform(0, imp.reorder_delay)
                self.stats.reordered += 1
            self._counter += 1
            heapq.heappush(self._queue, (at, self._counter, src, dst, payload))

    def flush(self) -> None:
        """Collect what every endpoint wants to send now."""
        for addr, ep in self.endpoints.items():
            for data, dst in ep.datagrams_to_send(self.now):
                raw = bytes(data)
                release = getattr(data, "release", None)
                if release is not None:
                    release()
                self._transmit(addr, dst, raw)

    def step(self) -> bool:
        """Advance to the next delivery or timer; False when nothing is left to do."""
        self.flush()
        timers = [
            (t, addr) for addr, ep in self.endpoints.items() if (t := ep.get_timer()) is not None
        ]
        next_delivery = self._queue[0][0] if self._queue else None
        next_timer = min(timers)[0] if timers else None
        if next_delivery is None and next_timer is None:
            return False
        if next_timer is None or (next_delivery is not None and next_delivery <= next_timer):
            at, _, src, dst, payload = heapq.heappop(self._queue)
            self.now = max(self.now, at)
            ep = self.endpoints.get(dst)
            if ep is not None:
                self.stats.delivered += 1
                ep.receive_datagram(payload, src, self.now)
        else:
            self.now = max(self.now, next_timer)
            for t, addr in timers:
                if t <= self.now:
                    self.endpoints[addr].handle_timer(self.now)
        self.flush()
        return True

    def run(
        self, until: Callable[[], bool], max_time: float = 600.0, max_steps: int = 100_000
    ) -> bool:
        """Step until ``until()`` holds (True) or time/steps run out (False)."""
        for _ in range(max_steps):
            if until():
                return True
            if self.now > max_time or not self.step():
                return until()
        return until()

    def inject(self, src: Any, dst: Any, data: bytes) -> None:
        """Deliver a datagram of the test's own making on the next step."""
        self._counter += 1
        heapq.heappush(self._queue, (self.now, self._counter, src, dst, data))
