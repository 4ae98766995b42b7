"""Half-open handshakes at the ServerEndpoint: how long they keep their place, and who
may take a place when a source's share is full."""

from __future__ import annotations

from typing import Any

from dtls13.connection import Connection
from dtls13.endpoint import DoSProtectionConfig, ServerEndpoint
from dtls13.memory import PoolSet
from tests.support.dtls_pair import SERVER_ADDR, configs, pki, shutdown_world, wall_clock
from tests.support.netsim import SimNetwork


def _client_hello() -> bytes:
    ccfg, _ = configs()
    client = Connection(ccfg, pools=PoolSet(), wall_clock=wall_clock)
    client.connect(SERVER_ADDR, 0.0)
    ((lease, _),) = client.datagrams_to_send(0.0)
    data = lease.tobytes()
    lease.release()
    client.close()
    for lease, _ in client.datagrams_to_send(0.0):
        lease.release()
    return data


def _endpoint(
    net: SimNetwork,
    dos: DoSProtectionConfig | None = None,
    cookie_policy: str = "never",
    **server: Any,
) -> tuple[ServerEndpoint, PoolSet]:
    _, scfg = configs(server=server or None)
    pools = PoolSet()
    ep = ServerEndpoint(
        scfg,
        pools=pools,
        # Spoofed half-opens need hellos the amplification rule would answer with cookies.
        dos=dos or DoSProtectionConfig(amplification_limit=None),
        cookie_policy=cookie_policy,  # type: ignore[arg-type]
        wall_clock=wall_clock,
    )
    net.add(SERVER_ADDR, ep)
    return ep, pools


# -- a short life for handshakes nobody answers ------------------------------------------


def test_unanswered_half_open_handshakes_go_after_a_few_retransmissions() -> None:
    """Spoofed ClientHellos (nobody at those addresses) hold a half-open place for
    unanswered_handshake_timeout (20 s: our flight went out at 0, 1, 3, 7 and 15 s), not
    for the whole 120 s handshake timeout; each such end is counted."""
    net = SimNetwork(1)
    ep, pools = _endpoint(net)
    hello = _client_hello()
    spoofed = [("10.9.3.1", 7000 + port) for port in range(3)]
    for addr in spoofed:
        assert ep.receive_datagram(hello, addr, 0.0) is not None
    conns = list(ep.connections.values())
    assert ep.statistics().half_open == 3
    sent: list[float] = []

    def nobody_there(src: Any, dst: Any, data: bytes) -> None:
        sent.append(round(net.now, 6))
        return None

    net.tamper = nobody_there
    assert ep.get_timer() == 1.0  # the first retransmission
    assert net.run(lambda: all(c.closed for c in conns), max_time=30)
    assert net.now == 20.0
    assert sorted(set(sent)) == [0.0, 1.0, 3.0, 7.0, 15.0]
    assert ep.counters["half_open_unanswered"] == 3
    assert all(c.terminated is not None and c.terminated.alert is None for c in conns)
    ep.reap()
    assert ep.statistics().half_open == 0 and ep.owner.in_use == 0
    shutdown_world(net, ep, [])
    assert pools.in_use == 0


def test_a_peer_that_answered_keeps_its_handshake_past_the_unanswered_timeout() -> None:
    """One record of the client's final flight authenticated (its address is proven): the
    rest may take as long as the handshake timeout allows."""
    net = SimNetwork(2)
    leaf = pki().leaf("ec256", cn="dtls13 test client")
    ep, pools = _endpoint(net, client_auth="optional", cafile=pki().root_pem, mtu=256)
    ccfg, _ = configs(
        client={"mtu": 256, "certificate_chain": leaf.chain_pem, "private_key": leaf.key_pem}
    )
    client = Connection(ccfg, pools=pools, wall_clock=wall_clock)
    addr = ("10.9.4.1", 5000)
    net.add(addr, client)
    epoch2_datagrams: list[float] = []

    def hold_final_flight(src: Any, dst: Any, data: bytes) -> bytes | None:
        if src == addr and data[0] & 0xE3 == 0x22:  # a unified header, epoch bits 2
            epoch2_datagrams.append(net.now)
            if len(epoch2_datagrams) > 1 and net.now < 40.0:
                return None  # only the first gets through until t=40
        return data

    net.tamper = hold_final_flight
    client.connect(SERVER_ADDR, 0.0)
    assert net.run(lambda: net.now >= 25.0, max_time=30)
    (server,) = ep.connections.values()
    assert not server.closed and not server.handshake_complete
    assert net.run(lambda: client.handshake_complete and server.handshake_complete, max_time=90)
    assert net.now > 40.0 and ep.counters["half_open_unanswered"] == 0
    shutdown_world(net, ep, [client])
    assert pools.in_use == 0


# -- a proven address is not shut out by spoofed half-opens from it ------------------------


def _spoof_half_opens(ep: ServerEndpoint, host: str, count: int, now: float) -> None:
    hello = _client_hello()
    for port in range(count):
        assert ep.receive_datagram(hello, (host, 7000 + port), now) is not None


def test_a_client_with_a_valid_cookie_displaces_a_spoofed_half_open_from_its_address() -> None:
    """Spoofed ClientHellos from the victim's IP fill its per-source half-open cap: the
    victim is asked for a cookie, and its second ClientHello (the cookie proves its
    address, RFC 9147 §5.1) takes the place of the oldest unproven half-open handshake
    from that IP, at once. The cap is never exceeded."""
    net = SimNetwork(4)
    dos = DoSProtectionConfig(max_half_open_per_ip=3, amplification_limit=None)
    ep, pools = _endpoint(net, dos, cookie_policy="under_load")
    _spoof_half_opens(ep, "10.5.0.9", 3, 0.0)
    spoofed = list(ep.connections.values())
    assert ep.statistics().half_open == 3 and ep.gate.counters["hello_retry_sent"] == 0
    net.tamper = lambda src, dst, data: None if dst[0] == "10.5.0.9" and dst[1] >= 7000 else data
    ccfg, _ = configs()
    victim = Connection(ccfg, pools=pools, wall_clock=wall_clock)
    net.add(("10.5.0.9", 5555), victim)
    most = 0

    def done() -> bool:
        nonlocal most
        most = max(most, ep.statistics().half_open)
        return victim.handshake_complete

    victim.connect(SERVER_ADDR, 0.5)
    assert net.run(done, max_time=30)
    assert net.now < 1.0 and victim.stats["retransmissions"] == 0
    assert victim.stats["hello_retry_requests_received"] == 1  # asked for a cookie
    assert most <= 3 and ep.counters["half_open_displaced"] == 1
    assert ep.counters["too_many_half_open_per_ip"] == 0
    assert spoofed[0].closed and not any(c.closed for c in spoofed[1:])  # the oldest went
    shutdown_world(net, ep, [victim])
    assert pools.in_use == 0


def test_proven_half_opens_stay_capped_per_source() -> None:
    """Half-open handshakes from proven addresses are never displaced: a source that does
    the cookie exchange (a real host, not a spoofer) still gets at most its cap."""
    net = SimNetwork(5)
    dos = DoSProtectionConfig(max_half_open_per_ip=3, amplification_limit=None)
    ep, pools = _endpoint(net, dos, cookie_policy="always")
    ccfg, _ = configs()
    clients = []
    for i in range(4):
        c = Connection(ccfg, pools=pools, wall_clock=wall_clock)
        net.add(("10.5.1.1", 6000 + i), c)
        clients.append(c)

    def stall(src: Any, dst: Any, data: bytes) -> bytes | None:
        # The clients never answer the server's flight: they stay half-open, but proven.
        return None if src[0] == "10.5.1.1" and data[0] & 0xE0 == 0x20 else data

    net.tamper = stall
    for c in clients:
        c.connect(SERVER_ADDR, 0.0)
    net.run(lambda: False, max_time=0.5)
    assert ep.statistics().half_open == 3
    assert all(c.address_validated for c in ep.connections.values())
    assert ep.counters["too_many_half_open_per_ip"] >= 1  # the fourth's second ClientHello
    assert ep.counters["half_open_displaced"] == 0
    shutdown_world(net, ep, clients)
    assert pools.in_use == 0


def test_at_the_global_cap_a_proven_client_displaces_the_oldest_unproven_half_open() -> None:
    net = SimNetwork(6)
    dos = DoSProtectionConfig(max_half_open=3, cookie_threshold=3, amplification_limit=None)
    ep, pools = _endpoint(net, dos, cookie_policy="under_load")
    for i in range(3):
        _spoof_half_opens(ep, f"10.5.2.{i + 1}", 1, 0.1 * i)
    spoofed = list(ep.connections.values())
    net.tamper = lambda src, dst, data: None if dst[0].startswith("10.5.2.") else data
    ccfg, _ = configs()
    client = Connection(ccfg, pools=pools, wall_clock=wall_clock)
    net.add(("10.5.3.1", 5555), client)
    client.connect(SERVER_ADDR, 0.5)
    assert net.run(lambda: client.handshake_complete, max_time=30)
    assert net.now < 1.5 and client.stats["hello_retry_requests_received"] == 1
    assert ep.counters["half_open_displaced"] == 1 and ep.counters["too_many_half_open"] == 0
    assert [c.closed for c in spoofed] == [True, False, False]
    shutdown_world(net, ep, [client])
    assert pools.in_use == 0


def test_a_memory_emergency_sheds_unproven_half_opens_before_a_proven_one() -> None:
    """Spoofed padded ClientHellos (big enough to be answered without a cookie) fill the
    memory budget around a client that proved its address with a cookie: the emergency
    sheds the oldest unproven handshakes first, so the spoofer cannot end the real
    client's handshake, even though that handshake is older than most of theirs."""
    net = SimNetwork(7)
    dos = DoSProtectionConfig(max_total_memory=20_000, emergency_high=0.8, emergency_low=0.5)
    ep, pools = _endpoint(net, dos, cookie_policy="under_load")
    padded, _ = configs(client={"pad_client_hello": True})
    spoofer = Connection(padded, pools=pools, wall_clock=wall_clock)
    spoofer.connect(SERVER_ADDR, 0.0)
    ((lease, _),) = spoofer.datagrams_to_send(0.0)
    hello = lease.tobytes()
    lease.release()
    spoofer.abandon()
    net.tamper = lambda src, dst, data: None if dst[0] == "10.5.4.1" else data
    for port in range(2):
        assert ep.receive_datagram(hello, ("10.5.4.1", 7000 + port), 0.0) is not None
    ccfg, _ = configs()
    client = Connection(ccfg, pools=pools, wall_clock=wall_clock)
    addr = ("10.5.5.1", 5555)
    net.add(addr, client)
    client.connect(SERVER_ADDR, 0.1)
    assert net.run(lambda: addr in ep.connections, max_time=5)
    genuine = ep.connections[addr]
    assert genuine.address_validated and not genuine.handshake_complete
    for port in range(2, 6):
        ep.receive_datagram(hello, ("10.5.4.1", 7000 + port), net.now)
    assert ep.counters["emergencies"] == 1 and ep.counters["half_open_shed"] >= 2
    assert not genuine.closed
    assert net.run(lambda: client.handshake_complete and genuine.handshake_complete, max_time=30)
    shutdown_world(net, ep, [client])
    assert pools.in_use == 0
