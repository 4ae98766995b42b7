"""receive_nowait() / send_nowait(): a burst of messages per scheduler pass, without
checkpoints, with the same errors as receive() / send()."""

from __future__ import annotations

import fcntl
import socket
import struct
import termios

import pytest
import trio
import trio.testing

from dtls13 import DTLSChannel, DTLSEndpoint
from dtls13.memory import PoolSet
from dtls13.trio import _socketio
from dtls13.trio import channel as channel_module
from tests.support.trio_helpers import GENEROUS, configs, udp_socket, wait_for
from tests.trio.test_trio_abuse import first_client_hellos, is_hello_retry_request
from tests.trio.test_trio_datapath import Collector


@pytest.fixture
def pools() -> PoolSet:
    return PoolSet()


async def echo_bursts(channel: DTLSChannel) -> None:
    """The handler docs/trio.md shows: one checkpoint per burst."""
    try:
        while True:
            message = await channel.receive()
            while True:
                try:
                    channel.send_nowait(message)
                except trio.WouldBlock:
                    await channel.send(message)
                try:
                    message = channel.receive_nowait()
                except trio.WouldBlock:
                    break
    except (trio.EndOfChannel, trio.BrokenResourceError, trio.ClosedResourceError):
        pass


async def test_nowait_calls_take_no_checkpoint_and_keep_the_order(pools: PoolSet) -> None:
    client_config, _ = configs()
    server = Collector()
    async with trio.open_nursery() as nursery:
        addr = await server.start(nursery, pools, incoming_packets_buffer=64)
        async with DTLSEndpoint(await udp_socket(), pools=pools) as endpoint:
            channel = endpoint.connect(addr, client_config)
            # Before the handshake both would have to wait for it.
            with pytest.raises(trio.WouldBlock):
                channel.receive_nowait()
            with pytest.raises(trio.WouldBlock):
                channel.send_nowait(b"early")
            await channel.do_handshake()
            with pytest.raises(trio.WouldBlock):
                channel.receive_nowait()
            sent = [b"%03d" % i for i in range(20)]
            with trio.testing.assert_no_checkpoints():
                for message in sent:
                    channel.send_nowait(message)
            assert channel.statistics().app_records_out == len(sent)
            await wait_for(lambda: server.messages == sent)
            channel._enqueue(b"one")
            channel._enqueue(b"two")
            with trio.testing.assert_no_checkpoints():
                assert channel.receive_nowait() == b"one"
                assert channel.receive_nowait() == b"two"
            with pytest.raises(trio.WouldBlock):
                channel.receive_nowait()
            with pytest.raises(ValueError):
                channel.send_nowait(b"")
            with pytest.raises(ValueError):
                channel.send_nowait(b"x" * (channel.get_cleartext_mtu() + 1))
            await channel.aclose()
            with pytest.raises(trio.ClosedResourceError):
                channel.receive_nowait()
            with pytest.raises(trio.ClosedResourceError):
                channel.send_nowait(b"late")
        server.endpoint.close()
    assert pools.in_use == 0


async def test_a_burst_is_echoed_whole_and_in_order_by_the_nowait_handler(
    pools: PoolSet,
) -> None:
    client_config, server_config = configs()
    async with trio.open_nursery() as nursery:
        server = DTLSEndpoint(
            await udp_socket(), pools=pools, dos=GENEROUS, incoming_packets_buffer=64
        )
        await nursery.start(server.serve, server_config, echo_bursts)
        addr = server.socket.getsockname()[:2]
        async with DTLSEndpoint(
            await udp_socket(), pools=pools, incoming_packets_buffer=64
        ) as endpoint:
            channel = endpoint.connect(addr, client_config)
            await channel.do_handshake()
            got: list[bytes] = []
            for round_ in range(3):
                sent = [b"%d-%02d" % (round_, i) for i in range(32)]
                for message in sent:
                    channel.send_nowait(message)
                with trio.fail_after(10):
                    got.append(await channel.receive())
                    while len(got) < 32 * (round_ + 1):
                        try:
                            got.append(channel.receive_nowait())
                        except trio.WouldBlock:
                            got.append(await channel.receive())
                assert got[-32:] == sent
            await channel.aclose()
        server.close()
    assert pools.in_use == 0


async def test_receive_nowait_after_the_peer_closed_raises_end_of_channel(
    pools: PoolSet,
) -> None:
    client_config, _ = configs()
    server = Collector()
    async with trio.open_nursery() as nursery:
        addr = await server.start(nursery, pools)
        async with DTLSEndpoint(await udp_socket(), pools=pools) as endpoint:
            channel = endpoint.connect(addr, client_config)
            await channel.do_handshake()
            await wait_for(lambda: server.channel is not None)
            assert server.channel is not None
            await server.channel.aclose()
            await wait_for(lambda: channel.terminated is not None)
            with pytest.raises(trio.EndOfChannel):
                channel.receive_nowait()
            with pytest.raises(trio.BrokenResourceError):
                channel.send_nowait(b"after")
        server.endpoint.close()
    assert pools.in_use == 0


def _unread(endpoint: DTLSEndpoint) -> int:
    """Bytes of the next datagram waiting in the endpoint's socket (0: none)."""
    return struct.unpack("i", fcntl.ioctl(endpoint._raw.fileno(), termios.FIONREAD, b"\0" * 4))[0]


@pytest.mark.skipif(not _socketio.BATCH_IO, reason="needs recvmmsg/sendmmsg (Linux)")
async def test_send_nowait_would_block_while_the_send_queue_is_full(pools: PoolSet) -> None:
    client_config, _ = configs()
    server = Collector()
    async with trio.open_nursery() as nursery:
        addr = await server.start(nursery, pools, incoming_packets_buffer=1000)
        async with DTLSEndpoint(await udp_socket(), pools=pools) as endpoint:
            channel = endpoint.connect(addr, client_config)
            await channel.do_handshake()
            limit = channel_module.NOWAIT_SEND_LIMIT
            # Datagrams held for the end of the scheduler pass, as a socket that takes none
            # would keep them queued.
            endpoint._flush_early = limit + 1
            for i in range(limit):
                channel.send_nowait(b"%04d" % i)
            with pytest.raises(trio.WouldBlock):
                channel.send_nowait(b"one too many")
            assert channel.statistics().app_records_out == limit
            await trio.sleep(0)  # the pass ends: they leave
            assert not endpoint._outq
            # (The server's socket buffer may drop part of a burst this size: let it read
            # what it kept, so that the next datagram finds room.)
            await wait_for(lambda: bool(server.messages) and _unread(server.endpoint) == 0)
            channel.send_nowait(b"room again")
            await wait_for(lambda: b"room again" in server.messages, timeout=10)
            assert server.messages[:-1] == sorted(server.messages[:-1])
            await channel.aclose()
        server.endpoint.close()
    assert pools.in_use == 0


@pytest.mark.skipif(not _socketio.BATCH_IO, reason="needs recvmmsg/sendmmsg (Linux)")
async def test_a_long_burst_starts_leaving_before_the_sending_task_yields(
    pools: PoolSet,
) -> None:
    # The peer works on the first datagrams of a burst while the rest are being made.
    client_config, _ = configs()
    server = Collector()
    early = _socketio.FLUSH_EARLY
    async with trio.open_nursery() as nursery:
        addr = await server.start(nursery, pools, incoming_packets_buffer=4 * early)
        async with DTLSEndpoint(await udp_socket(), pools=pools) as endpoint:
            channel = endpoint.connect(addr, client_config)
            await channel.do_handshake()
            await trio.sleep(0)  # the client's last handshake datagram has left
            before = endpoint.statistics().datagrams_out
            sent = [b"%03d" % i for i in range(3 * early + 1)]
            with trio.testing.assert_no_checkpoints():
                for message in sent[: early - 1]:
                    channel.send_nowait(message)
                # Fewer than FLUSH_EARLY wait for the end of the scheduler pass...
                assert endpoint.statistics().datagrams_out == before
                assert endpoint.statistics().queued_datagrams == early - 1
                # ... the one that makes FLUSH_EARLY sends them all at once.
                channel.send_nowait(sent[early - 1])
                assert endpoint.statistics().datagrams_out == before + early
                assert endpoint.statistics().queued_datagrams == 0
                for message in sent[early:]:
                    channel.send_nowait(message)
                assert endpoint.statistics().datagrams_out == before + 3 * early
                assert endpoint.statistics().queued_datagrams == 1
            await wait_for(lambda: server.messages == sent)
            assert endpoint.statistics().queued_datagrams == 0
            await channel.aclose()
        server.endpoint.close()
    assert pools.in_use == 0


@pytest.mark.skipif(not _socketio.BATCH_IO, reason="needs recvmmsg/sendmmsg (Linux)")
async def test_a_receive_batch_starts_sending_its_replies_before_it_ends(
    pools: PoolSet,
) -> None:
    early = _socketio.FLUSH_EARLY
    hellos = first_client_hellos(early + 4)
    _, server_config = configs()
    async with trio.open_nursery() as nursery:
        server = DTLSEndpoint(await udp_socket(), pools=pools, dos=GENEROUS, cookie_policy="always")
        await nursery.start(server.serve, server_config, echo_bursts)
        flushes: list[tuple[bool, int]] = []  # (inside a receive batch, datagrams queued)
        original = server._flush

        def recording() -> bool:
            flushes.append((server._holding, len(server._outq)))
            return original()

        server._flush = recording  # type: ignore[method-assign]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as bot:
            bot.bind(("127.0.0.1", 0))
            bot.settimeout(5)
            # Sent without yielding: the server's receive task takes them in one batch.
            for hello in hellos:
                bot.sendto(hello, server.socket.getsockname()[:2])
            await wait_for(lambda: server.counters["datagrams_out"] >= len(hellos))
            replies = [bot.recv(65536) for _ in hellos]
        assert all(is_hello_retry_request(reply) for reply in replies)
        # One HelloRetryRequest per ClientHello: the first FLUSH_EARLY leave mid-batch, the
        # rest when the batch ends.
        assert flushes == [(True, early), (False, len(hellos) - early)]
        server.close()
    assert pools.in_use == 0
