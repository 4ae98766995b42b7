"""Keying material exporters on trio channels over real 127.0.0.1 sockets."""

from __future__ import annotations

import contextlib

import pytest
import trio
from trio_helpers import GENEROUS, configs, udp_socket

from dtls13 import DTLSChannel, DTLSEndpoint
from dtls13.alerts import LocalProtocolError
from dtls13.memory import PoolSet


async def test_client_and_server_channels_export_the_same_keying_material() -> None:
    pools = PoolSet()
    client_config, server_config = configs()
    server_values: list[bytes] = []

    async def handler(channel: DTLSChannel) -> None:
        # The server tells the client what it derived, over the channel itself.
        server_values.append(channel.export_keying_material("EXPORTER-trio", b"ctx", 40))
        await channel.send(server_values[-1])
        ended = (trio.BrokenResourceError, trio.ClosedResourceError, trio.EndOfChannel)
        with contextlib.suppress(*ended):
            await channel.receive()

    async with trio.open_nursery() as nursery:
        server = DTLSEndpoint(await udp_socket(), pools=pools, dos=GENEROUS)
        await nursery.start(server.serve, server_config, handler)
        async with DTLSEndpoint(await udp_socket(), pools=pools) as endpoint:
            channel = endpoint.connect(server.socket.getsockname(), client_config)
            with pytest.raises(LocalProtocolError):
                channel.export_keying_material("EXPORTER-trio", b"ctx", 40)
            with trio.fail_after(10):
                await channel.do_handshake()
                ours = channel.export_keying_material("EXPORTER-trio", b"ctx", 40)
                assert await channel.receive() == ours
            assert len(ours) == 40 and server_values == [ours]
            assert channel.export_keying_material("EXPORTER-trio", None, 40) != ours
            with pytest.raises(LocalProtocolError, match="0-RTT"):
                channel.export_early_keying_material("EXPORTER-trio", None, 40)
            await channel.aclose()
        server.close()
    assert pools.in_use == 0
