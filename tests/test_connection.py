"""The sans-IO connection: full handshakes and data between our client and server."""

from __future__ import annotations

from dtls_pair import CLIENT_ADDR, SERVER_ADDR, configs, make_pair, wall_clock

from dtls13.connection import Connection
from dtls13.memory import PoolSet


def test_handshake_completes_and_data_flows_both_ways() -> None:
    pair = make_pair()
    assert pair.handshake()
    pair.client.send(b"ping")
    pair.net.run(lambda: pair.received("server") == [b"ping"])
    pair.server.send(b"pong")
    pair.net.run(lambda: pair.received("client") == [b"pong"])
    pair.close()
    assert pair.pools.in_use == 0


def test_server_demanding_a_cookie_sends_hello_retry_and_completes() -> None:
    pair = make_pair(server={"require_cookie": True})
    assert pair.handshake()
    assert pair.server.stats["hello_retry_requests_sent"] == 1
    assert pair.client.stats["hello_retry_requests_received"] == 1
    pair.client.send(b"after cookie")
    pair.net.run(lambda: pair.received("server") == [b"after cookie"])
    pair.close()
    assert pair.pools.in_use == 0


def test_hello_retry_for_a_group_the_client_did_not_share() -> None:
    pair = make_pair(
        client={"groups": ["x25519", "secp384r1"], "key_share_groups": ["x25519"]},
        server={"groups": ["secp384r1"]},
    )
    assert pair.handshake()
    pair.drain()
    done = [e for e in pair.client_events if type(e).__name__ == "HandshakeCompleted"]
    assert done[0].group.name == "secp384r1"
    assert pair.client.stats["hello_retry_requests_received"] == 1
    pair.close()


def test_hello_retry_with_group_and_cookie_together() -> None:
    pair = make_pair(
        client={"groups": ["x25519", "secp256r1"], "key_share_groups": ["x25519"]},
        server={"groups": ["secp256r1"], "require_cookie": True},
    )
    assert pair.handshake()
    assert pair.client.stats["hello_retry_requests_received"] == 1
    pair.close()


def test_no_ack_for_a_flight_our_next_flight_answers() -> None:
    # The first fragment of a ClientHello arms the "rest of the flight is late" ACK timer
    # (RFC 9147 §7.1). Once the ClientHello is whole and answered, our flight acknowledges
    # it implicitly, so that timer must not fire: it sent an empty ACK that OpenSSL 4.1's
    # client took for the ACK of its Finished, so a lost Finished was never retransmitted.
    ccfg, scfg = configs(client={"mtu": 400, "key_share_groups": ["X25519MLKEM768"]})
    pools = PoolSet()
    client = Connection(ccfg, pools=pools, wall_clock=wall_clock)
    server = Connection(scfg, pools=pools, wall_clock=wall_clock)

    def deliver(src: Connection, dst: Connection, now: float) -> int:
        sent = src.datagrams_to_send(now)
        for lease, _ in sent:
            dst.receive_datagram(lease.tobytes(), CLIENT_ADDR, now)
            lease.release()
        return len(sent)

    client.connect(SERVER_ADDR, 0.0)
    assert deliver(client, server, 0.0) > 1  # the ClientHello, in fragments
    assert deliver(server, client, 0.0) > 0  # the server's flight
    # The client's Finished is lost; nothing is due from the server before its timer.
    for lease, _ in client.datagrams_to_send(0.0):
        lease.release()
    timer = server.get_timer()
    assert timer is not None and timer >= 1.0
    server.handle_timer(0.9)
    assert server.datagrams_to_send(0.9) == []
    assert server.stats["acks_sent"] == 0
    client.close()
    server.close()
    for conn in (client, server):
        for lease, _ in conn.datagrams_to_send(1.0):
            lease.release()
    assert pools.in_use == 0
