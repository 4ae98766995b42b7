"""The trio adapter over real UDP sockets on 127.0.0.1 and ::1."""

from __future__ import annotations

import dataclasses
import gc
import socket
from typing import Any

import pytest
import trio
import trio.testing

from dtls13 import DTLSChannel, DTLSEndpoint, open_dtls_client, serve_dtls
from dtls13.crypto.suites import CipherSuite
from dtls13.memory import PoolSet
from tests.support.trio_helpers import GENEROUS, configs, echo, udp_socket, use_socket, wait_for


def have_ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


class FullSocket:
    """A stdlib socket whose buffer is "full" (BlockingIOError) for its next sends."""

    def __init__(self, sock: socket.socket, full_for: int) -> None:
        self.sock = sock
        self.full_for = full_for

    def sendto(self, data: Any, addr: Any) -> int:
        if self.full_for > 0:
            self.full_for -= 1
            raise BlockingIOError
        return self.sock.sendto(data, addr)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sock, name)


class Server:
    """An echo (or other) server on its own endpoint, inside a nursery."""

    def __init__(self, nursery: trio.Nursery, pools: PoolSet, host: str = "127.0.0.1") -> None:
        self.nursery = nursery
        self.pools = pools
        self.host = host
        self.endpoint: DTLSEndpoint

    async def start(self, handler: Any = echo, **kwargs: Any) -> tuple[str, int]:
        sock = await udp_socket(self.host)
        self.endpoint = DTLSEndpoint(sock, pools=self.pools, dos=GENEROUS, **kwargs)
        _, server_config = configs()
        await self.nursery.start(self.endpoint.serve, server_config, handler)
        return sock.getsockname()[:2]  # type: ignore[no-any-return]


@pytest.fixture
def pools() -> PoolSet:
    return PoolSet()


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
async def test_handshake_and_echo(pools: PoolSet, host: str) -> None:
    if ":" in host and not have_ipv6():
        pytest.skip("no IPv6 loopback")
    client_config, _ = configs(alpn_protocols=["echo"])
    async with trio.open_nursery() as nursery:
        server = Server(nursery, pools, host)
        addr = await server.start()
        async with DTLSEndpoint(await udp_socket(host), pools=pools) as endpoint:
            channel = endpoint.connect(addr, client_config)
            assert channel.peer_address == addr
            with trio.fail_after(10):
                await channel.do_handshake()
                assert channel.cipher_suite in tuple(CipherSuite)
                assert channel.peer_certificates
                assert channel.handshake_info is not None
                for i in range(5):
                    await channel.send(b"message %d" % i)
                    assert await channel.receive() == b"message %d" % i
            stats = channel.statistics()
            assert stats.app_records_out == 5 and stats.app_bytes_in == stats.app_bytes_out
            assert stats.handshake_time is not None and stats.handshake_time > 0
            assert stats.records_in > 5 and stats.datagrams_out >= 7
            assert stats.memory_high_water > 0
            await channel.aclose()
        server.endpoint.close()
    assert endpoint.counters["internal_errors"] == server.endpoint.counters["internal_errors"] == 0
    assert pools.in_use == 0


async def test_hundred_concurrent_clients_through_one_server_socket(pools: PoolSet) -> None:
    client_config, _ = configs()
    done: list[int] = []

    async def client(i: int, addr: Any) -> None:
        async with DTLSEndpoint(await udp_socket(), pools=pools) as endpoint:
            channel = endpoint.connect(addr, client_config)
            for j in range(3):
                message = b"client %d message %d" % (i, j)
                await channel.send(message)
                assert await channel.receive() == message
            await channel.aclose()
            done.append(i)

    async with trio.open_nursery() as nursery:
        server = Server(nursery, pools)
        addr = await server.start()
        with trio.fail_after(60):
            async with trio.open_nursery() as clients:
                for i in range(100):
                    clients.start_soon(client, i, addr)
        stats = server.endpoint.statistics()
        server.endpoint.close()
    assert sorted(done) == list(range(100))
    assert stats.server is not None and stats.server.connections_created == 100
    assert pools.in_use == 0


@pytest.mark.parametrize("how", ["aclose", "close"])
async def test_close_notify_client_to_server(pools: PoolSet, how: str) -> None:
    client_config, _ = configs()
    ended: list[str] = []

    async def handler(channel: DTLSChannel) -> None:
        assert await channel.receive() == b"bye soon"
        with pytest.raises(trio.EndOfChannel):
            await channel.receive()
        assert channel.terminated is not None and channel.terminated.by_peer
        ended.append("server saw close_notify")

    async with trio.open_nursery() as nursery:
        server = Server(nursery, pools)
        addr = await server.start(handler)
        async with DTLSEndpoint(await udp_socket(), pools=pools) as endpoint:
            channel = endpoint.connect(addr, client_config)
            await channel.send(b"bye soon")
            if how == "aclose":
                await channel.aclose()
            else:
                channel.close()  # queues close_notify without waiting
            with pytest.raises(trio.ClosedResourceError):
                await channel.send(b"after close")
            await wait_for(lambda: ended)
        server.endpoint.close()
    assert pools.in_use == 0


async def test_close_notify_server_to_client(pools: PoolSet) -> None:
    client_config, _ = configs()

    async def handler(channel: DTLSChannel) -> None:
        await channel.send(await channel.receive())
        # returning closes the channel with close_notify

    async with trio.open_nursery() as nursery:
        server = Server(nursery, pools)
        addr = await server.start(handler)
        async with DTLSEndpoint(await udp_socket(), pools=pools) as endpoint:
            channel = endpoint.connect(addr, client_config)
            await channel.send(b"one")
            with trio.fail_after(5):
                assert await channel.receive() == b"one"
                with pytest.raises(trio.EndOfChannel):
                    await channel.receive()
            assert channel.terminated is not None
            assert channel.terminated.reason == "peer sent close_notify"
            with pytest.raises(trio.BrokenResourceError):
                await channel.send(b"too late")
            # async iteration ends cleanly at close_notify
            assert [m async for m in channel] == []
        server.endpoint.close()
    assert pools.in_use == 0


async def test_cancelling_do_handshake_loses_nothing(pools: PoolSet) -> None:
    client_config, _ = configs()
    async with trio.open_nursery() as nursery:
        server = Server(nursery, pools)
        addr = await server.start()
        async with DTLSEndpoint(await udp_socket(), pools=pools) as endpoint:
            channel = endpoint.connect(addr, client_config)
            async with trio.open_nursery() as inner:
                inner.start_soon(channel.do_handshake)
                await wait_for(
                    lambda: channel.debug_state().connection.handshake_started is not None
                )
                inner.cancel_scope.cancel()
            assert channel.handshake_info is None or channel.handshake_info
            with trio.fail_after(5):
                await channel.do_handshake()
                await channel.send(b"after a cancelled handshake")
                assert await channel.receive() == b"after a cancelled handshake"
            assert channel.statistics().retransmissions == 0
            await channel.aclose()
        server.endpoint.close()
    assert pools.in_use == 0


async def test_cancelling_receive_loses_nothing(pools: PoolSet) -> None:
    client_config, _ = configs()
    async with trio.open_nursery() as nursery:
        server = Server(nursery, pools)
        addr = await server.start()
        async with DTLSEndpoint(await udp_socket(), pools=pools) as endpoint:
            channel = endpoint.connect(addr, client_config)
            await channel.do_handshake()
            with trio.move_on_after(0.05) as scope:
                await channel.receive()
            assert scope.cancelled_caught
            # A receive cancelled just as data arrives must not swallow it.
            await channel.send(b"first")
            await wait_for(lambda: channel.debug_state().queued == 1)
            with trio.CancelScope() as scope:
                scope.cancel()
                await channel.receive()
            assert scope.cancelled_caught
            with trio.fail_after(5):
                assert await channel.receive() == b"first"
            await channel.aclose()
        server.endpoint.close()
    assert pools.in_use == 0


async def test_cancelled_send_still_delivers_what_it_handed_over(pools: PoolSet) -> None:
    client_config, _ = configs()
    async with trio.open_nursery() as nursery:
        server = Server(nursery, pools)
        addr = await server.start()
        async with DTLSEndpoint(await udp_socket(), pools=pools) as endpoint:
            channel = endpoint.connect(addr, client_config)
            await channel.do_handshake()
            # Cancelled before anything happened: nothing is sent.
            with trio.CancelScope() as scope:
                scope.cancel()
                await channel.send(b"never")
            assert scope.cancelled_caught
            # Cancelled while waiting for the socket (its buffer was full): the record is
            # already queued and goes.
            original = endpoint._wait_sent
            real = endpoint._raw
            use_socket(endpoint, FullSocket(real, full_for=3))
            with trio.CancelScope() as scope:

                async def cancel_then_wait(target: int) -> None:
                    scope.cancel()
                    await original(target)

                endpoint._wait_sent = cancel_then_wait  # type: ignore[method-assign]
                await channel.send(b"handed over")
            endpoint._wait_sent = original  # type: ignore[method-assign]
            assert scope.cancelled_caught
            with trio.fail_after(5):
                await wait_for(lambda: not endpoint.statistics().queued_datagrams)
            use_socket(endpoint, real)
            with trio.fail_after(5):
                assert await channel.receive() == b"handed over"
            assert channel.statistics().app_records_out == 1
            await channel.aclose()
        server.endpoint.close()
    assert pools.in_use == 0


async def test_mtu_changes(pools: PoolSet) -> None:
    client_config, _ = configs()
    sizes: list[int] = []
    async with trio.open_nursery() as nursery:
        server = Server(nursery, pools)
        addr = await server.start()
        recorded = server.endpoint._on_datagram

        def record(data: Any, a: Any) -> None:
            sizes.append(len(data))
            recorded(data, a)

        server.endpoint._on_datagram = record  # type: ignore[method-assign]
        async with DTLSEndpoint(await udp_socket(), pools=pools) as endpoint:
            channel = endpoint.connect(addr, client_config)
            with pytest.raises(trio.NeedHandshakeError):
                channel.get_cleartext_mtu()
            channel.set_ciphertext_mtu(300)
            await channel.do_handshake()
            assert max(sizes) <= 300
            small = channel.get_cleartext_mtu()
            assert 200 < small < 300
            await channel.send(b"s" * small)
            assert await channel.receive() == b"s" * small
            with pytest.raises(ValueError):
                await channel.send(b"s" * (small + 1))
            channel.set_ciphertext_mtu(1100)  # the server's own MTU is 1200
            big = channel.get_cleartext_mtu()
            assert big == small + 800
            await channel.send(b"b" * big)
            assert await channel.receive() == b"b" * big
            with pytest.raises(ValueError):
                channel.set_ciphertext_mtu(100)
            await channel.aclose()
        server.endpoint.close()
    assert pools.in_use == 0


async def test_a_flight_held_back_for_its_size_costs_no_mtu(
    pools: PoolSet, autojump_clock: trio.testing.MockClock
) -> None:
    """Without cookies an unpadded ClientHello does not pay for the server's flight (at
    most 3x what the client sent): it goes when the client's repeat comes. With the
    server's timer just before that repeat, the repeat still gets it at once, and neither
    side backs off to a smaller MTU: a message of the full MTU echoes. (The server's timer
    had made it shrink its MTU; its echo then failed and its handler's end sent
    close_notify, so the client's receive() ended with EndOfChannel mid-echo.)"""
    client_config, server_config = configs(mtu=1400)
    # The server's timer comes first (a real server's often does: it started when the
    # hello arrived, the client's before it left).
    server_config = dataclasses.replace(server_config, mtu=1400, retransmit_initial=0.9)
    echoed = 0

    async def echo_all(channel: DTLSChannel) -> None:
        nonlocal echoed
        async for message in channel:
            await channel.send(message)
            echoed += 1

    async with trio.open_nursery() as nursery:
        sock = await udp_socket()
        server = DTLSEndpoint(sock, pools=pools, dos=GENEROUS, cookie_policy="never")
        await nursery.start(server.serve, server_config, echo_all)
        async with DTLSEndpoint(await udp_socket(), pools=pools) as endpoint:
            channel = endpoint.connect(sock.getsockname(), client_config)
            start = trio.current_time()
            await channel.do_handshake()
            assert trio.current_time() - start == pytest.approx(1.0)  # the client's repeat
            assert channel.statistics().retransmissions == 1
            size = channel.get_cleartext_mtu()
            assert size > 1300
            for i in range(3):
                await channel.send(bytes([i]) * size)
                assert await channel.receive() == bytes([i]) * size
            assert echoed == 3
            await channel.aclose()
        server.close()
    assert pools.in_use == 0


async def test_full_receive_queue_drops_and_counts(pools: PoolSet) -> None:
    client_config, _ = configs()

    async def flood(channel: DTLSChannel) -> None:
        await channel.receive()
        for i in range(8):
            await channel.send(b"%d" % i)
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        server = Server(nursery, pools)
        addr = await server.start(flood)
        async with DTLSEndpoint(
            await udp_socket(), pools=pools, incoming_packets_buffer=3
        ) as endpoint:
            channel = endpoint.connect(addr, client_config)
            await channel.send(b"go")
            await wait_for(lambda: channel.statistics().app_bytes_in == 8)
            assert [await channel.receive() for _ in range(3)] == [b"0", b"1", b"2"]
            stats = channel.statistics()
            assert stats.incoming_packets_dropped_in_trio == 5
            assert stats.drops["receive_queue_full"] == 5
        nursery.cancel_scope.cancel()
    server.endpoint.close()
    assert pools.in_use == 0


async def test_handshake_failure_raises_broken_resource(pools: PoolSet) -> None:
    from tests.support.dtls_pair import pki

    client_config, _ = configs(cafile=pki("ec384").root_pem)  # trusts another CA
    async with trio.open_nursery() as nursery:
        server = Server(nursery, pools)
        addr = await server.start()
        async with DTLSEndpoint(await udp_socket(), pools=pools) as endpoint:
            channel = endpoint.connect(addr, client_config)
            with trio.fail_after(5), pytest.raises(trio.BrokenResourceError) as info:
                await channel.do_handshake()
            assert type(info.value.__cause__).__name__ == "UnknownCa"
            with pytest.raises(trio.BrokenResourceError):
                await channel.receive()
        server.endpoint.close()
    assert pools.in_use == 0


async def test_closing_the_endpoint_wakes_receivers(pools: PoolSet) -> None:
    client_config, _ = configs()
    async with trio.open_nursery() as nursery:
        server = Server(nursery, pools)
        addr = await server.start()
        endpoint = DTLSEndpoint(await udp_socket(), pools=pools)
        channel = endpoint.connect(addr, client_config)
        await channel.do_handshake()
        async with trio.open_nursery() as inner:

            async def receiver() -> None:
                with pytest.raises(trio.ClosedResourceError):
                    await channel.receive()

            inner.start_soon(receiver)
            await trio.testing.wait_all_tasks_blocked()
            endpoint.close()
        with pytest.raises(trio.ClosedResourceError):
            endpoint.connect(addr, client_config)
        server.endpoint.close()
    assert pools.in_use == 0


async def test_unclosed_endpoint_warns(pools: PoolSet) -> None:
    client_config, _ = configs()
    endpoint = DTLSEndpoint(await udp_socket(), pools=pools)
    endpoint.connect(("127.0.0.1", 9), client_config)
    with pytest.warns(ResourceWarning, match="unclosed DTLS endpoint"):
        del endpoint
        gc.collect()
    await trio.sleep(0.01)  # the close scheduled by __del__ runs
    assert pools.in_use == 0


async def test_closing_an_endpoint_gives_every_lease_back_at_once(pools: PoolSet) -> None:
    client_config, _ = configs()
    endpoint = DTLSEndpoint(await udp_socket(), pools=pools)
    channel = endpoint.connect(("127.0.0.1", 9), client_config)
    await trio.testing.wait_all_tasks_blocked()
    assert pools.in_use == 0  # the receive task holds no buffer while it waits
    with trio.move_on_after(0.05):
        await channel.do_handshake()  # nobody answers: the flight stays held
    assert pools.in_use > 0
    endpoint.close()
    assert pools.in_use == 0


async def test_api_shape(pools: PoolSet) -> None:
    with pytest.raises(TypeError, match="no public constructor"):
        DTLSChannel()
    sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_STREAM)
    with pytest.raises(ValueError, match="SOCK_DGRAM"):
        DTLSEndpoint(sock)
    sock.close()
    with await udp_socket() as sock, pytest.raises(TypeError, match="incoming_packets_buffer"):
        DTLSEndpoint(sock, incoming_packets_buffer="10")  # type: ignore[arg-type]
    client_config, server_config = configs()
    with DTLSEndpoint(await udp_socket(), pools=pools) as endpoint:
        with pytest.raises(ValueError, match="IP address"):
            endpoint.connect(("localhost", 4433), client_config)
        with pytest.raises(TypeError):
            endpoint.connect(("127.0.0.1", 4433), server_config)  # type: ignore[arg-type]
    assert endpoint.closed


async def test_a_message_that_is_not_bytes_like_raises_before_any_handshake(
    pools: PoolSet,
) -> None:
    client_config, _ = configs()
    with DTLSEndpoint(await udp_socket(), pools=pools) as endpoint:
        # Nobody listens there: a send that started the handshake would wait for it.
        channel = endpoint.connect(("127.0.0.1", 9), client_config)
        with trio.fail_after(5):
            for value in ("text", 12345, None):
                with pytest.raises(TypeError, match="message must be bytes-like"):
                    await channel.send(value)  # type: ignore[arg-type]
                with pytest.raises(TypeError, match="message must be bytes-like"):
                    channel.send_nowait(value)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="MTU must be an int"):
            channel.set_ciphertext_mtu("1400")  # type: ignore[arg-type]
        assert endpoint.statistics().datagrams_out == 0
    assert pools.in_use == 0


async def test_serve_dtls_checks_the_port_before_binding() -> None:
    _, server_config = configs()
    with pytest.raises(ValueError, match="port must be between 0 and 65535"):
        await serve_dtls(echo, 70000, server_config, host="127.0.0.1")
    with pytest.raises(TypeError, match="port must be an int"):
        await serve_dtls(echo, "4433", server_config, host="127.0.0.1")  # type: ignore[arg-type]


async def test_convenience_functions(pools: PoolSet) -> None:
    client_config, server_config = configs()
    async with trio.open_nursery() as nursery:
        endpoint = await nursery.start(
            lambda task_status: serve_dtls(
                echo, 0, server_config, host="127.0.0.1", pools=pools, task_status=task_status
            )
        )
        port = endpoint.socket.getsockname()[1]
        channel = await open_dtls_client("localhost", port, client_config, pools=pools)
        await channel.send(b"convenient")
        assert await channel.receive() == b"convenient"
        await channel.aclose()
        assert channel.endpoint.closed
        nursery.cancel_scope.cancel()
    assert pools.in_use == 0


async def test_timers_retransmit_a_lost_flight_and_time_out_a_dead_peer(pools: PoolSet) -> None:
    client_config, _ = configs(retransmit_initial=0.05)
    async with trio.open_nursery() as nursery:
        server = Server(nursery, pools)
        addr = await server.start()
        deliver = server.endpoint._on_datagram
        dropped: list[int] = []

        def drop_first_two(data: Any, a: Any) -> None:
            if len(dropped) < 2:
                dropped.append(len(data))
                return
            deliver(data, a)

        server.endpoint._on_datagram = drop_first_two  # type: ignore[method-assign]
        async with DTLSEndpoint(await udp_socket(), pools=pools) as endpoint:
            channel = endpoint.connect(addr, client_config)
            with trio.fail_after(5):
                await channel.send(b"despite loss")
                assert await channel.receive() == b"despite loss"
            assert channel.statistics().retransmissions >= 2
            await channel.aclose()
        server.endpoint.close()

    # Nobody answers: the handshake gives up at handshake_timeout, on the trio clock.
    silent = await udp_socket()
    dead_config, _ = configs(retransmit_initial=0.05, handshake_timeout=0.5)
    async with DTLSEndpoint(await udp_socket(), pools=pools) as endpoint:
        channel = endpoint.connect(silent.getsockname(), dead_config)
        start = trio.current_time()
        with trio.fail_after(5), pytest.raises(trio.BrokenResourceError, match="timed out"):
            await channel.do_handshake()
        assert 0.5 <= trio.current_time() - start < 2
        assert channel.statistics().retransmissions >= 2
    silent.close()
    assert pools.in_use == 0


async def test_garbage_datagrams_are_counted_and_a_client_still_connects(pools: PoolSet) -> None:
    import random

    client_config, _ = configs()
    rng = random.Random(5)
    async with trio.open_nursery() as nursery:
        server = Server(nursery, pools)
        addr = await server.start()
        await trio.testing.wait_all_tasks_blocked()
        before = pools.in_use  # the receive task's lease
        junk = await udp_socket()
        for i in range(200):
            payload = bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 300)))
            if i % 4 == 0:  # something that looks like a DTLS handshake record header
                payload = b"\x16\xfe\xfd" + payload
            await junk.sendto(payload, addr)
        await wait_for(lambda: server.endpoint.counters["datagrams_in"] == 200)
        await trio.testing.wait_all_tasks_blocked()
        stats = server.endpoint.statistics()
        assert stats.connections == 0
        assert pools.in_use == before  # no per-peer state was kept
        assert server.endpoint.counters["internal_errors"] == 0
        junk.close()
        async with DTLSEndpoint(await udp_socket(), pools=pools) as endpoint:
            channel = endpoint.connect(addr, client_config)
            with trio.fail_after(5):
                await channel.send(b"still here")
                assert await channel.receive() == b"still here"
            await channel.aclose()
        server.endpoint.close()
    assert pools.in_use == 0


class _CancelAtStep(trio.abc.Instrument):
    """Cancel `scope` when `task` is about to run its `step`-th step."""

    def __init__(self, task: Any, scope: trio.CancelScope, step: int) -> None:
        self.task, self.scope, self.step, self.seen = task, scope, step, 0

    def before_task_step(self, task: Any) -> None:
        if task is self.task:
            if self.seen == self.step:
                self.scope.cancel()
            self.seen += 1


async def test_cancellation_at_every_await_loses_and_leaks_nothing(pools: PoolSet) -> None:
    client_config, _ = configs()
    async with trio.open_nursery() as nursery:
        server = Server(nursery, pools)
        addr = await server.start()
        async with DTLSEndpoint(await udp_socket(), pools=pools) as endpoint:
            step = 0
            while True:
                channel = endpoint.connect(addr, client_config)
                me = trio.lowlevel.current_task()
                with trio.CancelScope() as scope:
                    instrument = _CancelAtStep(me, scope, step)
                    trio.lowlevel.add_instrument(instrument)
                    try:
                        await channel.do_handshake()
                        await channel.send(b"x")
                        assert await channel.receive() == b"x"
                    finally:
                        trio.lowlevel.remove_instrument(instrument)
                if not scope.cancelled_caught:
                    break  # the whole sequence ran before the step: every await was covered
                with trio.fail_after(5):
                    await channel.send(b"y")
                    got = [await channel.receive()]
                    while got[-1] != b"y":
                        got.append(await channel.receive())
                # "x" arrives once if it was handed over before the cancel, else never.
                assert got in ([b"y"], [b"x", b"y"]), (step, got)
                await channel.aclose()
                step += 1
            await channel.aclose()
        assert step >= 3, step  # do_handshake, the handshake, receive (send yields shielded)
        assert endpoint.counters["internal_errors"] == 0
        server.endpoint.close()
    assert pools.in_use == 0


async def test_serve_needs_a_bound_socket_and_serves_once(pools: PoolSet) -> None:
    _, server_config = configs()
    unbound = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
    with DTLSEndpoint(unbound, pools=pools) as endpoint, pytest.raises(RuntimeError, match="bound"):
        await endpoint.serve(server_config, echo)
    async with trio.open_nursery() as nursery:
        server = Server(nursery, pools)
        await server.start()
        with pytest.raises(trio.BusyResourceError):
            await server.endpoint.serve(server_config, echo)
        stats = server.endpoint.statistics()
        assert stats.connections == 0 and stats.server is not None
        nursery.cancel_scope.cancel()
    # serve() ended: the endpoint stays open and can serve again
    assert server.endpoint.statistics().server is None
    async with trio.open_nursery() as nursery:
        await nursery.start(server.endpoint.serve, server_config, echo)
        nursery.cancel_scope.cancel()
    server.endpoint.close()
    assert pools.in_use == 0
