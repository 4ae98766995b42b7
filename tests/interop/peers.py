"""Helpers for interop tests: peer subprocesses and our side driven over real UDP."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from cryptography import x509

from dtls13.config import ClientConfig, ServerConfig
from dtls13.connection import Connection
from dtls13.endpoint import CookiePolicy, ServerEndpoint
from dtls13.events import (
    ConnectionTerminated,
    DataReceived,
    Event,
    HandshakeCompleted,
    NewSessionTicketReceived,
)
from dtls13.handshake.constants import NamedGroup
from dtls13.memory import PoolSet
from tests.support.pki import TestPKI
from tests.support.udp_driver import UdpDriver, bound_socket, events_of

HOST = "127.0.0.1"
PEER_GONE_GRACE = 0.5  # seconds we keep pumping once the peer process has exited
# Suite and group names as each peer spells them.
SUITES = {
    "TLS_AES_128_GCM_SHA256": ("TLS13-AES128-GCM-SHA256", "TLS_AES_128_GCM_SHA256"),
    "TLS_AES_256_GCM_SHA384": ("TLS13-AES256-GCM-SHA384", "TLS_AES_256_GCM_SHA384"),
    "TLS_CHACHA20_POLY1305_SHA256": (
        "TLS13-CHACHA20-POLY1305-SHA256",
        "TLS_CHACHA20_POLY1305_SHA256",
    ),
}


@dataclass(frozen=True)
class Case:
    """One cell of the matrix: the suite, the group expected, and how to get there."""

    suite: str
    group: NamedGroup
    ours: dict[str, object] = field(default_factory=dict)  # our config's extra arguments
    peer: tuple[str, ...] = ()  # the peer's extra arguments
    hrr: bool = False  # a HelloRetryRequest for a group is expected
    # Datagrams our side loses (0-based indices, received / sent), to test retransmission.
    lose_in: frozenset[int] = frozenset()
    lose_out: frozenset[int] = frozenset()

    @property
    def id(self) -> str:
        name = f"{self.suite.removeprefix('TLS_')}-{self.group.name}" + ("-hrr" if self.hrr else "")
        if self.ours.get("pad_client_hello"):
            name += "-padded-hello"
        if self.ours.get("grease"):
            name += "-grease"
        lost = [f"in{i}" for i in sorted(self.lose_in)] + [f"out{i}" for i in sorted(self.lose_out)]
        return name + "".join(f"-lose-{x}" for x in lost)

    def side(self, config: ClientConfig | ServerConfig, pools: PoolSet) -> Side:
        return Side(config, pools, drop_in=set(self.lose_in), drop_out=set(self.lose_out))

    def check_padding(self, side: Side, mtu: int) -> None:
        """With pad_client_hello, our first datagram (the ClientHello) filled the MTU."""
        if self.ours.get("pad_client_hello"):
            assert side.lossy.sizes_out[0] == mtu, side.lossy.sizes_out

    def check_losses(self, side: Side) -> None:
        """Every datagram the case meant to lose was lost (the indices still fit)."""
        assert len(side.lossy.dropped) == len(self.lose_in) + len(self.lose_out), side.lossy.dropped


@dataclass(frozen=True)
class WolfSSL:
    """wolfSSL's example programs; run them with cwd=home so ./certs/... resolve."""

    home: Path

    @property
    def client(self) -> Path:
        return self.home / "examples" / "client" / "client"

    @property
    def server(self) -> Path:
        return self.home / "examples" / "server" / "server"


@dataclass(frozen=True)
class Nss:
    """An NSS build's dist/Release directory: bin/tstclnt, bin/certutil, bin/pk12util and
    the shared libraries they need in lib/."""

    home: Path

    @property
    def tstclnt(self) -> Path:
        return self.home / "bin" / "tstclnt"

    @property
    def env(self) -> dict[str, str]:
        """The environment NSS's programs run in: their libraries first."""
        env = dict(os.environ)
        lib = str(self.home / "lib")
        env["LD_LIBRARY_PATH"] = lib + (
            f":{env['LD_LIBRARY_PATH']}" if env.get("LD_LIBRARY_PATH") else ""
        )
        return env

    def run(self, tool: str, *args: str | os.PathLike[str]) -> str:
        """Run one of NSS's tools (certutil, pk12util) to completion; its output."""
        argv = [str(self.home / "bin" / tool), *map(str, args)]
        done = subprocess.run(argv, env=self.env, capture_output=True, timeout=30, check=False)
        out = (done.stdout + done.stderr).decode("utf-8", "replace")
        assert done.returncode == 0, f"{' '.join(argv)} (exit {done.returncode}):\n{out}"
        return out


def free_udp_port() -> int:
    """A UDP port on 127.0.0.1 that nothing is bound to right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def udp_port_sockets(port: int) -> frozenset[int]:
    """The inodes of the sockets on this host bound to UDP `port` (Linux /proc)."""
    suffix = f":{port:04X}"
    found: set[int] = set()
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(table, encoding="ascii") as f:
                rows = [line.split() for line in f][1:]
        except OSError:
            continue
        found.update(int(row[9]) for row in rows if len(row) > 9 and row[1].endswith(suffix))
    return frozenset(found)


def udp_port_bound(port: int) -> bool:
    """Whether some socket on this host is bound to UDP `port` (Linux /proc)."""
    return bool(udp_port_sockets(port))


class Peer:
    """A peer program run as a subprocess; its output is collected in a thread."""

    def __init__(
        self,
        argv: Sequence[str],
        cwd: str | os.PathLike[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.argv = [str(a) for a in argv]
        self.proc = subprocess.Popen(
            self.argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self._out = bytearray()
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        while chunk := self.proc.stdout.read1(65536):
            with self._lock:
                self._out += chunk

    @property
    def output(self) -> str:
        with self._lock:
            return self._out.decode("utf-8", "replace")

    def describe(self) -> str:
        return f"peer {' '.join(self.argv)} (exit {self.proc.poll()}) said:\n{self.output}"

    def wait_output(self, text: str, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while text not in self.output:
            if time.monotonic() > deadline or (
                self.proc.poll() is not None and not self._reader.is_alive()
            ):
                return text in self.output
            time.sleep(0.01)
        return True

    def wait_bound(self, port: int, timeout: float = 5.0) -> None:
        """Wait until the peer listens on `port` (so no first datagram is lost)."""
        deadline = time.monotonic() + timeout
        while not udp_port_bound(port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"peer did not bind UDP port {port}; {self.describe()}")
            time.sleep(0.01)

    def wait_rebound(self, port: int, before: frozenset[int], timeout: float = 5.0) -> None:
        """Wait until the peer listens on `port` with a socket not in `before`: servers that
        close their socket after each connection and bind a new one for the next (wolfSSL's
        example server) lose what arrives in between, and 0-RTT data is not sent again."""
        deadline = time.monotonic() + timeout
        while not udp_port_sockets(port) - before:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"peer did not bind UDP port {port} again; {self.describe()}")
            time.sleep(0.005)

    def write(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def close_stdin(self) -> None:
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            with contextlib.suppress(BrokenPipeError):
                self.proc.stdin.close()

    def wait(self, timeout: float = 5.0) -> int | None:
        """The exit status once the peer has exited and all its output is read, or None."""
        try:
            status = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        self._reader.join(timeout)
        return status

    def __enter__(self) -> Peer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.close_stdin()
        self._reader.join(2)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@dataclass
class Certs:
    """Certificates written for one test: a root and an EC P-256 leaf under it."""

    ca: Path
    cert: Path  # the chain: leaf, intermediate
    key: Path
    leaf: Path  # the leaf alone
    intermediates: Path
    root_pem: bytes
    chain_pem: bytes
    key_pem: bytes
    leaf_cert: x509.Certificate


def write_certs(directory: Path, pki: TestPKI) -> Certs:
    leaf = pki.leaf("ec256", dns_names=("localhost", "example.com"), ips=(HOST,))
    ca = pki.write_root(directory)
    cert, key = leaf.write(directory, "chain")
    leaf_only = directory / "leaf.pem"
    leaf_only.write_bytes(leaf.cert_pem)
    intermediates = directory / "intermediates.pem"
    intermediates.write_bytes(leaf.chain_pem[len(leaf.cert_pem) :])
    return Certs(
        ca,
        cert,
        key,
        leaf_only,
        intermediates,
        pki.root_pem,
        leaf.chain_pem,
        leaf.key_pem,
        leaf.cert,
    )


class LossySocket:
    """A UDP socket that loses the datagrams whose indices (0-based, per direction) it is
    told to, to test retransmission against real peers."""

    def __init__(self, sock: socket.socket, drop_in: set[int], drop_out: set[int]) -> None:
        self.sock = sock
        self.drop_in, self.drop_out = drop_in, drop_out
        self.count_in = self.count_out = 0
        self.dropped: list[str] = []
        self.sizes_out: list[int] = []  # every datagram handed to sendto, lost or not

    def sendto(self, data: Any, addr: Any) -> int:
        index, self.count_out = self.count_out, self.count_out + 1
        self.sizes_out.append(len(data))
        if index in self.drop_out:
            self.dropped.append(f"out#{index} ({len(data)} bytes)")
            return len(data)
        return self.sock.sendto(data, addr)

    def recvfrom_into(self, buf: Any) -> tuple[int, Any]:
        n, addr = self.sock.recvfrom_into(buf)
        index, self.count_in = self.count_in, self.count_in + 1
        if index in self.drop_in:
            self.dropped.append(f"in#{index} ({n} bytes)")
            raise BlockingIOError  # as if nothing had arrived
        return n, addr

    def settimeout(self, value: float) -> None:
        self.sock.settimeout(value)


class Side:
    """Our end of an interop connection: a Connection on a real UDP socket."""

    def __init__(
        self,
        config: ClientConfig | ServerConfig,
        pools: PoolSet,
        *,
        drop_in: set[int] | None = None,
        drop_out: set[int] | None = None,
    ) -> None:
        self.sock = bound_socket(HOST)
        self.port = int(self.sock.getsockname()[1])
        self.conn = Connection(config, pools=pools)
        self.lossy = LossySocket(self.sock, drop_in or set(), drop_out or set())
        self.driver = UdpDriver(self.conn, self.lossy)  # type: ignore[arg-type]

    def connect(self, port: int) -> None:
        self.conn.connect((HOST, port), time.monotonic())
        self.driver.flush()

    def take_ticket(self, peer: Peer) -> None:
        """Wait for the peer's NewSessionTicket and for our ACK of it to leave (after 1/4
        of the retransmission timeout, RFC 9147 §7.1). wolfSSL's example server reads once
        and closes: data of ours that arrives before that ACK can leave the ticket
        unacknowledged at its close, and its next resumption then often drops our 0-RTT
        data."""
        acks = self.conn.statistics().acks_sent
        assert self.pump(lambda: bool(self.tickets()), peer), peer.describe()
        assert self.pump(lambda: self.conn.statistics().acks_sent > acks, peer), peer.describe()

    def pump(
        self,
        until: Callable[[], bool],
        peer: Peer,
        timeout: float = 10.0,
        on_step: Callable[[], Any] | None = None,
    ) -> bool:
        """Drive our connection until `until()` holds; False on timeout, or soon after the
        peer has exited (what it sent last is still taken in)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if until():
                return True
            if peer.proc.poll() is not None:
                deadline = min(deadline, time.monotonic() + PEER_GONE_GRACE)
            self.driver.step(0.01)
            if on_step is not None:
                on_step()
        return until()

    def peer_said(self, text: str, peer: Peer, timeout: float = 10.0) -> bool:
        """Wait for `text` in the peer's output, driving our side meanwhile (so that
        retransmissions go on)."""
        return self.pump(lambda: text in peer.output, peer, timeout)

    def handshake(self, peer: Peer, timeout: float = 10.0) -> HandshakeCompleted:
        ok = self.pump(lambda: self.conn.handshake_complete or self.conn.closed, peer, timeout)
        done = events_of(self.driver, HandshakeCompleted)
        assert ok and done, (
            f"handshake did not complete: {self.conn.terminated}, "
            f"{self.conn.statistics()}; {peer.describe()}"
        )
        return done[0]

    def data(self) -> bytes:
        return b"".join(e.data for e in events_of(self.driver, DataReceived))

    def tickets(self) -> list[NewSessionTicketReceived]:
        return events_of(self.driver, NewSessionTicketReceived)

    def terminated(self) -> ConnectionTerminated | None:
        found = events_of(self.driver, ConnectionTerminated)
        return found[0] if found else None

    def send(self, data: bytes) -> None:
        self.conn.send(data)
        self.driver.flush()

    def close(self) -> None:
        """Close (close_notify if still open), send what is queued, drop the socket."""
        self.conn.close()
        self.driver.flush()
        while (ev := self.conn.next_event()) is not None:
            self.driver.events.append(ev)
        self.sock.close()


class EndpointServer:
    """Our ServerEndpoint on a real UDP socket: every connection it accepts answers each
    (non-early) record of application data with `reply`."""

    def __init__(
        self,
        config: ServerConfig,
        pools: PoolSet,
        reply: bytes,
        cookie_policy: CookiePolicy = "never",
    ) -> None:
        self.sock = bound_socket(HOST)
        self.port = int(self.sock.getsockname()[1])
        self.pools = pools
        self.endpoint = ServerEndpoint(config, pools=pools, cookie_policy=cookie_policy)
        self.reply = reply
        self.conns: list[Connection] = []
        self.events: dict[int, list[Event]] = {}
        self.driver = UdpDriver(self.endpoint, self.sock, after_input=self._serve)

    def flush(self) -> None:
        self.driver.flush()

    def step(self, max_wait: float = 0.01) -> None:
        self.driver.step(max_wait)

    def _serve(self) -> None:
        """New connections, their events, and the reply to their data."""
        for conn in self.endpoint.new_connections():
            self.conns.append(conn)
            self.events[id(conn)] = []
        for conn in self.conns:
            while (ev := conn.next_event()) is not None:
                self.events[id(conn)].append(ev)
                if isinstance(ev, DataReceived) and not ev.early and not conn.closed:
                    conn.send(self.reply)
        self.endpoint.reap()

    def pump(self, until: Callable[[], bool], peer: Peer, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if until():
                return True
            if peer.proc.poll() is not None:
                deadline = min(deadline, time.monotonic() + 0.5)
            self.step()
        return until()

    def completed(self, index: int) -> HandshakeCompleted | None:
        if index >= len(self.conns):
            return None
        done = [e for e in self.events[id(self.conns[index])] if isinstance(e, HandshakeCompleted)]
        return done[0] if done else None

    def data(self, index: int, *, early: bool) -> bytes:
        if index >= len(self.conns):
            return b""
        events = self.events[id(self.conns[index])]
        return b"".join(e.data for e in events if isinstance(e, DataReceived) and e.early == early)

    def answer_strangers(self, count: int) -> None:
        """`count` first ClientHellos from as many other (spoofed) sources, answered and
        dropped here: the gate has sent `count` stateless HelloRetryRequests to others
        before the peer comes."""
        now = time.monotonic()
        client = Connection(ClientConfig(server_name="localhost"), pools=self.pools)
        client.connect((HOST, self.port), now)
        ((lease, _),) = client.datagrams_to_send(now)
        hello = lease.tobytes()
        lease.release()
        client.abandon()
        before = self.endpoint.gate.counters["hello_retry_sent"]
        for i in range(count):
            self.endpoint.receive_datagram(hello, (f"198.51.100.{i % 250 + 1}", 40000 + i), now)
        for lease, _ in self.endpoint.datagrams_to_send(now):
            lease.release()
        assert self.endpoint.gate.counters["hello_retry_sent"] == before + count

    def close(self) -> None:
        self.endpoint.close()
        self.flush()
        self.endpoint.release()
        self.sock.close()


def describe_endpoint(server: EndpointServer, peer: Peer) -> str:
    stats = [c.statistics() for c in server.conns]
    return f"endpoint {server.endpoint.statistics()}, connections {stats}; {peer.describe()}"


def assert_pools_empty(pools: PoolSet) -> None:
    stats = pools.statistics()
    assert pools.in_use == 0, f"leases left in the pools: {stats}"
