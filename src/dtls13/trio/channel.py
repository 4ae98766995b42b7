"""DTLSChannel: one DTLS 1.3 association over a DTLSEndpoint's socket, as a trio Channel."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar, final

import trio
from outcome import Value

from ..alerts import AlertDescription
from ..arguments import check_message
from ..channel_view import ChannelView, NoPublicConstructor
from ..connection import Connection
from ..events import (
    ConnectionTerminated,
    DataReceived,
    HandshakeCompleted,
    NewSessionTicketReceived,
)
from ..handshake.tickets import Session
from ..statistics import ConnectionStatistics
from .debug import DTLSChannelDebugState
from .errors import TRIO_CLASSES

if TYPE_CHECKING:
    from .endpoint import DTLSEndpoint

_T = TypeVar("_T")
# send_nowait() raises trio.WouldBlock while this many datagrams wait in the endpoint's send
# queue (the socket buffer is full, or that many were queued in one scheduler pass).
NOWAIT_SEND_LIMIT = 256
CLOSE_GRACE = 1.0  # seconds aclose() waits for close_notify to leave


@dataclass(frozen=True, slots=True)
class DTLSChannelStatistics:
    """Counters of one channel (a snapshot)."""

    incoming_packets_dropped_in_trio: int  # trio's name: receive-queue overflows
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


# What a channel with no message waiting holds instead of a deque of its own (see
# Connection._events).
_NO_MESSAGES: tuple[()] = ()


@final
class DTLSChannel(trio.abc.Channel[bytes], ChannelView, metaclass=NoPublicConstructor):
    """A DTLS 1.3 connection; get one from `DTLSEndpoint.connect` or `DTLSEndpoint.serve`.

    ``send``/``receive`` carry one datagram's worth of application data each and run the
    handshake first if it has not been done. Cancelling any of them loses nothing: the
    handshake and data already handed over go on in the endpoint's tasks.
    """

    def __init__(
        self, endpoint: DTLSEndpoint, conn: Connection, peer_address: Any, *, server: bool
    ) -> None:
        self.endpoint = endpoint
        self._address = peer_address
        self._conn = conn
        self._server = server
        self._connect_sent = server
        # A deque of its own only while messages wait (a deque is ~760 B even when empty):
        # an idle channel shares the empty _NO_MESSAGES.
        self._queue: deque[bytes] | tuple[()] = _NO_MESSAGES
        self._queue_limit = endpoint.incoming_packets_buffer
        # A receive() parked on an empty queue is `_reader`: the next message is handed to it
        # with its wakeup. Other waiters (do_handshake, a second receive) park in `_lot`.
        self._reader: trio.lowlevel.Task | None = None
        self._lot: trio.lowlevel.ParkingLot | None = None
        self._handshake: HandshakeCompleted | None = None
        self._session: Session | None = None
        self._terminated: ConnectionTerminated | None = None
        self._closed = False
        self._dropped = 0
        self._app_records_out = 0
        self._owns_endpoint = False
        self._announced = False  # its serve() handler was started
        self._buried = False  # scheduled for removal from the endpoint
        self._unreachable = False  # ICMP said nothing listens at the peer's port
        self._unreachable_since: float | None = None  # the first such report (trio time)

    # -- called by the endpoint -------------------------------------------------------

    def _process_events(self) -> None:
        conn = self._conn
        while (ev := conn.next_event()) is not None:
            if type(ev) is DataReceived:
                self._deliver(ev.data)
            elif isinstance(ev, HandshakeCompleted):
                self._handshake = ev
            elif isinstance(ev, NewSessionTicketReceived):
                self._session = ev.session
            elif isinstance(ev, ConnectionTerminated):
                self._terminated = ev
        self._wake()

    def _deliver(self, data: bytes) -> None:
        """A received message: to the parked reader, else into the queue (or dropped when
        it is full)."""
        queue = self._queue
        reader = self._reader
        if reader is not None and not queue:
            self._reader = None
            trio.lowlevel.reschedule(reader, Value(data))
        elif len(queue) >= self._queue_limit:
            self._dropped += 1
        else:
            queue = self._enqueue(data)
            if len(queue) >= self._queue_limit:
                # Let the reader catch up before the receive task takes more.
                self.endpoint._backlogged = True

    def _deliver_alone(self, data: bytes) -> None:
        """`_deliver`, then wake the other waiters as `_process_events` does (the
        established data path: a message and no other event)."""
        self._deliver(data)
        if self._reader is not None or self._lot:
            self._wake()

    def _enqueue(self, data: bytes) -> deque[bytes]:
        queue = self._queue
        if type(queue) is not deque:
            queue = self._queue = deque()
        queue.append(data)
        return queue

    def _wake(self) -> None:
        """Let every waiter look again (it finds what changed)."""
        reader = self._reader
        if reader is not None:
            self._reader = None
            trio.lowlevel.reschedule(reader, Value(None))
        if self._lot:
            self._lot.unpark_all()

    async def _park(self) -> None:
        if self._lot is None:
            self._lot = trio.lowlevel.ParkingLot()
        await self._lot.park()

    def _abort_reader(self, _: object) -> trio.lowlevel.Abort:
        # Only the parked reader can be aborted, and while it is parked it is `_reader`
        # (a second receive() parks in `_lot`; waking the reader clears `_reader` first).
        self._reader = None
        return trio.lowlevel.Abort.SUCCEEDED

    def _endpoint_closed(self) -> None:
        self._closed = True
        self._wake()

    def _error(self) -> BaseException:
        """What a use of a finished channel raises: ClosedResourceError after our own close,
        else the ``dtls13.errors`` class for how it ended (also a BrokenResourceError)."""
        if self._closed:
            return trio.ClosedResourceError("this DTLS channel was closed")
        return self._termination_error(TRIO_CLASSES)

    # -- the Channel API --------------------------------------------------------------

    async def do_handshake(self) -> None:
        """Run the handshake (or wait for it). Raises ``dtls13.HandshakeFailed`` (or its
        subclasses ``CertificateVerificationFailed``, ``HandshakeTimeout``,
        ``PeerUnreachable``) if it fails; all are ``trio.BrokenResourceError`` too."""
        await trio.lowlevel.checkpoint()
        if self._handshake is not None:
            return
        if self._closed:
            raise self._error()
        if not self._connect_sent:
            self._connect_sent = True
            self.endpoint._start_client(self)
        while self._handshake is None:
            if self._closed or self._terminated is not None:
                raise self._error()
            await self._park()

    async def send(self, value: bytes | bytearray | memoryview) -> None:
        """Send one message as one record; returns once its datagram left the socket (or,
        when the socket buffer is full, once the endpoint's send task sent it).

        Raises ValueError when it does not fit one datagram (see ``get_cleartext_mtu``),
        ``dtls13.PeerClosed`` after the peer's close_notify, ``dtls13.ConnectionFailed``
        after a fatal alert, ``trio.ClosedResourceError`` after ``close``; TypeError at
        once for a value that is not bytes-like."""
        if type(value) is not bytes:
            check_message(value)
        if not value:
            raise ValueError("empty DTLS messages are not sent (as in trio)")
        # One checkpoint per call, as trio's sockets: cancellation is checked first, and the
        # task yields after the datagram went (or while it waits for its turn).
        if self._handshake is None:
            await self.do_handshake()
            yielded = True
        else:
            await trio.lowlevel.checkpoint_if_cancelled()
            yielded = False
        if self._closed or self._terminated is not None:
            raise self._error()
        # ValueError (too big for one record at the MTU) comes from here, before anything
        # is queued; from here on the message is in the endpoint's hands.
        self._conn.send(value)
        self._app_records_out += 1
        endpoint = self.endpoint
        target = endpoint._after(self)
        if not yielded:
            # On the batched path the datagram leaves while this task yields (with what
            # other tasks send in this scheduler pass): sent when it resumes.
            await trio.lowlevel.cancel_shielded_checkpoint()
        if endpoint._sent < target:
            await endpoint._wait_sent(target)

    async def receive(self) -> bytes:
        """The next message; ``trio.EndOfChannel`` after the peer's close_notify,
        ``dtls13.ConnectionFailed`` after a fatal alert, the handshake's exceptions (see
        ``do_handshake``) when it runs the handshake first."""
        if self._handshake is None:
            await self.do_handshake()
        elif self._queue or self._closed or self._terminated is not None:
            await trio.lowlevel.checkpoint()
        # Otherwise parking is the checkpoint.
        while not self._queue:
            if self._closed:
                raise self._error()
            t = self._terminated
            if t is not None:
                if t.by_peer and t.alert is AlertDescription.close_notify:
                    raise trio.EndOfChannel
                raise self._error()
            if self._reader is None:
                # Park as the reader, in this frame (an idle channel's handler is parked
                # here: no coroutine or closure of its own), woken with the message or
                # None (look again).
                self._reader = trio.lowlevel.current_task()
                data: bytes | None = await trio.lowlevel.wait_task_rescheduled(self._abort_reader)
                if data is not None:
                    return data
            else:
                await self._park()
        queue = self._queue
        assert type(queue) is deque
        data = queue.popleft()
        if not queue:
            self._queue = _NO_MESSAGES
        return data

    def receive_nowait(self) -> bytes:
        """The next message if one is waiting, without a checkpoint; else raises
        ``trio.WouldBlock`` (as before the handshake). After the end of the connection,
        what ``receive`` raises. With ``await receive()`` for the first message, it takes a
        whole burst per scheduler pass (as trio's memory channels)."""
        queue = self._queue
        if queue:
            assert type(queue) is deque
            data = queue.popleft()
            if not queue:
                self._queue = _NO_MESSAGES
            return data
        if self._closed:
            raise self._error()
        t = self._terminated
        if t is not None:
            if self._handshake is None:  # as do_handshake()
                raise self._error()
            if t.by_peer and t.alert is AlertDescription.close_notify:
                raise trio.EndOfChannel
            raise self._error()
        raise trio.WouldBlock

    def send_nowait(self, value: bytes | bytearray | memoryview) -> None:
        """Protect one message and queue its datagram without a checkpoint; it leaves with
        what other tasks send in this scheduler pass, when the task next yields or once 16
        datagrams wait (the peer starts on a long burst's first part). Raises
        ``trio.WouldBlock`` before the handshake and while the endpoint's send queue is
        backed up (``await send()`` waits instead); otherwise as ``send``."""
        if type(value) is not bytes:
            check_message(value)
        if not value:
            raise ValueError("empty DTLS messages are not sent (as in trio)")
        if self._closed or self._terminated is not None:
            raise self._error()
        endpoint = self.endpoint
        if self._handshake is None or len(endpoint._outq) >= NOWAIT_SEND_LIMIT:
            raise trio.WouldBlock
        self._conn.send(value)
        self._app_records_out += 1
        endpoint._after(self)

    def close(self) -> None:
        """Close at once: close_notify is queued but not waited for (see ``aclose``)."""
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
            await trio.lowlevel.checkpoint()
            return
        endpoint = self.endpoint
        target = endpoint._close_channel(self)
        self._closed = True
        self._wake()
        if self._owns_endpoint:
            # Shielded and bounded: close_notify goes out even when aclose runs under cancel.
            with trio.CancelScope(shield=True):
                with trio.move_on_after(CLOSE_GRACE):
                    await endpoint._wait_sent(target)
                await endpoint.aclose()
        elif endpoint._sent < target:
            deadline = endpoint._now() + CLOSE_GRACE
            # The schedule point, shielded: on the batched path close_notify leaves while
            # this task yields, so it has usually gone when the task resumes.
            await trio.lowlevel.cancel_shielded_checkpoint()
            if endpoint._sent < target:  # the socket buffer is full: the send task has it
                with trio.CancelScope(shield=True, deadline=deadline):
                    await endpoint._wait_sent(target)
            await trio.lowlevel.checkpoint_if_cancelled()
            return
        await trio.lowlevel.checkpoint()

    def __enter__(self) -> DTLSChannel:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # -- MTU, parameters, figures -----------------------------------------------------

    def set_ciphertext_mtu(self, new_mtu: int) -> None:
        """Largest UDP payload to send to this peer (handshake flights and records)."""
        self._conn.set_ciphertext_mtu(new_mtu)

    def get_cleartext_mtu(self) -> int:
        """Largest ``send()`` that fits one datagram at the current MTU (after the end of
        the connection: as it was then)."""
        if self._handshake is None:
            raise trio.NeedHandshakeError("the handshake has not completed")
        return self._conn.get_cleartext_mtu()

    def debug_state(self) -> DTLSChannelDebugState:
        """For tests and debugging, not for applications: the sans-IO connection this
        channel drives and the state of its receive side."""
        return DTLSChannelDebugState(self._conn, len(self._queue), self._reader is not None)

    def statistics(self) -> DTLSChannelStatistics:
        """A snapshot of this channel's counters (``connection`` has all of the core's)."""
        return DTLSChannelStatistics(
            incoming_packets_dropped_in_trio=self._dropped, **self._statistics_fields()
        )
