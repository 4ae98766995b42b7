"""What the harnesses share: deterministic handshakes, the input format, the leak check.

Not part of the installed package. Every harness is a module with ``one_input(data)``
(what atheris calls) and ``main()``; tests/project/test_fuzz.py calls ``one_input`` over the
committed corpus and seeded mutations of it, so CI runs them without atheris.

Inputs that carry several datagrams are a sequence of chunks ``tag:1 length:2 data``
(the last chunk may be short); see ``split_chunks``. Handshakes are made bit-for-bit
reproducible (fixed randomness, fixed key-share seeds, an Ed25519 certificate whose
signatures are deterministic, a fake clock), so datagrams recorded by ``make_corpus.py``
in one process still decrypt and authenticate in the harness process.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import random
import sys
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import NameOID

from dtls13.config import ClientConfig, ServerConfig
from dtls13.connection import Connection
from dtls13.handshake import groups
from dtls13.handshake.state import ServerState
from dtls13.memory import PoolSet

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"

CLIENT_ADDR = ("10.0.0.1", 40000)
SERVER_ADDR = ("10.0.0.2", 4433)
# When the recorded handshakes start; the fuzzed datagrams arrive after the prefix.
START = 1000.0
CLOCK = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)


# -- determinism ------------------------------------------------------------------------------


class DeterministicRandom:
    """A ``random_bytes`` that repeats itself after each ``reset()``."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._rng = random.Random(seed)

    def reset(self) -> None:
        self._rng = random.Random(self.seed)

    def __call__(self, n: int) -> bytes:
        return self._rng.randbytes(n)


_original_generate = groups.generate


def _seed_for(group: int) -> bytes:
    """A fixed private key per group, in the form ``groups.generate(seed=)`` takes."""
    h = hashlib.shake_256(b"dtls13 fuzz key share %d" % group).digest(128)
    if group == groups.NamedGroup.x448:
        return h[:56]
    if group == groups.NamedGroup.x25519:
        return h[:32]
    if group == groups.NamedGroup.X25519MLKEM768:
        return h[:64] + h[64:96]  # ML-KEM seed, then the X25519 key
    if groups.is_kem(group):
        return h[:64] + h[64:95]  # ML-KEM seed, then an ECDH scalar below any order
    return h[:31]


def _seeded_generate(group: int, *, seed: bytes | None = None) -> groups.KeyExchange:
    # The same key share in every run. (The server's ML-KEM encapsulation stays random:
    # cryptography takes no seed for it.)
    try:
        return _original_generate(group, seed=seed if seed is not None else _seed_for(group))
    except (ValueError, TypeError):  # a group whose seed form differs (FFDHE): random
        return _original_generate(group, seed=seed)


@contextlib.contextmanager
def pinned_key_shares() -> Iterator[None]:
    """Within: every key share the library generates is the same in every run. Scoped,
    so that a test process running the harnesses keeps fresh keys everywhere else."""
    previous, groups.generate = groups.generate, _seeded_generate
    try:
        yield
    finally:
        groups.generate = previous


def _certificate() -> tuple[x509.Certificate, ed25519.Ed25519PrivateKey]:
    key = ed25519.Ed25519PrivateKey.from_private_bytes(
        hashlib.sha256(b"dtls13 fuzz server key").digest()
    )
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC))
        .not_valid_after(datetime.datetime(2035, 1, 1, tzinfo=datetime.UTC))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, None)  # Ed25519: deterministic signatures
    )
    return cert, key


_CERT = _certificate()


# -- scenarios: the configurations the recorded handshakes use --------------------------------


class _EveryInputFirst:
    """A 0-RTT replay store that takes every ticket as new: each fuzz input replays the
    same recorded 0-RTT flight into a fresh server, which a real store would refuse after
    the first (it would make every later input a 1-RTT one)."""

    def first_use(self, ticket: bytes, expires: float, now: float) -> bool:
        return True


@dataclass(frozen=True)
class Scenario:
    name: str
    client: dict[str, Any] = field(default_factory=dict)
    server: dict[str, Any] = field(default_factory=dict)
    resume: bool = False  # the client resumes a session from a first handshake
    mtu: int | None = None
    early_data: bytes = b""  # resuming, the client sends this as 0-RTT data


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("x25519-aes128", {"groups": ("x25519",), "key_share_groups": ("x25519",)}),
    Scenario(
        "mlkem-chacha",
        {
            "cipher_suites": ("TLS_CHACHA20_POLY1305_SHA256",),
            "key_share_groups": ("X25519MLKEM768",),
        },
    ),
    Scenario("cookie-hrr", {"key_share_groups": ("x25519",)}, {"require_cookie": True}),
    Scenario(
        "group-hrr",
        {"groups": ("secp384r1", "x25519"), "key_share_groups": ("x25519",)},
        {"groups": ("secp384r1",)},
    ),
    Scenario(
        "small-mtu-aes256",
        {"cipher_suites": ("TLS_AES_256_GCM_SHA384",), "key_share_groups": ("secp256r1",)},
        mtu=256,
    ),
    Scenario(
        "cid",
        {"connection_id": True, "key_share_groups": ("x25519",)},
        {"connection_id": True},
    ),
    Scenario("resumption", {"key_share_groups": ("x25519",)}, resume=True),
    # Added last: a selector's scenario is its value modulo the number of scenarios.
    Scenario(
        "client-auth-extras",
        {
            "key_share_groups": ("x25519",),
            "certificate_chain": [_CERT[0]],
            "private_key": _CERT[1],
            "alpn_protocols": ("fuzz/1", "fuzz/2"),
            "certificate_compression": ("zlib",),
            "srtp_profiles": ("SRTP_AEAD_AES_128_GCM",),
            "record_size_limit": 1024,
        },
        {
            "client_auth": "required",
            "cafile": [_CERT[0]],
            "alpn_protocols": ("fuzz/2",),
            "certificate_compression": ("zlib",),
            "srtp_profiles": ("SRTP_AEAD_AES_128_GCM",),
            "record_size_limit": 2048,
        },
    ),
    Scenario(
        "external-psk",
        {"key_share_groups": ("x25519",), "psk": (b"fuzz psk", b"k" * 32)},
        {"external_psks": {b"fuzz psk": b"k" * 32}},
    ),
    Scenario(
        "zero-rtt",
        {"key_share_groups": ("x25519",)},
        {"max_early_data": 4096, "replay_store": _EveryInputFirst()},
        resume=True,
        early_data=b"early data from the client",
    ),
)


@dataclass
class Configs:
    client: ClientConfig
    server: ServerConfig
    client_random: DeterministicRandom
    server_random: DeterministicRandom

    def reset(self) -> None:
        self.client_random.reset()
        self.server_random.reset()


def make_configs(scenario: Scenario, index: int) -> Configs:
    cert, key = _CERT
    crandom, srandom = DeterministicRandom(2 * index + 1), DeterministicRandom(2 * index + 2)
    # debug=True: an unexpected exception inside the core escapes instead of becoming an
    # internal_error alert, so the fuzzer sees it as the crash it is.
    common: dict[str, Any] = {"idle_release_after": None, "debug": True}
    if scenario.mtu is not None:
        common["mtu"] = scenario.mtu
    server = ServerConfig(
        certificate_chain=[cert],
        private_key=key,
        cookie_secret=b"c" * 32,
        ticket_secret=b"t" * 32,
        random_bytes=srandom,
        **common,
        **scenario.server,
    )
    client = ClientConfig(
        server_name="localhost", verify=False, random_bytes=crandom, **common, **scenario.client
    )
    return Configs(client, server, crandom, srandom)


# -- an in-memory network without loss --------------------------------------------------------


@dataclass
class Delivery:
    at: float
    src: Any
    dst: Any
    data: bytes


def drain(conn: Any, now: float) -> list[tuple[bytes, Any]]:
    """What `conn` wants to send, as bytes (leases released)."""
    out = []
    for lease, addr in conn.datagrams_to_send(now):
        out.append((bytes(lease), addr))
        lease.release()
    return out


def run(
    endpoints: dict[Any, Any],
    until: Callable[[], bool],
    now: float,
    log: list[Delivery],
    max_time: float = 120.0,
    *,
    flush: bool = True,
) -> float:
    """Deliver every datagram (10 ms in flight) and fire timers until `until()`; returns the
    clock. Each delivery is appended to `log`. What the last step produced is never
    delivered: dropped (`flush`), or left to the endpoints, for the next run to deliver."""
    queue: list[Delivery] = []
    deadline = now + max_time
    while not until() and now < deadline:
        for addr, ep in endpoints.items():
            for data, dst in drain(ep, now):
                queue.append(Delivery(now + 0.01, addr, dst, data))
        timers = [t for ep in endpoints.values() if (t := ep.get_timer()) is not None]
        next_at = min([d.at for d in queue] + timers, default=None)
        if next_at is None:
            break
        now = max(now, next_at)
        due = [d for d in queue if d.at <= now]
        queue = [d for d in queue if d.at > now]
        for d in due:
            ep = endpoints.get(d.dst)
            if ep is not None:
                log.append(d)
                ep.receive_datagram(d.data, d.src, now)
        for ep in endpoints.values():
            t = ep.get_timer()
            if t is not None and t <= now:
                ep.handle_timer(now)
    if flush:
        for ep in endpoints.values():
            drain(ep, now)
    return now


def events(conn: Connection) -> list[Any]:
    out = []
    while (ev := conn.next_event()) is not None:
        out.append(ev)
    return out


@dataclass
class Recording:
    """One deterministic handshake and what followed it, as each side received it."""

    scenario: Scenario
    configs: Configs
    to_server: list[Delivery]
    to_client: list[Delivery]
    server_prefix: int  # to_server[:server_prefix] bring a server to its first flight
    client_prefix: int  # to_client[:client_prefix] bring a client to CONNECTED


def _session(configs: Configs, pools: PoolSet) -> Any:
    from dtls13.events import NewSessionTicketReceived

    client = Connection(configs.client, pools=pools, wall_clock=lambda: CLOCK)
    server = Connection(
        configs.server, pools=pools, peer_address=CLIENT_ADDR, wall_clock=lambda: CLOCK
    )
    client.connect(SERVER_ADDR, 0.0)
    seen: list[Any] = []
    run(
        {CLIENT_ADDR: client, SERVER_ADDR: server},
        lambda: (
            bool(seen.extend(events(client)) or False)
            or any(isinstance(e, NewSessionTicketReceived) for e in seen)
        ),
        0.0,
        [],
    )
    ticket = next(e for e in seen if isinstance(e, NewSessionTicketReceived))
    for conn in (client, server):
        conn.close()
        drain(conn, 0.0)
    return ticket.session


def record(index: int, pools: PoolSet | None = None) -> Recording:
    """Scenario `index`'s handshake, some data both ways, a KeyUpdate and close_notify."""
    with pinned_key_shares():
        return _record(index, pools)


def _record(index: int, pools: PoolSet | None) -> Recording:
    import dataclasses

    scenario = SCENARIOS[index]
    pools = pools or PoolSet()
    configs = make_configs(scenario, index)
    if scenario.resume:
        session = _session(configs, pools)
        configs.client = dataclasses.replace(configs.client, session=session)
    configs.reset()
    client, server = new_client(configs, pools), new_server(configs, pools)
    log: list[Delivery] = []
    ends = {CLIENT_ADDR: client, SERVER_ADDR: server}
    marks: dict[str, int] = {}

    def mark() -> bool:
        to_server = sum(1 for d in log if d.dst == SERVER_ADDR)
        to_client = len(log) - to_server
        if "server" not in marks and server.state in (
            ServerState.WAIT_CLIENT_FINISHED,
            ServerState.WAIT_CLIENT_CERTIFICATE,
            ServerState.CONNECTED,
        ):
            marks["server"] = to_server
        if "client" not in marks and client.handshake_complete:
            marks["client"] = to_client
        return client.handshake_complete and server.handshake_complete

    start_client(client, scenario)
    # flush=False: the server's ACK of the client's Finished (and its tickets), sent as the
    # handshake completes, is delivered; lost, the client's KeyUpdate would wait for it.
    now = run(ends, mark, START, log, flush=False)
    assert client.handshake_complete and server.handshake_complete, scenario.name
    early = server.stats["early_data_bytes_in"]
    assert early == len(scenario.early_data), f"{scenario.name}: 0-RTT not taken ({early} B)"
    client.send(b"ping from the client")
    server.send(b"pong from the server")
    now = run(ends, lambda: False, now, log, max_time=1.0, flush=False)
    client.key_update(request_peer=True)
    client.send(b"after the key update")
    now = run(ends, lambda: False, now, log, max_time=2.0, flush=False)
    server.close()
    client.close()
    run(ends, lambda: False, now, log, max_time=1.0)
    drain(client, now)
    drain(server, now)
    assert pools.in_use == 0, f"{scenario.name}: the recording itself leaked"
    return Recording(
        scenario,
        configs,
        [d for d in log if d.dst == SERVER_ADDR],
        [d for d in log if d.dst == CLIENT_ADDR],
        marks["server"],
        marks["client"],
    )


def start_client(client: Connection, scenario: Scenario) -> None:
    """Connect, and send the scenario's 0-RTT data when the resumed session allows it."""
    client.connect(SERVER_ADDR, START)
    if scenario.early_data and client.early_data_possible:
        client.send_early_data(scenario.early_data)


def new_client(configs: Configs, pools: PoolSet) -> Connection:
    return Connection(configs.client, pools=pools, wall_clock=lambda: CLOCK)


def new_server(configs: Configs, pools: PoolSet) -> Connection:
    return Connection(
        configs.server, pools=pools, peer_address=CLIENT_ADDR, wall_clock=lambda: CLOCK
    )


# -- the input format -------------------------------------------------------------------------


def split_chunks(data: bytes, limit: int = 64) -> Iterator[tuple[int, bytes]]:
    """(tag, payload) pairs from ``tag:1 length:2 payload`` chunks, at most `limit`."""
    offset = 0
    for _ in range(limit):
        if offset >= len(data):
            return
        tag = data[offset]
        length = int.from_bytes(data[offset + 1 : offset + 3], "big")
        yield tag, data[offset + 3 : offset + 3 + length]
        offset += 3 + length


def join_chunks(chunks: list[tuple[int, bytes]]) -> bytes:
    return b"".join(bytes([tag]) + len(p).to_bytes(2, "big") + p for tag, p in chunks)


# -- the leak check ---------------------------------------------------------------------------


class LeakError(AssertionError):
    """Pooled memory still lent out after everything was closed."""


def check_pools(pools: PoolSet, what: str) -> None:
    """Fail loudly unless every slab of `pools` is back."""
    if pools.in_use:
        report = pools.leak_report()
        raise LeakError(f"{what}: {pools.in_use} leases still in use: {report}")


# -- running under atheris --------------------------------------------------------------------


def atheris_main(one_input: Callable[[bytes], None]) -> None:
    """``python fuzz/<harness>.py [libFuzzer options] [corpus dirs]``."""
    import gc

    import atheris

    # Coverage feedback from dtls13's Python code (and the harnesses'); the Cython module
    # is compiled C that atheris does not see, exercised through the Python API instead.
    for obj in gc.get_objects():
        module = getattr(obj, "__module__", None) or ""
        if isinstance(obj, types.FunctionType) and module.startswith(("dtls13", "fuzz_")):
            atheris.instrument_func(obj)
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


def corpus(name: str) -> list[bytes]:
    """The committed seeds of harness `name`, in a stable order."""
    folder = CORPUS / name
    return [p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()]


def mutate(rng: random.Random, data: bytes) -> bytes:
    """One libFuzzer-like mutation: flip, set, insert, delete, duplicate or splice bytes."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(7)
        if not buf or op == 0:
            buf[rng.randint(0, len(buf)) : rng.randint(0, len(buf))] = rng.randbytes(
                rng.randint(1, 8)
            )
        elif op == 1:
            buf[rng.randrange(len(buf))] ^= 1 << rng.randrange(8)
        elif op == 2:
            buf[rng.randrange(len(buf))] = rng.choice((0, 1, 0x7F, 0x80, 0xFF, rng.randrange(256)))
        elif op == 3:
            start = rng.randrange(len(buf))
            del buf[start : start + rng.randint(1, 16)]
        elif op == 4:
            start = rng.randrange(len(buf))
            piece = buf[start : start + rng.randint(1, 32)]
            at = rng.randint(0, len(buf))
            buf[at:at] = piece
        elif op == 5:
            del buf[rng.randint(0, len(buf)) :]
        else:
            i = rng.randrange(len(buf))
            value = rng.choice((0, 1, 0xFF, 0xFFFF, 0x4000, rng.randrange(0x10000)))
            buf[i : i + 2] = value.to_bytes(2, "big")
    return bytes(buf)
