"""The established application-data path of Connection.receive_datagram (one record per
datagram after the handshake) rejects and counts what the general path does."""

from __future__ import annotations

from typing import Any

import pytest

from dtls13.connection import Connection
from dtls13.events import ConnectionTerminated, DataReceived
from dtls13.record import RecordLayer
from tests.support.dtls_pair import CLIENT_ADDR, SERVER_ADDR, Pair, make_pair


def established(**kwargs: Any) -> Pair:
    pair = make_pair(**kwargs)
    assert pair.handshake()
    pair.net.flush()
    pair.net.run(lambda: False, max_time=pair.net.now + 2)  # late ACKs and tickets
    pair.drain()
    return pair


def datagram(conn: Connection, data: bytes, now: float) -> bytes:
    conn.send(data)
    (lease, _), *rest = conn.datagrams_to_send(now)
    assert not rest
    wire = lease.tobytes()
    lease.release()
    return wire


@pytest.fixture
def fast_hits(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """What each call of the established-path check decided (True: it took the record),
    in the general path's check of a lone record or the compiled read of one (this
    module runs through both receive paths, tests/connection/conftest.py)."""
    hits: list[bool] = []
    original = Connection._app_data_fast
    compiled = RecordLayer.receive_app_untrusted

    def counting(self: Connection, record: Any, addr: Any) -> bool:
        hits.append(original(self, record, addr))
        return hits[-1]

    def counting_compiled(self: RecordLayer, data: Any, now: float) -> Any:
        got = compiled(self, data, now)
        if type(got) is tuple:
            hits.append(True)
        return got

    monkeypatch.setattr(Connection, "_app_data_fast", counting)
    monkeypatch.setattr(RecordLayer, "receive_app_untrusted", counting_compiled)
    return hits


def events(conn: Connection) -> list[Any]:
    out = []
    while (ev := conn.next_event()) is not None:
        out.append(ev)
    return out


def test_data_replays_bad_tags_and_garbage_through_the_established_path(
    fast_hits: list[bool],
) -> None:
    pair = established()
    client, server, now = pair.client, pair.server, pair.net.now
    before = dict(server.stats)
    wire = datagram(client, b"hello", now)
    fast_hits.clear()
    server.receive_datagram(wire, CLIENT_ADDR, now)
    assert fast_hits == [True]
    assert events(server) == [DataReceived(b"hello")]
    assert server.stats["app_bytes_in"] - before["app_bytes_in"] == 5
    assert server.stats["records_in"] - before["records_in"] == 1
    # A replay, a damaged tag, a truncated record, garbage: dropped and counted, no event.
    server.receive_datagram(wire, CLIENT_ADDR, now)
    server.receive_datagram(wire[:-1] + bytes([wire[-1] ^ 1]), CLIENT_ADDR, now)
    server.receive_datagram(wire[:-3], CLIENT_ADDR, now)
    server.receive_datagram(b"\x17\xfe\xfd garbage", CLIENT_ADDR, now)
    assert events(server) == []
    drops = server.statistics().record_drops
    assert isinstance(drops, dict)
    assert drops["replay"] == 1 and drops["auth_failed"] >= 1
    assert not server.closed
    # Still in sync afterwards, in both directions.
    server.receive_datagram(datagram(client, b"again", now), CLIENT_ADDR, now)
    assert events(server) == [DataReceived(b"again")]
    client.receive_datagram(datagram(server, b"back", now), ("10.0.0.2", 4433), now)
    assert events(client) == [DataReceived(b"back")]
    pair.close()


def test_a_move_without_connection_ids_does_not_change_the_peer_address() -> None:
    pair = established()
    client, server, now = pair.client, pair.server, pair.net.now
    server.receive_datagram(datagram(client, b"moved", now), ("10.9.9.9", 1), now)
    assert events(server) == [DataReceived(b"moved")]
    assert server.peer_address == CLIENT_ADDR and server.stats["address_changes"] == 0
    pair.close()


def test_a_move_with_connection_ids_checks_the_newest_records_address_before_using_it(
    fast_hits: list[bool],
) -> None:
    pair = established(client={"connection_id": 4}, server={"connection_id": 4})
    client, server, now = pair.client, pair.server, pair.net.now
    assert server.cid_negotiated
    moved = ("10.9.9.9", 1)
    old = datagram(client, b"old", now)
    new = datagram(client, b"new", now)
    server.receive_datagram(new, moved, now)
    # RFC 9147 §11: not used before a reachability test.
    assert server.peer_address == CLIENT_ADDR and server.stats["address_changes"] == 0
    # An older record from elsewhere is delivered but starts no check of its address.
    server.receive_datagram(old, ("10.8.8.8", 2), now)
    assert events(server) == [DataReceived(b"new"), DataReceived(b"old")]
    assert fast_hits[-2:] == [True, True]
    assert server.statistics().path_checks_started == 1
    # Application data sent during the check waits for its end (RFC 9853 §5).
    server.send(b"held")
    out = server.datagrams_to_send(now)
    assert {addr for _, addr in out} == {CLIENT_ADDR, moved}
    assert len(out) == 2  # the probe (a KeyUpdate) to each address; the data held
    probes = [lease.tobytes() for lease, addr in out if addr == moved]
    for lease, _ in out:
        lease.release()
    # The client reads the probe (a KeyUpdate) at its new address and ACKs it from there.
    client.receive_datagram(probes[0], SERVER_ADDR, now)
    later = client.get_timer()
    assert later is not None
    client.handle_timer(later)
    for lease, _ in client.datagrams_to_send(later):
        server.receive_datagram(lease.tobytes(), moved, later)
        lease.release()
    assert server.peer_address == moved and server.stats["address_changes"] == 1
    server.send(b"to the new address")
    out = server.datagrams_to_send(later)
    assert [addr for _, addr in out] == [moved, moved]
    for lease, _ in out:
        client.receive_datagram(lease.tobytes(), SERVER_ADDR, later)
        lease.release()
    got = [e for e in events(client) if isinstance(e, DataReceived)]
    assert got == [DataReceived(b"held"), DataReceived(b"to the new address")]
    pair.close()


def test_the_peers_record_size_limit_is_still_enforced(fast_hits: list[bool]) -> None:
    pair = established(client={"record_size_limit": 1000}, server={"record_size_limit": 64})
    client, server, now = pair.client, pair.server, pair.net.now
    # Our limit binds the peer; an oversized record from it is a fatal record_overflow.
    client._peer_record_limit = None  # a peer that ignores what we announced
    server.receive_datagram(datagram(client, b"x" * 200, now), CLIENT_ADDR, now)
    assert any(isinstance(e, ConnectionTerminated) for e in events(server))
    assert server.closed and fast_hits[-1] is False  # left to the general path
    pair.close()


def test_a_closed_connection_delivers_nothing() -> None:
    pair = established()
    client, server, now = pair.client, pair.server, pair.net.now
    wire = datagram(client, b"late", now)
    server.close()
    events(server)
    server.receive_datagram(wire, CLIENT_ADDR, now)
    assert events(server) == []
    pair.close()


def test_the_first_failed_authentication_is_seen_by_the_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Until its first drop a record layer counts in zeros shared by all layers; that drop
    gives it a dict of its own, and the connection still sees the failed authentication
    (it checks the key's integrity limit, RFC 9147 §4.5.3)."""
    from dtls13.record.layer import NO_DROPS

    checks: list[Connection] = []
    original = Connection._check_integrity

    def spy(self: Connection, now: float) -> None:
        checks.append(self)
        original(self, now)

    monkeypatch.setattr(Connection, "_check_integrity", spy)
    pair = established()
    client, server, now = pair.client, pair.server, pair.net.now
    assert server._records.drops is NO_DROPS
    wire = datagram(client, b"hello", now)
    server.receive_datagram(wire[:-1] + bytes([wire[-1] ^ 1]), CLIENT_ADDR, now)
    assert checks == [server]
    assert server.statistics().record_drops["auth_failed"] == 1
    assert events(server) == []
    pair.close()
