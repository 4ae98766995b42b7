"""Events the sans-IO connection reports through ``Connection.next_event()``."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from cryptography import x509

from .alerts import AlertDescription
from .crypto.registry import NamedGroup, SignatureScheme
from .crypto.suites import CipherSuite
from .session import Session


class EchStatus(enum.Enum):
    """What became of Encrypted Client Hello (RFC 9849) in a handshake."""

    NOT_OFFERED = "not_offered"
    GREASE = "grease"
    ACCEPTED = "accepted"
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class Event:
    """Base class of every connection event."""


@dataclass(frozen=True, slots=True)
class HandshakeCompleted(Event):
    """The handshake finished; application data may flow."""

    version: str
    cipher_suite: CipherSuite
    group: NamedGroup | None
    signature_scheme: SignatureScheme | None
    alpn_protocol: str | None
    peer_certificates: tuple[x509.Certificate, ...]
    resumed: bool
    # None: no early data was offered; True/False: the server accepted or rejected it.
    early_data_accepted: bool | None = None
    # The peer's raw public key (RFC 7250), DER SubjectPublicKeyInfo; None: it sent none.
    peer_public_key: bytes | None = None
    # RFC 8879: the algorithm our Certificate went out compressed with, and the one the
    # peer's came with (None: not compressed, or no certificate).
    certificate_compression_sent: str | None = None
    certificate_compression_received: str | None = None
    # What the server stapled to its certificate when the client asked (request_ocsp,
    # request_signed_certificate_timestamps): a DER OCSPResponse and serialized SCTs, as
    # received, not checked by the library. A resumption reports the original's.
    peer_ocsp_response: bytes | None = None
    peer_signed_certificate_timestamps: tuple[bytes, ...] = ()
    # The credential we authenticated with: one of the config's `certificates` (or the
    # one made from certificate_chain / raw_public_key): a handshake.identity.Credential
    # (typed Any: events sit below the handshake layer). None: we sent none.
    credential: Any = None
    # The identity of the external PSK (plain or imported, RFC 9258) that authenticated
    # the handshake; None after certificates or a session ticket.
    psk_identity: bytes | None = None
    # Encrypted Client Hello (RFC 9849): accepted (the handshake used the inner
    # ClientHello), rejected (the outer one), GREASE, or not offered.
    ech_status: EchStatus = EchStatus.NOT_OFFERED
    # Trust anchor IDs (ClientConfig.trust_anchor_ids, draft-ietf-tls-trust-anchor-ids):
    # the server said its certificate chains to one we named; the IDs it said it has.
    peer_matched_trust_anchor: bool = False
    peer_available_trust_anchors: tuple[bytes, ...] = ()


@dataclass(frozen=True, slots=True)
class DataReceived(Event):
    """Application data from the peer (one record's worth); ``early`` for 0-RTT data."""

    data: bytes
    early: bool = False


@dataclass(frozen=True, slots=True)
class KeyUpdated(Event):
    """A traffic key changed (``sending`` True for our own keys)."""

    sending: bool
    epoch: int


@dataclass(frozen=True, slots=True)
class NewSessionTicketReceived(Event):
    """The server sent a ticket; ``session`` resumes it (``ClientConfig(session=...)``)."""

    ticket: bytes
    lifetime: int
    age_add: int
    nonce: bytes
    session: Session


@dataclass(frozen=True, slots=True)
class ConnectionTerminated(Event):
    """The connection ended: by close_notify, an alert (sent or received) or a timeout.

    ``timed_out``: the handshake did not complete within ``handshake_timeout``, or a
    flight went unanswered through ``max_retransmissions`` retransmissions.
    ``certificate_error``: we rejected the peer's certificate chain, for this reason (the
    verifier's words). ``dtls13.errors.error_for`` makes the matching exception.
    """

    alert: AlertDescription | None
    reason: str
    by_peer: bool
    timed_out: bool = False
    certificate_error: str | None = None
    # We ended the handshake because the server rejected Encrypted Client Hello (alert
    # ech_required, RFC 9849 §6.1.6), and the ECHConfigList it sent to retry with (None:
    # none sent; ECH is then disabled for this server, §6.1.6).
    ech_rejected: bool = False
    ech_retry_configs: bytes | None = None
