"""What a DTLSChannel of either event-loop adapter (trio, asyncio) reports about its
association, read from the sans-IO connection: the negotiated parameters, the exporters,
SRTP keys, 0-RTT, and the common part of its statistics. One implementation for both."""

from __future__ import annotations

from abc import ABCMeta
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from cryptography import x509

from .alerts import AlertDescription, alert_for
from .errors import ConnectionEnded, error_for

if TYPE_CHECKING:
    from .connection import Connection
    from .crypto.suites import CipherSuite
    from .events import ConnectionTerminated, HandshakeCompleted
    from .handshake.constants import NamedGroup, SignatureScheme
    from .handshake.srtp import SrtpKeyingMaterial, SrtpProtectionProfile
    from .handshake.tickets import Session
    from .peer_verification import PeerVerification

_T = TypeVar("_T")
ErrorClasses = Mapping[type[ConnectionEnded], type[ConnectionEnded]]
_FRAGMENT_DROPS = ("duplicates", "old", "too_far_ahead", "over_budget", "too_scattered")


class NoPublicConstructor(ABCMeta):
    """Instances only through ``cls._create(...)`` (as trio's own DTLSChannel)."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(f"{cls.__module__}.{cls.__qualname__} has no public constructor")

    def _create(cls: type[_T], *args: Any, **kwargs: Any) -> _T:
        return super().__call__(*args, **kwargs)  # type: ignore[misc, no-any-return]


class ChannelView:
    """The read-only face of a channel (mixed into each adapter's DTLSChannel, which sets
    the attributes below and provides ``endpoint`` and ``_error``)."""

    _conn: Connection
    _address: Any
    _server: bool
    _connect_sent: bool
    _closed: bool
    _handshake: HandshakeCompleted | None
    _session: Session | None
    _terminated: ConnectionTerminated | None
    _dropped: int
    _app_records_out: int
    endpoint: Any

    _unreachable: bool

    def _error(self) -> BaseException:
        raise NotImplementedError

    def _termination_error(self, classes: ErrorClasses) -> BaseException:
        """The ``dtls13.errors`` class (in the adapter's flavour) for how the connection
        ended, its alert as the cause."""
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
            classes=classes,
        )
        if t.alert is not None and t.alert is not AlertDescription.close_notify:
            exc.__cause__ = alert_for(t.alert, t.reason)
        return exc

    @property
    def peer_address(self) -> Any:
        """The peer's address. A server channel with connection IDs follows its client to a
        new address once a record from there authenticates (NAT rebinding, RFC 9147 §9)."""
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
        """The newest session the server issued (clients only): resume it with
        ``ClientConfig(session=channel.session)`` on the next connection."""
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

    def _statistics_fields(self) -> dict[str, Any]:
        """The fields both adapters' DTLSChannelStatistics share (all but the name of the
        receive-queue overflow count)."""
        s = self._conn.statistics()
        drops: dict[str, int] = {"receive_queue_full": self._dropped}
        drops.update({f"record_{k}": v for k, v in s.record_drops.items()})
        drops.update({f"fragment_{k}": s.reassembly.get(k, 0) for k in _FRAGMENT_DROPS})
        drops.update({k: v for k, v in self._conn.stats.items() if k.startswith("dropped_")})
        started, done = self._conn.handshake_started, self._conn.handshake_completed_at
        return {
            "datagrams_in": s.datagrams_in,
            "datagrams_out": s.datagrams_out,
            "records_in": s.records_in,
            "app_records_out": self._app_records_out,
            "app_bytes_in": s.app_bytes_in,
            "app_bytes_out": s.app_bytes_out,
            "retransmissions": s.retransmissions,
            "handshake_time": None if started is None or done is None else done - started,
            "drops": drops,
            "memory_in_use": s.memory_in_use,
            "memory_high_water": s.memory_high_water,
            "leases_live": s.leases_live,
            "connection": s,
        }

    def __repr__(self) -> str:
        role = "server" if self._server else "client"
        return f"<DTLSChannel {role} peer={self.peer_address!r} closed={self.closed}>"
