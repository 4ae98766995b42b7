"""The trio adapter on both socket paths: batched (recvmmsg/sendmmsg, where the platform has
them) and plain (recvfrom_into/sendto, forced here with `_socketio.BATCH_IO`): handshakes and
echo over IPv4 and IPv6, datagrams longer than a receive slot, ICMP port unreachable, bounded
work per wake-up, and no pooled memory left after close."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import pytest
import trio
import trio.testing

from dtls13 import DTLSChannel, DTLSEndpoint, PeerUnreachable, open_dtls_client
from dtls13._io import HAVE_MMSG
from dtls13.memory import DATAGRAM_SLOT, PoolSet
from dtls13.trio import _socketio
from tests.support.trio_helpers import GENEROUS, configs, echo, udp_socket, use_socket, wait_for

PATHS = ["batched", "plain"] if HAVE_MMSG else ["plain"]


@pytest.fixture(params=PATHS)
def io_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr(_socketio, "BATCH_IO", request.param == "batched")
    return str(request.param)


@pytest.fixture
def pools() -> PoolSet:
    return PoolSet()


def _check_path(endpoint: DTLSEndpoint, io_path: str) -> None:
    assert (endpoint._batch is not None) is (io_path == "batched")


async def _echo_server(
    nursery: trio.Nursery, pools: PoolSet, host: str = "127.0.0.1", **server: Any
) -> tuple[DTLSEndpoint, Any]:
    _, server_config = configs()
    if server:
        server_config = dataclasses.replace(server_config, **server)
    endpoint = DTLSEndpoint(await udp_socket(host), pools=pools, dos=GENEROUS)
    await nursery.start(endpoint.serve, server_config, echo)
    return endpoint, endpoint.socket.getsockname()


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
async def test_handshake_and_echo(io_path: str, host: str, pools: PoolSet) -> None:
    client_config, _ = configs()
    async with trio.open_nursery() as nursery:
        server, addr = await _echo_server(nursery, pools, host)
        async with DTLSEndpoint(await udp_socket(host), pools=pools) as endpoint:
            _check_path(endpoint, io_path)
            _check_path(server, io_path)
            channel = endpoint.connect(addr, client_config)
            with trio.fail_after(10):
                for i in range(20):
                    await channel.send(b"message %d" % i)
                    assert await channel.receive() == b"message %d" % i
            assert channel.peer_address[0] == host
            await channel.aclose()
        server.close()
    assert pools.in_use == 0


async def test_a_datagram_longer_than_a_receive_slot_arrives_whole(
    io_path: str, pools: PoolSet
) -> None:
    client_config, _ = configs(mtu=9000)
    message = bytes(range(256)) * 24  # 6144 bytes: a record of four receive slots
    assert len(message) > 2 * DATAGRAM_SLOT
    async with trio.open_nursery() as nursery:
        server, addr = await _echo_server(nursery, pools, mtu=9000)
        async with DTLSEndpoint(await udp_socket(), pools=pools) as endpoint:
            channel = endpoint.connect(addr, client_config)
            with trio.fail_after(10):
                for _ in range(3):
                    await channel.send(message)
                    assert await channel.receive() == message
            assert server.counters["internal_errors"] == 0
            await channel.aclose()
        server.close()
    assert pools.in_use == 0


async def test_nothing_listening_ends_the_handshake_with_peer_unreachable(
    io_path: str, pools: PoolSet
) -> None:
    with trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM) as sock:
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client_config, _ = configs()
    started = time.monotonic()
    with trio.fail_after(8), pytest.raises(PeerUnreachable):
        await open_dtls_client("127.0.0.1", port, client_config, pools=pools)
    assert time.monotonic() - started > 2  # the port stayed closed across tries
    assert pools.in_use == 0


async def test_a_burst_larger_than_a_batch_lets_other_tasks_run_between_batches(
    io_path: str, pools: PoolSet, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_socketio, "RECV_BATCH", 8)
    client_config, _ = configs()
    received: list[bytes] = []

    async def collect(channel: DTLSChannel) -> None:
        async for message in channel:
            received.append(message)

    _, server_config = configs()
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await trio.sleep(0)

    async with trio.open_nursery() as nursery:
        server = DTLSEndpoint(
            await udp_socket(), pools=pools, dos=GENEROUS, incoming_packets_buffer=200
        )
        await nursery.start(server.serve, server_config, collect)
        addr = server.socket.getsockname()
        batches: list[tuple[int, int]] = []  # (datagrams taken, ticks before the batch)
        original = server._receive_batch

        def counting() -> int | None:
            before = server.counters["datagrams_in"]
            seen = ticks
            result = original()
            batches.append((server.counters["datagrams_in"] - before, seen))
            return result

        server._receive_batch = counting  # type: ignore[method-assign]
        async with DTLSEndpoint(await udp_socket(), pools=pools) as endpoint:
            channel = endpoint.connect(addr, client_config)
            await channel.do_handshake()
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(ticker)
            batches.clear()
            sent = [b"burst %d" % i for i in range(40)]
            for message in sent:  # all in the server's socket before it wakes up
                channel._conn.send(message)
                endpoint._after(channel)
            with trio.fail_after(10):
                await wait_for(lambda: len(received) == len(sent))
            assert received == sent
            full = [(n, t) for n, t in batches if n]
            assert max(n for n, _ in full) == 8 and sum(n for n, _ in full) == 40
            # A wake-up does bounded work, then yields: the ticker ran between every batch
            # and the one after next (trio may order it before or after the receive task
            # within one scheduler pass, so not always between neighbours).
            assert len(full) >= 5
            assert all(c[1] > a[1] for a, c in zip(full, full[2:], strict=False))
            await channel.aclose()
        server.close()
        nursery.cancel_scope.cancel()
    assert pools.in_use == 0


async def test_closing_with_datagrams_queued_leaves_no_lease_behind(
    io_path: str, pools: PoolSet
) -> None:
    class AlwaysFull:
        def __init__(self, sock: Any) -> None:
            self.sock = sock

        def sendto(self, data: Any, addr: Any) -> int:
            raise BlockingIOError

        def __getattr__(self, name: str) -> Any:
            return getattr(self.sock, name)

    client_config, _ = configs()
    async with trio.open_nursery() as nursery:
        server, addr = await _echo_server(nursery, pools)
        endpoint = DTLSEndpoint(await udp_socket(), pools=pools)
        channel = endpoint.connect(addr, client_config)
        with trio.fail_after(10):
            await channel.do_handshake()
        use_socket(endpoint, AlwaysFull(endpoint._raw))
        for i in range(30):
            channel._conn.send(b"stuck %d" % i)
            endpoint._after(channel)
        assert len(endpoint._outq) == 30 and pools.in_use > 0
        endpoint.close()
        server.close()
    assert pools.in_use == 0
    assert pools.leak_report().entries == ()


@pytest.mark.skipif(not HAVE_MMSG, reason="the batched path needs recvmmsg/sendmmsg")
async def test_what_handlers_send_in_one_scheduler_pass_leaves_with_one_sendmmsg(
    pools: PoolSet, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_socketio, "BATCH_IO", True)
    client_config, server_config = configs()
    calls: list[int] = []  # items per sendmmsg of the server
    unsent_after_send: list[int] = []

    async def echo_and_check(channel: DTLSChannel) -> None:
        async for message in channel:
            await channel.send(message)
            # send() returned: its datagram left (the queue is empty again).
            unsent_after_send.append(len(channel.endpoint._outq))

    class Counting:
        def __init__(self, batch: Any) -> None:
            self.batch = batch

        def send(self, items: list[Any], connected: bool) -> tuple[int, int]:
            calls.append(len(items))
            result: tuple[int, int] = self.batch.send(items, connected)
            return result

        def __getattr__(self, name: str) -> Any:
            return getattr(self.batch, name)

    async with trio.open_nursery() as nursery:
        server = DTLSEndpoint(await udp_socket(), pools=pools, dos=GENEROUS)
        await nursery.start(server.serve, server_config, echo_and_check)
        addr = server.socket.getsockname()
        clients = [DTLSEndpoint(await udp_socket(), pools=pools) for _ in range(10)]
        channels = [ep.connect(addr, client_config) for ep in clients]
        with trio.fail_after(20):
            for channel in channels:
                await channel.do_handshake()
            await trio.testing.wait_all_tasks_blocked()
            server._batch = Counting(server._batch)  # type: ignore[assignment]
            # Ten clients' messages reach the server together: one receive batch wakes ten
            # handlers, whose ten echoes leave with one system call.
            for i, (ep, channel) in enumerate(zip(clients, channels, strict=True)):
                channel._conn.send(b"hello %d" % i)
                ep._after(channel)
            for i, channel in enumerate(channels):
                assert await channel.receive() == b"hello %d" % i
        assert max(calls) >= 5 and sum(calls) == 10
        assert unsent_after_send == [0] * 10
        for ep in clients:
            await ep.aclose()
        server.close()
    assert pools.in_use == 0


batched_only = pytest.mark.skipif(not HAVE_MMSG, reason="the batched path is Linux's")


class _CallRecorder:
    """Stands in for an endpoint's BatchSocket and records how many leases each receive
    call was given."""

    def __init__(self, batch: Any) -> None:
        self._batch = batch
        self.calls: list[int] = []

    def recv(self, leases: list[Any]) -> list[tuple[int, Any]]:
        self.calls.append(len(leases))
        got: list[tuple[int, Any]] = self._batch.recv(leases)
        return got

    def __getattr__(self, name: str) -> Any:
        return getattr(self._batch, name)


@batched_only
async def test_a_client_endpoint_reserves_two_overflow_areas_not_sixty_four(pools: PoolSet) -> None:
    client_config, _ = configs()
    async with trio.open_nursery() as nursery:
        server, addr = await _echo_server(nursery, pools)
        channel = await open_dtls_client(addr[0], addr[1], client_config, pools=pools)
        async with channel:
            client = channel.endpoint
            assert client._batch is not None and server._batch is not None
            tail = client._recv_size - client._batch.slot_size
            assert client._batch.batch == _socketio.RECV_CALL_CONNECTED
            assert tail <= 64 * 1024
            assert client._batch.overflow_slots == _socketio.OVERFLOW_SLOTS_CONNECTED == 2
            assert client._batch.overflow_reserved == 2 * tail
            # A thousand clients reserve at most 128 MiB of address space, not 4 GiB.
            assert 1000 * client._batch.overflow_reserved <= 128 * 1024 * 1024
            assert server._batch.overflow_slots == _socketio.OVERFLOW_SLOTS
            assert server._batch.overflow_reserved == _socketio.OVERFLOW_SLOTS * tail
        server.close()
    assert pools.in_use == 0


@batched_only
async def test_a_ping_pong_wake_up_takes_two_receive_leases(pools: PoolSet) -> None:
    client_config, _ = configs()
    async with trio.open_nursery() as nursery:
        server, addr = await _echo_server(nursery, pools)
        async with DTLSEndpoint(await udp_socket(), pools=pools) as endpoint:
            channel = endpoint.connect(addr, client_config)
            await channel.do_handshake()
            recorder = _CallRecorder(endpoint._batch)
            endpoint._batch = recorder  # type: ignore[assignment]
            with trio.fail_after(10):
                for i in range(30):
                    await channel.send(b"ping %d" % i)
                    assert await channel.receive() == b"ping %d" % i
            # One datagram waiting: one call, with one lease for it and one to find the
            # socket dry (it used to be four leases per wake-up at least).
            assert len(recorder.calls) >= 30 and recorder.calls[-20:] == [2] * 20
            await channel.aclose()
        server.close()
    assert pools.in_use == 0


@batched_only
@pytest.mark.parametrize(("overflow_slots", "first_call"), [(4, 2), (1, 64)])
async def test_a_burst_of_long_datagrams_arrives_whole_or_counted(
    pools: PoolSet, monkeypatch: pytest.MonkeyPatch, overflow_slots: int, first_call: int
) -> None:
    monkeypatch.setattr(_socketio, "OVERFLOW_SLOTS", overflow_slots)
    client_config, server_config = configs(mtu=9000)
    server_config = dataclasses.replace(server_config, mtu=9000)
    received: list[bytes] = []

    async def collect(channel: DTLSChannel) -> None:
        async for message in channel:
            received.append(message)

    async with trio.open_nursery() as nursery:
        server = DTLSEndpoint(
            await udp_socket(), pools=pools, dos=GENEROUS, incoming_packets_buffer=200
        )
        await nursery.start(server.serve, server_config, collect)
        assert server._batch is not None and server._batch.overflow_slots == overflow_slots
        async with DTLSEndpoint(await udp_socket(), pools=pools) as endpoint:
            channel = endpoint.connect(server.socket.getsockname(), client_config)
            await channel.do_handshake()
            await trio.testing.wait_all_tasks_blocked()
            server._recv_want = first_call
            sent = [bytes([i]) * (4000 + i) for i in range(10)]
            for message in sent:  # all in the server's socket before it wakes up
                channel._conn.send(message)
                endpoint._after(channel)
            dropped = lambda: server.counters["dropped_long_datagrams"]  # noqa: E731
            with trio.fail_after(10):
                await wait_for(lambda: len(received) + dropped() == len(sent))
            # Whole, in order, none twice: the tail of each came with it.
            assert received == [m for m in sent if m in received]
            if first_call == 2:  # then calls no larger than the overflow areas: none lost
                assert received == sent and dropped() == 0
            else:  # one call took all ten on one overflow area: the last kept its tail
                assert dropped() == 9 and received == sent[-1:]
            assert server.counters["internal_errors"] == 0
            await channel.aclose()
        server.close()
        nursery.cancel_scope.cancel()
    assert pools.in_use == 0


async def test_the_plain_receive_path_counts_a_long_datagram_and_never_delivers_it_cut(
    pools: PoolSet, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Where there is no recvmmsg (macOS, the BSDs) a datagram longer than the receive
    # buffer is cut by the kernel: it is counted, not handed to the core cut.
    monkeypatch.setattr(_socketio, "BATCH_IO", False)
    seen: list[int] = []
    async with DTLSEndpoint(await udp_socket(), pools=pools, max_datagram_size=1024) as server:
        assert server._batch is None
        inner = server._on_datagram

        def spy(view: memoryview, addr: Any) -> None:
            seen.append(len(view))
            inner(view, addr)

        server._on_datagram = spy  # type: ignore[method-assign]
        async with trio.open_nursery() as nursery:
            _, server_config = configs()
            await nursery.start(server.serve, server_config, echo)
            sender = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
            with sender:
                await sender.sendto(b"\x16" + b"x" * 1499, server.socket.getsockname())
                await sender.sendto(b"\x16" + b"y" * 99, server.socket.getsockname())
                with trio.fail_after(10):
                    await wait_for(lambda: len(seen) == 1)
            assert seen == [100]
            assert server.counters["dropped_long_datagrams"] == 1
            assert server.counters["internal_errors"] == 0
            nursery.cancel_scope.cancel()
    assert pools.in_use == 0
