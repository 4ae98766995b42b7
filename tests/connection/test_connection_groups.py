"""secp521r1 and ffdhe2048 in whole handshakes: HelloRetryRequest to each, large shares
through fragmentation and the stateless cookie gate, and invalid shares refused with
illegal_parameter (RFC 8446 §4.2.8.1, §4.2.8.2) without an exception escaping.

Every pair is built with ``debug=True``: an exception other than an Alert inside the
connection propagates out of ``receive_datagram`` and fails the test.
"""

from __future__ import annotations

from typing import Any

import pytest

from dtls13.alerts import AlertDescription
from dtls13.connection import Connection
from dtls13.events import HandshakeCompleted
from dtls13.handshake import extensions as ext
from dtls13.handshake import groups
from dtls13.handshake import messages as msgs
from dtls13.handshake.constants import ExtensionType, NamedGroup
from dtls13.handshake.gate import HelloGate
from dtls13.memory import PoolSet
from tests.handshake.test_gate import GatedServer
from tests.support.conn_helpers import handshake_message, plaintext_record
from tests.support.dtls_pair import CLIENT_ADDR, SERVER_ADDR, Pair, configs, make_pair, wall_clock
from tests.support.netsim import SimNetwork

G = NamedGroup
A = AlertDescription
NEW_GROUPS = [G.secp521r1, G.ffdhe2048]
P = groups._FFDHE2048_P


def _completed_with(pair: Pair, group: NamedGroup) -> None:
    for events in (pair.client_events, pair.server_events):
        (done,) = [e for e in events if isinstance(e, HandshakeCompleted)]
        assert done.group is group


def _retry_pair(group: NamedGroup, **server: Any) -> Pair:
    """A client that sends an x25519 share and also supports `group`, and a server that
    takes only `group`: the server must ask for it with a HelloRetryRequest."""
    return make_pair(
        client={"groups": ["x25519", group.name], "key_share_groups": ["x25519"]},
        server={"groups": [group.name], **server},
    )


# -- HelloRetryRequest to each group ----------------------------------------------------------


@pytest.mark.parametrize("group", NEW_GROUPS, ids=lambda g: g.name)
def test_hello_retry_request_selects_the_group(group: NamedGroup) -> None:
    pair = _retry_pair(group)
    assert pair.handshake()
    _completed_with(pair, group)
    assert pair.client.stats["hello_retry_requests_received"] == 1
    assert pair.server.stats["hello_retry_requests_sent"] == 1
    assert pair.exchange(b"after the retry", b"ok")
    pair.close()
    assert pair.pools.in_use == 0


@pytest.mark.parametrize("group", NEW_GROUPS, ids=lambda g: g.name)
def test_hello_retry_request_with_group_and_cookie(group: NamedGroup) -> None:
    pair = _retry_pair(group, require_cookie=True)
    assert pair.handshake()
    _completed_with(pair, group)
    assert pair.client.stats["hello_retry_requests_received"] == 1
    pair.close()
    assert pair.pools.in_use == 0


# -- large shares: fragmentation and the stateless gate ---------------------------------------


def _gated(
    client: dict[str, Any], server: dict[str, Any]
) -> tuple[SimNetwork, Connection, GatedServer, PoolSet]:
    ccfg, scfg = configs(client=client, server={"require_cookie": True, **server})
    pools = PoolSet()
    net = SimNetwork(1)
    conn = Connection(ccfg, pools=pools, wall_clock=wall_clock)
    gated = GatedServer(HelloGate(scfg, pools), pools)
    net.add(CLIENT_ADDR, conn)
    net.add(SERVER_ADDR, gated)
    return net, conn, gated, pools


def _finish_gated(net: SimNetwork, client: Connection, server: GatedServer, pools: Any) -> None:
    client.close()
    server.close()
    net.flush()
    assert pools.in_use == 0


def test_fragmented_ffdhe2048_client_hello_passes_the_cookie_gate() -> None:
    # A 256-byte share makes a ~450-byte ClientHello: at the smallest MTU it takes two
    # datagrams, which the gate assembles both times (ClientHello1 and, with the cookie,
    # ClientHello2).
    net, client, server, pools = _gated(
        client={"groups": ["ffdhe2048"], "key_share_groups": ["ffdhe2048"], "mtu": 256},
        server={"groups": ["ffdhe2048"]},
    )
    client.connect(SERVER_ADDR, 0.0)
    first = client.datagrams_to_send(0.0)
    assert len(first) >= 2 and all(len(lease) <= 256 for lease, _ in first)
    for lease, _ in first:
        net.inject(CLIENT_ADDR, SERVER_ADDR, lease.tobytes())
        lease.release()
    assert net.run(
        lambda: CLIENT_ADDR in server.conns and server.conns[CLIENT_ADDR].handshake_complete
    )
    gate = server.gate
    assert gate.counters["partials_started"] == 2
    assert gate.counters["hello_retry_sent"] == 1 and gate.counters["accepted"] == 1
    assert gate.partials == 0 and gate.bytes_held == 0
    assert client.handshake_complete
    assert client.handshake.group is server.conns[CLIENT_ADDR].handshake.group is G.ffdhe2048
    _finish_gated(net, client, server, pools)


@pytest.mark.parametrize("group", NEW_GROUPS, ids=lambda g: g.name)
def test_stateless_hello_retry_request_asks_for_the_group(group: NamedGroup) -> None:
    # The gate's HelloRetryRequest carries both the cookie and the group; the second
    # ClientHello brings the share and the connection completes with it.
    net, client, server, pools = _gated(
        client={"groups": ["x25519", group.name], "key_share_groups": ["x25519"]},
        server={"groups": [group.name]},
    )
    client.connect(SERVER_ADDR, 0.0)
    assert net.run(lambda: client.handshake_complete)
    assert client.handshake.group is server.conns[CLIENT_ADDR].handshake.group is group
    assert server.gate.counters["hello_retry_sent"] == 1
    assert client.stats["hello_retry_requests_received"] == 1
    _finish_gated(net, client, server, pools)


def test_ffdhe2048_beside_an_ml_kem_share_is_fragmented_and_accepted() -> None:
    pair = make_pair(
        client={
            "key_share_groups": ["ffdhe2048", "X25519MLKEM768"],
            "groups": ["ffdhe2048", "X25519MLKEM768", "x25519"],
        },
        server={"groups": ["ffdhe2048", "x25519"]},
    )
    pair.client.connect(SERVER_ADDR, pair.net.now)
    assert pair.net.run(pair.completed)
    _completed_with(pair, G.ffdhe2048)
    assert pair.server.stats["hello_retry_requests_sent"] == 0
    pair.close()
    assert pair.pools.in_use == 0


# -- invalid shares -----------------------------------------------------------------------------


def _p521_off_curve() -> bytes:
    good = groups.generate(G.secp521r1).public_bytes
    return good[:-1] + bytes([good[-1] ^ 1])


BAD_SHARES = [
    (G.ffdhe2048, "Y=0", lambda: bytes(256)),
    (G.ffdhe2048, "Y=1", lambda: (1).to_bytes(256, "big")),
    (G.ffdhe2048, "Y=p-1", lambda: (P - 1).to_bytes(256, "big")),
    (G.ffdhe2048, "Y=p", lambda: P.to_bytes(256, "big")),
    (G.ffdhe2048, "255-bytes", lambda: groups.generate(G.ffdhe2048).public_bytes[1:]),
    (G.ffdhe2048, "257-bytes", lambda: b"\x00" + groups.generate(G.ffdhe2048).public_bytes),
    (G.secp521r1, "off-curve", _p521_off_curve),
    (G.secp521r1, "132-bytes", lambda: groups.generate(G.secp521r1).public_bytes[:-1]),
    (G.secp521r1, "134-bytes", lambda: groups.generate(G.secp521r1).public_bytes + b"\x00"),
    (G.secp521r1, "compressed", lambda: b"\x02" + groups.generate(G.secp521r1).public_bytes[1:67]),
]
BAD_IDS = [f"{g.name}-{name}" for g, name, _ in BAD_SHARES]


def _with_share(hello: msgs.ClientHello, group: NamedGroup, share: bytes) -> msgs.ClientHello:
    key_share = ext.make_extension(
        ExtensionType.key_share, ext.push_key_share_client, [ext.KeyShareEntry(group, share)]
    )
    extensions = tuple(
        key_share if e.type == ExtensionType.key_share else e for e in hello.extensions
    )
    return msgs.ClientHello(
        random=hello.random, cipher_suites=hello.cipher_suites, extensions=extensions
    )


def _deliver(pair: Pair, to_server: bool) -> None:
    src, dst = (pair.client, pair.server) if to_server else (pair.server, pair.client)
    for lease, _ in src.datagrams_to_send(pair.net.now):
        dst.receive_datagram(
            lease.tobytes(), CLIENT_ADDR if to_server else SERVER_ADDR, pair.net.now
        )
        lease.release()


def _sole_alert(conn: Connection) -> int:
    """The description of the one plaintext fatal alert `conn` has to send."""
    out = conn.datagrams_to_send(0.0)
    data = [lease.tobytes() for lease, _ in out]
    for lease, _ in out:
        lease.release()
    assert [d[0] for d in data] == [0x15], data  # one alert record, in epoch 0
    assert data[0][-2] == 2  # fatal
    return data[0][-1]


@pytest.mark.parametrize(("group", "name", "make_share"), BAD_SHARES, ids=BAD_IDS)
def test_invalid_share_in_second_client_hello_is_illegal_parameter(
    group: NamedGroup, name: str, make_share: Any
) -> None:
    """After its HelloRetryRequest the server has committed to this client: an invalid
    share for the group it asked for ends the handshake with illegal_parameter."""
    pair = _retry_pair(group)
    pair.client.connect(SERVER_ADDR, 0.0)
    _deliver(pair, to_server=True)  # ClientHello1 with an x25519 share
    _deliver(pair, to_server=False)  # HelloRetryRequest for `group`
    for lease, _ in pair.client.datagrams_to_send(0.0):  # the genuine ClientHello2
        lease.release()
    assert pair.client.stats["hello_retry_requests_received"] == 1
    hello = pair.client.handshake.client_hello
    assert hello is not None
    msg_type, body = msgs.push_message(_with_share(hello, group, make_share()))
    pair.server.receive_datagram(
        plaintext_record(handshake_message(msg_type, body, 1), seq=1), CLIENT_ADDR, 0.1
    )
    end = pair.terminated("server")
    assert end is not None and end.alert is A.illegal_parameter and not end.by_peer
    assert _sole_alert(pair.server) == A.illegal_parameter
    pair.close()
    assert pair.pools.in_use == 0


CLIENT_SIDE_BAD = [BAD_SHARES[i] for i in (0, 2, 4, 6, 7)]


@pytest.mark.parametrize(
    ("group", "name", "make_share"),
    CLIENT_SIDE_BAD,
    ids=[f"{g.name}-{n}" for g, n, _ in CLIENT_SIDE_BAD],
)
def test_invalid_share_in_server_hello_is_illegal_parameter(
    monkeypatch: pytest.MonkeyPatch, group: NamedGroup, name: str, make_share: Any
) -> None:
    """The client checks the server's share as the server checks the client's. After a
    HelloRetryRequest the ServerHello is not a first hello that may have been damaged on
    the way: illegal_parameter."""
    real = groups.encapsulate

    def encapsulate(g: int, client_share: bytes) -> tuple[bytes, bytes]:
        _, secret = real(g, client_share)
        return make_share(), secret

    monkeypatch.setattr(groups, "encapsulate", encapsulate)
    pair = _retry_pair(group)
    pair.client.connect(SERVER_ADDR, 0.0)
    for _ in range(2):  # ClientHello1 -> HRR, ClientHello2 -> ServerHello ... Finished
        _deliver(pair, to_server=True)
        _deliver(pair, to_server=False)
    end = pair.terminated("client")
    assert end is not None and end.alert is A.illegal_parameter and not end.by_peer
    assert _sole_alert(pair.client) == A.illegal_parameter
    assert not [e for e in pair.client_events if isinstance(e, HandshakeCompleted)]
    pair.close()
    assert pair.pools.in_use == 0


@pytest.mark.parametrize("group", NEW_GROUPS, ids=lambda g: g.name)
def test_invalid_share_in_first_client_hello_is_dropped_as_damage(group: NamedGroup) -> None:
    """A first ClientHello is unauthenticated and may have been damaged on the way: the
    server drops it (counted) without an alert or any state, and the genuine
    retransmission still completes."""
    bad = {G.ffdhe2048: (P - 1).to_bytes(256, "big"), G.secp521r1: _p521_off_curve()}[group]
    pair = make_pair(
        client={"groups": [group.name], "key_share_groups": [group.name]},
        server={"groups": [group.name]},
    )
    pair.client.connect(SERVER_ADDR, 0.0)
    genuine = []
    for lease, _ in pair.client.datagrams_to_send(0.0):
        genuine.append(lease.tobytes())
        lease.release()
    hello = pair.client.handshake.client_hello
    assert hello is not None
    msg_type, body = msgs.push_message(_with_share(hello, group, bad))
    pair.server.receive_datagram(
        plaintext_record(handshake_message(msg_type, body, 0)), CLIENT_ADDR, 0.0
    )
    assert pair.server.stats["dropped_damaged_hello"] == 1
    assert pair.terminated("server") is None
    assert pair.server.datagrams_to_send(0.0) == []
    for data in genuine:
        pair.net.inject(CLIENT_ADDR, SERVER_ADDR, data)
    assert pair.net.run(pair.completed)
    _completed_with(pair, group)
    pair.close()
    assert pair.pools.in_use == 0
