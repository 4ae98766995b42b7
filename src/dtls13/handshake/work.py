"""What a handshake step produces for the connection, and the per-handshake working state.

`HandshakeContext.handle_message` (handshake/context.py) returns a `HandshakeOutput`: the
messages of one flight (`OutMessage`, its `FlightKind` saying how it is retransmitted), the
keys to install (`InstallKeys`) and what was negotiated or completed. `HandshakeWork` is
what only a handshake in progress holds; each role extends it, and a finished handshake
holds a shared, read-only spent instance instead.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ..alerts import Alert
from ..crypto.suites import CipherSuite
from ..crypto.zeroize import zeroize
from ..events import HandshakeCompleted, NewSessionTicketReceived
from . import compression, delegated, raw_keys
from . import messages as msgs
from .key_schedule import KeySchedule, Transcript

# Stands for the transcript once the handshake is over: it hashes nothing (no hash
# runs) and has no digest, so a post-handshake use would fail loudly.
SPENT_TRANSCRIPT = Transcript(candidates=())
_W = TypeVar("_W", bound="HandshakeWork")


class FlightKind(enum.Enum):
    """How the connection sends and retransmits a flight (RFC 9147 §5.8, §7.1)."""

    HANDSHAKE = "handshake"  # retransmitted on a timer until the peer answers
    RETRY = "retry"  # a HelloRetryRequest: sent again only when ClientHello1 repeats
    FINAL = "final"  # the client's last flight: retransmitted until ACKed
    TICKETS = "tickets"  # NewSessionTickets after the handshake: ACKed, current epoch


@dataclass(frozen=True, slots=True)
class OutMessage:
    """One handshake message to send; epoch None: the current application epoch."""

    epoch: int | None
    msg_type: int
    body: bytes


@dataclass(frozen=True, slots=True)
class InstallKeys:
    """Install traffic keys from `secret` for reading or writing `epoch`."""

    epoch: int
    write: bool
    suite: CipherSuite
    secret: bytes


@dataclass(slots=True)
class HandshakeOutput:
    """What one handshake message (or starting the handshake) asks of the connection,
    applied in this order: answered, negotiated parameters, keys, flight, completion."""

    answered: bool = False  # the peer's message implicitly acknowledged our flight
    address_validated: bool = False  # the peer returned a cookie we issued (RFC 9147 §5.1)
    peer_cid: bytes | None = None  # connection_id negotiated: the CID records to the peer carry
    cid_optional: bool = False  # 0-RTT records may come without our CID
    peer_record_limit: int | None = None  # the peer's record_size_limit (RFC 8449)
    enforce_record_limit: bool = False  # ours was announced: hold the peer to it
    keys: list[InstallKeys] = field(default_factory=list)
    flight: FlightKind | None = None
    messages: list[OutMessage] = field(default_factory=list)  # the flight, in order
    end_early_data: bool = False  # the client's Finished ends epoch 1 (RFC 9147 §5.6)
    completed: HandshakeCompleted | None = None
    ticket: NewSessionTicketReceived | None = None
    post_handshake: Any = None  # a KeyUpdate or CID message, for the connection
    abort: Alert | None = None  # once the flight is out, end the handshake with this alert
    # The ClientHelloInner's body (RFC 9849) we sealed or opened, for the message trace.
    ech_inner_hello: bytes | None = None


# What `_out` holds between calls: nothing of the last output (message bodies, events) is
# kept alive by an idle context. Handlers write only to the output of their own call.
NO_OUTPUT = HandshakeOutput()


class HandshakeWork:
    """What only a handshake in progress needs: one object in `HandshakeContext._work`,
    replaced by a shared, read-only spent one once the handshake is over, so an idle
    connection keeps neither this state nor a slot for each part of it."""

    __slots__ = (
        "c_hs",
        "cert_request",
        "certificate_compression_received",
        "certificate_compression_sent",
        "client_random",
        "credential",
        "early_accepted",
        "early_budget",
        "early_ended",
        "early_offered",
        "early_result",
        "hrr_cookie",
        "keylog",
        "local_cid",
        "own_type",
        "peer_compression",
        "peer_delegation",
        "peer_finished",
        "psk_identity",
        "random",
        "s_hs",
        "schedule",
        "scratch",
        "transcript",
    )

    def __init__(
        self, random: bytes, scratch: compression.Acquire | None, local_cid: bytes | None
    ) -> None:
        self.transcript = Transcript()
        # The key schedule; after the handshake, KeyUpdate and tickets need only the
        # suite's hash (HandshakeContext.params).
        self.schedule: KeySchedule | None = None
        self.c_hs = self.s_hs = b""  # the handshake traffic secrets
        self.random = random  # our hello's random
        # `scratch(n)` lends a pooled buffer of n bytes for a decompressed certificate.
        self.scratch = scratch
        # RFC 8879: the algorithms the peer offered for our Certificate (its preference order).
        self.peer_compression: tuple[int, ...] = ()
        self.cert_request: msgs.CertificateRequest | None = None
        self.hrr_cookie: bytes | None = None  # the cookie of the HelloRetryRequest
        # The connection ID we ask the peer to put on its records (None: no
        # connection_id extension).
        self.local_cid = local_cid
        # RFC 8879: the algorithm each side's Certificate came compressed with.
        self.certificate_compression_sent: compression.Algorithm | None = None
        self.certificate_compression_received: compression.Algorithm | None = None
        # RFC 7250: the certificate type of our Certificate (X.509 unless negotiated).
        self.own_type = raw_keys.CertificateType.X509
        # The server's delegated credential, checked (RFC 9345; handshake.delegated).
        self.peer_delegation: delegated.DelegatedCredential | None = None
        # The credential (identity.Credential) we authenticated with; None: none sent.
        self.credential: Any = None
        self.psk_identity: bytes | None = None  # the external PSK that authenticated us
        # 0-RTT (RFC 8446 §4.2.10): offered (by the client), accepted (by the server), and
        # how many bytes the ticket still allows.
        self.early_offered = self.early_accepted = False
        self.early_ended = False  # the peer's EndOfEarlyData came (server; see server.py)
        self.early_budget = 0
        self.peer_finished = False  # the peer's Finished verified
        self.early_result: bool | None = None  # the client's: whether 0-RTT was accepted
        # The key log (SSLKEYLOGFILE lines), which names secrets by the client's random.
        self.keylog: Callable[[str], None] | None = None
        self.client_random = b""

    def zeroize(self) -> None:
        """Zero the secrets only this state holds (the key schedule's, the handshake
        traffic secrets): the state is dropped next."""
        ks = self.schedule
        if ks is not None:
            ks.zeroize()
        c_hs, self.c_hs = self.c_hs, b""
        zeroize(c_hs)
        s_hs, self.s_hs = self.s_hs, b""
        zeroize(s_hs)


class ReadOnlyWork:
    """Mixed into a `HandshakeWork` class for its shared spent instance: read-only, as
    every finished handshake holds it."""

    __slots__ = ()

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"the handshake is over: no {name} to set")


class _SpentWork(ReadOnlyWork, HandshakeWork):
    __slots__ = ()


def spent_work(work: _W, spent_class: type[_W]) -> _W:
    """`work`, built with the spent values, made the read-only instance of `spent_class`
    (a `ReadOnlyWork` subclass of its class, same layout)."""
    assert issubclass(spent_class, ReadOnlyWork) and spent_class.__mro__[2] is type(work)
    work.__class__ = spent_class
    return work


# What a finished handshake holds instead of its working state: no transcript (it hashes
# nothing and has no digest, so a post-handshake use fails loudly), no key schedule, no
# secrets, no randoms.
SPENT_WORK = HandshakeWork(b"", None, None)
SPENT_WORK.transcript = SPENT_TRANSCRIPT
SPENT_WORK = spent_work(SPENT_WORK, _SpentWork)


__all__ = [
    "NO_OUTPUT",
    "SPENT_TRANSCRIPT",
    "SPENT_WORK",
    "FlightKind",
    "HandshakeOutput",
    "HandshakeWork",
    "InstallKeys",
    "OutMessage",
    "ReadOnlyWork",
    "spent_work",
]
