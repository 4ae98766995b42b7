"""DTLSEndpoint: DTLS 1.3 connections over one trio UDP socket, shaped like trio.DTLSEndpoint.

Background tasks (trio system tasks, holding only a weak reference so an endpoint nobody
closed can still be collected and warn), in `_socketio`; two per endpoint at most:

- the receive task: waits for the socket to be readable, then takes up to `RECV_BATCH`
  datagrams (``recvmmsg`` into pooled leases where the platform has it), each handed to
  the sans-IO core, and yields when the batch filled up before it takes more;
- the send task (started the first time the socket buffer is full): sends what could not
  go at once, in order, waiting for the socket to be writable;

and one for all the endpoints of a trio run, the timer task (`_timers.Timers`): it sleeps
on the trio clock until the earliest ``get_timer()`` of their cores.

Datagrams are sent straight from the call that produced them (``send()``, the receive task)
whenever nothing is queued before them: everything one receive batch produced leaves with one
``sendmmsg``, and a ``send()`` costs one scheduler pass, not a hand-over to the send task.
"""

from __future__ import annotations

import contextvars
import math
import os
import warnings
import weakref
from collections import deque
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, final

import trio

from ..cid_layout import check_cid_prefix
from ..config import ClientConfig
from ..connection import Connection
from ..demux import NonDtlsHandler, is_other_protocol
from ..events import DataReceived
from ..memory import Lease, PoolSet, default_pool_set
from ..udp import RawSocket, address_key
from . import _sendqueue, _serving
from ._socketio import (
    FLUSH_EARLY,
    Flusher,
    batch_socket,
    flush,
    port_unreachable,
    receive_batch,
    receive_loop,
    socket_type,
)
from ._stats import DTLSEndpointStatistics
from ._timers import Timers
from .channel import DTLSChannel
from .debug import DTLSEndpointDebugState

if TYPE_CHECKING:
    from ..endpoint import DoSProtectionConfig, ServerEndpoint

MAX_DATAGRAM = 65536

Handler = Callable[..., Awaitable[object]]


@final
class DTLSEndpoint:
    """DTLS 1.3 over one bound trio UDP socket: serve clients, connect to servers, or both.

    Usable as ``async with`` (close_notify to every peer, then close) or plain ``with``
    (closes at once, as trio's). The endpoint owns the socket and closes it.
    """

    def __init__(
        self,
        socket: trio.socket.SocketType,
        *,
        pools: PoolSet | None = None,
        incoming_packets_buffer: int = 10,
        dos: DoSProtectionConfig | None = None,
        cookie_policy: str = "under_load",
        max_datagram_size: int = MAX_DATAGRAM,
        on_non_dtls_datagram: NonDtlsHandler | None = None,
        cid_prefix: bytes = b"",
    ) -> None:
        """`on_non_dtls_datagram(data, addr)`: where the datagrams of other protocols on
        this socket go (STUN, ZRTP, TURN channels, RTP/RTCP by their first byte, RFC 7983
        §7), for client channels and ``serve()`` alike; called in the receive task, it must
        not block. Without it they are dropped and counted as any undecodable datagram."""
        self._initialized = False
        # Non-blocking sends and receives without a trip through the scheduler (see the top).
        raw = RawSocket(fileno=os.dup(socket.fileno()))
        try:
            if socket_type(raw) != trio.socket.SOCK_DGRAM:
                raise ValueError("DTLS requires a SOCK_DGRAM socket")
            if not isinstance(incoming_packets_buffer, int) or isinstance(
                incoming_packets_buffer, bool
            ):
                raise TypeError("incoming_packets_buffer must be an int")
            if incoming_packets_buffer < 1:
                raise ValueError("incoming_packets_buffer must be at least 1")
            if cookie_policy not in ("always", "under_load", "never"):
                raise ValueError("cookie_policy must be 'always', 'under_load' or 'never'")
            # Checked against the CID length when serve() gets its configuration.
            cid_prefix = check_cid_prefix(cid_prefix, 32)
        except BaseException:
            raw.close()
            raise
        self.socket = socket
        self.pools = pools if pools is not None else default_pool_set()
        self.incoming_packets_buffer = incoming_packets_buffer
        self.dos = dos
        self.cookie_policy = cookie_policy
        self.on_non_dtls_datagram = on_non_dtls_datagram
        self.cid_prefix = cid_prefix
        self._recv_size = min(max_datagram_size, self.pools.largest_class)
        self._raw = raw
        raw.setblocking(False)
        # A connected socket (open_dtls_client's) hears only its peer, and hears ICMP port
        # unreachable from it: a client learns within seconds that nothing listens there.
        try:
            self._peer: Any = raw.getpeername()
        except OSError:
            self._peer = None
        # recvmmsg/sendmmsg, or None: one datagram per system call
        self._batch = batch_socket(raw, self._recv_size, self._peer is not None)
        self._recv_cap = self._batch.batch if self._batch is not None else 0  # per recvmmsg
        self._recv_want = 2  # receive leases for the next wake-up (follows what came)
        self._recv_long = False  # the last receive call brought a long datagram
        self._token = trio.lowlevel.current_trio_token()
        self._timers = Timers.for_this_run()
        # trio.current_time() without its two wrappers (the run's clock never changes).
        self._now = self._timers.now
        # On the batched path, what tasks send during one scheduler pass leaves together
        # with one sendmmsg just before trio next waits for I/O (see `_socketio.Flusher`).
        self._flusher = Flusher.for_this_run() if self._batch is not None else None
        self._owner = self.pools.owner("endpoint", f"trio:{id(self):x}")
        self._clients: dict[tuple[str, int], DTLSChannel] = {}
        self._server: ServerEndpoint | None = None
        self._server_channels: dict[int, DTLSChannel] = {}  # id(Connection) -> channel
        # serve()'s nursery, handler and arguments: a channel whose handshake completed gets
        # its handler task from the receive task directly.
        self._handlers: trio.Nursery | None = None
        self._handler: Handler | None = None
        self._handler_args: tuple[Any, ...] = ()
        self._handler_context = contextvars.Context()
        self._serving_lot: trio.lowlevel.ParkingLot | None = None  # serve() waits for close()
        # Outgoing datagrams that could not be sent at once: the send task sends them in
        # order; `_queued` and `_sent` count all datagrams so callers can wait for theirs.
        self._outq: deque[tuple[Lease, Any]] = deque()
        self._queued = 0
        self._sent = 0
        # Tasks waiting for their datagrams to leave park in `_progress` (made for the first).
        self._progress: trio.lowlevel.ParkingLot | None = None
        self._progress_waiters = 0
        self._send_wakeup: trio.Event | None = None  # made with the send task
        # The run's timer task sleeps until the earliest timer of its endpoints; ours is
        # `_timer_at` (or earlier: a timer the core dropped is not taken back), and an
        # earlier one moves the task's deadline in place (no wakeup, no recomputation).
        self._timer_at = math.inf
        # Connections to forget once the datagrams queued before their end have gone.
        self._graveyard: deque[tuple[int, DTLSChannel]] = deque()
        self._loops_started = False
        self._sender_started = False
        self._backlogged = False  # a channel's receive queue filled up: yield to its reader
        self._holding = False  # sends wait for the end of a receive batch or timer run
        self._held_behind = 0  # datagrams queued when the holding began
        self._drained = False  # the last receive batch found the socket empty
        self._closed = False
        self.counters: dict[str, int] = {
            "datagrams_in": 0,
            "datagrams_out": 0,
            "dropped_no_connection": 0,
            "dropped_memory_budget": 0,
            "dropped_long_datagrams": 0,
            "send_errors": 0,
            "receive_errors": 0,
            "port_unreachable": 0,
            "internal_errors": 0,
            "non_dtls_datagrams": 0,
            "non_dtls_handler_errors": 0,
        }
        self.last_internal_error: BaseException | None = None
        self.last_handler_error: BaseException | None = None
        self._initialized = True

    # -- life cycle -------------------------------------------------------------------

    def __del__(self) -> None:
        if not getattr(self, "_initialized", False) or self._closed:
            return
        try:
            self._token.run_sync_soon(self.close)
        except RuntimeError:  # the trio run is over: release what we can right here
            self.close()
        warnings.warn(
            f"unclosed DTLS endpoint {self!r}", ResourceWarning, source=self, stacklevel=1
        )

    def __enter__(self) -> DTLSEndpoint:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> DTLSEndpoint:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Close every connection and the socket now (close_notify not awaited)."""
        if self._closed:
            return
        if self._outq and not self._sender_started:  # close_notify queued a moment ago
            self._flush()
        self._closed = True
        channels = [*self._clients.values(), *self._server_channels.values()]
        for ch in channels:
            ch._conn.close()
            ch._endpoint_closed()
        for lease, _ in self._outq:
            if not lease.released:
                lease.release()
        self._outq.clear()
        for ch in self._clients.values():
            self._drop_output(ch._conn)
        while self._graveyard:
            self._forget(self._graveyard.popleft()[1])
        for ch in list(self._clients.values()):
            self._forget(ch)
        self._stop_server()
        self.pools.release_owner(self._owner)
        self._raw.close()
        try:
            self.socket.close()
        except RuntimeError:  # outside trio (collected after the run): nobody waits on it
            os.close(self.socket.detach())
        if self._send_wakeup is not None:
            self._send_wakeup.set()
        self._timers.endpoints.pop(id(self), None)
        if self._progress_waiters:
            assert self._progress is not None
            self._progress.unpark_all()
        if self._serving_lot is not None:
            self._serving_lot.unpark_all()

    async def aclose(self) -> None:
        """close_notify to every peer (waiting up to a second for it to go), then close."""
        if self._closed:
            await trio.lowlevel.checkpoint()
            return
        for ch in [*self._clients.values(), *self._server_channels.values()]:
            if not ch.closed:
                self._close_channel(ch)
        with trio.CancelScope(shield=True), trio.move_on_after(_serving.SHUTDOWN_GRACE):
            await self._wait_sent(self._queued)
        self.close()
        await trio.lowlevel.checkpoint()

    def _check_closed(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError("this DTLS endpoint was closed")

    # -- client side ------------------------------------------------------------------

    def connect(self, address: tuple[str, int], config: ClientConfig) -> DTLSChannel:
        """A channel to `address` (an IP literal and port); the handshake starts on first use.

        Synchronous as in trio: nothing is sent until ``do_handshake``, ``send`` or
        ``receive``, so the MTU can be set first. A channel already open to the same
        address is closed (close_notify) and replaced.
        """
        self._check_closed()
        if not isinstance(config, ClientConfig):
            raise TypeError("connect() needs a ClientConfig")
        key = address_key(address)
        old = self._clients.get(key)
        if old is not None:
            self._close_channel(old)
            old._endpoint_closed()
        conn = Connection(config, pools=self.pools, peer_address=address, owner_parent=self._owner)
        channel: DTLSChannel = DTLSChannel._create(self, conn, address, server=False)
        self._clients[key] = channel
        self._ensure_loops()
        return channel

    def _start_client(self, channel: DTLSChannel) -> None:
        self._check_closed()
        now = self._now()
        channel._conn.connect(channel.peer_address, now)
        self._after(channel, now)

    # -- server side ------------------------------------------------------------------

    # serve() and what it starts (_serving.py).
    serve = _serving.serve
    _stop_server = _serving.stop_server
    _start_handler = _serving.start_handler
    _attend_server = _serving.attend_server

    # -- the core's input and output --------------------------------------------------

    def _on_datagram(self, data: Any, addr: Any) -> None:
        now = self._now()
        self.counters["datagrams_in"] += 1
        if self.on_non_dtls_datagram is not None and is_other_protocol(data):
            self._hand_over(data, addr)
            return
        channel = self._clients.get((addr[0], addr[1]))
        if channel is not None:
            client = channel._conn
            app = client.receive_datagram_data(data, addr, now)
            if app is not None:  # the established data path: a message, nothing else
                channel._deliver_alone(app)
                t = client.get_timer()
                if t is not None and t < self._timer_at:
                    self._arm_timer(t)
                return
            self._after(channel, now)
            return
        server = self._server
        if server is None:
            self.counters["dropped_no_connection"] += 1
            return
        conn, app = server.receive_datagram_data(data, addr, now)
        if app is not None:
            assert conn is not None
            channel = self._server_channels.get(id(conn))
            if channel is not None and not server._attention:
                channel._deliver_alone(app)
                t = conn.get_timer()
                if t is not None and t < self._timer_at:
                    self._arm_timer(t)
                return
            # Something else to attend to: the general path below takes it as an event.
            conn._event(DataReceived(app))
        for new in server.new_connections():
            self._server_channels[id(new)] = DTLSChannel._create(
                self, new, new.peer_address, server=True
            )
        self._attend_server(now)  # associations this datagram shed or superseded
        # A stranger's datagram can arm a new deadline (a partial ClientHello expires); an
        # established connection's own deadline is checked in _after.
        if conn is None or not conn.handshake_complete:
            t = server.get_timer()
            if t is not None and t < self._timer_at:
                self._arm_timer(t)
        if conn is not None:
            channel = self._server_channels.get(id(conn))
            if channel is not None:
                self._after(channel, now)
                return
        self._collect_server_output(now)

    def _hand_over(self, data: Any, addr: Any) -> None:
        """One copy to the application's handler (the buffer serves the next datagram);
        nothing is kept, and no connection or handshake sees it."""
        handler = self.on_non_dtls_datagram
        assert handler is not None
        self.counters["non_dtls_datagrams"] += 1
        try:
            handler(bytes(data), addr)
        except Exception as exc:
            self.counters["non_dtls_handler_errors"] += 1
            self.last_handler_error = exc

    def _after(self, channel: DTLSChannel, now: float | None = None) -> int:
        """Events and output after the core ran; returns the count to wait for in `_sent`."""
        if now is None:
            now = self._now()
        if channel._conn.has_events:
            channel._process_events()
        if channel._server:
            server = self._server
            out = server.datagrams_to_send(now) if server is not None else None
            if out:
                self._enqueue(out)
            if channel._handshake is not None and not channel._announced:
                channel._announced = True
                self._start_handler(channel)
        else:
            out = channel._conn.datagrams_to_send(now)
            if out:
                self._enqueue(out)
        if channel._terminated is not None and not channel._buried:
            self._bury(channel)
        t = channel._conn.get_timer()
        if t is not None and t < self._timer_at:
            self._arm_timer(t)
        return self._queued

    def _arm_timer(self, t: float) -> None:
        """A timer before `_timer_at` (callers compare: most timers are not)."""
        self._timer_at = t
        if self._loops_started:
            self._timers.arm(id(self), t)

    def _collect_server_output(self, now: float) -> None:
        if self._server is not None:
            self._enqueue(self._server.datagrams_to_send(now))

    # The send queue (_sendqueue.py): when what the core produces leaves.
    _enqueue = _sendqueue.enqueue
    _hold_sends = _sendqueue.hold_sends
    _release_sends = _sendqueue.release_sends
    _wake_sender = _sendqueue.wake_sender
    _wait_sent = _sendqueue.wait_sent
    _on_sent = _sendqueue.on_sent
    # Send queued datagrams in order while the socket takes them; True if it is full.
    _flush = flush
    _flush_early = FLUSH_EARLY  # tests change it per endpoint
    # ICMP port unreachable from the connected peer.
    _port_unreachable = port_unreachable

    def _drop_output(self, conn: Connection) -> None:
        for lease, _ in conn.datagrams_to_send(0.0):
            lease.release()

    def _bury(self, channel: DTLSChannel) -> None:
        channel._buried = True
        if not channel._server:
            key = address_key(channel.peer_address)
            if self._clients.get(key) is channel:
                del self._clients[key]
        if self._sent >= self._queued:
            self._forget(channel)
        else:
            self._graveyard.append((self._queued, channel))

    def _forget(self, channel: DTLSChannel) -> None:
        """Give a finished connection's memory back (its datagrams have gone)."""
        conn = channel._conn
        if channel._server:
            self._server_channels.pop(id(conn), None)
            if self._server is not None:
                self._server.remove(conn)
        else:
            self._drop_output(conn)
            self.pools.release_owner(conn.owner)

    def _close_channel(self, channel: DTLSChannel) -> int:
        """Close the connection, close_notify queued; returns the send count to wait for."""
        if self._closed:
            return self._queued
        if not channel._conn.closed:
            channel._conn.close()
        return self._after(channel)

    def _run_timers(self) -> None:
        held = self._hold_sends()
        try:
            self._run_due_timers()
        finally:
            self._release_sends(held)

    def _run_due_timers(self) -> None:
        now = self._now()
        for channel in list(self._clients.values()):
            t = channel._conn.get_timer()
            if t is not None and t <= now:
                channel._conn.handle_timer(now)
                self._after(channel)
        server = self._server
        if server is not None:
            t = server.get_timer()
            if t is not None and t <= now:
                server.handle_timer(now)
            self._attend_server(now)
            self._collect_server_output(now)

    def _next_deadline(self) -> float:
        times = [t for ch in self._clients.values() if (t := ch._conn.get_timer()) is not None]
        if self._server is not None:
            t = self._server.get_timer()
            if t is not None:
                times.append(t)
        return min(times) if times else math.inf

    def _receive_batch(self) -> int | None:
        """Take up to RECV_BATCH datagrams off the socket and through the core; what they
        produce leaves together at the end."""
        if self._holding:  # (_hold_sends, in line: once per receive batch)
            return receive_batch(self)
        self._holding = True
        self._held_behind = len(self._outq)
        try:
            return receive_batch(self)
        finally:
            self._release_sends(True)

    # -- background tasks -------------------------------------------------------------

    def _ensure_loops(self) -> None:
        if self._loops_started:
            return
        self._loops_started = True
        ref = weakref.ref(self)
        trio.lowlevel.spawn_system_task(receive_loop, ref, self.socket)
        self._timers.add(self)

    def _internal_error(self, exc: BaseException) -> None:
        self.counters["internal_errors"] += 1
        self.last_internal_error = exc

    def debug_state(self) -> DTLSEndpointDebugState:
        """For tests and debugging, not for applications: the state of the endpoint's tasks."""
        timers = self._timers
        scope = timers.scope if id(self) in timers.endpoints else None
        return DTLSEndpointDebugState(self._sender_started, scope, self._handlers)

    def statistics(self) -> DTLSEndpointStatistics:
        """Endpoint counters, the server's admission counters and pool figures."""
        return DTLSEndpointStatistics(
            **self.counters,
            connections=len(self._clients) + len(self._server_channels),
            queued_datagrams=len(self._outq),
            server=self._server.statistics() if self._server is not None else None,
            memory_in_use=self.pools.in_use_bytes,
        )

    def __repr__(self) -> str:
        try:
            where = self.socket.getsockname()
        except OSError:
            where = "closed socket"
        return f"<DTLSEndpoint {where} closed={self._closed}>"
