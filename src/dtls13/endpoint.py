"""The sans-IO server endpoint: one socket's datagrams to connections, with DoS protection.

Admission happens at ingress, before anything but the fixed header is read and before any
per-peer state exists: per-source token buckets, caps on half-open handshakes and on
connections (total and per source address), the pools' memory budget. Strangers go through
the HelloGate (stateless cookies; bounded assembly of fragmented first ClientHellos).
Every drop has a named counter in ``statistics()``.
"""

from __future__ import annotations

import datetime
import heapq
import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from math import inf
from types import MappingProxyType
from typing import Any, Literal

from . import endpoint_admission
from ._fast import Lease
from .admission import (
    DROP_COUNTERS,
    CidIssuer,
    ConnectionTable,
    DoSProtectionConfig,
    SourceRates,
    cid_of,
    is_client_hello,
    warn_if_cid_space_is_small,
)
from .arguments import check_datagram, check_now
from .cid_layout import NoFreeConnectionId, check_cid_prefix
from .config import ServerConfig
from .connection import Connection
from .demux import NonDtlsHandler, is_other_protocol
from .handshake.gate import HelloGate
from .memory import PoolSet, default_pool_set
from .memory.trim import trim_heap
from .statistics import ServerEndpointStatistics

CookiePolicy = Literal["always", "under_load", "never"]

__all__ = ["CookiePolicy", "DoSProtectionConfig", "ServerEndpoint", "ServerEndpointDebugState"]


# Heap trims after idle releases (see ServerEndpoint._trim_after_releases): after this
# many connections let their ciphers go (~8 KiB each), at most once per this many seconds.
TRIM_BATCH = 64
TRIM_INTERVAL = 1.0


@dataclass(frozen=True, slots=True)
class ServerEndpointDebugState:
    """What ``ServerEndpoint.debug_state()`` shows: read-only views of its tables."""

    half_open: Mapping[Connection, Any]  # handshakes in progress: connection -> address
    by_cid: Mapping[bytes, Connection]  # the CIDs we issued -> their connection
    replacements: Mapping[Any, Connection]  # new handshakes from an address still in use
    armed: Mapping[Connection, float]  # connections with a timer: connection -> deadline


class ServerEndpoint:
    """Demultiplexes one socket's datagrams to connections by CID, else by source address."""

    def __init__(
        self,
        config: ServerConfig,
        *,
        pools: PoolSet | None = None,
        dos: DoSProtectionConfig | None = None,
        cookie_policy: CookiePolicy = "under_load",
        wall_clock: Callable[[], datetime.datetime] | None = None,
        on_non_dtls_datagram: NonDtlsHandler | None = None,
        cid_prefix: bytes = b"",
    ) -> None:
        """`on_non_dtls_datagram(data, addr)` takes the datagrams of the protocols that may
        share a DTLS-SRTP port (STUN, ZRTP, TURN channels, RTP/RTCP; RFC 7983 §7) instead
        of the connections and the cookie gate; without it they are dropped as before.
        `cid_prefix`: bytes every CID issued here starts with, naming this endpoint to
        whatever routes by CID (see dtls13.cid_layout)."""
        if not isinstance(config, ServerConfig):
            raise TypeError("a ServerEndpoint needs a ServerConfig")
        if dos is not None and not isinstance(dos, DoSProtectionConfig):
            raise TypeError("dos must be a DoSProtectionConfig (or None)")
        if cookie_policy not in ("always", "under_load", "never"):
            raise ValueError("cookie_policy must be 'always', 'under_load' or 'never'")
        self.cid_prefix = check_cid_prefix(cid_prefix, config.cid_length)
        self.config = config
        self.pools = pools if pools is not None else default_pool_set()
        self.dos = dos or DoSProtectionConfig()
        warn_if_cid_space_is_small(config.cid_length, self.cid_prefix, self.dos)
        self.cookie_policy: CookiePolicy = cookie_policy
        self._wall_clock = wall_clock
        self.on_non_dtls_datagram = on_non_dtls_datagram
        self.owner = self.pools.owner("endpoint", id(self), self.dos.max_total_memory)
        self.gate = HelloGate(
            config,
            self.pools,
            owner=self.owner,
            per_source_bytes=self.dos.handshake_reassembly_bytes,
            total_bytes=self.dos.reassembly_total_bytes,
            timeout=self.dos.reassembly_timeout,
        )
        # A first ClientHello too small to pay for our first flight gets a cookie.
        if cookie_policy != "never":
            self.gate.amplification_limit = self.dos.amplification_limit
        self.connections: ConnectionTable = ConnectionTable()
        # Connections admitted half-open, by address: a superset of the half-open ones in
        # `connections`, pruned whenever counted (see _half_open_now).
        self._half_open: dict[Connection, Any] = {}
        # A half-open connection stops being one only when the table changes or one of
        # them takes a datagram (its handshake may complete): while neither happened, the
        # last pruning still holds (a flood of strangers counts them in O(1)).
        self._half_open_inputs = 0
        self._half_open_pruned: tuple[int, int] | None = None
        # Half-open handshakes per host, counted when `_half_open` is pruned.
        self._half_open_hosts: dict[Any, int] = {}
        # CIDs we issued -> their connection (RFC 9147 §9): routes whatever the source.
        self._cids = CidIssuer(self.cid_prefix, config.random_bytes)
        self._by_cid = self._cids.by_cid
        self._cid_length = config.cid_length or 0
        # §5.11: a new association from an address that already has one, until it proves
        # itself with a verified Finished.
        self._replacements: dict[Any, Connection] = {}
        self._new: list[Connection] = []
        # Bound once: each connection holds these two callbacks, and a bound method made
        # per connection would be 64 B more each.
        self._issue_cid_cb = self._issue_cid
        self._touch_cb = self.touch
        self._rates = SourceRates(self.dos)
        self._replies: list[tuple[Lease, Any]] = []
        self._started: dict[int, float] = {}
        # Work is tracked per connection so each call costs O(connections with work), not
        # O(all connections): those touched since the last datagrams_to_send() (output), those
        # whose timer may have moved, and a heap of (deadline, n, conn) whose entries are
        # valid only while _armed[conn] still equals their deadline (lazy invalidation).
        self._out_dirty: dict[Connection, None] = {}
        self._timer_dirty: dict[Connection, None] = {}
        self._armed: dict[Connection, float] = {}
        self._heap: list[tuple[float, int, Connection]] = []
        self._seq = itertools.count()
        # Connections that changed state outside a receive_datagram() return value: timers
        # fired, associations the endpoint shed or superseded (see attention()).
        self._attention: dict[Connection, None] = {}
        # Idle connections' ciphers let go since the heap was last trimmed, and when it may
        # be next (see _trim_after_releases). trim_heap=False leaves the heap alone.
        self.trim_heap = True
        self._released_since_trim = 0
        self._next_trim = -inf
        self.emergency = False
        self.counters: dict[str, int] = dict.fromkeys(DROP_COUNTERS, 0)
        self.counters.update(
            datagrams=0,
            connections_created=0,
            emergencies=0,
            address_changes=0,
            heap_trims=0,
            over_quota_cookie_checks=0,
        )
        self.counters.update(non_dtls_datagrams=0, non_dtls_handler_errors=0)
        self.closed = False

    # -- the sans-IO surface ----------------------------------------------------------

    def receive_datagram(self, data: Any, addr: Any, now: float) -> Connection | None:
        """Route one datagram; returns the connection that took it, if any. Never raises
        for bad network input (TypeError at once for data that is not bytes-like or a
        `now` that is not a time)."""
        check_datagram(data)
        check_now(now)
        if self.closed:
            return None
        self.counters["datagrams"] += 1
        if self.on_non_dtls_datagram is not None and is_other_protocol(data):
            # Before admission and any parsing: no state, one copy, counted (RFC 7983 §7).
            self._hand_over(data, addr)
            return None
        self._update_emergency()
        if self._cid_length:
            cid = cid_of(data, self._cid_length)
            by_cid = self._by_cid.get(cid) if cid is not None else None
            if by_cid is not None and not by_cid.closed:
                return self._to_cid(by_cid, data, addr, now)
        conn = self.connections.get(addr)
        if conn is not None and conn.handshake_complete and not is_client_hello(data):
            return self._to_existing(conn, data, addr, now)
        if conn is not None and conn.address_validated and not is_client_hello(data):
            # A half-open handshake whose peer proved its address: like an established
            # connection, it is not charged to a per-source bucket that spoofers can empty.
            self._half_open_inputs += 1
            conn._receive_general(data, addr, now)
            return conn
        if not self._rates.admit(data, addr, now, self.emergency):
            if conn is None and addr not in self._replacements and is_client_hello(data):
                return self._over_quota_hello(data, addr, now)
            self.counters["rate_limited"] += 1
            return None
        if conn is not None and not conn.handshake_complete:
            self._half_open_inputs += 1
            conn._receive_general(data, addr, now)
            return conn
        replacement = self._replacements.get(addr)
        if replacement is not None:
            self._half_open_inputs += 1
            replacement._receive_general(data, addr, now)
            self._promote_if_done(addr, replacement)
            return replacement
        return self._from_stranger(data, addr, now, existing=conn)

    # The routing itself, for receive_datagram_data (receive_datagram may be replaced on an
    # instance or in a subclass; this stays the endpoint's own, without a call in between).
    _route = receive_datagram

    def receive_datagram_data(
        self, data: Any, addr: Any, now: float
    ) -> tuple[Connection | None, bytes | None]:
        """``receive_datagram``, except that for an established connection (routed by
        address) an application record alone in its datagram comes back as ``(connection,
        data)`` instead of a `DataReceived` event (`Connection.receive_datagram_data`).
        ``(connection or None, None)``: routed as receive_datagram does."""
        if self.closed or self.on_non_dtls_datagram is not None or self._cid_length:
            return self._route(data, addr, now), None
        conn = self.connections.get(addr)
        # A unified header (0b001xxxxx) is never a ClientHello.
        if (
            conn is None
            or not data
            or data[0] & 0xE0 != 0x20
            or not conn.handshake_complete
            or addr in self._replacements
        ):
            return self._route(data, addr, now), None
        # As receive_datagram and _to_existing for such a datagram.
        self.counters["datagrams"] += 1
        self._update_emergency()
        return conn, conn.receive_datagram_data(data, addr, now)

    def _hand_over(self, data: Any, addr: Any) -> None:
        handler = self.on_non_dtls_datagram
        assert handler is not None
        self.counters["non_dtls_datagrams"] += 1
        try:
            handler(bytes(data), addr)
        except Exception:
            # The application's bug, not the peer's: counted; raised in debug mode.
            self.counters["non_dtls_handler_errors"] += 1
            if self.config.debug:
                raise

    def _to_cid(self, conn: Connection, data: Any, addr: Any, now: float) -> Connection | None:
        """A datagram for a CID of ours: the connection decides whether the peer moved."""
        if not conn.address_validated and not self._rates.admit(data, addr, now, self.emergency):
            self.counters["rate_limited"] += 1
            return None
        old = conn.peer_address
        self._half_open_inputs += 1
        conn._receive_general(data, addr, now)
        if conn.peer_address != old:
            self.counters["address_changes"] += 1
            if self.connections.get(old) is conn:
                del self.connections[old]
            # Another association at the new address keeps it; this one stays reachable
            # by CID and sends to its new address anyway.
            self.connections.setdefault(conn.peer_address, conn)
        return conn

    def _issue_cid(self, conn: Connection, length: int) -> bytes:
        """A CID no live connection of this endpoint uses (the connection's cid_issuer)."""
        try:
            return self._cids.issue(conn, length)
        except NoFreeConnectionId:
            self.counters["cid_space_exhausted"] += 1
            raise

    def new_connections(self) -> list[Connection]:
        """Connections created since the last call."""
        out, self._new = self._new, []
        return out

    def touch(self, conn: Connection) -> None:
        """Note that `conn` may have output or a new timer (its on_activity callback)."""
        self._out_dirty[conn] = None
        self._timer_dirty[conn] = None

    def datagrams_to_send(self, now: float) -> list[tuple[Lease, Any]]:
        if type(now) is not float or now != now:
            check_now(now)
        out, self._replies = self._replies, []
        dirty, self._out_dirty = self._out_dirty, {}
        for conn in dirty:
            out += conn.datagrams_to_send(now)
            self._timer_dirty[conn] = None
        return out

    def _refresh_timers(self) -> None:
        dirty, self._timer_dirty = self._timer_dirty, {}
        for conn in dirty:
            t = conn.get_timer()
            if t is None:
                self._armed.pop(conn, None)
            elif self._armed.get(conn) != t:
                self._armed[conn] = t
                heapq.heappush(self._heap, (t, next(self._seq), conn))
        if len(self._heap) > 2 * len(self._armed) + 64:
            self._heap = [(t, next(self._seq), c) for c, t in self._armed.items()]
            heapq.heapify(self._heap)

    def _top(self) -> tuple[float, int, Connection] | None:
        """The earliest valid heap entry; stale ones are popped on the way."""
        heap = self._heap
        while heap:
            entry = heap[0]
            if self._armed.get(entry[2]) == entry[0]:
                return entry
            heapq.heappop(heap)
        return None

    def get_timer(self) -> float | None:
        self._refresh_timers()
        top = self._top()
        timers = [top[0]] if top is not None else []
        # Partial ClientHellos must time out even when no other datagram comes to expire them.
        if (expiry := self.gate.next_expiry()) is not None:
            timers.append(expiry)
        if self._released_since_trim >= TRIM_BATCH and self.trim_heap:
            timers.append(self._next_trim)  # released ciphers wait for the trim interval
        return min(timers) if timers else None

    def handle_timer(self, now: float) -> None:
        check_now(now)
        self._refresh_timers()
        due: list[Connection] = []
        while (top := self._top()) is not None and top[0] <= now:
            heapq.heappop(self._heap)
            del self._armed[top[2]]
            due.append(top[2])
        released = 0
        for conn in due:
            t = conn.get_timer()
            if t is not None and t <= now:
                stats = conn.stats
                before = stats["idle_releases"]
                unanswered = conn.rare_stat("handshake_unanswered")
                conn.handle_timer(now)
                released += stats["idle_releases"] - before
                self.counters["half_open_unanswered"] += (
                    conn.rare_stat("handshake_unanswered") - unanswered
                )
                self._attention[conn] = None
            self.touch(conn)
        if released or self._released_since_trim >= TRIM_BATCH:
            self._trim_after_releases(released, now)
        self.gate.expire(now)

    def _trim_after_releases(self, released: int, now: float) -> None:
        """Give the pages idle connections freed back to the system: once TRIM_BATCH of
        them let their ciphers go, at most once per TRIM_INTERVAL seconds (a trim walks
        the whole heap: ~1 ms per 100 MB). A batch that comes sooner is trimmed when the
        interval ends (get_timer), not left for releases that may never come."""
        self._released_since_trim += released
        if self._released_since_trim >= TRIM_BATCH and now >= self._next_trim and self.trim_heap:
            self._released_since_trim = 0
            self._next_trim = now + TRIM_INTERVAL
            self.counters["heap_trims"] += trim_heap()

    def attention(self) -> list[Connection]:
        """Connections whose timer fired or that the endpoint ended since the last call."""
        out, self._attention = list(self._attention), {}
        return out

    def remove(self, conn: Connection) -> None:
        """Forget a connection (after it closed); its memory goes back to the pools."""
        if conn.on_activity == self.touch:
            conn.on_activity = None
        for table in (self.connections, self._replacements):
            # A connection is filed under its peer address (the endpoint moves the entry when
            # the peer moves): O(1). Otherwise it may not be in this table at all, or be
            # filed elsewhere: look through the table.
            if table.get(conn.peer_address) is conn:
                del table[conn.peer_address]
            else:
                for addr, c in list(table.items()):
                    if c is conn:
                        del table[addr]
        self._started.pop(id(conn), None)
        self._half_open.pop(conn, None)
        self._out_dirty.pop(conn, None)
        self._timer_dirty.pop(conn, None)
        self._armed.pop(conn, None)
        for cid in conn.local_cids:
            if self._by_cid.get(cid) is conn:
                del self._by_cid[cid]
        if conn.closed:
            for lease, _ in conn.datagrams_to_send(0.0):
                lease.release()
            self.pools.release_owner(conn.owner)

    def reap(self) -> list[Connection]:
        """Remove and return every closed connection."""
        # Called after every batch of datagrams: a loop, no copy of the tables.
        dead = []
        for conn in self.connections.values():
            if conn.closed:
                dead.append(conn)
        if self._replacements:
            for conn in self._replacements.values():
                if conn.closed:
                    dead.append(conn)
        for conn in dead:
            self.remove(conn)
        return dead

    def close(self) -> None:
        """close_notify to every connection; release everything this endpoint holds."""
        if self.closed:
            return
        for conn in (*self.connections.values(), *self._replacements.values()):
            conn.close()
        self.closed = True

    def release(self) -> None:
        """After the last datagrams_to_send(): give every connection's memory back."""
        for lease, _ in self._replies:
            lease.release()
        self._replies = []
        for conn in (*self.connections.values(), *self._replacements.values()):
            for lease, _ in conn.datagrams_to_send(0.0):
                lease.release()
            self.pools.release_owner(conn.owner)
        self.connections.clear()
        self._half_open.clear()
        self._replacements.clear()
        self._by_cid.clear()
        self._out_dirty.clear()
        self._timer_dirty.clear()
        self._armed.clear()
        self._heap.clear()
        self._attention.clear()
        self.gate.close()
        self.pools.release_owner(self.owner)

    def statistics(self) -> ServerEndpointStatistics:
        """Admission counters, drops by reason, the cookie gate's counters, memory."""
        return ServerEndpointStatistics(
            **self.counters,
            connections=len(self.connections),
            half_open=len(self._half_open_now()),
            emergency=self.emergency,
            gate=dict(self.gate.counters),
            gate_partials=self.gate.partials,
            memory_in_use=self.owner.in_use,
            memory_high_water=self.owner.high_water,
            pool_in_use_bytes=self.pools.in_use_bytes,
            tracked_sources=self._rates.tracked,
        )

    def debug_state(self) -> ServerEndpointDebugState:
        """For tests and debugging, not for applications: read-only views of the endpoint's
        routing tables as they are now (their shape may change between versions)."""
        return ServerEndpointDebugState(
            half_open=MappingProxyType(self._half_open_now()),
            by_cid=MappingProxyType(self._by_cid),
            replacements=MappingProxyType(self._replacements),
            armed=MappingProxyType(self._armed),
        )

    # -- admission of new associations (endpoint_admission.py) --------------------------

    _over_quota_hello = endpoint_admission.over_quota_hello
    _update_emergency = endpoint_admission.update_emergency
    _shed_half_open = endpoint_admission.shed_half_open
    _cookie_required = endpoint_admission.cookie_required
    _half_open_now = endpoint_admission.half_open_now
    _half_open_cap = endpoint_admission.half_open_cap
    _source_needs_cookie = endpoint_admission.source_needs_cookie
    _from_stranger = endpoint_admission.from_stranger
    _new_connection = endpoint_admission.new_connection
    _room_for = endpoint_admission.room_for
    _oldest_unproven_half_open = endpoint_admission.oldest_unproven_half_open
    _displace = endpoint_admission.displace

    # -- datagrams of existing associations ------------------------------------------

    def _to_existing(self, conn: Connection, data: Any, addr: Any, now: float) -> Connection:
        replacement = self._replacements.get(addr)
        if replacement is not None:
            # Two associations on one address: try the new one first (§5.11 trial).
            before = replacement.stats["records_in"]
            self._half_open_inputs += 1
            replacement._receive_general(data, addr, now)
            if replacement.stats["records_in"] != before:
                self._promote_if_done(addr, replacement)
                return replacement
        conn._receive_general(data, addr, now)
        return conn

    def _promote_if_done(self, addr: Any, replacement: Connection) -> None:
        """§5.11: after a verified Finished the old association is abandoned."""
        if not replacement.handshake_complete:
            return
        old = self.connections.get(addr)
        self.connections[addr] = replacement
        del self._replacements[addr]
        if old is not None:
            old.abandon()
            self.remove(old)
            self._attention[old] = None
