"""A server endpoint's CIDs name it: every CID it issues starts with its cid_prefix."""

from __future__ import annotations

import os
from typing import Any

import pytest
import trio

from dtls13 import DTLSEndpoint
from dtls13.cid_layout import MIN_RANDOM_CID_BYTES, check_cid_prefix, worker_cid_prefix
from dtls13.connection import Connection
from dtls13.endpoint import ServerEndpoint
from dtls13.events import DataReceived
from dtls13.memory import PoolSet
from tests.support.dtls_pair import SERVER_ADDR, configs, shutdown_world, wall_clock
from tests.support.netsim import SimNetwork

PREFIX = b"\x03"


def _world(
    n: int, prefix: bytes, cid: Any = 8
) -> tuple[SimNetwork, list[Connection], ServerEndpoint, PoolSet]:
    ccfg, scfg = configs(client={"connection_id": cid}, server={"connection_id": cid})
    pools = PoolSet()
    net = SimNetwork(7)
    ep = ServerEndpoint(scfg, pools=pools, wall_clock=wall_clock, cid_prefix=prefix)
    net.add(SERVER_ADDR, ep)
    clients = []
    for i in range(n):
        c = Connection(ccfg, pools=pools, wall_clock=wall_clock)
        net.add((f"10.7.0.{i + 1}", 7100 + i), c)
        clients.append(c)
        c.connect(SERVER_ADDR, 0.0)
    assert net.run(
        lambda: (
            all(c.handshake_complete for c in clients)
            and len(ep.connections) == n
            and all(s.handshake_complete for s in ep.connections.values())
        )
    )
    return net, clients, ep, pools


def test_every_cid_the_endpoint_issues_starts_with_its_prefix() -> None:
    net, clients, ep, pools = _world(3, PREFIX)
    for c in clients:
        c.request_connection_ids(4)  # answered with NewConnectionId
    assert net.run(lambda: all(len(c.spare_peer_cids) == 4 for c in clients))
    issued = [cid for s in ep.connections.values() for cid in s.local_cids]
    assert len(issued) == 3 * 5
    # What the clients were told (ServerHello's extension, then NewConnectionId) is what
    # the server issued, and all of it carries the prefix, then random bytes.
    told = [cid for c in clients for cid in (c.peer_cid, *c.spare_peer_cids)]
    assert sorted(told) == sorted(issued)  # type: ignore[type-var]
    assert all(len(cid) == 8 and cid[:1] == PREFIX for cid in issued)
    assert len({cid[1:] for cid in issued}) == len(issued)
    assert set(ep._by_cid) == set(issued)
    shutdown_world(net, ep, clients)
    assert pools.in_use == 0


def test_a_prefixed_cid_still_routes_a_client_that_moved() -> None:
    net, clients, ep, pools = _world(2, b"\x00\x07", cid=6)
    moved = clients[1]
    (old,) = (a for a, e in net.endpoints.items() if e is moved)
    server_conn = ep.connections[old]
    assert server_conn.local_cids[0][:2] == b"\x00\x07"
    new = ("192.0.2.9", 40000)
    net.endpoints[new] = net.endpoints.pop(old)
    moved.send(b"from elsewhere")
    got: list[bytes] = []

    def arrived() -> bool:
        while (ev := server_conn.next_event()) is not None:
            if isinstance(ev, DataReceived):
                got.append(ev.data)
        return b"from elsewhere" in got

    assert net.run(arrived)
    # Used once the client has ACKed a probe sent there (RFC 9147 §11).
    assert net.run(lambda: server_conn.peer_address == new)
    shutdown_world(net, ep, clients)
    assert pools.in_use == 0


def test_a_prefix_takes_the_place_of_the_first_random_bytes() -> None:
    draws: list[bytes] = []

    def random_bytes(n: int) -> bytes:
        return draws.pop(0)[:n] if draws else os.urandom(n)

    _, scfg = configs(server={"connection_id": 8, "random_bytes": random_bytes})
    plain = ServerEndpoint(scfg, pools=PoolSet())
    prefixed = ServerEndpoint(scfg, pools=PoolSet(), cid_prefix=b"\x05")
    draws += [b"\xaa" * 8, b"\xbb" * 8]
    assert plain._issue_cid(object(), 8) == b"\xaa" * 8  # type: ignore[arg-type]
    assert prefixed._issue_cid(object(), 8) == b"\x05" + b"\xbb" * 7  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("connection_id", "prefix", "error", "fragment"),
    [
        (False, b"\x01", ValueError, "needs connection IDs"),
        (0, b"\x01", ValueError, "needs connection IDs"),  # we receive empty CIDs
        (4, b"\x01", ValueError, "at least 5 bytes"),
        (8, b"\x01\x02\x03\x04\x05", ValueError, "at least 9 bytes"),
        (8, "\x01", TypeError, "must be bytes"),
    ],
)
def test_a_prefix_that_does_not_fit_is_refused_at_once(
    connection_id: Any, prefix: Any, error: type[Exception], fragment: str
) -> None:
    _, scfg = configs(server={"connection_id": connection_id})
    with pytest.raises(error, match=fragment):
        ServerEndpoint(scfg, pools=PoolSet(), cid_prefix=prefix)


def test_the_smallest_cid_that_fits_a_prefix_keeps_enough_random_bytes() -> None:
    assert check_cid_prefix(b"\x01", 1 + MIN_RANDOM_CID_BYTES) == b"\x01"
    assert check_cid_prefix(bytearray(b"\x01"), 8) == b"\x01"
    assert check_cid_prefix(b"", None) == b""


@pytest.mark.parametrize(
    ("index", "error"), [(-1, ValueError), (256, ValueError), (True, TypeError)]
)
def test_worker_prefixes_are_one_byte(index: Any, error: type[Exception]) -> None:
    assert worker_cid_prefix(0) == b"\x00" and worker_cid_prefix(255) == b"\xff"
    with pytest.raises(error):
        worker_cid_prefix(index)


async def test_dtls_endpoint_checks_its_prefix_at_once_and_against_the_config() -> None:
    sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
    with pytest.raises(TypeError, match="must be bytes"):
        DTLSEndpoint(sock, cid_prefix="\x01")  # type: ignore[arg-type]
    await sock.bind(("127.0.0.1", 0))
    _, scfg = configs()  # no connection IDs
    with (
        DTLSEndpoint(sock, cid_prefix=b"\x01") as endpoint,
        pytest.raises(ValueError, match="needs connection IDs"),
    ):
        await endpoint.serve(scfg, lambda channel: trio.sleep(0))


def test_an_endpoint_that_asks_for_empty_cids_serves_more_than_one_client() -> None:
    """connection_id=0: every connection's CID of ours is empty; the second one used to
    wait forever for an empty CID no live connection held."""
    empty_draws = 0

    def random_bytes(n: int) -> bytes:
        nonlocal empty_draws
        empty_draws += n == 0
        assert empty_draws < 1000, "drawing empty CIDs in a loop"
        return os.urandom(n)

    ccfg, scfg = configs(
        client={"connection_id": 8}, server={"connection_id": 0, "random_bytes": random_bytes}
    )
    pools = PoolSet()
    net = SimNetwork(3)
    ep = ServerEndpoint(scfg, pools=pools, wall_clock=wall_clock)
    net.add(SERVER_ADDR, ep)
    clients = []
    for i in range(3):
        c = Connection(ccfg, pools=pools, wall_clock=wall_clock)
        net.add((f"10.8.0.{i + 1}", 7200 + i), c)
        clients.append(c)
        c.connect(SERVER_ADDR, 0.0)
    assert net.run(lambda: all(c.handshake_complete for c in clients) and len(ep.connections) == 3)
    assert all(s.local_cids == [b""] for s in ep.connections.values())
    assert not ep._by_cid
    # The clients send no CID to us; we put theirs on what we send them.
    assert all(c.peer_cid is None for c in clients)
    assert all(s.peer_cid for s in ep.connections.values())
    shutdown_world(net, ep, clients)
    assert pools.in_use == 0
