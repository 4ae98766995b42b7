"""Abuse of a trio server endpoint over real sockets: floods from many loopback addresses.

Linux routes all of 127.0.0.0/8 to loopback, so bots bind 127.0.0.2 ... 127.0.0.201.
"""

from __future__ import annotations

import sys
from typing import Any

import pytest
import trio
from trio_helpers import configs, echo, udp_socket, wait_for

from dtls13 import DTLSEndpoint, open_dtls_client
from dtls13.connection import Connection
from dtls13.endpoint import DoSProtectionConfig
from dtls13.handshake.flights import handshake_fragment
from dtls13.handshake.messages import HELLO_RETRY_REQUEST_RANDOM
from dtls13.memory import PoolSet

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="needs all of 127.0.0.0/8 on loopback"
)

BATCH = 20  # datagrams in flight at once: the server socket's receive buffer stays unfilled


def first_client_hellos(n: int) -> list[bytes]:
    """The first datagram of `n` sans-IO clients (each a whole, cookie-less ClientHello)."""
    client_config, _ = configs()
    pools = PoolSet()
    out = []
    for _ in range(n):
        conn = Connection(client_config, pools=pools)
        conn.connect(("127.0.0.1", 4433), 0.0)
        (lease, _), *rest = conn.datagrams_to_send(0.0)
        assert not rest
        out.append(lease.tobytes())
        lease.release()
        conn.close()
        for lease, _ in conn.datagrams_to_send(0.0):
            lease.release()
        pools.release_owner(conn.owner)
    assert pools.in_use == 0
    return out


def first_fragment(length: int, body: bytes) -> bytes:
    """A plaintext record with the first fragment of a ClientHello of `length` bytes."""
    frag = handshake_fragment(1, length, 0, 0, body)
    return b"\x16\xfe\xfd" + bytes(8) + len(frag).to_bytes(2, "big") + frag


class Harness:
    """A server endpoint on 127.0.0.1 with its own PoolSet, and bots on other addresses."""

    def __init__(self, nursery: trio.Nursery, pools: PoolSet) -> None:
        self.nursery = nursery
        self.pools = pools
        self.endpoint: DTLSEndpoint
        self.addr: tuple[str, int]
        self.bots: list[trio.socket.SocketType] = []

    async def start(self, **kwargs: Any) -> None:
        sock = await udp_socket("127.0.0.1")
        self.endpoint = DTLSEndpoint(sock, pools=self.pools, **kwargs)
        _, server_config = configs()
        await self.nursery.start(self.endpoint.serve, server_config, echo)
        self.addr = sock.getsockname()[:2]
        # The receive task holds its buffer from here on: part of the steady state.
        await wait_for(lambda: self.pools.in_use >= 1)

    def server_stats(self) -> dict[str, Any]:
        stats = self.endpoint.statistics()["server"]
        assert isinstance(stats, dict)
        return stats

    async def bot(self, host: str) -> trio.socket.SocketType:
        sock = await udp_socket(host)
        self.bots.append(sock)
        return sock

    async def send_all(self, items: list[tuple[trio.socket.SocketType, bytes]]) -> None:
        """Send each datagram, a batch at a time, waiting for the server to read each batch."""
        for i in range(0, len(items), BATCH):
            target = self.endpoint.counters["datagrams_in"]
            for sock, data in items[i : i + BATCH]:
                await sock.sendto(data, self.addr)
                target += 1
            await wait_for(lambda t=target: self.endpoint.counters["datagrams_in"] >= t)

    async def settled(self) -> None:
        """Wait until every reply the server queued has gone out."""
        await wait_for(lambda: self.endpoint.statistics()["queued_datagrams"] == 0)

    def close(self) -> None:
        for sock in self.bots:
            sock.close()
        self.endpoint.close()


async def replies(socks: list[trio.socket.SocketType], wait: float = 0.3) -> list[list[bytes]]:
    """Every datagram each socket receives within `wait` seconds."""
    got: list[list[bytes]] = [[] for _ in socks]

    async def drain(i: int, sock: trio.socket.SocketType) -> None:
        with trio.move_on_after(wait):
            while True:
                got[i].append(await sock.recv(65536))

    async with trio.open_nursery() as nursery:
        for i, sock in enumerate(socks):
            nursery.start_soon(drain, i, sock)
    return got


def is_hello_retry_request(datagram: bytes) -> bool:
    # A plaintext handshake record (epoch 0) holding a ServerHello with the HRR random.
    return datagram[0] == 22 and datagram[13] == 2 and HELLO_RETRY_REQUEST_RANDOM in datagram


@pytest.mark.parametrize("policy", ["always", "under_load"])
async def test_cookieless_flood_from_200_addresses_keeps_no_state(policy: str) -> None:
    pools = PoolSet()
    threshold = 5
    dos = DoSProtectionConfig(cookie_threshold=threshold, max_half_open_per_ip=threshold)
    client_config, _ = configs()
    hellos_all = first_client_hellos(200 + threshold)
    hellos, extra = hellos_all[:200], hellos_all[200:]
    async with trio.open_nursery() as nursery:
        h = Harness(nursery, pools)
        await h.start(dos=dos, cookie_policy=policy)
        if policy == "under_load":
            # Half-open handshakes up to the threshold: from here on cookies are demanded.
            loaders = [await h.bot("127.0.0.250") for _ in range(threshold)]
            await h.send_all(list(zip(loaders, extra, strict=True)))
            await wait_for(lambda: h.server_stats()["half_open"] == threshold)
            await h.settled()
        base = h.server_stats()
        base_pool = pools.in_use
        base_bytes = pools.in_use_bytes

        bots = [await h.bot(f"127.0.0.{i}") for i in range(2, 202)]
        await h.send_all(list(zip(bots, hellos, strict=True)))
        await h.settled()
        got = await replies(bots)
        stats = h.server_stats()
        # No per-peer state: no connection, no partial ClientHello, pool use as before.
        assert stats["connections"] == base["connections"]
        assert stats["connections_created"] == base["connections_created"]
        assert stats["gate_partials"] == 0
        assert pools.in_use == base_pool and pools.in_use_bytes == base_bytes
        assert stats["gate"]["hello_retry_sent"] - base["gate"]["hello_retry_sent"] == 200
        # RFC 9147 §5.1: at most one HelloRetryRequest each, no more than 3x what came in.
        for hello, answer in zip(hellos, got, strict=True):
            assert len(answer) == 1 and is_hello_retry_request(answer[0])
            assert len(answer[0]) <= 3 * len(hello)

        # The flood again while a legitimate client connects: done within 2 s.
        flood_scope = trio.CancelScope()

        async def flood() -> None:
            with flood_scope:
                while True:
                    await h.send_all(list(zip(bots, hellos, strict=True)))

        nursery.start_soon(flood)
        during = h.endpoint.counters["datagrams_in"] + BATCH
        await wait_for(lambda: h.endpoint.counters["datagrams_in"] >= during)
        client_pools = PoolSet()
        with trio.fail_after(2):
            channel = await open_dtls_client(
                "127.0.0.1", h.addr[1], client_config, pools=client_pools
            )
            await channel.send(b"through the flood")
            assert await channel.receive() == b"through the flood"
        assert channel._conn.stats["hello_retry_requests_received"] == 1  # a cookie was demanded
        flooded = h.server_stats()["gate"]["hello_retry_sent"] - stats["gate"]["hello_retry_sent"]
        assert flooded > BATCH  # the flood went on during the handshake
        flood_scope.cancel()
        await wait_for(lambda: h.server_stats()["connections"] == base["connections"] + 1)
        await channel.aclose()
        await h.settled()
        assert h.endpoint.counters["internal_errors"] == 0
        h.close()
    assert pools.in_use == 0 and client_pools.in_use == 0
