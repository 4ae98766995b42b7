"""Admission at a server endpoint's ingress: its DoS bounds, the per-source token buckets,
and the connection table that counts connections per source host."""

from __future__ import annotations

import warnings
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from math import inf
from typing import Any

from .arguments import check_fields, simple_fields
from .cid_layout import MAX_CID_DRAWS, NoFreeConnectionId, cid_space
from .connection import MAX_LOCAL_CIDS, Connection


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
        check_fields(self, simple_fields(DoSProtectionConfig))
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
        # min()/max() written out: this runs for every datagram of an unproven source.
        elapsed = now - self.stamp if now > self.stamp else 0.0  # a clock that went back
        self.stamp = now
        cap = cfg.datagram_burst * factor
        datagrams = self.datagrams + elapsed * cfg.datagrams_per_second * factor
        self.datagrams = datagrams if datagrams < cap else cap
        cap = cfg.byte_burst * factor
        size_budget = self.bytes + elapsed * cfg.bytes_per_second * factor
        self.bytes = size_budget if size_budget < cap else cap
        if self.datagrams < 1 or self.bytes < size:
            return False
        self.datagrams -= 1
        self.bytes -= size
        return True


class SourceRates:
    """Per-source token buckets for traffic that is not (yet) an established connection.

    Two buckets per source host: one every unproven datagram draws on, and one that only
    ClientHellos with a valid cookie reach once the first is empty (a spoofer can empty the
    first for a victim's address, never the second). One endpoint-wide bucket bounds the
    cookie checks given to sources over their quota. A bucket left alone long enough to
    refill is forgotten, so a flood from many sources leaves no per-source state behind.
    """

    def __init__(self, dos: DoSProtectionConfig) -> None:
        self.dos = dos
        self._buckets: OrderedDict[Any, _Bucket] = OrderedDict()
        self._proven: OrderedDict[Any, _Bucket] = OrderedDict()
        # One bucket for the whole endpoint: a second's worth of over-quota cookie checks.
        rate = dos.over_quota_cookie_rate
        self._over_quota_dos = replace(
            dos,
            datagrams_per_second=rate,
            datagram_burst=rate,
            bytes_per_second=rate * 65535,
            byte_burst=rate * 65535,
        )
        self._over_quota = _Bucket(self._over_quota_dos, 0.0)
        self._refill_time = max(
            dos.datagram_burst / dos.datagrams_per_second if dos.datagrams_per_second else inf,
            dos.byte_burst / dos.bytes_per_second if dos.bytes_per_second else inf,
        )

    @property
    def tracked(self) -> int:
        """Source hosts with a (first) bucket now."""
        return len(self._buckets)

    def admit(self, data: Any, addr: Any, now: float, emergency: bool) -> bool:
        """Charge a datagram to its source's bucket (traffic of unproven addresses)."""
        return self._take(self._buckets, data, addr, now, emergency)

    def admit_proven(self, data: Any, addr: Any, now: float, emergency: bool) -> bool:
        """Charge a ClientHello whose cookie proved its address, once the source's own
        bucket is empty, to the second bucket: a real host flooding from its own address
        empties both."""
        return self._take(self._proven, data, addr, now, emergency)

    def over_quota_check(self, data: Any, now: float, emergency: bool) -> bool:
        """Whether the endpoint-wide budget allows one more over-quota cookie check."""
        factor = 0.25 if emergency else 1.0
        return self._over_quota.admit(self._over_quota_dos, len(memoryview(data)), now, factor)

    def _take(
        self,
        buckets: OrderedDict[Any, _Bucket],
        data: Any,
        addr: Any,
        now: float,
        emergency: bool,
    ) -> bool:
        host = addr[0] if isinstance(addr, tuple) else addr  # host_of, for every datagram
        bucket = buckets.get(host)
        if bucket is None:
            bucket = _Bucket(self.dos, now)
            buckets[host] = bucket
            if len(buckets) > self.dos.max_tracked_sources:
                buckets.popitem(last=False)
        else:
            buckets.move_to_end(host)
        factor = 0.25 if emergency else 1.0
        admitted = bucket.admit(self.dos, len(memoryview(data)), now, factor)
        while len(buckets) > 1:
            oldest = next(iter(buckets.values()))
            if now - oldest.stamp < self._refill_time:
                break
            buckets.popitem(last=False)
        return admitted


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


def host_of(addr: Any) -> Any:
    """The host part of an address ((host, port, ...) -> host). Written out, not called,
    where it runs for every datagram or new hello."""
    return addr[0] if isinstance(addr, tuple) else addr


def is_client_hello(data: Any) -> bool:
    """A DTLSPlaintext handshake record in epoch 0 whose first message is a ClientHello."""
    view = memoryview(data)
    try:
        return len(view) > 13 and view[0] == 22 and view[3] == 0 and view[4] == 0 and view[13] == 1
    finally:
        view.release()


def cid_of(data: Any, length: int) -> bytes | None:
    """The CID of a datagram's first record when its unified header has one (RFC 9147 §4)."""
    view = memoryview(data)
    try:
        if len(view) > length and view[0] & 0xF0 == 0x30:
            return bytes(view[1 : 1 + length])
        return None
    finally:
        view.release()


class ConnectionTable(dict[Any, Connection]):
    """address -> connection, counting connections per host as entries come and go, so that
    admitting a new association costs O(1) whatever the number of connections."""

    def __init__(self) -> None:
        super().__init__()
        self.per_host: dict[Any, int] = {}
        self.version = 0  # changes with every entry added, replaced or removed

    def _added(self, addr: Any) -> None:
        host = addr[0] if isinstance(addr, tuple) else addr  # host_of
        self.per_host[host] = self.per_host.get(host, 0) + 1

    def _removed(self, addr: Any) -> None:
        host = addr[0] if isinstance(addr, tuple) else addr  # host_of
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


class CidIssuer:
    """The connection IDs a server endpoint issues, and which connection each routes to
    (RFC 9147 §9): random after `prefix`, never one a live connection holds."""

    def __init__(self, prefix: bytes, random_bytes: Callable[[int], bytes]) -> None:
        self.prefix = prefix
        self.random_bytes = random_bytes
        self.by_cid: dict[bytes, Connection] = {}

    def issue(self, conn: Connection, length: int) -> bytes:
        """A free CID of `length` bytes for `conn`; NoFreeConnectionId when none is found."""
        if not length:
            # connection_id=0: we ask for no CID on the peer's records (RFC 9146 §3); an
            # empty CID routes nothing, and every connection has the same one.
            return b""
        prefix = self.prefix
        # Bounded: a full space (a short connection_id) refuses instead of looping.
        for _ in range(MAX_CID_DRAWS):
            cid = prefix + self.random_bytes(length - len(prefix))
            other = self.by_cid.get(cid)
            if other is None or other.closed:
                self.by_cid[cid] = conn
                return cid
        raise NoFreeConnectionId(f"no free {length}-byte connection ID")


def warn_if_cid_space_is_small(length: int | None, prefix: bytes, dos: DoSProtectionConfig) -> None:
    """A warning (not an error: any length is valid, RFC 9146 §3) when CIDs of this length
    cannot give every connection the cap allows its MAX_LOCAL_CIDS: past that, new
    connections are refused (cid_space_exhausted)."""
    if not length:
        return
    space = cid_space(length, prefix)
    needed = dos.max_concurrent_connections * MAX_LOCAL_CIDS
    if space < needed:
        warnings.warn(
            f"{length}-byte connection IDs give {space} distinct ones, fewer than the "
            f"{needed} that max_concurrent_connections={dos.max_concurrent_connections}"
            f" connections may hold; past them new connections are refused",
            RuntimeWarning,
            stacklevel=3,
        )
