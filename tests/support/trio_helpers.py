"""Shared pieces of the trio adapter tests: configs, bound sockets, an echo handler."""

from __future__ import annotations

import errno
from typing import Any

import trio

from dtls13 import ClientConfig, DTLSChannel, DTLSEndpoint, ServerConfig
from dtls13.endpoint import DoSProtectionConfig
from dtls13.udp import RawSocket
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


class _SendThrough:
    """Stands in for an endpoint's batch socket while a test fakes its plain socket: each
    datagram of a batch goes through the fake's sendto, so the fake's full buffer or error
    reaches the batched send path as the errno a sendmmsg would report at that item."""

    def __init__(self, raw: Any, batch: Any) -> None:
        self.raw = raw
        self.batch = batch

    def send(self, items: list[tuple[Any, Any]], connected: bool) -> tuple[int, int]:
        for i, (lease, addr) in enumerate(items):
            try:
                if connected:
                    self.raw.send(lease)
                else:
                    self.raw.sendto(lease, addr)
            except OSError as exc:
                return i, exc.errno or errno.EAGAIN
        return len(items), 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.batch, name)


def use_socket(endpoint: DTLSEndpoint, raw: Any) -> None:
    """Route the endpoint's sends through `raw` (a fake wrapping its stdlib socket), on the
    batched path too; given the endpoint's own socket back, undo that."""
    batch = endpoint._batch
    original = batch.batch if isinstance(batch, _SendThrough) else batch
    endpoint._raw = raw
    if original is not None:
        endpoint._batch = original if isinstance(raw, RawSocket) else _SendThrough(raw, original)
