"""Before a client's address is proven, the server sends it at most three times the bytes it
received from it, retransmissions included (RFC 9147 §5.1): a spoofed ClientHello cannot turn
the server into an amplifier aimed at the address it names."""

from __future__ import annotations

import functools
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dtls13.connection import Connection
from dtls13.endpoint import DoSProtectionConfig, ServerEndpoint
from dtls13.memory import PoolSet
from tests.support.dtls_pair import SERVER_ADDR, cached_configs, shutdown_world, wall_clock
from tests.support.netsim import SimNetwork

VICTIM = ("192.0.2.200", 5353)


def _client_hello(client: dict[str, Any] | None = None, kind: str = "ec256") -> list[bytes]:
    """A genuine first ClientHello's datagrams (what an attacker copies and spoofs)."""
    ccfg, _ = cached_configs(kind, client)
    pools = PoolSet()
    c = Connection(ccfg, pools=pools, wall_clock=wall_clock)
    c.connect(SERVER_ADDR, 0.0)
    out = c.datagrams_to_send(0.0)
    datagrams = [bytes(lease) for lease, _ in out]
    for lease, _ in out:
        lease.release()
    c.abandon()
    pools.release_owner(c.owner)
    return datagrams


def _bytes_drawn(
    hello: list[bytes], kind: str = "ec256", seconds: float = 130.0, **endpoint: Any
) -> tuple[int, ServerEndpoint]:
    """Bytes the server sends to the spoofed address over `seconds` after one hello."""
    _, scfg = cached_configs(kind)
    pools = PoolSet()
    ep = ServerEndpoint(scfg, pools=pools, wall_clock=wall_clock, **endpoint)
    sent = 0
    now = 0.0
    for datagram in hello:
        ep.receive_datagram(datagram, VICTIM, now)
    while now <= seconds:
        for lease, addr in ep.datagrams_to_send(now):
            assert addr == VICTIM
            sent += len(lease)
            lease.release()
        t = ep.get_timer()
        if t is None or t > seconds:
            break
        now = max(now, t)
        ep.handle_timer(now)
    ep.close()
    for lease, _ in ep.datagrams_to_send(now):
        lease.release()
    ep.release()
    assert pools.in_use == 0
    return sent, ep


@pytest.mark.parametrize("kind", ["ec256", "rsa4096"])
@pytest.mark.parametrize("policy", ["under_load", "never"])
def test_a_spoofed_client_hello_draws_at_most_three_times_its_size(kind: str, policy: str) -> None:
    hello = _client_hello(kind=kind)
    assert len(hello) == 1 and len(hello[0]) < 300
    sent, ep = _bytes_drawn(hello, kind, cookie_policy=policy)
    assert sent <= 3 * len(hello[0]), (sent, len(hello[0]))
    if policy == "under_load":  # a HelloRetryRequest with a cookie, small enough
        assert sent > 0 and ep.gate.counters["hello_retry_sent"] >= 1
    else:  # the flight never fits: nothing goes out until the address pays for it
        assert sent == 0


def test_a_large_post_quantum_hello_gets_the_flight_without_a_cookie() -> None:
    """A ClientHello big enough to cover our flight three times over needs no cookie round
    trip: the budget rule decides, not a blanket policy."""
    hello = _client_hello({"key_share_groups": ["X25519MLKEM768"]})
    size = sum(map(len, hello))
    sent, ep = _bytes_drawn(hello, seconds=0.5)
    assert ep.gate.counters["hello_retry_sent"] == 0
    assert size < sent <= 3 * size


def test_without_cookies_a_genuine_client_still_completes_within_the_budget() -> None:
    """cookie_policy="never": the flight waits until the client's retransmitted
    ClientHellos have paid for it, then the handshake completes."""
    ccfg, scfg = cached_configs()
    pools = PoolSet()
    net = SimNetwork(7)
    ep = ServerEndpoint(scfg, pools=pools, cookie_policy="never", wall_clock=wall_clock)
    net.add(SERVER_ADDR, ep)
    client = Connection(ccfg, pools=pools, wall_clock=wall_clock)
    addr = ("10.3.0.1", 4000)
    net.add(addr, client)
    received = sent = 0

    def count(src: Any, dst: Any, data: bytes) -> bytes:
        nonlocal received, sent
        conn = ep.connections.get(addr)
        if conn is None or not conn.address_validated:
            if dst == SERVER_ADDR:
                received += len(data)
            else:
                sent += len(data)
                assert sent <= 3 * received
        return data

    net.tamper = count
    client.connect(SERVER_ADDR, 0.0)
    assert net.run(lambda: client.handshake_complete, max_time=30)
    conn = ep.connections[addr]
    assert conn.rare_stat("amplification_limited") > 0
    shutdown_world(net, ep, [client])
    assert pools.in_use == 0


def test_the_limit_can_be_lifted_where_amplification_is_no_threat() -> None:
    hello = _client_hello()
    dos = DoSProtectionConfig(amplification_limit=None)
    sent, _ = _bytes_drawn(hello, seconds=0.5, cookie_policy="never", dos=dos)
    assert sent > 3 * len(hello[0])


def test_a_padded_client_hello_gets_the_flight_without_a_cookie() -> None:
    """pad_client_hello fills the first datagram, which pays for a flight with an ECDSA chain
    under the 3x rule: no HelloRetryRequest round trip."""
    hello = _client_hello({"pad_client_hello": True})
    assert [len(d) for d in hello] == [1200]
    sent, ep = _bytes_drawn(hello, seconds=0.5)
    assert ep.gate.counters["hello_retry_sent"] == 0
    assert 500 < sent <= 3 * 1200
    _, ep = _bytes_drawn(_client_hello(), seconds=0.5)
    assert ep.gate.counters["hello_retry_sent"] == 1  # the same hello unpadded: a cookie first


def test_a_padded_client_hello_too_small_for_a_large_chain_still_gets_a_cookie() -> None:
    """An RSA-4096 chain's flight is more than three datagrams: padding cannot pay for it,
    and the server still sends at most 3x what it received."""
    hello = _client_hello({"pad_client_hello": True}, kind="rsa4096")
    sent, ep = _bytes_drawn(hello, "rsa4096", seconds=0.5)
    assert ep.gate.counters["hello_retry_sent"] == 1
    assert 0 < sent <= 3 * 1200


class _Wire:
    """A client and a server endpoint joined by hand: each delivery at a time the test
    picks, so the order of the two sides' timers is the test's, not a scheduler's."""

    CLIENT = ("10.3.0.9", 4000)

    def __init__(self, **endpoint: Any) -> None:
        ccfg, scfg = cached_configs()
        self.pools = PoolSet()
        self.ep = ServerEndpoint(scfg, pools=self.pools, wall_clock=wall_clock, **endpoint)
        self.client = Connection(ccfg, pools=self.pools, wall_clock=wall_clock)

    def to_server(self, now: float) -> int:
        """Deliver what the client has to send; the datagrams delivered."""
        out = self.client.datagrams_to_send(now)
        for lease, _ in out:
            self.ep.receive_datagram(bytes(lease), self.CLIENT, now)
            lease.release()
        return len(out)

    def to_client(self, now: float) -> int:
        """Deliver what the server sends; the datagrams delivered."""
        out = self.ep.datagrams_to_send(now)
        for lease, addr in out:
            assert addr == self.CLIENT
            self.client.receive_datagram(bytes(lease), SERVER_ADDR, now)
            lease.release()
        return len(out)

    def server_timer(self) -> float:
        t = self.ep.get_timer()
        assert t is not None
        self.ep.handle_timer(t)
        return t

    def client_timer(self) -> float:
        t = self.client.get_timer()
        assert t is not None
        self.client.handle_timer(t)
        return t

    def finish(self, now: float) -> None:
        self.client.close()
        self.to_server(now)
        self.ep.close()
        for lease, _ in self.ep.datagrams_to_send(now):
            lease.release()
        self.ep.release()
        self.pools.release_owner(self.client.owner)
        assert self.pools.in_use == 0


def test_a_repeated_hello_right_after_a_held_back_retransmission_gets_the_flight() -> None:
    """cookie_policy="never" and an unpadded hello: the flight waits for the client's
    repeat to pay for it. When the server's timer fires just before that repeat comes, its
    retransmission is held back as well; the repeat must still get the flight (nothing of
    it has left, so the repeat is no copy crossing it), not wait for the next timer two
    seconds later, by which time either side has backed off to a smaller MTU."""
    wire = _Wire(cookie_policy="never")
    wire.client.connect(SERVER_ADDR, 0.0)
    assert wire.to_server(0.0) == 1
    assert wire.to_client(0.0) == 0  # over 3x one hello: held back
    t = wire.server_timer()  # the server's timer first ...
    assert wire.to_client(t) == 0  # ... its retransmission held back too
    assert wire.client_timer() == t  # then the client's repeat
    assert wire.to_server(t + 0.01) == 1
    assert wire.to_client(t + 0.01) > 0  # the flight the two hellos paid for
    assert wire.client.handshake_complete
    wire.to_server(t + 0.02)
    conn = wire.ep.connections[_Wire.CLIENT]
    assert conn.handshake_complete
    mtu = cached_configs()[1].mtu
    assert (conn.flight_mtu, wire.client.flight_mtu) == (mtu, mtu)
    assert conn.stats["retransmissions"] == 2  # the held-back one and the one that left
    wire.finish(t + 0.03)


def test_timeouts_of_a_held_back_flight_do_not_shrink_the_mtu() -> None:
    """A flight that never left was not lost: however many timeouts pass while the
    amplification limit holds it back, they say nothing about the path's MTU, and the
    flight goes out at full size once the client has paid for it."""
    wire = _Wire(cookie_policy="never")
    wire.client.connect(SERVER_ADDR, 0.0)
    wire.to_server(0.0)
    mtu = cached_configs()[1].mtu
    now = 0.0
    for _ in range(3):  # the client's repeats are lost; the server's timeouts pass
        now = wire.server_timer()
        assert wire.to_client(now) == 0
    conn = wire.ep.connections[_Wire.CLIENT]
    assert conn.flight_mtu == mtu
    assert wire.client_timer() < now  # its first repeat, which does arrive
    assert wire.to_server(now) == 1  # a late repeat pays for the flight
    assert wire.to_client(now) > 0
    assert wire.client.handshake_complete
    wire.to_server(now)
    assert conn.handshake_complete and conn.flight_mtu == mtu
    wire.finish(now)


# What a spoofer sends from the victim's address, in any order and at any pace: genuine
# first hellos of several sizes (which it can make itself), repeats of them, the first
# fragments of a fragmented one, and noise.
_SPOOFED = st.sampled_from(("hello", "padded_hello", "pq_hello", "fragmented_hello", "noise"))


@functools.cache
def _spoofed(kind: str) -> tuple[bytes, ...]:
    if kind == "hello":
        return tuple(_client_hello())
    if kind == "padded_hello":
        return tuple(_client_hello({"pad_client_hello": True}))
    if kind == "pq_hello":
        return tuple(_client_hello({"key_share_groups": ["X25519MLKEM768"]}))
    if kind == "fragmented_hello":
        return tuple(_client_hello({"key_share_groups": ["X25519MLKEM768"], "mtu": 600}))
    return (bytes(range(200)),)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    steps=st.lists(
        st.tuples(_SPOOFED, st.integers(0, 3), st.floats(0.0, 20.0)), min_size=1, max_size=8
    ),
    policy=st.sampled_from(("under_load", "never", "always")),
)
def test_whatever_a_spoofer_sends_the_victim_never_gets_three_times_as_much(
    steps: list[tuple[str, int, float]], policy: str
) -> None:
    """At every moment, the bytes the server has sent to the spoofed address are at most
    three times those it received from it (retransmissions included), however the spoofed
    datagrams are mixed, repeated, cut short (a fragment alone) and spaced in time."""
    _, scfg = cached_configs("ec256")
    pools = PoolSet()
    ep = ServerEndpoint(scfg, pools=pools, wall_clock=wall_clock, cookie_policy=policy)
    received = sent = 0
    now = 0.0

    def drain() -> None:
        nonlocal sent
        for lease, addr in ep.datagrams_to_send(now):
            assert addr == VICTIM
            sent += len(lease)
            lease.release()
        assert sent <= 3 * received, (sent, received)

    def advance(until: float) -> None:
        nonlocal now
        while (t := ep.get_timer()) is not None and t <= until:
            now = max(now, t)
            ep.handle_timer(now)
            drain()
        now = max(now, until)

    for kind, part, wait in steps:
        datagrams = _spoofed(kind)
        for datagram in datagrams[: part + 1] if kind == "fragmented_hello" else datagrams:
            received += len(datagram)
            ep.receive_datagram(datagram, VICTIM, now)
            drain()
        advance(now + wait)
    advance(now + 200.0)
    ep.close()
    for lease, _ in ep.datagrams_to_send(now):
        lease.release()
    ep.release()
    assert pools.in_use == 0
