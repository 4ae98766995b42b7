"""DTLSChannel: one DTLS 1.3 association over an asyncio DTLSEndpoint's socket."""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar, final

from ..arguments import check_message
from ..channel_view import ChannelView, NoPublicConstructor
from ..connection import Connection
from ..errors import PeerClosed
from ..events import (
    ConnectionTerminated,
    DataReceived,
    HandshakeCompleted,
    NewSessionTicketReceived,
)
from ..handshake.tickets import Session
from ..statistics import ConnectionStatistics
from .errors import ASYNCIO_CLASSES, ClosedResourceError, NeedHandshakeError

if TYPE_CHECKING:
    from .endpoint import DTLSEndpoint

_T = TypeVar("_T")
CLOSE_GRACE = 1.0  # seconds aclose() waits for close_notify to leave the socket


@dataclass(frozen=True, slots=True)
class DTLSChannelStatistics:
    """Counters of one channel (a snapshot)."""

    incoming_packets_dropped: int  # receive-queue overflows
    datagrams_in: int
    datagrams_out: int
    records_in: int
    app_records_out: int
    app_bytes_in: int
    app_bytes_out: int
    retransmissions: int
    handshake_time: float | None
    drops: dict[str, int] = field(default_factory=dict)
    memory_in_use: int = 0
    memory_high_water: int = 0
    leases_live: int = 0
    connection: ConnectionStatistics | None = None  # the sans-IO connection's own figures


@final
class DTLSChannel(ChannelView, metaclass=NoPublicConstructor):
    """A DTLS 1.3 connection; get one from `DTLSEndpoint.connect` or `DTLSEndpoint.serve`.

    ``send``/``receive`` carry one datagram's worth of application data each and run the
    handshake first if it has not been done. Cancelling any of them loses nothing: the
    handshake and data already handed over go on in the endpoint's callbacks.
    """

    def __init__(
        self, endpoint: DTLSEndpoint, conn: Connection, peer_address: Any, *, server: bool
    ) -> None:
        self.endpoint = endpoint
        self._address = peer_address
        self._conn = conn
        self._server = server
        self._connect_sent = server
        self._queue: deque[bytes] = deque()
        self._queue_limit = endpoint.incoming_packets_buffer
        # Futures of the tasks waiting for something to change (a message, the handshake,
        # the end): all are woken, each looks again. Messages stay in the queue until taken,
        # so a cancelled waiter loses nothing.
        self._waiters: list[asyncio.Future[None]] = []
        self._handshake: HandshakeCompleted | None = None
        self._session: Session | None = None
        self._terminated: ConnectionTerminated | None = None
        self._closed = False
        self._dropped = 0
        self._app_records_out = 0
        self._owns_endpoint = False
        self._announced = False  # its serve() handler was started
        self._buried = False  # removed from the endpoint
        self._unreachable = False  # ICMP said nothing listens at the peer's port
        self._unreachable_since: float | None = None  # the first such report (loop time)

    # -- called by the endpoint -------------------------------------------------------

    def _process_events(self) -> None:
        conn = self._conn
        while (ev := conn.next_event()) is not None:
            if type(ev) is DataReceived:
                if len(self._queue) >= self._queue_limit:
                    self._dropped += 1
                else:
                    self._queue.append(ev.data)
            elif isinstance(ev, HandshakeCompleted):
                self._handshake = ev
            elif isinstance(ev, NewSessionTicketReceived):
                self._session = ev.session
            elif isinstance(ev, ConnectionTerminated):
                self._terminated = ev
        self._wake()

    def _wake(self) -> None:
        """Let every waiter look again (it finds what changed)."""
        waiters, self._waiters = self._waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    async def _park(self) -> None:
        fut: asyncio.Future[None] = self.endpoint._loop.create_future()
        self._waiters.append(fut)
        try:
            await fut
        finally:
            if fut in self._waiters:  # cancelled: never woken
                self._waiters.remove(fut)

    def _endpoint_closed(self) -> None:
        self._closed = True
        self._wake()

    def _error(self) -> BaseException:
        """What a use of a finished channel raises: ClosedResourceError after our own close,
        else the ``dtls13.errors`` class for how it ended (asyncio flavour)."""
        if self._closed:
            return ClosedResourceError("this DTLS channel was closed")
        return self._termination_error(ASYNCIO_CLASSES)

    # -- the channel API --------------------------------------------------------------

    async def do_handshake(self) -> None:
        """Run the handshake (or wait for it). Raises ``dtls13.HandshakeFailed`` (or its
        subclasses ``CertificateVerificationFailed``, ``HandshakeTimeout``,
        ``PeerUnreachable``) if it fails; all are ``ConnectionError`` too."""
        if self._handshake is not None:
            return
        if self._closed:
            raise self._error()
        if not self._connect_sent:
            await self.endpoint._ready()
            if not self._connect_sent:
                self._connect_sent = True
                self.endpoint._start_client(self)
        while self._handshake is None:
            if self._closed or self._terminated is not None:
                raise self._error()
            await self._park()

    async def send(self, value: bytes | bytearray | memoryview) -> None:
        """Send one message as one record in one datagram. Returns at once unless the
        socket buffer is full (then once it drained below its high-water mark).

        Raises ValueError when it does not fit one datagram (see ``get_cleartext_mtu``),
        ``dtls13.PeerClosed`` after the peer's close_notify, ``dtls13.ConnectionFailed``
        after a fatal alert, `ClosedResourceError` after ``close``; TypeError at once for
        a value that is not bytes-like."""
        if type(value) is not bytes:
            check_message(value)
        if not value:
            raise ValueError("empty DTLS messages are not sent")
        if self._handshake is None:
            await self.do_handshake()
        if self._closed or self._terminated is not None:
            raise self._error()
        # ValueError (too big for one record at the MTU) comes from here, before anything
        # is sent; from here on the message is in the endpoint's hands.
        self._conn.send(value)
        self._app_records_out += 1
        endpoint = self.endpoint
        endpoint._after(self)
        if endpoint._paused:
            await endpoint._wait_writable()

    async def receive(self) -> bytes:
        """The next message; ``dtls13.PeerClosed`` (an ``EOFError``) after the peer's
        close_notify, ``dtls13.ConnectionFailed`` after a fatal alert, the handshake's
        exceptions (see ``do_handshake``) when it runs the handshake first."""
        if self._handshake is None:
            await self.do_handshake()
        while not self._queue:
            if self._closed or self._terminated is not None:
                raise self._error()
            await self._park()
        return self._queue.popleft()

    def __aiter__(self) -> DTLSChannel:
        return self

    async def __anext__(self) -> bytes:
        """Messages until the peer's close_notify."""
        try:
            return await self.receive()
        except PeerClosed:
            raise StopAsyncIteration from None

    def close(self) -> None:
        """Close at once: close_notify is sent if the socket takes it, not waited for."""
        if self._closed:
            return
        self.endpoint._close_channel(self)
        self._closed = True
        self._wake()
        if self._owns_endpoint:
            self.endpoint.close()

    async def aclose(self) -> None:
        """Send close_notify (if the handshake got that far) and close the channel."""
        if self._closed:
            return
        endpoint = self.endpoint
        endpoint._close_channel(self)
        self._closed = True
        self._wake()
        # Bounded: close_notify is already in the socket or the transport's buffer.
        await endpoint._wait_flushed(CLOSE_GRACE)
        if self._owns_endpoint:
            await endpoint.aclose()

    async def __aenter__(self) -> DTLSChannel:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- MTU, parameters, figures -----------------------------------------------------

    def set_ciphertext_mtu(self, new_mtu: int) -> None:
        """Largest UDP payload to send to this peer (handshake flights and records)."""
        self._conn.set_ciphertext_mtu(new_mtu)

    def get_cleartext_mtu(self) -> int:
        """Largest ``send()`` that fits one datagram at the current MTU."""
        if self._handshake is None:
            raise NeedHandshakeError("the handshake has not completed")
        return self._conn.get_cleartext_mtu()

    def statistics(self) -> DTLSChannelStatistics:
        """A snapshot of this channel's counters (``connection`` has all of the core's)."""
        return DTLSChannelStatistics(
            incoming_packets_dropped=self._dropped, **self._statistics_fields()
        )
