"""Encrypted Client Hello (RFC 9849) behind a ServerEndpoint's stateless cookie gate: the
inner ClientHello decides the HelloRetryRequest, which confirms acceptance, and the cookie
keeps what the connection needs to open ClientHelloOuter2 (RFC 9849 §7.1.1)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from dtls13 import EchStatus, generate_ech_key
from dtls13.connection import Connection
from dtls13.endpoint import ServerEndpoint
from dtls13.events import HandshakeCompleted
from dtls13.handshake.constants import ExtensionType
from dtls13.memory import PoolSet
from tests.support.dtls_pair import CLIENT_ADDR, SERVER_ADDR, configs, shutdown_world, wall_clock
from tests.support.ech_client import EchWrapper
from tests.support.netsim import SimNetwork

KEY = generate_ech_key(7, "public.example")


def _world(server: dict[str, Any]) -> tuple[SimNetwork, Connection, ServerEndpoint]:
    client = {"groups": ["x25519", "secp256r1"], "key_share_groups": ["x25519"]}
    ccfg, scfg = configs(client=client, server={"ech_keys": [KEY], **server})
    pools = PoolSet()
    net = SimNetwork(5)
    ep = ServerEndpoint(scfg, pools=pools, cookie_policy="always", wall_clock=wall_clock)
    net.add(SERVER_ADDR, ep)
    c = Connection(ccfg, pools=pools, wall_clock=wall_clock)
    net.add(CLIENT_ADDR, c)
    return net, c, ep


def _both_complete(net: SimNetwork, client: Connection, ep: ServerEndpoint) -> EchStatus:
    """Run until both sides completed; the server's HandshakeCompleted.ech_status."""

    def done() -> bool:
        conn = ep.connections.get(CLIENT_ADDR)
        return client.handshake_complete and conn is not None and conn.handshake_complete

    assert net.run(done)
    conn = ep.connections[CLIENT_ADDR]
    while (ev := conn.next_event()) is not None:
        if isinstance(ev, HandshakeCompleted):
            return ev.ech_status
    raise AssertionError("no HandshakeCompleted")


def test_stateless_retry_answers_the_inner_hello_and_the_connection_accepts() -> None:
    net, client, ep = _world({})
    # Without key_share in the outer ClientHello a gate that read the outer one would ask
    # for a group the client already offered; the inner one decides (no group asked).
    wrapper = EchWrapper(
        SimpleNamespace(net=net, client=client), KEY.config, outer_drops=(ExtensionType.key_share,)
    )
    client.connect(SERVER_ADDR, 0.0)
    assert _both_complete(net, client, ep) is EchStatus.ACCEPTED
    assert ep.gate.counters["hello_retry_sent"] == 1
    assert client.stats["hello_retry_requests_received"] == 1
    assert len(wrapper.sent) == 2 and wrapper.sent[1].extension(ExtensionType.cookie)
    shutdown_world(net, ep, [client])


def test_stateless_retry_for_a_group_keeps_the_hpke_context_in_the_cookie() -> None:
    net, client, ep = _world({"groups": ["secp256r1"]})
    EchWrapper(SimpleNamespace(net=net, client=client), KEY.config)
    client.connect(SERVER_ADDR, 0.0)
    assert _both_complete(net, client, ep) is EchStatus.ACCEPTED
    assert ep.gate.counters["hello_retry_sent"] == 1
    shutdown_world(net, ep, [client])


def test_stateless_retry_after_a_rejection_sends_retry_configs_from_the_cookie() -> None:
    net, client, ep = _world({})
    EchWrapper(SimpleNamespace(net=net, client=client), generate_ech_key(7, "p.example").config)
    client.connect(SERVER_ADDR, 0.0)

    def rejected() -> bool:
        conn = ep.connections.get(CLIENT_ADDR)
        return conn is not None and conn.statistics().ech_rejected == 1

    assert net.run(rejected, max_time=30)
    assert ep.connections[CLIENT_ADDR]._hs.ech_status() is EchStatus.REJECTED
    shutdown_world(net, ep, [client])
