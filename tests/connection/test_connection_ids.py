"""Connection IDs (RFC 9146 extension, RFC 9147 §9): negotiation, records, rebinding, routing."""

from __future__ import annotations

from typing import Any

import pytest

from dtls13.alerts import AlertDescription, LocalProtocolError
from dtls13.config import ClientConfig
from dtls13.connection import MAX_LOCAL_CIDS, Connection
from dtls13.endpoint import ServerEndpoint
from dtls13.events import DataReceived
from dtls13.handshake import messages as msgs
from dtls13.memory import PoolSet
from tests.support.dtls_pair import (
    CLIENT_ADDR,
    SERVER_ADDR,
    Pair,
    configs,
    make_pair,
    shutdown_world,
    wall_clock,
)
from tests.support.netsim import Impairments, SimNetwork

NEW_ADDR = ("192.0.2.77", 61000)
ATTACKER = ("198.51.100.9", 6666)


def _cids_on_wire(pair: Pair) -> dict[Any, set[bytes | None]]:
    """The CID field of every unified-header record each side sends (None: no CID)."""
    seen: dict[Any, set[bytes | None]] = {}
    lengths = {
        CLIENT_ADDR: len(pair.server.local_cids[0]) if pair.server.local_cids else 0,
        SERVER_ADDR: len(pair.client.local_cids[0]) if pair.client.local_cids else 0,
    }

    def tamper(src: Any, dst: Any, data: bytes) -> bytes:
        if data[0] & 0xE0 == 0x20:
            cid = data[1 : 1 + lengths[src]] if data[0] & 0x10 else None
            seen.setdefault(src, set()).add(cid)
        return data

    pair.net.tamper = tamper
    return seen


def test_cid_handshake_and_data_carry_each_others_cids() -> None:
    pair = make_pair(client={"connection_id": 8}, server={"connection_id": 5})
    seen = _cids_on_wire(pair)
    assert pair.handshake()
    assert pair.client.cid_negotiated and pair.server.cid_negotiated
    assert len(pair.client.local_cids[0]) == 8 and len(pair.server.local_cids[0]) == 5
    assert pair.client.peer_cid == pair.server.local_cids[0]
    assert pair.server.peer_cid == pair.client.local_cids[0]
    # The ServerHello and the CID-carrying epoch-2 records shared datagrams: all were read
    # the first time, none dropped or retransmitted.
    for conn in (pair.client, pair.server):
        drops = conn.statistics().record_drops
        assert isinstance(drops, dict) and not any(drops.values()), drops
        assert conn.stats["retransmissions"] == 0
    assert pair.exchange(b"ping", b"pong")
    # Every encrypted record (handshake, ACK, data) carried the receiver's CID.
    assert seen[CLIENT_ADDR] == {pair.server.local_cids[0]}
    assert seen[SERVER_ADDR] == {pair.client.local_cids[0]}
    pair.close()
    assert pair.pools.in_use == 0


def test_cid_handshake_over_a_lossy_network() -> None:
    imp = Impairments(loss=0.2, reorder=0.2, duplicate=0.1)
    for seed in range(4):
        pair = make_pair(seed, imp, client={"connection_id": True}, server={"connection_id": 3})
        assert pair.handshake(), seed
        assert pair.exchange(b"c", b"s")
        pair.close()
        assert pair.pools.in_use == 0


@pytest.mark.parametrize(
    ("client", "server", "negotiated"),
    [(8, False, False), (False, 8, False), (0, 6, True), (6, 0, True)],
)
def test_cid_negotiation_variants(client: Any, server: Any, negotiated: bool) -> None:
    pair = make_pair(client={"connection_id": client}, server={"connection_id": server})
    seen = _cids_on_wire(pair)
    assert pair.handshake()
    assert pair.client.cid_negotiated is negotiated and pair.server.cid_negotiated is negotiated
    assert pair.exchange(b"c", b"s")
    if not negotiated:
        assert seen[CLIENT_ADDR] == seen[SERVER_ADDR] == {None}
    else:
        # An empty CID means records without one (RFC 9146 §3).
        expect_c = pair.server.local_cids[0] or None
        expect_s = pair.client.local_cids[0] or None
        assert seen[CLIENT_ADDR] == {expect_c} and seen[SERVER_ADDR] == {expect_s}
    pair.close()
    assert pair.pools.in_use == 0


def test_request_connection_id_answered_with_spare_cids_both_ways() -> None:
    pair = make_pair(client={"connection_id": 4}, server={"connection_id": 6})
    seen = _cids_on_wire(pair)
    assert pair.handshake()
    pair.client.request_connection_ids(2)
    with pytest.raises(LocalProtocolError, match="unanswered"):
        pair.client.request_connection_ids(1)
    assert pair.net.run(lambda: len(pair.client.spare_peer_cids) == 2, max_time=20)
    assert list(pair.client.spare_peer_cids) == pair.server.local_cids[1:]
    assert len(set(pair.server.local_cids)) == 3
    pair.server.request_connection_ids(9)  # more than we issue at once: 4 (§9 allows fewer)
    assert pair.net.run(lambda: len(pair.server.spare_peer_cids) == 4, max_time=20)
    # Switching to a spare CID: records carry it and still authenticate.
    spare = pair.client.spare_peer_cids[0]
    assert pair.client.use_spare_connection_id()
    assert pair.client.peer_cid == spare
    seen.clear()
    assert pair.exchange(b"on a new cid", b"fine")
    assert seen[CLIENT_ADDR] == {spare}
    pair.close()
    assert pair.pools.in_use == 0


@pytest.mark.parametrize(
    "message", [msgs.RequestConnectionId(1), msgs.NewConnectionId((b"abcd",), 1)]
)
def test_cid_messages_without_negotiated_cids_are_unexpected(message: Any) -> None:
    pair = make_pair()
    assert pair.handshake()
    with pytest.raises(LocalProtocolError):
        pair.client.request_connection_ids(1)
    pair.client._send_post_handshake(message, pair.net.now)
    assert pair.net.run(lambda: pair.terminated("server") is not None, max_time=10)
    ended = pair.terminated("server")
    assert ended is not None and ended.alert == AlertDescription.unexpected_message
    pair.close()
    assert pair.pools.in_use == 0


def test_new_connection_id_immediate_switches_our_cid() -> None:
    pair = make_pair(client={"connection_id": 4}, server={"connection_id": 4})
    assert pair.handshake()
    pair.server._send_post_handshake(
        msgs.NewConnectionId((b"\x01\x02\x03\x04", b"\x05\x06\x07\x08"), 0), pair.net.now
    )
    assert pair.net.run(lambda: pair.client.peer_cid == b"\x01\x02\x03\x04", max_time=10)
    assert pair.client.spare_peer_cids == (b"\x05\x06\x07\x08",)
    pair.close()
    assert pair.pools.in_use == 0


def _move_client(pair: Pair, new_addr: Any) -> None:
    """The client's NAT binding changes: it now sends (and receives) at new_addr."""
    net = pair.net
    net.endpoints[new_addr] = net.endpoints.pop(CLIENT_ADDR)


def test_peer_address_follows_authenticated_records_only() -> None:
    pair = make_pair(client={"connection_id": 8}, server={"connection_id": 8})
    captured: list[bytes] = []

    def tamper(src: Any, dst: Any, data: bytes) -> bytes | None:
        if capture and src == CLIENT_ADDR and data[0] & 0xF0 == 0x30:
            captured.append(data)
            return None  # held back, to be replayed later from elsewhere
        return data

    capture = False
    pair.net.tamper = tamper
    assert pair.handshake()
    assert pair.exchange(b"before", b"ok")
    capture = True
    pair.client.send(b"held back")
    pair.net.flush()
    capture = False
    assert captured
    assert pair.exchange(b"newer", b"ok2")
    # A record from a new address that authenticates but is older than the newest seen
    # (a delayed copy an attacker replays from elsewhere) does not move the association.
    pair.net.inject(ATTACKER, SERVER_ADDR, captured[0])
    pair.net.run(lambda: False, max_time=pair.net.now + 0.5)
    assert pair.server.peer_address == CLIENT_ADDR
    assert b"held back" in pair.received("server")
    # A forged record carrying the right CID fails authentication: nothing moves.
    forged = bytearray(captured[0])
    forged[-1] ^= 1
    drops = pair.server.statistics().record_drops["auth_failed"]
    pair.net.inject(ATTACKER, SERVER_ADDR, bytes(forged))
    pair.net.run(lambda: False, max_time=pair.net.now + 0.5)
    assert pair.server.peer_address == CLIENT_ADDR
    assert pair.server.statistics().record_drops["auth_failed"] == drops + 1
    # The client's NAT rebinds: its next records authenticate from the new address.
    _move_client(pair, NEW_ADDR)
    assert pair.exchange(b"after rebinding", b"reply to the new address")
    assert pair.server.peer_address == NEW_ADDR
    assert pair.server.stats["address_changes"] == 1
    pair.close()
    assert pair.pools.in_use == 0


def test_without_cids_the_address_never_changes() -> None:
    pair = make_pair()
    assert pair.handshake()
    pair.net.endpoints[NEW_ADDR] = pair.net.endpoints[CLIENT_ADDR]
    pair.client.send(b"from elsewhere")
    pair.net.flush()
    pair.net.run(lambda: False, max_time=pair.net.now + 0.5)
    assert pair.server.peer_address == CLIENT_ADDR
    del pair.net.endpoints[NEW_ADDR]
    pair.close()
    assert pair.pools.in_use == 0


# -- the server endpoint -------------------------------------------------------------------


def _endpoint_world(
    n: int, cid: Any = 8
) -> tuple[SimNetwork, list[Connection], list[Any], ServerEndpoint, PoolSet]:
    ccfg, scfg = configs(client={"connection_id": cid}, server={"connection_id": cid})
    pools = PoolSet()
    net = SimNetwork(5)
    ep = ServerEndpoint(scfg, pools=pools, wall_clock=wall_clock)
    net.add(SERVER_ADDR, ep)
    clients, addrs = [], []
    for i in range(n):
        c = Connection(ccfg, pools=pools, wall_clock=wall_clock)
        addr = (f"10.9.0.{i + 1}", 7000 + i)
        net.add(addr, c)
        clients.append(c)
        addrs.append(addr)
        c.connect(SERVER_ADDR, 0.0)
    assert net.run(
        lambda: (
            all(c.handshake_complete for c in clients)
            and len(ep.connections) == n
            and all(c.handshake_complete for c in ep.connections.values())
        )
    )
    return net, clients, addrs, ep, pools


def test_a_copy_raced_from_elsewhere_does_not_redirect_the_association() -> None:
    """RFC 9147 §11: no new address before a reachability test. An attacker who sees a
    record and sends a copy of it from another address first (the original, now a replay,
    is dropped) gets there only the probe of that address, within three times what it
    sent; the data goes on to the peer, and the peer's next record ends the check."""
    pair = make_pair(client={"connection_id": 8}, server={"connection_id": 8})
    raced: list[bytes] = []
    to_attacker: list[int] = []

    def tamper(src: Any, dst: Any, data: bytes) -> bytes | None:
        if race and src == CLIENT_ADDR and data[0] & 0xF0 == 0x30:
            raced.append(data)
            pair.net.inject(ATTACKER, SERVER_ADDR, data)  # delivered ahead of the original
        if dst == ATTACKER:
            to_attacker.append(len(data))
        return data

    race = False
    pair.net.tamper = tamper
    assert pair.handshake()
    assert pair.exchange(b"before", b"ok")
    race = True
    pair.client.send(b"seen on the path")
    pair.net.flush()
    race = False
    assert raced
    assert pair.server.peer_address == CLIENT_ADDR
    pair.server.send(b"meant for the client")
    pair.net.run(lambda: False, max_time=pair.net.now + 5)
    assert pair.received("client").count(b"meant for the client") == 1
    assert pair.received("server").count(b"seen on the path") == 1  # the original: a replay
    assert pair.server.peer_address == CLIENT_ADDR
    assert 0 < sum(to_attacker) <= 3 * sum(len(d) for d in raced)
    assert pair.exchange(b"next", b"back to the client")
    assert pair.server.peer_address == CLIENT_ADDR
    stats = pair.server.statistics()
    assert stats.address_changes == 0
    assert stats.path_checks_started == 1 and stats.path_checks_abandoned == 1
    pair.close()
    assert pair.pools.in_use == 0


def _server_data(conn: Connection) -> list[bytes]:
    out = []
    while (ev := conn.next_event()) is not None:
        if isinstance(ev, DataReceived):
            out.append(ev.data)
    return out


def _client_data(conn: Connection) -> list[bytes]:
    return _server_data(conn)


def test_endpoint_routes_by_cid_after_the_client_moves() -> None:
    net, clients, addrs, ep, pools = _endpoint_world(3)
    conns = {a: ep.connections[a] for a in addrs}
    assert all(len(c.local_cids[0]) == 8 for c in conns.values())
    assert len({c.local_cids[0] for c in conns.values()}) == 3
    # Client 1's NAT rebinds to a new address (and port).
    moved, old = clients[1], addrs[1]
    net.endpoints[NEW_ADDR] = net.endpoints.pop(old)
    moved.send(b"hello from the new address")
    assert net.run(lambda: b"hello from the new address" in _server_data(conns[old]))
    server_conn = conns[old]
    # RFC 9147 §11: the new address is used once the client ACKed a probe sent there.
    assert server_conn.peer_address == old
    assert net.run(lambda: server_conn.peer_address == NEW_ADDR)
    assert server_conn.statistics().path_checks_started == 1
    assert ep.connections.get(NEW_ADDR) is server_conn and old not in ep.connections
    assert ep.counters["address_changes"] == 1
    # Its answers go to the new address.
    server_conn.send(b"answer")
    assert net.run(lambda: b"answer" in _client_data(moved))
    # The other clients were not disturbed.
    for c, a in ((clients[0], addrs[0]), (clients[2], addrs[2])):
        c.send(b"still here")
        assert net.run(lambda c=c, a=a: b"still here" in _server_data(conns[a]))  # type: ignore[misc]
        assert conns[a].peer_address == a
    shutdown_world(net, ep, clients)
    assert pools.in_use == 0


def test_endpoint_forged_datagram_with_a_known_cid_does_not_move_the_association() -> None:
    net, clients, addrs, ep, pools = _endpoint_world(2)
    conn = ep.connections[addrs[0]]
    cid = conn.local_cids[0]
    # A well-formed unified header (C, S, L bits; epoch 3) with the victim's CID and junk.
    junk = bytes(range(40))
    forged = bytes([0x3F]) + cid + b"\x00\x05" + len(junk).to_bytes(2, "big") + junk
    before = conn.statistics().record_drops["auth_failed"]
    assert ep.receive_datagram(forged, ATTACKER, net.now) is conn
    assert conn.statistics().record_drops["auth_failed"] == before + 1
    assert conn.peer_address == addrs[0] and ep.connections[addrs[0]] is conn
    assert ATTACKER not in ep.connections and ep.counters["address_changes"] == 0
    assert not conn.closed
    # An unknown CID from a stranger is no connection's: dropped at the gate.
    unknown = bytes([0x3F]) + b"\xee" * 8 + forged[9:]
    assert ep.receive_datagram(unknown, ATTACKER, net.now) is None
    # The real client is unaffected.
    clients[0].send(b"real")
    assert net.run(lambda: b"real" in _server_data(conn))
    shutdown_world(net, ep, clients)
    assert pools.in_use == 0


def test_endpoint_forgets_cids_of_removed_connections() -> None:
    net, clients, addrs, ep, pools = _endpoint_world(1)
    conn = ep.connections[addrs[0]]
    cid = conn.local_cids[0]
    clients[0].request_connection_ids(2)
    assert net.run(lambda: len(clients[0].spare_peer_cids) == 2)
    assert (
        all(ep.debug_state().by_cid[c] is conn for c in conn.local_cids)
        and len(conn.local_cids) == 3
    )
    clients[0].close()
    net.flush()
    net.run(lambda: conn.closed)
    assert conn in ep.reap()
    assert not ep.debug_state().by_cid and cid not in ep.debug_state().by_cid
    shutdown_world(net, ep, clients)
    assert pools.in_use == 0


def test_config_connection_id_values() -> None:
    assert ClientConfig(verify=False, connection_id=True).cid_length == 8
    assert ClientConfig(verify=False, connection_id=0).cid_length == 0
    assert ClientConfig(verify=False).cid_length is None
    with pytest.raises(ValueError, match="connection_id"):
        ClientConfig(verify=False, connection_id=33)


def test_early_data_without_cid_is_read_by_a_server_that_issued_one() -> None:
    """0-RTT records go out before the ServerHello says which CID to use: they carry none
    while the server already expects its CID on the client's records."""
    from tests.connection.test_early_data import _early, _resumed_pair
    from tests.support.dtls_pair import first_session

    cid = {"connection_id": 8}
    cfgs = configs(client=cid, server={"max_early_data": 4096, **cid})
    session = first_session(cfgs)
    pair = _resumed_pair(1, cfgs, session)
    pair.client.connect(SERVER_ADDR, 0.0)
    pair.client.send_early_data(b"early one")
    assert pair.net.run(pair.completed)
    assert pair.client.cid_negotiated and pair.server.cid_negotiated
    assert _early(pair) == [b"early one"]
    assert pair.exchange(b"after", b"ok")
    pair.close()
    assert pair.pools.in_use == 0


def test_a_peer_cannot_make_us_hold_unbounded_connection_ids() -> None:
    net, clients, addrs, ep, pools = _endpoint_world(1)
    conn = ep.connections[addrs[0]]
    # A malicious (authenticated) client asks for CIDs again and again, never waiting.
    for _ in range(40):
        if clients[0].closed:
            break
        clients[0]._send_post_handshake(msgs.RequestConnectionId(4), net.now)
        net.run(lambda: False, max_time=net.now + 0.05)
    net.run(lambda: conn.closed, max_time=net.now + 30)
    assert len(conn.local_cids) <= MAX_LOCAL_CIDS
    assert sum(1 for c in ep.debug_state().by_cid.values() if c is conn) <= MAX_LOCAL_CIDS
    # Past the cap, requests are answered with no CIDs, then the connection ends with the
    # alert RFC 9147 §9 names for it.
    assert conn.rare_stat("cid_requests_refused") >= 1
    ended = conn.terminated
    assert ended is not None and ended.alert is AlertDescription.too_many_cids_requested
    shutdown_world(net, ep, clients)
    assert pools.in_use == 0
