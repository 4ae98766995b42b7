"""Handshake speed: dtls13 against trio.DTLSEndpoint (DTLS 1.2 over pyOpenSSL), in one run.

Over sockets: the server runs in a separate process (``--serve MODE``); this process runs 1
or 8 concurrent clients, each repeatedly doing a full handshake and closing on a fresh socket.
Figures: handshakes per second (wall clock), the server's CPU time per handshake (its
utime + stime from /proc/PID/stat over the measured window, divided by the handshakes
completed) and the clients' (this process's CPU time over the same window). Each process
is one thread: with the two sides on two cores, the rate cannot pass one core over the
dearer side's CPU per handshake. Both use an ECDSA P-256 self-signed certificate from
dtls13.certgen; x25519 is the key exchange (also X25519MLKEM768 for dtls13, and resumed
handshakes from a ticket).

Like for like: neither client verifies the certificate (trio's pyOpenSSL client context does
not by default; ours gets ``verify=False`` here). trio.DTLSEndpoint's server always makes a
HelloVerifyRequest cookie round trip; ours by default only under load, so ours is also
measured with ``cookie_policy="always"``.

In process: the sans-IO ServerEndpoint driven by sans-IO client Connections, with
time.process_time around the server's calls only: the noise-free server CPU per handshake,
next to the cryptographic floor measured in the same run (x25519 keygen + exchange, ECDSA
P-256 sign, the HMACs of the key schedule, four epochs' AEAD and record-number-mask keys,
sealing the server's flight and opening the client's Finished).

    python benchmarks/bench_handshake.py [--runs 3] [--seconds 2] [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import trio

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import Row, add_json_argument, make_row, markdown_table, write_json

from dtls13 import ClientConfig, DTLSEndpoint, ServerConfig
from dtls13.certgen import make_self_signed
from dtls13.connection import Connection
from dtls13.endpoint import CookiePolicy, DoSProtectionConfig, ServerEndpoint
from dtls13.events import HandshakeCompleted, NewSessionTicketReceived
from dtls13.memory import PoolSet

NAME = "handshake"
SERVER_MODES = ("dtls13", "dtls13-cookie", "trio-dtls")
CPU_TARGET_MS = 0.35  # server CPU per full handshake over sockets
FLOOR_TARGET = 2.0  # sans-IO server CPU per full handshake, times the crypto floor
FLOOR_CASES = ("full", "full, padded hello")
RATE_TARGET = 1.5
# Every client comes from 127.0.0.1: lift the per-source rate limits (not what is measured).
BENCH_DOS = DoSProtectionConfig(
    datagrams_per_second=1e9, datagram_burst=1e9, bytes_per_second=1e12, byte_burst=1e12
)
CLK_TCK = os.sysconf("SC_CLK_TCK")


def _server_config(cert: Any, key: Any) -> ServerConfig:
    # Defaults otherwise (one session ticket per handshake, as OpenSSL issues one too).
    return ServerConfig(certificate_chain=[cert], private_key=key)


def _client_config(
    group: str = "x25519", session: Any = None, *, pad: bool = False
) -> ClientConfig:
    return ClientConfig(
        verify=False,
        groups=[group],
        key_share_groups=[group],
        session=session,
        pad_client_hello=pad,
    )


# -- servers (run with --serve MODE) ------------------------------------------------------


async def _serve(mode: str, port: int) -> None:
    sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
    await sock.bind(("127.0.0.1", port))
    cert, key = make_self_signed(["localhost"])
    if mode.startswith("dtls13"):
        policy = "always" if mode == "dtls13-cookie" else "under_load"

        async def wait_close(channel: Any) -> None:
            async for _ in channel:
                pass

        endpoint = DTLSEndpoint(sock, dos=BENCH_DOS, cookie_policy=policy)
        async with endpoint, trio.open_nursery() as nursery:
            await nursery.start(endpoint.serve, _server_config(cert, key), wait_close)
            print("ready", flush=True)
        return
    from OpenSSL import SSL, crypto

    ctx = SSL.Context(SSL.DTLS_METHOD)
    ctx.use_certificate(crypto.X509.from_cryptography(cert))
    ctx.use_privatekey(crypto.PKey.from_cryptography_key(key))

    async def handshake_only(channel: Any) -> None:
        with contextlib.suppress(trio.BrokenResourceError):
            await channel.do_handshake()
        channel.close()

    with trio.DTLSEndpoint(sock) as trio_endpoint:
        async with trio.open_nursery() as nursery:
            await nursery.start(trio_endpoint.serve, ctx, handshake_only)
            print("ready", flush=True)


# -- clients ------------------------------------------------------------------------------


async def _new_socket() -> trio.socket.SocketType:
    sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
    await sock.bind(("127.0.0.1", 0))
    return sock


async def _dtls13_handshake(addr: Any, config: ClientConfig) -> Any:
    """One full (or resumed) handshake on a fresh socket, then close; the session, if any."""
    endpoint = DTLSEndpoint(await _new_socket())
    try:
        channel = endpoint.connect(addr, config)
        with trio.fail_after(10):
            await channel.do_handshake()
        if config.session is not None and not channel.resumed:
            raise RuntimeError("the handshake did not resume the session")
        session = channel.session
        await channel.aclose()
        return session
    finally:
        endpoint.close()


async def _trio_handshake(addr: Any, _config: Any) -> None:
    from OpenSSL import SSL

    with trio.DTLSEndpoint(await _new_socket()) as endpoint:
        channel = endpoint.connect(addr, SSL.Context(SSL.DTLS_METHOD))
        with trio.fail_after(10):
            await channel.do_handshake()
        channel.close()


async def _session(addr: Any, group: str) -> Any:
    """A session ticket from one full handshake (it comes just after the handshake)."""
    endpoint = DTLSEndpoint(await _new_socket())
    try:
        channel = endpoint.connect(addr, _client_config(group))
        await channel.do_handshake()
        with trio.fail_after(5):
            while channel.session is None:
                await trio.sleep(0.001)
        session = channel.session
        await channel.aclose()
        return session
    finally:
        endpoint.close()


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


async def _measure(
    pid: int, addr: Any, one: Callable[[Any, Any], Any], config: Any, clients: int, seconds: float
) -> tuple[float, float, float]:
    """(handshakes per second, server CPU ms and client CPU ms per handshake) of `clients`
    concurrent loops."""
    count = 0
    stop = False

    async def loop() -> None:
        nonlocal count
        while not stop:
            await one(addr, config)
            count += 1

    async with trio.open_nursery() as nursery:
        for _ in range(clients):
            nursery.start_soon(loop)
        await trio.sleep(min(0.5, seconds / 2))  # warm up
        count, cpu0, t0 = 0, _cpu_seconds(pid), time.perf_counter()
        own0 = time.process_time()
        await trio.sleep(seconds)
        done, cpu1, t1 = count, _cpu_seconds(pid), time.perf_counter()
        own1 = time.process_time()
        stop = True
    per = 1000 / max(1, done)
    return done / (t1 - t0), (cpu1 - cpu0) * per, (own1 - own0) * per


def _with_server(mode: str, work: Callable[[int, Any], Any]) -> Any:
    port = 20000 + (time.monotonic_ns() // 1000) % 20000
    proc = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "--serve", mode, "--port", str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError(f"{mode} server did not start")
        return trio.run(work, proc.pid, ("127.0.0.1", port))
    finally:
        proc.kill()
        proc.wait()


def _socket_cases(mode: str, seconds: float) -> Callable[[int, Any], Any]:
    """The client cases one server of `mode` is measured with, as
    {case: (rate, server CPU, client CPU)}."""

    async def work(pid: int, addr: Any) -> dict[str, tuple[float, float, float]]:
        out: dict[str, tuple[float, float, float]] = {}
        if mode == "trio-dtls":
            for n in (1, 8):
                out[f"full, {n} clients"] = await _measure(
                    pid, addr, _trio_handshake, None, n, seconds
                )
            return out
        counts = (1, 8) if mode == "dtls13" else (8,)
        for n in counts:
            out[f"full, {n} clients"] = await _measure(
                pid, addr, _dtls13_handshake, _client_config(), n, seconds
            )
        if mode == "dtls13":
            # A ClientHello padded to a full datagram pays for the server's flight under the
            # 3x rule: no cookie round trip.
            out["full, padded hello, 8 clients"] = await _measure(
                pid, addr, _dtls13_handshake, _client_config(pad=True), 8, seconds
            )
            out["X25519MLKEM768 full, 8 clients"] = await _measure(
                pid, addr, _dtls13_handshake, _client_config("X25519MLKEM768"), 8, seconds
            )
            session = await _session(addr, "x25519")
            out["resumed, 8 clients"] = await _measure(
                pid, addr, _dtls13_handshake, _client_config(session=session), 8, seconds
            )
        return out

    return work


# -- in process: sans-IO server CPU and the cryptographic floor --------------------------


class _SansIO:
    """A ServerEndpoint and fresh client Connections; only the server's calls are timed."""

    SERVER = ("127.0.0.1", 4433)

    def __init__(self, policy: CookiePolicy, config: ServerConfig) -> None:
        self.pools = PoolSet()
        self.endpoint = ServerEndpoint(
            config, pools=self.pools, dos=BENCH_DOS, cookie_policy=policy
        )
        self.server_cpu = 0.0
        self.now = 1.0
        self.session: Any = None

    def _server(self, datagrams: list[bytes], addr: Any) -> list[bytes]:
        t0 = time.process_time()
        for data in datagrams:
            self.endpoint.receive_datagram(data, addr, self.now)
        self.endpoint.new_connections()
        self.endpoint.reap()
        out = []
        for lease, _ in self.endpoint.datagrams_to_send(self.now):
            out.append(lease.tobytes())
            lease.release()
        self.server_cpu += time.process_time() - t0
        return out

    def handshake(self, i: int, config: ClientConfig) -> None:
        self.now += 0.001
        addr = ("127.0.0.1", 10000 + i % 50000)
        client = Connection(config, pools=self.pools)
        client.connect(self.SERVER, self.now)
        resumed = False
        for _ in range(10):
            out = [lease for lease, _ in client.datagrams_to_send(self.now)]
            sent = [lease.tobytes() for lease in out]
            for lease in out:
                lease.release()
            replies = self._server(sent, addr)
            for data in replies:
                client.receive_datagram(data, self.SERVER, self.now)
            while (ev := client.next_event()) is not None:
                if isinstance(ev, NewSessionTicketReceived):
                    self.session = ev.session
                elif isinstance(ev, HandshakeCompleted):
                    resumed = ev.resumed
            if client.handshake_complete and not sent and not replies:
                break
        if not client.handshake_complete:
            raise RuntimeError("sans-IO handshake did not complete")
        if resumed != (config.session is not None):
            raise RuntimeError("sans-IO handshake did not resume as expected")
        client.close()
        closing = [lease for lease, _ in client.datagrams_to_send(self.now)]
        self._server([lease.tobytes() for lease in closing], addr)
        for lease in closing:
            lease.release()
        self.pools.release_owner(client.owner)

    def run(self, n: int, config: Callable[[], ClientConfig]) -> float:
        """Server CPU ms per handshake over `n` handshakes (after a short warm-up)."""
        for i in range(5):
            self.handshake(i, config())
        self.server_cpu = 0.0
        for i in range(n):
            self.handshake(i, config())
        return self.server_cpu * 1000 / n


def _crypto_floor(n: int, key: Any) -> float:
    """ms of the cryptographic work a full x25519 + ECDSA P-256 server handshake needs."""
    from _hashlib import hmac_digest  # OpenSSL's one-shot HMAC, as hmac.digest uses

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, x25519
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    peer = x25519.X25519PrivateKey.generate().public_key().public_bytes_raw()
    ecdsa = ec.ECDSA(hashes.SHA256())
    content = b" " * 64 + b"TLS 1.3, server CertificateVerify\x00" + bytes(32)
    flight, aad = bytes(1000), bytes(13)

    def one() -> None:
        private = x25519.X25519PrivateKey.generate()
        private.public_key().public_bytes_raw()
        secret = private.exchange(x25519.X25519PublicKey.from_public_bytes(peer))
        key.sign(content, ecdsa)
        for _ in range(24):  # the key schedule, traffic keys and Finished MACs
            secret = hmac_digest(secret, bytes(45), "sha256")
        for _ in range(4):  # handshake and application keys, both directions
            aead = AESGCM(secret[:16])
            Cipher(algorithms.AES(secret[:16]), modes.ECB()).encryptor().update(secret[:16])
        nonce = secret[:12]
        aead.encrypt(nonce, flight, aad)
        aead.decrypt(nonce, aead.encrypt(nonce, bytes(40), aad), aad)
        hashlib.sha256(flight).digest()

    one()
    t0 = time.process_time()
    for _ in range(n):
        one()
    return (time.process_time() - t0) * 1000 / n


def _in_process(runs: int, n: int) -> dict[str, list[float]]:
    cert, key = make_self_signed(["localhost"])
    figures: dict[str, list[float]] = {}
    config = _server_config(cert, key)  # one config: its ticket keys open every ticket
    full = _SansIO("under_load", config)
    cookie = _SansIO("always", config)
    mlkem = _SansIO("under_load", config)
    padded = _SansIO("under_load", config)
    resumed = _SansIO("under_load", config)
    full.handshake(0, _client_config())
    session = full.session
    for _ in range(runs):  # interleaved so drift hits every case alike
        cases: tuple[tuple[str, _SansIO, Callable[[], ClientConfig]], ...] = (
            ("full", full, _client_config),
            ("full, padded hello", padded, lambda: _client_config(pad=True)),
            ("full, cookie=always", cookie, _client_config),
            ("X25519MLKEM768 full", mlkem, lambda: _client_config("X25519MLKEM768")),
            ("resumed", resumed, lambda: _client_config(session=session)),
        )
        for case, bench, make_config in cases:
            figures.setdefault(case, []).append(bench.run(n, make_config))
        figures.setdefault("floor", []).append(_crypto_floor(n, key))
    for bench in (full, padded, cookie, mlkem, resumed):
        bench.endpoint.close()
        for lease, _ in bench.endpoint.datagrams_to_send(bench.now):
            lease.release()
        bench.endpoint.release()
    return figures


# -- main ---------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=2.0, help="measured window per case")
    parser.add_argument("--handshakes", type=int, default=300, help="per in-process run")
    parser.add_argument("--quick", action="store_true", help="one short run of everything")
    parser.add_argument("--serve", choices=SERVER_MODES)
    parser.add_argument("--port", type=int, default=0)
    add_json_argument(parser)
    args = parser.parse_args()
    if args.serve:
        trio.run(_serve, args.serve, args.port)
        return
    if args.quick:
        args.runs, args.seconds, args.handshakes = 1, 0.5, 40
    modes = list(SERVER_MODES)
    try:
        import OpenSSL  # noqa: F401
    except ImportError:
        modes.remove("trio-dtls")
        print("(pyOpenSSL missing: trio.DTLSEndpoint not measured)")

    sock: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
    for _ in range(args.runs):
        for mode in modes:  # interleaved so drift hits every mode alike
            for case, figure in _with_server(mode, _socket_cases(mode, args.seconds)).items():
                sock.setdefault((mode, case), []).append(figure)
    local = _in_process(args.runs, args.handshakes)

    rows: list[Row] = []
    trio_rate = {c: [f[0] for f in v] for (m, c), v in sock.items() if m == "trio-dtls"}
    trio_cpu = {c: [f[1] for f in v] for (m, c), v in sock.items() if m == "trio-dtls"}
    trio_client = {c: [f[2] for f in v] for (m, c), v in sock.items() if m == "trio-dtls"}
    trio_name = "trio.DTLSEndpoint"
    for (mode, case), figures in sock.items():
        label = {"dtls13": "dtls13", "dtls13-cookie": "dtls13 cookie=always"}.get(mode, trio_name)
        rates, cpus = [f[0] for f in figures], [f[1] for f in figures]
        client_cpus = [f[2] for f in figures]
        # A padded hello is a client option: its baseline is trio.DTLSEndpoint's full case.
        base_case = case.replace("padded hello, ", "")
        base_rate = trio_rate.get(base_case) if mode != "trio-dtls" else None
        base_cpu = trio_cpu.get(base_case) if mode != "trio-dtls" else None
        base_client = trio_client.get(base_case) if mode != "trio-dtls" else None
        target = met = None
        if mode == "dtls13" and case == "full, 8 clients" and base_rate:
            target = f">= {RATE_TARGET}x"
            met = statistics.median(rates) >= RATE_TARGET * statistics.median(base_rate)
        rows.append(
            make_row(
                NAME,
                f"{case}, {label}",
                "hs/s",
                rates,
                baseline_values=base_rate,
                baseline=trio_name if base_rate else None,
                target=target,
                met=met,
            )
        )
        cpu_target = cpu_met = None
        if mode == "dtls13" and case.startswith("full"):
            cpu_target = f"<= {CPU_TARGET_MS} ms"
            cpu_met = statistics.median(cpus) <= CPU_TARGET_MS
        rows.append(
            make_row(
                NAME,
                f"server CPU/hs, {case}, {label}",
                "ms",
                cpus,
                baseline_values=base_cpu,
                baseline=trio_name if base_cpu else None,
                target=cpu_target,
                met=cpu_met,
            )
        )
        rows.append(
            make_row(
                NAME,
                f"client CPU/hs, {case}, {label}",
                "ms",
                client_cpus,
                baseline_values=base_client,
                baseline=trio_name if base_client else None,
            )
        )
    floor = local.pop("floor")
    for case, values in local.items():
        rows.append(
            make_row(
                NAME,
                f"server CPU/hs in process (sans-IO), {case}",
                "ms",
                values,
                baseline_values=floor,
                baseline="crypto floor",
                target=f"<= {FLOOR_TARGET}x" if case in FLOOR_CASES else None,
                met=(
                    statistics.median(values) <= FLOOR_TARGET * statistics.median(floor)
                    if case in FLOOR_CASES
                    else None
                ),
            )
        )
    rows.append(make_row(NAME, "crypto floor of a full x25519 + P-256 handshake", "ms", floor))
    print(
        "Neither client verifies the server certificate; trio.DTLSEndpoint (DTLS 1.2) always "
        "does a HelloVerifyRequest round trip, dtls13 by default only under load."
    )
    print(markdown_table(rows))
    write_json(args.json, rows)


if __name__ == "__main__":
    main()
