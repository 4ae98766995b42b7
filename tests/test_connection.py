"""The sans-IO connection: full handshakes and data between our client and server."""

from __future__ import annotations

from dtls_pair import make_pair


def test_handshake_completes_and_data_flows_both_ways() -> None:
    pair = make_pair()
    assert pair.handshake()
    pair.client.send(b"ping")
    pair.net.run(lambda: pair.received("server") == [b"ping"])
    pair.server.send(b"pong")
    pair.net.run(lambda: pair.received("client") == [b"pong"])
    pair.close()
    assert pair.pools.in_use == 0
