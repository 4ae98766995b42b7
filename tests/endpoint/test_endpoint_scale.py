"""The server endpoint's per-datagram and per-timer cost does not grow with idle connections."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from dtls13.config import ClientConfig, ServerConfig
from dtls13.connection import Connection
from dtls13.endpoint import DoSProtectionConfig, ServerEndpoint
from dtls13.events import DataReceived
from dtls13.memory import PoolSet
from tests.support.dtls_pair import SERVER_ADDR, wall_clock

N_IDLE = 2_000
# These tests are about timers and scale; the amplification rule has its own tests.
_NO_AMPLIFICATION_LIMIT = DoSProtectionConfig(amplification_limit=None)
PSK = (b"sensor", bytes(range(32)))


def _deliver(out: list[tuple[Any, Any]], to: Any, src: Any, now: float) -> None:
    for lease, _ in out:
        to.receive_datagram(lease.tobytes(), src, now)
        lease.release()


def _pump(client: Connection, addr: Any, ep: ServerEndpoint, now: float) -> None:
    """Exchange datagrams directly (no loss) until both sides are quiet."""
    for _ in range(20):
        c_out = client.datagrams_to_send(now)
        _deliver(c_out, ep, addr, now)
        s_out = ep.datagrams_to_send(now)
        _deliver(s_out, client, SERVER_ADDR, now)
        if not c_out and not s_out:
            return
    raise AssertionError("the exchange did not settle")


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> Iterator[Counter[str]]:
    """Count Connection.datagrams_to_send / get_timer / handle_timer calls per connection."""
    calls: Counter[str] = Counter()
    for name in ("datagrams_to_send", "get_timer", "handle_timer"):
        original = getattr(Connection, name)

        def wrapper(self: Connection, *a: Any, _o: Any = original, _n: str = name) -> Any:
            if not self.is_client:
                calls[_n] += 1
            return _o(self, *a)

        monkeypatch.setattr(Connection, name, wrapper)
    yield calls


def test_one_datagram_among_2000_idle_connections_touches_one_connection(
    counted: Counter[str],
) -> None:
    ccfg = ClientConfig(psk=PSK, psk_modes=("psk_ke",), debug=True)
    scfg = ServerConfig(external_psks=dict([PSK]), psk_modes=("psk_ke",), debug=True)
    pools = PoolSet()
    dos = DoSProtectionConfig(max_concurrent_connections=N_IDLE + 10, amplification_limit=None)
    ep = ServerEndpoint(scfg, pools=pools, dos=dos, cookie_policy="never", wall_clock=wall_clock)
    clients: list[tuple[Connection, Any]] = []
    now = 0.0
    for i in range(N_IDLE):
        addr = (f"10.{i // 60000}.{i // 250 % 240}.{i % 250 + 1}", 5000 + i)
        c = Connection(ccfg, pools=pools, wall_clock=wall_clock)
        c.connect(SERVER_ADDR, now)
        _pump(c, addr, ep, now)
        assert c.handshake_complete
        while c.next_event() is not None:
            pass
        clients.append((c, addr))
    # Let every delayed ACK and retransmission run out: then every connection is idle.
    for _ in range(5):
        now += 5.0
        for c, addr in clients:
            if (t := c.get_timer()) is not None and t <= now:
                c.handle_timer(now)
            _deliver(c.datagrams_to_send(now), ep, addr, now)
        t = ep.get_timer()
        if t is not None and t <= now:
            ep.handle_timer(now)
        for lease, _ in ep.datagrams_to_send(now):
            lease.release()
    assert len(ep.connections) == N_IDLE
    assert all(not c.closed for c, _ in clients)
    assert ep.get_timer() is None
    for conn in ep.new_connections():
        while conn.next_event() is not None:
            pass

    counted.clear()
    client, addr = clients[N_IDLE // 2]
    client.send(b"one reading")
    ((dgram, _),) = client.datagrams_to_send(now)
    conn = ep.receive_datagram(dgram.tobytes(), addr, now)
    dgram.release()
    assert conn is ep.connections[addr]
    ep.datagrams_to_send(now)
    ep.get_timer()
    ep.handle_timer(now)
    assert isinstance(conn.next_event(), DataReceived)
    # O(1) connections asked, not 2,000 (the old endpoint made 2,000 calls of each).
    assert counted["datagrams_to_send"] <= 2
    assert counted["get_timer"] <= 3
    assert counted["handle_timer"] == 0

    # The server application answers: the endpoint learns of it through the connection.
    counted.clear()
    conn.send(b"ok")
    out = ep.datagrams_to_send(now)
    assert [a for _, a in out] == [addr]
    _deliver(out, client, SERVER_ADDR, now)
    assert isinstance(client.next_event(), DataReceived)
    assert counted["datagrams_to_send"] == 1

    # A retransmission timer fires for that connection alone.
    counted.clear()
    conn.key_update()
    for lease, _ in ep.datagrams_to_send(now):
        lease.release()  # lost: the server will retransmit its KeyUpdate
    deadline = ep.get_timer()
    assert deadline is not None and deadline > now
    ep.handle_timer(deadline)
    retransmitted = ep.datagrams_to_send(deadline)
    assert [a for _, a in retransmitted] == [addr]
    for lease, _ in retransmitted:
        lease.release()
    assert counted["handle_timer"] == 1
    assert counted["datagrams_to_send"] <= 3
    assert counted["get_timer"] <= 8

    for c, _ in clients:
        c.close()
        for lease, _ in c.datagrams_to_send(now):
            lease.release()
        pools.release_owner(c.owner)
    ep.close()
    for lease, _ in ep.datagrams_to_send(now):
        lease.release()
    ep.release()
    assert pools.in_use == 0


def _expected_timer(ep: ServerEndpoint) -> float | None:
    """What the old endpoint computed: the earliest timer over every connection."""
    conns = [*ep.connections.values(), *ep.debug_state().replacements.values()]
    timers = [t for c in conns if (t := c.get_timer()) is not None]
    return min(timers) if timers else None


def test_the_timer_heap_agrees_with_every_connection_on_a_lossy_network() -> None:
    from tests.support.dtls_pair import configs
    from tests.support.netsim import Impairments, SimNetwork

    ccfg, scfg = configs()
    pools = PoolSet()
    net = SimNetwork(11, Impairments(loss=0.25, reorder=0.1, duplicate=0.05))
    ep = ServerEndpoint(
        scfg, pools=pools, dos=_NO_AMPLIFICATION_LIMIT, cookie_policy="never", wall_clock=wall_clock
    )
    net.add(SERVER_ADDR, ep)
    clients = []
    for i in range(12):
        c = Connection(ccfg, pools=pools, wall_clock=wall_clock)
        net.add((f"10.2.0.{i + 1}", 6000 + i), c)
        clients.append(c)
        c.connect(SERVER_ADDR, 0.0)
    mismatches: list[tuple[float, float | None, float | None]] = []
    checks = 0

    def consistent_until(done: Any) -> Any:
        def check() -> bool:
            nonlocal checks
            checks += 1
            expected, got = _expected_timer(ep), ep.get_timer()
            if expected != got:
                mismatches.append((net.now, expected, got))
            return bool(done())

        return check

    assert net.run(
        consistent_until(
            lambda: (
                len(ep.connections) == 12
                and all(c.handshake_complete for c in (*clients, *ep.connections.values()))
            )
        )
    )
    server_side = list(ep.connections.values())
    for conn in server_side:  # the application on both sides, and key updates
        conn.send(b"from the server")
        conn.key_update()
    for c in clients:
        c.send(b"from the client")
    net.run(consistent_until(lambda: False), max_time=net.now + 30)
    assert all(s.stats["key_updates_sent"] == 1 for s in server_side)
    for conn in server_side[:6]:  # half the connections close from the server's side
        conn.close()
    net.run(consistent_until(lambda: False), max_time=net.now + 30)
    assert checks > 100 and mismatches == []
    assert len(ep.reap()) == 6
    for c in clients:
        c.close()
    ep.close()
    net.flush()
    for c in clients:
        for lease, _ in c.datagrams_to_send(net.now):
            lease.release()
    ep.release()
    assert pools.in_use == 0


def test_a_removed_connection_no_longer_reports_to_the_endpoint() -> None:
    ccfg = ClientConfig(psk=PSK, psk_modes=("psk_ke",), debug=True)
    scfg = ServerConfig(external_psks=dict([PSK]), psk_modes=("psk_ke",), debug=True)
    pools = PoolSet()
    ep = ServerEndpoint(
        scfg, pools=pools, dos=_NO_AMPLIFICATION_LIMIT, cookie_policy="never", wall_clock=wall_clock
    )
    addr = ("10.3.0.1", 7000)
    client = Connection(ccfg, pools=pools, wall_clock=wall_clock)
    client.connect(SERVER_ADDR, 0.0)
    _pump(client, addr, ep, 0.0)
    conn = ep.connections[addr]
    assert conn.on_activity is not None
    ep.remove(conn)
    assert conn.on_activity is None
    conn.send(b"late")  # the application still holds it: nothing reaches the endpoint
    assert ep.datagrams_to_send(0.0) == [] and ep.get_timer() is None
    for lease, _ in conn.datagrams_to_send(0.0):
        lease.release()
    conn.abandon()
    pools.release_owner(conn.owner)
    client.abandon()
    pools.release_owner(client.owner)
    ep.close()
    ep.release()
    assert pools.in_use == 0
