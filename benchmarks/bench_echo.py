"""Echo throughput: dtls13 against raw trio UDP and trio.DTLSEndpoint, in one run.

The server runs in a separate process; this process is the client. Ping-pong sends one
message and waits for its echo; windowed keeps 32 messages in flight. Each figure is the
median of several runs (min and max shown), and each ratio compares with raw trio UDP
measured in the same run. trio.DTLSEndpoint (DTLS 1.2 over pyOpenSSL) is included when
pyOpenSSL is installed (`pip install -e ".[bench]"`).

    python benchmarks/bench_echo.py [--runs 3] [--seconds 2]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import trio

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
    send, receive, close = await _open(mode, port)
    payload = b"x" * size
    received = 0
    done = False

    async def receiver() -> None:
        nonlocal received
        while not done:
            with trio.move_on_after(0.5):
                await receive()
                received += 1

    async with trio.open_nursery() as nursery:
        nursery.start_soon(receiver)
        sent = 0
        end = trio.current_time() + seconds
        while trio.current_time() < end:
            if sent - received < WINDOW:
                await send(payload)
                sent += 1
            else:
                await trio.sleep(0)
        done = True
    await close()
    return received / seconds


def _with_server(mode: str, work: Callable[[int], Awaitable[float]]) -> float:
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
        return trio.run(work, port)
    finally:
        proc.kill()
        proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--serve", choices=MODES)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    if args.serve:
        trio.run(_serve, args.serve, args.port)
        return
    modes = list(MODES)
    try:
        import OpenSSL  # noqa: F401
    except ImportError:
        modes.remove("trio-dtls")
        print("(pyOpenSSL missing: trio.DTLSEndpoint not measured)")
    cases = {
        "ping-pong 64 B": lambda m: lambda p: _ping_pong(m, p, 64, args.seconds),
        "ping-pong 1200 B": lambda m: lambda p: _ping_pong(m, p, 1200, args.seconds),
        "windowed 1200 B": lambda m: lambda p: _windowed(m, p, 1200, args.seconds),
    }
    print("| case | mode | msgs/s median | min | max | x raw UDP |")
    print("|---|---|---|---|---|---|")
    for case, make in cases.items():
        medians: dict[str, float] = {}
        figures: dict[str, list[float]] = {m: [] for m in modes}
        for _ in range(args.runs):
            for mode in modes:  # interleaved so drift hits every mode alike
                figures[mode].append(_with_server(mode, make(mode)))
        for mode in modes:
            medians[mode] = statistics.median(figures[mode])
            ratio = medians[mode] / medians["raw"] if medians["raw"] else 0.0
            print(
                f"| {case} | {mode} | {medians[mode]:.0f} | {min(figures[mode]):.0f} | "
                f"{max(figures[mode]):.0f} | {ratio:.2f}x |"
            )


if __name__ == "__main__":
    main()
