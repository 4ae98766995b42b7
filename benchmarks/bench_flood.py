"""Cookie flood: cookie-less ClientHellos answered per second, and the memory they leave.

One real ClientHello is built once with a dtls13 client Connection; a generator (this
process) sends copies of it from many source sockets (addresses 127.0.0.2.. and many
ports, so the per-source rate limits are not what is measured) to a dtls13 server
(trio ``DTLSEndpoint``) in another process, and counts the HelloRetryRequests that come
back. The server runs with ``cookie_policy="always"`` and with the default policy
("under_load": the first ClientHellos make half-open connections, cookies are demanded
once ``cookie_threshold`` of them exist). One more line sends from a single source to show
its rate limit. The server reports RSS, pool bytes in use and connection/half-open counts
before (after a short warm-up flood), during and after the flood. A last row is the sans-IO
``ServerEndpoint`` alone (no sockets), by CPU time.

    python benchmarks/bench_flood.py [--quick] [--json PATH] [--seconds 2]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import selectors
import socket
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import (
    MeasuredServer,
    Row,
    add_json_argument,
    make_row,
    markdown_table,
    rss_bytes,
    write_json,
)

from dtls13 import ClientConfig, ServerConfig
from dtls13.certgen import make_self_signed
from dtls13.connection import Connection
from dtls13.endpoint import ServerEndpoint
from dtls13.memory import PoolSet

TARGET = 20_000.0
SOURCES = 250  # 127.0.0.2 .. 127.0.0.251
PORTS_PER_SOURCE = 4
WINDOW = 512  # ClientHellos in flight before the generator waits for answers


def client_hello() -> bytes:
    """One real first ClientHello (no cookie), as the first datagram of a client."""
    conn = Connection(ClientConfig(verify=False), pools=PoolSet())
    conn.connect(("127.0.0.1", 4433), 0.0)
    leases = conn.datagrams_to_send(0.0)
    data = bytes(leases[0][0])
    for lease, _ in leases:
        lease.release()
    conn.close()
    for lease, _ in conn.datagrams_to_send(0.0):
        lease.release()
    return data


def _server_config() -> ServerConfig:
    cert, key = make_self_signed(["localhost"])
    return ServerConfig(certificate_chain=[cert], private_key=key)


# -- server (run with --serve POLICY) ---------------------------------------------------------


async def _serve(policy: str, port: int) -> None:
    import trio

    from dtls13 import DTLSEndpoint

    sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
    await sock.bind(("127.0.0.1", port))
    sock.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_RCVBUF, 4 << 20)
    config = _server_config()

    async def echo(channel: Any) -> None:
        async for message in channel:
            await channel.send(message)

    def report(endpoint: Any) -> dict[str, Any]:
        server = endpoint._server
        stats = server.statistics() if server is not None else None
        return {
            "rss": rss_bytes(),
            "cpu": time.process_time(),
            "pool_in_use": endpoint.pools.in_use_bytes,
            "connections": stats.connections if stats else 0,
            "half_open": stats.half_open if stats else 0,
            "gate_partials": stats.gate_partials if stats else 0,
            "hello_retry_sent": stats.gate.get("hello_retry_sent", 0) if stats else 0,
            "rate_limited": stats.rate_limited if stats else 0,
            "datagrams": stats.datagrams if stats else 0,
            "dropped": endpoint.statistics().dropped_memory_budget,
        }

    async def control(endpoint: Any) -> None:
        stream = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
        pending = b""
        while True:
            data = await stream.receive_some()
            if not data:
                os._exit(0)
            pending += data
            while b"\n" in pending:
                _line, pending = pending.split(b"\n", 1)
                print(json.dumps(report(endpoint)), flush=True)

    async with DTLSEndpoint(sock, cookie_policy=policy) as endpoint, trio.open_nursery() as n:
        await n.start(endpoint.serve, config, echo)
        n.start_soon(control, endpoint)
        print("ready", flush=True)


# -- generator ---------------------------------------------------------------------------------


def _sockets(sources: int, ports: int, server: tuple[str, int]) -> list[socket.socket]:
    socks = []
    for i in range(sources):
        for _ in range(ports):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind((f"127.0.0.{2 + i}", 0))
            s.connect(server)
            s.setblocking(False)
            socks.append(s)
    return socks


def _flood(socks: list[socket.socket], hello: bytes, seconds: float) -> tuple[float, int, int]:
    """(HRRs received per second, ClientHellos sent, other answers)."""
    sel = selectors.DefaultSelector()
    for s in socks:
        sel.register(s, selectors.EVENT_READ)
    sent = hrrs = other = 0
    i = 0
    start = time.monotonic()
    end = start + seconds
    try:
        while (now := time.monotonic()) < end:
            while sent - hrrs - other < WINDOW:
                with contextlib.suppress(BlockingIOError, ConnectionRefusedError):
                    socks[i].send(hello)
                    sent += 1
                i = (i + 1) % len(socks)
                if sent % 64 == 0:
                    break
            for key, _ in sel.select(0 if sent - hrrs - other < WINDOW else 0.01):
                sock: Any = key.fileobj
                while True:
                    try:
                        data = sock.recv(65536)
                    except (BlockingIOError, ConnectionRefusedError):
                        break
                    # A HelloRetryRequest is a ServerHello with the special random (RFC 8446
                    # §4.1.3): handshake record, message type 2 at offset 13.
                    if len(data) > 60 and data[0] == 22 and data[13] == 2:
                        hrrs += 1
                    else:
                        other += 1
            if sent - hrrs - other >= WINDOW and now - start > 0.5:
                # Answers lost (rate limit or full buffers): do not stall on them.
                sent = hrrs + other + WINDOW // 2
        elapsed = time.monotonic() - start
    finally:
        sel.close()
    return hrrs / elapsed, sent, other


def _run_policy(
    policy: str, hello: bytes, seconds: float, sources: int, ports: int
) -> dict[str, Any]:
    with MeasuredServer(__file__, policy) as server:
        socks = _sockets(sources, ports, server.address)
        try:
            server.wait_ready()
            # A short flood first: what the process grows once (allocator arenas, the pools'
            # first slots, socket paths) is not memory retained per peer.
            _flood(socks, hello, min(0.5, seconds / 2))
            time.sleep(0.3)
            before = server.ask()
            rate, sent, other = _flood(socks, hello, seconds)
            during = server.ask()
            time.sleep(0.5)
            after = server.ask()
        finally:
            for s in socks:
                s.close()
    return {
        "rate": rate,
        "sent": sent,
        "other": other,
        "before": before,
        "during": during,
        "after": after,
    }


def sans_io_rate(hello: bytes, seconds: float) -> float:
    """HRRs per CPU second from a sans-IO ServerEndpoint with cookie_policy="always"."""
    pools = PoolSet()
    endpoint = ServerEndpoint(_server_config(), pools=pools, cookie_policy="always")
    n = 0
    addrs = [(f"127.0.{i // 250}.{2 + i % 250}", 1000 + i) for i in range(SOURCES * 8)]
    start = time.process_time()
    end = start + seconds
    now = 1000.0
    while time.process_time() < end:
        for addr in addrs[:256]:
            endpoint.receive_datagram(hello, addr, now)
        for lease, _ in endpoint.datagrams_to_send(now):
            lease.release()
            n += 1
        addrs = addrs[256:] + addrs[:256]
        now += 0.01
    rate = n / (time.process_time() - start)
    stats = endpoint.statistics()
    assert stats.connections == 0 and stats.half_open == 0
    endpoint.close()
    endpoint.release()
    assert pools.in_use_bytes == 0
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--serve", choices=("always", "under_load"))
    parser.add_argument("--port", type=int, default=0)
    add_json_argument(parser)
    args = parser.parse_args()
    if args.serve:
        import trio

        trio.run(_serve, args.serve, args.port)
        return
    runs, seconds = (1, 0.5) if args.quick else (args.runs, args.seconds)
    hello = client_hello()
    cases = [
        ("always", SOURCES, PORTS_PER_SOURCE, "cookie_policy=always"),
        ("under_load", SOURCES, PORTS_PER_SOURCE, "default policy (under_load)"),
        ("always", 1, 1, "cookie_policy=always, one source"),
    ]
    rows: list[Row] = []
    details: list[str] = []
    for policy, sources, ports, label in cases:
        rates: list[float] = []
        cpu_rates: list[float] = []
        retained: list[float] = []
        for _ in range(runs):
            res = _run_policy(policy, hello, seconds, sources, ports)
            rates.append(res["rate"])
            cpu = res["during"]["cpu"] - res["before"]["cpu"]
            hrrs = res["during"]["hello_retry_sent"] - res["before"]["hello_retry_sent"]
            cpu_rates.append(hrrs / cpu if cpu else 0.0)
            retained.append((res["after"]["rss"] - res["before"]["rss"]) / 1024)
            details.append(f"{label}: " + json.dumps(res))
        many = sources > 1
        rows.append(
            make_row(
                "flood",
                f"HRRs answered, {label}, {sources * ports} sockets",
                "HRR/s",
                rates,
                target=f">= {TARGET:,.0f}/s" if many and policy == "always" else None,
                met=(sorted(rates)[len(rates) // 2] >= TARGET)
                if many and policy == "always"
                else None,
            )
        )
        rows.append(make_row("flood", f"HRRs per server CPU second, {label}", "HRR/s", cpu_rates))
        rows.append(make_row("flood", f"RSS growth after the flood, {label}", "KiB", retained))
    sans = [sans_io_rate(hello, seconds) for _ in range(runs)]
    rows.append(
        make_row(
            "flood",
            "HRRs per CPU second, sans-IO ServerEndpoint (no sockets)",
            "HRR/s",
            sans,
            target=f">= {TARGET:,.0f}/s",
            met=sorted(sans)[len(sans) // 2] >= TARGET,
        )
    )
    print(markdown_table(rows))
    print()
    for line in details:
        print("    " + line)
    write_json(args.json, rows)


if __name__ == "__main__":
    main()
