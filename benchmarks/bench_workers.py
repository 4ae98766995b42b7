"""`python -m dtls13 server --workers N`: 1 against 2 worker processes on one port.

The server is the CLI's own worker machinery (fork, SO_REUSEPORT, shared secrets), run with
the per-source DoS limits raised (every client here comes from 127.0.0.1) and no cookie,
like bench_echo.py. Load comes from separate generator processes, each running several
concurrent clients: full handshakes (a fresh socket and handshake per connection, client
certificate verification off to spare the generators, ClientHellos padded so the cookie-less
server can answer them at once under the 3x anti-amplification rule) and 64-byte ping-pong
echo (one message in flight per client). Server CPU time is read from /proc for every worker.

On a 2-core machine the generators compete with the workers for the same two cores, so
2 workers cannot show a 2x gain here; the server CPU figures say how much of the machine
the server got. Ratios compare 2 workers with 1 worker measured in the same run.

    python benchmarks/bench_workers.py [--runs 3] [--seconds 3] [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import trio
from _common import Row, add_json_argument, make_row, write_json

from dtls13 import ClientConfig, open_dtls_client
from dtls13.endpoint import DoSProtectionConfig

BENCH_DOS = DoSProtectionConfig(
    datagrams_per_second=1e9,
    datagram_burst=1e9,
    bytes_per_second=1e12,
    byte_burst=1e12,
    max_connections_per_ip=100_000,
    max_half_open=100_000,
    max_half_open_per_ip=100_000,
)
GENERATORS = 2  # load-generator processes
CLIENTS = 4  # concurrent clients in each
WORKERS = (1, 2)
KINDS = ("handshake", "echo")
TICK = os.sysconf("SC_CLK_TCK")


# -- server (--serve N) -------------------------------------------------------------------


def serve(workers: int) -> None:
    from dtls13 import cli, cli_workers

    args = cli.build_parser().parse_args(
        ["server", "--port", "0", "--workers", str(workers), "--cookie", "never", "-q"]
    )
    log = cli._Log(args)
    config, cert_path = cli.server_config(args, log)
    try:
        cli_workers.run_workers(args, config, log, dos=BENCH_DOS)
    finally:
        if cert_path:
            os.unlink(cert_path)


class Server:
    """`bench_workers.py --serve N` in a subprocess: its port and worker pids."""

    def __init__(self, workers: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(workers)],
            stdout=subprocess.PIPE,
            text=True,
        )
        self.pids: list[int] = []
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if "(pids " in line:
                self.pids = [int(p) for p in line.split("(pids ")[1].split(")")[0].split(", ")]
            if "listening on" in line:
                self.port = int(line.rsplit(":", 1)[1])
                return
        raise RuntimeError("server did not start")

    def cpu_seconds(self) -> float:
        total = 0
        for pid in self.pids:
            with open(f"/proc/{pid}/stat", encoding="ascii") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / TICK

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# -- load generator (--load KIND) ---------------------------------------------------------


async def load(kind: str, port: int, clients: int, start: float, seconds: float) -> int:
    """Operations completed inside [start, start + seconds] (wall clock)."""
    # The server sends no cookie: a padded ClientHello pays for its flight under the 3x
    # anti-amplification rule, which a bare one would only do after retransmissions.
    config = ClientConfig(verify=False, handshake_timeout=10, pad_client_hello=True)
    end = start + seconds
    done = 0

    async def handshakes() -> None:
        nonlocal done
        await trio.sleep(max(0.0, start - time.time()))
        while time.time() < end:
            channel = await open_dtls_client("127.0.0.1", port, config)
            if time.time() < end:
                done += 1
            await channel.aclose()

    async def echoes() -> None:
        nonlocal done
        channel = await open_dtls_client("127.0.0.1", port, config)
        await trio.sleep(max(0.0, start - time.time()))
        payload = b"x" * 64
        while time.time() < end:
            await channel.send(payload)
            with trio.move_on_after(1):
                await channel.receive()
                if time.time() < end:
                    done += 1
        await channel.aclose()

    async with trio.open_nursery() as nursery:
        for _ in range(clients):
            nursery.start_soon(handshakes if kind == "handshake" else echoes)
    return done


def measure(server: Server, kind: str, seconds: float) -> tuple[float, float, float]:
    """(operations/s, server CPU seconds per operation, server cores busy) in one window."""
    start = time.time() + 1.5  # time for the generators to start (and echo clients to connect)
    cmd = [
        sys.executable, __file__, "--load", kind, "--port", str(server.port),
        "--clients", str(CLIENTS), "--start", repr(start), "--seconds", repr(seconds),
    ]  # fmt: skip
    gens = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) for _ in range(GENERATORS)]
    time.sleep(max(0.0, start - time.time()))
    cpu0 = server.cpu_seconds()
    time.sleep(seconds)
    cpu1 = server.cpu_seconds()
    count = 0
    for gen in gens:
        out, _ = gen.communicate(timeout=60)
        if gen.returncode != 0:
            raise RuntimeError(f"load generator failed ({gen.returncode})")
        count += json.loads(out)["count"]
    rate = count / seconds
    return rate, (cpu1 - cpu0) / count if count else float("nan"), (cpu1 - cpu0) / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--quick", action="store_true", help="1 run of 1 s")
    add_json_argument(parser)
    parser.add_argument("--serve", type=int, metavar="N", help=argparse.SUPPRESS)
    parser.add_argument("--load", choices=KINDS, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--clients", type=int, default=CLIENTS, help=argparse.SUPPRESS)
    parser.add_argument("--start", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    if args.load:
        n = trio.run(load, args.load, args.port, args.clients, args.start, args.seconds)
        print(json.dumps({"count": n}))
        return
    if args.quick:
        args.runs, args.seconds = 1, 1.0

    rates: dict[tuple[str, int], list[float]] = {}
    cpu_per_op: dict[tuple[str, int], list[float]] = {}
    busy: dict[tuple[str, int], list[float]] = {}
    for _ in range(args.runs):
        for workers in WORKERS:  # interleaved so drift hits both alike
            server = Server(workers)
            try:
                for kind in KINDS:
                    rate, per_op, cores = measure(server, kind, args.seconds)
                    rates.setdefault((kind, workers), []).append(rate)
                    cpu_per_op.setdefault((kind, workers), []).append(per_op * 1000)
                    busy.setdefault((kind, workers), []).append(cores)
            finally:
                server.stop()

    load_desc = f"{GENERATORS}x{CLIENTS} clients"
    rows: list[Row] = []
    for kind, label, unit in (
        ("handshake", "full handshakes", "hs/s"),
        ("echo", "echo 64 B ping-pong", "msgs/s"),
    ):
        for workers in WORKERS:
            plural = "worker" if workers == 1 else "workers"
            base = rates[(kind, 1)] if workers != 1 else None
            rows.append(
                make_row(
                    "workers",
                    f"{label}, {workers} {plural} ({load_desc})",
                    unit,
                    rates[(kind, workers)],
                    baseline_values=base,
                    baseline="1 worker" if base else None,
                )
            )
        for workers in WORKERS:
            rows.append(
                make_row(
                    "workers",
                    f"{label}: server CPU per op, {workers} worker(s)",
                    "ms",
                    cpu_per_op[(kind, workers)],
                )
            )
            rows.append(
                make_row(
                    "workers",
                    f"{label}: server cores busy, {workers} worker(s)",
                    "cores",
                    busy[(kind, workers)],
                )
            )

    print(f"{os.cpu_count()} cores; load: {GENERATORS} generator processes x {CLIENTS} clients")
    print("| case | median | min | max | unit | x 1 worker |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        ratio = f"{r.ratio:.2f}x" if r.ratio is not None else ""
        print(f"| {r.case} | {r.median:.4g} | {r.min:.4g} | {r.max:.4g} | {r.unit} | {ratio} |")
    write_json(args.json, rows)


if __name__ == "__main__":
    main()
