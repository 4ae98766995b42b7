"""Shared pieces of the trio adapter tests: configs, bound sockets, an echo handler."""

from __future__ import annotations

from typing import Any

import trio

from dtls13 import ClientConfig, DTLSChannel, ServerConfig
from dtls13.endpoint import DoSProtectionConfig
from tests.support.dtls_pair import pki

# 100 clients from one address must not trip the per-source limits meant for floods.
GENEROUS = DoSProtectionConfig(
    max_connections_per_ip=1000,
    max_half_open_per_ip=1000,
    datagrams_per_second=1e6,
    datagram_burst=1e6,
    bytes_per_second=1e9,
    byte_burst=1e9,
)


def configs(**client: Any) -> tuple[ClientConfig, ServerConfig]:
    p = pki("ec256")
    leaf = p.leaf("ec256", ips=("127.0.0.1", "::1"))
    server = ServerConfig(certificate_chain=leaf.chain_pem, private_key=leaf.key_pem)
    opts: dict[str, Any] = {"server_name": "localhost", "cafile": p.root_pem, **client}
    return ClientConfig(**opts), server


async def udp_socket(host: str = "127.0.0.1") -> trio.socket.SocketType:
    family = trio.socket.AF_INET6 if ":" in host else trio.socket.AF_INET
    sock = trio.socket.socket(family, trio.socket.SOCK_DGRAM)
    await sock.bind((host, 0))
    return sock


async def echo(channel: DTLSChannel) -> None:
    try:
        async for message in channel:
            await channel.send(message)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass


async def wait_for(cond: Any, timeout: float = 5.0) -> None:
    with trio.fail_after(timeout):
        while not cond():
            await trio.sleep(0.001)
