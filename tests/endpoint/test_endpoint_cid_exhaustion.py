"""A server endpoint whose connection-ID space is full refuses what it cannot route, at
once: a new connection is refused at admission (counted), a RequestConnectionId gets fewer
CIDs (RFC 9147 §9), and the endpoint never loops looking for a free CID."""

from __future__ import annotations

import random
import warnings

import pytest

from dtls13.connection import MAX_LOCAL_CIDS, Connection
from dtls13.endpoint import ServerEndpoint
from dtls13.memory import PoolSet
from tests.support.dtls_pair import SERVER_ADDR, configs, shutdown_world, wall_clock
from tests.support.netsim import SimNetwork

# Far more random draws than a bounded search makes for all the CIDs of these tests: an
# unbounded search for a free CID in a full space fails here instead of hanging.
DRAW_GUARD = 100_000


class _CountedRandom:
    def __init__(self) -> None:
        self.draws = 0
        self._random = random.Random(5)  # seeded: the same CIDs every run

    def __call__(self, n: int) -> bytes:
        self.draws += 1
        if self.draws > DRAW_GUARD:
            raise RuntimeError("the endpoint keeps drawing CIDs: unbounded search")
        return self._random.randbytes(n)


def _tiny_space_endpoint(pools: PoolSet) -> ServerEndpoint:
    _, scfg = configs(server={"connection_id": 1, "random_bytes": _CountedRandom()})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return ServerEndpoint(scfg, pools=pools, wall_clock=wall_clock)


def _connect(net: SimNetwork, ep: ServerEndpoint, pools: PoolSet, i: int) -> Connection:
    ccfg, _ = configs(client={"connection_id": 1})
    c = Connection(ccfg, pools=pools, wall_clock=wall_clock)
    net.add((f"10.9.{i // 200}.{i % 200 + 1}", 7000 + i), c)
    c.connect(SERVER_ADDR, net.now)
    return c


def test_a_full_cid_space_refuses_new_connections_and_short_answers_requests() -> None:
    pools = PoolSet()
    net = SimNetwork(11)
    ep = _tiny_space_endpoint(pools)
    net.add(SERVER_ADDR, ep)
    # 256 one-byte CIDs: 32 connections holding MAX_LOCAL_CIDS each fill the space (the
    # bounded random search may give up a little earlier, when a handful are left).
    clients: list[Connection] = []
    late = None
    for i in range(2 * 256 // MAX_LOCAL_CIDS):
        c = _connect(net, ep, pools, i)
        net.run(lambda c=c: c.handshake_complete, max_time=net.now + 5.0)  # type: ignore[misc]
        if not c.handshake_complete:
            late = c  # no CID for it: refused at admission
            break
        clients.append(c)
        for want in (4, MAX_LOCAL_CIDS - 1 - 4):
            c.request_connection_ids(want)
            assert net.run(lambda c=c: not c._cid_request_outstanding)  # type: ignore[misc]
    assert late is not None
    assert len(clients) >= 256 // MAX_LOCAL_CIDS // 2
    issued = [cid for s in ep.connections.values() for cid in s.local_cids]
    assert len(set(issued)) == len(issued)
    assert len(issued) > 256 - 4 * MAX_LOCAL_CIDS  # refused only once nearly full
    stats = ep.statistics()
    assert stats.cid_space_exhausted >= 1
    assert stats.connections == len(clients)
    assert all(not c.closed for c in clients)
    shutdown_world(net, ep, [*clients, late])
    assert pools.in_use == 0


def test_a_request_for_cids_gets_fewer_when_the_space_is_short() -> None:
    pools = PoolSet()
    net = SimNetwork(12)
    ep = _tiny_space_endpoint(pools)
    net.add(SERVER_ADDR, ep)
    c = _connect(net, ep, pools, 0)
    assert net.run(lambda: c.handshake_complete)
    (server_conn,) = ep.connections.values()
    # Every other CID is taken by a live connection of this endpoint.
    for b in range(256):
        ep._by_cid.setdefault(bytes([b]), server_conn)
    c.request_connection_ids(4)
    assert net.run(lambda: not c._cid_request_outstanding)
    assert c.spare_peer_cids == ()
    assert server_conn.statistics().cid_requests_refused == 1
    assert ep.statistics().cid_space_exhausted >= 1
    assert c.handshake_complete and not c.closed
    shutdown_world(net, ep, [c])
    assert pools.in_use == 0


def test_a_cid_space_smaller_than_the_connection_cap_warns_the_programmer() -> None:
    _, scfg = configs(server={"connection_id": 2})
    with pytest.warns(RuntimeWarning, match="connection IDs"):
        ServerEndpoint(scfg, pools=PoolSet())
    _, roomy = configs(server={"connection_id": 4})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ServerEndpoint(roomy, pools=PoolSet())
