"""The handshake context: one side of the TLS 1.3 handshake, sans-IO and record-free.

In aioquic's spirit (``tls.Context.handle_message``): the connection hands the context one
reassembled handshake message at a time, and the context returns a `HandshakeOutput`
saying what to do: messages to send per epoch (one flight, its kind saying how it is
retransmitted), keys to install, what was negotiated for the record layer, the handshake's
completion or a session ticket. The context never touches records, flights, ACKs or
timers; the connection (connection.py) owns those and applies the output.

This module holds what both roles share: the state bookkeeping (`_set_state`, the one
place a state changes), transcript and key-schedule glue. handshake/work.py holds the
output types and the per-handshake working state; handshake/authentication.py sends and
reads certificates (bound here as methods); handshake/client.py and handshake/server.py
hold the roles and their transition tables.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from cryptography import x509

from .._fast import Buffer, DecodeError
from ..alerts import DecodeErrorAlert, IllegalParameter, UnexpectedMessage
from ..config import ClientConfig, ServerConfig
from ..crypto.suites import CipherSuite, SuiteParams
from ..crypto.zeroize import zeroize
from ..events import EchStatus, HandshakeCompleted
from . import authentication, compression, raw_keys, srtp, stapling, verification
from . import extensions as ext
from . import messages as msgs
from .constants import ExtensionType, NamedGroup, SignatureScheme
from .exporter import ExporterSecret
from .key_schedule import KeySchedule, next_application_traffic_secret
from .state import State, Transition, type_name
from .work import NO_OUTPUT, SPENT_WORK, HandshakeOutput, HandshakeWork, InstallKeys, OutMessage

logger = logging.getLogger("dtls13.handshake")

Config = ClientConfig | ServerConfig


def _count_nothing(name: str, n: int = 1) -> None:
    """The counter of a closed handshake."""


class HandshakeContext:
    """One side of the handshake; see the module docstring."""

    is_client: ClassVar[bool]
    trust_anchor_matched: bool  # a ClientHandshake slot (trust anchor IDs)
    TRANSITIONS: ClassVar[Mapping[tuple[Any, int], Transition]]
    CONNECTED: ClassVar[Any]
    CLOSED: ClassVar[Any]
    HELLO_STATES: ClassVar[frozenset[Any]]
    # The role's spent working state, shared by its finished handshakes.
    SPENT_WORK: ClassVar[HandshakeWork] = SPENT_WORK
    state: State

    # "__dict__": tests patch methods on instances; it is created only when used.
    __slots__ = (
        "__dict__",
        "_count",
        "_out",
        "_transition",
        "_wall_clock",
        "_work",
        "alpn",
        "closed",
        "config",
        "connected",
        "early_exporter",
        "exporter",
        "group",
        "in_hello",
        "params",
        "peer_chain",
        "peer_public_key",
        "peer_stapled",
        "peer_type",
        "peer_verification",
        "read_secret",
        "resumed",
        "scheme",
        "srtp",
        "state",
        "suite",
        "transitions",
        "write_secret",
    )

    def __init__(
        self,
        config: Config,
        *,
        wall_clock: Callable[[], datetime.datetime],
        count: Callable[[str, int], None],
        local_cid: bytes | None = None,
        scratch: compression.Acquire | None = None,
    ) -> None:
        """`count(name, n)` adds to a connection counter; `local_cid` is the connection
        ID we ask the peer to put on its records (None: no connection_id extension);
        `scratch(n)` lends a pooled buffer of n bytes for a decompressed certificate."""
        self.config = config
        work = self._work = self._new_work(config.random_bytes(32), scratch, local_cid)
        work.keylog = config.keylog_callback()
        work.client_random = work.random if self.is_client else b""
        self._wall_clock = wall_clock
        self._count = count
        self.params: SuiteParams | None = None
        self.suite: CipherSuite | None = None
        self.group: NamedGroup | None = None
        self.scheme: SignatureScheme | None = None
        self.alpn: str | None = None
        self.srtp: srtp.SrtpNegotiated | None = None  # DTLS-SRTP (RFC 5764), once agreed
        # Exporter master secrets (RFC 8446 §7.5): kept after the handshake for the exporter.
        self.exporter: ExporterSecret | None = None
        self.early_exporter: ExporterSecret | None = None
        self.peer_chain: tuple[x509.Certificate, ...] = ()
        # RFC 7250: the certificate type of the peer's Certificate (X.509 unless
        # negotiated), and its raw public key (DER SubjectPublicKeyInfo) if it sent one.
        self.peer_type = raw_keys.CertificateType.X509
        self.peer_public_key: bytes | None = None
        # The verdict on the peer's certificate or raw key (handshake.verification).
        self.peer_verification: verification.PeerVerification | None = None
        # What the server stapled to its leaf (OCSP, SCTs; RFC 8446 §4.4.2.1).
        self.peer_stapled = stapling.NOTHING
        self.read_secret = self.write_secret = b""
        self.resumed = False
        self.transitions = 0
        self._out = NO_OUTPUT
        self._transition: Transition | None = None

    def _new_work(
        self, random: bytes, scratch: compression.Acquire | None, local_cid: bytes | None
    ) -> HandshakeWork:
        """The working state of a new handshake (each role adds its own parts)."""
        return HandshakeWork(random, scratch, local_cid)

    # -- state -------------------------------------------------------------------------

    def _set_state(self, state: Any) -> None:
        """The one place a state changes (from a handler, only to a target its table entry
        names), logged at debug and counted in `transitions`."""
        transition = self._transition
        assert transition is None or state in transition.targets, (self.state, state)
        self.state = state
        self.connected = state is self.CONNECTED
        self.closed = state is self.CLOSED
        self.in_hello = state in self.HELLO_STATES
        self.transitions += 1
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "%s handshake: %s (transition %d)", self._role, state.name, self.transitions
            )

    @property
    def early_offered(self) -> bool:
        """Whether the ClientHello offered 0-RTT (a client's own, a server's peer's), while
        the handshake runs."""
        return self._work.early_offered

    @property
    def early_data_open(self) -> bool:
        """Whether the peer's 0-RTT is read now: we accepted it and its Finished, which
        ends it (RFC 9147 §5.6), has not come (never once the handshake is over)."""
        work = self._work
        return work.early_accepted and not work.peer_finished

    @property
    def early_budget(self) -> int:
        """The bytes of 0-RTT the ticket still allows (while the handshake runs)."""
        return self._work.early_budget

    @early_budget.setter
    def early_budget(self, value: int) -> None:
        self._work.early_budget = value

    @property
    def _role(self) -> str:
        return "client" if self.is_client else "server"

    def close(self) -> None:
        """The connection ended: no more messages, and no more secrets."""
        if not self.closed:
            self._transition = None
            self._set_state(self.CLOSED)
        self.zeroize_secrets()
        # `count` is the connection's bound method and the connection holds this context:
        # dropping it lets reference counting free both when the connection goes, without
        # waiting for the cycle collector. A closed handshake has nothing left to count.
        self._count = _count_nothing

    def zeroize_secrets(self) -> None:
        """Forget the secrets this handshake holds, zeroing the bytes no one else holds
        (RFC 8446 §7.1 forward secrecy; dtls13.crypto.zeroize): the traffic secrets (and
        a client's resumption secret), and what `drop_handshake_state` forgets. Exporter
        secrets stay for `export_keying_material` after the close; they are zeroed with
        their object."""
        self.drop_handshake_state()
        write, self.write_secret = self.write_secret, b""
        zeroize(write)
        read, self.read_secret = self.read_secret, b""
        zeroize(read)

    def handle_message(
        self,
        msg_type: int,
        body: Any,
        now: float,
        *,
        seq: int = 0,
        peer_address: Any = None,
        parsed: Any = None,
    ) -> HandshakeOutput:
        """Handle one complete handshake message (`body` without its header); `parsed`,
        when given, is its decoded form (the endpoint's gate decoded it already). Raises
        the Alert the message calls for."""
        transition = self.TRANSITIONS.get((self.state, msg_type))
        if transition is None:
            raise UnexpectedMessage(f"{type_name(msg_type)} in state {self.state.value}")
        if transition.parse and parsed is None:
            try:
                parsed = msgs.pull_message(msg_type, body)
            except msgs.UnexpectedHandshakeType:
                raise UnexpectedMessage(f"handshake type {msg_type}") from None
            except ext.DuplicateExtensionError:
                raise IllegalParameter("duplicate extension") from None
            except DecodeError as exc:
                raise DecodeErrorAlert(f"{type_name(msg_type)}: {exc}") from None
        out = self._out = HandshakeOutput()
        self._transition = transition
        try:
            getattr(self, transition.handler)(parsed, bytes(body), now, seq, peer_address)
        finally:
            self._transition = None
            self._out = NO_OUTPUT
        return out

    def _to_connection(self, msg: Any, body: bytes, now: float, seq: int, addr: Any) -> None:
        """A post-handshake message the connection handles (KeyUpdate, CIDs)."""
        self._out.post_handshake = msg

    def save_hello(self) -> tuple[Any, ...]:
        """What handling a first hello changes before it can still fail as damaged."""
        return (self._work.transcript.copy(), self.suite, self.params, self.group, self.resumed)

    def restore_hello(self, saved: tuple[Any, ...]) -> None:
        self._work.transcript, self.suite, self.params, self.group, self.resumed = saved

    # -- output ------------------------------------------------------------------------

    def _send(self, msg: Any, epoch: int | None, *, transcript: bool = True) -> None:
        msg_type, body = msgs.push_message(msg)
        self._send_encoded(msg_type, body, epoch, transcript=transcript)

    def _send_encoded(
        self, msg_type: int, body: bytes, epoch: int | None, *, transcript: bool = True
    ) -> None:
        if transcript:
            self._work.transcript.add(msg_type, body)
        self._out.messages.append(OutMessage(epoch, msg_type, body))

    def _install(
        self, epoch: int, *, write: bool, secret: bytes, suite: CipherSuite | None = None
    ) -> None:
        suite = self.suite if suite is None else suite
        assert suite is not None
        self._out.keys.append(InstallKeys(epoch, write, suite, secret))

    # -- keys --------------------------------------------------------------------------

    def _derive_handshake_secrets(
        self, shared: bytes | None, schedule: KeySchedule | None = None
    ) -> None:
        assert self.params is not None and self.suite is not None
        ks = schedule if schedule is not None else KeySchedule(self.params)
        ks.handshake(shared)
        self._work.schedule = ks
        hello_hash = self._work.transcript.digest()
        self._work.c_hs = ks.client_handshake_traffic_secret(hello_hash)
        self._work.s_hs = ks.server_handshake_traffic_secret(hello_hash)
        work = self._work
        mine, theirs = (work.c_hs, work.s_hs) if self.is_client else (work.s_hs, work.c_hs)
        self._install(2, write=True, secret=mine)
        self._install(2, write=False, secret=theirs)
        if self._work.keylog is not None:
            self._log_secret("CLIENT_HANDSHAKE_TRAFFIC_SECRET", self._work.c_hs)
            self._log_secret("SERVER_HANDSHAKE_TRAFFIC_SECRET", self._work.s_hs)

    def _derive_application_secrets(self) -> None:
        ks = self._work.schedule
        assert ks is not None
        ks.master()
        finished_hash = self._work.transcript.digest()
        c_app = ks.client_application_traffic_secret(finished_hash)
        s_app = ks.server_application_traffic_secret(finished_hash)
        self.write_secret, self.read_secret = (c_app, s_app) if self.is_client else (s_app, c_app)
        self.exporter = ExporterSecret(ks.hash_name, ks.exporter_master_secret(finished_hash))
        if self._work.keylog is not None:
            self._log_secret("CLIENT_TRAFFIC_SECRET_0", c_app)
            self._log_secret("SERVER_TRAFFIC_SECRET_0", s_app)
            self._log_secret("EXPORTER_SECRET", self.exporter.secret)

    def _keep_early_exporter(self, schedule: KeySchedule) -> None:
        """early_exporter_master_secret over ClientHello (RFC 8446 §7.1), once 0-RTT is on."""
        hello_hash = self._work.transcript.digest(schedule.hash_name)
        secret = schedule.early_exporter_master_secret(hello_hash)
        self.early_exporter = ExporterSecret(schedule.hash_name, secret)
        self._log_secret("EARLY_EXPORTER_SECRET", secret)

    def _log_secret(self, label: str, secret: bytes) -> None:
        if self._work.keylog is not None:
            self._work.keylog(f"{label} {self._work.client_random.hex()} {secret.hex()}")

    def next_write_secret(self) -> bytes:
        """Our next application traffic secret (KeyUpdate, RFC 8446 §7.2)."""
        assert self.params is not None
        old = self.write_secret
        self.write_secret = next_application_traffic_secret(self.params.hash_name, old)
        zeroize(old)  # RFC 8446 §7.2: once the next secret exists, the old one goes
        return self.write_secret

    def next_read_secret(self) -> bytes:
        """The peer's next application traffic secret (its KeyUpdate)."""
        assert self.params is not None
        old = self.read_secret
        self.read_secret = next_application_traffic_secret(self.params.hash_name, old)
        zeroize(old)
        return self.read_secret

    def _early_data_accepted(self) -> bool | None:
        """HandshakeCompleted.early_data_accepted: None when the client offered no 0-RTT."""
        work = self._work
        if self.is_client:
            return work.early_result
        return work.early_accepted if work.early_offered else None

    def _complete(self) -> None:
        assert self.suite is not None
        self._set_state(self.CONNECTED)
        self._out.completed = HandshakeCompleted(
            version="DTLSv1.3",
            cipher_suite=self.suite,
            group=self.group,
            signature_scheme=self.scheme,
            alpn_protocol=self.alpn,
            peer_certificates=self.peer_chain,
            resumed=self.resumed,
            early_data_accepted=self._early_data_accepted(),
            peer_public_key=self.peer_public_key,
            credential=self._work.credential,
            psk_identity=self._work.psk_identity,
            certificate_compression_sent=_name(self._work.certificate_compression_sent),
            certificate_compression_received=_name(self._work.certificate_compression_received),
            peer_ocsp_response=self.peer_stapled.ocsp_response,
            peer_signed_certificate_timestamps=self.peer_stapled.signed_certificate_timestamps,
            ech_status=self.ech_status(),
            # Client-only slots (ClientHandshake): a server has neither.
            peer_matched_trust_anchor=getattr(self, "trust_anchor_matched", False),
            peer_available_trust_anchors=getattr(self, "trust_anchors_available", ()),
        )

    def ech_status(self) -> EchStatus:
        """What became of Encrypted Client Hello (RFC 9849) in this handshake; each role
        answers from its own ECH state (no slot here: an idle connection pays nothing)."""
        return EchStatus.NOT_OFFERED

    def drop_handshake_state(self) -> None:
        """Forget what only the handshake needed, once it has completed.

        An idle connection then holds its current traffic secrets and a client the
        resumption secret (tickets); the working state goes whole: the transcript, the
        key schedule with the handshake and master secrets, the hellos and our key shares
        (less memory per connection, and secrets that are no longer needed are not kept:
        RFC 8446 §7.1 forward secrecy). Also called by `close`, during the handshake too.
        """
        work = self._work
        if work is self.SPENT_WORK:
            return
        self._work = self.SPENT_WORK
        work.zeroize()

    # -- certificates (both roles) -----------------------------------------------------
    # The Certificate and CertificateVerify sent and read (authentication.py).
    _on_certificate = authentication.on_certificate
    _parse_peer_chain_untrusted = authentication.parse_peer_chain_untrusted
    _decompress_certificate = authentication.decompress_certificate
    _on_certificate_verify = authentication.on_certificate_verify
    _send_certificate_and_verify = authentication.send_certificate_and_verify
    _after_certificate_verify: ClassVar[Any]


def _name(algorithm: compression.Algorithm | None) -> str | None:
    return algorithm.name if algorithm is not None else None


def extension_name(ext_type: int) -> str:
    try:
        return ExtensionType(ext_type).name
    except ValueError:
        return f"extension {ext_type}"


def decode(data: bytes, pull: Any) -> Any:
    """An extension's contents; malformed: decode_error."""
    # ext.decode inlined: a call less for each of the ClientHello's extensions.
    buf = Buffer(data)
    try:
        value = pull(buf)
        buf.expect_end()
    except DecodeError as exc:
        raise DecodeErrorAlert(f"malformed extension: {exc}") from None
    finally:
        buf.close()
    return value


def record_size_limit(data: bytes) -> int:
    """The peer's RecordSizeLimit; above 2^14+1 it means no more than the protocol's limit."""
    value: int = decode(data, ext.pull_record_size_limit)
    if value < 64:
        raise IllegalParameter(f"record_size_limit {value} below 64")  # RFC 8449 §4
    return min(value, 16385)


__all__ = ["HandshakeContext"]
