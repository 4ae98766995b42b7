"""open_dtls_client and serve_dtls: a DTLSEndpoint with its socket made for you."""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

from ..arguments import check_port
from ..config import ClientConfig, ServerConfig
from ..demux import NonDtlsHandler
from ..memory import PoolSet
from .channel import DTLSChannel
from .endpoint import DTLSEndpoint, Handler

if TYPE_CHECKING:
    from ..endpoint import DoSProtectionConfig


async def _bound_socket(
    host: str | None, port: int, *, reuse_port: bool = False
) -> trio.socket.SocketType:
    infos = await trio.socket.getaddrinfo(
        host, port, type=trio.socket.SOCK_DGRAM, flags=trio.socket.AI_PASSIVE
    )
    if not infos:  # pragma: no cover - getaddrinfo raises instead
        raise OSError(f"cannot resolve {host!r}")
    family, _, _, _, addr = infos[0]
    sock = trio.socket.socket(family, trio.socket.SOCK_DGRAM)
    try:
        if family == trio.socket.AF_INET6:
            sock.setsockopt(trio.socket.IPPROTO_IPV6, trio.socket.IPV6_V6ONLY, 1)
        if reuse_port:
            sock.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_REUSEPORT, 1)
        await sock.bind(addr)
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
    infos = await trio.socket.getaddrinfo(host, port, type=trio.socket.SOCK_DGRAM)
    family, _, _, _, addr = infos[0]
    if local_address is None:
        local_address = ("::", 0) if family == trio.socket.AF_INET6 else ("0.0.0.0", 0)
    sock = trio.socket.socket(family, trio.socket.SOCK_DGRAM)
    try:
        await sock.bind(local_address)
        # Connected: datagrams from anyone but the server never reach us, and an ICMP port
        # unreachable ends the handshake within seconds, not after handshake_timeout.
        await sock.connect(addr)
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
    cid_prefix: bytes = b"",
    task_status: trio.TaskStatus[DTLSEndpoint] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Bind (`host`, `port`) and serve `handler` on it until cancelled (like trio.serve_tcp).

    With ``nursery.start`` it reports the running `DTLSEndpoint` (its ``socket`` tells the
    port when `port` is 0). `host` None means every IPv4 interface. `reuse_port` sets
    SO_REUSEPORT, so several processes serve one port, the kernel hashing each client's
    address to one of them; give them the same ``cookie_secret`` and ``ticket_secret``.
    `cid_prefix` starts every connection ID this server issues (see dtls13.cid_layout), so
    that a datagram whose address changed can still be steered to it (dtls13.steering).
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
            cid_prefix=cid_prefix,
        )
    except BaseException:
        sock.close()
        raise
    async with endpoint, trio.open_nursery() as nursery:
        await nursery.start(endpoint.serve, config, handler)
        task_status.started(endpoint)
