"""The sans-IO DTLS 1.3 connection: datagrams in, datagrams out, one timer.

Shaped like aioquic's ``QuicConnection``: ``connect(addr, now)``,
``receive_datagram(data, addr, now)``, ``datagrams_to_send(now)``, ``get_timer()``,
``handle_timer(now)``, ``next_event()``, ``send(data)``, ``key_update()``, ``close()``.
No sockets, no clock, no trio: time comes in as ``now``.

Every buffer the connection holds (datagrams, records, reassembly, flights) is a lease
charged to this connection's owner in the pools; ``close()`` (or a fatal error) gives
everything back.
"""

from __future__ import annotations

import datetime
import hmac
import struct
from collections import deque
from collections.abc import Callable
from functools import lru_cache, partial
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from ._fast import Buffer, DecodeError, Lease, MemoryBudgetExceeded
from .alerts import (
    Alert,
    AlertDescription,
    AlertLevel,
    CertificateRequired,
    DecodeErrorAlert,
    DecryptError,
    HandshakeFailure,
    IllegalParameter,
    InternalError,
    LocalProtocolError,
    MissingExtension,
    NoApplicationProtocol,
    ProtocolVersion,
    RecordOverflow,
    TooManyCidsRequested,
    UnexpectedMessage,
    UnsupportedExtension,
    alert_for,
)
from .config import ClientConfig, ServerConfig
from .crypto.suites import SUITES, CipherSuite, SuiteParams
from .events import (
    ConnectionTerminated,
    DataReceived,
    Event,
    HandshakeCompleted,
    KeyUpdated,
    NewSessionTicketReceived,
)
from .handshake import certificates as certs
from .handshake import extensions as ext
from .handshake import groups, srtp
from .handshake import messages as msgs
from .handshake.constants import (
    DTLS13_VERSION,
    ExtensionType,
    HandshakeType,
    KeyUpdateRequest,
    NamedGroup,
    SignatureScheme,
)
from .handshake.exporter import ExporterSecret
from .handshake.flights import Flight, handshake_fragment
from .handshake.fragments import Reassembler, pull_handshake_fragments_untrusted
from .handshake.gate import hello_retry_request
from .handshake.key_schedule import KeySchedule, Transcript
from .handshake.state import ACCEPTS, MESSAGE_EPOCH, State
from .handshake.tickets import MAX_TICKET_CHAIN, Session, TicketState, chain_size
from .memory import PoolSet, default_pool_set
from .memory.counters import zero_counters
from .record import ContentType, DatagramWriter, RecordLayer, RecordNumber, pull_ack, push_ack
from .record.header import MAX_PLAINTEXT
from .statistics import ConnectionStatistics

Address = Any
Config = ClientConfig | ServerConfig

# Connection.stats: counters of one connection.
STAT_NAMES = (
    "datagrams_in",
    "datagrams_out",
    "records_in",
    "app_bytes_in",
    "app_bytes_out",
    "retransmissions",
    "acks_sent",
    "acks_received",
    "dropped_handshake_fragments",
    "dropped_app_data_early",
    "dropped_malformed_plaintext",
    "dropped_unexpected_content",
    "key_updates_sent",
    "key_updates_received",
    "hello_retry_requests_sent",
    "hello_retry_requests_received",
    "alerts_unsent",
    "handshake_restarts",
    "dropped_damaged_hello",
    "address_changes",
    "early_data_offered",
    "early_data_replays",
    "early_data_bytes_in",
    "early_data_bytes_out",
    "dropped_early_data",
    # Resumption refused because the identities would not match (RFC 8446 §4.6.1, §2.2):
    "idle_releases",  # times an idle connection let its ciphers' OpenSSL objects go
)
# Counters that stay zero on almost every connection, kept apart in a dict made on first use
# (Connection.count): the common ones above then stay within the 30 keys a CPython
# key-sharing dict allows (see memory/counters.py), and an ordinary connection pays nothing
# for these.
RARE_STAT_NAMES = (
    "tickets_withheld",  # server: tickets not sent, the client chain too large for one
    "psk_refused_identity",  # server: ticket of another SNI, or without a required client cert
    "session_server_name_mismatch",  # client: session for another name, not offered
    "acks_unsent",  # ACKs not sent for want of memory (output left uncollected)
    "dropped_conflicting_fragments",  # plaintext hello fragments that conflicted: dropped
    "cid_requests_refused",  # RequestConnectionId answered with fewer CIDs (we hold the cap)
    "keys_dropped_at_integrity_limit",  # old read keys dropped after too many forgeries
    "handshake_unanswered",  # ended: the peer never answered our flight (unanswered_timeout)
    "amplification_limited",  # datagrams not sent: over 3x what an unproven address sent
)
# Fragment drops that mean "not buffered", so the record must not be ACKed (RFC 9147 §7).
_NOT_BUFFERED = ("too_far_ahead", "over_budget", "too_scattered")
MIN_MTU = 256
# The ServerHello's supported_versions (always DTLS 1.3): encoded once.
_SH_SUPPORTED_VERSIONS = ext.make_extension(
    ExtensionType.supported_versions, ext.push_supported_versions_server, DTLS13_VERSION
)
MAX_CIDS = 4  # CIDs issued per NewConnectionId, and spare peer CIDs kept (RFC 9147 §9)
MAX_LOCAL_CIDS = 8  # CIDs of ours a connection holds in all (DTLS 1.3 cannot retire one)
MAX_REFUSED_CID_REQUESTS = 8  # requests answered with no CIDs before too_many_cids_requested
CID_IMMEDIATE, CID_SPARE = 0, 1  # ConnectionIdUsage
MAX_RESTARTS = 3  # handshake restarts after damaged hellos (see _restart_handshake)
# States in which unprotected (epoch 0) handshake messages are still expected.
_HELLO_STATES = frozenset({State.START, State.WAIT_CLIENT_HELLO, State.WAIT_SERVER_HELLO})
HELLO_VERIFY_REQUEST = 3  # DTLS 1.2 only (RFC 6347 §4.2.1); deprecated by RFC 9147 §5.2
# What a second ClientHello may change (RFC 8446 §4.1.2).
_CLIENT_HELLO2_MAY_CHANGE = frozenset(
    {
        ExtensionType.key_share,
        ExtensionType.early_data,
        ExtensionType.cookie,
        ExtensionType.pre_shared_key,
        ExtensionType.padding,
    }
)


# What every connection with no event waiting holds instead of a deque of its own. A
# tuple, so that appending to it fails loudly: events go through _event().
_NO_EVENTS: tuple[()] = ()

# Stands for the transcript once the handshake is over: it hashes nothing (no hash
# runs) and has no digest, so a post-handshake use would fail loudly.
_SPENT_TRANSCRIPT = Transcript(candidates=())


def _now_utc() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class Connection:
    """One DTLS 1.3 association, client or server (by the config's type)."""

    # One per peer, so no per-instance dict for these (about 1.5 KiB each with ~75
    # attributes). "__dict__" stays for anything set outside this list (tests patch
    # methods on instances); it is created only when used.
    # Handshake messages of one epoch share records while they fit (RFC 9147 §5.5 allows
    # it; one AEAD seal for EncryptedExtensions..Finished). False: one message per record.
    coalesce_handshake_records = True

    __slots__ = (
        "__dict__",
        "__weakref__",
        "_ack_at",
        "_ack_list",
        "_alpn",
        "_amplification_limit",
        "_c_app",
        "_c_hs",
        "_cert_request",
        "_cid_issuer",
        "_cid_request_outstanding",
        "_client_hello",
        "_client_random",
        "_closed_cleartext_mtu",
        "_cookie_checked",
        "_current_seq",
        "_decoded_hello",
        "_early_accepted",
        "_early_budget",
        "_early_exporter",
        "_early_offered",
        "_early_result",
        "_enforce_record_limit",
        "_epoch2_records",
        "_events",
        "_exporter",
        "_final_ack_repeated_at",
        "_final_acks",
        "_flight",
        "_group",
        "_handshake_deadline",
        "_hello_bodies",
        "_hello_records",
        "_hrr_cookie",
        "_hrr_done",
        "_hrr_group",
        "_idle_check_at",
        "_idle_mark",
        "_idle_reassembly",
        "_key_shares",
        "_key_update_pending",
        "_keylog",
        "_newest_protected",
        "_now",
        "_outbox",
        "_params",
        "_peer_chain",
        "_peer_finished",
        "_peer_record_limit",
        "_psk_schedule",
        "_random",
        "_rare_stats",
        "_read_secret",
        "_reassembler",
        "_records",
        "_restarts",
        "_resumed",
        "_resumption_secret",
        "_retransmit_at",
        "_retransmitted_at",
        "_retransmitted_this_input",
        "_rto",
        "_s_app",
        "_s_hs",
        "_schedule",
        "_scheme",
        "_send_seq",
        "_server_name",
        "_spare_peer_cids",
        "_srtp",
        "_suite",
        "_timeouts",
        "_transcript",
        "_unanswered_at",
        "_unanswered_timeout",
        "_unvalidated_in",
        "_unvalidated_out",
        "_wall_clock",
        "_write_secret",
        "cid_negotiated",
        "config",
        "handshake_completed_at",
        "handshake_started",
        "is_client",
        "local_cids",
        "mtu",
        "on_activity",
        "owner",
        "peer_address",
        "pools",
        "state",
        "stats",
        "terminated",
    )

    def __init__(
        self,
        config: Config,
        *,
        pools: PoolSet | None = None,
        peer_address: Address = None,
        owner_parent: Any = None,
        memory_limit: int | None = 1024 * 1024,
        wall_clock: Callable[[], datetime.datetime] = _now_utc,
        first_message_seq: int = 0,
        cid_issuer: Callable[[Connection, int], bytes] | None = None,
        on_activity: Callable[[Connection], None] | None = None,
        unanswered_timeout: float | None = None,
        amplification_limit: float | None = None,
    ) -> None:
        """`first_message_seq=1` makes a server that starts at a second ClientHello
        carrying a cookie from a stateless HelloRetryRequest (RFC 9147 §5.1).
        `unanswered_timeout`: end the handshake this many seconds after it began (or
        restarted) unless a record from the peer has authenticated under the handshake
        keys by then, proof that the peer got our flight (an endpoint's half-open
        handshakes; None: only `config.handshake_timeout` applies).
        `amplification_limit` (a server; an endpoint passes 3): until the peer's address is
        validated, send it at most this many times the bytes received from it (RFC 9147
        §5.1); what would exceed it is not sent, and retransmissions try again.
        `cid_issuer(conn, length)` returns a fresh connection ID for us (an endpoint makes
        them unique and routes by them); by default they are random. `on_activity(conn)` is
        called whenever a call may have produced output or moved the timer, so an endpoint
        with many connections only looks at those that have work."""
        if not isinstance(config, ClientConfig | ServerConfig):
            raise TypeError("config must be a ClientConfig or a ServerConfig")
        self.config = config
        self.is_client = isinstance(config, ClientConfig)
        self.pools = pools if pools is not None else default_pool_set()
        self.peer_address = peer_address
        self._wall_clock = wall_clock
        self.owner = self.pools.owner(
            "connection",
            peer_address if peer_address is not None else id(self),
            memory_limit,
            owner_parent,
        )
        self._keylog = config.keylog_callback()
        self._cid_issuer = cid_issuer
        self.on_activity = on_activity
        # Connection IDs we issued (the peer puts one on its records) and the peer's spares.
        self.local_cids: list[bytes] = []
        self._spare_peer_cids: list[bytes] = []
        self._cid_request_outstanding = False
        # A deque of its own only while events wait: an idle connection shares the
        # empty _NO_EVENTS instead of holding a ~760-byte deque block.
        self._events: deque[Event] | tuple[()] = _NO_EVENTS
        self._outbox: list[tuple[Lease, Address]] = []
        self.mtu = config.mtu
        self.state = State.START if self.is_client else State.WAIT_CLIENT_HELLO
        self._handshake_deadline: float | None = None
        self._unanswered_timeout = unanswered_timeout
        self._unanswered_at: float | None = None
        self._cookie_checked = False  # a server: the peer returned a cookie we issued
        # Bytes from and to a peer whose address is not validated yet (None: no limit,
        # or validated since).
        self._amplification_limit = None if self.is_client else amplification_limit
        self._unvalidated_in = self._unvalidated_out = 0
        self._restarts = 0
        if config.cid_length is not None:
            self.local_cids.append(self._new_cid(config.cid_length))
        self._init_handshake(first_message_seq)
        # statistics
        self.stats: dict[str, int] = zero_counters(STAT_NAMES)
        self._rare_stats: dict[str, int] | None = None  # RARE_STAT_NAMES, once one counts
        self.handshake_started: float | None = None
        self.handshake_completed_at: float | None = None
        self.terminated: ConnectionTerminated | None = None
        self._now = 0.0  # the latest time the caller gave us
        # Idle release (config.idle_release_after): when to look again whether any record
        # went either way since the last look (None: not connected, or already released).
        self._idle_check_at: float | None = None
        self._idle_mark = -1

    def _init_handshake(self, first_message_seq: int) -> None:
        """Fresh handshake state: record layer, reassembly, transcript, secrets, timers."""
        self._records = RecordLayer(
            self.pools,
            self.owner,
            padding=self.config.record_padding,
            confidentiality_limit=self.config.confidentiality_limit,
        )
        self._reassembler: Reassembler | None = self._new_reassembler(first_message_seq)
        # After the handshake, while no message is in reassembly: (next message_seq, the
        # counters) instead of a Reassembler (it and its pool owner are ~1.3 KiB).
        self._idle_reassembly: tuple[int, dict[str, int]] | None = None
        # connection_id (RFC 9146) and record_size_limit (RFC 8449), once negotiated
        self.cid_negotiated = False
        self._peer_record_limit: int | None = None
        self._enforce_record_limit = False
        self._newest_protected = (0, -1)  # (epoch, seq) of the newest authenticated record
        if self.is_client and self.local_cids and self.local_cids[0]:
            self._records.tentative_cid_length = len(self.local_cids[0])
        # handshake
        self._transcript = Transcript()
        self._schedule: KeySchedule | None = None
        self._params: SuiteParams | None = None
        self._suite: CipherSuite | None = None
        self._group: NamedGroup | None = None
        self._scheme: SignatureScheme | None = None
        self._alpn: str | None = None
        self._srtp: srtp.SrtpNegotiated | None = None  # DTLS-SRTP (RFC 5764), once agreed
        self._peer_chain: tuple[x509.Certificate, ...] = ()
        self._random = self.config.random_bytes(32)
        self._client_random = self._random if self.is_client else b""
        self._key_shares: dict[int, groups.KeyExchange] = {}
        self._hrr_done = False
        self._hrr_cookie: bytes | None = None
        self._hrr_group: int | None = None
        self._client_hello: msgs.ClientHello | None = None
        self._cert_request: msgs.CertificateRequest | None = None
        self._c_hs = self._s_hs = self._c_app = self._s_app = b""
        self._send_seq = 0
        self._peer_finished = False
        # reliability
        self._flight: Flight | None = None
        self._rto = self.config.retransmit_initial
        self._retransmit_at: float | None = None
        self._timeouts = 0
        self._closed_cleartext_mtu: int | None = None
        self._ack_list: list[RecordNumber] = []
        self._ack_at: float | None = None
        self._final_acks: list[RecordNumber] = []  # re-sent when the peer repeats its final flight
        self._final_ack_repeated_at: float | None = None
        self._retransmitted_this_input = False
        self._retransmitted_at: float | None = None
        # key update
        self._key_update_pending = False
        self._read_secret = b""
        self._write_secret = b""
        self._hello_bodies: dict[int, bytes] = {}  # ClientHellos processed, by message_seq
        # Plaintext records holding fragments of a hello still in reassembly, by message_seq:
        # ACKed only once their message is complete (a forged fragment that conflicts with
        # the genuine hello is dropped, and its record must then not be ACKed, §7).
        self._hello_records: dict[int, list[RecordNumber]] = {}
        self._epoch2_records = 0  # records that authenticated under the handshake keys
        self._resumed = False
        self._early_offered = False
        self._early_accepted = False
        self._early_result: bool | None = None
        self._early_budget = 0
        # Exporter master secrets (RFC 8446 §7.5): kept after the handshake for the exporter.
        self._exporter: ExporterSecret | None = None
        self._early_exporter: ExporterSecret | None = None
        self._psk_schedule: KeySchedule | None = None
        self._resumption_secret = b""
        self._server_name: str | None = None  # server: the ClientHello's SNI, lower case
        self._current_seq = 0
        self._decoded_hello: tuple[bytes, msgs.ClientHello] | None = None

    def expect_client_hello(self, body: bytes, client_hello: msgs.ClientHello) -> None:
        """A server's endpoint already decoded the ClientHello about to come in: if the
        next handshake message is a ClientHello with exactly this body, it is used as is."""
        self._decoded_hello = (body, client_hello)

    def _reassembly(self) -> Reassembler:
        """The reassembler, made again if it was let go while idle after the handshake."""
        reassembler = self._reassembler
        if reassembler is None:
            assert self._idle_reassembly is not None
            seq, counters = self._idle_reassembly
            reassembler = self._reassembler = self._new_reassembler(seq)
            reassembler.counters = counters
            self._idle_reassembly = None
        return reassembler

    def _next_receive_seq(self) -> int:
        if self._reassembler is not None:
            return self._reassembler.next_expected_seq
        assert self._idle_reassembly is not None
        return self._idle_reassembly[0]

    def _idle_reassembler(self) -> None:
        """Let the reassembler go when the handshake is over and it holds nothing."""
        reassembler = self._reassembler
        if (
            reassembler is not None
            and self.state is State.CONNECTED
            and reassembler.bytes_buffered == 0
            and reassembler.pending == 0
        ):
            self._idle_reassembly = (reassembler.next_expected_seq, reassembler.counters)
            reassembler.close()
            self._reassembler = None

    def _new_reassembler(self, first_message_seq: int) -> Reassembler:
        return Reassembler(
            self.pools,
            self.owner,
            max_message_size=self.config.max_handshake_message,
            max_messages_ahead=self.config.max_messages_ahead,
            max_bytes_buffered=self.config.max_bytes_buffered,
            first_message_seq=first_message_seq,
        )

    def _restart_handshake(self, now: float, reason: str, first_message_seq: int = 0) -> None:
        """Start the handshake over, keeping the deadline.

        Hellos are not authenticated: a ClientHello or ServerHello damaged on the way
        still parses, and the two sides then hold different transcripts. The signs are
        a server seeing a retransmitted ClientHello whose bytes differ from the one it
        processed, and a client whose epoch-2 records fail to authenticate while the
        server repeats its ServerHello. Starting over is safe: the new handshake is
        authenticated by its own CertificateVerify and Finished.
        """
        self.stats["handshake_restarts"] += 1
        self._restarts += 1
        if self.is_client and self._records.write_epoch == 2:
            # An empty ACK under the keys we derived (RFC 9147 §7.1 allows empty ACKs):
            # the server fails to authenticate it, which tells it the hellos were damaged.
            self._send_ack_for([])
        if self._flight is not None:
            self._flight.release()
        if self._reassembler is not None:
            self._reassembler.close()
        # The association goes on: its epoch-0 numbers do not start over (the peer's
        # epoch-0 replay window saw the earlier ones, RFC 9147 §4.5.1).
        plaintext_seq = self._records.next_sequence_number(0)
        self._records.close()
        self._init_handshake(first_message_seq)
        self._records.continue_plaintext_after(plaintext_seq - 1)
        self._arm_unanswered(now)
        self.state = State.START if self.is_client else State.WAIT_CLIENT_HELLO
        if self.is_client:
            self._send_client_hello(now)

    # -- public API ---------------------------------------------------------------------

    def connect(self, addr: Address, now: float) -> None:
        """Start the handshake (client)."""
        self._activity()
        if not self.is_client:
            raise LocalProtocolError("connect() is for clients")
        if self.state is not State.START:
            raise LocalProtocolError("connect() called twice")
        self.peer_address = addr
        self._now = now
        self.handshake_started = now
        self._handshake_deadline = now + self.config.handshake_timeout
        self._arm_unanswered(now)
        self._guard(now, lambda: self._send_client_hello(now))

    def receive_datagram(self, data: Any, addr: Address, now: float) -> None:
        """Take one datagram from the network; never raises for bad network input."""
        if self.state is State.CLOSED:
            self._activity()
            return
        self._now = now
        self._activity()
        if self.peer_address is None:
            self.peer_address = addr
        if self.handshake_started is None:
            self.handshake_started = now
            self._handshake_deadline = now + self.config.handshake_timeout
            self._arm_unanswered(now)
        self.stats["datagrams_in"] += 1
        if self._amplification_limit is not None:
            self._unvalidated_in += len(data)
        self._retransmitted_this_input = False
        drops = self._records.drops
        retired, failed = drops["retired_epoch"], drops["auth_failed"]
        records = self._records.receive_datagram_untrusted(data, now)
        if drops["retired_epoch"] != retired and self._final_acks:
            self._repeat_final_acks(now)
        forged = drops["auth_failed"] != failed
        if len(records) == 1 and self._app_data_fast(records[0], addr):
            if forged:
                self._check_integrity(now)
            return
        self._track_path(records, addr)
        while records:
            epochs = len(self._records.read_epochs())
            self._handle_records(records, now)
            # Records that came ahead of their keys (a ServerHello and epoch-2 records in
            # one datagram) are read once handling the earlier ones installed the keys.
            if self.closed or not self._records.pending_count:
                break
            if len(self._records.read_epochs()) == epochs:
                break
            records = self._records.receive_pending(now)
        if forged and not self.closed:
            self._check_integrity(now)

    def _check_integrity(self, now: float) -> None:
        """RFC 9147 §4.5.3: "Implementations SHOULD initiate a key update with
        update_requested before reaching this limit. Once a key update has been initiated,
        the previous keys can be dropped when the limit is reached rather than closing the
        connection." So forged records (CCM-8's limit is 2^7) rotate keys, and close the
        connection only when the peer's newest key itself reaches its limit."""
        records = self._records
        live = records.read_epochs()
        newest = live[-1] if live else 0
        for epoch in records.exhausted_read_epochs():
            if epoch >= newest:
                alert = alert_for(AlertDescription.bad_record_mac, "AEAD integrity limit")
                self._fail(alert, now)
                return
            records.retire_read_epoch(epoch)
            self.count("keys_dropped_at_integrity_limit")
        if (
            self.state is State.CONNECTED
            and newest >= 3
            and not self._key_update_pending
            and records.auth_failures(newest) * 2 >= records.integrity_limit_of(newest)
        ):
            self.key_update(request_peer=True)

    def _track_path(self, records: list[Any], addr: Address) -> None:
        """Follow the peer to a new address (NAT rebinding, RFC 9146 §6) only when a record
        from there authenticated and is the newest seen: a replayed or spoofed datagram
        cannot move the association."""
        newest = max(((r.epoch, r.sequence_number) for r in records if r.epoch > 0), default=None)
        if newest is not None:
            self._follow(newest, addr)

    def _follow(self, newest: tuple[int, int], addr: Address) -> None:
        """`newest` (epoch, sequence number) authenticated from `addr`: move there if it is
        the newest record seen (see _track_path)."""
        if newest <= self._newest_protected:
            return
        self._newest_protected = newest
        if addr != self.peer_address and self.cid_negotiated and self.state is State.CONNECTED:
            self.peer_address = addr
            self.stats["address_changes"] += 1

    def _app_data_fast(self, record: Any, addr: Address) -> bool:
        """The established data path: one authenticated application record, in a datagram
        of its own, after the handshake. Does what the general path would (path tracking,
        statistics, the event) without its per-record machinery; False leaves the record
        to the general path."""
        if (
            record.content_type != ContentType.application_data
            or record.epoch < 3
            or self.state is not State.CONNECTED
            or not self._peer_finished
            or self._enforce_record_limit
            or self._records.pending_count
        ):
            return False
        self._follow((record.epoch, record.sequence_number), addr)
        stats = self.stats
        stats["records_in"] += 1
        try:
            data = record.tobytes()
        finally:
            record.release()
        if len(data) > MAX_PLAINTEXT:
            self._fail(RecordOverflow(f"{len(data)} bytes of content in one record"), self._now)
            return True
        stats["app_bytes_in"] += len(data)
        self._event(DataReceived(data))
        return True

    def _handle_records(self, records: list[Any], now: float) -> None:
        try:
            for record in records:
                if self.closed:
                    break
                self.stats["records_in"] += 1
                if not self._guard(now, partial(self._handle_record, record, now)):
                    break
        finally:
            for record in records:
                record.release()

    def datagrams_to_send(self, now: float) -> list[tuple[Lease, Address]]:
        """Datagrams to send now. Send ``len(lease)`` bytes of each, then release it."""
        if self._ack_at is not None and now >= self._ack_at:
            self._guard(now, lambda: self._send_ack(now))
        out, self._outbox = self._outbox, []
        if self._amplification_limit is not None and out:
            out = self._within_amplification_limit(out)
        self.stats["datagrams_out"] += len(out)
        return out

    def _within_amplification_limit(
        self, out: list[tuple[Lease, Address]]
    ) -> list[tuple[Lease, Address]]:
        """RFC 9147 §5.1: "A server SHOULD limit the amount of data it sends toward a client
        address to three times the amount of data sent by the client before it verifies
        that the client is able to receive data at that address." All of this output or
        none: a flight cut short would leave the client holding part of it with nothing
        to send, while one held back whole makes it repeat its ClientHello, which pays for
        the next try."""
        if self.address_validated:
            self._amplification_limit = None
            return out
        assert self._amplification_limit is not None
        size = sum(len(lease) for lease, _ in out)
        if self._unvalidated_out + size > self._amplification_limit * self._unvalidated_in:
            for lease, _ in out:
                lease.release()
            self.count("amplification_limited", len(out))
            return []
        self._unvalidated_out += size
        return out

    def get_timer(self) -> float | None:
        """When ``handle_timer`` should be called next, or None."""
        state = self.state
        if state is State.CLOSED:
            return None
        t = self._retransmit_at
        ack = self._ack_at
        if ack is not None and (t is None or ack < t):
            t = ack
        if state is not State.CONNECTED:
            deadline = self._handshake_deadline
            if deadline is not None and (t is None or deadline < t):
                t = deadline
            unanswered = self._unanswered_at
            if unanswered is not None and (t is None or unanswered < t):
                t = unanswered
        idle = self._idle_check_at
        if idle is not None and (t is None or idle < t):
            t = idle
        return t

    def handle_timer(self, now: float) -> None:
        """Retransmit, send a delayed ACK, give up the handshake or let an idle
        connection's ciphers go, as the timer says."""
        if self.state is State.CLOSED:
            self._activity()
            return
        self._now = now
        self._activity()
        if self._idle_check_at is not None and now >= self._idle_check_at:
            self._idle_check(now)
        if (
            self.state is not State.CONNECTED
            and self._handshake_deadline is not None
            and now >= self._handshake_deadline
        ):
            self._terminate(
                None,
                f"handshake timed out after {self.config.handshake_timeout:g} s",
                by_peer=False,
                now=now,
                timed_out=True,
            )
            return
        if (
            self.state is not State.CONNECTED
            and self._unanswered_at is not None
            and now >= self._unanswered_at
        ):
            self.count("handshake_unanswered")
            self._terminate(None, "the peer never answered our flight", by_peer=False, now=now)
            return
        if self._ack_at is not None and now >= self._ack_at:
            self._guard(now, lambda: self._send_ack(now))
        if self._retransmit_at is not None and now >= self._retransmit_at:
            self._timeouts += 1
            self._rto = min(self._rto * 2, self.config.retransmit_max)
            # RFC 9147 §4.4: after repeated loss, assume a smaller path MTU.
            if self._timeouts >= 2 and self.mtu > 576:
                self.mtu = max(576, self.mtu * 3 // 4)
            self._guard(now, lambda: self._retransmit(now))

    def _arm_unanswered(self, now: float) -> None:
        if self._unanswered_timeout is not None:
            self._unanswered_at = now + self._unanswered_timeout

    def _activity(self) -> None:
        if self._idle_check_at is None and self.state is State.CONNECTED:
            self._arm_idle_check(self._now)
        if self.on_activity is not None:
            self.on_activity(self)

    def _arm_idle_check(self, now: float) -> None:
        after = self.config.idle_release_after
        if after is not None:
            self._idle_check_at = now + after
            self._idle_mark = self._records.activity_mark

    def _idle_check(self, now: float) -> None:
        """Let the ciphers' OpenSSL objects go if no record went either way since the last
        look, `idle_release_after` seconds ago (so idle between 1x and 2x that long); else
        look again then. One look per period: an idle connection costs no work per tick,
        and once released none at all until its next record."""
        mark = self._records.activity_mark
        if mark != self._idle_mark:
            self._arm_idle_check(now)
            return
        self._idle_check_at = None
        if self._records.release_ciphers():
            self.stats["idle_releases"] += 1

    @property
    def has_events(self) -> bool:
        """Whether ``next_event`` has something."""
        return bool(self._events)

    def next_event(self) -> Event | None:
        """The next event, or None."""
        events = self._events
        if not events:
            return None
        assert type(events) is deque
        event = events.popleft()
        if not events:
            self._events = _NO_EVENTS
        return event

    def _event(self, event: Event) -> None:
        events = self._events
        if type(events) is deque:
            events.append(event)
        else:
            self._events = deque((event,))

    def send(self, data: bytes | bytearray | memoryview) -> None:
        """Send one application data record."""
        self._activity()
        if self.state is not State.CONNECTED:
            raise LocalProtocolError(f"cannot send application data in state {self.state.value}")
        epoch = self._records.write_epoch
        limit = self._max_payload()
        if limit is not None and len(data) > limit:
            raise ValueError(
                f"{len(data)} bytes exceed the peer's record_size_limit "
                f"(at most {limit} bytes of application data per record)"
            )
        with self._records.datagram_writer(self.mtu) as w:
            space = w.space(epoch)
            if len(data) > space:
                raise ValueError(
                    f"{len(data)} bytes do not fit one record at MTU {self.mtu} (at most {space})"
                )
            w.add(epoch, ContentType.application_data, data)
            addr = self.peer_address
            self._outbox.extend([(d, addr) for d in w.finish()])
        self.stats["app_bytes_out"] += len(data)
        if self._records.key_update_due and not self._key_update_pending:
            self.key_update(request_peer=False)

    @property
    def early_data_possible(self) -> bool:
        """Whether ``send_early_data`` may be called now (0-RTT on a resumed session)."""
        return self._early_offered and self.state is State.WAIT_SERVER_HELLO

    def send_early_data(self, data: bytes | bytearray | memoryview) -> None:
        """Send application data in 0-RTT (epoch 1) before the handshake completes.

        Early data can be replayed by an attacker (RFC 8446 §8): send only what is safe to
        receive twice. ``HandshakeCompleted.early_data_accepted`` says whether the server
        took it; if not, send it again with ``send()``.
        """
        self._activity()
        if not self.early_data_possible:
            raise LocalProtocolError("no 0-RTT now: needs a resumed session allowing early data")
        if len(data) > self._early_budget:
            raise ValueError(f"early data over the ticket's limit ({self._early_budget} B left)")
        with self._records.datagram_writer(self.mtu) as w:
            if len(data) > w.space(1):
                raise ValueError(f"{len(data)} bytes do not fit one record at MTU {self.mtu}")
            w.add(1, ContentType.application_data, data)
            self._queue(w.finish())
        self._early_budget -= len(data)
        self.stats["early_data_bytes_out"] += len(data)

    def get_cleartext_mtu(self) -> int:
        """The largest application data record that fits one datagram now (once closed: as
        it was when the connection ended)."""
        if self.state is State.CLOSED:
            if self._closed_cleartext_mtu is None:
                raise LocalProtocolError("the connection ended before its handshake completed")
            return self._closed_cleartext_mtu
        epoch = self._records.write_epoch
        with self._records.datagram_writer(self.mtu) as w:
            space = w.space(epoch)
        limit = self._max_payload()
        return max(0, space if limit is None else min(space, limit))

    def set_ciphertext_mtu(self, mtu: int) -> None:
        if not MIN_MTU <= mtu <= 65535:
            raise ValueError(f"MTU must be between {MIN_MTU} and 65535")
        self.mtu = mtu

    def key_update(self, request_peer: bool = True) -> None:
        """Update our sending keys (and ask the peer to update theirs), RFC 9147 §8."""
        self._activity()
        if self.state is not State.CONNECTED:
            raise LocalProtocolError("key_update() needs an established connection")
        if self._key_update_pending:
            return
        request = (
            KeyUpdateRequest.update_requested
            if request_peer
            else KeyUpdateRequest.update_not_requested
        )
        self._key_update_pending = True
        # An unacknowledged flight (a NewSessionTicket, the client's final flight) must
        # still be delivered: the KeyUpdate joins it. A new flight dropped it, and the peer,
        # missing that message_seq, never processed the KeyUpdate behind it although it
        # ACKed it, so our next epoch was unreadable (RFC 9147 §7.1, §8).
        if self._flight is None or self._flight.acknowledged:
            self._start_flight()
        self._add_message(msgs.KeyUpdate(request), self._records.write_epoch, transcript=False)
        self._emit_flight(None)
        self.stats["key_updates_sent"] += 1

    def request_connection_ids(self, count: int = 1) -> None:
        """Ask the peer for `count` spare CIDs (RequestConnectionId, RFC 9147 §9)."""
        self._activity()
        if self.state is not State.CONNECTED or self.peer_cid is None:
            raise LocalProtocolError("no connection IDs negotiated with a non-empty peer CID")
        if self._cid_request_outstanding:
            raise LocalProtocolError("a RequestConnectionId is still unanswered")
        if not 1 <= count <= 255:
            raise ValueError("count must be between 1 and 255")
        self._cid_request_outstanding = True
        self._send_post_handshake(msgs.RequestConnectionId(count), self._now)

    def use_spare_connection_id(self) -> bool:
        """Put the next spare CID from the peer on our records (e.g. on a new path)."""
        if not self._spare_peer_cids:
            return False
        self._records.write_cid = self._spare_peer_cids.pop(0)
        return True

    @property
    def spare_peer_cids(self) -> tuple[bytes, ...]:
        return tuple(self._spare_peer_cids)

    def close(self) -> None:
        """Send close_notify (if anything was established) and release everything."""
        self._activity()
        if self.state is State.CLOSED:
            return
        if self._records.write_epoch >= 2 or self.state is State.CONNECTED:
            self._send_alert(AlertLevel.WARNING, AlertDescription.close_notify)
        self._terminate(AlertDescription.close_notify, "closed locally", by_peer=False, now=None)

    def abandon(self, reason: str = "abandoned by the endpoint") -> None:
        """End at once without sending anything (a superseded or shed association)."""
        self._activity()
        if self.state is State.CLOSED:
            return
        self._terminate(None, reason, by_peer=False, now=None)
        for lease, _ in self._outbox:
            lease.release()
        self._outbox = []

    @property
    def closed(self) -> bool:
        return self.state is State.CLOSED

    @property
    def handshake_complete(self) -> bool:
        return self.state is State.CONNECTED

    @property
    def address_validated(self) -> bool:
        """Whether the peer proved it receives what we send to its address: RFC 9147 §5.1,
        "A client address is valid after a cookie exchange or handshake completion", or
        once one of its records authenticated under the handshake keys (derived from our
        flight). Until then its address may be spoofed."""
        return self._cookie_checked or self._epoch2_records > 0 or self.state is State.CONNECTED

    @property
    def cipher_suite(self) -> CipherSuite | None:
        return self._suite

    @property
    def alpn_protocol(self) -> str | None:
        return self._alpn

    @property
    def peer_certificates(self) -> tuple[x509.Certificate, ...]:
        return self._peer_chain

    def export_keying_material(
        self, label: str | bytes, context: bytes | None, length: int
    ) -> bytes:
        """`length` bytes of keying material for `label` and `context` (RFC 8446 §7.5), the
        same on both sides; only once the handshake has completed. `context=None` and
        `context=b""` give the same value in (D)TLS 1.3."""
        if self._exporter is None or self.handshake_completed_at is None:
            raise LocalProtocolError("keying material can be exported once the handshake is done")
        return self._exporter.export(label, context, length)

    @property
    def srtp_profile(self) -> srtp.SrtpProtectionProfile | None:
        """The SRTP protection profile use_srtp agreed on (RFC 5764), or None."""
        return self._srtp.profile if self._srtp is not None else None

    @property
    def srtp_mki(self) -> bytes:
        """The SRTP MKI both sides use (empty: none)."""
        return self._srtp.mki if self._srtp is not None else b""

    def srtp_keying_material(self) -> srtp.SrtpKeyingMaterial:
        """SRTP master keys and salts for both directions (RFC 5764 §4.2), once the
        handshake is done; LocalProtocolError when no SRTP profile was agreed."""
        if self._srtp is None:
            raise LocalProtocolError("no SRTP protection profile was negotiated")
        return srtp.keying_material(self._srtp.profile, self.export_keying_material)

    def export_early_keying_material(
        self, label: str | bytes, context: bytes | None, length: int
    ) -> bytes:
        """Keying material from the early_exporter_master_secret, for use with 0-RTT data
        (RFC 8446 §7.5): a client once it offered 0-RTT, a server once it accepted it."""
        if self._early_exporter is None:
            raise LocalProtocolError(
                "no early exporter: 0-RTT was not offered (client) or accepted (server)"
            )
        return self._early_exporter.export(label, context, length)

    def count(self, name: str, n: int = 1) -> None:
        """Add `n` to one of the RARE_STAT_NAMES counters."""
        rare = self._rare_stats
        if rare is None:
            rare = self._rare_stats = {}
        rare[name] = rare.get(name, 0) + n

    def rare_stat(self, name: str) -> int:
        """One of the RARE_STAT_NAMES counters."""
        return 0 if self._rare_stats is None else self._rare_stats.get(name, 0)

    def statistics(self) -> ConnectionStatistics:
        """Counters of this connection, its record layer's drops and its pool use."""
        rare = self._rare_stats or {}
        return ConnectionStatistics(
            **self.stats,
            **{name: rare.get(name, 0) for name in RARE_STAT_NAMES},
            record_drops=dict(self._records.drops),
            reassembly=dict(
                self._reassembler.counters
                if self._reassembler is not None
                else self._idle_reassembly[1]
                if self._idle_reassembly is not None
                else {}
            ),
            memory_in_use=self.owner.in_use,
            memory_high_water=self.owner.high_water,
            leases_live=self.owner.live,
        )

    # -- errors -------------------------------------------------------------------------

    def _guard(self, now: float | None, action: Callable[[], None]) -> bool:
        """Run `action`; turn an Alert (or a bug) into a fatal alert. False if it failed."""
        try:
            action()
            return True
        except Alert as alert:
            self._fail(alert, now)
        except MemoryBudgetExceeded as exc:
            self._fail(InternalError(f"memory budget: {exc}"), now)
        except Exception as exc:
            if self.config.debug:
                raise
            self._fail(InternalError(f"{type(exc).__name__}: {exc}"), now)
        return False

    def _fail(self, alert: Alert, now: float | None) -> None:
        if self.state is State.CLOSED:
            return
        try:
            self._send_alert(AlertLevel.FATAL, alert.description)
        except Exception:  # the alert is best effort; the connection ends regardless
            if self.config.debug:
                raise
        self._terminate(
            alert.description,
            alert.reason,
            by_peer=False,
            now=now,
            certificate_error=alert.certificate_error,
        )

    def _terminate(
        self,
        alert: AlertDescription | None,
        reason: str,
        *,
        by_peer: bool,
        now: float | None,
        timed_out: bool = False,
        certificate_error: str | None = None,
    ) -> None:
        if self.state is State.CONNECTED:
            # What get_cleartext_mtu() answers once the record layer is gone.
            self._closed_cleartext_mtu = self.get_cleartext_mtu()
        self.state = State.CLOSED
        self.terminated = ConnectionTerminated(
            alert, reason, by_peer, timed_out=timed_out, certificate_error=certificate_error
        )
        self._event(self.terminated)
        self._retransmit_at = self._ack_at = None
        if self._flight is not None:
            self._flight.release()
            self._flight = None
        if self._reassembler is not None:
            self._reassembler.close()
        self._records.close()

    def _send_alert(self, level: AlertLevel, description: AlertDescription) -> None:
        """Best effort: with no memory left for it the alert is counted, not sent."""
        epoch = self._records.write_epoch
        try:
            with self._records.datagram_writer(self.mtu) as w:
                w.add(epoch, ContentType.alert, bytes([level, description]))
                self._queue(w.finish())
        except MemoryBudgetExceeded:
            self.stats["alerts_unsent"] += 1

    # -- output helpers -----------------------------------------------------------------

    def _queue(self, datagrams: list[Lease]) -> None:
        addr = self.peer_address
        self._outbox.extend((d, addr) for d in datagrams)

    def _max_payload(self) -> int | None:
        """Most content bytes per protected record under the peer's record_size_limit, which
        counts the inner content type and padding (RFC 8449 §4)."""
        limit = self._peer_record_limit
        if limit is None:
            return None
        pad = self.config.record_padding
        return max(0, (limit // pad * pad if pad > 1 else limit) - 1)

    def _new_cid(self, length: int) -> bytes:
        if self._cid_issuer is not None:
            return self._cid_issuer(self, length)
        return self.config.random_bytes(length)

    def _use_cids(self, peer_cid: bytes) -> None:
        """connection_id negotiated (RFC 9146 §3): from the encrypted epochs on, records
        carry the peer's CID to it and ours to us (RFC 9147 §9.1)."""
        self.cid_negotiated = True
        self._records.write_cid = peer_cid or None
        self._records.read_cid_length = len(self.local_cids[0]) if self.local_cids else 0
        self._records.tentative_cid_length = 0

    @property
    def peer_cid(self) -> bytes | None:
        """The CID we put on records to the peer (None: none)."""
        return self._records.write_cid

    def _send_post_handshake(self, msg: Any, now: float) -> None:
        """One post-handshake message; it joins an unacknowledged flight, as KeyUpdate does."""
        if self._flight is None or self._flight.acknowledged:
            self._start_flight()
        assert self._flight is not None
        self._flight.needs_ack = True
        self._add_message(msg, self._records.write_epoch, transcript=False)
        self._emit_flight(now)

    def _on_request_connection_id(self, msg: msgs.RequestConnectionId, now: float) -> None:
        # §9: no RequestConnectionId from a peer that sends us empty CIDs.
        if not self.cid_negotiated or not self.local_cids or not self.local_cids[0]:
            raise UnexpectedMessage("RequestConnectionId without a negotiated CID")
        # §9: "An endpoint MAY handle requests which it considers excessive by responding
        # with a NewConnectionId message containing fewer than num_cids CIDs, including no
        # CIDs at all ... MAY handle an excessive number of RequestConnectionId messages by
        # terminating the connection using a too_many_cids_requested alert." Every CID we
        # issue stays valid (and routed) for the connection's life: hold at most
        # MAX_LOCAL_CIDS.
        count = min(msg.num_cids, MAX_CIDS, MAX_LOCAL_CIDS - len(self.local_cids))
        if count < min(msg.num_cids, MAX_CIDS):
            self.count("cid_requests_refused")
            if self.rare_stat("cid_requests_refused") > MAX_REFUSED_CID_REQUESTS:
                raise TooManyCidsRequested("the peer keeps asking for connection IDs")
        cids = [self._new_cid(len(self.local_cids[0])) for _ in range(count)]
        self.local_cids += cids
        self._send_post_handshake(msgs.NewConnectionId(tuple(cids), CID_SPARE), now)

    def _on_new_connection_id(self, msg: msgs.NewConnectionId) -> None:
        # §9: no NewConnectionId to a peer that negotiated receiving an empty CID.
        if not self.cid_negotiated or self._records.write_cid is None:
            raise UnexpectedMessage("NewConnectionId without a negotiated CID")
        if msg.usage not in (CID_IMMEDIATE, CID_SPARE) or not all(msg.cids):
            raise IllegalParameter("bad NewConnectionId usage or empty CID")
        if msg.usage == CID_IMMEDIATE and not msg.cids:
            raise IllegalParameter("cid_immediate without a CID")
        self._cid_request_outstanding = False
        cids = list(msg.cids)
        if msg.usage == CID_IMMEDIATE:
            self._records.write_cid = cids.pop(0)
        known = set(self._spare_peer_cids)
        self._spare_peer_cids += [c for c in cids if c not in known]
        del self._spare_peer_cids[MAX_CIDS:]  # §9: extra spares MAY be discarded

    def _start_flight(self) -> None:
        """Begin a new flight; the previous one is implicitly acknowledged."""
        if self._flight is not None:
            self._flight.release()
        self._flight = Flight(self.pools, self.owner, coalesce=self.coalesce_handshake_records)
        self._timeouts = 0
        if self.state is not State.CONNECTED:
            # This flight answers the peer's, which it acknowledges implicitly: no ACK
            # for that flight, so none still pending from its first fragments (§7.1).
            self._ack_list.clear()
            self._ack_at = None

    def _add_message(self, msg: Any, epoch: int, *, transcript: bool = True) -> bytes:
        msg_type, body = msgs.push_message(msg)
        return self._add_encoded(msg_type, body, epoch, transcript=transcript)

    def _add_encoded(
        self, msg_type: int, body: bytes, epoch: int, *, transcript: bool = True
    ) -> bytes:
        if transcript:
            self._transcript.add(msg_type, body)
        assert self._flight is not None
        self._flight.add(epoch, msg_type, self._send_seq, body)
        self._send_seq += 1
        return body

    def _emit_flight(
        self, now: float | None, *, with_ack: bool = False, writer: DatagramWriter | None = None
    ) -> None:
        """Send the current flight's unacknowledged fragments and arm the timer; into
        `writer`'s datagrams (after what it holds) when given."""
        flight = self._flight
        if flight is None:
            return
        if writer is not None:
            flight.emit(writer, self._max_payload())
        else:
            with self._records.datagram_writer(self.mtu) as w:
                flight.emit(w, self._max_payload())
                self._queue(w.finish())
        self._retransmit_at = (self._now if now is None else now) + self._rto

    def _retransmit(self, now: float) -> None:
        flight = self._flight
        if flight is None or flight.acknowledged:
            self._retransmit_at = None
            return
        self.stats["retransmissions"] += 1
        self._retransmitted_this_input = True
        self._retransmitted_at = now
        with self._records.datagram_writer(self.mtu) as w:
            flight.emit(w, self._max_payload())
            self._queue(w.finish())
        self._retransmit_at = now + self._rto

    def _send_ack(self, now: float) -> None:
        self._ack_at = None
        numbers = sorted(set(self._ack_list), key=lambda n: (n.epoch, n.sequence_number))
        if self.state is State.CONNECTED:
            # Post-handshake messages are ACKed once each (RFC 9147 §7.1); a repeat gets its
            # own ACK again, so nothing needs remembering and the list must not grow forever.
            self._ack_list.clear()
        self._send_ack_for(numbers)

    def _send_ack_for(
        self, numbers: list[RecordNumber], writer: DatagramWriter | None = None
    ) -> None:
        """An ACK record of `numbers`, in a datagram of its own or first in `writer`'s.

        Best effort in a datagram of its own: ACKs are advisory (RFC 9147 §7), so with no
        memory left for one (output piling up uncollected) it is counted, not raised."""
        limit = self._max_payload()
        if limit is not None and self._records.write_epoch > 0 and 2 + 16 * len(numbers) > limit:
            # The newest fit the peer's record_size_limit; ACKs are advisory (RFC 9147 §7).
            numbers = numbers[len(numbers) - max(0, (limit - 2) // 16) :]
        buf = Buffer(capacity=2 + 16 * len(numbers))
        push_ack(buf, numbers)
        epoch = self._records.write_epoch
        if writer is not None:
            writer.add(epoch, ContentType.ack, buf.data)
        else:
            try:
                with self._records.datagram_writer(self.mtu) as w:
                    w.add(epoch, ContentType.ack, buf.data)
                    self._queue(w.finish())
            except MemoryBudgetExceeded:
                self.count("acks_unsent")
                return
        self.stats["acks_sent"] += 1

    # -- input --------------------------------------------------------------------------

    def _handle_record(self, record: Any, now: float) -> None:
        if record.epoch == 0 and self.state not in _HELLO_STATES:
            self._handle_plaintext_after_keys(record, now)
            return
        if len(record.payload) > MAX_PLAINTEXT:
            # RFC 8446 §5.2: TLSInnerPlaintext (content and type) "MUST NOT exceed 2^14 + 1
            # octets"; record_overflow. (The header parser drops longer DTLSPlaintext.)
            raise RecordOverflow(f"{len(record.payload)} bytes of content in one record")
        # Early data (epoch 1) was sent before the client could know our limit.
        if self._enforce_record_limit and record.epoch >= 2:
            assert self.config.record_size_limit is not None
            size = len(record.payload) + 1  # with the inner content type
            if size > self.config.record_size_limit:
                raise RecordOverflow(
                    f"{size}-byte record over our record_size_limit {self.config.record_size_limit}"
                )
        if record.epoch == 2:
            # It authenticated under the handshake keys: the peer has our flight, so it is
            # there (anyone can send plaintext from a spoofed address).
            self._epoch2_records += 1
            self._unanswered_at = None
        ct = record.content_type
        if ct == ContentType.handshake:
            self._handle_handshake_record(record, now)
        elif ct == ContentType.ack:
            self._handle_ack(record, now)
        elif ct == ContentType.alert:
            self._handle_alert(record, now)
        elif ct == ContentType.application_data:
            if record.epoch == 1 and self._early_accepted and not self._peer_finished:
                self._on_early_data(record)
            elif record.epoch >= 3 and self._peer_finished and self.state is State.CONNECTED:
                data = record.tobytes()
                self.stats["app_bytes_in"] += len(data)
                self._event(DataReceived(data))
            else:
                # RFC 9147 §5.8.1: discard application data before the peer's Finished.
                self.stats["dropped_app_data_early"] += 1
        else:
            self.stats["dropped_unexpected_content"] += 1

    def _handle_plaintext_after_keys(self, record: Any, now: float) -> None:
        """An unprotected record once we read with keys: anyone on the path or off it may
        have made it, so it is never authoritative and never fatal (RFC 9147 §4.5.2, §5.11).
        Only a hello the peer repeats is of use: our flight to it was lost (§5.8.1)."""
        if record.content_type == ContentType.handshake:
            self._handle_handshake_record(record, now)
            return
        # Alerts and ACKs are dropped. The peer ACKs what we sent since its keys exist in an
        # encrypted epoch (§7): a plaintext ACK could only cancel retransmissions that the
        # handshake still needs. (One counter for all: a 31st name in STAT_NAMES would end
        # the key sharing of the stats dicts, CPython shares at most 30 keys.)
        self.stats["dropped_malformed_plaintext"] += 1

    def _on_early_data(self, record: Any) -> None:
        data = record.tobytes()
        if len(data) > self._early_budget:
            self.stats["dropped_early_data"] += 1  # over max_early_data_size
            return
        self._early_budget -= len(data)
        self.stats["early_data_bytes_in"] += len(data)
        self._event(DataReceived(data, early=True))

    def _handle_alert(self, record: Any, now: float) -> None:
        payload = record.payload
        if len(payload) != 2:
            if record.epoch == 0:
                self.stats["dropped_malformed_plaintext"] += 1
                return
            raise DecodeErrorAlert("alert record of the wrong length")
        level, desc = payload[0], payload[1]
        try:
            description = AlertDescription(desc)
        except ValueError:
            description = AlertDescription.internal_error
        if description is AlertDescription.close_notify:
            self._terminate(description, "peer sent close_notify", by_peer=True, now=now)
        elif level == AlertLevel.FATAL or description is not AlertDescription.user_canceled:
            self._terminate(description, f"peer sent {description.name}", by_peer=True, now=now)

    def _handle_ack(self, record: Any, now: float) -> None:
        if record.epoch == 0:
            # Anyone may forge a plaintext ACK, and acting on one could stop our hellos'
            # retransmission for good. None is needed: a hello flight is acknowledged by
            # the peer's next flight (RFC 9147 §7.1), and our own epoch-0 ACKs only spare
            # the peer resending fragments we already have.
            self.stats["dropped_malformed_plaintext"] += 1
            return
        try:
            buf = Buffer(record.payload)
            numbers = pull_ack(buf)
            buf.close()
        except DecodeError:
            raise DecodeErrorAlert("malformed ACK") from None
        self.stats["acks_received"] += 1
        flight = self._flight
        if flight is None:
            return
        if record.epoch < 3:
            # RFC 9147 §7: "During the handshake, ACK records MUST be sent with an epoch which
            # is equal to or higher than the record which is being acknowledged." (Later the
            # two sides' epochs move apart with KeyUpdate, so the rule stops there.)
            numbers = [n for n in numbers if n.epoch <= record.epoch]
        if flight.on_ack(numbers):
            self._retransmit_at = None
            self._on_flight_acknowledged(now)
        elif any(flight.carried(n) for n in numbers) and not self._retransmitted_this_input:
            # RFC 9147 §7.2: a partial ACK: send what is missing at once.
            self._retransmit(now)

    def _on_flight_acknowledged(self, now: float) -> None:
        flight = self._flight
        assert flight is not None
        key_update = any(m.msg_type == HandshakeType.key_update for m in flight.messages)
        flight.release()
        self._flight = None
        self._rto = self.config.retransmit_initial
        if self.state is State.CONNECTED and 2 in self._records.write_epochs():
            # The client's final flight (epoch 2) is acknowledged: nothing will be sent in
            # epoch 2 again, so its keys (an AEAD and a mask cipher) can go. The server
            # has our Finished, so it will not repeat its epoch-2 flight either.
            self._records.retire_write_epoch(2)
            self._records.retire_read_epoch(2)
        if key_update:
            # RFC 9147 §8: switch sending keys only once the KeyUpdate is acknowledged.
            self._key_update_pending = False
            assert self._schedule is not None
            self._write_secret = self._schedule.next_application_traffic_secret(self._write_secret)
            epoch = self._records.write_epoch + 1
            assert self._suite is not None
            self._records.install_write_epoch(epoch, self._suite, self._write_secret)
            self._event(KeyUpdated(sending=True, epoch=epoch))

    def _handle_handshake_record(self, record: Any, now: float) -> None:
        plaintext = record.epoch == 0
        if plaintext and not self.is_client:
            # A server numbers its epoch-0 records after the client's ClientHello record.
            # A stateless HelloRetryRequest was numbered like the ClientHello1 record it
            # answered (RFC 6347 §4.2.1's convention; handshake/gate.py), and the client
            # numbers ClientHello2 after ClientHello1 (sequence numbers never repeat in an
            # epoch, RFC 9147 §4.2.1), so our ServerHello lands right of every HRR in the
            # client's epoch-0 replay window (§4.5.1), which OpenSSL keeps across the HRR.
            # RFC 6347 numbered the ServerHello like ClientHello2; one past it is as safe,
            # and never a number a stateless reply (a client record's number) could carry.
            self._records.continue_plaintext_after(record.sequence_number)
        ackable = False
        repeat = False
        repeated_types: set[int] = set()
        try:
            fragments = pull_handshake_fragments_untrusted(record.payload)
            for header, fragment in fragments:
                if not self._fragment_in_right_epoch(header.msg_type, record.epoch):
                    self.stats["dropped_handshake_fragments"] += 1
                elif header.message_seq < self._next_receive_seq():
                    if self._changed_hello(header, fragment):
                        self._other_client_hello(header, fragment, now, record.record_number)
                        continue
                    repeat = True
                    repeated_types.add(header.msg_type)
                    # Repeated post-handshake messages are ACKed again; a repeated
                    # handshake flight is answered by our own flight, or by our final ACK
                    # (the flights it implicitly acknowledges SHOULD NOT be ACKed, §7.1).
                    ackable = ackable or (self.state is State.CONNECTED and record.epoch >= 3)
                elif plaintext and self.state not in _HELLO_STATES:
                    # RFC 9147 §5.11: a forged epoch-0 message must not destroy the
                    # association; past the hellos only retransmissions are plaintext.
                    if header.msg_type == HandshakeType.client_hello and self._changed_hello(
                        header, fragment
                    ):
                        self._other_client_hello(header, fragment, now, record.record_number)
                    else:
                        self.stats["dropped_handshake_fragments"] += 1
                elif plaintext:
                    self._buffer_hello_fragment(header, fragment, record.record_number)
                elif self._buffer_fragment(header, fragment):
                    ackable = True
                else:
                    self.stats["dropped_handshake_fragments"] += 1
        except Alert:
            # Unauthenticated plaintext cannot end a handshake or a connection (off-path
            # injection; RFC 9147 §4.5.2: invalid records SHOULD be silently discarded).
            if plaintext:
                self.stats["dropped_malformed_plaintext"] += 1
                return
            raise
        if ackable:
            self._ack_list.append(record.record_number)
        if self._hello_records:
            # Records of hellos now complete were processed: they may be ACKed (§7).
            complete = self._next_receive_seq()
            for seq in [seq for seq in self._hello_records if seq < complete]:
                self._ack_list += self._hello_records.pop(seq)
        damaged = self.stats["dropped_damaged_hello"]
        progressed = self._process_messages(now)
        if plaintext and progressed and self.stats["dropped_damaged_hello"] == damaged:
            # A hello from this record was used: copies of the record are replays now.
            self._records.plaintext_taken(record.sequence_number)
        if (
            HandshakeType.server_hello in repeated_types
            and self.state is State.WAIT_ENCRYPTED_EXTENSIONS
            and self._records.auth_failures(2) > 0
            and self._epoch2_records == 0
            and self._restarts < MAX_RESTARTS
        ):
            # The server repeats its flight and none of its epoch-2 records authenticate:
            # our transcript differs from the server's (one damaged record would not do).
            self._restart_handshake(now, "epoch-2 records fail to authenticate")
        elif repeat:
            self._on_peer_repeat(now, in_handshake=record.epoch < 3)
        elif ackable and not progressed and self.state is not State.CLOSED:
            # Part of a flight arrived and the rest did not (yet): ACK after rto/4 (§7.1).
            if self.state is State.CONNECTED:
                self._ack_at = now
            elif self._ack_at is None:
                self._ack_at = now + self._rto / 4

    def _changed_hello(self, header: Any, fragment: memoryview) -> bool:
        """A server's view, once it has keys and until the handshake completes: is this a
        ClientHello other than the one(s) processed (see _other_client_hello)?"""
        if (
            self.is_client
            or header.msg_type != HandshakeType.client_hello
            or self.state in _HELLO_STATES
            or self.state is State.CONNECTED
            or self._restarts >= MAX_RESTARTS
        ):
            return False
        seen = self._hello_bodies.get(header.message_seq)
        if seen is None:  # a new message_seq (a ClientHello2 after none of ours), not a repeat
            return bool(header.message_seq >= self._next_receive_seq())
        if header.length == len(seen):
            start = header.fragment_offset
            if seen[start : start + header.fragment_length] == fragment:
                return False
        return True

    def _other_client_hello(
        self, header: Any, fragment: memoryview, now: float, record_number: RecordNumber
    ) -> None:
        """A ClientHello other than ours, at a server with keys that has not completed: a
        client that started over after a hello was damaged on the way, a client that
        rebooted, or a forgery by anyone who knows the client's address.

        RFC 9147 §5.11: the server "MUST NOT destroy the existing association until the
        client has demonstrated reachability either by completing a cookie exchange or by
        completing a complete handshake". So a ClientHello1 gets a stateless
        HelloRetryRequest with a cookie, state untouched, and only a ClientHello2 whose
        cookie checks for this address starts the handshake over, from that ClientHello2
        (as a server made for it by a stateless endpoint would). Anything else is dropped.
        """
        cfg = self.config
        assert isinstance(cfg, ServerConfig)
        if header.fragment_offset != 0 or header.fragment_length != header.length:
            self.stats["dropped_handshake_fragments"] += 1  # whole, unfragmented hellos only
            return
        body = bytes(fragment)
        try:
            ch = msgs.pull_message(HandshakeType.client_hello, body)
            assert isinstance(ch, msgs.ClientHello)
            cookie_data = ch.extension(ExtensionType.cookie)
            if cookie_data is not None:
                cookie = ext.decode(cookie_data, ext.pull_cookie)
                if header.message_seq == 1 and cfg.cookie_jar.check(cookie, now, self.peer_address):
                    self._restart_handshake(now, "a ClientHello with a valid cookie", 1)
                    self._buffer_hello_fragment(header, fragment, record_number)
                else:
                    self.stats["dropped_handshake_fragments"] += 1
                return
            suite = next((s for s in cfg.suites if s in ch.cipher_suites), None)
            shares_data = ch.extension(ExtensionType.key_share)
            groups_data = ch.extension(ExtensionType.supported_groups)
            if suite is None or header.message_seq != 0 or groups_data is None:
                self.stats["dropped_handshake_fragments"] += 1
                return
            shared = set()
            if shares_data is not None:
                shared = {e.group for e in ext.decode(shares_data, ext.pull_key_share_client)}
            offered = ext.decode(groups_data, ext.pull_supported_groups)
        except DecodeError:
            self.stats["dropped_malformed_plaintext"] += 1
            return
        group = None
        if not any(g in shared for g in cfg.group_order):
            group = next((g for g in cfg.group_order if g in offered), None)
            if group is None:
                self.stats["dropped_handshake_fragments"] += 1
                return
        # What _resume_from_cookie rebuilds the HelloRetryRequest and transcript from.
        transcript = Transcript()
        transcript.select(SUITES[suite].hash_name)
        transcript.add(HandshakeType.client_hello, body)
        extra = struct.pack("!HH", suite, group or 0)
        cookie = cfg.cookie_jar.make(now, self.peer_address, transcript.digest(), extra)
        msg_type, hrr = msgs.push_message(hello_retry_request(suite, group, cookie))
        with self._records.datagram_writer(self.mtu) as w:
            w.add(0, ContentType.handshake, handshake_fragment(msg_type, len(hrr), 0, 0, hrr))
            self._queue(w.finish())
        self.stats["hello_retry_requests_sent"] += 1

    @staticmethod
    def _fragment_in_right_epoch(msg_type: int, epoch: int) -> bool:
        """Hellos travel in epoch 0, the rest of the handshake in 2, later messages in 3+."""
        expected = MESSAGE_EPOCH.get(msg_type, 3)
        return epoch >= 3 if expected >= 3 else epoch == expected

    def _buffer_fragment(
        self, header: Any, fragment: memoryview, *, authenticated: bool = True
    ) -> bool:
        """Give a fragment to the reassembler; False if it was not processed or buffered
        (such records must not be ACKed, RFC 9147 §7)."""
        reassembler = self._reassembly()
        counters = reassembler.counters
        before = counters["too_far_ahead"] + counters["over_budget"] + counters["too_scattered"]
        reassembler.add_fragment_untrusted(
            header.msg_type,
            header.length,
            header.message_seq,
            header.fragment_offset,
            header.fragment_length,
            fragment,
            authenticated=authenticated,
        )
        after = counters["too_far_ahead"] + counters["over_budget"] + counters["too_scattered"]
        return after == before  # the counters of _NOT_BUFFERED, summed without a generator

    def _buffer_hello_fragment(
        self, header: Any, fragment: memoryview, record_number: RecordNumber
    ) -> None:
        """A fragment from a plaintext record: anyone who knows the addresses may have
        forged it, so a conflict with what is buffered drops the partial message rather
        than the handshake, and the record is ACKed only once its message is complete."""
        seq = header.message_seq
        conflicts = self._reassembly().counters["conflicts"]
        buffered = self._buffer_fragment(header, fragment, authenticated=False)
        if self._reassembly().counters["conflicts"] != conflicts:
            self.count("dropped_conflicting_fragments")
            self._hello_records.pop(seq, None)  # what they carried was dropped
        if not buffered:
            self.stats["dropped_handshake_fragments"] += 1
            return
        records = self._hello_records.setdefault(seq, [])
        if record_number not in records:
            records.append(record_number)

    def _on_peer_repeat(self, now: float, *, in_handshake: bool = False) -> None:
        """The peer retransmitted a flight we already processed (RFC 9147 §5.8.1 case 3)."""
        # A client that is CONNECTED still owes its final flight until it is ACKed: a
        # repeated server flight means that flight was lost, so resend it (case 3).
        # Once per repeated handshake flight, not once per datagram of it: the peer's
        # flight comes as a burst, and answering each of its datagrams multiplied ours.
        recently = (
            in_handshake
            and self._retransmitted_at is not None
            and now - self._retransmitted_at < self._rto / 4
        )
        if (
            self._flight is not None
            and not self._flight.acknowledged
            and not self._retransmitted_this_input
            and not recently
        ):
            self._retransmit(now)
        if self.state is State.CONNECTED:
            # Repeated records are ACKed again, a repeated KeyUpdate or NewSessionTicket
            # included: answering those with the final flight's old ACK left the peer's
            # KeyUpdate unacknowledged forever, and with it every later key update (§7.1).
            if self._ack_list:
                self._send_ack(now)
            elif self._final_acks:
                self._send_ack_for(self._final_acks)

    def _process_messages(self, now: float) -> bool:
        """Handle every complete message in order; True if any was handled."""
        handled = False
        while self.state is not State.CLOSED:
            reassembler = self._reassembler
            message = reassembler.next_message() if reassembler is not None else None
            if message is None:
                self._idle_reassembler()
                break
            handled = True
            self._current_seq = message.message_seq
            msg_type = message.msg_type
            first_hello = self._first_hello(msg_type)
            # A first hello dropped as damaged must leave no trace: its handler may have
            # narrowed the transcript to its suite's hash (or added itself) and taken its
            # suite before failing, and the genuine hello that follows may differ.
            hello_state = self.state in _HELLO_STATES
            saved = self._hello_state() if first_hello or hello_state else None
            try:
                self._handle_message(msg_type, message.body, now)
            except (DecodeErrorAlert, IllegalParameter) as alert:
                # A hello that does not even decode is garbage, whoever sent it: before
                # keys exist it came unprotected, so it must not end the handshake.
                garbage = isinstance(alert, DecodeErrorAlert) and hello_state
                if saved is None or not (first_hello or garbage):
                    raise
                self._restore_hello_state(saved)
                # An unauthenticated first hello that does not make sense is most likely
                # damaged on the way: drop it and wait for the peer's retransmission.
                self.stats["dropped_damaged_hello"] += 1
                self._reassembly().close()
                self._reassembler = self._new_reassembler(message.message_seq)
                break
        return handled

    def _hello_state(self) -> tuple[Any, ...]:
        """What handling a first hello changes before it can still fail as damaged."""
        return (self._transcript.copy(), self._suite, self._params, self._group, self._resumed)

    def _restore_hello_state(self, saved: tuple[Any, ...]) -> None:
        self._transcript, self._suite, self._params, self._group, self._resumed = saved

    def _first_hello(self, msg_type: int) -> bool:
        """Whether this message would be the first hello seen from the peer (epoch 0,
        nothing committed yet), so that a decoding problem can be treated as damage."""
        if self.is_client:
            return (
                msg_type == HandshakeType.server_hello
                and self.state is State.WAIT_SERVER_HELLO
                and not self._hrr_done
            )
        # A second ClientHello (message_seq 1, after a stateless HRR) is not a first hello:
        # an invalid cookie there MUST end with illegal_parameter (RFC 9147 §5.1).
        return (
            msg_type == HandshakeType.client_hello
            and self.state is State.WAIT_CLIENT_HELLO
            and not self._hrr_done
            and self._current_seq == 0
        )

    def _handle_message(self, msg_type: int, body: memoryview, now: float) -> None:
        if msg_type == HELLO_VERIFY_REQUEST and self.state is State.WAIT_SERVER_HELLO:
            # A DTLS 1.0/1.2 server's cookie exchange: it cannot speak DTLS 1.3.
            raise ProtocolVersion("the server speaks only DTLS 1.2 or older")
        if msg_type not in ACCEPTS[self.state]:
            raise UnexpectedMessage(f"{_type_name(msg_type)} in state {self.state.value}")
        hello, self._decoded_hello = self._decoded_hello, None
        try:
            if hello is not None and msg_type == HandshakeType.client_hello and hello[0] == body:
                parsed: Any = hello[1]  # the endpoint's gate decoded these very bytes
            else:
                parsed = msgs.pull_message(msg_type, body)
        except msgs.UnexpectedHandshakeType:
            raise UnexpectedMessage(f"handshake type {msg_type}") from None
        except ext.DuplicateExtensionError:
            raise IllegalParameter("duplicate extension") from None
        except DecodeError as exc:
            raise DecodeErrorAlert(f"{_type_name(msg_type)}: {exc}") from None
        self._dispatch(msg_type, parsed, bytes(body), now)

    def _dispatch(self, msg_type: int, msg: Any, body: bytes, now: float) -> None:
        s = self.state
        if s is State.WAIT_CLIENT_HELLO:
            self._server_on_client_hello(msg, body, now)
        elif s is State.WAIT_SERVER_HELLO:
            self._client_on_server_hello(msg, body, now)
        elif s is State.WAIT_ENCRYPTED_EXTENSIONS:
            self._client_on_encrypted_extensions(msg, body)
        elif (
            s is State.WAIT_CERTIFICATE_OR_REQUEST and msg_type == HandshakeType.certificate_request
        ):
            self._client_on_certificate_request(msg, body)
        elif s in (State.WAIT_CERTIFICATE_OR_REQUEST, State.WAIT_CERTIFICATE):
            self._on_certificate(msg, body)
            self.state = State.WAIT_CERTIFICATE_VERIFY
        elif s is State.WAIT_CERTIFICATE_VERIFY:
            self._on_certificate_verify(msg, body)
            self.state = State.WAIT_FINISHED
        elif s is State.WAIT_FINISHED:
            self._client_on_finished(msg, body, now)
        elif s is State.WAIT_CLIENT_CERTIFICATE:
            self._server_on_client_certificate(msg, body)
        elif s is State.WAIT_CLIENT_CERTIFICATE_VERIFY:
            self._on_certificate_verify(msg, body)
            self.state = State.WAIT_CLIENT_FINISHED
        elif s is State.WAIT_CLIENT_FINISHED:
            self._server_on_finished(msg, body, now)
        elif s is State.CONNECTED:
            self._on_post_handshake(msg_type, msg, now)
        else:  # pragma: no cover - ACCEPTS already refused it
            raise UnexpectedMessage(f"{_type_name(msg_type)} in state {s.value}")

    # -- client handshake ---------------------------------------------------------------

    def _send_client_hello(self, now: float) -> None:
        cfg = self.config
        assert isinstance(cfg, ClientConfig)
        if not self._key_shares:
            for group in cfg.share_groups:
                self._key_shares[group] = groups.generate(group)
        extensions = [
            ext.make_extension(
                ExtensionType.supported_versions,
                ext.push_supported_versions_client,
                [DTLS13_VERSION],
            ),
        ]
        # wolfSSL needs the cookie inside the first fragment of a fragmented ClientHello2.
        if self._hrr_cookie is not None:
            extensions.append(
                ext.make_extension(ExtensionType.cookie, ext.push_cookie, self._hrr_cookie)
            )
        extensions += [
            ext.make_extension(
                ExtensionType.supported_groups, ext.push_supported_groups, list(cfg.group_order)
            ),
            ext.make_extension(
                ExtensionType.key_share,
                ext.push_key_share_client,
                [ext.KeyShareEntry(g, kx.public_bytes) for g, kx in self._key_shares.items()],
            ),
            ext.make_extension(
                ExtensionType.signature_algorithms,
                ext.push_signature_algorithms,
                list(_signing_schemes(cfg.schemes)),
            ),
            ext.make_extension(
                ExtensionType.signature_algorithms_cert,
                ext.push_signature_algorithms,
                list(cfg.schemes),
            ),
        ]
        if cfg.server_name and not _is_ip(cfg.server_name):
            extensions.append(
                ext.make_extension(ExtensionType.server_name, ext.push_server_name, cfg.server_name)
            )
        if cfg.alpn_protocols:
            extensions.append(
                ext.make_extension(
                    ExtensionType.application_layer_protocol_negotiation,
                    ext.push_alpn,
                    [p.encode() for p in cfg.alpn_protocols],
                )
            )
        if cfg.record_size_limit is not None:
            extensions.append(
                ext.make_extension(
                    ExtensionType.record_size_limit,
                    ext.push_record_size_limit,
                    cfg.record_size_limit,
                )
            )
        if cfg.cid_length is not None:
            extensions.append(
                ext.make_extension(
                    ExtensionType.connection_id, ext.push_connection_id, self.local_cids[0]
                )
            )
        if cfg.srtp:
            extensions.append(srtp.client_extension(cfg.srtp, cfg.srtp_mki))
        # Sent even without a PSK to offer: a server must not issue tickets the client's
        # modes cannot use (RFC 8446 §4.2.9), and OpenSSL sends none to a client without it.
        modes = [1 if m == "psk_dhe_ke" else 0 for m in cfg.psk_modes]
        extensions.append(
            ext.make_extension(
                ExtensionType.psk_key_exchange_modes, ext.push_psk_key_exchange_modes, modes
            )
        )
        offer = self._psk_offer()
        if offer is not None:
            identity, age, _, schedule = offer
            if cfg.session is not None and cfg.session.max_early_data and not self._hrr_done:
                extensions.append(ext.Extension(ExtensionType.early_data, b""))
                self._early_offered = True
            # pre_shared_key comes last; its binder is computed over everything before it.
            extensions.append(
                ext.make_extension(
                    ExtensionType.pre_shared_key,
                    ext.push_pre_shared_key_client,
                    ext.OfferedPsks((ext.PskIdentity(identity, age),), (bytes(schedule.hash_len),)),
                )
            )
        hello = msgs.ClientHello(
            random=self._random,
            cipher_suites=tuple(int(s) for s in cfg.suites),
            extensions=tuple(extensions),
        )
        if offer is not None:
            _, _, external, schedule = offer
            partial = self._transcript.digest_with(msgs.binder_prefix(hello), schedule.hash_name)
            binder = schedule.verify_data(schedule.binder_key(external), partial)
            hello = msgs.replace_binders(hello, (binder,))
            self._psk_schedule = schedule
        self._client_hello = hello
        self._start_flight()
        self._add_message(hello, 0)
        self.state = State.WAIT_SERVER_HELLO
        if self._early_offered and self._psk_schedule is not None and cfg.session is not None:
            early = self._psk_schedule.client_early_traffic_secret(
                self._transcript.digest(self._psk_schedule.hash_name)
            )
            self._records.install_write_epoch(1, cfg.session.suite, early)
            self._early_budget = cfg.session.max_early_data
            if self._keylog is not None:
                self._log_secret("CLIENT_EARLY_TRAFFIC_SECRET", early)
            self._keep_early_exporter(self._psk_schedule)
        self._emit_flight(now)

    def _psk_offer(self) -> tuple[bytes, int, bool, KeySchedule] | None:
        """(identity, obfuscated age, external?, schedule) of the PSK to offer, if any."""
        cfg = self.config
        assert isinstance(cfg, ClientConfig)
        if cfg.psk is not None:
            identity, key = cfg.psk
            offer = (identity, 0, True, KeySchedule("sha256", psk=key))
        elif cfg.session is not None:
            session = cfg.session
            wall = self._wall_clock().timestamp()
            if session.expired(wall) or session.suite not in cfg.suites:
                return None
            if not _same_name(session.server_name, cfg.server_name):
                # RFC 8446 §4.6.1: "Clients ... SHOULD only resume if the SNI value matches
                # the one used in the original session": a full handshake instead.
                if not self._hrr_done:
                    self.count("session_server_name_mismatch")
                return None
            hash_name = SUITES[session.suite].hash_name
            offer = (
                session.ticket,
                session.obfuscated_age(wall),
                False,
                KeySchedule(hash_name, psk=session.psk),
            )
        else:
            return None
        # After a HelloRetryRequest the transcript hash is fixed: a PSK of another hash
        # cannot be offered again.
        hash_name = offer[3].hash_name
        if self._transcript.hash_name not in (None, hash_name):
            return None
        return offer

    def _client_on_server_hello(self, sh: msgs.ServerHello, body: bytes, now: float) -> None:
        cfg = self.config
        assert isinstance(cfg, ClientConfig)
        versions = sh.extension(ExtensionType.supported_versions)
        if versions is None:
            raise ProtocolVersion("the server does not speak DTLS 1.3 (no supported_versions)")
        if _decode(versions, ext.pull_supported_versions_server) != DTLS13_VERSION:
            raise IllegalParameter("server selected a version other than DTLS 1.3")
        if sh.legacy_version != 0xFEFD or sh.legacy_session_id_echo != b"":
            raise IllegalParameter("bad legacy_version or legacy_session_id_echo")
        if sh.legacy_compression_method != 0:
            raise IllegalParameter("non-zero compression method")
        if sh.cipher_suite not in cfg.suites:
            raise IllegalParameter(f"server chose suite 0x{sh.cipher_suite:04x} we did not offer")
        self._check_solicited(sh.extensions, "ServerHello", sh.is_hello_retry_request)
        suite = CipherSuite(sh.cipher_suite)
        if self._suite is not None and suite != self._suite:
            raise IllegalParameter("ServerHello suite differs from HelloRetryRequest's")
        self._suite = suite
        self._params = SUITES[suite]
        if sh.is_hello_retry_request:
            self._client_on_hello_retry(sh, body, now)
            return
        if self._transcript.hash_name is None:
            self._transcript.select(self._params.hash_name)
        schedule: KeySchedule | None = None
        psk_data = sh.extension(ExtensionType.pre_shared_key)
        if psk_data is not None:
            selected = _decode(psk_data, ext.pull_pre_shared_key_server)
            schedule = self._psk_schedule
            if schedule is None or selected != 0:
                raise IllegalParameter("server selected a PSK we did not offer")
            if schedule.hash_name != self._params.hash_name:
                raise IllegalParameter("server selected a suite whose hash differs from the PSK's")
            self._resumed = True
            if cfg.psk is None and cfg.session is not None:
                # The resumption inherits the original's authentication (RFC 8446 §2.2).
                self._peer_chain = cfg.session.peer_certificates
        key_share = sh.extension(ExtensionType.key_share)
        shared: bytes | None = None
        if key_share is None:
            if schedule is None or "psk_ke" not in cfg.psk_modes:
                raise MissingExtension("ServerHello without key_share")
        else:
            entry = _decode(key_share, ext.pull_key_share_entry)
            kx = self._key_shares.get(entry.group)
            if kx is None:
                raise IllegalParameter("server key share for a group we did not send")
            shared = kx.shared_secret(entry.key_exchange)
            self._group = NamedGroup(entry.group)
        cid_data = sh.extension(ExtensionType.connection_id)
        if cid_data is not None:
            if cfg.cid_length is None:
                raise UnsupportedExtension("connection_id in ServerHello, not offered")
            self._use_cids(_decode(cid_data, ext.pull_connection_id))
        self._records.tentative_cid_length = 0
        self._key_shares.clear()
        self._transcript.add(HandshakeType.server_hello, body)
        self._start_flight_release_only()
        self._derive_handshake_secrets(shared, now, schedule)
        self.state = State.WAIT_ENCRYPTED_EXTENSIONS

    def _client_on_hello_retry(self, hrr: msgs.ServerHello, body: bytes, now: float) -> None:
        cfg = self.config
        assert isinstance(cfg, ClientConfig) and self._params is not None
        if self._hrr_done:
            raise UnexpectedMessage("second HelloRetryRequest")
        self._hrr_done = True
        if self._early_offered:
            # RFC 8446 §4.2.10: no early data after a HelloRetryRequest.
            self._early_offered = False
            self._early_result = False
        self.stats["hello_retry_requests_received"] += 1
        self._transcript.select(self._params.hash_name)
        self._transcript.restart_with_message_hash()
        self._transcript.add(HandshakeType.server_hello, body)
        changed = False
        cookie = hrr.extension(ExtensionType.cookie)
        if cookie is not None:
            self._hrr_cookie = _decode(cookie, ext.pull_cookie)
            changed = True
        group_data = hrr.extension(ExtensionType.key_share)
        if group_data is not None:
            group = _decode(group_data, ext.pull_key_share_hrr)
            if group not in cfg.group_order or group in self._key_shares:
                raise IllegalParameter("HelloRetryRequest selected an unusable group")
            self._key_shares = {group: groups.generate(group)}
            changed = True
        if not changed:
            # RFC 8446 §4.1.4: an HRR that would not change the ClientHello is illegal.
            raise IllegalParameter("HelloRetryRequest changes nothing")
        self._send_client_hello(now)

    def _check_solicited(
        self, extensions: tuple[ext.Extension, ...], where: str, retry: bool = False
    ) -> None:
        """RFC 8446 §4.2: "Implementations MUST NOT send extension responses if the remote
        endpoint did not send the corresponding extension requests, with the exception of
        the "cookie" extension in the HelloRetryRequest" (else unsupported_extension)."""
        hello = self._client_hello
        assert hello is not None
        offered = {e.type for e in hello.extensions}
        for e in extensions:
            if e.type not in offered and not (retry and e.type == ExtensionType.cookie):
                raise UnsupportedExtension(f"{_extension_name(e.type)} in {where}, not offered")

    def _client_on_encrypted_extensions(self, ee: msgs.EncryptedExtensions, body: bytes) -> None:
        cfg = self.config
        self._check_solicited(ee.extensions, "EncryptedExtensions")
        alpn = ee.extension(ExtensionType.application_layer_protocol_negotiation)
        if alpn is not None:
            names = _decode(alpn, ext.pull_alpn)
            if len(names) != 1 or names[0].decode("latin-1") not in cfg.alpn_protocols:
                raise IllegalParameter("server selected an ALPN protocol we did not offer")
            self._alpn = names[0].decode("latin-1")
        use_srtp = ee.extension(ExtensionType.use_srtp)
        if use_srtp is not None:
            assert isinstance(cfg, ClientConfig)
            self._srtp = srtp.client_check(cfg.srtp, cfg.srtp_mki, use_srtp)
        limit = ee.extension(ExtensionType.record_size_limit)
        if limit is not None:
            if cfg.record_size_limit is None:
                raise UnsupportedExtension("record_size_limit in EncryptedExtensions, not sent")
            self._peer_record_limit = _record_size_limit(limit)
            self._enforce_record_limit = True
        accepted_early = ee.extension(ExtensionType.early_data) is not None
        if accepted_early and not self._early_offered:
            raise UnsupportedExtension("early_data accepted but not offered")
        if self._early_offered:
            self._early_result = accepted_early
        self._transcript.add(HandshakeType.encrypted_extensions, body)
        # A PSK handshake authenticates by the PSK: no certificates (RFC 8446 §2.2).
        self.state = State.WAIT_FINISHED if self._resumed else State.WAIT_CERTIFICATE_OR_REQUEST

    def _client_on_certificate_request(self, cr: msgs.CertificateRequest, body: bytes) -> None:
        if cr.certificate_request_context != b"":
            raise IllegalParameter("non-empty certificate_request_context in the handshake")
        if cr.extension(ExtensionType.signature_algorithms) is None:
            raise MissingExtension("CertificateRequest without signature_algorithms")
        self._cert_request = cr
        self._transcript.add(HandshakeType.certificate_request, body)
        self.state = State.WAIT_CERTIFICATE

    def _on_certificate(self, msg: msgs.Certificate, body: bytes) -> None:
        cfg = self.config
        if msg.certificate_request_context != b"":
            raise IllegalParameter("non-empty certificate_request_context")
        if not msg.certificate_list:
            if self.is_client:
                raise DecodeErrorAlert("server sent an empty Certificate")
            raise CertificateRequired("client sent no certificate")
        chain = tuple(
            certs.parse_certificate_chain_untrusted(e.cert_data for e in msg.certificate_list)
        )
        now = self._wall_clock()
        if isinstance(cfg, ClientConfig):
            if cfg.verify:
                assert cfg.server_name is not None  # the config requires it with verify
                certs.verify_server_chain(list(chain), cfg.trust, cfg.server_name, now)
        else:
            certs.verify_client_chain(list(chain), cfg.trust, now)
        self._peer_chain = chain
        self._transcript.add(HandshakeType.certificate, body)

    def _on_certificate_verify(self, cv: msgs.CertificateVerify, body: bytes) -> None:
        cfg = self.config
        offered = _signing_schemes(cfg.schemes)
        if cv.algorithm not in offered:
            raise IllegalParameter(f"signature scheme 0x{cv.algorithm:04x} was not offered")
        scheme = SignatureScheme(cv.algorithm)
        certs.verify_certificate_verify(
            self._peer_chain[0].public_key(),
            scheme,
            cv.signature,
            self._transcript.digest(),
            is_server=self.is_client,
        )
        if self.is_client:
            self._scheme = scheme
        self._transcript.add(HandshakeType.certificate_verify, body)

    def _client_on_finished(self, fin: msgs.Finished, body: bytes, now: float) -> None:
        ks = self._schedule
        assert ks is not None and self._suite is not None
        if self._cert_request is None and not self._peer_chain and not self._resumed:
            raise UnexpectedMessage("Finished before the server authenticated")
        if not ks.check_verify_data(self._s_hs, self._transcript.digest(), fin.verify_data):
            raise DecryptError("server Finished does not verify")
        self._transcript.add(HandshakeType.finished, body)
        self._peer_finished = True
        self._derive_application_secrets()
        self._records.install_read_epoch(3, self._suite, self._s_app, now)
        # The client's final flight: [Certificate, CertificateVerify], Finished (epoch 2).
        self._start_flight()
        assert self._flight is not None
        self._flight.needs_ack = True
        self._ack_list.clear()
        self._ack_at = None
        if self._cert_request is not None:
            self._send_own_certificate(self._cert_request)
        self._add_message(msgs.Finished(ks.verify_data(self._c_hs, self._transcript.digest())), 2)
        self._records.install_write_epoch(3, self._suite, self._c_app)
        self._resumption_secret = ks.resumption_master_secret(self._transcript.digest())
        self._emit_flight(now)
        self._complete(now)
        self._drop_handshake_state()

    # -- server handshake ---------------------------------------------------------------

    def _server_on_client_hello(self, ch: msgs.ClientHello, body: bytes, now: float) -> None:
        cfg = self.config
        self._hello_bodies[self._current_seq] = body
        assert isinstance(cfg, ServerConfig)
        versions = ch.extension(ExtensionType.supported_versions)
        if versions is None or DTLS13_VERSION not in _decode(
            versions, ext.pull_supported_versions_client
        ):
            raise ProtocolVersion("the client does not offer DTLS 1.3 (DTLS 1.2 is not supported)")
        if ch.legacy_cookie:
            # RFC 9147 §5.3: a non-empty legacy_cookie in a DTLS 1.3 ClientHello.
            raise IllegalParameter("non-empty legacy_cookie")
        if ch.legacy_version != 0xFEFD:
            raise ProtocolVersion("legacy_version is not DTLS 1.2")
        if b"\x00" not in ch.legacy_compression_methods:
            raise IllegalParameter("null compression not offered")
        suite = next((s for s in cfg.suites if s in ch.cipher_suites), None)
        if suite is None:
            raise HandshakeFailure("no cipher suite in common")
        if not self._hrr_done and self._next_receive_seq() > 1:
            # message_seq 1: ClientHello2 after a stateless HRR; all we know is the cookie.
            suite = self._resume_from_cookie(ch, now)
        elif self._hrr_done:
            self._check_second_client_hello(ch, suite, now)
        else:
            self._transcript.select(SUITES[suite].hash_name)
        sni = ch.extension(ExtensionType.server_name)
        host = _decode(sni, ext.pull_server_name) if sni is not None else None
        self._server_name = host.lower() if host is not None else None
        mode = self._psk_mode(ch)
        supported = ch.extension(ExtensionType.supported_groups)
        shares_data = ch.extension(ExtensionType.key_share)
        shares: dict[int, bytes] = {}
        group: int | None = None
        if mode != "psk_ke" or shares_data is not None:
            if supported is None or shares_data is None:
                raise MissingExtension("ClientHello without supported_groups or key_share")
            client_groups = _decode(supported, ext.pull_supported_groups)
            entries = _decode(shares_data, ext.pull_key_share_client)
            shares = {e.group: e.key_exchange for e in entries}
            if len(shares) != len(entries) or not set(shares) <= set(client_groups):
                # RFC 8446 §4.2.8: one share per group, each in supported_groups; "Servers
                # MAY check for violations of these rules and abort ... illegal_parameter".
                raise IllegalParameter("key_share repeats a group or has one not supported")
            group = next((g for g in cfg.group_order if g in shares), None)
            retry_group: int | None = None
            if group is None:
                retry_group = next((g for g in cfg.group_order if g in client_groups), None)
                if retry_group is None or self._hrr_done:
                    raise HandshakeFailure("no key-exchange group in common")
            if not self._hrr_done and (retry_group is not None or cfg.require_cookie):
                self._hrr_group = retry_group
                self._send_hello_retry(ch, body, suite, retry_group, now)
                return
            assert group is not None
            if self._hrr_group is not None and (group != self._hrr_group or len(shares) != 1):
                # RFC 8446 §4.1.2: the new key_share holds exactly the group the HRR selected.
                raise IllegalParameter("second ClientHello ignores the group the HRR selected")
        accepted = self._server_psk(ch, body, suite, now) if mode is not None else None
        self._early_accepted = self._accept_early_data(ch, accepted, suite)
        if accepted is None or mode == "psk_dhe_ke":
            if group is None:
                raise MissingExtension("no key_share for a handshake without a PSK")
        else:
            group = None  # psk_ke: no (EC)DHE
        if accepted is None:
            sig = ch.extension(ExtensionType.signature_algorithms)
            if sig is None:
                raise MissingExtension("ClientHello without signature_algorithms")
            if cfg.key is None:
                raise HandshakeFailure("no certificate, and no PSK the client knows")
            self._scheme = certs.choose_scheme(cfg.key, _decode(sig, ext.pull_signature_algorithms))
        if self._hrr_done and self._client_hello is not None:
            self._check_same_client_hello(self._client_hello, ch)
        self._alpn = self._choose_alpn(ch)
        use_srtp = ch.extension(ExtensionType.use_srtp)
        self._srtp = srtp.server_choose(cfg.srtp, cfg.srtp_accept_mki, use_srtp)
        self._suite = suite
        self._params = SUITES[suite]
        self._group = NamedGroup(group) if group is not None else None
        self._resumed = accepted is not None
        if accepted is not None and accepted[2] is not None:
            # The client certificate authenticated when the ticket was issued (RFC 8446 §2.2).
            self._peer_chain = accepted[2].client_chain
        self._client_random = ch.random
        self._transcript.add(HandshakeType.client_hello, body)
        if self._early_accepted and accepted is not None:
            early = accepted[1].client_early_traffic_secret(self._transcript.digest())
            self._records.install_read_epoch(1, CipherSuite(suite), early, now)
            if self._keylog is not None:
                self._log_secret("CLIENT_EARLY_TRAFFIC_SECRET", early)
            self._keep_early_exporter(accepted[1])
        server_share, shared = (
            groups.encapsulate(group, shares[group]) if group is not None else (b"", None)
        )

        self._start_flight()
        self._ack_list.clear()
        sh_ext = [_SH_SUPPORTED_VERSIONS]
        if group is not None:
            sh_ext.append(
                ext.make_extension(
                    ExtensionType.key_share,
                    ext.push_key_share_entry,
                    ext.KeyShareEntry(group, server_share),
                )
            )
        if accepted is not None:
            sh_ext.append(
                ext.make_extension(
                    ExtensionType.pre_shared_key, ext.push_pre_shared_key_server, accepted[0]
                )
            )
        cid_data = ch.extension(ExtensionType.connection_id)
        if cid_data is not None and cfg.cid_length is not None:
            peer_cid = _decode(cid_data, ext.pull_connection_id)
            sh_ext.append(
                ext.make_extension(
                    ExtensionType.connection_id, ext.push_connection_id, self.local_cids[0]
                )
            )
            self._use_cids(peer_cid)
            # 0-RTT records were sent before the client could know our CID.
            self._records.cid_optional = self._early_accepted
        limit = ch.extension(ExtensionType.record_size_limit)
        if limit is not None:
            self._peer_record_limit = _record_size_limit(limit)
        sh = msgs.ServerHello(random=self._random, cipher_suite=suite, extensions=tuple(sh_ext))
        self._add_message(sh, 0)
        self._derive_handshake_secrets(shared, now, accepted[1] if accepted else None)
        ee_ext = []
        if self._alpn is not None:
            ee_ext.append(
                ext.make_extension(
                    ExtensionType.application_layer_protocol_negotiation,
                    ext.push_alpn,
                    [self._alpn.encode("latin-1")],
                )
            )
        if limit is not None and cfg.record_size_limit is not None:
            # RFC 8449 §4: the server answers in EncryptedExtensions, only when asked.
            ee_ext.append(
                ext.make_extension(
                    ExtensionType.record_size_limit,
                    ext.push_record_size_limit,
                    cfg.record_size_limit,
                )
            )
            self._enforce_record_limit = True
        if self._srtp is not None:
            ee_ext.append(srtp.server_extension(self._srtp))  # RFC 8446 §4.2: CH, EE
        if self._early_accepted:
            ee_ext.append(ext.Extension(ExtensionType.early_data, b""))
        self._add_message(msgs.EncryptedExtensions(tuple(ee_ext)), 2)
        authenticate_client = cfg.client_auth != "none" and accepted is None
        if authenticate_client:
            request = msgs.CertificateRequest(
                b"",
                (
                    ext.make_extension(
                        ExtensionType.signature_algorithms,
                        ext.push_signature_algorithms,
                        list(_signing_schemes(cfg.schemes)),
                    ),
                ),
            )
            self._cert_request = request
            self._add_message(request, 2)
        if accepted is None:
            assert self._scheme is not None
            self._send_certificate_and_verify(self._scheme, is_server=True)
        ks = self._schedule
        assert ks is not None
        self._add_message(msgs.Finished(ks.verify_data(self._s_hs, self._transcript.digest())), 2)
        self._derive_application_secrets()
        self._records.install_write_epoch(3, suite, self._s_app)
        self.state = (
            State.WAIT_CLIENT_CERTIFICATE if authenticate_client else State.WAIT_CLIENT_FINISHED
        )
        self._emit_flight(now)

    def _accept_early_data(
        self,
        ch: msgs.ClientHello,
        accepted: tuple[int, KeySchedule, TicketState | None, ext.PskIdentity] | None,
        suite: int,
    ) -> bool:
        """0-RTT is accepted for the first identity's ticket, same suite and ALPN, a fresh
        age and a first use (RFC 8446 §4.2.10, §8)."""
        cfg = self.config
        assert isinstance(cfg, ServerConfig)
        if ch.extension(ExtensionType.early_data) is None:
            return False
        self.stats["early_data_offered"] += 1
        if accepted is None or accepted[0] != 0 or self._hrr_done or not cfg.max_early_data:
            return False
        _, _, state, identity = accepted
        if state is None or not state.max_early_data or state.suite != suite:
            return False
        if state.alpn != self._choose_alpn(ch):
            return False
        wall = self._wall_clock().timestamp()
        reported = ((identity.obfuscated_ticket_age - state.age_add) & 0xFFFFFFFF) / 1000
        if abs(reported - (wall - state.issued_at)) > cfg.early_data_window:
            return False
        if not cfg.replay_guard.first_use(
            identity.identity, state.issued_at + state.lifetime, wall
        ):
            self.stats["early_data_replays"] += 1
            return False
        self._early_budget = state.max_early_data
        return True

    def _psk_mode(self, ch: msgs.ClientHello) -> str | None:
        """The PSK key-exchange mode both sides allow, or None (RFC 8446 §4.2.9-11)."""
        if ch.extension(ExtensionType.pre_shared_key) is None:
            return None
        if ch.extensions[-1].type != ExtensionType.pre_shared_key:
            raise IllegalParameter("pre_shared_key is not the last extension")
        data = ch.extension(ExtensionType.psk_key_exchange_modes)
        if data is None:
            raise MissingExtension("pre_shared_key without psk_key_exchange_modes")
        offered = _decode(data, ext.pull_psk_key_exchange_modes)
        for name, code in (("psk_dhe_ke", 1), ("psk_ke", 0)):
            if code in offered and name in self.config.psk_modes:
                return name
        return None

    def _server_psk(
        self, ch: msgs.ClientHello, body: bytes, suite: int, now: float
    ) -> tuple[int, KeySchedule, TicketState | None, ext.PskIdentity] | None:
        """The first offered PSK we know and whose binder verifies:
        (index, schedule, the ticket's state or None for an external PSK, identity)."""
        cfg = self.config
        assert isinstance(cfg, ServerConfig)
        data = ch.extension(ExtensionType.pre_shared_key)
        assert data is not None
        offered = _decode(data, ext.pull_pre_shared_key_client)
        if len(offered.identities) != len(offered.binders):
            raise IllegalParameter("pre_shared_key: identities and binders differ in number")
        wall = self._wall_clock().timestamp()
        hash_name = SUITES[CipherSuite(suite)].hash_name
        for index, identity in enumerate(offered.identities):
            external = identity.identity in cfg.external_psks
            state: TicketState | None = None
            if external:
                psk, psk_hash = cfg.external_psks[identity.identity], "sha256"
            else:
                state = cfg.tickets.open(identity.identity, wall)
                if state is None:
                    continue
                if state.server_name != self._server_name:
                    # RFC 8446 §4.2.11 lets the server check the ticket against the SNI.
                    self.count("psk_refused_identity")
                    continue
                if cfg.client_auth == "required" and not state.client_chain:
                    # A resumption inherits the original's authentication (RFC 8446 §2.2):
                    # none here, so the full handshake must ask for a certificate.
                    self.count("psk_refused_identity")
                    continue
                psk, psk_hash = state.psk, SUITES[state.suite].hash_name
            if psk_hash != hash_name:
                continue
            ks = KeySchedule(hash_name, psk=psk)
            # The binder covers the ClientHello up to the binders (RFC 8446 §4.2.11.2).
            cut = ext.binders_length(len(b) for b in offered.binders)
            prefix = (msgs.transcript_header(HandshakeType.client_hello, len(body)) + body)[:-cut]
            partial_hash = self._transcript.digest_with(prefix)
            if not ks.check_verify_data(
                ks.binder_key(external), partial_hash, offered.binders[index]
            ):
                raise DecryptError("PSK binder does not verify")
            return index, ks, state, identity
        return None

    def _send_hello_retry(
        self, ch: msgs.ClientHello, body: bytes, suite: int, group: int | None, now: float
    ) -> None:
        """HelloRetryRequest for a group, a cookie or both (RFC 8446 §4.1.4, RFC 9147 §5.1)."""
        cfg = self.config
        assert isinstance(cfg, ServerConfig)
        self._transcript.add(HandshakeType.client_hello, body)
        ch1_hash = self._transcript.digest()
        self._transcript.restart_with_message_hash()
        self._hrr_done = True
        self.stats["hello_retry_requests_sent"] += 1
        self._client_hello = ch
        self._suite = CipherSuite(suite)
        if cfg.require_cookie:
            # The cookie carries what a stateless server needs to rebuild this HRR and the
            # transcript: ClientHello1's hash, the suite and the group (RFC 9147 §5.1).
            extra = struct.pack("!HH", suite, group or 0)
            self._hrr_cookie = cfg.cookie_jar.make(now, self.peer_address, ch1_hash, extra)
        self._start_flight()
        # The HRR implicitly acknowledges ClientHello1 and is never retransmitted on a
        # timer: an explicit ACK would stop the client's retransmissions of ClientHello1,
        # the only thing that brings a lost HRR back (RFC 9147 §7.1: SHOULD NOT ACK).
        self._ack_list.clear()
        self._ack_at = None
        self._add_message(hello_retry_request(suite, group, self._hrr_cookie), 0)
        # Like a stateless server, do not retransmit the HRR on a timer: a repeated
        # ClientHello1 gets it again (RFC 9147 §5.8.1 case 3).
        with self._records.datagram_writer(self.mtu) as w:
            assert self._flight is not None
            self._flight.emit(w)
            self._queue(w.finish())

    def _resume_from_cookie(self, ch: msgs.ClientHello, now: float) -> CipherSuite:
        """Rebuild the HRR state a stateless server left in its cookie; returns the suite.

        RFC 9147 §5.1: ClientHello1 enters the transcript as message_hash, so its hash
        is enough; the HRR is rebuilt byte for byte from the suite and group.
        """
        cfg = self.config
        assert isinstance(cfg, ServerConfig)
        data = ch.extension(ExtensionType.cookie)
        if data is None:
            raise MissingExtension("ClientHello with message_seq 1 but no cookie")
        cookie = _decode(data, ext.pull_cookie)
        contents = cfg.cookie_jar.check(cookie, now, self.peer_address)
        if contents is None or len(contents.extra) != 4:
            raise IllegalParameter("invalid or expired cookie")
        self._cookie_checked = True
        suite_code, group = (int(v) for v in struct.unpack("!HH", contents.extra))
        if suite_code not in cfg.suites or suite_code not in ch.cipher_suites:
            raise IllegalParameter("cookie names a suite no longer offered")
        suite = CipherSuite(suite_code)
        params = SUITES[suite]
        self._transcript = Transcript.from_message_hash(params.hash_name, contents.ch1_hash)
        hrr = hello_retry_request(suite, group or None, cookie)
        msg_type, hrr_body = msgs.push_message(hrr)
        self._transcript.add(msg_type, hrr_body)
        self._hrr_done = True
        self._hrr_cookie = cookie
        self._hrr_group = group or None
        self._suite = suite
        self._send_seq = 1  # the HRR was message 0
        return suite

    def _check_second_client_hello(self, ch: msgs.ClientHello, suite: int, now: float) -> None:
        cfg = self.config
        assert isinstance(cfg, ServerConfig)
        first = self._client_hello
        if suite != self._suite or (first is not None and ch.random != first.random):
            raise IllegalParameter("second ClientHello differs from the first beyond the HRR")
        if self._hrr_cookie is not None:
            data = ch.extension(ExtensionType.cookie)
            if data is None:
                raise MissingExtension("second ClientHello without the cookie")
            cookie = _decode(data, ext.pull_cookie)
            # The exact cookie we issued to this peer in this handshake is proof enough;
            # its age is bounded by the handshake timeout. Checking expiry here refused
            # the very cookie we had just re-sent with the HRR for a late ClientHello1
            # (RFC 9147 §5.8.1); expiry guards stateless servers (_resume_from_cookie).
            if not hmac.compare_digest(cookie, self._hrr_cookie):
                raise IllegalParameter("cookie does not match the one we sent")
            self._cookie_checked = True
        if self._flight is not None:
            self._flight.release()
            self._flight = None

    def _check_same_client_hello(self, first: msgs.ClientHello, second: msgs.ClientHello) -> None:
        """RFC 8446 §4.1.2: the second ClientHello is the first "without modification,
        except" the key_share the HRR asked for, early_data removed, the cookie added,
        pre_shared_key updated and padding (a stateless server, without ClientHello1,
        cannot check this)."""
        may_change = set(_CLIENT_HELLO2_MAY_CHANGE)
        if self._hrr_group is None:
            may_change.discard(ExtensionType.key_share)  # the HRR asked for no new share

        def fixed(ch: msgs.ClientHello) -> tuple[Any, ...]:
            kept = {e.type: e.data for e in ch.extensions if e.type not in may_change}
            return (
                ch.legacy_version,
                ch.random,
                ch.legacy_session_id,
                ch.cipher_suites,
                ch.legacy_compression_methods,
                kept,
            )

        if fixed(first) != fixed(second):
            raise IllegalParameter("second ClientHello differs from the first beyond the HRR")

    def _choose_alpn(self, ch: msgs.ClientHello) -> str | None:
        cfg = self.config
        data = ch.extension(ExtensionType.application_layer_protocol_negotiation)
        if data is None or not cfg.alpn_protocols:
            return None
        offered = [n.decode("latin-1") for n in _decode(data, ext.pull_alpn)]
        for proto in cfg.alpn_protocols:
            if proto in offered:
                return proto
        raise NoApplicationProtocol("no ALPN protocol in common")

    def _server_on_client_certificate(self, msg: msgs.Certificate, body: bytes) -> None:
        cfg = self.config
        assert isinstance(cfg, ServerConfig)
        if not msg.certificate_list:
            if cfg.client_auth == "required":
                raise CertificateRequired("client sent no certificate")
            self._transcript.add(HandshakeType.certificate, body)
            self.state = State.WAIT_CLIENT_FINISHED
            return
        self._on_certificate(msg, body)
        self.state = State.WAIT_CLIENT_CERTIFICATE_VERIFY

    def _server_on_finished(self, fin: msgs.Finished, body: bytes, now: float) -> None:
        ks = self._schedule
        assert ks is not None and self._suite is not None
        if not ks.check_verify_data(self._c_hs, self._transcript.digest(), fin.verify_data):
            raise DecryptError("client Finished does not verify")
        self._transcript.add(HandshakeType.finished, body)
        self._peer_finished = True
        self._records.install_read_epoch(3, self._suite, self._c_app, now)
        if self._early_accepted:
            # RFC 9147 §5.6: no EndOfEarlyData; epoch 1 ends with the client's Finished.
            self._records.retire_read_epoch(1)
            self._records.cid_optional = False
        # Our flight is implicitly acknowledged; the client's final flight needs an ACK.
        if self._flight is not None:
            self._flight.release()
            self._flight = None
        self._retransmit_at = None
        self._final_acks = sorted(set(self._ack_list), key=lambda n: (n.epoch, n.sequence_number))
        self._ack_list.clear()
        self._ack_at = None
        # The ACK and the session tickets leave in one datagram when they fit (one send).
        with self._records.datagram_writer(self.mtu) as w:
            self._send_ack_for(self._final_acks, w)
            self._complete(now)
            self._send_session_tickets(now, w)
            self._queue(w.finish())
        self._drop_handshake_state()
        # Our handshake flight is done with (implicitly acknowledged above); alerts and
        # ACKs go out in epoch 3 from now on. The epoch-2 read keys go too: the only
        # epoch-2 records still to come are repeats of the client's final flight (our
        # ACK was lost), which _repeat_final_acks answers without reading them.
        self._records.retire_write_epoch(2)
        self._records.retire_read_epoch(2)

    def _send_session_tickets(self, now: float, writer: DatagramWriter | None = None) -> None:
        """Stateless NewSessionTickets (RFC 8446 §4.6.1), one post-handshake flight."""
        cfg = self.config
        assert isinstance(cfg, ServerConfig)
        ks = self._schedule
        if not cfg.session_tickets or ks is None or self._suite is None:
            return
        if chain_size(self._peer_chain) > MAX_TICKET_CHAIN:
            self.count("tickets_withheld", cfg.session_tickets)
            return
        secret = ks.resumption_master_secret(self._transcript.digest())
        wall = self._wall_clock().timestamp()
        self._start_flight()
        assert self._flight is not None
        self._flight.needs_ack = True
        for i in range(cfg.session_tickets):
            nonce = bytes([i])
            age_add = int.from_bytes(cfg.random_bytes(4), "big")
            state = TicketState(
                self._suite,
                ks.resumption_psk(secret, nonce),
                wall,
                cfg.ticket_lifetime,
                age_add,
                cfg.max_early_data,
                self._alpn,
                self._server_name,
                self._peer_chain,
            )
            ticket = cfg.tickets.seal(state, wall)
            extensions = (
                (
                    ext.make_extension(
                        ExtensionType.early_data, ext.push_early_data_ticket, cfg.max_early_data
                    ),
                )
                if cfg.max_early_data
                else ()
            )
            self._add_message(
                msgs.NewSessionTicket(cfg.ticket_lifetime, age_add, nonce, ticket, extensions),
                self._records.write_epoch,
                transcript=False,
            )
        self._emit_flight(now, writer=writer)

    # -- both sides ---------------------------------------------------------------------

    def _start_flight_release_only(self) -> None:
        """The peer's answer implicitly acknowledged our flight: stop retransmitting it."""
        if self._flight is not None:
            self._flight.release()
            self._flight = None
        self._retransmit_at = None
        self._ack_list.clear()
        self._ack_at = None

    def _send_own_certificate(self, request: msgs.CertificateRequest) -> None:
        cfg = self.config
        if not cfg.chain:
            self._add_message(msgs.Certificate(b"", ()), 2)
            return
        sig = request.extension(ExtensionType.signature_algorithms)
        schemes = _decode(sig, ext.pull_signature_algorithms) if sig is not None else ()
        scheme = certs.choose_scheme(cfg.key, schemes)
        self._send_certificate_and_verify(scheme, is_server=False)

    def _send_certificate_and_verify(self, scheme: SignatureScheme, *, is_server: bool) -> None:
        cfg = self.config
        self._add_encoded(HandshakeType.certificate, _certificate_body(cfg.chain), 2)
        signature = certs.sign_certificate_verify(
            cfg.key, scheme, self._transcript.digest(), is_server=is_server
        )
        self._add_message(msgs.CertificateVerify(scheme, signature), 2)

    def _derive_handshake_secrets(
        self, shared: bytes | None, now: float, schedule: KeySchedule | None = None
    ) -> None:
        assert self._params is not None and self._suite is not None
        ks = schedule if schedule is not None else KeySchedule(self._params)
        ks.handshake(shared)
        self._schedule = ks
        hello_hash = self._transcript.digest()
        self._c_hs = ks.client_handshake_traffic_secret(hello_hash)
        self._s_hs = ks.server_handshake_traffic_secret(hello_hash)
        mine, theirs = (self._c_hs, self._s_hs) if self.is_client else (self._s_hs, self._c_hs)
        self._records.install_write_epoch(2, self._suite, mine)
        self._records.install_read_epoch(2, self._suite, theirs, now)
        if self._keylog is not None:
            self._log_secret("CLIENT_HANDSHAKE_TRAFFIC_SECRET", self._c_hs)
            self._log_secret("SERVER_HANDSHAKE_TRAFFIC_SECRET", self._s_hs)

    def _derive_application_secrets(self) -> None:
        ks = self._schedule
        assert ks is not None
        ks.master()
        finished_hash = self._transcript.digest()
        self._c_app = ks.client_application_traffic_secret(finished_hash)
        self._s_app = ks.server_application_traffic_secret(finished_hash)
        self._write_secret, self._read_secret = (
            (self._c_app, self._s_app) if self.is_client else (self._s_app, self._c_app)
        )
        self._exporter = ExporterSecret(ks.hash_name, ks.exporter_master_secret(finished_hash))
        if self._keylog is not None:
            self._log_secret("CLIENT_TRAFFIC_SECRET_0", self._c_app)
            self._log_secret("SERVER_TRAFFIC_SECRET_0", self._s_app)
            self._log_secret("EXPORTER_SECRET", self._exporter.secret)

    def _keep_early_exporter(self, schedule: KeySchedule) -> None:
        """early_exporter_master_secret over ClientHello (RFC 8446 §7.1), once 0-RTT is on."""
        hello_hash = self._transcript.digest(schedule.hash_name)
        secret = schedule.early_exporter_master_secret(hello_hash)
        self._early_exporter = ExporterSecret(schedule.hash_name, secret)
        self._log_secret("EARLY_EXPORTER_SECRET", secret)

    def _log_secret(self, label: str, secret: bytes) -> None:
        if self._keylog is not None:
            self._keylog(f"{label} {self._client_random.hex()} {secret.hex()}")

    def _complete(self, now: float) -> None:
        assert self._suite is not None
        self.state = State.CONNECTED
        self.handshake_completed_at = now
        self._arm_idle_check(now)
        self._event(
            HandshakeCompleted(
                version="DTLSv1.3",
                cipher_suite=self._suite,
                group=self._group,
                signature_scheme=self._scheme,
                alpn_protocol=self._alpn,
                peer_certificates=self._peer_chain,
                resumed=self._resumed,
                early_data_accepted=self._early_result if self.is_client else None,
            )
        )

    def _repeat_final_acks(self, now: float) -> None:
        """A server whose epoch-2 read keys are gone got a record of a retired epoch while
        it has final ACKs: the client repeats its final flight because our ACK was lost
        (RFC 9147 §7.1), so send that ACK again, at most once per quarter of the initial
        retransmission timeout (the record is not read: it may be anything)."""
        if self.state is not State.CONNECTED or self.is_client:
            return
        last = self._final_ack_repeated_at
        if last is not None and now - last < self.config.retransmit_initial / 4:
            return
        self._final_ack_repeated_at = now
        self._send_ack_for(self._final_acks)

    def _drop_handshake_state(self) -> None:
        """Forget what only the handshake needed, once it has completed.

        An idle connection then holds its current traffic secrets, the resumption secret
        (tickets), the final ACKs (re-sent if the peer repeats its last flight) and the
        flight still awaiting an ACK; the transcript, the handshake and master secrets,
        the hellos and our key shares go (less memory per connection, and secrets that
        are no longer needed are not kept: RFC 8446 §7.1 forward secrecy).
        """
        self._transcript = _SPENT_TRANSCRIPT
        ks = self._schedule
        if ks is not None:
            ks.early_secret = b""
            ks.handshake_secret = ks.master_secret = None
        self._psk_schedule = None
        self._c_hs = self._s_hs = self._c_app = self._s_app = b""
        self._hello_bodies.clear()
        self._key_shares.clear()
        self._client_hello = None
        self._cert_request = None
        self._hrr_cookie = None
        self._records.retire_write_epoch(0)  # no plaintext record is sent after this

    def _on_post_handshake(self, msg_type: int, msg: Any, now: float) -> None:
        # Post-handshake messages are ACKed at once (RFC 9147 §7.1).
        self._ack_at = now
        if msg_type == HandshakeType.new_session_ticket:
            if not self.is_client:
                raise UnexpectedMessage("NewSessionTicket sent to a server")
            cfg = self.config
            assert isinstance(cfg, ClientConfig) and self._schedule is not None
            assert self._suite is not None
            if msg.ticket_lifetime > 7 * 24 * 3600:
                raise IllegalParameter("ticket lifetime over seven days")  # RFC 8446 §4.6.1
            early = msg.extension(ExtensionType.early_data)
            session = Session(
                max_early_data=_decode(early, ext.pull_early_data_ticket) if early else 0,
                ticket=msg.ticket,
                psk=self._schedule.resumption_psk(self._resumption_secret, msg.ticket_nonce),
                suite=self._suite,
                received_at=self._wall_clock().timestamp(),
                lifetime=msg.ticket_lifetime,
                age_add=msg.ticket_age_add,
                alpn=self._alpn,
                server_name=cfg.server_name,
                peer_certificates=self._peer_chain,
            )
            self._event(
                NewSessionTicketReceived(
                    msg.ticket, msg.ticket_lifetime, msg.ticket_age_add, msg.ticket_nonce, session
                )
            )
        elif msg_type == HandshakeType.request_connection_id:
            self._on_request_connection_id(msg, now)
        elif msg_type == HandshakeType.new_connection_id:
            self._on_new_connection_id(msg)
        elif msg_type == HandshakeType.key_update:
            if msg.request_update not in (0, 1):
                raise IllegalParameter("bad KeyUpdate request_update")
            self.stats["key_updates_received"] += 1
            assert self._schedule is not None and self._suite is not None
            self._read_secret = self._schedule.next_application_traffic_secret(self._read_secret)
            epoch = max(self._records.read_epochs()) + 1
            self._records.install_read_epoch(epoch, self._suite, self._read_secret, now)
            self._event(KeyUpdated(sending=False, epoch=epoch))
            if msg.request_update == KeyUpdateRequest.update_requested:
                self._send_ack(now)
                self.key_update(request_peer=False)


# Our own Certificate message depends only on the configured chain: encoded once per chain.
_CERTIFICATE_BODIES: dict[int, tuple[tuple[x509.Certificate, ...], bytes]] = {}


def _certificate_body(chain: tuple[x509.Certificate, ...]) -> bytes:
    """The body of a Certificate message (empty request context) carrying `chain`."""
    entry = _CERTIFICATE_BODIES.get(id(chain))
    if entry is not None and entry[0] is chain:
        return entry[1]
    entries = tuple(msgs.CertificateEntry(c.public_bytes(Encoding.DER)) for c in chain)
    _, body = msgs.push_message(msgs.Certificate(b"", entries))
    if len(_CERTIFICATE_BODIES) >= 64:
        _CERTIFICATE_BODIES.clear()
    _CERTIFICATE_BODIES[id(chain)] = (chain, body)
    return body


def _extension_name(ext_type: int) -> str:
    try:
        return ExtensionType(ext_type).name
    except ValueError:
        return f"extension {ext_type}"


def _decode(data: bytes, pull: Any) -> Any:
    try:
        return ext.decode(data, pull)
    except DecodeError as exc:
        raise DecodeErrorAlert(f"malformed extension: {exc}") from None


def _same_name(a: str | None, b: str | None) -> bool:
    """Host names compare without regard to case (RFC 6066 §3, RFC 4343)."""
    return (a.lower() if a is not None else None) == (b.lower() if b is not None else None)


def _record_size_limit(data: bytes) -> int:
    """The peer's RecordSizeLimit; above 2^14+1 it means no more than the protocol's limit."""
    value: int = _decode(data, ext.pull_record_size_limit)
    if value < 64:
        raise IllegalParameter(f"record_size_limit {value} below 64")  # RFC 8449 §4
    return min(value, 16385)


_PKCS1 = frozenset(
    {
        SignatureScheme.rsa_pkcs1_sha256,
        SignatureScheme.rsa_pkcs1_sha384,
        SignatureScheme.rsa_pkcs1_sha512,
    }
)


@lru_cache(maxsize=64)
def _signing_schemes(schemes: tuple[SignatureScheme, ...]) -> tuple[SignatureScheme, ...]:
    """The configured schemes CertificateVerify may use (not PKCS#1 v1.5, RFC 8446 §4.4.3)."""
    return tuple(s for s in schemes if s not in _PKCS1)


def _is_ip(name: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _type_name(msg_type: int) -> str:
    try:
        return HandshakeType(msg_type).name
    except ValueError:
        return f"handshake type {msg_type}"


__all__ = ["Connection"]
