"""The sans-IO core's counters: the names a connection counts under (``STAT_NAMES``,
``RARE_STAT_NAMES``) and snapshots as frozen dataclasses (``statistics()``)."""

from __future__ import annotations

from dataclasses import dataclass

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
    # RFC 8879, on most handshakes (compression is on by default): common, not rare.
    "certificates_compressed",  # our Certificate sent as a CompressedCertificate
    "certificates_decompressed",  # the peer's CompressedCertificate decompressed
)
# Counters that stay zero on almost every connection, kept apart in a dict made on first use
# (Connection.count): the common ones above then stay within the 30 keys a CPython
# key-sharing dict allows (see memory/counters.py), and an ordinary connection pays nothing
# for these.
RARE_STAT_NAMES = (
    "tickets_withheld",  # server: tickets not sent (client chain too large, or no memory)
    "psk_refused_identity",  # server: ticket of another SNI, or without a required client cert
    "session_server_name_mismatch",  # client: session for another name, not offered
    "acks_unsent",  # ACKs not sent for want of memory (output left uncollected)
    "dropped_conflicting_fragments",  # plaintext hello fragments that conflicted: dropped
    "cid_requests_refused",  # RequestConnectionId answered with fewer CIDs (we hold the cap)
    "keys_dropped_at_integrity_limit",  # old read keys dropped after too many forgeries
    "handshake_unanswered",  # ended: the peer never answered our flight (unanswered_timeout)
    "amplification_limited",  # datagrams not sent: over 3x what an unproven address sent
    "unacked_flights_abandoned",  # flights after the handshake no longer retransmitted: no ACK
    "flight_datagrams_unsent",  # flight datagrams not sent for want of memory: sent again later
    "server_callback_errors",  # certificate/ALPN callback raised or answered unusably
    "verify_callback_errors",  # verify_callback raised or answered unusably
    "ech_rejected",  # server: an encrypted ClientHello no ech_keys opened (outer answered)
    "mtu_backoffs",  # flight datagrams made smaller after repeated timeouts (RFC 9147 §4.4)
    "path_checks_started",  # a new address of the peer's probed before use (RFC 9147 §11)
    "path_checks_abandoned",  # checks ended without a move (see ConnectionStatistics)
)


@dataclass(frozen=True, slots=True)
class ConnectionStatistics:
    """One connection's counters (``Connection.statistics()``)."""

    datagrams_in: int
    datagrams_out: int
    records_in: int
    app_bytes_in: int
    app_bytes_out: int
    retransmissions: int
    acks_sent: int
    acks_received: int
    key_updates_sent: int
    key_updates_received: int
    hello_retry_requests_sent: int
    hello_retry_requests_received: int
    handshake_restarts: int  # a client's handshake begun afresh (a server's version refusal)
    # the peer moved to a new address once it ACKed a record sent only there (RFC 9147 §11):
    address_changes: int
    # checks of a new address a newest record came from: started, and ended without a move
    # (a newer record from the peer's address: a copy raced from elsewhere, or the peer
    # moved back; a flight acknowledged through the old address alone; another new
    # address; or close()):
    path_checks_started: int
    path_checks_abandoned: int
    early_data_offered: int
    early_data_replays: int  # 0-RTT refused as a replay of an earlier use of its ticket
    early_data_bytes_in: int
    early_data_bytes_out: int
    session_server_name_mismatch: int  # client: a session for another name, not offered
    # server: tickets refused (a full handshake instead) because they were issued under
    # another server name, or without the client certificate this server requires
    psk_refused_identity: int
    tickets_withheld: int  # server: tickets not sent (client chain too large, or no memory)
    idle_releases: int  # times an idle connection let its ciphers' OpenSSL objects go
    cid_requests_refused: int  # RequestConnectionId answered with fewer CIDs (cap, or no free CID)
    # flights after the handshake (the final flight, a KeyUpdate, ...) the peer never ACKed,
    # no longer retransmitted after MAX_UNACKED_RETRANSMISSIONS timeouts:
    unacked_flights_abandoned: int
    # flight datagrams (or the ACK of the final flight) not sent for want of pooled memory,
    # as if lost: the retransmission timer (or the peer's repeat) sends them again:
    flight_datagrams_unsent: int
    # handshake flights retransmitted in smaller datagrams after repeated timeouts (RFC 9147
    # §4.4); application records keep the MTU the application set:
    mtu_backoffs: int
    keys_dropped_at_integrity_limit: int  # old read keys dropped after too many forgeries
    handshake_unanswered: int  # ended: the peer never answered our flight
    amplification_limited: int  # datagrams not sent: over 3x what an unproven address sent
    # server: certificate_callback or alpn_callback raised or returned something unusable
    # (a bug in the application): the handshake ended with internal_error
    server_callback_errors: int
    verify_callback_errors: int  # verify_callback raised or returned something unusable
    # server: an Encrypted Client Hello (RFC 9849) none of ech_keys decrypts (unknown config,
    # GREASE, corrupted): the handshake went on with the outer ClientHello, retry_configs sent
    ech_rejected: int
    certificates_compressed: int  # our Certificate sent as a CompressedCertificate (RFC 8879)
    certificates_decompressed: int  # the peer's CompressedCertificate decompressed (RFC 8879)
    # Input dropped (and not fatal), by reason:
    dropped_handshake_fragments: int
    dropped_app_data_early: int
    # Unprotected records dropped: malformed, or any but a repeated hello once keys exist.
    dropped_malformed_plaintext: int
    dropped_unexpected_content: int
    dropped_damaged_hello: int
    # Unauthenticated partial hellos dropped for a conflicting (forged or damaged) fragment:
    dropped_conflicting_fragments: int
    dropped_early_data: int
    alerts_unsent: int  # alerts not sent for want of memory
    acks_unsent: int  # ACKs not sent for want of memory (output left uncollected)
    record_drops: dict[str, int]  # the record layer's drops by reason (auth_failed, replay, ...)
    reassembly: dict[str, int]  # handshake reassembly counters (duplicates, over_budget, ...)
    memory_in_use: int  # bytes of pooled memory the connection holds
    memory_high_water: int
    leases_live: int


@dataclass(frozen=True, slots=True)
class ServerEndpointStatistics:
    """A server endpoint's admission counters (``ServerEndpoint.statistics()``)."""

    datagrams: int
    connections: int  # live now
    connections_created: int
    half_open: int  # handshakes in progress now
    emergency: bool  # memory is short: quotas tightened, cookies demanded
    emergencies: int
    address_changes: int
    heap_trims: int
    # ClientHellos from sources over their quota given to the cookie gate (a cookie
    # exchange for a client whose bucket a spoofer may have emptied), within a budget:
    over_quota_cookie_checks: int
    # Datagrams dropped at admission, by reason:
    rate_limited: int
    too_many_connections: int
    too_many_connections_per_ip: int
    too_many_half_open: int
    too_many_half_open_per_ip: int
    gate_dropped: int  # first ClientHellos the cookie gate refused or could not read
    not_for_a_connection: int
    half_open_shed: int  # half-open handshakes shed under memory pressure
    half_open_unanswered: int  # half-open handshakes ended: their peer never answered
    half_open_displaced: int  # unproven half-opens that gave way to a client with a cookie
    memory_refused: int
    # No free connection ID (a short connection_id whose space is full): a new connection
    # refused at admission, or a RequestConnectionId answered with fewer CIDs.
    cid_space_exhausted: int
    # Datagrams of other protocols (STUN, RTP/RTCP, ...; RFC 7983) handed to
    # on_non_dtls_datagram, and the times it raised:
    non_dtls_datagrams: int
    non_dtls_handler_errors: int
    gate: dict[str, int]  # the cookie gate's counters (hello_retry_requests, cookies_ok, ...)
    gate_partials: int  # fragmented first ClientHellos being reassembled now
    memory_in_use: int
    memory_high_water: int
    pool_in_use_bytes: int
    tracked_sources: int  # source addresses with a token bucket now
