"""Connection IDs through the trio adapter: a client behind a NAT that rebinds (RFC 9147 §9)."""

from __future__ import annotations

import dataclasses
from typing import Any

import trio

from dtls13 import DTLSChannel, DTLSEndpoint
from dtls13.memory import PoolSet
from tests.support.trio_helpers import GENEROUS, configs, echo, udp_socket, wait_for


class Nat:
    """A UDP relay standing for a NAT: the client talks to `inside`, the server sees the
    current `outside` socket. ``rebind()`` moves the mapping to a new outside port, and the
    old one stops forwarding, as an expired mapping would."""

    def __init__(self, nursery: trio.Nursery, server: Any) -> None:
        self.nursery = nursery
        self.server = server
        self.client: Any = None
        self.sent: list[bytes] = []  # what the client sent, as the server received it
        self.dropped_on_old_mapping = 0
        self.sockets: list[trio.socket.SocketType] = []

    async def start(self) -> Any:
        self.inside = await udp_socket()
        self.sockets.append(self.inside)
        await self.rebind()
        self.nursery.start_soon(self._to_server)
        return self.inside.getsockname()

    async def rebind(self) -> None:
        self.outside = await udp_socket()
        self.sockets.append(self.outside)
        self.nursery.start_soon(self._to_client, self.outside)

    async def _to_server(self) -> None:
        while True:
            data, self.client = await self.inside.recvfrom(65536)
            self.sent.append(data)
            await self.outside.sendto(data, self.server)

    async def _to_client(self, outside: trio.socket.SocketType) -> None:
        while True:
            data, _ = await outside.recvfrom(65536)
            if outside is not self.outside:
                self.dropped_on_old_mapping += 1
                continue
            await self.inside.sendto(data, self.client)

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()


async def test_cid_connection_follows_a_nat_rebinding_and_ignores_forgeries() -> None:
    pools = PoolSet()
    client_config, server_config = configs(connection_id=8)
    server_config = dataclasses.replace(server_config, connection_id=8)
    accepted: list[DTLSChannel] = []

    async def handler(channel: DTLSChannel) -> None:
        accepted.append(channel)
        await echo(channel)

    async with trio.open_nursery() as nursery:
        server = DTLSEndpoint(await udp_socket(), pools=pools, dos=GENEROUS)
        await nursery.start(server.serve, server_config, handler)
        nat = Nat(nursery, server.socket.getsockname())
        nat_inside = await nat.start()
        client = DTLSEndpoint(await udp_socket(), pools=pools)
        channel = client.connect(nat_inside, client_config)
        with trio.fail_after(10):
            await channel.send(b"before")
            assert await channel.receive() == b"before"
            await wait_for(lambda: bool(accepted))
        (served,) = accepted
        # Quiet: no ACK or retransmission pending that could cross the rebinding (the
        # idle-release timer may be armed: it sends nothing).
        for conn in (served.debug_state().connection, channel.debug_state().connection):
            await wait_for(lambda c=conn: c._retransmit_at is None and c._ack_at is None)
        assert (
            served.debug_state().connection.cid_negotiated
            and channel.debug_state().connection.cid_negotiated
        )
        first = nat.outside.getsockname()
        assert served.peer_address == first
        stats = server.statistics().server
        assert stats is not None and stats.address_changes == 0

        # A forged datagram with the connection's CID from a third address: routed to the
        # connection by CID, fails authentication, moves nothing.
        recorded = nat.sent[-1]
        forged = bytearray(recorded)
        forged[-1] ^= 0x01
        seen = served.statistics().connection.datagrams_in
        attacker = await udp_socket()
        await attacker.sendto(bytes(forged), server.socket.getsockname())
        # The NAT rebinds: the client's records now arrive from a new port. A forgery from
        # that very port does not move the connection either: only an authenticated record.
        await nat.rebind()
        second = nat.outside.getsockname()
        assert second != first
        await nat.outside.sendto(bytes(forged), server.socket.getsockname())
        await wait_for(
            lambda: served.statistics().connection.datagrams_in >= seen + 2
        )  # routed by CID
        assert served.peer_address == first

        with trio.fail_after(10):
            await channel.send(b"after")
            # The echo comes back only if the server now sends to the new mapping.
            assert await channel.receive() == b"after"
        assert served.peer_address == second
        assert served.statistics().connection.address_changes == 1

        # A replayed authentic record and a forged one from a third address: both carry the
        # CID; neither moves the connection (the replay is not newer than what was seen).
        seen = served.statistics().connection.datagrams_in
        await attacker.sendto(nat.sent[-1], server.socket.getsockname())
        await attacker.sendto(bytes(forged), server.socket.getsockname())
        await wait_for(lambda: served.statistics().connection.datagrams_in >= seen + 2)
        assert served.peer_address == second
        with trio.fail_after(10):
            await channel.send(b"still")
            assert await channel.receive() == b"still"
        assert served.peer_address == second
        assert served.statistics().connection.address_changes == 1
        stats = server.statistics().server
        assert stats is not None and stats.address_changes == 1
        assert nat.dropped_on_old_mapping == 1  # the probe's copy to the old mapping

        await channel.aclose()
        await client.aclose()
        await server.aclose()
        nursery.cancel_scope.cancel()
    attacker.close()
    nat.close()
    assert client.counters["internal_errors"] == server.counters["internal_errors"] == 0
    assert pools.in_use == 0
