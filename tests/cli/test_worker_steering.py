"""``python -m dtls13 server --workers N --connection-id 8``: a client whose NAT rebinds again
and again keeps its connection, whichever worker the kernel would hash its new address to.

Run with DTLS13_STEERING=off in the environment to see the same test fail: the server then
leaves every datagram to the kernel's address hash.
"""

from __future__ import annotations

import os
import socket
from typing import Any

import pytest
import trio

from dtls13 import ClientConfig, DTLSChannel, DTLSEndpoint, cli, cli_workers
from dtls13.cli import build_parser
from dtls13.memory import PoolSet
from tests.support.cli_helpers import ServerProcess, run_cli
from tests.support.trio_helpers import udp_socket

CLIENTS = 3
# Rebindings per client. Without steering each lands on the connection's worker with
# probability 1/N only: all 3 * 12 of them with 2**-36 at N = 2.
REBINDS = 12
STEERED = ", steered by connection ID"
ECHO_WAIT = 5.0  # an echo not back by then was lost (the machine may be busy)


class Nat:
    """A UDP relay standing for a NAT: the client talks to `inside`, the server sees the
    current `outside` socket; ``rebind()`` moves the mapping to a new outside port and the
    old one forwards nothing more."""

    def __init__(self, nursery: trio.Nursery, server: Any) -> None:
        self.nursery = nursery
        self.server = server
        self.client: Any = None
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
            await self.outside.sendto(data, self.server)

    async def _to_client(self, outside: trio.socket.SocketType) -> None:
        while True:
            data, _ = await outside.recvfrom(65536)
            if outside is self.outside:
                await self.inside.sendto(data, self.client)

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()


async def _rebinding_clients(
    port: int, cafile: str, workers: int, *, give_up_at_first_loss: bool
) -> list[int]:
    """Each client echoes, then rebinds REBINDS times, echoing after each: how many
    rebindings each survived (a lost echo ends that client)."""
    config = ClientConfig(
        cafile=cafile, server_name="localhost", connection_id=8, handshake_timeout=10
    )
    pools = PoolSet()
    survived = [0] * CLIENTS
    workers_seen: set[int] = set()

    async def one(i: int) -> None:
        nats: list[Nat] = []
        try:
            async with trio.open_nursery() as relay:
                nats.append(Nat(relay, ("127.0.0.1", port)))
                try:
                    await talk(i, nats[0])
                finally:
                    relay.cancel_scope.cancel()
        finally:
            for nat in nats:
                nat.close()

    async def talk(i: int, nat: Nat) -> None:
        inside = await nat.start()
        async with DTLSEndpoint(await udp_socket(), pools=pools) as endpoint:
            channel: DTLSChannel = endpoint.connect(inside, config)
            with trio.fail_after(15):
                await channel.send(b"first %d" % i)
                assert await channel.receive() == b"first %d" % i
            cid = channel._conn.peer_cid
            assert channel._conn.cid_negotiated and cid is not None and len(cid) == 8
            workers_seen.add(cid[0])  # the worker that holds the connection
            for n in range(REBINDS):
                await nat.rebind()
                message = b"client %d after rebinding %d" % (i, n)
                await channel.send(message)
                with trio.move_on_after(ECHO_WAIT) as lost:
                    assert await channel.receive() == message
                if lost.cancelled_caught:
                    if give_up_at_first_loss:
                        return
                    raise AssertionError(f"client {i}: echo lost after rebinding {n}")
                survived[i] += 1

    async with trio.open_nursery() as clients:
        for i in range(CLIENTS):
            clients.start_soon(one, i)
    assert pools.in_use == 0
    assert workers_seen <= set(range(workers)), workers_seen
    return survived


@pytest.mark.parametrize("workers", [2, 4])
def test_clients_keep_their_connection_across_many_nat_rebindings(workers: int) -> None:
    server = ServerProcess("--workers", str(workers), "--connection-id", "8")
    try:
        assert server.cert_path is not None
        steering_off = os.environ.get("DTLS13_STEERING", "").lower() == "off"
        assert any(line.rstrip().endswith(STEERED) for line in server.lines) != steering_off
        survived = trio.run(
            lambda: _rebinding_clients(
                server.port, server.cert_path, workers, give_up_at_first_loss=False
            )
        )
    finally:
        status, err = server.stop()
    assert status == 0, err
    assert survived == [REBINDS] * CLIENTS
    assert "Traceback" not in err


def test_without_steering_a_rebinding_client_soon_reaches_the_wrong_worker() -> None:
    """What the test above guards against: with 4 workers, a rebinding reaches the worker
    that holds the connection with probability 1/4 (all 3 * 12 of them: 4**-36)."""
    server = ServerProcess(
        "--workers", "4", "--connection-id", "8", extra_env={"DTLS13_STEERING": "off"}
    )
    try:
        assert not any(STEERED in line for line in server.lines)
        survived = trio.run(
            lambda: _rebinding_clients(server.port, server.cert_path, 4, give_up_at_first_loss=True)
        )
    finally:
        status, err = server.stop()
    assert status == 0, err
    assert "workers are chosen by address hash only" in err
    assert all(n < REBINDS for n in survived), survived


def test_connection_id_too_short_for_a_worker_byte_is_refused() -> None:
    result = run_cli("server", "--port", "0", "--workers", "2", "--connection-id", "4")
    assert result.returncode == 2
    assert "at least 5 bytes" in result.stderr.decode()


def test_a_kernel_that_refuses_the_program_leaves_hashing_with_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DTLS13_STEERING", raising=False)
    args = build_parser().parse_args(["server"])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as alone:  # in no reuseport group
        alone.bind(("127.0.0.1", 0))
        assert cli_workers._steer(alone, cli._Log(args)) is False
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("cannot steer by connection ID ("), lines
