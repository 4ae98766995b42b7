"""DTLS-SRTP on trio channels over real 127.0.0.1 sockets: use_srtp agreed, the same SRTP
keys on both sides, and STUN/RTP sharing the port handed to the application (RFC 7983)."""

from __future__ import annotations

import contextlib
from typing import Any

import trio
from trio_helpers import GENEROUS, configs, udp_socket, wait_for

from dtls13 import DTLSChannel, DTLSEndpoint, ServerConfig, SrtpProtectionProfile
from dtls13.memory import PoolSet

PROFILES = ["SRTP_AEAD_AES_128_GCM", "SRTP_AES128_CM_SHA1_80"]
STUN = bytes.fromhex("0001 0000 2112a442") + bytes(12)
RTP = bytes([0x80, 0x60]) + bytes(30)


async def test_srtp_keys_and_media_beside_dtls_on_one_port() -> None:
    pools = PoolSet()
    client_config, plain = configs(srtp_profiles=PROFILES)
    server_config = ServerConfig(
        certificate_chain=plain.chain,
        private_key=plain.key,
        srtp_profiles=["SRTP_AES128_CM_SHA1_80", "SRTP_AEAD_AES_128_GCM"],
    )
    at_server: list[tuple[bytes, Any]] = []
    at_client: list[tuple[bytes, Any]] = []
    server_keys: list[Any] = []

    async def handler(channel: DTLSChannel) -> None:
        server_keys.append(channel.srtp_keying_material())
        ended = (trio.BrokenResourceError, trio.ClosedResourceError, trio.EndOfChannel)
        with contextlib.suppress(*ended):
            async for message in channel:
                await channel.send(message)

    async with trio.open_nursery() as nursery:
        server_sock = await udp_socket()
        server = DTLSEndpoint(
            server_sock,
            pools=pools,
            dos=GENEROUS,
            on_non_dtls_datagram=lambda d, a: at_server.append((d, a)),
        )
        await nursery.start(server.serve, server_config, handler)
        client_sock = await udp_socket()
        async with DTLSEndpoint(
            client_sock, pools=pools, on_non_dtls_datagram=lambda d, a: at_client.append((d, a))
        ) as endpoint:
            channel = endpoint.connect(server_sock.getsockname(), client_config)
            with trio.fail_after(10):
                await channel.do_handshake()
                assert channel.srtp_profile is SrtpProtectionProfile.SRTP_AES128_CM_SHA1_80
                assert channel.srtp_mki == b""
                keys = channel.srtp_keying_material()
                await wait_for(lambda: server_keys)
                assert server_keys == [keys]
                assert len(keys.client_write_key) == 16 and len(keys.server_write_salt) == 14
                # Media and ICE on the same sockets, both ways, while DTLS goes on.
                await client_sock.sendto(STUN, server_sock.getsockname())
                await server_sock.sendto(RTP, client_sock.getsockname())
                await wait_for(lambda: at_server and at_client)
                await channel.send(b"still DTLS")
                assert await channel.receive() == b"still DTLS"
            assert at_server == [(STUN, client_sock.getsockname())]
            assert at_client == [(RTP, server_sock.getsockname())]
            assert endpoint.statistics().non_dtls_datagrams == 1
            assert server.statistics().non_dtls_datagrams == 1
            await channel.aclose()
        server.close()
    assert pools.in_use == 0


async def test_without_a_handler_media_is_dropped_and_the_handshake_unharmed() -> None:
    pools = PoolSet()
    client_config, server_config = configs()
    async with trio.open_nursery() as nursery:
        server_sock = await udp_socket()
        server = DTLSEndpoint(server_sock, pools=pools, dos=GENEROUS)

        async def idle(channel: DTLSChannel) -> None:
            await trio.sleep_forever()

        await nursery.start(server.serve, server_config, idle)
        async with DTLSEndpoint(await udp_socket(), pools=pools) as endpoint:
            channel = endpoint.connect(server_sock.getsockname(), client_config)
            await server_sock.sendto(RTP, endpoint.socket.getsockname())
            await endpoint.socket.sendto(STUN, server_sock.getsockname())
            with trio.fail_after(10):
                await channel.do_handshake()
            assert endpoint.statistics().non_dtls_datagrams == 0
            # Counted where any undecodable datagram is.
            assert channel.statistics().drops["record_bad_header"] == 1
            await channel.aclose()
        stats = server.statistics()
        assert stats.non_dtls_datagrams == 0
        assert stats.server is not None and stats.server.gate_dropped == 1
        server.close()
        nursery.cancel_scope.cancel()
    assert pools.in_use == 0
