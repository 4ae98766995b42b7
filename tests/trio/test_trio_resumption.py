"""Resumption and 0-RTT through the trio adapter: channel.session, resumed, early data."""

from __future__ import annotations

import dataclasses

import trio

from dtls13 import ClientConfig, DTLSChannel, DTLSEndpoint, ServerConfig
from dtls13.memory import PoolSet
from tests.support.dtls_pair import pki
from tests.support.trio_helpers import udp_socket, wait_for


async def test_client_resumes_with_the_channel_session_and_sends_early_data() -> None:
    p = pki("ec256")
    leaf = p.leaf("ec256")
    server_config = ServerConfig(
        certificate_chain=leaf.chain_pem, private_key=leaf.key_pem, max_early_data=1024
    )
    client_config = ClientConfig(server_name="localhost", cafile=p.root_pem)
    pools = PoolSet()
    received: list[tuple[bool, bytes]] = []

    async def handler(channel: DTLSChannel) -> None:
        async for message in channel:
            received.append((channel.resumed, message))
            await channel.send(message)

    server_sock = await udp_socket()
    async with DTLSEndpoint(server_sock, pools=pools) as server, trio.open_nursery() as nursery:
        await nursery.start(server.serve, server_config, handler)
        address = server_sock.getsockname()
        async with DTLSEndpoint(await udp_socket(), pools=pools) as client:
            first = client.connect(address, client_config)
            await first.send(b"full")
            assert await first.receive() == b"full"
            assert not first.resumed and first.early_data_accepted is None
            await wait_for(lambda: first.session is not None)
            session = first.session
            assert session is not None and session.max_early_data == 1024
            await first.aclose()

            second = client.connect(address, dataclasses.replace(client_config, session=session))
            second.send_early_data(b"zero rtt")
            await second.do_handshake()
            assert second.resumed and second.early_data_accepted is True
            # A resumption reports the certificates authenticated in the full handshake.
            assert second.peer_certificates == first.peer_certificates != ()
            await second.send(b"after")
            assert await second.receive() in (b"zero rtt", b"after")
            await wait_for(lambda: (True, b"after") in received)
            await second.aclose()
        nursery.cancel_scope.cancel()
    assert (True, b"zero rtt") in received
    assert (False, b"full") in received


async def test_client_certificate_session_resumes_through_the_endpoint() -> None:
    """The ticket carries the client's chain, and the resuming ClientHello with it is larger
    than one (small) datagram: the endpoint assembles it and the server reports the same
    chain."""
    p = pki("ec256")
    leaf, client_leaf = p.leaf("ec256"), p.leaf("ec256", cn="dtls13 test client")
    server_config = ServerConfig(
        certificate_chain=leaf.chain_pem,
        private_key=leaf.key_pem,
        client_auth="required",
        cafile=p.root_pem,
    )
    client_config = ClientConfig(
        server_name="localhost",
        cafile=p.root_pem,
        certificate_chain=client_leaf.chain_pem,
        private_key=client_leaf.key_pem,
        mtu=512,
    )
    seen: list[tuple[bool, tuple[object, ...]]] = []

    async def handler(channel: DTLSChannel) -> None:
        async for message in channel:
            seen.append((channel.resumed, channel.peer_certificates))
            await channel.send(message)

    server_sock = await udp_socket()
    async with DTLSEndpoint(server_sock) as server, trio.open_nursery() as nursery:
        await nursery.start(server.serve, server_config, handler)
        address = server_sock.getsockname()
        async with DTLSEndpoint(await udp_socket()) as client:
            first = client.connect(address, client_config)
            await first.send(b"full")
            assert await first.receive() == b"full"
            await wait_for(lambda: first.session is not None)
            session = first.session
            assert session is not None and len(session.ticket) > client_config.mtu
            await first.aclose()

            second = client.connect(address, dataclasses.replace(client_config, session=session))
            await second.send(b"resumed")
            assert await second.receive() == b"resumed"
            assert second.resumed
            await second.aclose()
        nursery.cancel_scope.cancel()
    (full, chain), (resumed, again) = seen
    assert not full and resumed and len(chain) == 2 and again == chain
