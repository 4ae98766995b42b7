"""The retransmission timer keeps its backed-off value for the next flight until a flight is
answered without having been retransmitted, and then starts again from the initial value
(RFC 9147 §5.8.2: "Implementations SHOULD retain the current timer value until a message is
transmitted and acknowledged without having to be retransmitted, at which time the value
SHOULD be adjusted")."""

from __future__ import annotations

from dtls13.connection import Connection
from dtls13.memory import PoolSet
from tests.support.dtls_pair import CLIENT_ADDR, SERVER_ADDR, configs, wall_clock


def output(conn: Connection, now: float) -> list[bytes]:
    out = []
    for lease, _ in conn.datagrams_to_send(now):
        out.append(bytes(lease))
        lease.release()
    return out


def deliver(datagrams: list[bytes], to: Connection, addr: object, now: float) -> None:
    for data in datagrams:
        to.receive_datagram(data, addr, now)


def pair() -> tuple[Connection, Connection]:
    # The server wants secp256r1, the client shares x25519 first: a HelloRetryRequest.
    ccfg, scfg = configs(
        client={"retransmit_initial": 1.0},
        server={"retransmit_initial": 1.0, "groups": ["secp256r1"]},
    )
    pools = PoolSet()
    client = Connection(ccfg, pools=pools, wall_clock=wall_clock)
    server = Connection(scfg, pools=pools, peer_address=CLIENT_ADDR, wall_clock=wall_clock)
    return client, server


def test_a_flight_answered_without_retransmission_resets_the_backed_off_timer() -> None:
    client, server = pair()
    try:
        client.connect(SERVER_ADDR, 0.0)
        output(client, 0.0)  # ClientHello1 lost
        client.handle_timer(1.0)
        deliver(output(client, 1.0), server, CLIENT_ADDR, 1.0)  # its retransmission
        deliver(output(server, 1.0), client, SERVER_ADDR, 1.0)  # HelloRetryRequest
        assert server.statistics().hello_retry_requests_sent == 1
        # ClientHello2 keeps the timer ClientHello1 backed off to (retained, §5.8.2)...
        assert client.get_timer() == 1.0 + 2.0
        deliver(output(client, 1.0), server, CLIENT_ADDR, 1.0)
        # ...and is answered at once, without a retransmission: the timer starts again.
        deliver(output(server, 1.0), client, SERVER_ADDR, 1.0)
        assert client.handshake_complete
        assert output(client, 1.0)  # the client's Finished
        assert client.get_timer() == 1.0 + 1.0
    finally:
        for conn in (client, server):
            conn.abandon("test done")
            output(conn, 0.0)


def test_a_flight_answered_after_a_retransmission_keeps_the_backed_off_timer() -> None:
    client, server = pair()
    try:
        client.connect(SERVER_ADDR, 0.0)
        deliver(output(client, 0.0), server, CLIENT_ADDR, 0.0)
        output(server, 0.0)  # the HelloRetryRequest is lost
        client.handle_timer(1.0)
        deliver(output(client, 1.0), server, CLIENT_ADDR, 1.0)  # ClientHello1 again
        deliver(output(server, 1.0), client, SERVER_ADDR, 1.0)  # the HRR again
        assert client.get_timer() == 1.0 + 2.0
    finally:
        for conn in (client, server):
            conn.abandon("test done")
            output(conn, 0.0)
