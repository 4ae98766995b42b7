"""reap() removes and returns every closed connection, from the address table and from the
replacements (a second association on one address), and leaves the open ones."""

from __future__ import annotations

from typing import Any

from dtls13.endpoint import ServerEndpoint
from dtls13.memory import PoolSet
from tests.support.dtls_pair import configs, wall_clock


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
