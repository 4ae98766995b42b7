"""Helpers to build a client/server pair of sans-IO connections on a simulated network."""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any

from dtls13.alerts import AlertDescription
from dtls13.config import ClientConfig, ServerConfig
from dtls13.connection import Connection
from dtls13.events import (
    ConnectionTerminated,
    DataReceived,
    Event,
    HandshakeCompleted,
    NewSessionTicketReceived,
)
from dtls13.handshake.tickets import Session
from dtls13.memory import PoolSet
from tests.support.netsim import Impairments, SimNetwork
from tests.support.pki import NOW, TestPKI

CLIENT_ADDR = ("10.0.0.1", 40000)
SERVER_ADDR = ("10.0.0.2", 4433)
_PKI: dict[str, TestPKI] = {}


def pki(kind: str = "ec256") -> TestPKI:
    if kind not in _PKI:
        # cryptography builds no CA certificates with ML-DSA keys and its web PKI verifier
        # refuses Ed25519/Ed448 CA keys: those leaves get an ECDSA chain (their own key and
        # CertificateVerify keep the leaf's algorithm).
        ca_kind = "ec256" if kind.startswith(("mldsa", "ed")) else kind
        _PKI[kind] = TestPKI.create(ca_kind, slot=10 + len(_PKI) * 4)
    return _PKI[kind]


def wall_clock() -> datetime.datetime:
    return NOW


def configs(
    kind: str = "ec256", client: dict[str, Any] | None = None, server: dict[str, Any] | None = None
) -> tuple[ClientConfig, ServerConfig]:
    p = pki(kind)
    leaf = p.leaf(kind)
    # No idle release unless a test asks for it: its look-again timer would make the
    # simulated clock jump ahead (SimNetwork steps to the next timer) and change the
    # timelines the seeded tests were written against (tests/connection/test_idle_release.py
    # tests it).
    server = {"idle_release_after": None, **(server or {})}
    client = {"idle_release_after": None, **(client or {})}
    scfg = ServerConfig(
        certificate_chain=leaf.chain_pem, private_key=leaf.key_pem, debug=True, **server
    )
    ccfg = ClientConfig(server_name="localhost", cafile=p.root_pem, debug=True, **client)
    return ccfg, scfg


@dataclass
class Pair:
    net: SimNetwork
    client: Connection
    server: Connection
    pools: PoolSet
    client_events: list[Event] = field(default_factory=list)
    server_events: list[Event] = field(default_factory=list)

    def drain(self) -> None:
        for conn, sink in ((self.client, self.client_events), (self.server, self.server_events)):
            while (ev := conn.next_event()) is not None:
                sink.append(ev)

    def completed(self) -> bool:
        self.drain()
        return any(isinstance(e, HandshakeCompleted) for e in self.client_events) and any(
            isinstance(e, HandshakeCompleted) for e in self.server_events
        )

    def received(self, side: str) -> list[bytes]:
        self.drain()
        events = self.client_events if side == "client" else self.server_events
        return [e.data for e in events if isinstance(e, DataReceived)]

    def terminated(self, side: str) -> ConnectionTerminated | None:
        self.drain()
        events = self.client_events if side == "client" else self.server_events
        return next((e for e in events if isinstance(e, ConnectionTerminated)), None)

    def handshake(self, max_time: float = 300.0) -> bool:
        self.client.connect(SERVER_ADDR, self.net.now)
        return self.net.run(self.completed, max_time=max_time)

    def handshake_fails_with(self, detector: str, alert: AlertDescription) -> None:
        """The handshake ends with `detector` sending `alert`, the other side receiving it."""
        assert not self.handshake(max_time=10)
        self.ends_with_alert(detector, alert)

    def ends_with_alert(self, detector: str, alert: AlertDescription) -> ConnectionTerminated:
        """Both sides end (within 10 s): `detector` sent `alert`, the other side received it.
        Returns how `detector` ended."""
        other = "server" if detector == "client" else "client"
        self.net.run(
            lambda: self.terminated(detector) is not None and self.terminated(other) is not None,
            max_time=self.net.now + 10,
        )
        mine, theirs = self.terminated(detector), self.terminated(other)
        assert mine is not None and mine.alert is alert and not mine.by_peer, mine
        assert theirs is not None and theirs.alert is alert and theirs.by_peer, theirs
        return mine

    def exchange(self, c2s: bytes, s2c: bytes, max_time: float = 300.0) -> bool:
        """Send one record each way, resending (as an application over DTLS must) until
        both arrive; True when each side received only copies of exactly what was sent."""
        skip_s, skip_c = len(self.received("server")), len(self.received("client"))

        def new(side: str) -> list[bytes]:
            return self.received(side)[skip_s if side == "server" else skip_c :]

        def done() -> bool:
            return c2s in new("server") and s2c in new("client")

        deadline = self.net.now + max_time
        while self.net.now < deadline and not done():
            if self.client.closed or self.server.closed:
                return False
            if c2s not in new("server"):
                self.client.send(c2s)
            if s2c not in new("client"):
                self.server.send(s2c)
            self.net.run(done, max_time=self.net.now + 2.0)
        self.net.run(lambda: False, max_time=self.net.now + 0.5)  # late duplicates too
        return done() and set(new("server")) == {c2s} and set(new("client")) == {s2c}

    def close(self) -> None:
        self.client.close()
        self.server.close()
        self.net.flush()
        self.net.run(lambda: False, max_time=self.net.now + 1)


_CONFIGS: dict[str, tuple[ClientConfig, ServerConfig]] = {}


def cached_configs(
    kind: str = "ec256", client: dict[str, Any] | None = None, server: dict[str, Any] | None = None
) -> tuple[ClientConfig, ServerConfig]:
    """Configs reused across handshakes (loading an RSA-4096 key takes ~0.25 s)."""
    key = repr((kind, sorted((client or {}).items()), sorted((server or {}).items())))
    if key not in _CONFIGS:
        _CONFIGS[key] = configs(kind, client, server)
    return _CONFIGS[key]


def make_pair(
    seed: int = 0,
    impairments: Impairments | None = None,
    kind: str = "ec256",
    client: dict[str, Any] | None = None,
    server: dict[str, Any] | None = None,
    pools: PoolSet | None = None,
    *,
    cache: bool = False,
    cfgs: tuple[ClientConfig, ServerConfig] | None = None,
) -> Pair:
    ccfg, scfg = cfgs or (cached_configs if cache else configs)(kind, client, server)
    pools = pools or PoolSet()
    net = SimNetwork(seed, impairments)
    c = Connection(ccfg, pools=pools, wall_clock=wall_clock)
    s = Connection(scfg, pools=pools, peer_address=CLIENT_ADDR, wall_clock=wall_clock)
    net.add(CLIENT_ADDR, c)
    net.add(SERVER_ADDR, s)
    return Pair(net, c, s, pools)


def first_session(cfgs: tuple[ClientConfig, ServerConfig]) -> Session:
    """The session of a full handshake between `cfgs`, once its ticket has come (resume it
    with a server of the same ServerConfig: its ticket keys)."""
    pair = make_pair(0, cfgs=cfgs)
    assert pair.handshake()

    def got_ticket() -> bool:
        pair.drain()
        return any(isinstance(e, NewSessionTicketReceived) for e in pair.client_events)

    assert pair.net.run(got_ticket)
    event = next(e for e in pair.client_events if isinstance(e, NewSessionTicketReceived))
    pair.close()
    return event.session


def shutdown_world(net: SimNetwork, ep: Any, clients: list[Connection]) -> None:
    """Close the clients and a ServerEndpoint, let their close_notify go, and release all
    that is left to send (the pools back to zero)."""
    for c in clients:
        c.close()
    ep.close()
    net.flush()
    net.run(lambda: False, max_time=net.now + 2)
    for c in clients:
        for lease, _ in c.datagrams_to_send(net.now):
            lease.release()
    for lease, _ in ep.datagrams_to_send(net.now):
        lease.release()
    ep.release()
