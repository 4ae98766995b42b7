"""The server endpoint's per-datagram and per-timer cost does not grow with idle connections."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from dtls_pair import SERVER_ADDR, wall_clock

from dtls13.config import ClientConfig, ServerConfig
from dtls13.connection import Connection
from dtls13.endpoint import DoSProtectionConfig, ServerEndpoint
from dtls13.events import DataReceived
from dtls13.memory import PoolSet

N_IDLE = 2_000
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
    dos = DoSProtectionConfig(max_concurrent_connections=N_IDLE + 10)
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
