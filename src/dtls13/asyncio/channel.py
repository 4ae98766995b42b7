"""DTLSChannel: one DTLS 1.3 association over an asyncio DTLSEndpoint's socket."""

from __future__ import annotations

import asyncio
from abc import ABCMeta
from collections import deque
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar, final

from cryptography import x509

from ..alerts import AlertDescription, alert_for
from ..connection import Connection
from ..crypto.suites import CipherSuite
from ..errors import PeerClosed, error_for
from ..events import (
    ConnectionTerminated,
    DataReceived,
    HandshakeCompleted,
    NewSessionTicketReceived,
)
from ..handshake.constants import NamedGroup, SignatureScheme
from ..handshake.srtp import SrtpKeyingMaterial, SrtpProtectionProfile
from ..handshake.tickets import Session
from ..peer_verification import PeerVerification
from ..statistics import ConnectionStatistics
from .errors import ASYNCIO_CLASSES, ClosedResourceError, NeedHandshakeError

if TYPE_CHECKING:
    from .endpoint import DTLSEndpoint

_T = TypeVar("_T")
_FRAGMENT_DROPS = ("duplicates", "old", "too_far_ahead", "over_budget", "too_scattered")
CLOSE_GRACE = 1.0  # seconds aclose() waits for close_notify to leave the socket


class _NoPublicConstructor(ABCMeta):
    """Instances only through ``cls._create(...)``."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(f"{cls.__module__}.{cls.__qualname__} has no public constructor")

    def _create(cls: type[_T], *args: Any, **kwargs: Any) -> _T:
        return super().__call__(*args, **kwargs)  # type: ignore[misc, no-any-return]


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
class DTLSChannel(metaclass=_NoPublicConstructor):
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
        t = self._terminated
        assert t is not None
        exc = error_for(
            reason=t.reason,
            alert=t.alert,
            by_peer=t.by_peer,
            handshake_complete=self._handshake is not None,
            timed_out=t.timed_out,
            certificate_error=t.certificate_error,
            unreachable=self._unreachable,
            ech_rejected=t.ech_rejected,
            ech_retry_configs=t.ech_retry_configs,
            classes=ASYNCIO_CLASSES,
        )
        if t.alert is not None and t.alert is not AlertDescription.close_notify:
            exc.__cause__ = alert_for(t.alert, t.reason)
        return exc

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
        after a fatal alert, `ClosedResourceError` after ``close``."""
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

    @property
    def peer_address(self) -> Any:
        """The peer's address (a server channel with connection IDs follows its client)."""
        return self._conn.peer_address if self._server else self._address

    @property
    def closed(self) -> bool:
        return self._closed or self._terminated is not None

    @property
    def handshake_info(self) -> HandshakeCompleted | None:
        """Everything negotiated, once the handshake completed."""
        return self._handshake

    @property
    def cipher_suite(self) -> CipherSuite | None:
        return self._handshake.cipher_suite if self._handshake else None

    @property
    def group(self) -> NamedGroup | None:
        return self._handshake.group if self._handshake else None

    @property
    def signature_scheme(self) -> SignatureScheme | None:
        return self._handshake.signature_scheme if self._handshake else None

    @property
    def alpn_protocol(self) -> str | None:
        return self._handshake.alpn_protocol if self._handshake else None

    @property
    def peer_certificates(self) -> tuple[x509.Certificate, ...]:
        return self._handshake.peer_certificates if self._handshake else ()

    @property
    def peer_public_key(self) -> bytes | None:
        """The peer's raw public key (RFC 7250), DER SubjectPublicKeyInfo; None: none."""
        return self._handshake.peer_public_key if self._handshake else None

    @property
    def peer_verification(self) -> PeerVerification | None:
        """The verdict on the peer's certificate or raw key (``verify_callback``): with
        ``verify=False``, a rejection the handshake went on after; None before it."""
        return self._conn.peer_verification if self._handshake else None

    @property
    def session(self) -> Session | None:
        """The newest session the server issued (clients only), for resumption."""
        return self._session

    @property
    def resumed(self) -> bool:
        """Whether the handshake resumed a session (or used an external PSK)."""
        return bool(self._handshake and self._handshake.resumed)

    @property
    def early_data_accepted(self) -> bool | None:
        """None if no 0-RTT data was offered, else whether the server accepted it."""
        return self._handshake.early_data_accepted if self._handshake else None

    def send_early_data(self, value: bytes | bytearray | memoryview) -> None:
        """Send 0-RTT data before the handshake (clients resuming a session whose ticket
        allows early data). Early data can be replayed: send only what is safe twice.
        Raises LocalProtocolError when 0-RTT is not possible now."""
        if self._closed:
            raise self._error()
        if not self._connect_sent:
            self._connect_sent = True
            self.endpoint._start_client(self)
        self._conn.send_early_data(value)
        self.endpoint._after(self)

    def export_keying_material(
        self, label: str | bytes, context: bytes | None, length: int
    ) -> bytes:
        """Keying material both sides derive alike (RFC 8446 §7.5 exporter), e.g. SRTP keys
        or a channel binding. Raises LocalProtocolError before the handshake completed."""
        return self._conn.export_keying_material(label, context, length)

    def export_early_keying_material(
        self, label: str | bytes, context: bytes | None, length: int
    ) -> bytes:
        """The early exporter, for 0-RTT data: a client once it offered 0-RTT
        (``send_early_data``), a server once it accepted it; else LocalProtocolError."""
        return self._conn.export_early_keying_material(label, context, length)

    @property
    def srtp_profile(self) -> SrtpProtectionProfile | None:
        """The SRTP protection profile use_srtp agreed on (RFC 5764), or None."""
        return self._conn.srtp_profile

    @property
    def srtp_mki(self) -> bytes:
        """The SRTP MKI in use (empty: none)."""
        return self._conn.srtp_mki

    def srtp_keying_material(self) -> SrtpKeyingMaterial:
        """SRTP master keys and salts of both directions (RFC 5764 §4.2); raises
        LocalProtocolError before the handshake or when no profile was agreed."""
        return self._conn.srtp_keying_material()

    @property
    def terminated(self) -> ConnectionTerminated | None:
        """How the connection ended (close_notify, an alert, a timeout), or None."""
        return self._terminated

    def statistics(self) -> DTLSChannelStatistics:
        """A snapshot of this channel's counters (``connection`` has all of the core's)."""
        s = self._conn.statistics()
        drops: dict[str, int] = {"receive_queue_full": self._dropped}
        drops.update({f"record_{k}": v for k, v in s.record_drops.items()})
        drops.update({f"fragment_{k}": s.reassembly.get(k, 0) for k in _FRAGMENT_DROPS})
        drops.update({k: v for k, v in self._conn.stats.items() if k.startswith("dropped_")})
        started, done = self._conn.handshake_started, self._conn.handshake_completed_at
        return DTLSChannelStatistics(
            incoming_packets_dropped=self._dropped,
            datagrams_in=s.datagrams_in,
            datagrams_out=s.datagrams_out,
            records_in=s.records_in,
            app_records_out=self._app_records_out,
            app_bytes_in=s.app_bytes_in,
            app_bytes_out=s.app_bytes_out,
            retransmissions=s.retransmissions,
            handshake_time=None if started is None or done is None else done - started,
            drops=drops,
            memory_in_use=s.memory_in_use,
            memory_high_water=s.memory_high_water,
            leases_live=s.leases_live,
            connection=s,
        )

    def __repr__(self) -> str:
        role = "server" if self._server else "client"
        return f"<DTLSChannel {role} peer={self.peer_address!r} closed={self.closed}>"
