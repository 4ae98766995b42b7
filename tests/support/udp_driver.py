"""Drive a sans-IO Connection (or ServerEndpoint) over a real blocking UDP socket (interop
tests)."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any

from dtls13.connection import Connection
from dtls13.endpoint import ServerEndpoint
from dtls13.events import Event
from dtls13.memory import DATAGRAM_SLOT


class UdpDriver:
    """One sans-IO core, one socket, a monotonic clock. For a Connection its events are
    collected in `events`; `after_input` replaces that (a ServerEndpoint has no events of
    its own: its caller looks at the connections)."""

    def __init__(
        self,
        conn: Connection | ServerEndpoint,
        sock: socket.socket,
        *,
        after_input: Callable[[], None] | None = None,
    ) -> None:
        self.conn = conn
        self.sock = sock
        self.events: list[Event] = []
        self.buf = bytearray(65536)
        self.after_input = after_input

    def flush(self) -> None:
        for lease, addr in self.conn.datagrams_to_send(time.monotonic()):
            try:
                self.sock.sendto(lease, addr)
            finally:
                lease.release()

    def step(self, max_wait: float = 0.05) -> None:
        self.flush()
        timer = self.conn.get_timer()
        wait = max_wait if timer is None else max(0.0, min(max_wait, timer - time.monotonic()))
        self.sock.settimeout(wait)
        try:
            n, addr = self.sock.recvfrom_into(self.buf)
        except (TimeoutError, BlockingIOError):
            n = -1
        now = time.monotonic()
        if n >= 0:
            self.conn.receive_datagram(memoryview(self.buf)[:n], addr, now)
        timer = self.conn.get_timer()
        if timer is not None and now >= timer:
            self.conn.handle_timer(now)
        if self.after_input is not None:
            self.after_input()
        else:
            assert isinstance(self.conn, Connection)
            while (ev := self.conn.next_event()) is not None:
                self.events.append(ev)
        self.flush()

    def run_until(self, cond: Callable[[], bool], timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if cond():
                return True
            self.step()
        return cond()


def bound_socket(host: str = "127.0.0.1") -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.bind((host, 0))
    return sock


def events_of(driver: UdpDriver, kind: type[Any]) -> list[Any]:
    return [e for e in driver.events if isinstance(e, kind)]


__all__ = ["DATAGRAM_SLOT", "UdpDriver", "bound_socket", "events_of"]
