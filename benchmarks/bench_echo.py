"""Echo throughput: dtls13 against raw trio UDP and trio.DTLSEndpoint, in one run.

The server runs in a separate process; this process is the client. Ping-pong sends one
message and waits for its echo; windowed keeps 32 messages in flight. Each figure is the
median of several runs (min and max shown), and each ratio compares with raw trio UDP
measured in the same run (modes interleaved run by run). trio.DTLSEndpoint (DTLS 1.2 over
pyOpenSSL) is included when pyOpenSSL is installed (`pip install -e ".[bench]"`). Both DTLS
libraries get the same receive queue (`QUEUE`) so a window of 32 is not dropped.

    python benchmarks/bench_echo.py [--runs 3] [--seconds 2] [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import trio

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import Row, add_json_argument, make_row, markdown_table, write_json

from dtls13 import ClientConfig, DTLSEndpoint, ServerConfig
from dtls13.certgen import make_self_signed
from dtls13.endpoint import DoSProtectionConfig

MODES = ("raw", "dtls13", "trio-dtls")
WINDOW = 32
# Receive queues of both DTLS libraries hold a whole window (their default, 10, would drop).
QUEUE = 2 * WINDOW
BENCH_DOS = DoSProtectionConfig(
    datagrams_per_second=1e9, datagram_burst=1e9, bytes_per_second=1e12, byte_burst=1e12
)


def _certs() -> tuple[Any, Any]:
    return make_self_signed(["localhost"])


# -- servers (run with --serve MODE) ------------------------------------------------------


async def _serve(mode: str, port: int) -> None:
    sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
    await sock.bind(("127.0.0.1", port))
    print("ready", flush=True)
    if mode == "raw":
        while True:
            data, addr = await sock.recvfrom(65536)
            await sock.sendto(data, addr)
    cert, key = _certs()
    if mode == "dtls13":
        config = ServerConfig(
            certificate_chain=[cert], private_key=key, session_tickets=0, mtu=1400
        )

        async def echo(channel: Any) -> None:
            async for message in channel:
                await channel.send(message)

        async with DTLSEndpoint(
            sock, dos=BENCH_DOS, cookie_policy="never", incoming_packets_buffer=QUEUE
        ) as endpoint:
            await endpoint.serve(config, echo)
    else:
        from OpenSSL import SSL, crypto

        ctx = SSL.Context(SSL.DTLS_METHOD)
        ctx.use_certificate(crypto.X509.from_cryptography(cert))
        ctx.use_privatekey(crypto.PKey.from_cryptography_key(key))

        async def echo12(channel: Any) -> None:
            async for message in channel:
                await channel.send(message)

        with trio.DTLSEndpoint(sock, incoming_packets_buffer=QUEUE) as endpoint:
            await endpoint.serve(ctx, echo12)


# -- clients ------------------------------------------------------------------------------


async def _open(mode: str, port: int) -> tuple[Callable[[bytes], Awaitable[None]], Any, Any]:
    """(send, receive, close) for one client of `mode`."""
    sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
    await sock.bind(("127.0.0.1", 0))
    addr = ("127.0.0.1", port)
    if mode == "raw":

        async def send(data: bytes) -> None:
            await sock.sendto(data, addr)

        async def receive() -> bytes:
            return (await sock.recvfrom(65536))[0]

        async def close() -> None:
            sock.close()

        return send, receive, close
    if mode == "dtls13":
        endpoint = DTLSEndpoint(sock, incoming_packets_buffer=QUEUE)
        channel = endpoint.connect(addr, ClientConfig(verify=False, mtu=1400))
    else:
        from OpenSSL import SSL

        endpoint = trio.DTLSEndpoint(sock, incoming_packets_buffer=QUEUE)
        channel = endpoint.connect(addr, SSL.Context(SSL.DTLS_METHOD))
    await channel.do_handshake()

    async def close_channel() -> None:
        endpoint.close()

    return channel.send, channel.receive, close_channel


async def _ping_pong(mode: str, port: int, size: int, seconds: float) -> float:
    send, receive, close = await _open(mode, port)
    payload = b"x" * size
    count = 0
    end = trio.current_time() + seconds
    while trio.current_time() < end:
        await send(payload)
        with trio.move_on_after(1):
            await receive()
            count += 1
    await close()
    return count / seconds


async def _windowed(mode: str, port: int, size: int, seconds: float) -> float:
    """Keep WINDOW messages in flight; the sender sleeps (no busy loop) while the window
    is full. A window stalled for 0.5 s counts what is outstanding as lost and goes on."""
    send, receive, close = await _open(mode, port)
    payload = b"x" * size
    received = 0
    room = trio.lowlevel.ParkingLot()

    async def receiver() -> None:
        nonlocal received
        while True:
            await receive()
            received += 1
            if room:
                room.unpark_all()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(receiver)
        sent = lost = 0
        end = trio.current_time() + seconds
        while trio.current_time() < end:
            if sent - received - lost < WINDOW:
                await send(payload)
                sent += 1
                continue
            with trio.move_on_after(0.5) as stalled:
                await room.park()
            if stalled.cancelled_caught:
                lost = sent - received
        nursery.cancel_scope.cancel()
    await close()
    return received / seconds


def _process_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far (Linux /proc), or NaN."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return math.nan
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _with_server(mode: str, work: Callable[[int], Awaitable[float]]) -> tuple[float, float]:
    """(msgs/s, server CPU seconds during the run) with a fresh server process."""
    port = 20000 + (time.monotonic_ns() // 1000) % 20000
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", mode, "--port", str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError(f"{mode} server did not start")
        before = _process_cpu(proc.pid)
        rate = trio.run(work, port)
        return rate, _process_cpu(proc.pid) - before
    finally:
        proc.kill()
        proc.wait()


# case -> (message size, windowed?, the target for dtls13 against raw UDP)
CASES: dict[str, tuple[int, bool, float | None]] = {
    "ping-pong 64 B": (64, False, 0.75),
    "ping-pong 1200 B": (1200, False, None),
    "windowed 1200 B": (1200, True, 0.75),
}


def _job(
    work: Callable[[str, int, int, float], Awaitable[float]], mode: str, size: int, seconds: float
) -> Callable[[int], Awaitable[float]]:
    async def job(port: int) -> float:
        return await work(mode, port, size, seconds)

    return job


def measure(
    modes: list[str], cases: list[str], runs: int, seconds: float
) -> tuple[list[Row], dict[str, dict[str, list[float]]]]:
    """Rows (msgs/s, ratio against raw UDP) and the raw figures per case and mode."""
    rows: list[Row] = []
    figures: dict[str, dict[str, list[float]]] = {}
    for case in cases:
        size, windowed, target = CASES[case]
        work = _windowed if windowed else _ping_pong
        figs: dict[str, list[float]] = {m: [] for m in modes}
        cpu: dict[str, list[float]] = {m: [] for m in modes}
        for _ in range(runs):
            for mode in modes:  # interleaved so drift hits every mode alike
                rate, server_cpu = _with_server(mode, _job(work, mode, size, seconds))
                figs[mode].append(rate)
                if rate > 0 and not math.isnan(server_cpu):
                    cpu[mode].append(server_cpu / (rate * seconds) * 1e6)
        figures[case] = figs
        for mode in modes:
            has_target = mode == "dtls13" and target is not None
            row = make_row(
                "echo",
                f"{case}, {mode}",
                "msgs/s",
                figs[mode],
                baseline_values=figs["raw"] if mode != "raw" else None,
                baseline="raw trio UDP" if mode != "raw" else None,
                target=f">= {target:.2f}x" if has_target else None,
            )
            if has_target and row.ratio is not None and target is not None:
                row = dataclasses.replace(row, met=row.ratio >= target)
            rows.append(row)
        # Server CPU per message (the handshake included, a few ms): steadier than msgs/s
        # on a shared machine, and what a busy server pays.
        for mode in modes:
            if len(cpu[mode]) == runs and len(cpu["raw"]) == runs:
                rows.append(
                    make_row(
                        "echo",
                        f"{case}, {mode}, server CPU",
                        "µs/msg",
                        cpu[mode],
                        baseline_values=cpu["raw"] if mode != "raw" else None,
                        baseline="raw trio UDP" if mode != "raw" else None,
                    )
                )
    return rows, figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--quick", action="store_true", help="one short run of each")
    parser.add_argument(
        "--case", action="append", choices=list(CASES), help="only these cases (repeatable)"
    )
    parser.add_argument("--serve", choices=MODES)
    parser.add_argument("--port", type=int, default=0)
    add_json_argument(parser)
    args = parser.parse_args()
    if args.serve:
        trio.run(_serve, args.serve, args.port)
        return
    if args.quick:
        args.runs, args.seconds = 1, 0.3
    modes = list(MODES)
    try:
        import OpenSSL  # noqa: F401
    except ImportError:
        modes.remove("trio-dtls")
        print("(pyOpenSSL missing: trio.DTLSEndpoint not measured)")
    rows, _ = measure(modes, args.case or list(CASES), args.runs, args.seconds)
    print(markdown_table(rows))
    write_json(args.json, rows)


if __name__ == "__main__":
    main()
