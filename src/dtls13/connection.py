"""The sans-IO DTLS 1.3 connection: datagrams in, datagrams out, one timer.

Shaped like aioquic's ``QuicConnection``: ``connect(addr, now)``,
``receive_datagram(data, addr, now)``, ``datagrams_to_send(now)``, ``get_timer()``,
``handle_timer(now)``, ``next_event()``, ``send(data)``, ``key_update()``, ``close()``.
No sockets, no clock, no trio: time comes in as ``now``.

Every buffer the connection holds (datagrams, records, reassembly, flights) is a lease
charged to this connection's owner in the pools; ``close()`` (or a fatal error) gives
everything back.

Here: the connection's state (``__slots__``, ``__init__``), ``connect``, events, queries and
counters. The rest of its methods are functions of ``connection_receive`` (records in),
``connection_send`` (records out), ``connection_timers``, ``connection_alerts``,
``connection_handshake``, ``connection_new_association``, ``connection_flights`` and
``connection_keying`` (the peer's credentials, exporters, SRTP keys) and
``connection_path`` (the reachability test of a peer's new address), bound in the class
body as methods (or properties): a call to one costs what a call to a method (or property)
defined here does.
"""

from __future__ import annotations

import datetime
from collections import deque
from collections.abc import Callable
from typing import Any

from . import connection_alerts as _alerts
from . import connection_flights as _flights
from . import connection_handshake as _handshake
from . import connection_keying as _keying
from . import connection_new_association as _new_association
from . import connection_path as _path
from . import connection_receive as _receive
from . import connection_send as _send
from . import connection_timers as _timers
from ._fast import Lease
from .alerts import LocalProtocolError
from .arguments import check_now
from .config import ClientConfig, ServerConfig
from .connection_flights import MAX_LOCAL_CIDS as MAX_LOCAL_CIDS
from .connection_keying import bound_property
from .connection_send import MIN_MTU as MIN_MTU
from .crypto.suites import CipherSuite
from .events import ConnectionTerminated, Event
from .handshake import messages as msgs
from .handshake.client import ClientHandshake
from .handshake.constants import KeyUpdateRequest
from .handshake.context import HandshakeContext
from .handshake.flights import Flight
from .handshake.fragments import COUNTER_NAMES as REASSEMBLY_COUNTER_NAMES
from .handshake.fragments import Reassembler
from .handshake.server import ServerHandshake
from .handshake.state import ClientState, State
from .memory import PoolSet, default_pool_set
from .memory.counters import zero_counters
from .record import RecordLayer, RecordNumber
from .statistics import RARE_STAT_NAMES as RARE_STAT_NAMES
from .statistics import STAT_NAMES as STAT_NAMES
from .statistics import ConnectionStatistics

Address = Any
Config = ClientConfig | ServerConfig


# What every connection with no event waiting holds instead of a deque of its own. A
# tuple, so that appending to it fails loudly: events go through _event().
_NO_EVENTS: tuple[()] = ()


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
    # The datagram size of handshake flights once repeated retransmission timeouts made it
    # smaller than `mtu` (connection_timers.py); None: `mtu`. Never the application
    # records' size (RFC 9147 §4.4). Rare, so kept in the instance's __dict__ when set.
    _flight_mtu: int | None = None
    # A new address of the peer's being checked (connection_path.py); None: none. Rare,
    # so kept in the instance's __dict__ while there is one.
    _path_check: _path.PathCheck | None = None

    __slots__ = (
        "__dict__",
        "__weakref__",
        "_ack_at",
        "_ack_key_update",
        "_ack_list",
        "_amplification",
        "_cid_issuer",
        "_cid_request_outstanding",
        "_closed_cleartext_mtu",
        "_cookie_checked",
        "_current_seq",
        "_decoded_hello",
        "_enforce_record_limit",
        "_epoch2_records",
        "_events",
        "_final_ack_repeated_at",
        "_final_acks",
        "_flight",
        "_handshake_deadline",
        "_hello_records",
        "_hs",
        "_idle_check_at",
        "_idle_mark",
        "_idle_reassembly",
        "_key_update_deferred",
        "_key_update_pending",
        "_newest_protected",
        "_now",
        "_other_hello",
        "_outbox",
        "_peer_record_limit",
        "_rare_stats",
        "_reassembler",
        "_records",
        "_restarts",
        "_retransmit_at",
        "_retransmit_initial",
        "_retransmitted_at",
        "_retransmitted_this_input",
        "_rto",
        "_send_seq",
        "_spare_peer_cids",
        "_timeouts",
        "_unanswered_at",
        "_unanswered_timeout",
        "_wall_clock",
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
        self._cid_issuer = cid_issuer
        self.on_activity = on_activity
        # Connection IDs we issued (the peer puts one on its records) and the peer's spares.
        self.local_cids: list[bytes] = []
        self._spare_peer_cids: tuple[bytes, ...] = ()  # a tuple: most connections have none
        self._cid_request_outstanding = False
        # A deque of its own only while events wait: an idle connection shares the
        # empty _NO_EVENTS instead of holding a ~760-byte deque block.
        self._events: deque[Event] | tuple[()] = _NO_EVENTS
        # A list of its own only while datagrams wait (like _events).
        self._outbox: list[tuple[Lease, Address]] | tuple[()] = ()
        # The largest datagram: what the application set, for its records and ours.
        self.mtu = config.mtu
        self._handshake_deadline: float | None = None
        self._unanswered_timeout = unanswered_timeout
        self._unanswered_at: float | None = None
        self._cookie_checked = False  # a server: the peer returned a cookie we issued
        # [limit, bytes from, bytes to the peer] while its address is not validated yet
        # (None: no limit, or validated since; one slot, nothing kept once validated).
        self._amplification: list[float] | None = (
            None if self.is_client or amplification_limit is None else [amplification_limit, 0, 0]
        )
        self._restarts = 0
        # The initial retransmission timeout; set_retransmit_timeout() changes it.
        self._retransmit_initial = config.retransmit_initial
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
        # A server's reassembly of a fragmented ClientHello other than the one it answered
        # (a client that started over, see _other_client_hello), while it holds keys.
        self._other_hello: Reassembler | None = None
        # After the handshake, while no message is in reassembly: (next message_seq, the
        # counters' values by COUNTER_NAMES) instead of a Reassembler (it and its pool owner
        # are ~1.3 KiB).
        self._idle_reassembly: tuple[int, tuple[int, ...]] | None = None
        # connection_id (RFC 9146) and record_size_limit (RFC 8449), once negotiated
        self.cid_negotiated = False
        self._peer_record_limit: int | None = None
        self._enforce_record_limit = False
        self._newest_protected = (0, -1)  # (epoch, seq) of the newest authenticated record
        if self.is_client and self.local_cids and self.local_cids[0]:
            self._records.tentative_cid_length = len(self.local_cids[0])
        # handshake: the context of our role (handshake/client.py, handshake/server.py)
        local_cid = self.local_cids[0] if self.local_cids else None
        hs: HandshakeContext
        if isinstance(self.config, ClientConfig):
            hs = ClientHandshake(
                self.config,
                wall_clock=self._wall_clock,
                count=self._count,
                local_cid=local_cid,
                scratch=self._scratch_lease,
            )
        else:
            hs = ServerHandshake(
                self.config,
                wall_clock=self._wall_clock,
                count=self._count,
                local_cid=local_cid,
                scratch=self._scratch_lease,
                after_stateless_retry=first_message_seq > 0,
            )
        self._hs = hs
        # Our next message_seq; after a stateless HelloRetryRequest (message 0) it is 1.
        self._send_seq = 0 if self.is_client else first_message_seq
        # reliability
        self._flight: Flight | None = None
        self._rto = self._retransmit_initial
        self._retransmit_at: float | None = None
        self._timeouts = 0
        self._closed_cleartext_mtu: int | None = None
        # Records to ACK (a list of its own only while there are any, like _outbox).
        self._ack_list: list[RecordNumber] | tuple[()] = ()
        self._ack_at: float | None = None
        self._ack_key_update = False  # the pending ACK covers a KeyUpdate of the peer's
        self._final_acks: list[RecordNumber] = []  # re-sent when the peer repeats its final flight
        self._final_ack_repeated_at: float | None = None
        self._retransmitted_this_input = False
        self._retransmitted_at: float | None = None
        # key update
        self._key_update_pending = False
        self._key_update_deferred: KeyUpdateRequest | None = None
        # Plaintext records holding fragments of a hello still in reassembly, by message_seq:
        # ACKed only once their message is complete (a forged fragment that conflicts with
        # the genuine hello is dropped, and its record must then not be ACKed, §7).
        self._hello_records: dict[int, list[RecordNumber]] = {}
        self._epoch2_records = 0  # records that authenticated under the handshake keys
        self._current_seq = 0
        self._decoded_hello: tuple[bytes, msgs.ClientHello] | None = None

    def expect_client_hello(self, body: bytes, client_hello: msgs.ClientHello) -> None:
        """A server's endpoint already decoded the ClientHello about to come in: if the
        next handshake message is a ClientHello with exactly this body, it is used as is."""
        self._decoded_hello = (body, client_hello)

    # -- public API ---------------------------------------------------------------------

    def connect(self, addr: Address, now: float) -> None:
        """Start the handshake (client)."""
        check_now(now)
        self._activity()
        if not self.is_client:
            raise LocalProtocolError("connect() is for clients")
        if self._hs.state is not ClientState.START:
            raise LocalProtocolError("connect() called twice")
        self.peer_address = addr
        self._now = now
        self.handshake_started = now
        self._handshake_deadline = now + self.config.handshake_timeout
        self._arm_unanswered(now)
        hs = self._hs
        assert isinstance(hs, ClientHandshake)
        self._guard(now, lambda: self._apply(hs.start(self._hello_padding()), now))

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

    def _hello_padding(self) -> int:
        """The datagram size a first ClientHello is padded to (0: not padded)."""
        config = self.config
        if isinstance(config, ClientConfig) and config.pad_client_hello:
            return self.flight_mtu
        return 0

    # -- queries ------------------------------------------------------------------------

    @property
    def peer_cid(self) -> bytes | None:
        """The CID we put on records to the peer (None: none)."""
        return self._records.write_cid

    @property
    def spare_peer_cids(self) -> tuple[bytes, ...]:
        return self._spare_peer_cids

    @property
    def state(self) -> State:
        """Where the handshake stands (a ClientState or a ServerState)."""
        return self._hs.state

    @property
    def handshake(self) -> HandshakeContext:
        """The handshake context (handshake/client.py or handshake/server.py): for tests
        and debugging, not an API (its attributes change with the implementation)."""
        return self._hs

    @property
    def flight_mtu(self) -> int:
        """The datagram size handshake flights are sent in now: `mtu`, or less after
        retransmissions went unanswered (RFC 9147 §4.4). Application records keep `mtu`."""
        return self._flight_mtu or self.mtu

    @property
    def closed(self) -> bool:
        return self._hs.closed

    @property
    def handshake_complete(self) -> bool:
        return self._hs.connected

    @property
    def address_validated(self) -> bool:
        """Whether the peer proved it receives what we send to its address: RFC 9147 §5.1,
        "A client address is valid after a cookie exchange or handshake completion", or
        once one of its records authenticated under the handshake keys (derived from our
        flight). Until then its address may be spoofed."""
        return self._cookie_checked or self._epoch2_records > 0 or self._hs.connected

    @property
    def cipher_suite(self) -> CipherSuite | None:
        return self._hs.suite

    @property
    def alpn_protocol(self) -> str | None:
        return self._hs.alpn

    # -- counters -----------------------------------------------------------------------

    def count(self, name: str, n: int = 1) -> None:
        """Add `n` to one of the RARE_STAT_NAMES counters."""
        rare = self._rare_stats
        if rare is None:
            rare = self._rare_stats = {}
        rare[name] = rare.get(name, 0) + n

    def _count(self, name: str, n: int = 1) -> None:
        """Add `n` to a counter, common (STAT_NAMES) or rare (RARE_STAT_NAMES)."""
        if name in self.stats:
            self.stats[name] += n
        else:
            self.count(name, n)

    def _scratch_lease(self, size: int) -> Lease:
        """Pooled memory for the handshake's transient buffers (a decompressed
        certificate), charged to this connection."""
        return self.pools.acquire(size, self.owner)

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
            reassembly=(
                dict(self._reassembler.counters)
                if self._reassembler is not None
                else dict(zip(REASSEMBLY_COUNTER_NAMES, self._idle_reassembly[1], strict=True))
                if self._idle_reassembly is not None
                else {}
            ),
            memory_in_use=self.owner.in_use,
            memory_high_water=self.owner.high_water,
            leases_live=self.owner.live,
        )

    # -- what the handshake established (connection_keying.py) --------------------------

    peer_certificates = bound_property(_keying.peer_certificates)
    peer_verification = bound_property(_keying.peer_verification)
    peer_ocsp_response = bound_property(_keying.peer_ocsp_response)
    peer_signed_certificate_timestamps = bound_property(_keying.peer_signed_certificate_timestamps)
    peer_public_key = bound_property(_keying.peer_public_key)
    export_keying_material = _keying.export_keying_material
    export_early_keying_material = _keying.export_early_keying_material
    srtp_profile = bound_property(_keying.srtp_profile)
    srtp_mki = bound_property(_keying.srtp_mki)
    srtp_keying_material = _keying.srtp_keying_material

    # -- records in (connection_receive.py) ---------------------------------------------

    receive_datagram = _receive.receive_datagram
    receive_datagram_data = _receive.receive_datagram_data
    _receive_general = _receive.receive_general
    _receive_datagram = _receive.read_datagram
    _receive_records = _receive.receive_records
    _check_integrity = _receive.check_integrity
    _track_path = _receive.track_path
    _app_data_fast = _receive.app_data_fast
    _handle_records = _receive.handle_records
    _handle_record = _receive.handle_record
    _handle_plaintext_after_keys = _receive.handle_plaintext_after_keys
    _on_early_data = _receive.on_early_data

    # -- records out (connection_send.py) -----------------------------------------------

    send = _send.send
    datagrams_to_send = _send.datagrams_to_send
    send_early_data = _send.send_early_data
    early_data_possible = bound_property(_send.early_data_possible)
    get_cleartext_mtu = _send.get_cleartext_mtu
    set_ciphertext_mtu = _send.set_ciphertext_mtu
    _within_amplification_limit = _send.within_amplification_limit
    _queue = _send.queue
    _max_payload = _send.max_payload

    # -- alerts, errors, the end of the connection (connection_alerts.py) ---------------

    close = _alerts.close
    abandon = _alerts.abandon
    _guard = _alerts.guard
    _fail = _alerts.fail
    _terminate = _alerts.terminate
    _send_alert = _alerts.send_alert
    _handle_alert = _alerts.handle_alert

    # -- the timer (connection_timers.py) -----------------------------------------------

    get_timer = _timers.get_timer
    handle_timer = _timers.handle_timer
    _activity = _timers.activity
    _arm_unanswered = _timers.arm_unanswered
    _arm_idle_check = _timers.arm_idle_check
    _idle_check = _timers.idle_check

    # -- handshake input and output (connection_handshake.py) ---------------------------

    _reassembly = _handshake.reassembly
    _next_receive_seq = _handshake.next_receive_seq
    _idle_reassembler = _handshake.idle_reassembler
    _new_reassembler = _handshake.new_reassembler
    _restart_handshake = _handshake.restart_handshake
    _handle_handshake_record = _handshake.handle_handshake_record
    _fragment_in_right_epoch = staticmethod(_handshake.fragment_in_right_epoch)
    _buffer_fragment = _handshake.buffer_fragment
    _buffer_hello_fragment = _handshake.buffer_hello_fragment
    _on_peer_repeat = _handshake.on_peer_repeat
    _process_messages = _handshake.process_messages
    _first_hello = _handshake.first_hello
    _handle_message = _handshake.handle_message
    _apply = _handshake.apply
    _server_completed = _handshake.server_completed
    _complete = _handshake.complete
    _repeat_final_acks = _handshake.repeat_final_acks
    _drop_handshake_state = _handshake.drop_handshake_state

    # -- another ClientHello: a new association (connection_new_association.py) ---------

    _changed_hello = _new_association.changed_hello
    _other_client_hello = _new_association.other_client_hello
    _answer_other_client_hello = _new_association.answer_other_client_hello
    _drop_other_hello = _new_association.drop_other_hello

    # -- flights, ACKs, retransmission, post-handshake (connection_flights.py) ----------

    key_update = _flights.key_update
    request_connection_ids = _flights.request_connection_ids
    use_spare_connection_id = _flights.use_spare_connection_id
    set_retransmit_timeout = _flights.set_retransmit_timeout
    _send_key_update = _flights.send_key_update
    _new_cid = _flights.new_cid
    _use_cids = _flights.use_cids
    _key_update_refusal = _flights.key_update_refusal
    _send_post_handshake = _flights.send_post_handshake
    _on_request_connection_id = _flights.on_request_connection_id
    _on_new_connection_id = _flights.on_new_connection_id
    _start_flight = _flights.start_flight
    _add_message = _flights.add_message
    _add_encoded = _flights.add_encoded
    _trace_sent = _flights.trace_sent
    _emit_flight = _flights.emit_flight
    _retransmit = _flights.retransmit
    _send_ack = _flights.send_ack
    _send_ack_for = _flights.send_ack_for
    _handle_ack = _flights.handle_ack
    _on_flight_acknowledged = _flights.on_flight_acknowledged
    _forget_flight_mtu = _flights.forget_flight_mtu
    _on_post_handshake = _flights.on_post_handshake

    # -- the peer's address (connection_path.py) ---------------------------------------

    _follow = _path.follow
    _after_path_input = _path.after_input
    _send_path_copies = _path.send_copies
    _within_check_limit = _path.within_check_limit
    _on_ack_numbers = _path.on_ack_numbers
    _hold = _path.hold
    _end_path_check = _path.end_check
    _drop_path_check = _path.drop_check
    _release_held = _path.release_held


__all__ = ["Connection"]
