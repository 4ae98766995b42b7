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
import warnings
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from math import inf
from types import MappingProxyType
from typing import Any, Literal

from ._fast import Lease, MemoryBudgetExceeded
from .cid_layout import MAX_CID_DRAWS, NoFreeConnectionId, check_cid_prefix, cid_space
from .config import ServerConfig
from .connection import MAX_LOCAL_CIDS, Connection
from .demux import NonDtlsHandler, is_other_protocol
from .handshake.gate import HelloGate, Verdict
from .memory import PoolSet, default_pool_set
from .memory.trim import trim_heap
from .statistics import ServerEndpointStatistics

CookiePolicy = Literal["always", "under_load", "never"]


@dataclass(frozen=True, slots=True)
class DoSProtectionConfig:
    """Bounds of one endpoint (names follow the seed report's DoSProtectionConfig)."""

    max_total_memory: int = 256 * 1024 * 1024
    max_per_connection_memory: int = 1024 * 1024
    max_concurrent_connections: int = 10_000
    max_connections_per_ip: int = 100
    max_half_open: int = 1_000
    max_half_open_per_ip: int = 10
    # Token buckets for traffic that is not (yet) an established connection.
    datagrams_per_second: float = 200.0
    datagram_burst: float = 400.0
    bytes_per_second: float = 256 * 1024.0
    byte_burst: float = 512 * 1024.0
    max_tracked_sources: int = 65_536
    # Cookies are demanded under load when this many handshakes are half-open.
    cookie_threshold: int = 100
    # Emergency mode: pool use as a share of max_total_memory.
    emergency_high: float = 0.8
    emergency_low: float = 0.6
    handshake_reassembly_bytes: int = 8192
    reassembly_total_bytes: int = 1024 * 1024
    # Long enough for fragments of a client's later retransmissions (1, 2, 4 s apart) to
    # complete an earlier partial ClientHello; memory stays bounded by the two caps above.
    reassembly_timeout: float = 5.0
    # Seconds a half-open handshake lives while no record from its peer has authenticated
    # under the handshake keys (proof that the peer has our flight; plaintext proves
    # nothing, anyone can send it from a spoofed address). A spoofed source never answers,
    # and held its place (and drew our retransmissions to the victim) for the whole
    # handshake_timeout (120 s) before. Our flight goes out at 0, 1, 3, 7 and 15 s (RFC
    # 9147 §5.8.2: 1 s, doubling); a client that has all of it answers at once. One that
    # holds only part of it has nothing to send until the rest comes, so the cut must
    # leave it enough tries: through the endpoint at 30% loss, 10 s (four tries) failed
    # 16 of 500 genuine handshakes, 20 s (five) 8, no cut 6. A client given up this way
    # that is still in its first flight starts over with its next ClientHello (a new
    # connection). None: handshake_timeout only.
    unanswered_handshake_timeout: float | None = 20.0
    # RFC 9147 §5.1: until a client's address is proven (a cookie, or a record of it that
    # authenticated), send it at most this many times the bytes it sent. A first
    # ClientHello too small to pay for our first flight gets a cookie (unless the cookie
    # policy is "never": then the flight waits for the client's repeated ClientHellos).
    # None: no limit (where amplification is no threat, e.g. after ICE).
    amplification_limit: float | None = 3.0
    # ClientHellos per second, for the whole endpoint, that may still go to the cookie gate
    # from sources over their bucket's quota. Anyone can send from anyone's address, so a
    # spoofer can empty a victim's bucket; the victim then gets a cookie exchange (RFC 9147
    # §5.1) instead of silence, and its ClientHello with a valid cookie draws on a second
    # bucket of its source that only proven traffic reaches. The gate answers statelessly,
    # so this bounds CPU only: set it near what the gate can answer (about 20,000 a second).
    over_quota_cookie_rate: float = 10_000.0

    def __post_init__(self) -> None:
        if not 0 < self.emergency_low < self.emergency_high <= 1:
            raise ValueError("need 0 < emergency_low < emergency_high <= 1")
        if self.unanswered_handshake_timeout is not None and self.unanswered_handshake_timeout <= 0:
            raise ValueError("unanswered_handshake_timeout must be positive (or None)")
        if self.over_quota_cookie_rate < 0:
            raise ValueError("over_quota_cookie_rate must not be negative")
        if self.amplification_limit is not None and self.amplification_limit < 1:
            raise ValueError("amplification_limit must be at least 1 (or None)")
        for name in (
            "max_total_memory",
            "max_per_connection_memory",
            "max_concurrent_connections",
            "max_connections_per_ip",
            "max_half_open",
            "max_half_open_per_ip",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")


class _Bucket:
    __slots__ = ("bytes", "datagrams", "stamp")

    def __init__(self, cfg: DoSProtectionConfig, now: float) -> None:
        self.datagrams = cfg.datagram_burst
        self.bytes = cfg.byte_burst
        self.stamp = now

    def admit(self, cfg: DoSProtectionConfig, size: int, now: float, factor: float) -> bool:
        elapsed = max(0.0, now - self.stamp)
        self.stamp = now
        self.datagrams = min(
            cfg.datagram_burst * factor,
            self.datagrams + elapsed * cfg.datagrams_per_second * factor,
        )
        self.bytes = min(
            cfg.byte_burst * factor, self.bytes + elapsed * cfg.bytes_per_second * factor
        )
        if self.datagrams < 1 or self.bytes < size:
            return False
        self.datagrams -= 1
        self.bytes -= size
        return True


# Heap trims after idle releases (see ServerEndpoint._trim_after_releases): after this
# many connections let their ciphers go (~8 KiB each), at most once per this many seconds.
TRIM_BATCH = 64
TRIM_INTERVAL = 1.0

DROP_COUNTERS = (
    "rate_limited",
    "too_many_connections",
    "too_many_connections_per_ip",
    "too_many_half_open",
    "too_many_half_open_per_ip",
    "gate_dropped",
    "not_for_a_connection",
    "half_open_shed",
    "half_open_unanswered",  # half-open handshakes ended: their peer never answered
    "half_open_displaced",  # unproven half-open handshakes that gave way to a proven client
    "memory_refused",
    "cid_space_exhausted",  # no free CID: a new connection refused, or fewer CIDs issued
)


def _host(addr: Any) -> Any:
    return addr[0] if isinstance(addr, tuple) else addr


def _is_client_hello(data: Any) -> bool:
    """A DTLSPlaintext handshake record in epoch 0 whose first message is a ClientHello."""
    view = memoryview(data)
    try:
        return len(view) > 13 and view[0] == 22 and view[3] == 0 and view[4] == 0 and view[13] == 1
    finally:
        view.release()


def _cid_of(data: Any, length: int) -> bytes | None:
    """The CID of a datagram's first record when its unified header has one (RFC 9147 §4)."""
    view = memoryview(data)
    try:
        if len(view) > length and view[0] & 0xF0 == 0x30:
            return bytes(view[1 : 1 + length])
        return None
    finally:
        view.release()


class _ConnectionTable(dict[Any, Connection]):
    """address -> connection, counting connections per host as entries come and go, so that
    admitting a new association costs O(1) whatever the number of connections."""

    def __init__(self) -> None:
        super().__init__()
        self.per_host: dict[Any, int] = {}
        self.version = 0  # changes with every entry added, replaced or removed

    def _added(self, addr: Any) -> None:
        host = _host(addr)
        self.per_host[host] = self.per_host.get(host, 0) + 1

    def _removed(self, addr: Any) -> None:
        host = _host(addr)
        left = self.per_host[host] - 1
        if left:
            self.per_host[host] = left
        else:
            del self.per_host[host]

    def __setitem__(self, addr: Any, conn: Connection) -> None:
        if addr not in self:
            self._added(addr)
        self.version += 1
        super().__setitem__(addr, conn)

    def __delitem__(self, addr: Any) -> None:
        super().__delitem__(addr)
        self.version += 1
        self._removed(addr)

    def setdefault(self, addr: Any, conn: Connection) -> Connection:
        if addr not in self:
            self[addr] = conn
        return self[addr]

    def pop(self, addr: Any, *default: Any) -> Any:
        if addr in self:
            self._removed(addr)
            self.version += 1
        return super().pop(addr, *default)

    def clear(self) -> None:
        super().clear()
        self.version += 1
        self.per_host.clear()

    def popitem(self) -> tuple[Any, Connection]:
        raise TypeError("not supported")

    def update(self, *args: Any, **kwargs: Any) -> None:
        for addr, conn in dict(*args, **kwargs).items():
            self[addr] = conn


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
        if cookie_policy not in ("always", "under_load", "never"):
            raise ValueError("cookie_policy must be 'always', 'under_load' or 'never'")
        self.cid_prefix = check_cid_prefix(cid_prefix, config.cid_length)
        self.config = config
        self.pools = pools if pools is not None else default_pool_set()
        self.dos = dos or DoSProtectionConfig()
        self._warn_if_cid_space_is_small(config)
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
        self.connections: _ConnectionTable = _ConnectionTable()
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
        self._by_cid: dict[bytes, Connection] = {}
        self._cid_length = config.cid_length or 0
        # §5.11: a new association from an address that already has one, until it proves
        # itself with a verified Finished.
        self._replacements: dict[Any, Connection] = {}
        self._new: list[Connection] = []
        self._buckets: OrderedDict[Any, _Bucket] = OrderedDict()
        self._proven_buckets: OrderedDict[Any, _Bucket] = OrderedDict()
        dos = self.dos
        # One bucket for the whole endpoint: a second's worth of over-quota cookie checks.
        rate = dos.over_quota_cookie_rate
        self._over_quota_dos = replace(
            dos,
            datagrams_per_second=rate,
            datagram_burst=rate,
            bytes_per_second=rate * 65535,
            byte_burst=rate * 65535,
        )
        self._over_quota_budget = _Bucket(self._over_quota_dos, 0.0)
        self._refill_time = max(
            dos.datagram_burst / dos.datagrams_per_second if dos.datagrams_per_second else inf,
            dos.byte_burst / dos.bytes_per_second if dos.bytes_per_second else inf,
        )
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
        """Route one datagram; returns the connection that took it, if any. Never raises."""
        if self.closed:
            return None
        self.counters["datagrams"] += 1
        if self.on_non_dtls_datagram is not None and is_other_protocol(data):
            # Before admission and any parsing: no state, one copy, counted (RFC 7983 §7).
            self._hand_over(data, addr)
            return None
        self._update_emergency()
        if self._cid_length:
            cid = _cid_of(data, self._cid_length)
            by_cid = self._by_cid.get(cid) if cid is not None else None
            if by_cid is not None and not by_cid.closed:
                return self._to_cid(by_cid, data, addr, now)
        conn = self.connections.get(addr)
        if conn is not None and conn.handshake_complete and not _is_client_hello(data):
            return self._to_existing(conn, data, addr, now)
        if conn is not None and conn.address_validated and not _is_client_hello(data):
            # A half-open handshake whose peer proved its address: like an established
            # connection, it is not charged to a per-source bucket that spoofers can empty.
            self._half_open_inputs += 1
            conn.receive_datagram(data, addr, now)
            return conn
        if not self._admit(data, addr, now):
            if conn is None and addr not in self._replacements and _is_client_hello(data):
                return self._over_quota_hello(data, addr, now)
            self.counters["rate_limited"] += 1
            return None
        if conn is not None and not conn.handshake_complete:
            self._half_open_inputs += 1
            conn.receive_datagram(data, addr, now)
            return conn
        replacement = self._replacements.get(addr)
        if replacement is not None:
            self._half_open_inputs += 1
            replacement.receive_datagram(data, addr, now)
            self._promote_if_done(addr, replacement)
            return replacement
        return self._from_stranger(data, addr, now, existing=conn)

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
        if not conn.address_validated and not self._admit(data, addr, now):
            self.counters["rate_limited"] += 1
            return None
        old = conn.peer_address
        self._half_open_inputs += 1
        conn.receive_datagram(data, addr, now)
        if conn.peer_address != old:
            self.counters["address_changes"] += 1
            if self.connections.get(old) is conn:
                del self.connections[old]
            # Another association at the new address keeps it; this one stays reachable
            # by CID and sends to its new address anyway.
            self.connections.setdefault(conn.peer_address, conn)
        return conn

    def _warn_if_cid_space_is_small(self, config: ServerConfig) -> None:
        """A warning (not an error: any length is valid, RFC 9146 §3) when the CIDs of this
        length cannot give every connection the cap allows its MAX_LOCAL_CIDS: past that,
        new connections are refused (cid_space_exhausted)."""
        length = config.cid_length
        if not length:
            return
        space = cid_space(length, self.cid_prefix)
        needed = self.dos.max_concurrent_connections * MAX_LOCAL_CIDS
        if space < needed:
            warnings.warn(
                f"{length}-byte connection IDs give {space} distinct ones, fewer than the "
                f"{needed} that max_concurrent_connections={self.dos.max_concurrent_connections}"
                f" connections may hold; past them new connections are refused",
                RuntimeWarning,
                stacklevel=3,
            )

    def _issue_cid(self, conn: Connection, length: int) -> bytes:
        """A CID no live connection of this endpoint uses, starting with cid_prefix."""
        if not length:
            # connection_id=0: we ask for no CID on the peer's records (RFC 9146 §3); an
            # empty CID routes nothing, and every connection has the same one.
            return b""
        prefix = self.cid_prefix
        # Bounded: a full space (a short connection_id) refuses instead of looping.
        for _ in range(MAX_CID_DRAWS):
            cid = prefix + self.config.random_bytes(length - len(prefix))
            other = self._by_cid.get(cid)
            if other is None or other.closed:
                self._by_cid[cid] = conn
                return cid
        self.counters["cid_space_exhausted"] += 1
        raise NoFreeConnectionId(f"no free {length}-byte connection ID")

    def new_connections(self) -> list[Connection]:
        """Connections created since the last call."""
        out, self._new = self._new, []
        return out

    def touch(self, conn: Connection) -> None:
        """Note that `conn` may have output or a new timer (its on_activity callback)."""
        self._out_dirty[conn] = None
        self._timer_dirty[conn] = None

    def datagrams_to_send(self, now: float) -> list[tuple[Lease, Any]]:
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
        return min(timers) if timers else None

    def handle_timer(self, now: float) -> None:
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
        if released:
            self._trim_after_releases(released, now)
        self.gate.expire(now)

    def _trim_after_releases(self, released: int, now: float) -> None:
        """Give the pages idle connections freed back to the system: once TRIM_BATCH of
        them let their ciphers go, at most once per TRIM_INTERVAL seconds (a trim walks
        the whole heap: ~1 ms per 100 MB)."""
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
        dead = [c for c in (*self.connections.values(), *self._replacements.values()) if c.closed]
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
            tracked_sources=len(self._buckets),
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

    # -- admission ----------------------------------------------------------------------

    def _admit(self, data: Any, addr: Any, now: float) -> bool:
        """Charge a datagram to its source's bucket (traffic of unproven addresses)."""
        return self._take(self._buckets, data, addr, now)

    def _admit_proven(self, data: Any, addr: Any, now: float) -> bool:
        """Charge a ClientHello whose cookie proved its address, once the source's own
        bucket is empty, to a second bucket only proven traffic reaches: a spoofer empties
        the first, never this one; a real host flooding from its address empties both."""
        return self._take(self._proven_buckets, data, addr, now)

    def _over_quota_hello(self, data: Any, addr: Any, now: float) -> Connection | None:
        """A ClientHello from a source over its quota (perhaps emptied by a spoofer): a
        cookie exchange, within an endpoint-wide budget, lets a real client prove its
        address (RFC 9147 §5.1); with a valid cookie it may go on (_from_stranger). Not
        with cookie_policy="never", which promises no HelloRetryRequest for cookies."""
        factor = 0.25 if self.emergency else 1.0
        if self.cookie_policy == "never" or not self._over_quota_budget.admit(
            self._over_quota_dos, len(memoryview(data)), now, factor
        ):
            self.counters["rate_limited"] += 1
            return None
        self.counters["over_quota_cookie_checks"] += 1
        return self._from_stranger(data, addr, now, existing=None, over_quota=True)

    def _take(self, buckets: OrderedDict[Any, _Bucket], data: Any, addr: Any, now: float) -> bool:
        host = _host(addr)
        bucket = buckets.get(host)
        if bucket is None:
            bucket = _Bucket(self.dos, now)
            buckets[host] = bucket
            if len(buckets) > self.dos.max_tracked_sources:
                buckets.popitem(last=False)
        else:
            buckets.move_to_end(host)
        factor = 0.25 if self.emergency else 1.0
        admitted = bucket.admit(self.dos, len(memoryview(data)), now, factor)
        # A bucket left alone long enough to refill is the same as no bucket: forget those
        # (oldest first), so a flood from many sources leaves no per-source state behind.
        while len(buckets) > 1:
            oldest = next(iter(buckets.values()))
            if now - oldest.stamp < self._refill_time:
                break
            buckets.popitem(last=False)
        return admitted

    def _update_emergency(self) -> None:
        limit = self.dos.max_total_memory
        use = self.owner.in_use / limit if limit else 0.0
        if not self.emergency and use >= self.dos.emergency_high:
            self.emergency = True
            self.counters["emergencies"] += 1
            self._shed_half_open()
        elif self.emergency and use < self.dos.emergency_low:
            self.emergency = False

    def _shed_half_open(self) -> None:
        """Drop the oldest half of the half-open handshakes (emergency mode)."""
        half_open = sorted(
            self._half_open_now(),
            key=lambda c: self._started.get(id(c), 0.0),
        )
        for conn in half_open[: (len(half_open) + 1) // 2]:
            self.counters["half_open_shed"] += 1
            conn.abandon()
            self.remove(conn)
            self._attention[conn] = None

    def _cookie_required(self) -> bool:
        if self.cookie_policy == "always" or self.emergency:
            return True
        if self.cookie_policy == "never":
            return False
        return len(self._half_open_now()) >= self.dos.cookie_threshold

    def _half_open_now(self) -> dict[Connection, Any]:
        """The connections in `connections` whose handshake is not complete (connection ->
        address): O(half-open), not O(connections)."""
        table = self.connections
        key = (table.version, self._half_open_inputs)
        if key == self._half_open_pruned:
            return self._half_open
        live = {
            conn: addr
            for conn, addr in self._half_open.items()
            if not conn.handshake_complete and table.get(addr) is conn
        }
        hosts: dict[Any, int] = {}
        for addr in live.values():
            host = _host(addr)
            hosts[host] = hosts.get(host, 0) + 1
        self._half_open = live
        self._half_open_hosts = hosts
        self._half_open_pruned = key
        return live

    def _half_open_of(self, host: Any) -> int:
        """Half-open handshakes from `host` (kept with the half-open set: O(1) while it
        holds)."""
        self._half_open_now()
        return self._half_open_hosts.get(host, 0)

    def _half_open_cap(self) -> int:
        cap = self.dos.max_half_open_per_ip
        return max(1, cap // 2 if self.emergency else cap)

    def _source_needs_cookie(self, addr: Any) -> bool:
        """A source whose half-open share is full gets a cookie exchange rather than a
        refusal: a client there proves its address with the cookie and may then take the
        place of an unproven (possibly spoofed) handshake from that address (_room_for).
        Not with cookie_policy="never", which promises no HelloRetryRequest for cookies."""
        if self.cookie_policy == "never":
            return False
        return self._half_open_of(_host(addr)) >= self._half_open_cap()

    def _from_stranger(
        self,
        data: Any,
        addr: Any,
        now: float,
        existing: Connection | None,
        *,
        over_quota: bool = False,
    ) -> Connection | None:
        # §5.11: an established address must prove reachability with a cookie first.
        require = (
            over_quota
            or existing is not None
            or self._cookie_required()
            or self._source_needs_cookie(addr)
        )
        result = self.gate.receive_untrusted(data, addr, now, require_cookie=require)
        if result.verdict is Verdict.REPLY:
            assert result.reply is not None
            self._replies += [(lease, addr) for lease in result.reply]
            return None
        if result.verdict is not Verdict.ACCEPT:
            self.counters["gate_dropped"] += 1
            return None
        # The gate accepts a second ClientHello (message_seq 1) only with a valid cookie.
        proven = result.first_message_seq == 1
        if over_quota and not (proven and self._admit_proven(data, addr, now)):
            self.counters["rate_limited"] += 1
            return None
        if not self._room_for(addr, replacing=existing is not None, proven=proven):
            return None
        assert result.datagram is not None
        try:
            conn = self._new_connection(addr, result.first_message_seq)
        except MemoryBudgetExceeded:
            self.counters["memory_refused"] += 1
            return None
        except NoFreeConnectionId:
            return None  # counted as cid_space_exhausted
        self.counters["connections_created"] += 1
        self._started[id(conn)] = now
        if existing is not None:
            self._replacements[addr] = conn
        else:
            self.connections[addr] = conn
            self._half_open[conn] = addr
        self._half_open_inputs += 1
        self._new.append(conn)
        if result.client_hello is not None:
            conn.expect_client_hello(*result.client_hello)
        conn.receive_datagram(result.datagram, addr, now)
        return conn

    def _new_connection(self, addr: Any, first_message_seq: int) -> Connection:
        return Connection(
            self.config,
            pools=self.pools,
            peer_address=addr,
            owner_parent=self.owner,
            memory_limit=self.dos.max_per_connection_memory,
            first_message_seq=first_message_seq,
            cid_issuer=self._issue_cid,
            on_activity=self.touch,
            unanswered_timeout=self.dos.unanswered_handshake_timeout,
            amplification_limit=self.dos.amplification_limit,
            **({"wall_clock": self._wall_clock} if self._wall_clock else {}),
        )

    def _room_for(self, addr: Any, *, replacing: bool, proven: bool = False) -> bool:
        """Whether a new association from `addr` fits the caps. `proven`: its address is
        validated (a valid cookie): when the half-open caps are full, it takes the place
        of the oldest half-open handshake whose address is not (from its own host when
        that host's share is full, else from any), so spoofed ClientHellos from a client's
        address cannot shut the client out; the caps still hold, and proven handshakes
        are never displaced (a real host gets its share and no more)."""
        dos = self.dos
        host = _host(addr)
        table = self.connections
        assert isinstance(table, _ConnectionTable)
        per_host = table.per_host.get(host, 0)
        if not replacing and len(table) >= dos.max_concurrent_connections:
            self.counters["too_many_connections"] += 1
            return False
        if not replacing and per_host >= dos.max_connections_per_ip:
            self.counters["too_many_connections_per_ip"] += 1
            return False
        all_full = len(self._half_open_now()) >= dos.max_half_open
        host_full = self._half_open_of(host) >= self._half_open_cap()
        if proven and (all_full or host_full):
            unproven = self._oldest_unproven_half_open(host if host_full else None)
            if unproven is not None:
                self._displace(unproven)
                return True
        if all_full:
            self.counters["too_many_half_open"] += 1
            return False
        if host_full:
            self.counters["too_many_half_open_per_ip"] += 1
            return False
        return True

    def _oldest_unproven_half_open(self, host: Any | None) -> Connection | None:
        """The half-open handshake (from `host`, or any) that started first among those
        whose peer has not proven its address."""
        candidates = [
            conn
            for conn, addr in self._half_open_now().items()
            if not conn.address_validated and (host is None or _host(addr) == host)
        ]
        return min(candidates, key=lambda c: self._started.get(id(c), 0.0), default=None)

    def _displace(self, conn: Connection) -> None:
        self.counters["half_open_displaced"] += 1
        conn.abandon("displaced by a handshake from a proven address")
        self.remove(conn)
        self._attention[conn] = None

    def _to_existing(self, conn: Connection, data: Any, addr: Any, now: float) -> Connection:
        replacement = self._replacements.get(addr)
        if replacement is not None:
            # Two associations on one address: try the new one first (§5.11 trial).
            before = replacement.stats["records_in"]
            self._half_open_inputs += 1
            replacement.receive_datagram(data, addr, now)
            if replacement.stats["records_in"] != before:
                self._promote_if_done(addr, replacement)
                return replacement
        conn.receive_datagram(data, addr, now)
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
