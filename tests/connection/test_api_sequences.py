"""Any sequence of what an application may call on two connected peers (send, KeyUpdate,
connection ID requests and changes, MTU changes, close), interleaved with the network
delivering, losing, duplicating and reordering datagrams, with time passing, with the
client's NAT rebinding it to a new address and with an attacker racing copies of the
client's datagrams from other addresses: a call
the connection cannot take now raises a clear exception at once (never something else),
nothing escapes a receive or timer path, each side receives only what the other sent,
each record at most once, and every pool is back to zero at the end (hypothesis)."""

from __future__ import annotations

import contextlib
from typing import Any

from hypothesis import HealthCheck, assume, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from dtls13.connection import Connection
from dtls13.endpoint import ServerEndpoint
from dtls13.errors import LocalProtocolError
from dtls13.events import DataReceived
from dtls13.memory import PoolSet
from tests.support.dtls_pair import (
    CLIENT_ADDR,
    SERVER_ADDR,
    Pair,
    cached_configs,
    make_pair,
    shutdown_world,
    wall_clock,
)
from tests.support.netsim import Impairments, SimNetwork

# What an application may be told "not now" or "not that" with.
REFUSALS = (LocalProtocolError, ValueError)
SIDES = st.sampled_from(("client", "server"))


class ConnectedPeers(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.pair: Pair | None = None
        self.sent: dict[str, set[bytes]] = {"client": set(), "server": set()}
        self.got: dict[str, list[bytes]] = {"client": [], "server": []}
        self.counter = 0
        self.steps = 0
        self.client_addr = CLIENT_ADDR

    @initialize(
        seed=st.integers(0, 1000),
        loss=st.sampled_from((0.0, 0.1)),
        duplicate=st.sampled_from((0.0, 0.1)),
        reorder=st.sampled_from((0.0, 0.2)),
        cid=st.booleans(),
    )
    def connect(self, seed: int, loss: float, duplicate: float, reorder: float, cid: bool) -> None:
        both = {"connection_id": 8 if cid else False, "mtu": 1200}
        self.pair = make_pair(
            seed,
            Impairments(loss=loss, duplicate=duplicate, reorder=reorder),
            client=both,
            server={**both, "session_tickets": 0},
            cache=True,
        )
        self.pair.client.connect(SERVER_ADDR, 0.0)
        self.pair.net.run(self.pair.completed, max_time=60)

    def _conn(self, side: str) -> Connection:
        assert self.pair is not None
        return self.pair.client if side == "client" else self.pair.server

    def _call(self, call: Any, *args: Any) -> None:
        with contextlib.suppress(*REFUSALS):  # refused at once, clearly: allowed
            call(*args)

    @rule(side=SIDES, size=st.integers(0, 1500))
    def send(self, side: str, size: int) -> None:
        self.counter += 1
        data = self.counter.to_bytes(4, "big") + bytes(max(0, size - 4))
        conn = self._conn(side)
        try:
            conn.send(data)
        except REFUSALS:
            return
        self.sent[side].add(data)

    @rule(side=SIDES, request_peer=st.booleans())
    def key_update(self, side: str, request_peer: bool) -> None:
        self._call(self._conn(side).key_update, request_peer)

    @rule(side=SIDES, count=st.integers(-1, 20))
    def request_connection_ids(self, side: str, count: int) -> None:
        self._call(self._conn(side).request_connection_ids, count)

    @rule(side=SIDES)
    def use_spare_connection_id(self, side: str) -> None:
        self._call(self._conn(side).use_spare_connection_id)

    @rule(side=SIDES, mtu=st.integers(100, 1500))
    def set_ciphertext_mtu(self, side: str, mtu: int) -> None:
        self._call(self._conn(side).set_ciphertext_mtu, mtu)

    @rule()
    def client_rebinds(self) -> None:
        """The client's NAT maps it to a new port: its datagrams come from there, and what
        is sent to the old one is lost."""
        assert self.pair is not None
        endpoints = self.pair.net.endpoints
        old = self.client_addr
        self.client_addr = (old[0], old[1] + 1)
        endpoints[self.client_addr] = endpoints.pop(old)

    @rule(victim=st.integers(1, 3))
    def race_the_clients_next_datagram(self, victim: int) -> None:
        """A copy of the client's next datagram to the server arrives first, from a
        victim's address (where nothing reads)."""
        assert self.pair is not None
        net = self.pair.net

        def tamper(src: Any, dst: Any, data: bytes) -> bytes | None:
            if src == self.client_addr and dst == SERVER_ADDR:
                net.inject((f"203.0.113.{victim}", 9000), dst, data)
                net.tamper = None
            return data

        net.tamper = tamper

    # Late in a run only: a close ends what the other rules exercise.
    @precondition(lambda self: self.steps > 20)
    @rule(side=SIDES)
    def close(self, side: str) -> None:
        self._conn(side).close()

    @rule(seconds=st.sampled_from((0.005, 0.05, 0.5, 3.0, 30.0)))
    def network(self, seconds: float) -> None:
        pair = self.pair
        assert pair is not None
        pair.net.run(lambda: False, max_time=pair.net.now + seconds)
        self._drain()

    def _drain(self) -> None:
        assert self.pair is not None
        for side in ("client", "server"):
            conn = self._conn(side)
            while (ev := conn.next_event()) is not None:
                if isinstance(ev, DataReceived):
                    self.got[side].append(ev.data)

    @invariant()
    def only_what_was_sent_arrives_and_at_most_once(self) -> None:
        self.steps += 1
        for side, other in (("client", "server"), ("server", "client")):
            got = self.got[side]
            assert set(got) <= self.sent[other]
            assert len(got) == len(set(got))

    def teardown(self) -> None:
        pair = self.pair
        if pair is None:
            return
        pair.client.close()
        pair.server.close()
        pair.net.run(lambda: False, max_time=pair.net.now + 120)
        for conn in (pair.client, pair.server):
            for lease, _ in conn.datagrams_to_send(pair.net.now):
                lease.release()
        self._drain()
        self.only_what_was_sent_arrives_and_at_most_once()
        assert pair.pools.in_use == 0


ConnectedPeers.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_any_sequence_of_application_calls_on_connected_peers = ConnectedPeers.TestCase


class PeersThroughAnEndpoint(ConnectedPeers):
    """The same, with the server's side made and routed by a ServerEndpoint."""

    @initialize(
        seed=st.integers(0, 1000),
        loss=st.sampled_from((0.0, 0.1)),
        duplicate=st.sampled_from((0.0, 0.1)),
        reorder=st.sampled_from((0.0, 0.2)),
        cid=st.booleans(),
        policy=st.sampled_from(("under_load", "always")),
    )
    def connect(  # type: ignore[override]  # one more parameter: the cookie policy
        self, seed: int, loss: float, duplicate: float, reorder: float, cid: bool, policy: str
    ) -> None:
        both = {"connection_id": 8 if cid else False, "mtu": 1200}
        ccfg, scfg = cached_configs("ec256", both, {**both, "session_tickets": 0})
        pools = PoolSet()
        net = SimNetwork(seed, Impairments(loss=loss, duplicate=duplicate, reorder=reorder))
        self.endpoint = ServerEndpoint(
            scfg, pools=pools, cookie_policy=policy, wall_clock=wall_clock
        )  # type: ignore[arg-type]
        client = Connection(ccfg, pools=pools, wall_clock=wall_clock)
        net.add(SERVER_ADDR, self.endpoint)
        net.add(CLIENT_ADDR, client)
        client.connect(SERVER_ADDR, 0.0)
        ep = self.endpoint
        net.run(lambda: client.handshake_complete and CLIENT_ADDR in ep.connections, max_time=60)
        server = ep.connections.get(CLIENT_ADDR)
        self.pair = Pair(net, client, server or client, pools)
        assume(server is not None)  # all of a flight's copies lost: nothing to call

    def teardown(self) -> None:
        pair = self.pair
        if pair is None:
            return
        shutdown_world(pair.net, self.endpoint, [pair.client])
        self._drain()
        self.only_what_was_sent_arrives_and_at_most_once()
        assert pair.pools.in_use == 0


PeersThroughAnEndpoint.TestCase.settings = ConnectedPeers.TestCase.settings
test_any_sequence_of_application_calls_through_a_server_endpoint = PeersThroughAnEndpoint.TestCase
