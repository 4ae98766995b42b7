"""Behind a ServerEndpoint (stateless cookie first): certificate selection by SNI, and an
application callback's bad answer ends only that client's handshake."""

from __future__ import annotations

from dtls13.alerts import AlertDescription
from dtls13.config import ClientConfig, ServerConfig
from dtls13.connection import Connection
from dtls13.endpoint import ServerEndpoint
from dtls13.events import HandshakeCompleted
from dtls13.memory import PoolSet
from tests.support.dtls_pair import SERVER_ADDR, pki, shutdown_world, wall_clock
from tests.support.netsim import SimNetwork

P = pki("ec256")
A = P.leaf("ec256", dns_names=("a.example.com",), cn="a leaf")
B = P.leaf("ec256", dns_names=("b.example.com",), cn="b leaf")


def _pick(offered: tuple[str, ...]) -> str | None:
    return "not offered" if "bad" in offered else offered[0]


def test_endpoint_clients_get_their_chain_and_a_bad_alpn_answer_ends_only_its_handshake() -> None:
    scfg = ServerConfig(
        certificate_chain=A.chain_pem,
        private_key=A.key,
        certificates=[(B.chain_pem, B.key)],
        alpn_callback=_pick,
        idle_release_after=None,
    )
    pools = PoolSet()
    net = SimNetwork(5)
    ep = ServerEndpoint(scfg, pools=pools, cookie_policy="always", wall_clock=wall_clock)
    net.add(SERVER_ADDR, ep)
    clients = []
    for i, (name, alpn) in enumerate(
        [("a.example.com", "good"), ("b.example.com", "bad"), ("b.example.com", "good")]
    ):
        ccfg = ClientConfig(
            server_name=name, cafile=P.root_pem, alpn_protocols=[alpn], idle_release_after=None
        )
        c = Connection(ccfg, pools=pools, wall_clock=wall_clock)
        net.add((f"10.2.0.{i + 1}", 6000 + i), c)
        clients.append(c)
        c.connect(SERVER_ADDR, 0.0)
    good_a, bad, good_b = clients
    assert net.run(lambda: good_a.handshake_complete and good_b.handshake_complete and bad.closed)
    assert bad.terminated is not None
    assert bad.terminated.alert is AlertDescription.internal_error and bad.terminated.by_peer
    served = {}
    for c in (good_a, good_b):
        while (ev := c.next_event()) is not None:
            if isinstance(ev, HandshakeCompleted):
                served[c] = ev.peer_certificates[0]
                assert ev.alpn_protocol == "good"
    assert served == {good_a: A.cert, good_b: B.cert}
    assert ep.gate.counters["hello_retry_sent"] == 3
    shutdown_world(net, ep, [good_a, good_b])
    assert pools.in_use == 0
