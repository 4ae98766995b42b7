"""Record sequence numbers around the stateless HelloRetryRequest, and epoch-0 replay checks.

A stateless reply (HRR, alert) carries the record sequence number of the ClientHello record
it answers, and the connection the second ClientHello leads to numbers its epoch-0 records
after it: a peer that keeps one epoch-0 replay window across the HRR (OpenSSL does, and so
does our client, RFC 9147 §4.5.1) then takes the ServerHello as new. Records the window
refuses are dropped and counted, never fatal.
"""

from __future__ import annotations

from typing import Any

import pytest

from dtls13.connection import Connection
from dtls13.endpoint import DoSProtectionConfig, ServerEndpoint
from dtls13.handshake.flights import handshake_fragment
from dtls13.handshake.gate import HelloGate, Verdict
from dtls13.handshake.messages import HELLO_RETRY_REQUEST_RANDOM
from dtls13.memory import PoolSet
from tests.support.conn_helpers import split_records
from tests.support.dtls_pair import (
    CLIENT_ADDR,
    SERVER_ADDR,
    configs,
    make_pair,
    shutdown_world,
    wall_clock,
)
from tests.support.netsim import Impairments, SimNetwork

VICTIM = ("10.4.0.1", 5000)


def _take(conn: Connection, now: float) -> list[bytes]:
    out = []
    for lease, _ in conn.datagrams_to_send(now):
        out.append(lease.tobytes())
        lease.release()
    return out


def _plaintext(data: bytes) -> list[tuple[int, int, bytes]]:
    """(content type, record sequence number, payload) of a datagram's epoch-0 records."""
    out = []
    for record in split_records(data):
        if record[0] < 0x20 and record[3:5] == b"\x00\x00":
            out.append((record[0], int.from_bytes(record[5:11], "big"), record[13:]))
    return out


def _server_hellos(data: bytes) -> list[tuple[bool, int]]:
    """(is a HelloRetryRequest, record sequence number) of each ServerHello fragment."""
    return [
        (payload[14:46] == HELLO_RETRY_REQUEST_RANDOM, seq)
        for ctype, seq, payload in _plaintext(data)
        if ctype == 22 and payload[:1] == b"\x02"
    ]


class _Watch:
    """Records the (is HRR, sequence number) of every ServerHello sent to the client."""

    def __init__(self, net: SimNetwork, client_addr: Any) -> None:
        self.seen: list[tuple[bool, int]] = []
        self.client_addr = client_addr
        net.tamper = self

    def __call__(self, src: Any, dst: Any, data: bytes) -> bytes:
        if dst == self.client_addr:
            self.seen += _server_hellos(data)
        return data


def _world(
    cookie_policy: str = "always",
    seed: int = 3,
    impairments: Impairments | None = None,
    dos: DoSProtectionConfig | None = None,
) -> tuple[SimNetwork, ServerEndpoint, PoolSet]:
    _, scfg = configs(server={"cookie_secret": bytes(32)})
    pools = PoolSet()
    net = SimNetwork(seed, impairments)
    ep = ServerEndpoint(
        scfg,
        pools=pools,
        dos=dos,
        cookie_policy=cookie_policy,  # type: ignore[arg-type]
        wall_clock=wall_clock,
    )
    net.add(SERVER_ADDR, ep)
    return net, ep, pools


def _client(net: SimNetwork, pools: PoolSet, addr: Any, **client: Any) -> Connection:
    ccfg, _ = configs(client=client or None)
    conn = Connection(ccfg, pools=pools, wall_clock=wall_clock)
    net.add(addr, conn)
    return conn


def _replays(conn: Connection) -> int:
    """Records the connection dropped as replays (RFC 9147 §4.5.1)."""
    drops = conn.statistics().record_drops
    assert isinstance(drops, dict)
    return int(drops["replay"])


def _renumber(data: bytes, seq: int) -> bytes:
    """A datagram of one DTLSPlaintext record, its record sequence number set to `seq`."""
    return data[:5] + seq.to_bytes(6, "big") + data[11:]


def _hello(seq: int = 0, **client: Any) -> bytes:
    """A first ClientHello datagram of our client's, its record numbered `seq`."""
    ccfg, _ = configs(client=client or None)
    conn = Connection(ccfg, pools=PoolSet(), wall_clock=wall_clock)
    conn.connect(SERVER_ADDR, 0.0)
    (data,) = _take(conn, 0.0)
    conn.close()
    _take(conn, 0.0)
    return _renumber(data, seq)


def _hrr_from(ep: ServerEndpoint, now: float) -> list[tuple[bytes, Any]]:
    out = []
    for lease, addr in ep.datagrams_to_send(now):
        out.append((lease.tobytes(), addr))
        lease.release()
    return out


# -- through the ServerEndpoint: our client's epoch-0 window sees what OpenSSL's sees ----


def test_first_client_under_cookie_policy_always_completes_at_once() -> None:
    """The first HRR an endpoint sends is numbered like the client's ClientHello (0) and
    the ServerHello after it: our client's epoch-0 window takes both, no retransmission."""
    net, ep, pools = _world("always")
    client = _client(net, pools, VICTIM)
    watch = _Watch(net, VICTIM)
    client.connect(SERVER_ADDR, 0.0)
    assert net.run(lambda: client.handshake_complete, max_time=30)
    assert net.now < 0.5, net.now  # no retransmission timeout (1 s) was needed
    assert client.stats["retransmissions"] == 0
    assert client.stats["hello_retry_requests_received"] == 1
    assert _replays(client) == 0
    (hrr_seq,) = [seq for is_hrr, seq in watch.seen if is_hrr]
    server_hello_seqs = [seq for is_hrr, seq in watch.seen if not is_hrr]
    assert hrr_seq == 0 and server_hello_seqs and min(server_hello_seqs) > hrr_seq
    shutdown_world(net, ep, [client])
    assert pools.in_use == 0


def test_client_after_100_hello_retries_to_other_sources_completes_at_once() -> None:
    """HRRs to strangers (spoofed sources) do not move the numbers a new client sees:
    before, the endpoint-wide counter numbered this client's HRR 100, the ServerHello
    began at 0 and a 64-record epoch-0 window (OpenSSL's, ours) dropped it as a replay."""
    net, ep, pools = _world("always")
    hello = _hello()
    for i in range(100):
        assert ep.receive_datagram(hello, (f"10.66.{i}.1", 4000 + i), 0.0) is None
    assert ep.gate.counters["hello_retry_sent"] == 100
    to_strangers = [seq for data, _ in _hrr_from(ep, 0.0) for _, seq in _server_hellos(data)]
    client = _client(net, pools, VICTIM)
    watch = _Watch(net, VICTIM)
    client.connect(SERVER_ADDR, 0.0)
    assert net.run(lambda: client.handshake_complete, max_time=30)
    assert net.now < 0.5, net.now
    assert client.stats["retransmissions"] == 0
    assert _replays(client) == 0
    (hrr_seq,) = [seq for is_hrr, seq in watch.seen if is_hrr]
    assert hrr_seq < 64 and min(seq for is_hrr, seq in watch.seen if not is_hrr) > hrr_seq
    assert to_strangers == [0] * 100  # each numbered like the ClientHello it answered
    shutdown_world(net, ep, [client])
    assert pools.in_use == 0


@pytest.mark.parametrize("seed", range(8))
def test_cookie_exchanges_through_the_endpoint_survive_loss_duplication_reordering(
    seed: int,
) -> None:
    """Duplicated datagrams are dropped as replays (counted) and lost ones come back by
    retransmission: every client completes, whatever the gate answered in between."""
    net, ep, pools = _world(
        "always", seed, Impairments(loss=0.15, duplicate=0.3, reorder=0.3, reorder_delay=0.05)
    )
    hello = _hello()
    for i in range(70):  # replies to strangers interleaved with the clients' exchanges
        ep.receive_datagram(hello, (f"10.67.{i}.1", 4000), 0.0)
    _hrr_from(ep, 0.0)
    clients = [_client(net, pools, (f"10.4.1.{i + 1}", 5000 + i)) for i in range(6)]
    for c in clients:
        c.connect(SERVER_ADDR, 0.0)
    assert net.run(lambda: all(c.handshake_complete for c in clients), max_time=100)
    assert all(c.stats["hello_retry_requests_received"] == 1 for c in clients)
    replays = sum(map(_replays, [*clients, *ep.connections.values()]))
    assert net.stats.duplicated and replays  # duplicates were met and counted
    shutdown_world(net, ep, clients)
    assert pools.in_use == 0


# -- the gate's other stateless replies -------------------------------------------------


def test_fragmented_client_hello_is_answered_with_its_last_record_number() -> None:
    """An HRR for a ClientHello that came in fragments carries the highest record number
    among them, and the connection after it numbers its ServerHello above that."""
    _, scfg = configs(server={"require_cookie": True, "cookie_secret": bytes(32)})
    pools = PoolSet()
    gate = HelloGate(scfg, pools)
    data = _hello()
    body = data[25:]
    half = len(body) // 2
    records = [
        b"\x16\xfe\xfd\x00\x00" + seq.to_bytes(6, "big") + len(frag).to_bytes(2, "big") + frag
        for seq, frag in (
            (4, handshake_fragment(1, len(body), 0, 0, body[:half])),
            (9, handshake_fragment(1, len(body), 0, half, body[half:])),
        )
    ]
    assert gate.receive_untrusted(records[0], VICTIM, 1.0).verdict is Verdict.DROP
    result = gate.receive_untrusted(records[1], VICTIM, 1.0)
    assert result.verdict is Verdict.REPLY and result.reply is not None
    (hrr,) = result.reply
    assert _server_hellos(hrr.tobytes()) == [(True, 9)]
    hrr.release()
    gate.close()
    assert pools.in_use == 0


def test_alert_for_a_bad_cookie_carries_the_client_hello_record_number() -> None:
    pair = make_pair(server={"require_cookie": True})
    c, s = pair.client, pair.server
    c.connect(SERVER_ADDR, 0.0)
    for d in _take(c, 0.0):
        s.receive_datagram(d, CLIENT_ADDR, 0.0)
    for d in _take(s, 0.0):
        c.receive_datagram(d, SERVER_ADDR, 0.01)
    (second,) = _take(c, 0.01)
    # A gate with another cookie secret cannot have issued this cookie.
    _, other = configs(server={"require_cookie": True})
    gate = HelloGate(other, pair.pools)
    result = gate.receive_untrusted(_renumber(second, 77), CLIENT_ADDR, 0.02)
    assert result.verdict is Verdict.REPLY and result.reply is not None
    (alert,) = result.reply
    assert _plaintext(alert.tobytes()) == [(21, 77, bytes([2, 47]))]
    alert.release()
    gate.close()
    pair.close()
    assert pair.pools.in_use == 0


def test_connection_numbers_its_server_hello_after_the_client_hello_record() -> None:
    """A server that kept nothing after a stateless HRR (message_seq 1) starts its epoch-0
    numbering after the second ClientHello's record, however its connection was made."""
    pair = make_pair(server={"require_cookie": True, "cookie_secret": bytes(32)})
    c = pair.client
    c.connect(SERVER_ADDR, 0.0)
    (first,) = _take(c, 0.0)
    gate = HelloGate(pair.server.config, pair.pools)  # type: ignore[arg-type]
    result = gate.receive_untrusted(_renumber(first, 40), CLIENT_ADDR, 0.0)
    assert result.reply is not None
    (hrr,) = result.reply
    c.receive_datagram(hrr.tobytes(), SERVER_ADDR, 0.01)
    hrr.release()
    (second,) = _take(c, 0.01)
    fresh = Connection(
        pair.server.config, pools=pair.pools, wall_clock=wall_clock, first_message_seq=1
    )
    fresh.receive_datagram(_renumber(second, 41), CLIENT_ADDR, 0.02)
    flight = _take(fresh, 0.02)
    assert [seq for _, seq in _server_hellos(flight[0])] == [42]
    gate.close()
    fresh.close()
    _take(fresh, 0.03)
    pair.close()
    assert pair.pools.in_use == 0


# -- epoch-0 replay detection (RFC 9147 §4.5.1), client and server ---------------------


def test_client_drops_and_counts_a_replayed_server_hello() -> None:
    pair = make_pair()
    c, s = pair.client, pair.server
    c.connect(SERVER_ADDR, 0.0)
    for d in _take(c, 0.0):
        s.receive_datagram(d, CLIENT_ADDR, 0.0)
    flight = _take(s, 0.0)
    server_hello = split_records(flight[0])[0]
    assert _server_hellos(server_hello) == [(False, 1)]  # after the ClientHello (0)
    c.receive_datagram(server_hello, SERVER_ADDR, 0.01)
    records_in = c.stats["records_in"]
    c.receive_datagram(server_hello, SERVER_ADDR, 0.02)  # the network duplicated it
    assert _replays(c) == 1
    assert c.stats["records_in"] == records_in and not c.closed
    for d in flight:
        c.receive_datagram(d, SERVER_ADDR, 0.03)
    assert pair.net.run(pair.completed, max_time=10)
    assert c.stats["handshake_restarts"] == 0
    pair.close()
    assert pair.pools.in_use == 0


def test_server_drops_a_duplicated_client_hello_but_answers_a_retransmitted_one() -> None:
    """A copy of the same record is a replay (dropped, counted); the client's own
    retransmission is a new record, and gets the server's flight again (§5.8.1)."""
    pair = make_pair()
    c, s = pair.client, pair.server
    c.connect(SERVER_ADDR, 0.0)
    (hello,) = _take(c, 0.0)
    s.receive_datagram(hello, CLIENT_ADDR, 0.0)
    assert _take(s, 0.0)
    s.receive_datagram(hello, CLIENT_ADDR, 0.5)
    assert _replays(s) == 1
    assert _take(s, 0.5) == [] and s.stats["retransmissions"] == 0 and not s.closed
    c.handle_timer(1.0)  # the client heard nothing: it retransmits (record number 1)
    (again,) = _take(c, 1.0)
    assert int.from_bytes(again[5:11], "big") == 1
    s.receive_datagram(again, CLIENT_ADDR, 1.0)
    assert _take(s, 1.0) and s.stats["retransmissions"] == 1
    pair.close()
    assert pair.pools.in_use == 0
