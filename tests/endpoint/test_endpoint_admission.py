"""Admission bookkeeping: per-host connection counts and the half-open set kept
incrementally give the same decisions as counting every connection, in O(half-open)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from dtls13.admission import ConnectionTable, host_of
from dtls13.connection import Connection
from dtls13.endpoint import DoSProtectionConfig, ServerEndpoint
from dtls13.memory import PoolSet
from tests.support.dtls_pair import SERVER_ADDR, configs, wall_clock
from tests.support.netsim import SimNetwork


def _recount(ep: ServerEndpoint) -> tuple[Counter[Any], set[Connection]]:
    hosts = Counter(host_of(a) for a in ep.connections)
    half = {c for c in ep.connections.values() if not c.handshake_complete}
    return hosts, half


def _check(ep: ServerEndpoint) -> None:
    hosts, half = _recount(ep)
    assert isinstance(ep.connections, ConnectionTable)
    assert ep.connections.per_host == dict(hosts)
    assert set(ep.debug_state().half_open) == half
    assert ep.statistics().half_open == len(half)


def test_connection_table_counts_hosts_through_every_mutation() -> None:
    table = ConnectionTable()
    a, b = object(), object()
    table[("10.0.0.1", 1)] = a  # type: ignore[assignment]
    table[("10.0.0.1", 2)] = b  # type: ignore[assignment]
    table[("10.0.0.1", 2)] = a  # type: ignore[assignment]  # replacing keeps the count
    table.setdefault(("10.0.0.2", 1), b)  # type: ignore[arg-type]
    table.setdefault(("10.0.0.2", 1), a)  # type: ignore[arg-type]
    assert table.per_host == {"10.0.0.1": 2, "10.0.0.2": 1}
    del table[("10.0.0.1", 1)]
    assert table.pop(("10.0.0.2", 1)) is b
    assert table.pop(("10.0.0.9", 1), None) is None
    assert table.per_host == {"10.0.0.1": 1}
    table.update({("10.0.0.3", 1): a})
    assert table.per_host == {"10.0.0.1": 1, "10.0.0.3": 1}
    table.clear()
    assert table.per_host == {} and not table


def test_half_open_and_per_host_counts_follow_handshakes_closes_and_limits() -> None:
    ccfg, scfg = configs()
    pools = PoolSet()
    dos = DoSProtectionConfig(max_half_open_per_ip=3, max_connections_per_ip=5, max_half_open=6)
    ep = ServerEndpoint(scfg, pools=pools, dos=dos, cookie_policy="never", wall_clock=wall_clock)
    net = SimNetwork(5)
    net.add(SERVER_ADDR, ep)
    clients = []
    for i in range(8):  # two hosts, four clients each
        c = Connection(ccfg, pools=pools, wall_clock=wall_clock)
        net.add((f"10.2.0.{i % 2 + 1}", 6000 + i), c)
        clients.append(c)
    # Three at a time per host complete; each host's fourth waits for room.
    for c in clients:
        c.connect(SERVER_ADDR, net.now)
        _check(ep)
    assert net.run(lambda: sum(c.handshake_complete for c in clients) >= 6, max_time=30)
    _check(ep)
    refused = ep.counters["too_many_half_open"] + ep.counters["too_many_half_open_per_ip"]
    assert refused >= 2  # the limits were reached, and the retransmitted hellos got in later
    # Closing some connections frees their places in every count.
    for c in clients[:3]:
        c.close()
    net.run(lambda: False, max_time=net.now + 1)
    ep.reap()
    _check(ep)
    assert all(
        c not in ep.debug_state().half_open for c in ep.connections.values() if c.handshake_complete
    )
    for c in clients:
        c.close()
    ep.close()
    net.flush()
    net.run(lambda: False, max_time=net.now + 2)
    for c in clients:
        for lease, _ in c.datagrams_to_send(net.now):
            lease.release()
    for lease, _ in ep.datagrams_to_send(net.now):
        lease.release()
    ep.release()
    assert ep.connections.per_host == {} and not ep.debug_state().half_open  # type: ignore[attr-defined]
    assert pools.in_use == 0


def test_remove_finds_a_connection_under_its_address_or_anywhere_else() -> None:
    _, scfg = configs()
    pools = PoolSet()
    ep = ServerEndpoint(scfg, pools=pools, wall_clock=wall_clock)

    class Fake:
        closed = False
        on_activity = None
        local_cids: list[bytes] = []

        def __init__(self, addr: Any) -> None:
            self.peer_address = addr

    here, moved, other = Fake(("10.3.0.1", 1)), Fake(("10.3.0.2", 2)), Fake(("10.3.0.3", 3))
    ep.connections[here.peer_address] = here  # type: ignore[assignment]
    ep.connections[("10.3.0.9", 9)] = moved  # type: ignore[assignment]  # filed elsewhere
    ep.connections[other.peer_address] = other  # type: ignore[assignment]
    ep._replacements[("10.3.0.8", 8)] = moved  # type: ignore[assignment]
    ep.remove(here)  # type: ignore[arg-type]
    ep.remove(moved)  # type: ignore[arg-type]
    assert list(ep.connections.values()) == [other] and not ep.debug_state().replacements
    assert ep.connections.per_host == {"10.3.0.3": 1}  # type: ignore[attr-defined]
    ep.connections.clear()
    ep.release()
    assert pools.in_use == 0
