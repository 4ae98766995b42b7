"""How a server endpoint admits a new association (RFC 9147 §5.1, §5.11): cookies when
required (policy, load, a source over its quota or its share of half-open handshakes), the
caps on connections and half-open handshakes (total and per host), the displacement of an
unproven handshake by a proven one, shedding in a memory emergency, and the connection's
construction.

Functions of `ServerEndpoint` (endpoint.py binds them; it holds the state they use).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._fast import MemoryBudgetExceeded
from .admission import ConnectionTable, host_of
from .cid_layout import NoFreeConnectionId
from .connection import Connection
from .handshake.gate import Verdict

if TYPE_CHECKING:
    from .endpoint import ServerEndpoint


def over_quota_hello(ep: ServerEndpoint, data: Any, addr: Any, now: float) -> Connection | None:
    """A ClientHello from a source over its quota (perhaps emptied by a spoofer): a
    cookie exchange, within an endpoint-wide budget, lets a real client prove its
    address (RFC 9147 §5.1); with a valid cookie it may go on (_from_stranger). Not
    with cookie_policy="never", which promises no HelloRetryRequest for cookies."""
    if ep.cookie_policy == "never" or not ep._rates.over_quota_check(data, now, ep.emergency):
        ep.counters["rate_limited"] += 1
        return None
    ep.counters["over_quota_cookie_checks"] += 1
    return ep._from_stranger(data, addr, now, existing=None, over_quota=True)


def update_emergency(ep: ServerEndpoint) -> None:
    limit = ep.dos.max_total_memory
    use = ep.owner.in_use / limit if limit else 0.0
    if not ep.emergency and use >= ep.dos.emergency_high:
        ep.emergency = True
        ep.counters["emergencies"] += 1
        ep._shed_half_open()
    elif ep.emergency and use < ep.dos.emergency_low:
        ep.emergency = False


def shed_half_open(ep: ServerEndpoint) -> None:
    """Drop half of the half-open handshakes (emergency mode): the oldest of those whose
    peer has not proven its address first, so spoofed hellos cannot end the handshake of
    a client that answered a cookie; then, if that is not half, the oldest proven ones."""
    half_open = sorted(
        ep._half_open_now(),
        key=lambda c: (c.address_validated, ep._started.get(id(c), 0.0)),
    )
    for conn in half_open[: (len(half_open) + 1) // 2]:
        ep.counters["half_open_shed"] += 1
        conn.abandon()
        ep.remove(conn)
        ep._attention[conn] = None


def cookie_required(ep: ServerEndpoint) -> bool:
    if ep.cookie_policy == "always" or ep.emergency:
        return True
    if ep.cookie_policy == "never":
        return False
    return len(ep._half_open_now()) >= ep.dos.cookie_threshold


def half_open_now(ep: ServerEndpoint) -> dict[Connection, Any]:
    """The connections in `connections` whose handshake is not complete (connection ->
    address): O(half-open), not O(connections)."""
    table = ep.connections
    key = (table.version, ep._half_open_inputs)
    if key == ep._half_open_pruned:
        return ep._half_open
    if not ep._half_open:  # nothing to prune (a handshake at a time, say)
        ep._half_open_hosts = {}
        ep._half_open_pruned = key
        return ep._half_open
    live = {
        conn: addr
        for conn, addr in ep._half_open.items()
        if not conn.handshake_complete and table.get(addr) is conn
    }
    started = ep._started
    for conn in ep._half_open.keys() - live.keys():
        # Only half-open handshakes are ever compared by start time (the oldest go
        # first): an established connection need not keep its entry.
        if conn.handshake_complete:
            started.pop(id(conn), None)
    hosts: dict[Any, int] = {}
    for addr in live.values():
        host = host_of(addr)
        hosts[host] = hosts.get(host, 0) + 1
    ep._half_open = live
    ep._half_open_hosts = hosts
    ep._half_open_pruned = key
    return live


def half_open_cap(ep: ServerEndpoint) -> int:
    cap = ep.dos.max_half_open_per_ip
    if ep.emergency:
        cap //= 2
    return cap if cap > 1 else 1  # max() written out: this runs for every new hello


def source_needs_cookie(ep: ServerEndpoint, addr: Any) -> bool:
    """A source whose half-open share is full gets a cookie exchange rather than a
    refusal: a client there proves its address with the cookie and may then take the
    place of an unproven (possibly spoofed) handshake from that address (_room_for).
    Not with cookie_policy="never", which promises no HelloRetryRequest for cookies."""
    if ep.cookie_policy == "never":
        return False
    ep._half_open_now()  # brings _half_open_hosts (per host) up to date
    host = addr[0] if isinstance(addr, tuple) else addr  # host_of
    return ep._half_open_hosts.get(host, 0) >= ep._half_open_cap()


def from_stranger(
    ep: ServerEndpoint,
    data: Any,
    addr: Any,
    now: float,
    existing: Connection | None,
    *,
    over_quota: bool = False,
) -> Connection | None:
    # §5.11: an established address must prove reachability with a cookie first.
    require = (
        over_quota or existing is not None or ep._cookie_required() or ep._source_needs_cookie(addr)
    )
    result = ep.gate.receive_untrusted(data, addr, now, require_cookie=require)
    if result.verdict is Verdict.REPLY:
        assert result.reply is not None
        ep._replies += [(lease, addr) for lease in result.reply]
        return None
    if result.verdict is not Verdict.ACCEPT:
        ep.counters["gate_dropped"] += 1
        return None
    # The gate accepts a second ClientHello (message_seq 1) only with a valid cookie.
    proven = result.first_message_seq == 1
    if over_quota and not (proven and ep._rates.admit_proven(data, addr, now, ep.emergency)):
        ep.counters["rate_limited"] += 1
        return None
    if not ep._room_for(addr, replacing=existing is not None, proven=proven):
        return None
    assert result.datagram is not None
    try:
        conn = ep._new_connection(addr, result.first_message_seq)
    except MemoryBudgetExceeded:
        ep.counters["memory_refused"] += 1
        return None
    except NoFreeConnectionId:
        return None  # counted as cid_space_exhausted
    ep.counters["connections_created"] += 1
    ep._started[id(conn)] = now
    if existing is not None:
        ep._replacements[addr] = conn
    else:
        ep.connections[addr] = conn
        ep._half_open[conn] = addr
    ep._half_open_inputs += 1
    ep._new.append(conn)
    if result.client_hello is not None:
        conn.expect_client_hello(*result.client_hello)
    conn._receive_general(result.datagram, addr, now)
    return conn


def new_connection(ep: ServerEndpoint, addr: Any, first_message_seq: int) -> Connection:
    return Connection(
        ep.config,
        pools=ep.pools,
        peer_address=addr,
        owner_parent=ep.owner,
        memory_limit=ep.dos.max_per_connection_memory,
        first_message_seq=first_message_seq,
        cid_issuer=ep._issue_cid_cb,
        on_activity=ep._touch_cb,
        unanswered_timeout=ep.dos.unanswered_handshake_timeout,
        amplification_limit=ep.dos.amplification_limit,
        **({"wall_clock": ep._wall_clock} if ep._wall_clock else {}),
    )


def room_for(ep: ServerEndpoint, addr: Any, *, replacing: bool, proven: bool = False) -> bool:
    """Whether a new association from `addr` fits the caps. `proven`: its address is
    validated (a valid cookie): when the half-open caps are full, it takes the place
    of the oldest half-open handshake whose address is not (from its own host when
    that host's share is full, else from any), so spoofed ClientHellos from a client's
    address cannot shut the client out; the caps still hold, and proven handshakes
    are never displaced (a real host gets its share and no more)."""
    dos = ep.dos
    host = addr[0] if isinstance(addr, tuple) else addr  # host_of
    table = ep.connections
    assert isinstance(table, ConnectionTable)
    per_host = table.per_host.get(host, 0)
    if not replacing and len(table) >= dos.max_concurrent_connections:
        ep.counters["too_many_connections"] += 1
        return False
    if not replacing and per_host >= dos.max_connections_per_ip:
        ep.counters["too_many_connections_per_ip"] += 1
        return False
    all_full = len(ep._half_open_now()) >= dos.max_half_open
    # _half_open_now() just brought the per-host counts up to date.
    host_full = ep._half_open_hosts.get(host, 0) >= ep._half_open_cap()
    if proven and (all_full or host_full):
        unproven = ep._oldest_unproven_half_open(host if host_full else None)
        if unproven is not None:
            ep._displace(unproven)
            return True
    if all_full:
        ep.counters["too_many_half_open"] += 1
        return False
    if host_full:
        ep.counters["too_many_half_open_per_ip"] += 1
        return False
    return True


def oldest_unproven_half_open(ep: ServerEndpoint, host: Any | None) -> Connection | None:
    """The half-open handshake (from `host`, or any) that started first among those
    whose peer has not proven its address."""
    candidates = [
        conn
        for conn, addr in ep._half_open_now().items()
        if not conn.address_validated and (host is None or host_of(addr) == host)
    ]
    return min(candidates, key=lambda c: ep._started.get(id(c), 0.0), default=None)


def displace(ep: ServerEndpoint, conn: Connection) -> None:
    ep.counters["half_open_displaced"] += 1
    conn.abandon("displaced by a handshake from a proven address")
    ep.remove(conn)
    ep._attention[conn] = None
