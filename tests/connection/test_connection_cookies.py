"""HelloRetryRequest cookies refused when tampered, expired or replayed (RFC 9147 §5.1)."""

from __future__ import annotations

import pytest

from dtls13.alerts import AlertDescription
from dtls13.connection import Connection
from dtls13.events import HandshakeCompleted
from tests.support.dtls_pair import CLIENT_ADDR, SERVER_ADDR, Pair, make_pair, wall_clock

SECRET = b"k" * 32


def _take(conn: Connection, now: float) -> list[bytes]:
    out = []
    for lease, _ in conn.datagrams_to_send(now):
        out.append(bytes(lease))
        lease.release()
    return out


def _to_second_hello(
    lifetime: float = 60.0, rotation: float | None = None, tamper: bool = False
) -> tuple[Pair, list[bytes]]:
    """Run ClientHello1 -> HRR(cookie) -> ClientHello2 by hand; return ClientHello2."""
    pair = make_pair(
        server={
            "require_cookie": True,
            "cookie_secret": SECRET,
            "cookie_lifetime": lifetime,
            "cookie_rotation": rotation,
        }
    )
    c, s = pair.client, pair.server
    c.connect(SERVER_ADDR, 0.0)
    for d in _take(c, 0.0):
        s.receive_datagram(d, CLIENT_ADDR, 0.0)
    hrr = _take(s, 0.0)
    cookie = s.handshake._work.hrr_cookie
    assert cookie is not None and len(hrr) == 1 and cookie in hrr[0]
    if tamper:
        # The HRR travels unprotected: flip one bit of the cookie's MAC on the way.
        bad = cookie[:-1] + bytes([cookie[-1] ^ 1])
        hrr = [hrr[0].replace(cookie, bad)]
    c.receive_datagram(hrr[0], SERVER_ADDR, 0.01)
    assert c.stats["hello_retry_requests_received"] == 1
    return pair, _take(c, 0.01)


def _fresh_server(pair: Pair) -> Connection:
    """A server that kept nothing: it starts at the second ClientHello (message_seq 1)."""
    fresh = Connection(
        pair.server.config, pools=pair.pools, wall_clock=wall_clock, first_message_seq=1
    )
    pair.server.close()
    _take(pair.server, 0.0)
    pair.server = fresh
    pair.net.add(SERVER_ADDR, fresh)
    return fresh


def _refused(pair: Pair, server: Connection, now: float) -> None:
    end = server.terminated
    assert end is not None and end.alert is AlertDescription.illegal_parameter, end
    assert not end.by_peer
    # The alert reaches the client, which ends too.
    for d in _take(server, now):
        pair.client.receive_datagram(d, SERVER_ADDR, now)
    client_end = pair.client.terminated
    assert client_end is not None and client_end.by_peer
    assert client_end.alert is AlertDescription.illegal_parameter
    pair.close()
    assert pair.pools.in_use == 0


def _deliver(server: Connection, datagrams: list[bytes], now: float, addr: object) -> None:
    for d in datagrams:
        server.receive_datagram(d, addr, now)


@pytest.mark.parametrize("stateless", [False, True])
def test_tampered_cookie_is_refused(stateless: bool) -> None:
    pair, ch2 = _to_second_hello(tamper=True)
    server = _fresh_server(pair) if stateless else pair.server
    _deliver(server, ch2, 0.02, CLIENT_ADDR)
    # Stateful or not, the server must end with illegal_parameter (RFC 9147 §5.1).
    _refused(pair, server, 0.02)


def test_expired_cookie_is_refused_by_a_stateless_server() -> None:
    pair, ch2 = _to_second_hello(lifetime=5.0)
    server = _fresh_server(pair)
    _deliver(server, ch2, 7.0, CLIENT_ADDR)
    _refused(pair, server, 7.0)


def test_stateful_server_accepts_its_own_cookie_past_the_lifetime() -> None:
    """The server that issued the cookie compares it with the one it keeps; the lifetime
    (a replay bound for stateless servers) does not apply: the handshake timeout does."""
    pair, ch2 = _to_second_hello(lifetime=5.0)
    pair.net.now = 7.0
    _deliver(pair.server, ch2, 7.0, CLIENT_ADDR)
    assert pair.server.terminated is None
    assert pair.net.run(pair.completed, max_time=30)
    pair.close()


def test_hrr_lost_until_the_cookie_lifetime_passed() -> None:
    """A stateful server re-sends its stored HRR when ClientHello1 repeats; when the
    first HRR was lost for longer than the cookie lifetime, that re-sent cookie is already
    old, and the server must still accept it (it refused it with illegal_parameter)."""
    pair = make_pair(
        server={"require_cookie": True, "cookie_secret": SECRET, "cookie_lifetime": 5.0}
    )
    lost: list[float] = []

    def tamper(src: object, dst: object, data: bytes) -> bytes | None:
        # Drop every server datagram for the first 10 s (the HRR and its repeats).
        if src == SERVER_ADDR and pair.net.now < 10.0:
            lost.append(pair.net.now)
            return None
        return data

    pair.net.tamper = tamper
    assert pair.handshake(max_time=60), (pair.terminated("client"), pair.terminated("server"))
    assert lost and pair.server.stats["hello_retry_requests_sent"] == 1
    assert pair.exchange(b"late", b"but fine")
    pair.close()


@pytest.mark.parametrize("stateless", [False, True])
def test_cookie_within_its_lifetime_is_accepted(stateless: bool) -> None:
    pair, ch2 = _to_second_hello(lifetime=5.0)
    server = _fresh_server(pair) if stateless else pair.server
    pair.net.now = 4.0
    _deliver(server, ch2, 4.0, CLIENT_ADDR)
    assert server.terminated is None
    assert pair.net.run(pair.completed, max_time=20)
    assert pair.exchange(b"cookie", b"accepted")
    pair.close()


def test_cookie_from_another_address_is_refused() -> None:
    pair, ch2 = _to_second_hello()
    server = _fresh_server(pair)
    _deliver(server, ch2, 0.02, ("10.9.9.9", 40000))
    _refused(pair, server, 0.02)


def test_cookie_survives_one_secret_rotation_but_not_two() -> None:
    # Accepted with the previous secret after one rotation (the current and the previous
    # secret are accepted), refused after the second.
    pair, ch2 = _to_second_hello(lifetime=100.0, rotation=10.0)
    server = _fresh_server(pair)
    # A fresh server's jar starts its rotation clock at its first use: make it rotate
    # the same way the first server's did by sharing the jar (same config object).
    jar = server.config.cookie_jar
    jar.rotate(12.0)
    pair.net.now = 12.0
    _deliver(server, ch2, 12.0, CLIENT_ADDR)
    assert server.terminated is None
    assert pair.net.run(pair.completed, max_time=30)
    done = [e for e in pair.server_events if isinstance(e, HandshakeCompleted)]
    assert done
    pair.close()

    pair, ch2 = _to_second_hello(lifetime=100.0)
    server = _fresh_server(pair)
    server.config.cookie_jar.rotate(1.0)
    server.config.cookie_jar.rotate(2.0)
    _deliver(server, ch2, 3.0, CLIENT_ADDR)
    _refused(pair, server, 3.0)
