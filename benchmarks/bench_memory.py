"""Memory per idle established connection: dtls13 against trio.DTLSEndpoint, in one run.

A server process (a dtls13 ``DTLSEndpoint`` or a ``trio.DTLSEndpoint`` with pyOpenSSL, each
serving an echo handler) reports its own RSS (VmRSS after ``gc.collect()``) with W warm-up
connections established and again after N more; the figure per connection is the difference
divided by N. Each figure is taken twice: right after the handshakes, and once every
connection has been idle long enough for the server to let its ciphers' OpenSSL objects go
(``idle_release_after``, 10 s by default: released between 1x and 2x that, so the bench waits
2x + 1 s and checks every connection was released). Total RSS is reported at 10,000
connections (the per-connection target, 8 KiB at 1,000 and 10,000, is checked on the idle
figures). The details give malloc's figures and `rss_heap`, the RSS of malloc's main heap.
The clients live in this process:
sans-IO connections over plain non-blocking sockets (one source port each), a few dozen
handshakes in flight at a time. Every connection's handshake is checked to have completed
on both sides before the server measures.

The dtls13 server's admission caps (connections per address, total connections, per-source
rates) are raised for the run: every client comes from 127.0.0.1.

    python benchmarks/bench_memory.py [--quick] [--json PATH] [--counts 1000,10000]
        [--idle-release SECONDS]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
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
from dtls13.endpoint import DoSProtectionConfig
from dtls13.events import HandshakeCompleted
from dtls13.memory import PoolSet

MODES = ("dtls13", "trio-dtls")
IN_FLIGHT = 48
WARM_UP = 100
TARGET_PER_CONN_KIB = 8.0  # at 1,000 and 10,000 idle connections
TARGET_TOTAL_MIB = {10_000: 200.0, 100_000: 1024.0}
BENCH_DOS = DoSProtectionConfig(
    max_total_memory=8 << 30,
    max_tracked_sources=1_000_000,
    datagrams_per_second=1e9,
    datagram_burst=1e9,
    bytes_per_second=1e12,
    byte_burst=1e12,
    max_concurrent_connections=1_000_000,
    max_connections_per_ip=1_000_000,
    max_half_open_per_ip=1_000,
)


def _malloc_figures() -> dict[str, int]:
    """glibc's own count of the bytes malloc has handed out and not had back (OpenSSL's
    contexts live there; Python's small objects live in pymalloc arenas), when available;
    with BENCH_MALLOC_TRIM set, also VmRSS after malloc_trim(0) (which changes later figures)."""
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
        info = libc.mallinfo2
    except (OSError, AttributeError):
        return {}

    class MallInfo2(ctypes.Structure):
        _fields_ = [
            (name, ctypes.c_size_t)
            for name in (
                "arena",
                "ordblks",
                "smblks",
                "hblks",
                "hblkhd",
                "usmblks",
                "fsmblks",
                "uordblks",
                "fordblks",
                "keepcost",
            )
        ]

    info.restype = MallInfo2
    m = info()
    out = {"malloc_in_use": m.uordblks + m.hblkhd, "malloc_free": m.fordblks}
    out.update(_heap_rss())
    if os.environ.get("BENCH_MALLOC_TRIM"):
        t = time.perf_counter()
        libc.malloc_trim(0)
        out["malloc_trim_ms"] = round((time.perf_counter() - t) * 1000, 2)
        out["rss_after_malloc_trim"] = rss_bytes()
    return out


def _heap_rss() -> dict[str, int]:
    """How much of the RSS is malloc's main heap ([heap] in /proc/self/smaps: OpenSSL's
    contexts and Python's objects over 512 B) and how much the rest (Python's object
    arenas, stacks, libraries), when the system says."""
    try:
        with open("/proc/self/smaps") as f:
            lines = f.read().splitlines()
    except OSError:
        return {}
    heap = 0
    current = ""
    for line in lines:
        if not line[:1].isupper() or ":" not in line.split()[0]:
            current = line.split()[-1] if len(line.split()) >= 6 else ""
        elif line.startswith("Rss:") and current == "[heap]":
            heap += int(line.split()[1]) * 1024
    return {"rss_heap": heap}


# -- servers (run with --serve MODE) ------------------------------------------------------


def _trace(snapshots: list[Any], handlers: int) -> None:
    """--tracemalloc: Python allocations per connection between two measurements, by line."""
    import tracemalloc

    if not tracemalloc.is_tracing():
        tracemalloc.start(1)
    snapshots.append((tracemalloc.take_snapshot(), handlers))
    if len(snapshots) < 2:
        return
    (old, n0), (new, n1) = snapshots[-2:]
    # The same connections, idle since (ciphers released): totals, not per connection.
    n = n1 - n0 if n1 > n0 else 1
    diff = new.compare_to(old, "lineno")
    total = sum(d.size_diff for d in diff)
    what = "per connection" if n1 > n0 else f"in all, {n1} connections gone idle"
    print(f"tracemalloc: {total / n:.0f} B {what} (Python heap)", file=sys.stderr)
    by_file: dict[str, int] = {}
    for d in diff:
        name = d.traceback[0].filename.rsplit("site-packages/", 1)[-1]
        name = name.split("/dtls13/", 1)[-1] if "/dtls13/" in name else name.split("/", 1)[0]
        by_file[name] = by_file.get(name, 0) + d.size_diff
    for name, size in sorted(by_file.items(), key=lambda kv: -kv[1])[:12]:
        print(f"  {size / n:7.0f} B  {name}", file=sys.stderr)
    for d in diff[:30]:
        frame = d.traceback[0]
        print(
            f"  {d.size_diff / n:7.0f} B {d.count_diff / n:6.2f} objs "
            f"{frame.filename.rsplit('site-packages/', 1)[-1]}:{frame.lineno}",
            file=sys.stderr,
        )


async def _serve(mode: str, port: int, idle_release: float) -> None:
    import trio

    sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
    await sock.bind(("127.0.0.1", port))
    sock.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_RCVBUF, 4 << 20)
    cert, key = make_self_signed(["localhost"])
    handlers = 0

    async def echo(channel: Any) -> None:
        nonlocal handlers
        handlers += 1
        async for message in channel:
            await channel.send(message)

    snapshots: list[Any] = []

    def report(endpoint: Any) -> dict[str, Any]:
        out: dict[str, Any] = {"rss": rss_bytes(), "handlers": handlers}
        out.update(_malloc_figures())
        if os.environ.get("BENCH_TRACEMALLOC"):
            _trace(snapshots, handlers)
        if mode == "dtls13":
            server = endpoint._server
            out.update(
                connections=server.statistics().connections if server is not None else 0,
                established=sum(1 for c in server.connections.values() if c.handshake_complete)
                if server is not None
                else 0,
                ciphers_released=sum(
                    1 for c in server.connections.values() if not c._records.ciphers_built
                )
                if server is not None
                else 0,
                half_open=server.statistics().half_open if server is not None else 0,
                pool_in_use=endpoint.pools.in_use_bytes,
                pool_pooled=endpoint.pools.statistics().pooled_bytes,
            )
        else:
            out.update(connections=len(endpoint._streams), established=handlers, pool_in_use=0)
        return out

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
                # Let the loops settle (handlers start, last ACKs go out) before measuring.
                await trio.sleep(0.3)
                print(json.dumps(report(endpoint)), flush=True)

    if mode == "dtls13":
        from dtls13 import DTLSEndpoint

        config = ServerConfig(
            certificate_chain=[cert], private_key=key, idle_release_after=idle_release
        )
        async with DTLSEndpoint(sock, dos=BENCH_DOS) as endpoint, trio.open_nursery() as n:
            await n.start(endpoint.serve, config, echo)
            n.start_soon(control, endpoint)
            print("ready", flush=True)
    else:
        from OpenSSL import SSL, crypto

        ctx = SSL.Context(SSL.DTLS_METHOD)
        ctx.use_certificate(crypto.X509.from_cryptography(cert))
        ctx.use_privatekey(crypto.PKey.from_cryptography_key(key))
        with trio.DTLSEndpoint(sock, incoming_packets_buffer=64) as endpoint:
            async with trio.open_nursery() as n:
                await n.start(endpoint.serve, ctx, echo)
                n.start_soon(control, endpoint)
                print("ready", flush=True)


# -- clients: sans-IO over plain sockets ---------------------------------------------------


class _Dtls13Client:
    def __init__(self, config: ClientConfig, pools: PoolSet) -> None:
        self.conn = Connection(config, pools=pools)
        self.done = False

    def start(self, addr: Any, now: float) -> list[bytes]:
        self.conn.connect(addr, now)
        return self._out(now)

    def _out(self, now: float) -> list[bytes]:
        out = []
        for lease, _ in self.conn.datagrams_to_send(now):
            out.append(bytes(lease))
            lease.release()
        while (ev := self.conn.next_event()) is not None:
            if isinstance(ev, HandshakeCompleted):
                self.done = True
        return out

    def feed(self, data: bytes, addr: Any, now: float) -> list[bytes]:
        self.conn.receive_datagram(data, addr, now)
        return self._out(now)

    def timer(self, now: float) -> list[bytes]:
        t = self.conn.get_timer()
        if t is not None and t <= now:
            self.conn.handle_timer(now)
        return self._out(now)


class _OpenSSLClient:
    def __init__(self, ctx: Any) -> None:
        from OpenSSL import SSL

        self._ssl = SSL
        self.conn = SSL.Connection(ctx, None)
        self.conn.set_connect_state()
        self.conn.set_ciphertext_mtu(1400)
        self.done = False

    def _step(self) -> list[bytes]:
        if not self.done:
            try:
                self.conn.do_handshake()
                self.done = True
            except self._ssl.WantReadError:
                pass
        out = []
        while True:
            try:
                out.append(self.conn.bio_read(65536))
            except self._ssl.WantReadError:
                return out

    def start(self, addr: Any, now: float) -> list[bytes]:
        return self._step()

    def feed(self, data: bytes, addr: Any, now: float) -> list[bytes]:
        self.conn.bio_write(data)
        return self._step()

    def timer(self, now: float) -> list[bytes]:
        timeout = self.conn.DTLSv1_get_timeout()
        if timeout is not None and timeout <= 0:
            self.conn.DTLSv1_handle_timeout()
        return self._step()


def _raise_nofile(n: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, n + 256))
    if want > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    if want < n + 64:
        raise SystemExit(f"RLIMIT_NOFILE hard limit {hard} is too low for {n} sockets")


# With --drop-clients: connections are made in chunks of this many; once a chunk's
# handshakes are done and settled, its client sockets close and its client connections go
# (the server's stay, idle), so more connections than file descriptors can be measured.
CHUNK = 5000


class _SourceAddresses:
    """Distinct (address, port) pairs for client sockets, 127.0.0.2 onwards: a source port
    freed by a closed client must not be given to a new one (the server would take its
    ClientHello as the old connection's peer starting over)."""

    def __init__(self) -> None:
        self.host = 2
        self.port = 10000

    def bind(self, sock: socket.socket) -> None:
        while True:
            addr = (f"127.0.0.{self.host}", self.port)
            self.port += 1
            if self.port >= 60000:
                self.port, self.host = 10000, self.host + 1
            try:
                sock.bind(addr)
                return
            except OSError:  # in use by someone else
                continue


class _Clients:
    """Many sans-IO clients, one non-blocking socket (source port) each."""

    def __init__(self, mode: str, server: tuple[str, int], drop: bool = False) -> None:
        self.mode = mode
        self.server = server
        self.sources = _SourceAddresses() if drop else None
        self.sel = selectors.DefaultSelector()
        self.clients: list[tuple[socket.socket, Any]] = []
        if mode == "dtls13":
            self.config: Any = ClientConfig(verify=False)
            self.pools = PoolSet()
        else:
            from OpenSSL import SSL

            self.config = SSL.Context(SSL.DTLS_METHOD)

    def _new(self) -> Any:
        if self.mode == "dtls13":
            return _Dtls13Client(self.config, self.pools)
        return _OpenSSLClient(self.config)

    def _send(self, sock: socket.socket, datagrams: list[bytes]) -> None:
        for d in datagrams:
            with contextlib.suppress(BlockingIOError, ConnectionRefusedError):
                sock.send(d)

    def establish(self, n: int, timeout: float = 600.0) -> float:
        """Open n more connections; returns the seconds it took."""
        start = time.monotonic()
        todo = n
        active: dict[int, tuple[socket.socket, Any]] = {}
        deadline = start + timeout
        while todo or active:
            now = time.monotonic()
            if now > deadline:
                raise RuntimeError(f"{len(active) + todo} handshakes did not complete")
            while todo and len(active) < IN_FLIGHT:
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                if self.sources is not None:
                    self.sources.bind(sock)
                else:
                    sock.bind(("127.0.0.1", 0))
                sock.connect(self.server)
                sock.setblocking(False)
                client = self._new()
                active[sock.fileno()] = (sock, client)
                self.sel.register(sock, selectors.EVENT_READ, client)
                self._send(sock, client.start(self.server, now))
                todo -= 1
            self._pump(0.05)
            now = time.monotonic()
            for fd, (sock, client) in list(active.items()):
                self._send(sock, client.timer(now))
                if client.done:
                    del active[fd]
                    self.clients.append((sock, client))
        return time.monotonic() - start

    def _pump(self, wait: float) -> int:
        moved = 0
        for key, _ in self.sel.select(wait):
            sock, client = key.fileobj, key.data
            while True:
                try:
                    data = sock.recv(65536)  # type: ignore[union-attr]
                except (BlockingIOError, ConnectionRefusedError):
                    break
                moved += 1
                self._send(sock, client.feed(data, self.server, time.monotonic()))  # type: ignore[arg-type]
        return moved

    def settle(self, quiet: float = 0.5, limit: float = 10.0) -> None:
        """Answer whatever the server still sends (tickets, ACK retransmissions)."""
        end = time.monotonic() + limit
        last = time.monotonic()
        while time.monotonic() < end and time.monotonic() - last < quiet:
            if self._pump(0.05):
                last = time.monotonic()
            now = time.monotonic()
            for sock, client in self.clients:
                if self.mode != "dtls13" or client.conn.get_timer() is not None:
                    self._send(sock, client.timer(now))

    def drop(self) -> None:
        """Close the client sockets and forget the clients (their server connections stay)."""
        for sock, client in self.clients:
            self.sel.unregister(sock)
            sock.close()
            if self.mode == "dtls13":
                self.pools.release_owner(client.conn.owner)
        self.clients.clear()

    def establish_many(self, n: int) -> float:
        """`establish` in chunks, each settled and dropped (--drop-clients)."""
        took = 0.0
        while n > 0:
            took += self.establish(min(n, CHUNK))
            n -= CHUNK
            self.settle()
            self.drop()
            print(
                f"  {self.mode}: a chunk of clients settled, {n if n > 0 else 0:,} to go",
                file=sys.stderr,
            )
        return took

    def close(self) -> None:
        self.drop()
        self.sel.close()


def _progress(
    mode: str, n: int, warm: int, base: dict[str, Any] | None, fig: dict[str, Any]
) -> None:
    """Each figure on stderr as it is taken (a long run stopped early still tells)."""
    per = ""
    if base is not None and n > warm:
        per = f", {(fig['rss'] - base['rss']) / (n - warm) / 1024:.2f} KiB per connection"
    print(f"  {mode}: {n:,} connections, RSS {fig['rss'] / 2**20:.1f} MiB{per}", file=sys.stderr)


def _short(what: str, want: int, fig: dict[str, Any]) -> None:
    """A shortfall: up to 0.1% (handshakes lost on a loaded machine, at 100,000) is noted
    in the figures and on stderr; more stops the run."""
    got = int(what.split(" of ")[0].rsplit(" ", 1)[-1])
    if want - got > want // 1000:
        raise RuntimeError(what)
    fig["shortfall"] = want - got
    print(f"  note: {what}", file=sys.stderr)


def _measure(
    mode: str, counts: list[int], warm: int, idle_release: float, drop: bool = False
) -> dict[tuple[int, bool], dict[str, Any]]:
    """Server figures after `warm` connections, then at each count (cumulative); each right
    after the handshakes (key False) and, for dtls13, once idle past the release (True)."""
    server = MeasuredServer(__file__, mode, "--idle-release", str(idle_release))
    ask = server.ask
    clients = _Clients(mode, server.address, drop)
    results: dict[tuple[int, bool], dict[str, Any]] = {}

    def idle(n: int) -> None:
        # Released between 1x and 2x idle_release_after after the last record.
        wait = 2 * idle_release + 1.0
        print(f"  {mode}: waiting {wait:g} s for {warm + n} idle connections to be released")
        clients.settle(quiet=wait, limit=wait)
        fig = ask()
        fig["waited"] = wait
        _progress(mode, warm + n, warm, results.get((0, True)), fig)
        if fig["ciphers_released"] < warm + n:
            _short(f"{mode}: {fig['ciphers_released']} of {warm + n} released", warm + n, fig)
        results[n, True] = fig

    try:
        server.wait_ready(f"{mode} server")
        clients.establish(warm)
        clients.settle()
        results[0, False] = ask()
        if mode == "dtls13":
            idle(0)
        have = 0
        for n in counts:
            took = (clients.establish_many if drop else clients.establish)(n - have)
            have = n
            clients.settle()
            fig = ask()
            fig["seconds"] = took
            _progress(mode, warm + n, warm, results.get((0, False)), fig)
            if fig["established"] < warm + n:
                _short(f"{mode}: {fig['established']} of {warm + n} established", warm + n, fig)
            results[n, False] = fig
            if mode == "dtls13":
                idle(n)
    finally:
        clients.close()
        server.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200 connections, one run")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--counts", default="1000,10000")
    parser.add_argument("--baseline-counts", default="1000", help="for trio.DTLSEndpoint")
    parser.add_argument("--serve", choices=MODES)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument(
        "--idle-release",
        type=float,
        default=None,
        help="the server's idle_release_after (default: the config's, 10 s; 1 s with --quick)",
    )
    parser.add_argument(
        "--tracemalloc", action="store_true", help="servers print tracemalloc diffs to stderr"
    )
    parser.add_argument(
        "--drop-clients",
        action="store_true",
        help="close each chunk of client sockets once settled (counts above the fd limit; "
        "on by itself when a count needs more descriptors than the limit allows)",
    )
    add_json_argument(parser)
    args = parser.parse_args()
    if args.tracemalloc:
        os.environ["BENCH_TRACEMALLOC"] = "1"
    if args.serve:
        import trio

        trio.run(_serve, args.serve, args.port, args.idle_release)
        return
    if args.idle_release is None:
        args.idle_release = 1.0 if args.quick else ServerConfig.idle_release_after
    counts = [200] if args.quick else [int(c) for c in args.counts.split(",")]
    base_counts = [200] if args.quick else [int(c) for c in args.baseline_counts.split(",")]
    warm = 20 if args.quick else WARM_UP
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    drop = args.drop_clients or max(counts) + warm + 256 > hard
    _raise_nofile(min(max(counts), CHUNK) + warm if drop else max(counts) + warm)
    modes = list(MODES)
    try:
        import OpenSSL  # noqa: F401
    except ImportError:
        modes.remove("trio-dtls")
        print("(pyOpenSSL missing: trio.DTLSEndpoint not measured)")
    # Keyed by (mode, idle): idle=True once the server released the idle ciphers.
    per: dict[tuple[str, bool], dict[int, list[float]]] = {}
    total: dict[tuple[str, bool], dict[int, list[float]]] = {}
    details: list[str] = []
    for _ in range(args.runs):
        for mode in modes:
            mode_counts = counts if mode == "dtls13" else base_counts
            res = _measure(mode, mode_counts, warm, args.idle_release, drop)
            for n, idle in sorted(k for k in res if k[0]):
                base = res[0, idle]["rss"]
                rss = res[n, idle]["rss"]
                per.setdefault((mode, idle), {}).setdefault(n, []).append((rss - base) / n / 1024)
                total.setdefault((mode, idle), {}).setdefault(n, []).append(rss / 2**20)
            for (n, idle), fig in sorted(res.items()):
                label = f"n={n}" if n else f"warm-up ({warm})"
                details.append(f"{mode} {label}{' idle' if idle else ''}: " + json.dumps(fig))
    rows: list[Row] = []
    first = counts[0]
    base_vals = per.get(("trio-dtls", False), {}).get(first) if first in base_counts else None
    idle_note = f"idle {2 * args.idle_release + 1:g} s, ciphers released"
    for (mode, idle), by_n in per.items():
        name = "dtls13" if mode == "dtls13" else "trio.DTLSEndpoint"
        if mode == "dtls13":
            name += f" ({idle_note})" if idle else " (right after the handshakes)"
        for n, vals in sorted(by_n.items()):
            # The target is about idle connections: at the server's setting, one idle
            # longer than idle_release_after (ciphers released), not right after its
            # handshake.
            target = (
                f"<= {TARGET_PER_CONN_KIB:g} KiB"
                if mode == "dtls13" and idle and n in (1000, 10000)
                else None
            )
            rows.append(
                make_row(
                    "memory",
                    f"RSS per idle connection at {n:,}, {name}",
                    "KiB",
                    vals,
                    baseline_values=base_vals if mode == "dtls13" and n == first else None,
                    baseline="trio.DTLSEndpoint" if mode == "dtls13" and n == first else None,
                    target=target,
                    met=(sorted(vals)[len(vals) // 2] <= TARGET_PER_CONN_KIB) if target else None,
                )
            )
        for n, vals in sorted(total[mode, idle].items()):
            limit = TARGET_TOTAL_MIB.get(n) if mode == "dtls13" else None
            target = f"<= {limit:g} MiB" if limit is not None else None
            rows.append(
                make_row(
                    "memory",
                    f"total server RSS at {n:,}, {name}",
                    "MiB",
                    vals,
                    target=target,
                    met=(sorted(vals)[len(vals) // 2] <= limit) if limit is not None else None,
                )
            )
    print(markdown_table(rows))
    print()
    for line in details:
        print("    " + line)
    write_json(args.json, rows)


if __name__ == "__main__":
    main()
