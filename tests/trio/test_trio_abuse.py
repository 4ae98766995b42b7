"""Abuse of a trio server endpoint over real sockets: floods from many loopback addresses.

Linux routes all of 127.0.0.0/8 to loopback, so bots bind 127.0.0.2 ... 127.0.0.201.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import pytest
import trio
import trio.testing

from dtls13 import DTLSEndpoint, open_dtls_client
from dtls13.connection import Connection
from dtls13.endpoint import DoSProtectionConfig
from dtls13.handshake.flights import handshake_fragment
from dtls13.handshake.messages import HELLO_RETRY_REQUEST_RANDOM
from dtls13.memory import PoolSet
from dtls13.statistics import ServerEndpointStatistics
from tests.support.trio_helpers import GENEROUS, configs, echo, udp_socket, wait_for

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
        # The receive task holds no buffer while it waits: the steady state is nothing in use.
        await trio.testing.wait_all_tasks_blocked()
        assert self.pools.in_use == 0

    def server_stats(self) -> ServerEndpointStatistics:
        stats = self.endpoint.statistics().server
        assert stats is not None
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
        await wait_for(lambda: self.endpoint.statistics().queued_datagrams == 0)

    async def __aenter__(self) -> Harness:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()  # on failure too: no socket or endpoint outlives its test

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
    dos = DoSProtectionConfig(
        cookie_threshold=threshold, max_half_open_per_ip=threshold, amplification_limit=None
    )
    client_config, _ = configs()
    hellos_all = first_client_hellos(200 + threshold)
    hellos, extra = hellos_all[:200], hellos_all[200:]
    async with trio.open_nursery() as nursery, Harness(nursery, pools) as h:
        await h.start(dos=dos, cookie_policy=policy)
        if policy == "under_load":
            # Half-open handshakes up to the threshold: from here on cookies are demanded.
            loaders = [await h.bot("127.0.0.250") for _ in range(threshold)]
            await h.send_all(list(zip(loaders, extra, strict=True)))
            await wait_for(lambda: h.server_stats().half_open == threshold)
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
        assert stats.connections == base.connections
        assert stats.connections_created == base.connections_created
        assert stats.gate_partials == 0
        assert pools.in_use == base_pool and pools.in_use_bytes == base_bytes
        assert stats.gate["hello_retry_sent"] - base.gate["hello_retry_sent"] == 200
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
        assert (
            channel.statistics().connection.hello_retry_requests_received == 1
        )  # a cookie was demanded
        flooded = h.server_stats().gate["hello_retry_sent"] - stats.gate["hello_retry_sent"]
        assert flooded > BATCH  # the flood went on during the handshake
        flood_scope.cancel()
        await wait_for(lambda: h.server_stats().connections == base.connections + 1)
        await channel.aclose()
        await h.settled()
        assert h.endpoint.counters["internal_errors"] == 0
        h.close()
    assert pools.in_use == 0 and client_pools.in_use == 0


async def test_per_source_limits_hit_only_the_offending_source() -> None:
    pools = PoolSet()
    # A bucket of 20 datagrams that hardly refills, and 3 half-open handshakes per address.
    dos = DoSProtectionConfig(
        max_half_open_per_ip=3,
        datagram_burst=20,
        datagrams_per_second=0.01,
        amplification_limit=None,
    )
    client_config, _ = configs()
    hellos = first_client_hellos(40)
    async with trio.open_nursery() as nursery, Harness(nursery, pools) as h:
        await h.start(dos=dos, cookie_policy="never")
        flooders = [await h.bot("127.0.0.66") for _ in range(40)]
        await h.send_all(list(zip(flooders, hellos, strict=True)))
        stats = h.server_stats()
        assert stats.rate_limited == 20  # the bucket held 20 of the 40
        assert stats.too_many_half_open_per_ip == 17  # 3 of those 20 became handshakes
        assert stats.half_open == 3 and stats.connections_created == 3
        # Another address is untouched by 127.0.0.66's limits.
        client_pools = PoolSet()
        with trio.fail_after(2):
            channel = await open_dtls_client(
                "127.0.0.1",
                h.addr[1],
                client_config,
                local_address=("127.0.0.77", 0),
                pools=client_pools,
            )
            await channel.send(b"not limited")
            assert await channel.receive() == b"not limited"
        after = h.server_stats()
        for reason in ("rate_limited", "too_many_half_open_per_ip", "too_many_half_open"):
            assert getattr(after, reason) == getattr(stats, reason), reason
        # 127.0.0.66 is still held to its limits.
        await h.send_all([(flooders[0], hellos[0])])
        assert h.server_stats().rate_limited == 21
        await channel.aclose()
        h.close()
    assert pools.in_use == 0 and client_pools.in_use == 0


async def test_half_open_flood_stops_at_its_cap() -> None:
    pools = PoolSet()
    dos = DoSProtectionConfig(
        max_half_open=10,
        max_half_open_per_ip=3,
        datagram_burst=1e6,
        datagrams_per_second=1e6,
        byte_burst=1e9,
        bytes_per_second=1e9,
    )
    hellos = first_client_hellos(45)
    async with trio.open_nursery() as nursery, Harness(nursery, pools) as h:
        await h.start(dos=dos, cookie_policy="never")
        # Five ports on one address, then one port on each of 40 more: all never continue.
        bots = [await h.bot("127.0.0.2") for _ in range(5)]
        bots += [await h.bot(f"127.0.0.{i}") for i in range(3, 43)]
        await h.send_all(list(zip(bots, hellos, strict=True)))
        stats = h.server_stats()
        assert stats.half_open == 10 and stats.connections == 10
        assert stats.connections_created == 10
        assert stats.too_many_half_open_per_ip == 2  # 127.0.0.2's fourth and fifth
        assert stats.too_many_half_open == 45 - 10 - 2
        assert stats.gate["hello_retry_sent"] == 0  # cookie_policy="never"
        # The refused ones cost nothing: memory is that of the 10 handshakes.
        held = stats.memory_in_use
        await h.send_all(list(zip(bots, hellos, strict=True)))  # their retransmissions
        again = h.server_stats()
        assert again.connections_created == 10 and again.half_open == 10
        assert again.memory_in_use <= held
        h.close()
    assert pools.in_use == 0


async def test_flood_of_first_fragments_stays_inside_the_reassembly_budget() -> None:
    pools = PoolSet()
    total = 32 * 1024
    dos = DoSProtectionConfig(
        handshake_reassembly_bytes=4096,
        reassembly_total_bytes=total,
        reassembly_timeout=0.3,
        datagram_burst=1e6,
        datagrams_per_second=1e6,
        byte_burst=1e9,
        bytes_per_second=1e9,
    )
    fragment = first_fragment(3000, os.urandom(500))  # a 3000-byte ClientHello, never finished
    # Claims more than one source's budget: it holds only what it brought, like the others.
    too_big = first_fragment(6000, os.urandom(500))
    async with trio.open_nursery() as nursery, Harness(nursery, pools) as h:
        await h.start(dos=dos, cookie_policy="always")
        base_bytes = pools.in_use_bytes
        bots = [await h.bot(f"127.0.0.{i}") for i in range(2, 102)]
        peak = 0
        watcher = trio.CancelScope()

        async def watch() -> None:
            nonlocal peak
            with watcher:
                while True:
                    peak = max(peak, pools.in_use_bytes - base_bytes)
                    await trio.sleep(0)

        nursery.start_soon(watch)
        await h.send_all([(b, fragment) for b in bots[:-1]] + [(bots[-1], too_big)])
        watcher.cancel()
        stats = h.server_stats()
        gate = stats.gate
        # Each holds two 256-byte chunks for its 500 bytes; a full gate evicts the oldest.
        assert 0 < stats.gate_partials <= total // 512
        assert gate["partials_started"] == 100 and gate["partials_refused"] == 0
        assert gate["partials_evicted"] == 100 - stats.gate_partials
        assert stats.connections == 0 and gate["hello_retry_sent"] == 0
        # Transient: the receive task's next buffer, at most one 64 KiB class.
        assert peak <= total + 65536
        # Nothing completes them: they expire, and their memory goes back.
        await wait_for(lambda: h.server_stats().gate_partials == 0, timeout=3)
        assert h.server_stats().gate["partials_expired"] == stats.gate_partials
        assert pools.in_use_bytes == base_bytes
        h.close()
    assert pools.in_use == 0


async def test_random_garbage_is_counted_and_dropped() -> None:
    pools = PoolSet()
    async with trio.open_nursery() as nursery, Harness(nursery, pools) as h:
        await h.start(dos=GENEROUS)
        base_bytes = pools.in_use_bytes
        bots = [await h.bot(f"127.0.0.{i}") for i in range(2, 12)]
        junk = [(bots[i % 10], os.urandom(1 + (i * 37) % 1400)) for i in range(200)]
        await h.send_all(junk)
        got = await replies(bots, wait=0.1)
        stats = h.server_stats()
        assert stats.datagrams == 200 and stats.gate_dropped == 200
        assert stats.connections == 0 and stats.gate_partials == 0
        assert sum(stats.gate[k] for k in ("malformed", "not_client_hello")) == 200
        assert h.endpoint.counters["datagrams_out"] == 0 and not any(got)
        assert h.endpoint.counters["internal_errors"] == 0
        assert pools.in_use_bytes == base_bytes
        h.close()
    assert pools.in_use == 0
