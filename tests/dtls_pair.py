"""Helpers to build a client/server pair of sans-IO connections on a simulated network."""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any

from netsim import Impairments, SimNetwork
from pki import NOW, TestPKI

from dtls13.config import ClientConfig, ServerConfig
from dtls13.connection import Connection
from dtls13.events import ConnectionTerminated, DataReceived, Event, HandshakeCompleted
from dtls13.memory import PoolSet

CLIENT_ADDR = ("10.0.0.1", 40000)
SERVER_ADDR = ("10.0.0.2", 4433)
_PKI: dict[str, TestPKI] = {}


def pki(kind: str = "ec256") -> TestPKI:
    if kind not in _PKI:
        _PKI[kind] = TestPKI.create(kind, slot=10 + len(_PKI) * 4)
    return _PKI[kind]


def wall_clock() -> datetime.datetime:
    return NOW


def configs(
    kind: str = "ec256", client: dict[str, Any] | None = None, server: dict[str, Any] | None = None
) -> tuple[ClientConfig, ServerConfig]:
    p = pki(kind)
    leaf = p.leaf(kind)
    scfg = ServerConfig(
        certificate_chain=leaf.chain_pem, private_key=leaf.key_pem, debug=True, **(server or {})
    )
    ccfg = ClientConfig(server_name="localhost", cafile=p.root_pem, debug=True, **(client or {}))
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

    def close(self) -> None:
        self.client.close()
        self.server.close()
        self.net.flush()
        self.net.run(lambda: False, max_time=self.net.now + 1)


def make_pair(
    seed: int = 0,
    impairments: Impairments | None = None,
    kind: str = "ec256",
    client: dict[str, Any] | None = None,
    server: dict[str, Any] | None = None,
    pools: PoolSet | None = None,
) -> Pair:
    ccfg, scfg = configs(kind, client, server)
    pools = pools or PoolSet()
    net = SimNetwork(seed, impairments)
    c = Connection(ccfg, pools=pools, wall_clock=wall_clock)
    s = Connection(scfg, pools=pools, peer_address=CLIENT_ADDR, wall_clock=wall_clock)
    net.add(CLIENT_ADDR, c)
    net.add(SERVER_ADDR, s)
    return Pair(net, c, s, pools)
