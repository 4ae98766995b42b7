"""The trio adapter's lean per-association and per-message paths: handlers started
from the receive task, a parked receive() handed its message directly, the timer task's
deadline moved instead of woken, the send task started only once the socket is full."""

from __future__ import annotations

import contextvars
import socket
from typing import Any

import pytest
import trio
import trio.testing

from dtls13 import DTLSChannel, DTLSEndpoint
from dtls13.memory import PoolSet
from tests.support.trio_helpers import GENEROUS, configs, echo, udp_socket, use_socket, wait_for

REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("REQUEST_ID", default="unset")


@pytest.fixture
def pools() -> PoolSet:
    return PoolSet()


async def _server(
    nursery: trio.Nursery, pools: PoolSet, handler: Any = echo
) -> tuple[DTLSEndpoint, Any]:
    sock = await udp_socket()
    endpoint = DTLSEndpoint(sock, pools=pools, dos=GENEROUS)
    _, server_config = configs()
    await nursery.start(endpoint.serve, server_config, handler)
    return endpoint, sock.getsockname()[:2]


async def test_handlers_run_in_serve_tasks_context_and_nursery(pools: PoolSet) -> None:
    seen: list[str] = []
    started = trio.Event()

    async def handler(channel: DTLSChannel) -> None:
        seen.append(REQUEST_ID.get())
        started.set()
        await echo(channel)

    client_config, _ = configs()
    async with trio.open_nursery() as nursery:
        REQUEST_ID.set("from serve's caller")
        server, addr = await _server(nursery, pools, handler)
        REQUEST_ID.set("changed later")
        async with DTLSEndpoint(await udp_socket(), pools=pools) as endpoint:
            for i in range(3):
                channel = endpoint.connect(addr, client_config)
                with trio.fail_after(5):
                    await channel.send(b"hello %d" % i)
                    assert await channel.receive() == b"hello %d" % i
                await channel.aclose()
        with trio.fail_after(5):
            await started.wait()
        server.close()
    # As if serve() had spawned them: a copy of its context, taken when it started.
    assert seen == ["from serve's caller"] * 3
    assert pools.in_use == 0


async def test_a_handshake_completing_as_serve_is_cancelled_gets_no_handler(
    pools: PoolSet,
) -> None:
    calls: list[DTLSChannel] = []

    async def handler(channel: DTLSChannel) -> None:
        calls.append(channel)

    client_config, _ = configs()
    async with trio.open_nursery() as nursery:
        server, addr = await _server(nursery, pools, handler)
        handlers = server.debug_state().handlers
        assert handlers is not None
        async with DTLSEndpoint(await udp_socket(), pools=pools) as endpoint:
            channel = endpoint.connect(addr, client_config)
            # serve() is cancelled at the moment the handshake completes (deterministically:
            # just before the endpoint would start the handler): no handler starts, and
            # serve's finally clause closes the channel (close_notify to the client).
            start_handler = server._start_handler

            def cancel_then_start(ch: DTLSChannel) -> None:
                handlers.cancel_scope.cancel()
                start_handler(ch)

            server._start_handler = cancel_then_start  # type: ignore[method-assign]
            with trio.fail_after(5):
                await channel.do_handshake()
                with pytest.raises(trio.EndOfChannel):
                    await channel.receive()
        server.close()
    assert calls == []
    assert pools.in_use == 0


async def test_a_parked_receive_is_handed_its_message_and_a_second_reader_still_gets_its_own(
    pools: PoolSet,
) -> None:
    client_config, _ = configs()
    async with trio.open_nursery() as nursery:
        server, addr = await _server(nursery, pools)
        async with DTLSEndpoint(await udp_socket(), pools=pools) as endpoint:
            channel = endpoint.connect(addr, client_config)
            await channel.do_handshake()
            got: list[bytes] = []

            async def reader() -> None:
                got.append(await channel.receive())

            async with trio.open_nursery() as readers:
                readers.start_soon(reader)
                await trio.testing.wait_all_tasks_blocked()
                assert channel.debug_state().reader_parked  # the first one is the direct reader
                readers.start_soon(reader)
                await trio.testing.wait_all_tasks_blocked()
                with trio.fail_after(5):
                    await channel.send(b"one")
                    await channel.send(b"two")
            assert sorted(got) == [b"one", b"two"]
            assert not channel.debug_state().reader_parked and not channel.debug_state().queued
            # Messages arriving with nobody parked wait in the queue, in order.
            for message in (b"a", b"b", b"c"):
                await channel.send(message)
            await wait_for(lambda: channel.debug_state().queued == 3)
            assert [await channel.receive() for _ in range(3)] == [b"a", b"b", b"c"]
            await channel.aclose()
        server.close()
    assert pools.in_use == 0


async def test_cancelling_a_parked_reader_loses_no_message(pools: PoolSet) -> None:
    client_config, _ = configs()
    async with trio.open_nursery() as nursery:
        server, addr = await _server(nursery, pools)
        async with DTLSEndpoint(await udp_socket(), pools=pools) as endpoint:
            channel = endpoint.connect(addr, client_config)
            await channel.do_handshake()
            with trio.CancelScope() as scope:
                nursery.start_soon(_cancel_when_blocked, scope)
                await channel.receive()
            assert scope.cancelled_caught
            assert not channel.debug_state().reader_parked  # the cancelled reader left its place
            await channel.send(b"after the cancel")
            await wait_for(lambda: channel.debug_state().queued == 1)
            with trio.fail_after(5):
                assert await channel.receive() == b"after the cancel"
            # Closing wakes a parked reader, which then raises.
            async with trio.open_nursery() as readers:

                async def closed_reader() -> None:
                    with pytest.raises(trio.ClosedResourceError):
                        await channel.receive()

                readers.start_soon(closed_reader)
                await trio.testing.wait_all_tasks_blocked()
                assert channel.debug_state().reader_parked
                channel.close()
        server.close()
    assert pools.in_use == 0


async def _cancel_when_blocked(scope: trio.CancelScope) -> None:
    await trio.testing.wait_all_tasks_blocked()
    scope.cancel()


async def test_a_parked_receive_is_one_checkpoint(pools: PoolSet) -> None:
    client_config, _ = configs()
    async with trio.open_nursery() as nursery:
        server, addr = await _server(nursery, pools)
        async with DTLSEndpoint(await udp_socket(), pools=pools) as endpoint:
            channel = endpoint.connect(addr, client_config)
            await channel.do_handshake()

            async def send_soon() -> None:
                await trio.testing.wait_all_tasks_blocked()
                await channel.send(b"ping")

            nursery.start_soon(send_soon)
            with trio.fail_after(5), trio.testing.assert_checkpoints():
                assert await channel.receive() == b"ping"
            await channel.aclose()
        server.close()
    assert pools.in_use == 0


async def test_an_earlier_timer_moves_the_timer_tasks_deadline(pools: PoolSet) -> None:
    silent, silent2 = await udp_socket(), await udp_socket()
    slow, _ = configs(retransmit_initial=30.0, handshake_timeout=60.0)
    fast, _ = configs(retransmit_initial=0.05, handshake_timeout=0.5)
    async with DTLSEndpoint(await udp_socket(), pools=pools) as endpoint:
        first = endpoint.connect(silent.getsockname(), slow)
        first._connect_sent = True
        endpoint._start_client(first)
        await trio.testing.wait_all_tasks_blocked()
        scope = endpoint.debug_state().timer_scope
        assert scope is not None and scope.deadline > trio.current_time() + 20
        second = endpoint.connect(silent2.getsockname(), fast)
        second._connect_sent = True
        endpoint._start_client(second)
        # Moved in place: the same scope, no wakeup of the timer task.
        assert endpoint.debug_state().timer_scope is scope
        assert scope.deadline < trio.current_time() + 1
        start = trio.current_time()
        with trio.fail_after(5), pytest.raises(trio.BrokenResourceError, match="timed out"):
            await second.do_handshake()
        assert 0.5 <= trio.current_time() - start < 2
        assert second.statistics().retransmissions >= 2
        assert first.statistics().retransmissions == 0
    silent.close()
    silent2.close()
    assert pools.in_use == 0


async def test_the_send_task_starts_only_once_the_socket_is_full(pools: PoolSet) -> None:
    class FullOnce:
        def __init__(self, sock: socket.socket) -> None:
            self.sock = sock
            self.full = True

        def sendto(self, data: Any, addr: Any) -> int:
            if self.full:
                self.full = False
                raise BlockingIOError
            return self.sock.sendto(data, addr)

        def __getattr__(self, name: str) -> Any:
            return getattr(self.sock, name)

    client_config, _ = configs()
    async with trio.open_nursery() as nursery:
        server, addr = await _server(nursery, pools)
        async with DTLSEndpoint(await udp_socket(), pools=pools) as endpoint:
            channel = endpoint.connect(addr, client_config)
            with trio.fail_after(5):
                await channel.send(b"direct")
                assert await channel.receive() == b"direct"
            assert not endpoint.debug_state().sender_started
            raw = endpoint._raw
            use_socket(endpoint, FullOnce(raw))
            with trio.fail_after(5):
                await channel.send(b"queued first")
                assert await channel.receive() == b"queued first"
            assert (
                endpoint.debug_state().sender_started and not endpoint.statistics().queued_datagrams
            )
            use_socket(endpoint, raw)
            await channel.aclose()
        server.close()
    assert pools.in_use == 0
