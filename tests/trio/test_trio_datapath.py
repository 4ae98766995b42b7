"""The trio adapter's per-message data path: direct sends with a fallback to the send task
when the socket buffer is full, and the receive task draining the socket in batches."""

from __future__ import annotations

import socket
from typing import Any

import pytest
import trio
import trio.testing

from dtls13 import DTLSChannel, DTLSEndpoint
from dtls13.memory import PoolSet
from dtls13.trio import _socketio
from tests.support.trio_helpers import GENEROUS, configs, udp_socket, use_socket, wait_for


class FlakySocket:
    """A stdlib socket whose sendto reports a full buffer (BlockingIOError) on the calls
    `pattern` marks True, cycling."""

    def __init__(self, sock: socket.socket, pattern: list[bool]) -> None:
        self.sock = sock
        self.pattern = pattern
        self.calls = 0
        self.refused = 0

    def sendto(self, data: Any, addr: Any) -> int:
        full = self.pattern[self.calls % len(self.pattern)]
        self.calls += 1
        if full:
            self.refused += 1
            raise BlockingIOError
        return self.sock.sendto(data, addr)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sock, name)


class Collector:
    """A server whose handler keeps every message it receives (it does not echo)."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []
        self.channel: DTLSChannel | None = None
        self.endpoint: DTLSEndpoint

    async def handler(self, channel: DTLSChannel) -> None:
        self.channel = channel
        try:
            async for message in channel:
                self.messages.append(message)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    async def start(self, nursery: trio.Nursery, pools: PoolSet, **kwargs: Any) -> Any:
        sock = await udp_socket()
        self.endpoint = DTLSEndpoint(sock, pools=pools, dos=GENEROUS, **kwargs)
        _, server_config = configs()
        await nursery.start(self.endpoint.serve, server_config, self.handler)
        return sock.getsockname()[:2]


@pytest.fixture
def pools() -> PoolSet:
    return PoolSet()


async def test_send_falls_back_to_the_send_task_when_the_socket_is_full(pools: PoolSet) -> None:
    client_config, _ = configs()
    server = Collector()
    async with trio.open_nursery() as nursery:
        addr = await server.start(nursery, pools, incoming_packets_buffer=100)
        async with DTLSEndpoint(await udp_socket(), pools=pools) as endpoint:
            channel = endpoint.connect(addr, client_config)
            await channel.do_handshake()
            flaky = FlakySocket(endpoint._raw, [False, True, True, False, True])
            use_socket(endpoint, flaky)
            waits: list[int] = []
            original = endpoint._wait_sent

            async def wait_sent(target: int) -> None:
                waits.append(target)
                await original(target)
                assert endpoint._sent >= target  # send() returns once its datagram went

            endpoint._wait_sent = wait_sent  # type: ignore[method-assign]
            sent = [b"message %d" % i for i in range(60)]
            with trio.fail_after(10):
                for message in sent:
                    await channel.send(message)
                await wait_for(lambda: len(server.messages) == len(sent))
            assert flaky.refused > 0 and waits
            assert server.messages == sent
            assert endpoint.counters["send_errors"] == 0
            use_socket(endpoint, flaky.sock)
            await channel.aclose()
        server.endpoint.close()
    assert pools.in_use == 0


async def test_queued_datagrams_keep_their_order_behind_a_full_socket(pools: PoolSet) -> None:
    client_config, _ = configs()
    server = Collector()
    async with trio.open_nursery() as nursery:
        addr = await server.start(nursery, pools, incoming_packets_buffer=100)
        async with DTLSEndpoint(await udp_socket(), pools=pools) as endpoint:
            channel = endpoint.connect(addr, client_config)
            await channel.do_handshake()
            flaky = FlakySocket(endpoint._raw, [True] * 3 + [False] * 7)
            use_socket(endpoint, flaky)
            sent = [b"burst %d" % i for i in range(40)]
            # Records produced while earlier ones wait in the queue go behind them.
            for message in sent:
                channel.debug_state().connection.send(message)
                endpoint._after(channel)
            assert endpoint.statistics().queued_datagrams
            with trio.fail_after(10):
                await wait_for(lambda: not endpoint.statistics().queued_datagrams)
                await wait_for(lambda: len(server.messages) == len(sent))
            assert server.messages == sent
            use_socket(endpoint, flaky.sock)
            await channel.aclose()
        server.endpoint.close()
    assert pools.in_use == 0


async def test_a_burst_is_drained_in_batches_and_delivered_in_order(
    pools: PoolSet, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_socketio, "RECV_BATCH", 16)
    client_config, _ = configs()
    server = Collector()
    async with trio.open_nursery() as nursery:
        addr = await server.start(nursery, pools, incoming_packets_buffer=200)
        batches: list[int] = []
        original = server.endpoint._receive_batch

        def counting() -> int | None:
            before = server.endpoint.counters["datagrams_in"]
            result = original()
            batches.append(server.endpoint.counters["datagrams_in"] - before)
            return result

        server.endpoint._receive_batch = counting  # type: ignore[method-assign]
        async with DTLSEndpoint(await udp_socket(), pools=pools) as endpoint:
            channel = endpoint.connect(addr, client_config)
            await channel.do_handshake()
            await trio.testing.wait_all_tasks_blocked()
            batches.clear()
            sent = [b"datagram %d" % i for i in range(100)]
            # All of them reach the server's socket before its receive task runs again.
            for message in sent:
                channel.debug_state().connection.send(message)
                endpoint._after(channel)
            with trio.fail_after(10):
                await wait_for(lambda: len(server.messages) == len(sent))
            assert server.messages == sent
            assert max(batches) == 16  # a full batch, then the task yields and goes on
            assert sum(batches) == 100 and len([b for b in batches if b]) < 100
            await channel.aclose()
        server.endpoint.close()
    assert pools.in_use == 0


async def test_bad_datagrams_in_a_batch_do_not_stop_the_others(pools: PoolSet) -> None:
    client_config, _ = configs()
    server = Collector()
    async with trio.open_nursery() as nursery:
        addr = await server.start(nursery, pools, incoming_packets_buffer=200)
        seen = 0
        original = server.endpoint._on_datagram

        def sometimes_broken(data: Any, peer: Any) -> None:
            nonlocal seen
            seen += 1
            if seen == 5:
                raise RuntimeError("a bug in the core")
            original(data, peer)

        async with DTLSEndpoint(await udp_socket(), pools=pools) as endpoint:
            channel = endpoint.connect(addr, client_config)
            await channel.do_handshake()
            await trio.testing.wait_all_tasks_blocked()
            server.endpoint._on_datagram = sometimes_broken  # type: ignore[method-assign]
            seen = 0
            raw = endpoint._raw
            # 30 good records; before every third one a damaged copy of it (it fails
            # authentication) and a datagram of garbage: 50 datagrams, read in batches.
            for i in range(30):
                channel.debug_state().connection.send(b"good %d" % i)
                for lease, _ in channel.debug_state().connection.datagrams_to_send(
                    trio.current_time()
                ):
                    wire = lease.tobytes()
                    lease.release()
                    if i % 3 == 0:
                        raw.sendto(wire[:-1] + bytes([wire[-1] ^ 1]), addr)
                        raw.sendto(b"\x17\xfe\xfd garbage", addr)
                    raw.sendto(wire, addr)
            with trio.fail_after(10):
                await wait_for(lambda: seen == 50)
                await trio.testing.wait_all_tasks_blocked()
            assert server.endpoint.counters["internal_errors"] == 1
            assert server.channel is not None
            assert server.channel.statistics().drops["record_auth_failed"] == 10
            # The fifth datagram (good 2) met the "bug"; every other good one arrived.
            assert server.messages == [b"good %d" % i for i in range(30) if i != 2]
            await channel.aclose()
        server.endpoint.close()
    assert pools.in_use == 0


async def test_send_and_receive_are_one_checkpoint_each(pools: PoolSet) -> None:
    client_config, _ = configs()
    server = Collector()
    async with trio.open_nursery() as nursery:
        addr = await server.start(nursery, pools)
        async with DTLSEndpoint(await udp_socket(), pools=pools) as endpoint:
            channel = endpoint.connect(addr, client_config)
            await channel.do_handshake()
            # A cancelled send sends nothing; a cancelled receive with data queued takes none.
            with trio.CancelScope() as scope:
                scope.cancel()
                await channel.send(b"never")
            assert scope.cancelled_caught
            channel._enqueue(b"queued")
            with trio.CancelScope() as scope:
                scope.cancel()
                await channel.receive()
            assert scope.cancelled_caught and channel.debug_state().queued == 1
            with trio.testing.assert_checkpoints():
                assert await channel.receive() == b"queued"
            with trio.testing.assert_checkpoints():
                await channel.send(b"sent")
            with trio.fail_after(5):
                await wait_for(lambda: server.messages == [b"sent"])
            assert channel.statistics().app_records_out == 1
            await channel.aclose()
        server.endpoint.close()
    assert pools.in_use == 0


async def test_a_burst_beyond_the_receive_queue_is_counted_and_the_rest_kept_in_order(
    pools: PoolSet,
) -> None:
    client_config, _ = configs()
    server = Collector()
    async with trio.open_nursery() as nursery:
        addr = await server.start(nursery, pools, incoming_packets_buffer=4)
        async with DTLSEndpoint(await udp_socket(), pools=pools) as endpoint:
            channel = endpoint.connect(addr, client_config)
            await channel.do_handshake()
            await trio.testing.wait_all_tasks_blocked()
            sent = [b"%03d" % i for i in range(40)]
            for message in sent:
                channel.debug_state().connection.send(message)
                endpoint._after(channel)
            with trio.fail_after(10):
                await wait_for(lambda: server.endpoint.counters["datagrams_in"] >= 40 + 2)
                await trio.testing.wait_all_tasks_blocked()
            assert server.channel is not None
            dropped = server.channel.statistics().incoming_packets_dropped_in_trio
            # The receive task yields whenever the queue fills, so the reader keeps some.
            assert len(server.messages) >= 4
            assert len(server.messages) + dropped == len(sent)
            assert server.messages == sorted(server.messages)
            await channel.aclose()
        server.endpoint.close()
    assert pools.in_use == 0
