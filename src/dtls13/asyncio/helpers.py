"""`serve_dtls` and `open_dtls_client`: the asyncio adapter's conveniences."""

from __future__ import annotations

import asyncio
import socket as stdlib_socket
from typing import TYPE_CHECKING

from ..arguments import check_port
from ..config import ClientConfig, ServerConfig
from ..demux import NonDtlsHandler
from ..memory import PoolSet
from .channel import DTLSChannel
from .endpoint import DTLSEndpoint, Handler

if TYPE_CHECKING:
    from ..endpoint import DoSProtectionConfig


async def _bound_socket(host: str, port: int, *, reuse_port: bool) -> stdlib_socket.socket:
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(
        host, port, type=stdlib_socket.SOCK_DGRAM, flags=stdlib_socket.AI_PASSIVE
    )
    family, _, _, _, addr = infos[0]
    sock = stdlib_socket.socket(family, stdlib_socket.SOCK_DGRAM)
    try:
        if family == stdlib_socket.AF_INET6:
            sock.setsockopt(stdlib_socket.IPPROTO_IPV6, stdlib_socket.IPV6_V6ONLY, 1)
        if reuse_port:
            sock.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_REUSEPORT, 1)
        sock.bind(addr)
    except BaseException:
        sock.close()
        raise
    return sock


async def open_dtls_client(
    host: str,
    port: int,
    config: ClientConfig,
    *,
    local_address: tuple[str, int] | None = None,
    pools: PoolSet | None = None,
    incoming_packets_buffer: int = 10,
    on_non_dtls_datagram: NonDtlsHandler | None = None,
) -> DTLSChannel:
    """Resolve `host`, bind a socket, connect and complete the handshake.

    The channel owns its endpoint: closing the channel closes the socket too. Raises
    OSError when `host` does not resolve, and the handshake's exceptions (see
    ``DTLSChannel.do_handshake``): ``dtls13.PeerUnreachable`` within about 3 s when the
    server's host keeps reporting that nothing listens on `port`.
    """
    check_port(port)
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=stdlib_socket.SOCK_DGRAM)
    family, _, _, _, addr = infos[0]
    if local_address is None:
        local_address = ("::", 0) if family == stdlib_socket.AF_INET6 else ("0.0.0.0", 0)
    sock = stdlib_socket.socket(family, stdlib_socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        sock.bind(local_address)
        # Connected: datagrams from anyone but the server never reach us, and an ICMP port
        # unreachable ends the handshake within seconds, not after handshake_timeout.
        sock.connect(addr)
        endpoint = DTLSEndpoint(
            sock,
            pools=pools,
            incoming_packets_buffer=incoming_packets_buffer,
            on_non_dtls_datagram=on_non_dtls_datagram,
        )
    except BaseException:
        sock.close()
        raise
    try:
        channel = endpoint.connect((str(addr[0]), int(addr[1])), config)
        channel._owns_endpoint = True
        await channel.do_handshake()
    except BaseException:
        endpoint.close()
        raise
    return channel


async def serve_dtls(
    handler: Handler,
    port: int,
    config: ServerConfig,
    *,
    host: str | None = None,
    pools: PoolSet | None = None,
    incoming_packets_buffer: int = 10,
    dos: DoSProtectionConfig | None = None,
    cookie_policy: str = "under_load",
    reuse_port: bool = False,
    on_non_dtls_datagram: NonDtlsHandler | None = None,
    started: asyncio.Future[DTLSEndpoint] | None = None,
) -> None:
    """Bind (`host`, `port`) and serve `handler` on it until cancelled.

    `started`, if given, gets the running `DTLSEndpoint` as its result (its ``socket``
    tells the port when `port` is 0). `host` None means every IPv4 interface. `reuse_port`
    sets SO_REUSEPORT, so several processes serve one port; give them the same
    ``cookie_secret`` and ``ticket_secret``.
    """
    check_port(port, any_port=True)
    sock = await _bound_socket("0.0.0.0" if host is None else host, port, reuse_port=reuse_port)
    try:
        endpoint = DTLSEndpoint(
            sock,
            pools=pools,
            incoming_packets_buffer=incoming_packets_buffer,
            dos=dos,
            cookie_policy=cookie_policy,
            on_non_dtls_datagram=on_non_dtls_datagram,
        )
    except BaseException:
        sock.close()
        raise
    async with endpoint:
        await endpoint.serve(config, handler, started=started)
