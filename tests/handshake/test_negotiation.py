"""One place for each server decision: the suite, the group, the HelloRetryRequest and the
cookie's payload (handshake/negotiation.py, handshake/cookie.py), used by the stateless
gate, a connection's stateless reply and the server handshake alike."""

from __future__ import annotations

from typing import Any

import pytest

from dtls13.connection import Connection
from dtls13.crypto.suites import CipherSuite
from dtls13.endpoint import ServerEndpoint
from dtls13.handshake import messages as msgs
from dtls13.handshake import negotiation
from dtls13.handshake.constants import HandshakeType
from dtls13.handshake.constants import NamedGroup as G
from dtls13.handshake.cookie import pack_cookie_extra, unpack_cookie_extra
from dtls13.handshake.state import ServerState
from dtls13.memory import PoolSet
from tests.support.conn_helpers import plaintext_record
from tests.support.dtls_pair import CLIENT_ADDR, SERVER_ADDR, Pair, configs, make_pair, wall_clock

AES128, AES256, CHACHA = (
    CipherSuite.TLS_AES_128_GCM_SHA256,
    CipherSuite.TLS_AES_256_GCM_SHA384,
    CipherSuite.TLS_CHACHA20_POLY1305_SHA256,
)


def test_cookie_payload_round_trips_and_refuses_other_lengths() -> None:
    assert pack_cookie_extra(AES128, G.x25519) == b"\x13\x01\x00\x1d"
    assert pack_cookie_extra(AES128, None) == b"\x13\x01\x00\x00"
    assert unpack_cookie_extra(pack_cookie_extra(AES256, G.secp384r1)) == (AES256, G.secp384r1)
    assert unpack_cookie_extra(pack_cookie_extra(CHACHA, None)) == (CHACHA, None)
    for extra in (b"", b"\x13\x01\x00", b"\x13\x01\x00\x1d\x00"):
        assert unpack_cookie_extra(extra) is None


def test_the_servers_preference_order_decides() -> None:
    _, server = configs(
        server={"cipher_suites": (CHACHA, AES128), "groups": (G.secp384r1, G.x25519)}
    )
    assert negotiation.choose_suite(server, (AES128, CHACHA)) is CHACHA
    assert negotiation.choose_suite(server, (AES256,)) is None
    assert negotiation.choose_share_group(server, {G.x25519, G.secp384r1}) == G.secp384r1
    # A usable share: no group to ask for. None usable: our first the client supports.
    assert negotiation.retry_group(server, {G.x25519}, [G.x25519]) == (True, None)
    assert negotiation.retry_group(server, {G.secp256r1}, [G.x25519, G.secp384r1]) == (
        True,
        G.secp384r1,
    )
    assert negotiation.retry_group(server, set(), [G.secp256r1]) == (False, None)
    assert negotiation.retry_group(server, None, None) == (False, None)


def test_hello_retry_request_is_the_same_bytes_for_the_same_choices() -> None:
    one = msgs.push_message(negotiation.hello_retry_request(AES128, G.x25519, b"c" * 40))
    two = msgs.push_message(negotiation.hello_retry_request(AES128, G.x25519, b"c" * 40))
    assert one == two
    hrr = negotiation.hello_retry_request(AES128, None, None)
    assert hrr.is_hello_retry_request and len(hrr.extensions) == 1  # supported_versions


@pytest.mark.parametrize("suite", [AES128, AES256, CHACHA])
@pytest.mark.parametrize("group", [None, G.x25519, G.secp256r1])
def test_a_hello_retry_request_body_from_its_cached_prefix_is_the_codecs(
    suite: CipherSuite, group: G | None
) -> None:
    for cookie in (b"", b"c" * 40, bytes(range(256)), b"\xff" * 300):
        for _ in range(2):  # built, then from the cached prefix
            expected = msgs.push_message(negotiation.hello_retry_request(suite, group, cookie))
            assert expected[0] == HandshakeType.server_hello
            assert negotiation.hello_retry_request_body(suite, group, cookie) == expected[1]


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Who built a HelloRetryRequest or chose a suite, by caller module."""
    seen: list[str] = []
    import sys

    for name in ("hello_retry_request", "hello_retry_request_body", "choose_suite"):
        real = getattr(negotiation, name)

        def wrapper(*args: Any, _real: Any = real, _name: str = name) -> Any:
            caller = sys._getframe(1).f_code.co_filename.rsplit("/", 1)[-1]
            seen.append(f"{caller}:{_name}")
            return _real(*args)

        monkeypatch.setattr(negotiation, name, wrapper)
    return seen


def test_gate_and_server_handshake_decide_in_negotiation(calls: list[str]) -> None:
    """A stateless HelloRetryRequest from the gate, then the server handshake resuming
    from its cookie: both choose and build through negotiation.py."""
    client_cfg, server_cfg = configs()
    pools = PoolSet()
    ep = ServerEndpoint(server_cfg, pools=pools, cookie_policy="always", wall_clock=wall_clock)
    pair = make_pair(0, cfgs=(client_cfg, server_cfg), pools=pools)
    client = pair.client
    client.connect(SERVER_ADDR, 0.0)
    now = 0.0
    for _ in range(40):
        now += 0.01
        for lease, _addr in client.datagrams_to_send(now):
            ep.receive_datagram(bytes(lease), CLIENT_ADDR, now)
            lease.release()
        for lease, _addr in ep.datagrams_to_send(now):
            client.receive_datagram(bytes(lease), SERVER_ADDR, now)
            lease.release()
        if client.handshake_complete:
            break
    assert client.handshake_complete
    assert "gate.py:choose_suite" in calls and "gate.py:hello_retry_request" in calls
    assert "server.py:choose_suite" in calls and "server.py:hello_retry_request_body" in calls
    client.close()
    ep.close()
    for lease, _ in [*client.datagrams_to_send(now), *ep.datagrams_to_send(now)]:
        lease.release()
    ep.release()
    pair.close()


def test_stateful_retry_and_a_connections_stateless_reply_decide_in_negotiation(
    calls: list[str],
) -> None:
    """A server connection asked for a cookie answers with a HelloRetryRequest of its own;
    a ClientHello1 from someone else, once it has keys, gets a stateless one (RFC 9147
    §5.11)."""
    pair = make_pair(0, server={"require_cookie": True})
    assert pair.handshake()
    assert calls.count("server.py:hello_retry_request") == 1
    pair.close()
    pair = make_pair(1)
    pair.client.connect(SERVER_ADDR, 0.0)
    assert pair.net.run(lambda: pair.server.state is ServerState.WAIT_CLIENT_FINISHED)
    calls.clear()
    for data in _client_hello_from_someone_else(pair):
        pair.server.receive_datagram(data, CLIENT_ADDR, pair.net.now)
    assert calls == [
        "connection_new_association.py:choose_suite",
        "connection_new_association.py:hello_retry_request",
    ]
    assert pair.server.statistics().hello_retry_requests_sent == 1
    assert pair.net.run(pair.completed)
    pair.close()


def _client_hello_from_someone_else(pair: Pair) -> list[bytes]:
    other = Connection(pair.client.config, pools=pair.pools)
    other.connect(SERVER_ADDR, pair.net.now)
    out = []
    for lease, _ in other.datagrams_to_send(pair.net.now):
        # Renumbered: the genuine client's ClientHello took record number 0.
        out.append(plaintext_record(lease.tobytes()[13:], seq=500))
        lease.release()
    other.abandon()
    return out
