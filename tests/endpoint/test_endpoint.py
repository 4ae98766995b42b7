"""The sans-IO server endpoint: demultiplexing, cookies, quotas, §5.11, emergency mode."""

from __future__ import annotations

import os
from typing import Any

from dtls13.connection import Connection
from dtls13.endpoint import DoSProtectionConfig, ServerEndpoint
from dtls13.memory import PoolSet
from tests.support.dtls_pair import SERVER_ADDR, configs, shutdown_world, wall_clock
from tests.support.netsim import SimNetwork


def _world(
    n_clients: int,
    dos: DoSProtectionConfig | None = None,
    cookie_policy: str = "under_load",
    **client: Any,
) -> tuple[SimNetwork, list[Connection], ServerEndpoint, PoolSet]:
    ccfg, scfg = configs(client=client or None)
    pools = PoolSet()
    net = SimNetwork(3)
    ep = ServerEndpoint(
        scfg, pools=pools, dos=dos, cookie_policy=cookie_policy, wall_clock=wall_clock
    )  # type: ignore[arg-type]
    net.add(SERVER_ADDR, ep)
    clients = []
    for i in range(n_clients):
        c = Connection(ccfg, pools=pools, wall_clock=wall_clock)
        net.add((f"10.1.{i // 200}.{i % 200 + 1}", 5000 + i), c)
        clients.append(c)
    return net, clients, ep, pools


def test_many_clients_share_one_endpoint_and_echo() -> None:
    net, clients, ep, pools = _world(30)
    for c in clients:
        c.connect(SERVER_ADDR, 0.0)
    assert net.run(lambda: all(c.handshake_complete for c in clients))
    assert len(ep.connections) == 30 and len(ep.new_connections()) == 30
    for i, c in enumerate(clients):
        c.send(f"hello {i}".encode())
    server_got: dict[Any, bytes] = {}

    def all_arrived() -> bool:
        for addr, conn in ep.connections.items():
            while (ev := conn.next_event()) is not None:
                if type(ev).__name__ == "DataReceived":
                    server_got[addr] = ev.data  # type: ignore[attr-defined]
        return len(server_got) == 30

    assert net.run(all_arrived)
    assert sorted(server_got.values()) == sorted(f"hello {i}".encode() for i in range(30))
    shutdown_world(net, ep, clients)
    assert pools.in_use == 0


def test_cookie_policy_always_answers_every_stranger_with_hello_retry() -> None:
    net, clients, ep, _ = _world(3, cookie_policy="always")
    for c in clients:
        c.connect(SERVER_ADDR, 0.0)
    assert net.run(lambda: all(c.handshake_complete for c in clients))
    assert ep.gate.counters["hello_retry_sent"] == 3
    assert all(c.stats["hello_retry_requests_received"] == 1 for c in clients)
    shutdown_world(net, ep, clients)


def test_cookie_policy_never_and_under_load_without_load_send_no_hello_retry() -> None:
    # Without the amplification rule, a ClientHello this small would get a cookie anyway.
    dos = DoSProtectionConfig(amplification_limit=None)
    for policy in ("never", "under_load"):
        net, clients, ep, _ = _world(2, dos=dos, cookie_policy=policy)
        for c in clients:
            c.connect(SERVER_ADDR, 0.0)
        assert net.run(lambda: all(c.handshake_complete for c in clients))  # noqa: B023
        assert ep.gate.counters["hello_retry_sent"] == 0
        shutdown_world(net, ep, clients)


def test_under_load_without_load_asks_a_cookie_only_of_hellos_too_small_for_our_flight() -> None:
    for groups, retries in ((["x25519"], 2), (["X25519MLKEM768"], 0)):
        net, clients, ep, _ = _world(2, key_share_groups=groups)
        for c in clients:
            c.connect(SERVER_ADDR, 0.0)
        assert net.run(lambda: all(c.handshake_complete for c in clients))  # noqa: B023
        assert ep.gate.counters["hello_retry_sent"] == retries, groups
        shutdown_world(net, ep, clients)


def test_under_load_demands_cookies_once_half_open_handshakes_pile_up() -> None:
    dos = DoSProtectionConfig(cookie_threshold=2, max_half_open_per_ip=50, amplification_limit=None)
    _, scfg = configs()
    pools = PoolSet()
    ep = ServerEndpoint(scfg, pools=pools, dos=dos, wall_clock=wall_clock)
    hello = _client_hello()
    for port in range(3):  # half-open handshakes that never finish
        ep.receive_datagram(hello, ("10.9.0.1", 6000 + port), 0.0)
    assert len(ep.connections) == 2  # the third ClientHello got a cookie instead
    assert ep.gate.counters["hello_retry_sent"] == 1
    ep.close()
    ep.datagrams_to_send(0.0)
    ep.release()
    assert pools.in_use == 0


def test_half_open_cap_per_source_and_rate_limit_hit_only_the_offender() -> None:
    dos = DoSProtectionConfig(max_half_open_per_ip=3, datagram_burst=20, datagrams_per_second=1)
    _, scfg = configs()
    pools = PoolSet()
    ep = ServerEndpoint(scfg, pools=pools, dos=dos, cookie_policy="never", wall_clock=wall_clock)
    hello = _client_hello()
    for port in range(30):
        ep.receive_datagram(hello, ("10.9.0.66", 7000 + port), 0.0)
    stats = ep.statistics()
    assert stats.half_open == 3
    assert stats.too_many_half_open_per_ip == 17
    assert stats.rate_limited == 10
    # Another source is unaffected.
    assert ep.receive_datagram(hello, ("10.9.0.77", 7000), 0.0) is not None
    ep.close()
    for lease, _ in ep.datagrams_to_send(0.0):
        lease.release()
    ep.release()
    assert pools.in_use == 0


def test_garbage_from_strangers_is_counted_and_keeps_no_state() -> None:
    _, scfg = configs()
    pools = PoolSet()
    ep = ServerEndpoint(scfg, pools=pools, wall_clock=wall_clock)
    for i in range(200):
        ep.receive_datagram(os.urandom(20 + i), (f"10.8.{i // 250}.{i % 250}", 1), 0.0)
    assert not ep.connections and ep.statistics().gate_dropped == 200
    assert ep.owner.in_use == 0
    ep.close()
    ep.release()
    assert pools.in_use == 0


def test_new_association_from_an_established_address_needs_a_cookie_first() -> None:
    """RFC 9147 §5.11: the old association stays until the new one completes."""
    net, (first,), ep, pools = _world(1)
    addr = next(a for a in net.endpoints if a != SERVER_ADDR)
    first.connect(SERVER_ADDR, 0.0)
    assert net.run(lambda: first.handshake_complete)
    old = ep.connections[addr]
    # The client "reboots": a new connection from the same address and port.
    ccfg, _ = configs()
    second = Connection(ccfg, pools=pools, wall_clock=wall_clock)
    first.abandon()
    net.add(addr, second)
    second.connect(SERVER_ADDR, net.now)
    assert net.run(lambda: second.handshake_complete)
    assert second.stats["hello_retry_requests_received"] == 1  # reachability proven by cookie
    assert not old.closed  # kept until the new association's Finished is verified
    assert net.run(lambda: ep.connections[addr] is not old)
    assert old.closed
    second.send(b"after reboot")
    got: list[bytes] = []

    def arrived() -> bool:
        conn = ep.connections[addr]
        while (ev := conn.next_event()) is not None:
            if type(ev).__name__ == "DataReceived":
                got.append(ev.data)  # type: ignore[attr-defined]
        return got == [b"after reboot"]

    assert net.run(arrived)
    shutdown_world(net, ep, [second])
    assert pools.in_use == 0


def test_forged_client_hello_cannot_destroy_an_established_association() -> None:
    net, (client,), ep, pools = _world(1)
    addr = next(a for a in net.endpoints if a != SERVER_ADDR)
    client.connect(SERVER_ADDR, 0.0)
    assert net.run(lambda: client.handshake_complete)
    old = ep.connections[addr]
    ep.receive_datagram(_client_hello(), addr, net.now)  # spoofed, never completes
    assert ep.connections[addr] is old and not old.closed
    client.send(b"still here")
    assert net.run(lambda: any(type(e).__name__ == "DataReceived" for e in _events(old)))
    shutdown_world(net, ep, [client])
    assert pools.in_use == 0


def test_handling_the_timer_at_a_partial_hellos_deadline_expires_it_whatever_the_rounding() -> None:
    """The deadline get_timer() gives (start + timeout, rounded) is the one handle_timer
    keeps: at 3.3155673482279626 + 5.0 the difference rounds to just under 5.0, and a
    deadline checked as "now - start >= timeout" never came, so a loop that handles each
    timer at its time spun there for ever."""
    from dtls13.handshake.flights import handshake_fragment

    _, scfg = configs()
    pools = PoolSet()
    ep = ServerEndpoint(scfg, pools=pools, wall_clock=wall_clock)  # reassembly_timeout 5 s
    frag = handshake_fragment(1, 3000, 0, 0, os.urandom(500))
    record = b"\x16\xfe\xfd" + bytes(8) + len(frag).to_bytes(2, "big") + frag
    start = 3.3155673482279626
    assert (start + 5.0) - start < 5.0  # the rounding this is about
    ep.receive_datagram(record, ("10.7.0.1", 1), start)
    deadline = ep.get_timer()
    assert deadline == start + 5.0
    ep.handle_timer(deadline)
    assert ep.gate.partials == 0 and ep.get_timer() is None
    ep.close()
    ep.release()
    assert pools.in_use == 0


def test_emergency_mode_sheds_half_open_handshakes_and_demands_cookies() -> None:
    dos = DoSProtectionConfig(
        max_total_memory=40_000, max_half_open_per_ip=100, emergency_high=0.5, emergency_low=0.2
    )
    _, scfg = configs()
    pools = PoolSet()
    ep = ServerEndpoint(scfg, pools=pools, dos=dos, cookie_policy="never", wall_clock=wall_clock)
    hello = _client_hello()
    for port in range(40):
        ep.receive_datagram(hello, ("10.7.0.1", 8000 + port), float(port) * 0.001)
    stats = ep.statistics()
    assert stats.emergencies >= 1
    assert stats.half_open_shed >= 1
    assert ep.gate.counters["hello_retry_sent"] >= 1  # cookies demanded despite "never"
    assert ep.owner.in_use <= 40_000
    ep.close()
    for lease, _ in ep.datagrams_to_send(1.0):
        lease.release()
    ep.release()
    assert pools.in_use == 0


def _events(conn: Connection) -> list[Any]:
    out = []
    while (ev := conn.next_event()) is not None:
        out.append(ev)
    for ev in out:  # leave them for the next look
        conn._event(ev)
    return out


def _client_hello() -> bytes:
    ccfg, _ = configs()
    pools = PoolSet()
    client = Connection(ccfg, pools=pools, wall_clock=wall_clock)
    client.connect(SERVER_ADDR, 0.0)
    ((lease, _),) = client.datagrams_to_send(0.0)
    data = lease.tobytes()
    lease.release()
    client.close()
    for lease, _ in client.datagrams_to_send(0.0):
        lease.release()
    return data


def test_partial_client_hellos_expire_on_the_timer_without_more_traffic() -> None:
    from dtls13.handshake.flights import handshake_fragment

    dos = DoSProtectionConfig(reassembly_timeout=2.0)
    _, scfg = configs()
    pools = PoolSet()
    ep = ServerEndpoint(scfg, pools=pools, dos=dos, wall_clock=wall_clock)
    assert ep.get_timer() is None
    frag = handshake_fragment(1, 3000, 0, 0, os.urandom(500))
    record = b"\x16\xfe\xfd" + bytes(8) + len(frag).to_bytes(2, "big") + frag
    assert ep.receive_datagram(record, ("10.7.0.1", 1), 1.0) is None
    assert ep.gate.partials == 1 and ep.owner.in_use > 0
    # The partial's deadline is the endpoint's timer: it fires with no datagram arriving.
    assert ep.get_timer() == 3.0
    ep.handle_timer(3.0)
    assert ep.gate.partials == 0 and ep.gate.counters["partials_expired"] == 1
    assert ep.owner.in_use == 0 and ep.get_timer() is None
    ep.close()
    ep.release()
    assert pools.in_use == 0


def test_cookies_stop_once_half_open_handshakes_complete_or_go() -> None:
    """The half-open count behind cookie_policy="under_load" follows handshakes that
    complete and connections removed, however many strangers were answered between."""
    dos = DoSProtectionConfig(cookie_threshold=2, max_half_open_per_ip=50, amplification_limit=None)
    ccfg, scfg = configs()
    pools = PoolSet()
    ep = ServerEndpoint(scfg, pools=pools, dos=dos, wall_clock=wall_clock)
    clients = [Connection(ccfg, pools=pools, wall_clock=wall_clock) for _ in range(2)]
    addrs = [("10.9.1.1", 6000 + i) for i in range(2)]

    def pump(now: float) -> None:
        for _ in range(6):
            for client, addr in zip(clients, addrs, strict=True):
                for lease, _ in client.datagrams_to_send(now):
                    ep.receive_datagram(lease.tobytes(), addr, now)
                    lease.release()
            for lease, addr in ep.datagrams_to_send(now):
                for client, a in zip(clients, addrs, strict=True):
                    if a == addr:
                        client.receive_datagram(lease.tobytes(), SERVER_ADDR, now)
                lease.release()

    for client in clients:
        client.connect(SERVER_ADDR, 0.0)
        for lease, _ in client.datagrams_to_send(0.0):
            ep.receive_datagram(lease.tobytes(), addrs[clients.index(client)], 0.0)
            lease.release()
    assert ep.statistics().half_open == 2
    hello = _client_hello()
    for port in range(5):  # strangers now get cookies
        assert ep.receive_datagram(hello, ("10.9.2.1", 7000 + port), 0.0) is None
    assert ep.gate.counters["hello_retry_sent"] == 5
    for lease, _ in ep.datagrams_to_send(0.0):
        lease.release()
    # Deliver the server's flights that were queued: both handshakes complete.
    for client in clients:
        client.handle_timer(10.0)
    pump(10.0)
    assert all(c.handshake_complete for c in clients)
    assert ep.statistics().half_open == 0
    assert ep.receive_datagram(hello, ("10.9.2.1", 7100), 10.0) is not None  # no cookie
    assert ep.gate.counters["hello_retry_sent"] == 5
    # A half-open connection that is removed stops counting too.
    assert ep.receive_datagram(hello, ("10.9.2.1", 7101), 10.0) is not None
    assert ep.receive_datagram(hello, ("10.9.2.1", 7102), 10.0) is None  # two half-open
    assert ep.gate.counters["hello_retry_sent"] == 6
    gone = ep.connections[("10.9.2.1", 7101)]
    gone.abandon()
    ep.remove(gone)
    assert ep.receive_datagram(hello, ("10.9.2.1", 7103), 10.0) is not None
    for c in clients:
        c.close()
    ep.close()
    for lease, _ in ep.datagrams_to_send(10.0):
        lease.release()
    for c in clients:
        for lease, _ in c.datagrams_to_send(10.0):
            lease.release()
    ep.release()


def test_repeated_final_flights_with_output_never_collected_raise_nothing() -> None:
    """A client repeating its final flight makes the server answer each copy with its final
    ACK; a caller that does not collect output between datagrams lets those pile up past
    the connection's memory budget. That is counted, never raised."""
    net, clients, ep, pools = _world(1, dos=DoSProtectionConfig(max_per_connection_memory=16384))
    client = clients[0]
    sent: list[bytes] = []

    def record(src: Any, dst: Any, data: bytes) -> bytes:
        if dst == SERVER_ADDR:
            sent.append(bytes(data))
        return data

    net.tamper = record
    client.connect(SERVER_ADDR, 0.0)
    assert net.run(lambda: client.handshake_complete and len(ep.connections) == 1)
    net.run(lambda: False, max_time=net.now + 1)
    # The client's Finished: its first record of epoch 2 (unified header, epoch bits 10).
    final_flight = next(d for d in sent if d[0] & 0xE3 == 0x22)
    addr = next(iter(ep.connections))
    conn = ep.connections[addr]
    now = net.now
    for _ in range(200):  # nobody calls ep.datagrams_to_send() in between
        now += 1.0
        ep.receive_datagram(final_flight, addr, now)
    assert conn.stats["alerts_unsent"] + conn.rare_stat("acks_unsent") > 0 or conn.closed
    assert ep.statistics().memory_in_use <= 16384 + 4096
    shutdown_world(net, ep, clients)
    assert pools.in_use == 0
