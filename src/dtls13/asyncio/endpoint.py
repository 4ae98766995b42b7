"""DTLSEndpoint: DTLS 1.3 connections over one UDP socket on an asyncio event loop.

Built on ``loop.create_datagram_endpoint`` (so uvloop works too):

- receiving: the datagram protocol hands over each datagram as ``bytes``; it is copied once
  into a pooled lease (the copy is counted, and the memory budget is checked as it is for
  the trio adapter) and handed to the sans-IO core;
- sending: what the core returns goes out with a non-blocking ``sendto`` of the lease on a
  ``dup`` of the socket (no copy); only when the socket buffer is full is it copied into
  the transport's own buffer, which then sends in order (``send()`` waits while the
  transport reports it above its high-water mark);
- timers: one ``loop.call_at`` handle at the core's earliest ``get_timer()``.

Nothing holds a lease across an ``await``, so a cancelled call never leaks one.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import socket as stdlib_socket
import threading
import warnings
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, final

from ..config import ClientConfig, ServerConfig
from ..connection import Connection
from ..demux import NonDtlsHandler
from ..memory import PoolSet, default_pool_set
from ..statistics import ServerEndpointStatistics
from ..udp import RawSocket, address_key
from .channel import DTLSChannel
from .driver import Driver, buffered
from .errors import ClosedResourceError

if TYPE_CHECKING:
    from ..endpoint import DoSProtectionConfig, ServerEndpoint

MAX_DATAGRAM = 65536
SHUTDOWN_GRACE = 1.0  # seconds given to close_notify datagrams when closing

Handler = Callable[..., Awaitable[object]]


@dataclass(frozen=True, slots=True)
class DTLSEndpointStatistics:
    """Counters of one endpoint (a snapshot)."""

    datagrams_in: int
    datagrams_out: int
    datagrams_copied_in: int  # asyncio hands over bytes: each copied once into a lease
    datagrams_copied_out: int  # socket buffer full: copied into the transport's buffer
    dropped_no_connection: int  # from an address with no connection, and no serve() running
    dropped_memory_budget: int  # no pooled buffer to copy into: dropped
    dropped_oversize: int  # larger than max_datagram_size (or the largest pool class)
    send_errors: int
    receive_errors: int
    port_unreachable: int  # ICMP port unreachable reports on a connected socket
    internal_errors: int  # bugs caught at the edge (``last_internal_error`` has the newest)
    # Datagrams of other protocols (STUN, RTP/RTCP, ...; RFC 7983 §7) handed to
    # on_non_dtls_datagram, and the times it raised (``last_handler_error``):
    non_dtls_datagrams: int
    non_dtls_handler_errors: int
    connections: int  # live channels, client and server
    queued_bytes: int  # in the transport's buffer, waiting for room in the socket's
    memory_in_use: int  # bytes in use in the endpoint's pools
    server: ServerEndpointStatistics | None  # while serve() runs


class _Protocol(asyncio.DatagramProtocol):
    """Forwards the transport's callbacks; holds the endpoint weakly (so that an endpoint
    nobody closed can be collected, and warn)."""

    def __init__(self, ref: weakref.ReferenceType[DTLSEndpoint]) -> None:
        self._ref = ref

    def datagram_received(self, data: bytes, addr: Any) -> None:
        ep = self._ref()
        if ep is not None:
            ep._datagram_received(data, addr)

    def error_received(self, exc: Exception) -> None:
        ep = self._ref()
        if ep is not None:
            ep._error_received(exc)

    def pause_writing(self) -> None:
        ep = self._ref()
        if ep is not None:
            ep._paused = True

    def resume_writing(self) -> None:
        ep = self._ref()
        if ep is not None:
            ep._resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        ep = self._ref()
        if ep is not None and not ep._closed:  # the transport failed: nothing arrives now
            if exc is not None:
                ep._internal_error(exc)
            ep.close()


@final
class DTLSEndpoint(Driver):
    """DTLS 1.3 over one UDP socket on the running asyncio loop: serve clients, connect to
    servers, or both.

    `sock_or_addr` is a ``socket.socket`` (SOCK_DGRAM; the endpoint owns and closes it) or
    an (IP literal, port) pair to bind. Create it inside a running loop. Usable as
    ``async with`` (close_notify to every peer, then close) or ``with`` (closes at once).
    """

    def __init__(
        self,
        sock_or_addr: stdlib_socket.socket | tuple[str, int],
        *,
        pools: PoolSet | None = None,
        incoming_packets_buffer: int = 10,
        dos: DoSProtectionConfig | None = None,
        cookie_policy: str = "under_load",
        max_datagram_size: int = MAX_DATAGRAM,
        on_non_dtls_datagram: NonDtlsHandler | None = None,
    ) -> None:
        """`on_non_dtls_datagram(data, addr)`: where the datagrams of other protocols on
        this socket go (STUN, ZRTP, TURN channels, RTP/RTCP by their first byte, RFC 7983
        §7), as the ``bytes`` asyncio delivered (no copy); called from the loop's callback,
        it must not block. Without it they are dropped and counted."""
        self._initialized = False
        if not isinstance(incoming_packets_buffer, int) or isinstance(
            incoming_packets_buffer, bool
        ):
            raise TypeError("incoming_packets_buffer must be an int")
        if incoming_packets_buffer < 1:
            raise ValueError("incoming_packets_buffer must be at least 1")
        if cookie_policy not in ("always", "under_load", "never"):
            raise ValueError("cookie_policy must be 'always', 'under_load' or 'never'")
        loop = asyncio.get_running_loop()  # RuntimeError outside a running loop
        if isinstance(sock_or_addr, stdlib_socket.socket):
            sock = sock_or_addr
            if sock.type != stdlib_socket.SOCK_DGRAM:
                raise ValueError("DTLS requires a SOCK_DGRAM socket")
        else:
            host = str(sock_or_addr[0])
            family = stdlib_socket.AF_INET6 if ":" in host else stdlib_socket.AF_INET
            sock = stdlib_socket.socket(family, stdlib_socket.SOCK_DGRAM)
            try:
                sock.bind((host, int(sock_or_addr[1])))
            except BaseException:
                sock.close()
                raise
        sock.setblocking(False)
        self.socket = sock
        self._loop = loop
        self._thread = threading.get_ident()
        self.pools = pools if pools is not None else default_pool_set()
        self.incoming_packets_buffer = incoming_packets_buffer
        self.dos = dos
        self.cookie_policy = cookie_policy
        self.on_non_dtls_datagram = on_non_dtls_datagram
        self._recv_size = min(max_datagram_size, self.pools.largest_class)
        self._raw = RawSocket(fileno=os.dup(sock.fileno()))
        self._raw.setblocking(False)
        try:
            self._peer: Any = self._raw.getpeername()  # connected (open_dtls_client's)
        except OSError:
            self._peer = None
        self._owner = self.pools.owner("endpoint", f"asyncio:{id(self):x}")
        self._clients: dict[tuple[str, int], DTLSChannel] = {}
        self._server: ServerEndpoint | None = None
        self._server_channels: dict[int, DTLSChannel] = {}  # id(Connection) -> channel
        self._handlers: asyncio.TaskGroup | None = None
        self._handler: Handler | None = None
        self._handler_args: tuple[Any, ...] = ()
        self._handler_context = contextvars.Context()
        self._serving: asyncio.Future[None] | None = None  # serve() waits on it for close()
        self._transport: asyncio.DatagramTransport | None = None
        self._paused = False  # the transport's buffer is above its high-water mark
        self._writable: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_when = 0.0
        self._closed = False
        self.counters: dict[str, int] = {
            "datagrams_in": 0,
            "datagrams_out": 0,
            "datagrams_copied_in": 0,
            "datagrams_copied_out": 0,
            "dropped_no_connection": 0,
            "dropped_memory_budget": 0,
            "dropped_oversize": 0,
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
        # The transport opens in the background (one loop iteration); sending needs only
        # the dup, and what arrives meanwhile waits in the kernel's queue.
        self._opening = loop.create_task(_open(weakref.ref(self), loop, sock))
        self._opening.add_done_callback(_retrieve)

    # -- life cycle -------------------------------------------------------------------

    def __del__(self) -> None:
        if not getattr(self, "_initialized", False) or self._closed:
            return
        if threading.get_ident() == self._thread or self._loop.is_closed():
            self.close()
        else:
            try:
                self._loop.call_soon_threadsafe(self.close)
            except RuntimeError:
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
        await self._ready()
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

    async def _ready(self) -> None:
        """Wait until the transport is open (shielded: a cancelled caller must not close
        the socket under the endpoint); raise what opening it raised."""
        if self._transport is None and not self._closed:
            await asyncio.shield(self._opening)

    def _opened(self, transport: asyncio.DatagramTransport) -> None:
        if self._closed:
            transport.abort()
        else:
            self._transport = transport

    def close(self) -> None:
        """Close every connection and the socket now (no close_notify goes out)."""
        if self._closed:
            return
        self._closed = True
        for ch in [*self._clients.values(), *self._server_channels.values()]:
            ch._conn.close()
            ch._endpoint_closed()
        for ch in list(self._clients.values()):
            self._forget(ch)
        self._stop_server()
        self.pools.release_owner(self._owner)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._raw.close()
        transport, self._transport = self._transport, None
        sock = self.socket
        try:
            if transport is not None:
                transport.abort()  # the transport closes the socket
            elif self._opening.done():
                sock.close()
            else:  # close it once the transport (if any) was dropped
                self._opening.cancel()
                self._opening.add_done_callback(lambda _: sock.close())
        except RuntimeError:  # the loop is closed (collected after it): close it here
            sock.close()
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        if self._serving is not None and not self._serving.done():
            self._serving.set_result(None)

    async def aclose(self) -> None:
        """close_notify to every peer (waiting up to a second for it to go), then close."""
        if self._closed:
            return
        for ch in [*self._clients.values(), *self._server_channels.values()]:
            if not ch.closed:
                self._close_channel(ch)
        try:
            await self._wait_flushed(SHUTDOWN_GRACE)
        finally:
            self.close()

    def _check_closed(self) -> None:
        if self._closed:
            raise ClosedResourceError("this DTLS endpoint was closed")

    async def _wait_flushed(self, timeout: float) -> None:
        """Wait (at most `timeout`) until the transport's buffer is empty."""
        deadline = self._loop.time() + timeout
        while (
            self._transport is not None
            and buffered(self._transport)
            and self._loop.time() < deadline
        ):
            await asyncio.sleep(0.005)

    async def _wait_writable(self) -> None:
        """Backpressure: wait while the transport's buffer is above its high-water mark."""
        while self._paused and not self._closed:
            if self._writable is None or self._writable.done():
                self._writable = self._loop.create_future()
            await asyncio.shield(self._writable)

    def _resume_writing(self) -> None:
        self._paused = False
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

    # -- client side ------------------------------------------------------------------

    def connect(self, address: tuple[str, int], config: ClientConfig) -> DTLSChannel:
        """A channel to `address` (an IP literal and port); the handshake starts on first use.

        Synchronous: nothing is sent until ``do_handshake``, ``send`` or ``receive``, so
        the MTU can be set first. A channel already open to the same address is closed
        (close_notify) and replaced.
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
        return channel

    def _start_client(self, channel: DTLSChannel) -> None:
        self._check_closed()
        channel._conn.connect(channel.peer_address, self._loop.time())
        self._after(channel)

    # -- server side ------------------------------------------------------------------

    async def serve(
        self,
        config: ServerConfig,
        handler: Handler,
        *args: Any,
        started: asyncio.Future[DTLSEndpoint] | None = None,
    ) -> None:
        """Accept connections and run ``await handler(channel, *args)`` for each.

        The handler starts once the handshake has completed; when it returns the channel
        is closed with close_notify. Runs until cancelled or the endpoint is closed.
        `started`, if given, gets this endpoint as its result once clients are accepted.
        """
        from ..endpoint import ServerEndpoint

        self._check_closed()
        if not isinstance(config, ServerConfig):
            raise TypeError("serve() needs a ServerConfig")
        if not callable(handler):
            raise TypeError("serve() needs a handler to call with each channel")
        if self._server is not None:
            raise RuntimeError("another task is already serving on this endpoint")
        try:
            if self.socket.getsockname()[1] == 0:
                raise OSError
        except OSError:
            raise RuntimeError("the DTLS socket must be bound before it can serve") from None
        await self._ready()
        self._check_closed()
        if self._server is not None:
            raise RuntimeError("another task is already serving on this endpoint")
        kwargs: dict[str, Any] = {"pools": self.pools, "cookie_policy": self.cookie_policy}
        if self.dos is not None:
            kwargs["dos"] = self.dos
        self._server = server = ServerEndpoint(config, **kwargs)
        try:
            async with asyncio.TaskGroup() as tg:
                self._handlers, self._handler, self._handler_args = tg, handler, args
                self._handler_context = contextvars.copy_context()
                self._serving = self._loop.create_future()
                if started is not None and not started.done():
                    started.set_result(self)
                await self._serving
        finally:
            self._handlers = self._handler = None
            if self._server is server and not self._closed:
                for ch in list(self._server_channels.values()):
                    if not ch.closed:
                        self._close_channel(ch)
                await self._wait_flushed(SHUTDOWN_GRACE)
            if self._server is server:
                self._stop_server()

    def _start_handler(self, channel: DTLSChannel) -> None:
        tg, handler = self._handlers, self._handler
        if tg is None or handler is None:  # serve() is ending: it closes the channel
            return
        try:
            tg.create_task(
                _run_handler(handler, channel, self._handler_args),
                context=self._handler_context,
            )
        except RuntimeError:  # the task group is shutting down
            channel._announced = False

    def _stop_server(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        for ch in self._server_channels.values():
            ch._endpoint_closed()
        server.close()
        for lease, _ in server.datagrams_to_send(0.0):
            lease.release()
        server.release()
        self._server_channels.clear()

    # -- figures ----------------------------------------------------------------------

    def statistics(self) -> DTLSEndpointStatistics:
        """Endpoint counters, the server's admission counters and pool figures."""
        transport = self._transport
        return DTLSEndpointStatistics(
            **self.counters,
            connections=len(self._clients) + len(self._server_channels),
            queued_bytes=buffered(transport),
            server=self._server.statistics() if self._server is not None else None,
            memory_in_use=self.pools.in_use_bytes,
        )

    def __repr__(self) -> str:
        try:
            where = self.socket.getsockname()
        except OSError:
            where = "closed socket"
        return f"<dtls13.asyncio.DTLSEndpoint {where} closed={self._closed}>"


async def _open(
    ref: weakref.ReferenceType[DTLSEndpoint],
    loop: asyncio.AbstractEventLoop,
    sock: stdlib_socket.socket,
) -> None:
    transport, _ = await loop.create_datagram_endpoint(lambda: _Protocol(ref), sock=sock)
    ep = ref()
    if ep is None:
        transport.abort()
    else:
        ep._opened(transport)


def _retrieve(task: asyncio.Task[None]) -> None:
    """Opening failures surface from ``_ready()``; never as "exception never retrieved"."""
    if not task.cancelled():
        task.exception()


async def _run_handler(handler: Handler, channel: DTLSChannel, args: tuple[Any, ...]) -> None:
    try:
        await handler(channel, *args)
    finally:
        await channel.aclose()
