"""`max_retransmissions`: a flight that its timer has sent again that many times without
an answer or an ACK ends the connection at its next timeout, timed out, during the
handshake and after it (BoringSSL and OpenSSL give up after 12)."""

from __future__ import annotations

from typing import Any

import pytest

from dtls13.connection import Connection
from dtls13.errors import ConnectionFailed, HandshakeTimeout, error_for
from dtls13.events import ConnectionTerminated
from dtls13.memory import PoolSet
from tests.support.dtls_pair import SERVER_ADDR, configs, make_pair, wall_clock


def output(conn: Connection, now: float) -> int:
    leases = conn.datagrams_to_send(now)
    for lease, _ in leases:
        lease.release()
    return len(leases)


def terminated(conn: Connection) -> ConnectionTerminated:
    events = []
    while (ev := conn.next_event()) is not None:
        events.append(ev)
    ended = [ev for ev in events if isinstance(ev, ConnectionTerminated)]
    assert len(ended) == 1
    return ended[0]


def test_a_handshake_flight_unanswered_ends_after_its_last_retransmission() -> None:
    ccfg, _ = configs(client={"retransmit_initial": 0.4, "max_retransmissions": 3})
    conn = Connection(ccfg, pools=PoolSet(), wall_clock=wall_clock)
    conn.connect(SERVER_ADDR, 0.0)
    assert output(conn, 0.0) == 1
    resent = 0
    while not conn.closed:
        timer = conn.get_timer()
        assert timer is not None and timer < ccfg.handshake_timeout
        conn.handle_timer(timer)
        resent += output(conn, timer)
    assert resent == 3  # 0.4, 1.2 and 2.8 s; at 6.0 s it gives up
    ev = terminated(conn)
    assert ev.timed_out and ev.alert is None and not ev.by_peer
    assert "3 retransmissions" in ev.reason
    exc = error_for(
        reason=ev.reason, alert=ev.alert, by_peer=False, handshake_complete=False, timed_out=True
    )
    assert isinstance(exc, HandshakeTimeout)
    assert conn.get_timer() is None


def test_a_final_flight_never_acked_ends_the_connection_when_bounded() -> None:
    pair = make_pair(7, client={"max_retransmissions": 4}, server={"session_tickets": 0})
    drop_acks = True

    def tamper(src: Any, dst: Any, data: bytes) -> bytes | None:
        if drop_acks and src == SERVER_ADDR and pair.server.handshake_complete:
            return None
        return data

    pair.net.tamper = tamper
    assert pair.handshake()
    before = pair.client.statistics().retransmissions
    pair.net.run(lambda: pair.client.closed, max_time=pair.net.now + 3600.0)
    assert pair.client.closed and not pair.server.closed
    assert pair.client.statistics().retransmissions - before == 4
    ev = pair.terminated("client")
    assert ev is not None and ev.timed_out and ev.alert is None
    exc = error_for(
        reason=ev.reason, alert=ev.alert, by_peer=False, handshake_complete=True, timed_out=True
    )
    assert isinstance(exc, ConnectionFailed)
    drop_acks = False
    pair.close()


def test_an_answered_flight_starts_a_fresh_count() -> None:
    # Lost datagrams early in the handshake use up part of the budget of one flight only.
    pair = make_pair(11, client={"max_retransmissions": 2}, server={"max_retransmissions": 2})
    dropped_hellos = dropped_acks = 0

    def tamper(src: Any, dst: Any, data: bytes) -> bytes | None:
        nonlocal dropped_hellos, dropped_acks
        if dropped_hellos < 2 and src != SERVER_ADDR:
            dropped_hellos += 1  # the ClientHello twice: its flight used up its budget
            return None
        if dropped_acks < 1 and src == SERVER_ADDR and pair.server.handshake_complete:
            dropped_acks += 1  # the ACK of the client's Finished: that flight times out once
            return None
        return data

    pair.net.tamper = tamper
    assert pair.handshake()
    assert pair.net.run(lambda: pair.client._flight is None, max_time=pair.net.now + 60.0)
    assert dropped_hellos == 2 and dropped_acks == 1
    assert pair.client.statistics().retransmissions == 3
    assert pair.exchange(b"ping", b"pong")
    pair.close()


@pytest.mark.parametrize(
    ("bad", "error"), [(0, ValueError), (-1, ValueError), (1.5, TypeError), (True, TypeError)]
)
def test_max_retransmissions_must_be_a_positive_integer(bad: object, error: type) -> None:
    with pytest.raises(error, match="max_retransmissions"):
        configs(client={"max_retransmissions": bad})
