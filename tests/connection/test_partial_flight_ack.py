"""A client that received the ServerHello and part of the server's encrypted flight ACKs,
after its delay, every record of that flight it processed, the ServerHello's included
(RFC 9147 §7.1: the ACK "covers the messages from that flight which it has received and
processed so far"), so the server resends only what is missing (§7.2)."""

from __future__ import annotations

from dtls13.connection import Connection
from dtls13.memory import PoolSet
from tests.support.conn_helpers import split_records
from tests.support.dtls_pair import CLIENT_ADDR, SERVER_ADDR, configs, wall_clock


def output(conn: Connection, now: float) -> list[bytes]:
    out = []
    for lease, _ in conn.datagrams_to_send(now):
        out.append(bytes(lease))
        lease.release()
    return out


def plaintext(datagram: bytes) -> bool:
    return datagram[0] == 22  # a DTLSPlaintext handshake record (a ServerHello)


def test_a_partial_ack_covers_the_server_hello_so_only_the_rest_is_resent() -> None:
    ccfg, scfg = configs(server={"mtu": 256})
    pools = PoolSet()
    client = Connection(ccfg, pools=pools, wall_clock=wall_clock)
    server = Connection(scfg, pools=pools, peer_address=CLIENT_ADDR, wall_clock=wall_clock)
    try:
        client.connect(SERVER_ADDR, 0.0)
        for data in output(client, 0.0):
            server.receive_datagram(data, CLIENT_ADDR, 0.0)
        flight = [r for d in output(server, 0.0) for r in split_records(d)]
        assert plaintext(flight[0]) and not any(plaintext(r) for r in flight[1:])
        assert len(flight) > 3
        # The ServerHello and the first encrypted record arrive, the rest is lost.
        for record in flight[:2]:
            client.receive_datagram(record, SERVER_ADDR, 0.0)
        assert output(client, 0.0) == []  # nothing at once: the ACK waits for its timer
        timer = client.get_timer()
        assert timer is not None and timer == ccfg.retransmit_initial / 4
        client.handle_timer(timer)
        acks = output(client, timer)
        assert len(acks) == 1
        server.receive_datagram(acks[0], CLIENT_ADDR, timer)
        resent = [r for d in output(server, timer) for r in split_records(d)]
        # The partial ACK made the server resend the rest at once (§7.2), not the
        # ServerHello nor the record the client already has.
        assert resent and not any(plaintext(r) for r in resent)
        assert len(resent) == len(flight) - 2
    finally:
        for conn in (client, server):
            conn.abandon("test done")
            output(conn, 0.0)
