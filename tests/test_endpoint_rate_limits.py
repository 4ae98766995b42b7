"""Per-source rate limits at the ServerEndpoint: what a spoofer can and cannot use them for.

Token buckets limit what a source address may cost the server before it has proved that it
receives what is sent to it. Anyone can send from anyone's address, so a spoofer can empty
the bucket of a victim's address: that must cost the victim a cookie exchange (RFC 9147
§5.1), never its service, while a real source that floods from its own address stays bounded.
"""

from __future__ import annotations

from typing import Any

from dtls_pair import SERVER_ADDR, configs, shutdown_world, wall_clock
from netsim import SimNetwork

from dtls13.connection import Connection
from dtls13.endpoint import DoSProtectionConfig, ServerEndpoint
from dtls13.memory import PoolSet

VICTIM_HOST = "10.5.0.9"


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


class Flooder:
    """A spoofer on the network: `per_tick` datagrams every `tick` seconds, from its
    address (the victim's host, another port), for as long as `until`."""

    def __init__(self, payloads: list[bytes], per_tick: int, tick: float, until: float) -> None:
        self.payloads = payloads
        self.per_tick = per_tick
        self.tick = tick
        self.until = until
        self.next = 0.0
        self.sent = 0

    def receive_datagram(self, data: Any, addr: Any, now: float) -> None:
        pass  # the answers go to the victim's host, where nobody reads them

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Any]]:
        if now < self.next or now > self.until:
            return []
        self.next = now + self.tick
        out = []
        for _ in range(self.per_tick):
            out.append((self.payloads[self.sent % len(self.payloads)], SERVER_ADDR))
            self.sent += 1
        return out

    def get_timer(self) -> float | None:
        return self.next if self.next <= self.until else None

    def handle_timer(self, now: float) -> None:
        pass


def _endpoint(net: SimNetwork, **dos: Any) -> tuple[ServerEndpoint, PoolSet]:
    _, scfg = configs()
    pools = PoolSet()
    ep = ServerEndpoint(scfg, pools=pools, dos=DoSProtectionConfig(**dos), wall_clock=wall_clock)
    net.add(SERVER_ADDR, ep)
    return ep, pools


def test_spoofed_flood_from_the_victims_address_costs_it_a_cookie_not_its_handshake() -> None:
    """A spoofer sends 10,000 datagrams a second from the victim's IP (another port), fifty
    times the per-source rate, so the victim's token bucket stays empty. The victim's
    ClientHello is answered with a cookie; its second ClientHello proves its address and
    its handshake completes."""
    net = SimNetwork(11)
    ep, pools = _endpoint(net)
    garbage = [bytes([22, 0xFE, 0xFD]) + bytes(range(i, i + 60)) for i in range(5)]
    flooder = Flooder([_client_hello(), *garbage], per_tick=1, tick=0.0001, until=12.0)
    net.add((VICTIM_HOST, 7000), flooder)
    ccfg, _ = configs()
    victim = Connection(ccfg, pools=pools, wall_clock=wall_clock)
    net.add((VICTIM_HOST, 5555), victim)
    assert net.run(lambda: net.now >= 0.5)
    assert ep.counters["rate_limited"] > 0  # the victim's bucket is empty
    victim.connect(SERVER_ADDR, net.now)
    assert net.run(lambda: victim.handshake_complete, max_time=10.0, max_steps=1_000_000), (
        ep.statistics()
    )
    assert victim.stats["hello_retry_requests_received"] == 1  # asked for a cookie
    assert ep.counters["rate_limited"] > 1000  # the flood itself was still limited
    flooder.until = net.now
    shutdown_world(net, ep, [victim])
    assert pools.in_use == 0


def test_a_source_flooding_from_its_own_address_stays_bounded_after_cookies() -> None:
    """A real host at its own address can do the cookie exchange, so cookies alone would
    let it start handshakes at any rate: proven ClientHellos past its empty bucket draw on
    a second budget of their own, which spoofers cannot touch, and which it empties too."""
    net = SimNetwork(12)
    ep, pools = _endpoint(
        net,
        datagrams_per_second=20.0,
        datagram_burst=20.0,
        max_half_open_per_ip=1000,
        max_connections_per_ip=1000,
    )
    ccfg, _ = configs()
    clients = []
    for port in range(200):
        client = Connection(ccfg, pools=pools, wall_clock=wall_clock)
        net.add((VICTIM_HOST, 6000 + port), client)
        client.connect(SERVER_ADDR, 0.0)
        clients.append(client)
    net.run(lambda: False, max_time=0.5)
    created = ep.counters["connections_created"]
    # The bursts of both buckets and half a second of their refills, never all 200.
    assert 20 <= created <= 2 * (20 + 0.5 * 20), created
    assert ep.counters["rate_limited"] > 0
    shutdown_world(net, ep, clients)
    assert pools.in_use == 0
