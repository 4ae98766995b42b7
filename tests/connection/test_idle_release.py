"""Idle release: an established connection with no record either way for
`idle_release_after` seconds lets its ciphers' OpenSSL objects go, keeping only the key
bytes, and builds them again for the next record to protect or open.
"""

from __future__ import annotations

from typing import Any

import pytest

from dtls13.config import ClientConfig
from dtls13.connection import Connection
from dtls13.crypto.suites import CipherSuite
from dtls13.endpoint import ServerEndpoint
from dtls13.events import KeyUpdated
from dtls13.memory import PoolSet
from tests.support.dtls_pair import CLIENT_ADDR, SERVER_ADDR, Pair, configs, make_pair
from tests.support.netsim import SimNetwork

IDLE = 5.0  # idle_release_after in these tests


def _pair(suite: CipherSuite = CipherSuite.TLS_AES_128_GCM_SHA256, **kw: Any) -> Pair:
    opts: dict[str, Any] = {"cipher_suites": [suite], "idle_release_after": IDLE, **kw}
    return make_pair(client=opts, server=opts, cache=True)


def _idle(pair: Pair, seconds: float = 3 * IDLE) -> None:
    """Let simulated time pass with no application record either way."""
    pair.net.run(lambda: False, max_time=pair.net.now + seconds)
    pair.drain()


def _built(pair: Pair) -> tuple[int, int]:
    return pair.client._records.ciphers_built, pair.server._records.ciphers_built


def _objects_gone(pair: Pair) -> None:
    for conn in (pair.client, pair.server):
        records = conn._records
        assert records.ciphers_built == 0
        for state in (*records._write_states(), *records._read_states()):
            assert state.cipher is None or not state.cipher.built
        # Released, nothing left to time: no work per tick until the next record.
        assert conn.get_timer() is None
        assert conn.stats["idle_releases"] >= 1


@pytest.mark.parametrize("suite", list(CipherSuite), ids=lambda s: s.name)
def test_idle_connection_lets_ciphers_go_and_works_after(suite: CipherSuite) -> None:
    pair = _pair(suite)
    assert pair.handshake()
    assert pair.exchange(b"before", b"BEFORE")
    _idle(pair)
    _objects_gone(pair)
    seq_c = pair.client._records.next_sequence_number(pair.client._records.write_epoch)
    seq_s = pair.server._records.next_sequence_number(pair.server._records.write_epoch)
    # Both directions, the server first this time (its write cipher is built first).
    pair.server.send(b"server after idle")
    pair.net.run(lambda: b"server after idle" in pair.received("client"), max_time=pair.net.now + 5)
    assert b"server after idle" in pair.received("client")
    assert pair.exchange(b"after", b"AFTER")
    # Sequence numbers carried on from where they were.
    assert pair.client._records.next_sequence_number(pair.client._records.write_epoch) > seq_c
    assert pair.server._records.next_sequence_number(pair.server._records.write_epoch) > seq_s
    assert _built(pair) != (0, 0)
    # After a KeyUpdate too: the new epochs' ciphers go and come back the same way.
    pair.client.key_update(request_peer=True)
    pair.net.run(
        lambda: sum(isinstance(e, KeyUpdated) for e in pair.server_events) >= 1,
        max_time=pair.net.now + 10,
    )
    assert pair.exchange(b"rekeyed", b"REKEYED")
    epochs = (pair.client._records.write_epoch, pair.server._records.write_epoch)
    assert min(epochs) >= 4
    _idle(pair)
    _objects_gone(pair)
    assert pair.exchange(b"rekeyed after idle", b"REKEYED AFTER IDLE")
    assert not pair.client.closed and not pair.server.closed
    pair.close()


def test_replay_window_survives_release() -> None:
    pair = _pair()
    assert pair.handshake()
    captured: list[bytes] = []

    def tap(src: Any, dst: Any, data: bytes) -> bytes:
        if src == CLIENT_ADDR:
            captured.append(data)
        return data

    pair.net.tamper = tap
    assert pair.exchange(b"once", b"ONCE")
    pair.net.tamper = None
    _idle(pair)
    _objects_gone(pair)
    replays = pair.server._records.drops["replay"]
    for data in captured:
        pair.net.inject(CLIENT_ADDR, SERVER_ADDR, data)
    pair.net.run(lambda: False, max_time=pair.net.now + 1)
    # Deprotected with the rebuilt keys, then refused by the window kept across the release.
    assert pair.server._records.drops["replay"] > replays
    assert pair.server._records.drops["auth_failed"] == 0
    assert pair.received("server").count(b"once") == 1
    assert pair.exchange(b"fresh", b"FRESH")
    pair.close()


def test_active_connection_keeps_its_ciphers() -> None:
    pair = _pair()
    assert pair.handshake()
    _idle(pair, 0.5)  # past the client's ACK of the ticket (sent after rto/4)
    built = _built(pair)
    assert built[0] and built[1]
    builds = [s.cipher.builds for s in pair.server._records._read_states()]
    # A record every IDLE/2 seconds, one direction at a time, for many periods.
    for i in range(16):
        sender = pair.client if i % 2 else pair.server
        sender.send(b"tick %d" % i)
        pair.net.run(lambda: False, max_time=pair.net.now + IDLE / 2)
    pair.drain()
    assert pair.client.stats["idle_releases"] == 0 and pair.server.stats["idle_releases"] == 0
    assert _built(pair) == built
    assert [s.cipher.builds for s in pair.server._records._read_states()] == builds
    # The look-again timer is armed at most once per period, not per record.
    assert pair.server.get_timer() is not None
    pair.close()


def test_idle_release_can_be_turned_off() -> None:
    pair = _pair(idle_release_after=None)
    assert pair.handshake()
    assert pair.exchange(b"a", b"b")
    _idle(pair, 20 * IDLE)
    assert pair.client.stats["idle_releases"] == 0 and pair.server.stats["idle_releases"] == 0
    assert all(_built(pair))
    assert pair.exchange(b"c", b"d")
    pair.close()


def test_idle_release_config_is_checked() -> None:
    with pytest.raises(ValueError):
        ClientConfig(verify=False, idle_release_after=0)
    assert ClientConfig(verify=False).idle_release_after == 10.0


class _IdleWorld:
    """A ServerEndpoint and sans-IO clients, both sides releasing idle ciphers after IDLE."""

    def __init__(self) -> None:
        opts = {"idle_release_after": IDLE}
        self.client_config, server_config = configs(client=opts, server=opts)
        self.pools = PoolSet()
        self.net = SimNetwork(0)
        self.server = ServerEndpoint(server_config, pools=self.pools)
        self.net.add(SERVER_ADDR, self.server)
        self.clients: list[Connection] = []

    def connect(self, addr: tuple[str, int]) -> Connection:
        c = Connection(self.client_config, pools=self.pools)
        self.net.add(addr, c)
        c.connect(SERVER_ADDR, self.net.now)
        self.clients.append(c)
        return c

    def handshakes_done(self) -> bool:
        return all(c.handshake_complete for c in self.clients)

    def released(self) -> int:
        """Connections of the server that let their ciphers go."""
        return sum(c.stats["idle_releases"] for c in self.server.connections.values())

    def shut_down(self) -> None:
        for c in self.clients:
            c.close()
        self.server.close()
        self.net.run(lambda: False, max_time=self.net.now + 2)
        self.server.release()
        for c in self.clients:
            self.pools.release_owner(c.owner)


def test_endpoint_drops_idle_connections_from_its_timer_heap() -> None:
    world = _IdleWorld()
    net, server, clients = world.net, world.server, world.clients
    for i in range(3):
        world.connect((f"10.0.1.{i + 1}", 5000))
    net.run(world.handshakes_done, max_time=30)
    assert len(server.connections) == 3
    net.run(lambda: False, max_time=net.now + 3 * IDLE)
    for conn in server.connections.values():
        assert conn._records.ciphers_built == 0
    assert server.get_timer() is None or server.get_timer() > net.now + 100
    assert not server.debug_state().armed
    for c in clients:
        assert c._records.ciphers_built == 0
        c.send(b"hello again")
    net.run(
        lambda: all(conn.stats["app_bytes_in"] for conn in server.connections.values()),
        max_time=net.now + 5,
    )
    assert all(conn.stats["app_bytes_in"] for conn in server.connections.values())
    world.shut_down()


async def test_trio_endpoint_releases_idle_ciphers_and_echoes_after() -> None:
    """Over real sockets: the trio adapter's timer drives the release on both sides."""
    import dataclasses

    import trio

    from dtls13 import DTLSChannel, DTLSEndpoint
    from tests.support.trio_helpers import GENEROUS, echo, udp_socket, wait_for
    from tests.support.trio_helpers import configs as trio_configs

    pools = PoolSet()
    client_config, server_config = trio_configs(idle_release_after=0.2)
    server_config = dataclasses.replace(server_config, idle_release_after=0.2)
    accepted: list[DTLSChannel] = []

    async def handler(channel: DTLSChannel) -> None:
        accepted.append(channel)
        await echo(channel)

    async with trio.open_nursery() as nursery:
        server = DTLSEndpoint(await udp_socket(), pools=pools, dos=GENEROUS)
        await nursery.start(server.serve, server_config, handler)
        client = DTLSEndpoint(await udp_socket(), pools=pools)
        channel = client.connect(server.socket.getsockname(), client_config)
        with trio.fail_after(10):
            await channel.send(b"before")
            assert await channel.receive() == b"before"
            await wait_for(lambda: bool(accepted))
            served = accepted[0]
            for conn in (served.debug_state().connection, channel.debug_state().connection):
                await wait_for(lambda c=conn: c._records.ciphers_built == 0)
            for i in range(3):
                await channel.send(b"after %d" % i)
                assert await channel.receive() == b"after %d" % i
            assert served.statistics().connection.idle_releases >= 1
            assert channel.statistics().connection.idle_releases >= 1
        await channel.aclose()
        client.close()
        server.close()
        nursery.cancel_scope.cancel()


def test_endpoint_trims_the_heap_after_a_batch_of_releases(monkeypatch: Any) -> None:
    from dtls13 import endpoint as endpoint_module

    trims: list[float] = []
    monkeypatch.setattr(endpoint_module, "trim_heap", lambda: trims.append(1.0) or True)
    monkeypatch.setattr(endpoint_module, "TRIM_BATCH", 2)
    world = _IdleWorld()
    net, server = world.net, world.server
    for i in range(3):
        world.connect((f"10.0.2.{i + 1}", 5000))
    net.run(world.handshakes_done, max_time=30)
    net.run(lambda: False, max_time=net.now + 3 * IDLE)
    assert world.released() == 3
    # Released in one or more timer rounds: one trim once two had gone, not one each.
    assert len(trims) == server.counters["heap_trims"] == 1
    server.trim_heap = False
    world.shut_down()


def test_a_batch_released_within_the_trim_interval_is_trimmed_once_it_ends(
    monkeypatch: Any,
) -> None:
    """Connections that go idle together release their ciphers within one trim interval:
    the releases after the first trim must not wait for more releases, which may never
    come, to be trimmed."""
    from dtls13 import endpoint as endpoint_module

    trims: list[tuple[float, int]] = []  # (when, releases by then)
    world = _IdleWorld()
    net = world.net
    monkeypatch.setattr(
        endpoint_module, "trim_heap", lambda: trims.append((net.now, world.released())) or True
    )
    monkeypatch.setattr(endpoint_module, "TRIM_BATCH", 2)
    for i in range(6):  # in pairs 0.3 s apart: they go idle in three rounds
        world.connect((f"10.0.3.{i + 1}", 5000))
        if i % 2:
            assert net.run(world.handshakes_done)
            net.now += 0.3  # nothing is due sooner: the first idle look is IDLE away
    net.run(lambda: False, max_time=net.now + 3 * IDLE)
    assert world.released() == 6
    # The first trim came with the first pair; the two pairs released within the interval
    # that followed were trimmed once it ended.
    assert len(trims) == 2 and trims[-1][1] == 6, trims
    assert trims[1][0] - trims[0][0] >= endpoint_module.TRIM_INTERVAL
    world.server.trim_heap = False
    world.shut_down()


def test_trim_heap_runs_here() -> None:
    from dtls13.memory.trim import trim_heap

    assert trim_heap() in (True, False)
