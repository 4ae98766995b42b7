"""Echo throughput: dtls13 against raw trio UDP and trio.DTLSEndpoint, in one run.

The server runs in a separate process; this process is the client. Ping-pong sends one
message and waits for its echo; windowed keeps 32 messages in flight; "fan-in" runs 1,000
connections that each send 10 messages/s and reports the spread of their round trips. Each
figure is the median of several runs (min and max shown), and each ratio compares with raw
trio UDP (and, where named, trio.DTLSEndpoint) measured in the same run (modes interleaved
run by run). trio.DTLSEndpoint (DTLS 1.2 over pyOpenSSL) is included when pyOpenSSL is
installed (`pip install -e ".[bench]"`). Ping-pong also runs "raw-relay": raw UDP where, as in
dtls13 and trio.DTLSEndpoint, a receive task reads the socket and hands each datagram to the
task that waits for it (one more scheduler pass per message on each side): the floor of that
design, to which dtls13 is compared too. Both DTLS libraries get the same receive queue
(`QUEUE`) so a window of 32 is not dropped. `--plain-io` runs dtls13 on its plain
recvfrom_into/sendto path (no recvmmsg/sendmmsg), client and server.

    python benchmarks/bench_echo.py [--runs 3] [--seconds 2] [--quick] [--case NAME]
        [--plain-io] [--json PATH]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import os
import random
import statistics
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

MODES = ("raw", "raw-relay", "dtls13", "trio-dtls")
RELAY = "raw-relay"  # ping-pong only: raw UDP through a receive task
WINDOW = 32
# Receive queues of both DTLS libraries hold a whole window (their default, 10, would drop).
QUEUE = 2 * WINDOW
BENCH_DOS = DoSProtectionConfig(
    datagrams_per_second=1e9,
    datagram_burst=1e9,
    bytes_per_second=1e12,
    byte_burst=1e12,
    max_connections_per_ip=100_000,  # the fan-in's clients all come from 127.0.0.1
    max_half_open_per_ip=100_000,
)


def _plain_io() -> None:
    """dtls13 without recvmmsg/sendmmsg in this process (--plain-io, inherited by servers)."""
    if os.environ.get("DTLS13_BENCH_PLAIN_IO"):
        from dtls13.trio import _socketio

        _socketio.BATCH_IO = False


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
    if mode == RELAY:
        relay = await _relay(sock)
        async for data, addr in relay:
            await sock.sendto(data, addr)
    cert, key = _certs()
    if mode == "dtls13":
        config = ServerConfig(
            certificate_chain=[cert], private_key=key, session_tickets=0, mtu=1400
        )

        async def echo(channel: Any) -> None:
            # A burst per scheduler pass (docs/trio.md, "Bursts"): one checkpoint for all
            # the messages a receive batch brought, and their echoes leave together.
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
            except trio.EndOfChannel:
                pass

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


async def _relay(sock: trio.socket.SocketType) -> trio.MemoryReceiveChannel[tuple[bytes, Any]]:
    """What a receive task hands over: (datagram, address) pairs it read from `sock` (it
    ends when the socket is closed)."""
    send, receive = trio.open_memory_channel[tuple[bytes, Any]](QUEUE)

    async def reader() -> None:
        with send:
            while True:
                try:
                    item = await sock.recvfrom(65536)
                except (trio.ClosedResourceError, OSError):
                    return
                with contextlib.suppress(trio.WouldBlock):  # full: dropped, as the DTLS
                    send.send_nowait(item)  # endpoints do

    trio.lowlevel.spawn_system_task(reader)
    return receive


async def _open(mode: str, port: int) -> tuple[Callable[[bytes], Awaitable[None]], Any, Any]:
    """(send, receive, close) for one client of `mode`, its handshake done."""
    send, receive, close, _ = await _open_nowait(mode, port)
    return send, receive, close


async def _open_nowait(
    mode: str, port: int
) -> tuple[Callable[[bytes], Awaitable[None]], Any, Any, Any]:
    """(send, receive, close, channel or None): the channel when it has the burst calls
    (send_nowait/receive_nowait: dtls13)."""
    sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
    await sock.bind(("127.0.0.1", 0))
    addr = ("127.0.0.1", port)

    async def close() -> None:
        sock.close()

    if mode == "raw":

        async def send(data: bytes) -> None:
            await sock.sendto(data, addr)

        async def receive() -> bytes:
            return (await sock.recvfrom(65536))[0]

        return send, receive, close, None
    if mode == RELAY:
        relay = await _relay(sock)

        async def send_relay(data: bytes) -> None:
            await sock.sendto(data, addr)

        async def receive_relay() -> bytes:
            return (await relay.receive())[0]

        return send_relay, receive_relay, close, None
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

    bursts = channel if mode == "dtls13" else None
    return channel.send, channel.receive, close_channel, bursts


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
    send, receive, close, bursts = await _open_nowait(mode, port)
    payload = b"x" * size
    received = 0
    room = trio.lowlevel.ParkingLot()

    async def receiver() -> None:
        nonlocal received
        while True:
            await receive()
            received += 1
            if bursts is not None:  # the rest of a burst without more checkpoints
                while True:
                    try:
                        bursts.receive_nowait()
                    except trio.WouldBlock:
                        break
                    received += 1
            if room:
                room.unpark_all()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(receiver)
        sent = lost = 0
        end = trio.current_time() + seconds
        while trio.current_time() < end:
            if sent - received - lost < WINDOW:
                if bursts is not None:  # fill the window in one scheduler pass
                    try:
                        bursts.send_nowait(payload)
                    except trio.WouldBlock:
                        await send(payload)
                else:
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


FAN_IN_CONNECTIONS = 1000
FAN_IN_RATE = 10.0  # messages per second per connection
FAN_IN_SIZE = 64


async def _fan_in(mode: str, port: int, seconds: float) -> dict[str, float]:
    """FAN_IN_CONNECTIONS clients, each sending FAN_IN_RATE messages/s (at random phases)
    and timing its echo: delivered msgs/s, round-trip percentiles over all messages, and
    the spread between connections (slowest connection's median / median of medians),
    server CPU per message once the handshakes are done."""
    clients: list[Any] = []
    limit = trio.CapacityLimiter(16)
    failed = 0

    async def opener() -> None:
        nonlocal failed
        async with limit:
            # trio.DTLSEndpoint's handshake never gives up: one stuck must not hang the run.
            with trio.move_on_after(30):
                clients.append(await _open(mode, port))
                return
            failed += 1

    async with trio.open_nursery() as nursery:
        for _ in range(FAN_IN_CONNECTIONS):
            nursery.start_soon(opener)
    payload = b"x" * FAN_IN_SIZE
    cpu_before = _process_cpu(_server_pid)
    rtts: list[list[float]] = [[] for _ in clients]
    lost = 0
    start = trio.current_time() + 0.2
    end = start + seconds

    async def client(i: int) -> None:
        nonlocal lost
        send, receive, _ = clients[i]
        due = start + random.random() / FAN_IN_RATE
        while True:
            await trio.sleep_until(due)
            if trio.current_time() >= end:
                return
            t0 = trio.current_time()
            await send(payload)
            with trio.move_on_after(1) as timeout:
                await receive()
                rtts[i].append(trio.current_time() - t0)
            if timeout.cancelled_caught:
                lost += 1
            due = max(due + 1 / FAN_IN_RATE, trio.current_time())

    async with trio.open_nursery() as nursery:
        for i in range(len(clients)):
            nursery.start_soon(client, i)
    cpu = _process_cpu(_server_pid) - cpu_before
    for _, _, close in clients:
        await close()
    every = sorted(x for r in rtts for x in r)
    medians = sorted(statistics.median(r) for r in rtts if r)
    if not every:
        return {"rate": 0.0}
    return {
        "rate": len(every) / seconds,
        "p50": every[len(every) // 2] * 1e3,
        "p99": every[min(len(every) - 1, int(len(every) * 0.99))] * 1e3,
        "spread": medians[-1] / statistics.median(medians),
        "lost": float(lost),
        "failed handshakes": float(failed),
        "cpu": cpu / len(every) * 1e6,
    }


def _process_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far (Linux /proc), or NaN."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return math.nan
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


_server_pid = 0
_client_cpu = 0.0  # this process's CPU seconds in the last _with_server run


def _with_server(mode: str, work: Callable[[int], Awaitable[Any]]) -> tuple[Any, float]:
    """(the work's result, server CPU seconds during the run) with a fresh server process;
    the CPU counted from when the work started (the fan-in's handshakes included)."""
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
        global _server_pid
        _server_pid = proc.pid
        before, client_before = _process_cpu(proc.pid), time.process_time()
        rate = trio.run(work, port)
        global _client_cpu
        _client_cpu = time.process_time() - client_before
        return rate, _process_cpu(proc.pid) - before
    finally:
        proc.kill()
        proc.wait()


# case -> (message size, windowed?, target for dtls13 against raw UDP, against trio-dtls)
CASES: dict[str, tuple[int, bool, float | None, float | None]] = {
    "ping-pong 64 B": (64, False, 0.75, None),
    "ping-pong 512 B": (512, False, None, None),
    "ping-pong 1178 B": (1178, False, None, None),
    "windowed 64 B": (64, True, None, None),
    "windowed 512 B": (512, True, None, None),
    "windowed 1178 B": (1178, True, 1.0, 2.0),
}
FAN_IN = "fan-in"  # FAN_IN_CONNECTIONS connections, each FAN_IN_RATE msgs/s


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
    all_modes = modes
    rows: list[Row] = []
    figures: dict[str, dict[str, list[float]]] = {}
    for case in cases:
        if case == FAN_IN:
            rows.extend(_measure_fan_in([m for m in modes if m != RELAY], runs, seconds))
            continue
        size, windowed, target, target_trio = CASES[case]
        work = _windowed if windowed else _ping_pong
        case_modes = [m for m in all_modes if not (windowed and m == RELAY)]
        modes = case_modes
        figs: dict[str, list[float]] = {m: [] for m in modes}
        cpu: dict[str, list[float]] = {m: [] for m in modes}
        client_cpu: dict[str, list[float]] = {m: [] for m in modes}
        for _ in range(runs):
            for mode in modes:  # interleaved so drift hits every mode alike
                rate, server_cpu = _with_server(mode, _job(work, mode, size, seconds))
                figs[mode].append(rate)
                if rate > 0 and not math.isnan(server_cpu):
                    cpu[mode].append(server_cpu / (rate * seconds) * 1e6)
                    client_cpu[mode].append(_client_cpu / (rate * seconds) * 1e6)
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
        if "dtls13" in figs and "trio-dtls" in figs and figs["trio-dtls"]:
            row = make_row(
                "echo",
                f"{case}, dtls13",
                "msgs/s",
                figs["dtls13"],
                baseline_values=figs["trio-dtls"],
                baseline="trio.DTLSEndpoint",
                target=f">= {target_trio:.2f}x" if target_trio is not None else None,
            )
            if target_trio is not None and row.ratio is not None:
                row = dataclasses.replace(row, met=row.ratio >= target_trio)
            rows.append(row)
        if "dtls13" in figs and RELAY in figs:
            # Against raw UDP through a receive task: what the protocol itself costs.
            rows.append(
                make_row(
                    "echo",
                    f"{case}, dtls13",
                    "msgs/s",
                    figs["dtls13"],
                    baseline_values=figs[RELAY],
                    baseline="raw UDP through a receive task",
                )
            )
        # CPU per message, the handshake included (a few ms): steadier than msgs/s on a
        # shared machine. The server's is what a busy server pays; the client's (this
        # process) shares the two cores with it, so in the windowed case it limits msgs/s too.
        for side, per_mode in (("server", cpu), ("client", client_cpu)):
            for mode in modes:
                if len(per_mode[mode]) == runs and len(per_mode["raw"]) == runs:
                    rows.append(
                        make_row(
                            "echo",
                            f"{case}, {mode}, {side} CPU",
                            "µs/msg",
                            per_mode[mode],
                            baseline_values=per_mode["raw"] if mode != "raw" else None,
                            baseline="raw trio UDP" if mode != "raw" else None,
                        )
                    )
    return rows, figures


def _measure_fan_in(modes: list[str], runs: int, seconds: float) -> list[Row]:
    figs: dict[str, dict[str, list[float]]] = {m: {} for m in modes}
    for _ in range(runs):
        for mode in modes:

            async def job(port: int, mode: str = mode) -> dict[str, float]:
                return await _fan_in(mode, port, seconds)

            result, _ = _with_server(mode, job)
            for k, v in result.items():
                figs[mode].setdefault(k, []).append(v)
    rows: list[Row] = []
    units = {
        "rate": ("delivered", "msgs/s"),
        "p50": ("round trip p50", "ms"),
        "p99": ("round trip p99", "ms"),
        "spread": ("slowest connection's median / median", "x"),
        "cpu": ("server CPU", "µs/msg"),
        "lost": ("no echo within 1 s", "msgs"),
        "failed handshakes": ("handshakes not done in 30 s", "connections"),
    }
    for key, (what, unit) in units.items():
        for mode in modes:
            values = figs[mode].get(key, [])
            if not values:
                continue
            base = figs["raw"].get(key) if mode != "raw" else None
            rows.append(
                make_row(
                    "echo",
                    f"fan-in {FAN_IN_CONNECTIONS:,} x {FAN_IN_RATE:g}/s, {what}, {mode}",
                    unit,
                    values,
                    baseline_values=base,
                    baseline="raw trio UDP" if base else None,
                )
            )
    return rows


def main() -> None:
    global FAN_IN_CONNECTIONS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--quick", action="store_true", help="one short run of each")
    parser.add_argument(
        "--case",
        action="append",
        choices=[*CASES, FAN_IN],
        help="only these cases (repeatable)",
    )
    parser.add_argument("--plain-io", action="store_true", help="dtls13 without recvmmsg")
    parser.add_argument(
        "--connections", type=int, default=FAN_IN_CONNECTIONS, help="fan-in connections"
    )
    parser.add_argument("--serve", choices=MODES)
    parser.add_argument("--port", type=int, default=0)
    add_json_argument(parser)
    args = parser.parse_args()
    if args.plain_io:
        os.environ["DTLS13_BENCH_PLAIN_IO"] = "1"
    _plain_io()
    FAN_IN_CONNECTIONS = args.connections
    if args.serve:
        trio.run(_serve, args.serve, args.port)
        return
    if args.quick:
        args.runs, args.seconds = 1, 0.3
        FAN_IN_CONNECTIONS = min(FAN_IN_CONNECTIONS, 100)
    modes = list(MODES)
    try:
        import OpenSSL  # noqa: F401
    except ImportError:
        modes.remove("trio-dtls")
        print("(pyOpenSSL missing: trio.DTLSEndpoint not measured)")
    rows, _ = measure(modes, args.case or [*CASES, FAN_IN], args.runs, args.seconds)
    print(markdown_table(rows))
    write_json(args.json, rows)


if __name__ == "__main__":
    main()
