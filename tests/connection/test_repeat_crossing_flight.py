"""Copies of the peer's handshake flight that arrive right after our answer went out crossed
it on the way (network duplicates, or a peer that sends each fragment twice, as BoringSSL's
runner does when it reorders fragments): they do not mean our flight was lost, so they are
not answered with a retransmission, which a peer reading in order would meet where it waits
for application data. A repeat that comes later (the peer's timer) still gets one
(RFC 9147 §5.8.1)."""

from __future__ import annotations

from dtls13.connection import Connection
from dtls13.memory import PoolSet
from tests.support.dtls_pair import CLIENT_ADDR, SERVER_ADDR, configs, wall_clock


def _output(conn: Connection, now: float) -> list[bytes]:
    out = []
    for lease, _ in conn.datagrams_to_send(now):
        out.append(bytes(lease))
        lease.release()
    return out


def _copies(server: Connection, now: float) -> list[bytes]:
    """The server's flight again in new records (copies of the same records would be
    dropped as replays)."""
    server._retransmit(now)
    return _output(server, now)


def _client_done() -> tuple[Connection, Connection, float]:
    """A client that has just completed its handshake and sent its Finished."""
    ccfg, scfg = configs(server={"session_tickets": 0})
    pools = PoolSet()
    client = Connection(ccfg, pools=pools, wall_clock=wall_clock)
    server = Connection(scfg, pools=pools, peer_address=CLIENT_ADDR, wall_clock=wall_clock)
    now = 1.0
    client.connect(SERVER_ADDR, now)
    for _ in range(10):
        for data in _output(client, now):
            server.receive_datagram(data, CLIENT_ADDR, now)
        for data in _output(server, now):
            client.receive_datagram(data, SERVER_ADDR, now)
        if client.handshake_complete:
            break
    assert client.handshake_complete
    assert _output(client, now)  # our Finished
    return client, server, now


def _close(client: Connection, server: Connection, now: float) -> None:
    for conn in (client, server):
        conn.close()
        _output(conn, now)


def test_copies_of_the_peer_flight_right_after_ours_get_no_retransmission() -> None:
    client, server, now = _client_done()
    for data in _copies(server, now):
        client.receive_datagram(data, SERVER_ADDR, now)
    assert client.statistics().retransmissions == 0
    assert _output(client, now) == []
    _close(client, server, now)


def test_a_repeat_of_the_peer_flight_after_a_while_gets_our_flight_again() -> None:
    client, server, now = _client_done()
    now += client.config.retransmit_initial / 2  # before our own timer, after rto/4
    for data in _copies(server, now):
        client.receive_datagram(data, SERVER_ADDR, now)
    assert client.statistics().retransmissions == 1
    assert _output(client, now)
    _close(client, server, now)
