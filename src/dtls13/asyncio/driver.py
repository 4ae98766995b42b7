"""How the asyncio endpoint drives the sans-IO core: datagrams in, datagrams out, timers.

`Driver` is `DTLSEndpoint`'s base: its state is set up by the endpoint's constructor.
"""

from __future__ import annotations

import asyncio
import socket as stdlib_socket
import weakref
from typing import TYPE_CHECKING, Any

from ..demux import NonDtlsHandler, is_other_protocol
from ..memory import Lease, MemoryBudgetExceeded, Owner, PoolSet
from ..udp import address_key, describe_address
from .channel import DTLSChannel

if TYPE_CHECKING:
    from ..endpoint import ServerEndpoint

UNREACHABLE_GRACE = 2.0  # as in the trio adapter: ICMP must persist across retransmissions


def buffered(transport: asyncio.DatagramTransport | None) -> int:
    """Bytes waiting in the transport's own buffer (both loops have the method; typeshed
    does not declare it for datagram transports)."""
    if transport is None:
        return 0
    size: int = transport.get_write_buffer_size()  # type: ignore[attr-defined]
    return size


def fire_timer(ref: weakref.ReferenceType[Driver]) -> None:
    ep = ref()
    if ep is not None:
        ep._on_timer()


class Driver:
    """The core-facing half of `DTLSEndpoint`."""

    socket: stdlib_socket.socket
    pools: PoolSet
    counters: dict[str, int]
    last_internal_error: BaseException | None
    last_handler_error: BaseException | None
    on_non_dtls_datagram: NonDtlsHandler | None
    _loop: asyncio.AbstractEventLoop
    _raw: stdlib_socket.socket
    _peer: Any
    _owner: Owner
    _recv_size: int
    _closed: bool
    _clients: dict[tuple[str, int], DTLSChannel]
    _server: ServerEndpoint | None
    _server_channels: dict[int, DTLSChannel]
    _transport: asyncio.DatagramTransport | None
    _timer: asyncio.TimerHandle | None
    _timer_when: float

    def _start_handler(self, channel: DTLSChannel) -> None:
        raise NotImplementedError

    # -- the core's input and output --------------------------------------------------

    def _datagram_received(self, data: bytes, addr: Any) -> None:
        if self._closed:
            return
        counters = self.counters
        if self.on_non_dtls_datagram is not None and is_other_protocol(data):
            self._hand_over(data, addr)
            return
        n = len(data)
        if n > self._recv_size:
            counters["dropped_oversize"] += 1
            return
        try:
            lease = self.pools.acquire(n)
        except MemoryBudgetExceeded:
            counters["dropped_memory_budget"] += 1
            return
        try:
            lease.write(0, data)
            lease.length = n
            counters["datagrams_copied_in"] += 1
            with memoryview(lease) as view:
                self._on_datagram(view, addr)
        except Exception as exc:  # the core never raises for input; a bug must not stop us
            self._internal_error(exc)
        finally:
            lease.release()

    def _hand_over(self, data: bytes, addr: Any) -> None:
        """A datagram of another protocol to the application's handler, as asyncio gave it;
        no connection or handshake sees it."""
        handler = self.on_non_dtls_datagram
        assert handler is not None
        self.counters["datagrams_in"] += 1
        self.counters["non_dtls_datagrams"] += 1
        try:
            handler(data, addr)
        except Exception as exc:
            self.counters["non_dtls_handler_errors"] += 1
            self.last_handler_error = exc

    def _error_received(self, exc: Exception) -> None:
        if isinstance(exc, ConnectionRefusedError):
            self._port_unreachable()
        else:
            self.counters["receive_errors"] += 1

    def _on_datagram(self, data: Any, addr: Any) -> None:
        now = self._loop.time()
        self.counters["datagrams_in"] += 1
        channel = self._clients.get((addr[0], addr[1]))
        if channel is not None:
            channel._conn.receive_datagram(data, addr, now)
            self._after(channel, now)
            return
        server = self._server
        if server is None:
            self.counters["dropped_no_connection"] += 1
            return
        conn = server.receive_datagram(data, addr, now)
        for new in server.new_connections():
            self._server_channels[id(new)] = DTLSChannel._create(
                self, new, new.peer_address, server=True
            )
        self._attend_server()
        if conn is None or not conn.handshake_complete:
            t = server.get_timer()
            if t is not None:
                self._arm_timer(t)
        if conn is not None:
            channel = self._server_channels.get(id(conn))
            if channel is not None:
                self._after(channel, now)
                return
        self._collect_server_output(now)

    def _after(self, channel: DTLSChannel, now: float | None = None) -> None:
        """Events and output after the core ran."""
        if now is None:
            now = self._loop.time()
        if channel._conn.has_events:
            channel._process_events()
        if channel._server:
            self._collect_server_output(now)
            if channel._handshake is not None and not channel._announced:
                channel._announced = True
                self._start_handler(channel)
        else:
            self._send(channel._conn.datagrams_to_send(now))
        if channel._terminated is not None and not channel._buried:
            self._bury(channel)
        t = channel._conn.get_timer()
        if t is not None:
            self._arm_timer(t)

    def _collect_server_output(self, now: float) -> None:
        if self._server is not None:
            self._send(self._server.datagrams_to_send(now))

    def _send(self, datagrams: list[tuple[Lease, Any]]) -> None:
        """Send each datagram now from its lease; copy into the transport's buffer only
        when the socket's is full (or the transport already holds some: order)."""
        if not datagrams:
            return
        raw = self._raw
        counters = self.counters
        connected = self._peer is not None
        refused = False
        for lease, addr in datagrams:
            try:
                if self._closed:
                    continue
                transport = self._transport
                if not buffered(transport):
                    try:
                        if connected:
                            raw.send(lease)  # sendto with an address is EISCONN on BSDs
                        else:
                            raw.sendto(lease, addr)
                        counters["datagrams_out"] += 1
                        continue
                    except BlockingIOError:
                        pass
                    except ConnectionRefusedError:
                        refused = True
                        continue
                    except OSError:
                        counters["send_errors"] += 1
                        continue
                if transport is None:
                    counters["send_errors"] += 1
                    continue
                transport.sendto(lease.tobytes(), None if connected else addr)
                counters["datagrams_copied_out"] += 1
                counters["datagrams_out"] += 1
            finally:
                if not lease.released:
                    lease.release()
        if refused:
            self._port_unreachable()

    def _port_unreachable(self) -> None:
        """ICMP port unreachable from the connected peer: ends a client's handshake only
        while nothing came from the peer and across tries UNREACHABLE_GRACE apart (an
        ICMP message is as easy to forge as any unauthenticated datagram)."""
        self.counters["port_unreachable"] += 1
        channel = self._clients.get(address_key(self._peer)) if self._peer is not None else None
        if channel is None or channel._handshake is not None or channel._conn.closed:
            return
        if channel._conn.stats["datagrams_in"]:
            return
        now = self._loop.time()
        if channel._unreachable_since is None:
            channel._unreachable_since = now
            return
        if now - channel._unreachable_since < UNREACHABLE_GRACE:
            return
        channel._unreachable = True
        channel._conn.abandon(
            f"no answer from {describe_address(self._peer)}: nothing listens on that port "
            "(ICMP port unreachable)"
        )
        self._after(channel)

    def _bury(self, channel: DTLSChannel) -> None:
        channel._buried = True
        if not channel._server:
            key = address_key(channel.peer_address)
            if self._clients.get(key) is channel:
                del self._clients[key]
        self._forget(channel)

    def _forget(self, channel: DTLSChannel) -> None:
        """Give a finished connection's memory back (its datagrams have gone)."""
        conn = channel._conn
        if channel._server:
            self._server_channels.pop(id(conn), None)
            if self._server is not None:
                self._server.remove(conn)
        else:
            for lease, _ in conn.datagrams_to_send(0.0):
                lease.release()
            self.pools.release_owner(conn.owner)

    def _close_channel(self, channel: DTLSChannel) -> None:
        """Close the connection; close_notify goes out now (or into the transport)."""
        if self._closed:
            return
        if not channel._conn.closed:
            channel._conn.close()
        self._after(channel)

    # -- timers -----------------------------------------------------------------------

    def _arm_timer(self, t: float) -> None:
        if self._closed or (self._timer is not None and t >= self._timer_when):
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_when = t
        self._timer = self._loop.call_at(t, fire_timer, weakref.ref(self))

    def _on_timer(self) -> None:
        self._timer = None
        if self._closed:
            return
        try:
            self._run_timers()
        except Exception as exc:
            self._internal_error(exc)
        # Timers the core armed while they ran, and every later one.
        t = self._next_deadline()
        if t is not None:
            self._arm_timer(t)

    def _run_timers(self) -> None:
        now = self._loop.time()
        for channel in list(self._clients.values()):
            t = channel._conn.get_timer()
            if t is not None and t <= now:
                channel._conn.handle_timer(now)
                self._after(channel, now)
        server = self._server
        if server is not None:
            t = server.get_timer()
            if t is not None and t <= now:
                server.handle_timer(now)
            self._attend_server()
            self._collect_server_output(now)

    def _attend_server(self) -> None:
        """Events of the server connections whose timer fired or that the core ended."""
        server = self._server
        if server is None:
            return
        for conn in server.attention():
            channel = self._server_channels.get(id(conn))
            if channel is None:
                continue
            channel._process_events()
            if channel._terminated is not None and not channel._buried:
                self._collect_server_output(self._loop.time())
                self._bury(channel)

    def _next_deadline(self) -> float | None:
        times = [t for ch in self._clients.values() if (t := ch._conn.get_timer()) is not None]
        if self._server is not None:
            t = self._server.get_timer()
            if t is not None:
                times.append(t)
        return min(times) if times else None

    def _internal_error(self, exc: BaseException) -> None:
        self.counters["internal_errors"] += 1
        self.last_internal_error = exc
