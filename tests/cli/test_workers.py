"""Several processes on one port (SO_REUSEPORT): ``python -m dtls13 server --workers N`` and
``serve_dtls(..., reuse_port=True)``."""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import trio

from dtls13 import ClientConfig, DTLSChannel, open_dtls_client, serve_dtls
from dtls13.memory import PoolSet
from tests.support.cli_helpers import ServerProcess, run_cli
from tests.support.dtls_pair import configs

CLIENTS = 16  # all on one worker by chance: 2 * 2**-16


def _pids(server: ServerProcess) -> list[int]:
    line = next(line for line in server.lines if "share the port through SO_REUSEPORT" in line)
    inside = line.split("(pids ", 1)[1].split(")", 1)[0]
    return [int(p) for p in inside.split(", ")]


def _gone(pid: int, within: float = 10.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not Path(f"/proc/{pid}").exists():
            return True
        time.sleep(0.05)
    return False


async def _echo_and_resume(port: int, cafile: str) -> tuple[int, int]:
    """Every client handshakes and echoes from its own source port, then resumes its
    session from another port: (echoes, resumed)."""
    echoes = resumed = 0
    base = ClientConfig(cafile=cafile, server_name="localhost", handshake_timeout=10)

    async def one(i: int) -> None:
        nonlocal echoes, resumed
        channel = await open_dtls_client("127.0.0.1", port, base)
        await channel.send(b"hello %d" % i)
        with trio.fail_after(5):
            assert await channel.receive() == b"hello %d" % i
            while channel.session is None:  # the ticket follows the handshake
                await trio.sleep(0.01)
        session = channel.session
        await channel.aclose()
        echoes += 1
        again = await open_dtls_client(
            "127.0.0.1", port, ClientConfig(cafile=cafile, server_name="localhost", session=session)
        )
        resumed += again.resumed
        await again.send(b"again")
        with trio.fail_after(5):
            assert await again.receive() == b"again"
        await again.aclose()

    async with trio.open_nursery() as nursery:
        for i in range(CLIENTS):
            nursery.start_soon(one, i)
    return echoes, resumed


def test_two_workers_serve_clients_from_many_ports_and_resume_each_others_tickets() -> None:
    server = ServerProcess("--workers", "2", "--cookie", "always")
    try:
        assert sum("listening on" in line for line in server.lines) == 1
        assert sum("SHA-256 fingerprint" in line for line in server.lines) == 1
        assert len(_pids(server)) == 2
        assert server.cert_path is not None
        echoes, resumed = trio.run(_echo_and_resume, server.port, server.cert_path)
    finally:
        status, err = server.stop()
    assert status == 0, err
    assert echoes == CLIENTS
    # A resuming client comes from a new port, so the kernel picks its worker afresh:
    # about half resume at a worker that did not issue the ticket. All must resume.
    assert resumed == CLIENTS, err
    for worker in (0, 1):
        assert f"worker {worker}: 127.0.0.1:" in err, err  # both took clients
    assert "Traceback" not in err


def test_sigterm_stops_every_worker_cleanly() -> None:
    server = ServerProcess("--workers", "2")
    pids = _pids(server)
    status, err = server.stop()  # SIGTERM to the parent only
    assert status == 0, err
    assert all(_gone(pid) for pid in pids)
    assert "Traceback" not in err
    assert server.cert_path is not None and not Path(server.cert_path).exists()


def test_sigint_stops_every_worker_cleanly() -> None:
    server = ServerProcess("--workers", "2")
    pids = _pids(server)
    server.proc.send_signal(signal.SIGINT)
    _, err = server.proc.communicate(timeout=15)
    assert server.proc.returncode == 0, err
    assert all(_gone(pid) for pid in pids)


def test_a_worker_that_dies_stops_the_rest_with_one_line() -> None:
    server = ServerProcess("--workers", "2")
    victim, other = _pids(server)
    os.kill(victim, signal.SIGKILL)
    try:
        _, err = server.proc.communicate(timeout=15)
    finally:
        server.proc.kill()
    assert server.proc.returncode == 1
    lines = err.decode().strip().splitlines()
    assert lines[-1] == (
        f"dtls13: worker 0 (pid {victim}) ended unexpectedly (killed by SIGKILL); "
        "stopped the others"
    ), lines
    assert "Traceback" not in err.decode()
    assert _gone(other)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--workers", "0"], "not a positive number"),
        (["--secret-file", "/nonexistent/secret"], "cannot read"),
    ],
)
def test_bad_worker_options_give_one_line(args: list[str], fragment: str) -> None:
    result = run_cli("server", "--port", "0", *args)
    assert result.returncode == 2
    assert fragment in result.stderr.decode()


def test_short_secret_file_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(b"x" * 31)
    result = run_cli("server", "--port", "0", "--secret-file", str(secret))
    assert result.returncode == 2 and "at least 32" in result.stderr.decode()


async def test_serve_dtls_reuse_port_lets_two_endpoints_share_a_port() -> None:
    pools = PoolSet()
    client_config, server_config = configs()
    served: list[int] = []

    def echo_as(n: int) -> Callable[[DTLSChannel], Awaitable[None]]:
        async def echo(channel: DTLSChannel) -> None:
            served.append(n)
            async for message in channel:
                await channel.send(message)

        return echo

    async with trio.open_nursery() as nursery:
        first = await nursery.start(
            lambda task_status: serve_dtls(
                echo_as(0), 0, server_config, host="127.0.0.1", pools=pools,
                reuse_port=True, task_status=task_status,
            )
        )  # fmt: skip
        port = first.socket.getsockname()[1]
        await nursery.start(
            lambda task_status: serve_dtls(
                echo_as(1), port, server_config, host="127.0.0.1", pools=pools,
                reuse_port=True, task_status=task_status,
            )
        )  # fmt: skip
        for i in range(CLIENTS):
            channel = await open_dtls_client("localhost", port, client_config, pools=pools)
            await channel.send(b"%d" % i)
            assert await channel.receive() == b"%d" % i
            await channel.aclose()
        nursery.cancel_scope.cancel()
    assert sorted(set(served)) == [0, 1]
    assert pools.in_use == 0


@pytest.mark.parametrize("reuse_port", [False, True])
def test_port_in_use_gives_one_line_even_when_its_holder_shares_it(reuse_port: bool) -> None:
    """Another server on the port, SO_REUSEPORT or not: refused, never silently joined."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        if reuse_port:
            taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        result = run_cli("server", "--port", str(port), "--workers", "2")
    assert result.returncode == 1
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and f"cannot listen on 127.0.0.1:{port}" in lines[0], lines
    assert "in use" in lines[0]


@pytest.mark.parametrize("loop", [[], ["--loop", "asyncio"]], ids=["trio", "asyncio"])
def test_sigterm_right_after_the_address_is_printed_stops_a_single_server_cleanly(
    loop: list[str],
) -> None:
    # The address line tells a supervisor the server is up: from then on SIGTERM is a clean
    # stop (exit 0), never the default action (exit -15).
    for _ in range(3):
        server = ServerProcess(*loop)
        status, err = server.stop()
        assert status == 0, err
        assert "Traceback" not in err
