"""reap() removes and returns every closed connection, from the address table and from the
replacements (a second association on one address), and leaves the open ones."""

from __future__ import annotations

import gc
import weakref
from typing import Any

from dtls13.connection import Connection
from dtls13.endpoint import ServerEndpoint
from dtls13.memory import PoolSet
from tests.support.dtls_pair import SERVER_ADDR, configs, shutdown_world, wall_clock
from tests.support.netsim import SimNetwork


class _Fake:
    on_activity = None
    local_cids: list[bytes] = []

    def __init__(self, addr: Any, closed: bool, pools: PoolSet) -> None:
        self.peer_address = addr
        self.closed = closed
        self.owner = pools.owner("fake", id(self), 1024)

    def datagrams_to_send(self, now: float) -> list[Any]:
        return []


def test_reap_takes_closed_connections_from_both_tables_and_only_those() -> None:
    _, scfg = configs()
    pools = PoolSet()
    ep = ServerEndpoint(scfg, pools=pools, wall_clock=wall_clock)
    open_a, closed_b = _Fake(("10.4.0.1", 1), False, pools), _Fake(("10.4.0.2", 2), True, pools)
    closed_c, open_d = _Fake(("10.4.0.3", 3), True, pools), _Fake(("10.4.0.1", 1), False, pools)
    closed_e = _Fake(("10.4.0.2", 2), True, pools)
    for conn in (open_a, closed_b, closed_c):
        ep.connections[conn.peer_address] = conn  # type: ignore[assignment]
    ep._replacements[open_d.peer_address] = open_d  # type: ignore[assignment]
    ep._replacements[closed_e.peer_address] = closed_e  # type: ignore[assignment]
    assert ep.reap() == [closed_b, closed_c, closed_e]  # type: ignore[comparison-overlap]
    assert list(ep.connections.values()) == [open_a]
    assert list(ep.debug_state().replacements.values()) == [open_d]
    assert ep.reap() == []
    ep._replacements.clear()
    assert ep.reap() == []  # no replacements at all
    open_a.closed = True
    assert ep.reap() == [open_a]  # type: ignore[comparison-overlap]
    assert not ep.connections
    pools.release_owner(open_d.owner)
    ep.release()
    assert pools.in_use == 0


def test_a_reaped_connection_is_freed_at_once_without_the_cycle_collector() -> None:
    ccfg, scfg = configs()
    pools = PoolSet()
    net = SimNetwork(5)
    ep = ServerEndpoint(scfg, pools=pools, wall_clock=wall_clock)
    net.add(SERVER_ADDR, ep)
    clients = [Connection(ccfg, pools=pools, wall_clock=wall_clock) for _ in range(3)]
    for i, c in enumerate(clients):
        net.add(("10.4.1.1", 6000 + i), c)
    gc.collect()
    gc.disable()
    try:
        for c in clients:
            c.connect(SERVER_ADDR, net.now)
        assert net.run(lambda: all(c.handshake_complete for c in clients))
        served = [weakref.ref(conn) for conn in ep.new_connections()]
        assert len(served) == 3
        for c in clients[:2]:
            c.close()
        net.run(lambda: False, max_time=net.now + 2)
        assert len(ep.reap()) == 2  # the list is dropped at once
        assert [ref() is None for ref in served] == [True, True, False]
    finally:
        gc.enable()
    shutdown_world(net, ep, clients)
    assert pools.in_use == 0
