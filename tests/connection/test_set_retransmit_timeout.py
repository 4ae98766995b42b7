"""`Connection.set_retransmit_timeout` changes a live connection's initial retransmission
timeout: the next flights start from it, and the running timers are rescaled with their
back-off kept and from when they were armed (RFC 9147 §5.8.2 lets an RTT estimate set the
timer)."""

from __future__ import annotations

import math

import pytest

from dtls13.connection import Connection
from dtls13.memory import PoolSet
from tests.support.dtls_pair import CLIENT_ADDR, SERVER_ADDR, configs, wall_clock


def output(conn: Connection, now: float) -> list[bytes]:
    out = []
    for lease, _ in conn.datagrams_to_send(now):
        out.append(bytes(lease))
        lease.release()
    return out


def client(pools: PoolSet, **options: object) -> Connection:
    ccfg, _ = configs(client={"retransmit_initial": 1.0, **options})
    return Connection(ccfg, pools=pools, wall_clock=wall_clock)


def done(*conns: Connection) -> None:
    for conn in conns:
        if not conn.closed:
            conn.abandon("test done")
        output(conn, 0.0)


def test_a_shorter_timeout_rescales_the_running_timer_and_keeps_its_back_off() -> None:
    pools = PoolSet()
    conn = client(pools)
    conn.connect(SERVER_ADDR, 0.0)
    try:
        assert len(output(conn, 0.0)) == 1
        assert conn.get_timer() == 1.0
        conn.set_retransmit_timeout(0.5)
        assert conn.get_timer() == 0.5  # armed at 0.0, now half as long
        conn.handle_timer(0.5)
        assert len(output(conn, 0.5)) == 1  # the ClientHello again
        assert conn.get_timer() == 0.5 + 1.0  # doubled from the new initial timeout
        conn.set_retransmit_timeout(1.0)
        assert conn.get_timer() == 0.5 + 2.0  # the same back-off from the old value
    finally:
        done(conn)


def test_a_timer_rescaled_into_the_past_is_due_at_once() -> None:
    pools = PoolSet()
    conn = client(pools)
    conn.connect(SERVER_ADDR, 0.0)
    try:
        output(conn, 0.0)
        conn.set_retransmit_timeout(0.25)
        timer = conn.get_timer()
        assert timer is not None and timer <= 0.5
        conn.handle_timer(0.5)
        assert len(output(conn, 0.5)) == 1
    finally:
        done(conn)


def test_the_next_flight_starts_from_the_new_initial_timeout() -> None:
    ccfg, scfg = configs(client={"retransmit_initial": 1.0}, server={"retransmit_initial": 1.0})
    pools = PoolSet()
    c = Connection(ccfg, pools=pools, wall_clock=wall_clock)
    s = Connection(scfg, pools=pools, peer_address=CLIENT_ADDR, wall_clock=wall_clock)
    try:
        s.set_retransmit_timeout(0.3)  # before the handshake: its first flight uses it
        c.connect(SERVER_ADDR, 0.0)
        for data in output(c, 0.0):
            s.receive_datagram(data, CLIENT_ADDR, 0.0)
        assert output(s, 0.0)  # ServerHello..Finished
        assert s.get_timer() == pytest.approx(0.3)
    finally:
        done(c, s)


def test_the_delayed_ack_timer_is_a_quarter_of_the_rescaled_timeout() -> None:
    ccfg, scfg = configs(
        client={"retransmit_initial": 1.0}, server={"retransmit_initial": 1.0, "mtu": 256}
    )
    pools = PoolSet()
    c = Connection(ccfg, pools=pools, wall_clock=wall_clock)
    s = Connection(scfg, pools=pools, peer_address=CLIENT_ADDR, wall_clock=wall_clock)
    try:
        c.connect(SERVER_ADDR, 0.0)
        for data in output(c, 0.0):
            s.receive_datagram(data, CLIENT_ADDR, 0.0)
        flight = output(s, 0.0)
        assert len(flight) > 2  # the server's flight in several datagrams at this MTU
        # The ServerHello and the first encrypted datagram, the rest lost: a partial flight.
        for data in flight[:2]:
            c.receive_datagram(data, SERVER_ADDR, 0.0)
        assert not c.handshake_complete
        assert c._ack_at == pytest.approx(0.25)  # 1/4 of the 1 s timeout (RFC 9147 §7.1)
        c.set_retransmit_timeout(0.2)
        assert c._ack_at == pytest.approx(0.05)
        assert c.get_timer() == pytest.approx(0.05)
    finally:
        done(c, s)


@pytest.mark.parametrize("bad", [0, -1.0, 61.0, math.nan, math.inf])
def test_an_initial_timeout_out_of_range_is_refused(bad: float) -> None:
    conn = client(PoolSet())
    with pytest.raises(ValueError, match="retransmit_max"):
        conn.set_retransmit_timeout(bad)


@pytest.mark.parametrize("bad", ["1", None, True])
def test_an_initial_timeout_that_is_not_a_number_is_refused(bad: object) -> None:
    conn = client(PoolSet())
    with pytest.raises(TypeError):
        conn.set_retransmit_timeout(bad)  # type: ignore[arg-type]
