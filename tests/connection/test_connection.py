"""The sans-IO connection: full handshakes and data between our client and server."""

from __future__ import annotations

from typing import Any

from dtls13.connection import Connection
from dtls13.memory import PoolSet
from tests.support.dtls_pair import CLIENT_ADDR, SERVER_ADDR, configs, make_pair, wall_clock


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


def test_one_retransmission_per_repeated_flight() -> None:
    # The client's Finished is lost; the server repeats its flight, several datagrams at
    # MTU 300. The client resends its Finished once for that burst, not once per datagram
    # (against OpenSSL 4.1 that was 15 copies, after which s_server stopped answering).
    ccfg, scfg = configs(server={"mtu": 300})
    pools = PoolSet()
    client = Connection(ccfg, pools=pools, wall_clock=wall_clock)
    server = Connection(scfg, pools=pools, wall_clock=wall_clock)

    def take(conn: Connection, now: float) -> list[bytes]:
        out = []
        for lease, _ in conn.datagrams_to_send(now):
            out.append(lease.tobytes())
            lease.release()
        return out

    client.connect(SERVER_ADDR, 0.0)
    for d in take(client, 0.0):
        server.receive_datagram(d, CLIENT_ADDR, 0.0)
    for d in take(server, 0.0):
        client.receive_datagram(d, SERVER_ADDR, 0.0)
    assert client.handshake_complete
    take(client, 0.0)  # the Finished, lost
    server.handle_timer(1.0)
    repeated = take(server, 1.0)
    assert len(repeated) > 3
    sent = []
    for i, d in enumerate(repeated):
        client.receive_datagram(d, SERVER_ADDR, 1.0 + i * 0.001)
        sent += take(client, 1.0 + i * 0.001)
    assert client.stats["retransmissions"] == 1
    assert len(sent) == 1
    for d in sent:
        server.receive_datagram(d, CLIENT_ADDR, 1.1)
    assert server.handshake_complete
    client.close()
    server.close()
    take(client, 2.0)
    take(server, 2.0)
    assert pools.in_use == 0


def test_second_client_hello_completes_on_a_server_that_kept_no_state() -> None:
    """RFC 9147 §5.1: everything the server needs after its HRR travels in the cookie."""
    from dtls13.connection import Connection
    from tests.support.dtls_pair import SERVER_ADDR, wall_clock

    secret = b"s" * 32
    pair = make_pair(server={"require_cookie": True, "cookie_secret": secret})
    pair.client.connect(SERVER_ADDR, pair.net.now)
    # Let ClientHello1 reach the first server and its HRR come back, then replace the
    # server with a fresh one that shares only the cookie secret.
    assert pair.net.run(lambda: pair.client.stats["hello_retry_requests_received"] == 1)
    fresh = Connection(
        pair.server.config, pools=pair.pools, wall_clock=wall_clock, first_message_seq=1
    )
    pair.server.close()
    pair.net.flush()
    pair.server = fresh
    pair.net.add(SERVER_ADDR, fresh)
    assert pair.net.run(pair.completed)
    pair.client.send(b"stateless")
    pair.net.run(lambda: pair.received("server") == [b"stateless"])
    pair.close()
    assert pair.pools.in_use == 0


def test_second_client_hello_with_a_forged_cookie_is_refused() -> None:
    from dtls13.connection import Connection
    from tests.support.dtls_pair import SERVER_ADDR, configs, wall_clock

    pair = make_pair(server={"require_cookie": True})
    pair.client.connect(SERVER_ADDR, pair.net.now)
    assert pair.net.run(lambda: pair.client.stats["hello_retry_requests_received"] == 1)
    # A server with another secret cannot have issued this cookie.
    _, other = configs(server={"require_cookie": True})
    fresh = Connection(other, pools=pair.pools, wall_clock=wall_clock, first_message_seq=1)
    pair.server.close()
    pair.net.flush()
    pair.server = fresh
    pair.net.add(SERVER_ADDR, fresh)
    # RFC 9147 §5.1: an invalid cookie MUST end the handshake with illegal_parameter.
    pair.net.run(lambda: pair.terminated("server") is not None)
    ended = pair.terminated("server")
    assert ended is not None and ended.alert is not None
    assert ended.alert.name == "illegal_parameter"
    pair.close()


def _plaintext_handshake(msg_type: int, body: bytes, seq: int = 0) -> bytes:
    """A DTLS 1.2-style plaintext record with one whole handshake message."""
    n = len(body)
    hs = bytes([msg_type]) + n.to_bytes(3, "big") + seq.to_bytes(2, "big") + bytes(3)
    hs += n.to_bytes(3, "big") + body
    return b"\x16\xfe\xfd" + bytes(8) + len(hs).to_bytes(2, "big") + hs


def test_dtls12_hello_verify_request_ends_with_protocol_version() -> None:
    from tests.support.dtls_pair import SERVER_ADDR

    pair = make_pair()
    pair.client.connect(SERVER_ADDR, 0.0)
    for lease, _ in pair.client.datagrams_to_send(0.0):
        lease.release()
    hvr = _plaintext_handshake(3, b"\xfe\xfd\x04abcd")  # HelloVerifyRequest, RFC 6347
    pair.client.receive_datagram(hvr, SERVER_ADDR, 0.1)
    ended = pair.terminated("client")
    assert ended is not None and ended.alert is not None
    assert ended.alert.name == "protocol_version"
    for lease, _ in pair.client.datagrams_to_send(0.1):
        assert bytes(lease)[0] == 0x15  # the alert goes out in plaintext
        lease.release()
    pair.close()


def test_dtls12_client_hello_gets_protocol_version() -> None:
    from tests.support.dtls_pair import CLIENT_ADDR

    pair = make_pair()
    body = (
        b"\xfe\xfd" + bytes(32) + b"\x00" + b"\x00" + b"\x00\x02\xc0\x2b" + b"\x01\x00"
    )  # DTLS 1.2 ClientHello: no extensions at all
    pair.server.receive_datagram(_plaintext_handshake(1, body), CLIENT_ADDR, 0.0)
    ended = pair.terminated("server")
    assert ended is not None and ended.alert is not None
    assert ended.alert.name == "protocol_version"
    pair.close()


def _damage_first(kind: str, byte_from_end: int) -> Any:
    """A tamper hook that flips one byte near the end of the first hello of `kind`."""
    done: list[bool] = []

    def tamper(src: Any, dst: Any, data: bytes) -> bytes:
        is_hello = (
            data[0] == 22
            and data[3:5] == b"\x00\x00"
            and data[13] == (1 if kind == "client" else 2)
        )
        if is_hello and not done:
            done.append(True)
            damaged = bytearray(data)
            damaged[-byte_from_end] ^= 0x01
            return bytes(damaged)
        return data

    return tamper


def test_damaged_server_hello_key_share_makes_the_client_start_over() -> None:
    pair = make_pair()
    done: list[bool] = []
    x25519_share = b"\x00\x33\x00\x24\x00\x1d\x00\x20"  # key_share: x25519, 32 bytes

    def damage_share(src: Any, dst: Any, data: bytes) -> bytes:
        at = data.find(x25519_share)
        if data[13] == 2 and at > 0 and not done:  # the first ServerHello
            done.append(True)
            damaged = bytearray(data)
            damaged[at + len(x25519_share) + 16] ^= 0x01
            return bytes(damaged)
        return data

    # The client derives other keys than the server: epoch-2 records fail to authenticate.
    pair.net.tamper = damage_share
    assert pair.handshake()
    assert pair.client.stats["handshake_restarts"] == 1
    assert pair.server.stats["handshake_restarts"] == 1
    # The new ClientHello goes on with the association's epoch-0 numbers: the server's
    # epoch-0 replay window takes it at once (no retransmission timeout).
    assert pair.client.stats["retransmissions"] == 0
    pair.client.send(b"after restart")
    pair.net.run(lambda: pair.received("server") == [b"after restart"])
    pair.close()
    assert pair.pools.in_use == 0


def test_damaged_client_hello_makes_the_server_start_over() -> None:
    pair = make_pair()
    pair.net.tamper = _damage_first("client", 40)  # inside the ClientHello's extensions
    assert pair.handshake()
    stats = pair.server.stats
    assert stats["handshake_restarts"] + stats["dropped_damaged_hello"] >= 1
    pair.close()
    assert pair.pools.in_use == 0


def test_spoofed_client_hello_does_not_restart_a_half_open_server() -> None:
    from dtls13.connection import Connection
    from tests.support.dtls_pair import CLIENT_ADDR, SERVER_ADDR, configs, wall_clock

    pair = make_pair()
    pair.client.connect(SERVER_ADDR, 0.0)
    assert pair.net.run(lambda: pair.server.state.name == "WAIT_CLIENT_FINISHED")
    ccfg, _ = configs()
    spoofer = Connection(ccfg, pools=pair.pools, wall_clock=wall_clock)
    spoofer.connect(SERVER_ADDR, pair.net.now)
    for lease, _ in spoofer.datagrams_to_send(pair.net.now):
        pair.net.inject(CLIENT_ADDR, SERVER_ADDR, lease.tobytes())
        lease.release()
    spoofer.abandon()
    assert pair.net.run(pair.completed)
    assert pair.server.stats["handshake_restarts"] == 0
    pair.close()
    assert pair.pools.in_use == 0


def test_repeated_loss_of_large_datagrams_shrinks_the_flights() -> None:
    """RFC 9147 §4.4: a path that silently drops big datagrams is survived by shrinking
    the handshake's datagrams (test_mtu_backoff.py: not the application's records)."""
    from tests.support.netsim import Impairments

    pair = make_pair(
        impairments=Impairments(mtu=1000),
        kind="rsa2048",
        client={"mtu": 1400},
        server={"mtu": 1400},
    )
    assert pair.handshake(max_time=120)
    assert pair.server.flight_mtu < 1000 < pair.server.mtu == 1400
    assert pair.net.stats.too_big > 0
    assert pair.exchange(b"small path", b"ok")
    pair.close()
    assert pair.pools.in_use == 0


def test_a_client_starting_over_with_a_fragmented_client_hello_is_answered() -> None:
    # A post-quantum ClientHello does not fit one datagram. When the client starts over
    # (here: its ServerHello was damaged on the way), the server that holds keys for the
    # association must reassemble the new ClientHello to answer it with a cookie
    # exchange (RFC 9147 §5.11), and the ClientHello2 that brings the cookie back too.
    pair = make_pair(
        client={"key_share_groups": ["X25519MLKEM768"]},
        server={"groups": ["X25519MLKEM768"]},
    )
    done: list[bool] = []

    def damage_server_hello(src: Any, dst: Any, data: bytes) -> bytes:
        if data[0] == 22 and data[13] == 2 and not done:  # the first ServerHello
            done.append(True)
            damaged = bytearray(data)
            damaged[13 + 12 + 2 + 10] ^= 0x01  # inside server_random
            return bytes(damaged)
        return data

    pair.net.tamper = damage_server_hello
    assert pair.handshake(max_time=30)
    assert pair.client.stats["handshake_restarts"] == 1
    assert pair.server.stats["handshake_restarts"] == 1
    assert pair.server.stats["hello_retry_requests_sent"] == 1
    assert pair.net.now < 10  # answered at once, not after timeouts
    assert pair.exchange(b"after restart", b"ok")
    pair.close()
    assert pair.pools.in_use == 0


def test_lost_acks_of_a_small_post_handshake_flight_do_not_lower_the_mtu() -> None:
    # RFC 9147 §4.4 backs off the record size when retransmissions go unanswered, which
    # helps only a flight too big for the path. After the handshake, a ticket of a few
    # hundred bytes whose ACKs are lost says nothing about the path's MTU: lowering it made
    # the application's next 1,100-byte send() fail with ValueError.
    pair = make_pair(server={"session_tickets": 1})
    assert pair.handshake()
    mtu = pair.server.mtu
    blocked: list[bytes] = []

    def drop_client_acks(src: Any, dst: Any, data: bytes) -> bytes | None:
        if dst == ("10.0.0.2", 4433):
            blocked.append(data)
            return None
        return data

    pair.net.tamper = drop_client_acks
    pair.net.run(lambda: False, max_time=pair.net.now + 30)
    assert pair.server.stats["retransmissions"] >= 3 and blocked
    assert pair.server.mtu == mtu
    pair.net.tamper = None
    pair.server.send(b"x" * 1100)
    pair.close()
    assert pair.pools.in_use == 0
