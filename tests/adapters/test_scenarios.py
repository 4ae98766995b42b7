"""The same scenarios over real 127.0.0.1 sockets on every adapter: trio, asyncio, and
asyncio on uvloop. Each test is synchronous and runs its scenario on the adapter's loop."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import gc
import socket
import sys
import time
from typing import Any

import pytest

import dtls13
from dtls13 import ClientConfig, ServerConfig
from dtls13.connection import Connection
from dtls13.endpoint import DoSProtectionConfig
from dtls13.events import DataReceived
from dtls13.memory import PoolSet
from tests.support.adapters import ADAPTERS, Adapter, udp_bot
from tests.support.dtls_pair import pki

GENEROUS = DoSProtectionConfig(
    max_connections_per_ip=1000,
    max_half_open_per_ip=1000,
    datagrams_per_second=1e6,
    datagram_burst=1e6,
    bytes_per_second=1e9,
    byte_burst=1e9,
)


@pytest.fixture(params=ADAPTERS, ids=repr)
def ad(request: pytest.FixtureRequest) -> Adapter:
    adapter: Adapter = request.param
    return adapter


@pytest.fixture
def pools() -> Any:
    pools = PoolSet()
    yield pools
    assert pools.in_use == 0, "leases left in use"


def configs(**client: Any) -> tuple[ClientConfig, ServerConfig]:
    p = pki("ec256")
    leaf = p.leaf("ec256", ips=("127.0.0.1",))
    server = ServerConfig(certificate_chain=leaf.chain_pem, private_key=leaf.key_pem)
    return ClientConfig(server_name="localhost", cafile=p.root_pem, **client), server


def echo_handler(ad: Adapter) -> Any:
    async def echo(channel: Any) -> None:
        try:
            async for message in channel:
                await channel.send(message)
        except (ad.Broken, ad.Closed):
            pass

    return echo


def test_handshake_and_echo(ad: Adapter, pools: PoolSet) -> None:
    client_config, server_config = configs()

    async def scenario() -> None:
        async with (
            ad.serving(server_config, echo_handler(ad), pools=pools) as (server, addr),
            ad.endpoint(pools=pools) as client,
        ):
            channel = client.connect(addr, client_config)
            channel.set_ciphertext_mtu(1000)  # before the handshake: nothing sent yet
            with pytest.raises(ad.NeedHandshake):
                channel.get_cleartext_mtu()
            await ad.within(5, channel.do_handshake())
            assert channel.cipher_suite is not None and channel.peer_certificates
            assert 900 < channel.get_cleartext_mtu() < 1000
            for size in (1, 100, channel.get_cleartext_mtu()):
                await channel.send(b"x" * size)
                assert await ad.within(5, channel.receive()) == b"x" * size
            with pytest.raises(ValueError):
                await channel.send(b"x" * (channel.get_cleartext_mtu() + 1))
            stats = channel.statistics()
            assert stats.app_records_out == 3 and stats.handshake_time is not None
            await channel.aclose()
            assert channel.closed
            assert server.statistics().datagrams_in > 0
            assert server.statistics().internal_errors == 0

    ad.run(scenario)


def test_programmer_errors_raise_at_once(ad: Adapter, pools: PoolSet) -> None:
    """A value that is not bytes-like for send(), an MTU, port or handler of the wrong
    kind: TypeError or ValueError at once, nothing sent, no handshake started and waited
    for."""
    client_config, server_config = configs()

    async def scenario() -> None:
        async with ad.endpoint(pools=pools) as client:
            # Nobody listens there: a send that started the handshake would wait for it.
            channel = client.connect(("127.0.0.1", 9), client_config)
            for value in ("text", 12345, None):
                with pytest.raises(TypeError, match="message must be bytes-like"):
                    await ad.within(5, channel.send(value))
            with pytest.raises(TypeError, match="MTU must be an int"):
                channel.set_ciphertext_mtu("1400")
            with pytest.raises(TypeError, match="port must be an int"):
                client.connect(("127.0.0.1", "4433"), client_config)
            with pytest.raises(ValueError, match="port must be between"):
                client.connect(("127.0.0.1", 70000), client_config)
            with pytest.raises(TypeError, match="handler"):
                await ad.within(5, client.serve(server_config, "not a handler"))
        with pytest.raises(TypeError, match="port must be an int"):
            await ad.within(5, ad.open_client("4433", client_config))  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="port must be between"):
            await ad.within(5, ad.open_client(70000, client_config))
            assert client.statistics().datagrams_out == 0

    ad.run(scenario)


def test_many_clients_at_once(ad: Adapter, pools: PoolSet) -> None:
    client_config, server_config = configs()
    done: list[int] = []

    async def scenario() -> None:
        async with (
            ad.serving(server_config, echo_handler(ad), pools=pools, dos=GENEROUS) as (
                server,
                addr,
            ),
            ad.endpoint(pools=pools) as first,
        ):
            # One client endpoint per peer address (one association per address).
            endpoints = [first] + [ad.endpoint(pools=pools) for _ in range(11)]

            def client(i: int) -> Any:
                async def run() -> None:
                    channel = endpoints[i].connect(addr, client_config)
                    for n in range(5):
                        message = f"client {i} message {n}".encode()
                        await channel.send(message)
                        assert await ad.within(10, channel.receive()) == message
                    await channel.aclose()
                    done.append(i)

                return run

            try:
                await ad.within(30, ad.gather(*(client(i) for i in range(12))))
            finally:
                for ep in endpoints[1:]:
                    await ep.aclose()
            assert server.statistics().server.connections_created == 12

    ad.run(scenario)
    assert sorted(done) == list(range(12))


def test_close_notify_from_the_client_ends_the_handlers_loop(ad: Adapter, pools: PoolSet) -> None:
    client_config, server_config = configs()
    ended: list[str] = []

    async def handler(channel: Any) -> None:
        async for message in channel:  # ends quietly at the client's close_notify
            await channel.send(message)
        ended.append("end of channel")
        with pytest.raises(dtls13.PeerClosed):
            await channel.send(b"too late")

    async def scenario() -> None:
        async with (
            ad.serving(server_config, handler, pools=pools) as (_, addr),
            ad.endpoint(pools=pools) as client,
        ):
            channel = client.connect(addr, client_config)
            await channel.send(b"ping")
            assert await ad.within(5, channel.receive()) == b"ping"
            await channel.aclose()
            with pytest.raises(ad.Closed):
                await channel.receive()
            with pytest.raises(ad.Closed):
                await channel.send(b"after close")
            await ad.wait_for(lambda: bool(ended))

    ad.run(scenario)
    assert ended == ["end of channel"]


def test_close_notify_from_the_server_ends_the_clients_receive(ad: Adapter, pools: PoolSet) -> None:
    client_config, server_config = configs()

    async def handler(channel: Any) -> None:
        await channel.send(b"bye")  # returning closes the channel with close_notify

    async def scenario() -> None:
        async with (
            ad.serving(server_config, handler, pools=pools) as (_, addr),
            ad.endpoint(pools=pools) as client,
        ):
            channel = client.connect(addr, client_config)
            await ad.within(5, channel.do_handshake())
            assert await ad.within(5, channel.receive()) == b"bye"
            with pytest.raises(ad.EndOfChannel):
                await ad.within(5, channel.receive())
            with pytest.raises(dtls13.PeerClosed) as sent:
                await channel.send(b"anyone?")
            assert isinstance(sent.value, ad.Broken if ad.name == "trio" else EOFError)
            assert channel.terminated is not None and channel.terminated.by_peer
            await channel.aclose()

    ad.run(scenario)


def test_cancelled_receive_leaves_the_channel_usable(ad: Adapter, pools: PoolSet) -> None:
    client_config, server_config = configs()

    async def scenario() -> None:
        async with (
            ad.serving(server_config, echo_handler(ad), pools=pools) as (_, addr),
            ad.endpoint(pools=pools) as client,
        ):
            channel = client.connect(addr, client_config)
            await ad.within(5, channel.do_handshake())
            for _ in range(3):
                assert await ad.cancelled_after(0.05, channel.receive())
            await channel.send(b"still there")
            assert await ad.within(5, channel.receive()) == b"still there"
            # A message that arrived while nobody was receiving waits in the queue.
            await channel.send(b"queued")
            await ad.wait_for(lambda: channel.statistics().app_bytes_in >= 17)
            assert await ad.within(5, channel.receive()) == b"queued"
            await channel.aclose()

    ad.run(scenario)


def test_cancelled_handshake_goes_on_and_completes_later(ad: Adapter, pools: PoolSet) -> None:
    client_config, server_config = configs()

    async def scenario() -> None:
        async with (
            ad.serving(server_config, echo_handler(ad), pools=pools) as (_, addr),
            ad.endpoint(pools=pools) as client,
        ):
            channel = client.connect(addr, client_config)
            assert await ad.cancelled_after(0.0001, channel.do_handshake())
            await ad.within(5, channel.do_handshake())
            await channel.send(b"after all")
            assert await ad.within(5, channel.receive()) == b"after all"
            await channel.aclose()

    ad.run(scenario)


def test_cancelled_handshake_with_a_silent_peer_leaks_nothing(ad: Adapter, pools: PoolSet) -> None:
    client_config, _ = configs()
    silent = udp_bot("127.0.0.1")  # bound, never answers

    async def scenario() -> None:
        async with ad.endpoint(pools=pools) as client:
            channel = client.connect(silent.getsockname(), client_config)
            assert await ad.cancelled_after(0.05, channel.do_handshake())
            assert pools.in_use > 0  # the flight is held for retransmission
            await channel.aclose()
            with pytest.raises(ad.Closed):
                await channel.do_handshake()
        assert pools.in_use == 0

    try:
        ad.run(scenario)
    finally:
        silent.close()


def test_a_peer_that_never_answers_times_the_handshake_out(ad: Adapter, pools: PoolSet) -> None:
    client_config, _ = configs(handshake_timeout=1.0)
    silent = udp_bot("127.0.0.1")

    async def scenario() -> None:
        async with ad.endpoint(pools=pools) as client:
            channel = client.connect(silent.getsockname(), client_config)
            with pytest.raises(dtls13.HandshakeTimeout) as caught:
                await ad.within(5, channel.do_handshake())
            assert isinstance(caught.value, ad.Broken)
            assert channel.closed and channel.terminated is not None
            with pytest.raises(dtls13.HandshakeTimeout):
                await channel.receive()

    try:
        ad.run(scenario)
    finally:
        silent.close()


def test_nothing_listening_is_reported_as_unreachable(ad: Adapter, pools: PoolSet) -> None:
    client_config, _ = configs()
    closed = udp_bot("127.0.0.1")
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there now: ICMP port unreachable answers

    async def scenario() -> None:
        with pytest.raises(dtls13.PeerUnreachable) as caught:
            await ad.within(8, ad.open_client(port, client_config, pools=pools))
        assert isinstance(caught.value, ad.Broken)

    ad.run(scenario)


def test_resumption_with_early_data(ad: Adapter, pools: PoolSet) -> None:
    client_config, server_config = configs()
    server_config = dataclasses.replace(server_config, max_early_data=1024)
    received: list[tuple[bool, bytes]] = []

    async def handler(channel: Any) -> None:
        try:
            async for message in channel:
                received.append((channel.resumed, message))
                await channel.send(message)
        except (ad.Broken, ad.Closed):
            pass

    async def scenario() -> None:
        async with (
            ad.serving(server_config, handler, pools=pools) as (_, addr),
            ad.endpoint(pools=pools) as client,
        ):
            first = client.connect(addr, client_config)
            await first.send(b"full")
            assert await ad.within(5, first.receive()) == b"full"
            assert not first.resumed
            await ad.wait_for(lambda: first.session is not None)
            session = first.session
            await first.aclose()

            config = dataclasses.replace(client_config, session=session)
            second = client.connect(addr, config)
            second.send_early_data(b"zero rtt")
            await ad.within(5, second.do_handshake())
            assert second.resumed and second.early_data_accepted is True
            assert second.peer_certificates == first.peer_certificates != ()
            await second.send(b"after")
            await ad.wait_for(lambda: (True, b"after") in received)
            await second.aclose()

    ad.run(scenario)
    assert (False, b"full") in received and (True, b"zero rtt") in received


def test_receive_queue_is_bounded_and_counts_drops(ad: Adapter, pools: PoolSet) -> None:
    client_config, server_config = configs()
    channels: list[Any] = []

    async def handler(channel: Any) -> None:
        channels.append(channel)
        await ad.sleep(60)  # reads nothing until the test looks

    async def scenario() -> None:
        async with (
            ad.serving(server_config, handler, pools=pools, incoming_packets_buffer=4) as (_, addr),
            ad.endpoint(pools=pools) as client,
        ):
            channel = client.connect(addr, client_config)
            await ad.within(5, channel.do_handshake())
            await ad.wait_for(lambda: bool(channels))
            for i in range(12):
                await channel.send(b"%d" % i)
            server_side = channels[0]
            await ad.wait_for(lambda: server_side.statistics().app_bytes_in >= 14)
            assert server_side.statistics().drops["receive_queue_full"] == 8
            assert [await server_side.receive() for _ in range(4)] == [b"0", b"1", b"2", b"3"]
            await channel.aclose()

    ad.run(scenario)


def test_unclosed_endpoint_warns_and_gives_its_memory_back(ad: Adapter, pools: PoolSet) -> None:
    client_config, _ = configs()

    async def scenario() -> None:
        endpoint = ad.endpoint(pools=pools)
        channel = endpoint.connect(("127.0.0.1", 9), client_config)

        async def start(channel: Any) -> None:
            # In a task of its own: the cancellation's traceback (which holds the channel)
            # goes away with the task.
            assert await ad.cancelled_after(0.02, channel.do_handshake())

        await ad.gather(functools.partial(start, channel))
        assert pools.in_use > 0
        with pytest.warns(ResourceWarning, match="unclosed DTLS endpoint"):
            del endpoint, channel, start
            gc.collect()
        await ad.sleep(0.01)  # a close scheduled by __del__ runs
        assert pools.in_use == 0

    ad.run(scenario)


# -- abuse ------------------------------------------------------------------------------


def first_client_hellos(n: int) -> list[bytes]:
    """The first datagram of `n` sans-IO clients (each a whole, cookie-less ClientHello)."""
    client_config, _ = configs()
    hello_pools = PoolSet()
    out = []
    for _ in range(n):
        conn = Connection(client_config, pools=hello_pools)
        conn.connect(("127.0.0.1", 4433), 0.0)
        for lease, _ in conn.datagrams_to_send(0.0):
            out.append(lease.tobytes())
            lease.release()
        conn.close()
        for lease, _ in conn.datagrams_to_send(0.0):
            lease.release()
        hello_pools.release_owner(conn.owner)
    return out


GARBAGE = [b"", b"\x00", b"\x16\xfe\xfd" + bytes(20), bytes(range(256)) * 4, b"\x2f" * 60]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs 127.0.0.0/8 on lo")
def test_garbage_and_a_cookieless_hello_flood_are_dropped_and_a_client_gets_through(
    ad: Adapter, pools: PoolSet
) -> None:
    client_config, server_config = configs()
    hellos = first_client_hellos(40)
    bots = [udp_bot(f"127.0.0.{i}") for i in range(2, 22)]

    async def scenario() -> None:
        async with ad.serving(
            server_config, echo_handler(ad), pools=pools, cookie_policy="always"
        ) as (server, addr):
            sent = 0
            for i, bot in enumerate(bots):
                for data in (*GARBAGE, hellos[2 * i], hellos[2 * i + 1]):
                    bot.sendto(data, addr)
                    sent += 1
                # Small batches: the server's socket buffer never overflows.
                target = sent
                await ad.wait_for(lambda t=target: server.counters["datagrams_in"] >= t)
            await ad.wait_for(lambda: ad.queued(server) == 0)
            stats = server.statistics().server
            assert stats.connections == 0 and stats.connections_created == 0
            assert stats.gate_partials == 0 and stats.half_open == 0
            assert stats.gate["hello_retry_sent"] == 40  # one stateless HRR each, no state
            assert stats.gate_dropped + stats.not_for_a_connection >= 20 * (len(GARBAGE) - 1)
            assert server.statistics().internal_errors == 0

            async def flood() -> None:
                while True:
                    for bot, data in zip(bots, hellos, strict=False):
                        bot.sendto(b"\x16\xfe\xfd" + bytes(30), addr)
                        bot.sendto(data, addr)
                    await ad.sleep(0.005)

            async with ad.background(flood):
                channel = await ad.within(5, ad.open_client(addr[1], client_config, pools=pools))
                await channel.send(b"through the flood")
                assert await ad.within(5, channel.receive()) == b"through the flood"
                assert channel._conn.stats["hello_retry_requests_received"] == 1
                await channel.aclose()
            assert server.statistics().server.connections_created == 1
            assert server.statistics().internal_errors == 0

    try:
        ad.run(scenario)
    finally:
        for bot in bots:
            bot.close()


def test_every_pool_is_back_to_zero_after_a_busy_session(ad: Adapter, pools: PoolSet) -> None:
    """Handshakes, data, a garbage datagram and closes of every kind on one pool set."""
    client_config, server_config = configs()

    async def scenario() -> None:
        async with ad.serving(server_config, echo_handler(ad), pools=pools) as (_, addr):
            client = ad.endpoint(pools=pools)
            closing = client.connect(addr, client_config)
            await closing.send(b"one")
            assert await ad.within(5, closing.receive()) == b"one"
            closing.close()  # at once, not awaited
            bot = udp_bot("127.0.0.1")
            bot.sendto(b"\x17\xfe\xfd" + bytes(40), addr)
            bot.close()
            second = ad.endpoint(pools=pools)
            abandoned = second.connect(addr, client_config)
            await abandoned.send(b"two")
            assert await ad.within(5, abandoned.receive()) == b"two"
            second.close()  # the endpoint at once, its channel with it
            await client.aclose()
        assert pools.in_use == 0

    ad.run(scenario)


def _live_connections() -> int:
    return sum(1 for obj in gc.get_objects() if type(obj) is Connection)


def test_served_and_closed_associations_are_freed_without_the_cycle_collector(
    ad: Adapter, pools: PoolSet
) -> None:
    """A server that runs for long makes and drops a connection per association: none may
    wait for the cycle collector to be freed (nor its handshake state or pooled owner)."""
    client_config, server_config = configs()
    ended: list[int] = []

    async def handler(channel: Any) -> None:
        async for message in channel:
            await channel.send(message)
        ended.append(1)

    async def scenario() -> None:
        async with ad.serving(server_config, handler, pools=pools) as (_, addr):
            before = _live_connections()
            for i in range(3):
                async with ad.endpoint(pools=pools) as client:
                    channel = client.connect(addr, client_config)
                    await channel.send(b"ping %d" % i)
                    assert await ad.within(5, channel.receive()) == b"ping %d" % i
                    await channel.aclose()
                del channel, client
                await ad.wait_for(lambda n=i + 1: len(ended) == n)
            # The endpoint reaps what ended; with a cycle, they would stay until a collection.
            await ad.wait_for(lambda: _live_connections() == before)

    gc.collect()
    gc.disable()
    try:
        ad.run(scenario)
    finally:
        gc.enable()


def test_asyncio_exceptions_are_the_librarys_and_asyncios() -> None:
    from dtls13.asyncio.errors import ASYNCIO_CLASSES

    for base, flavour in ASYNCIO_CLASSES.items():
        extra: dict[str, object] = {}
        if base is dtls13.CertificateVerificationFailed:
            extra = {"verification_error": "x"}
        if base is dtls13.EchRejected:
            extra = {"retry_configs": b"configs"}
        exc = flavour("why", reason="r", alert=None, by_peer=True, **extra)
        assert isinstance(exc, base) and str(exc) == "why"
        assert isinstance(exc, EOFError if base is dtls13.PeerClosed else ConnectionError)
    assert issubclass(dtls13.asyncio.NeedHandshakeError, dtls13.LocalProtocolError)
    assert issubclass(dtls13.asyncio.ClosedResourceError, dtls13.DTLSError)


def test_asyncio_endpoint_takes_a_socket_or_an_address_and_checks_them() -> None:
    import asyncio

    from dtls13.asyncio import DTLSEndpoint

    with pytest.raises(RuntimeError):
        DTLSEndpoint(("127.0.0.1", 0))  # no running loop

    async def scenario() -> None:
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        with tcp, pytest.raises(ValueError, match="SOCK_DGRAM"):
            DTLSEndpoint(tcp)
        with pytest.raises(ValueError):
            DTLSEndpoint(("127.0.0.1", 0), cookie_policy="sometimes")
        with pytest.raises(TypeError, match="incoming_packets_buffer"):
            DTLSEndpoint(("127.0.0.1", 0), incoming_packets_buffer="10")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="port must be between 0 and 65535"):
            await dtls13.asyncio.serve_dtls(echo_handler(ADAPTERS[1]), 70000, configs()[1])
        sock = udp_bot("127.0.0.1")
        async with DTLSEndpoint(sock) as endpoint:
            assert endpoint.socket is sock
            with pytest.raises(TypeError):
                endpoint.connect(("127.0.0.1", 9), configs()[1])  # type: ignore[arg-type]
            with pytest.raises(ValueError, match="IP address"):
                endpoint.connect(("localhost", 9), configs()[0])
        assert sock.fileno() == -1 or endpoint.closed
        unbound = DTLSEndpoint(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
        with unbound, pytest.raises(RuntimeError, match="bound"):
            await unbound.serve(configs()[1], echo_handler(ADAPTERS[1]))
        await asyncio.sleep(0)

    asyncio.run(scenario())


def test_asyncio_sends_through_the_transport_when_the_socket_buffer_is_full() -> None:
    """A full socket buffer (BlockingIOError) moves datagrams into the transport's own
    buffer, in order; the handshake and data still go through, and the copies are counted."""
    import asyncio

    client_config, server_config = configs()
    pools = PoolSet()
    ad = ADAPTERS[1]

    class Full:
        """The endpoint's socket as if its send buffer were full for the first sends."""

        def __init__(self, raw: socket.socket, refusals: int) -> None:
            self.raw, self.refusals = raw, refusals

        def sendto(self, data: Any, addr: Any) -> int:
            if self.refusals:
                self.refusals -= 1
                raise BlockingIOError
            return self.raw.sendto(data, addr)

        def close(self) -> None:
            self.raw.close()

    async def scenario() -> None:
        async with (
            ad.serving(server_config, echo_handler(ad), pools=pools) as (_, addr),
            ad.endpoint(pools=pools) as client,
        ):
            client._raw = Full(client._raw, refusals=1)
            channel = client.connect(addr, client_config)
            await ad.within(5, channel.do_handshake())
            for i in range(3):
                await channel.send(b"%d" % i)
                assert await ad.within(5, channel.receive()) == b"%d" % i
            stats = client.statistics()
            assert stats.datagrams_copied_out >= 1 and stats.send_errors == 0
            await channel.aclose()
        assert pools.in_use == 0

    asyncio.run(scenario())


def test_import_dtls13_asyncio_needs_no_trio() -> None:
    """The asyncio package, the package's ``__init__`` and the core modules they use never
    import trio."""
    import subprocess

    code = """
import sys
sys.modules["trio"] = None  # any import of trio fails
import dtls13.asyncio
assert "trio" not in [m for m, v in sys.modules.items() if v is not None], "trio imported"
print(sorted(m for m in sys.modules if m.startswith("dtls13.trio")))
"""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_asyncio_drops_what_it_cannot_take_and_counts_why() -> None:
    """asyncio hands over datagrams already read: one over max_datagram_size, or arriving
    when the memory budget refuses a buffer to copy it into, is dropped and counted."""
    import asyncio

    from dtls13.asyncio import DTLSEndpoint

    pools = PoolSet()

    async def scenario() -> None:
        bot = udp_bot("127.0.0.1")
        try:
            async with DTLSEndpoint(("127.0.0.1", 0), pools=pools, max_datagram_size=100) as ep:
                addr = ep.socket.getsockname()
                bot.sendto(bytes(101), addr)
                bot.sendto(bytes(100), addr)
                await ADAPTERS[1].wait_for(lambda: ep.counters["datagrams_in"] == 1)
                pools.global_limit = 0  # every buffer refused from now on
                bot.sendto(bytes(50), addr)
                await ADAPTERS[1].wait_for(lambda: ep.counters["dropped_memory_budget"] == 1)
                stats = ep.statistics()
                assert stats.dropped_oversize == 1 and stats.datagrams_copied_in == 1
                assert stats.dropped_no_connection == 1 and stats.datagrams_in == 1
                pools.global_limit = None
        finally:
            bot.close()

    asyncio.run(scenario())
    assert pools.in_use == 0


STUN = bytes.fromhex("0001 0000 2112a442") + bytes(12)
RTP = bytes([0x80, 0x60]) + bytes(30)


def test_exporters_srtp_and_media_on_the_same_port(ad: Adapter, pools: PoolSet) -> None:
    """Both sides export the same keying material and SRTP keys; STUN and RTP sharing the
    port go to the application's handler (RFC 7983), DTLS goes on beside them."""
    profiles = ["SRTP_AEAD_AES_128_GCM", "SRTP_AES128_CM_SHA1_80"]
    client_config, server_config = configs(srtp_profiles=profiles)
    server_config = dataclasses.replace(server_config, srtp_profiles=profiles[::-1])
    at_server: list[tuple[bytes, Any]] = []
    at_client: list[tuple[bytes, Any]] = []
    server_side: list[tuple[bytes, Any]] = []

    async def handler(channel: Any) -> None:
        server_side.append(
            (
                channel.export_keying_material("EXPORTER-x", b"ctx", 40),
                channel.srtp_keying_material(),
            )
        )
        await echo_handler(ad)(channel)

    async def scenario() -> None:
        async with (
            ad.serving(
                server_config,
                handler,
                pools=pools,
                on_non_dtls_datagram=lambda d, a: at_server.append((d, a)),
            ) as (server, addr),
            ad.endpoint(
                pools=pools, on_non_dtls_datagram=lambda d, a: at_client.append((d, a))
            ) as client,
        ):
            channel = client.connect(addr, client_config)
            with pytest.raises(dtls13.LocalProtocolError):
                channel.export_keying_material("EXPORTER-x", b"ctx", 40)
            await ad.within(5, channel.do_handshake())
            assert channel.srtp_profile is dtls13.SrtpProtectionProfile.SRTP_AES128_CM_SHA1_80
            assert channel.srtp_mki == b""
            await ad.wait_for(lambda: bool(server_side))
            ours = channel.export_keying_material("EXPORTER-x", b"ctx", 40)
            assert server_side == [(ours, channel.srtp_keying_material())] and len(ours) == 40
            with pytest.raises(dtls13.LocalProtocolError, match="0-RTT"):
                channel.export_early_keying_material("EXPORTER-x", None, 40)
            client_addr = client.socket.getsockname()
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as media:
                media.bind(("127.0.0.1", 0))
                media.sendto(STUN, addr)
                media.sendto(RTP, client_addr)
                await ad.wait_for(lambda: bool(at_server and at_client))
                assert at_server == [(STUN, media.getsockname())]
                assert at_client == [(RTP, media.getsockname())]
            await channel.send(b"still DTLS")
            assert await ad.within(5, channel.receive()) == b"still DTLS"
            assert client.statistics().non_dtls_datagrams == 1
            assert server.statistics().non_dtls_datagrams == 1
            await channel.aclose()

    ad.run(scenario)


def test_soft_fail_channel_reports_the_rejected_peer(ad: Adapter, pools: PoolSet) -> None:
    """verify=False with a verify_callback that rejects: the handshake completes and the
    channel tells the application the verdict."""
    client_config, server_config = configs(verify=False, verify_callback=lambda peer: False)

    async def scenario() -> None:
        async with (
            ad.serving(server_config, echo_handler(ad), pools=pools) as (_, addr),
            ad.endpoint(pools=pools) as client,
        ):
            channel = client.connect(addr, client_config)
            assert channel.peer_verification is None
            await ad.within(5, channel.do_handshake())
            verdict = channel.peer_verification
            assert verdict is not None and verdict.verified is True
            assert (
                not verdict.accepted
                and verdict.alert is dtls13.AlertDescription.certificate_unknown
            )
            assert verdict.chain == channel.peer_certificates
            await channel.aclose()

    ad.run(scenario)


class _SansIOClient:
    """A sans-IO client Connection driven over plain sockets inside an adapter's loop (a
    NAT in front of it is a change of socket)."""

    def __init__(self, ad: Adapter, config: ClientConfig, pools: PoolSet) -> None:
        self.ad = ad
        self.conn = Connection(config, pools=pools)
        self.got: list[bytes] = []

    @staticmethod
    def socket() -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        return sock

    async def pump(self, sock: socket.socket, until: Any, *, send: bool = True) -> None:
        """Read `sock`, run the timer and send what the client has (if `send`, else drop
        it) until `until()`."""
        conn = self.conn

        async def loop() -> None:
            while not until():
                now = time.monotonic()
                timer = conn.get_timer()
                if timer is not None and now >= timer:
                    conn.handle_timer(now)
                for lease, dst in conn.datagrams_to_send(now):
                    if send:
                        sock.sendto(lease.tobytes(), dst)
                    lease.release()
                with contextlib.suppress(BlockingIOError):
                    while True:
                        data, src = sock.recvfrom(65536)
                        conn.receive_datagram(data, src, time.monotonic())
                while (ev := conn.next_event()) is not None:
                    if isinstance(ev, DataReceived):
                        self.got.append(ev.data)
                await self.ad.sleep(0.002)

        await self.ad.within(10, loop())

    async def start(self, addr: Any, sock: socket.socket) -> None:
        """Handshake over `sock`, then one message echoed."""
        self.conn.connect(addr, time.monotonic())
        await self.pump(sock, lambda: self.conn.handshake_complete)
        self.conn.send(b"before")
        await self.pump(sock, lambda: b"before" in self.got)

    def close(self, sock: socket.socket) -> None:
        self.conn.close()
        for lease, dst in self.conn.datagrams_to_send(time.monotonic()):
            sock.sendto(lease.tobytes(), dst)
            lease.release()


def _cid_configs() -> tuple[ClientConfig, ServerConfig]:
    """Both sides ask for connection IDs (8 bytes), so the association survives a move."""
    client_config, server_config = configs(connection_id=8)
    return client_config, dataclasses.replace(server_config, connection_id=8)


def test_a_client_that_rebinds_is_followed_once_it_acks_a_probe(
    ad: Adapter, pools: PoolSet
) -> None:
    """Connection IDs on every adapter: a client whose NAT moves it to a new port (the old
    socket closed) gets the echo of its next message at the new port once it has ACKed
    the server's probe there (RFC 9147 §11); the server holds the echo meanwhile."""
    client_config, server_config = _cid_configs()
    client = _SansIOClient(ad, client_config, pools)
    got = client.got

    async def scenario() -> None:
        async with ad.serving(server_config, echo_handler(ad), pools=pools) as (server, addr):
            first = client.socket()
            await client.start(addr, first)
            first.close()  # the NAT's old mapping is gone
            with client.socket() as second:
                client.conn.send(b"after")
                await client.pump(second, lambda: b"after" in got)
                client.conn.send(b"again")
                await client.pump(second, lambda: b"again" in got)
                stats = server.statistics().server
                assert stats is not None and stats.address_changes == 1
                client.close(second)

    ad.run(scenario)
    assert got == [b"before", b"after", b"again"]
    pools.release_owner(client.conn.owner)


def test_a_held_echo_goes_to_the_old_port_when_the_probe_is_never_acked(
    ad: Adapter, pools: PoolSet
) -> None:
    """The server's timer for what it holds during a check (RFC 9853's T) runs on every
    adapter: the client's message comes from a new port, the client ACKs nothing, and the
    echo leaves for the old port about one initial retransmission timeout later."""
    client_config, server_config = _cid_configs()
    client = _SansIOClient(ad, client_config, pools)
    got = client.got

    async def scenario() -> None:
        async with ad.serving(server_config, echo_handler(ad), pools=pools) as (server, addr):
            with client.socket() as first, client.socket() as second:
                await client.start(addr, first)
                client.conn.send(b"after")
                for lease, dst in client.conn.datagrams_to_send(time.monotonic()):
                    second.sendto(lease.tobytes(), dst)
                    lease.release()
                sent_at = time.monotonic()
                # The old port still reads (its mapping is alive); the client stays silent.
                await client.pump(first, lambda: b"after" in got, send=False)
                held = time.monotonic() - sent_at
                assert held >= 0.5 * server_config.retransmit_initial, held
                stats = server.statistics().server
                assert stats is not None and stats.address_changes == 0
                client.close(first)

    ad.run(scenario)
    assert got == [b"before", b"after"]
    pools.release_owner(client.conn.owner)
