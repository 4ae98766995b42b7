"""A flight the peer never ACKs after the handshake (the client's final flight, a
post-handshake message) is retransmitted a bounded number of times, then left alone: an
idle connection stops sending, and stays usable."""

from __future__ import annotations

from typing import Any

from dtls13.connection_flights import MAX_UNACKED_RETRANSMISSIONS
from tests.support.dtls_pair import SERVER_ADDR, make_pair


def test_a_final_flight_never_acked_stops_being_retransmitted() -> None:
    # No tickets: once its handshake is complete, all the server sends are ACKs.
    pair = make_pair(5, server={"session_tickets": 0})
    drop_acks = True

    def tamper(src: Any, dst: Any, data: bytes) -> bytes | None:
        if drop_acks and src == SERVER_ADDR and pair.server.handshake_complete:
            return None
        return data

    pair.net.tamper = tamper
    assert pair.handshake()
    client = pair.client
    completed_with = client.statistics().retransmissions
    # An hour of silence: bounded retransmission (the back-off reaches retransmit_max, 60 s,
    # so an unbounded one sends about 60 more) and then no timer at all.
    pair.net.run(lambda: False, max_time=pair.net.now + 3600.0)
    sent = client.statistics().retransmissions - completed_with
    assert 0 < sent <= MAX_UNACKED_RETRANSMISSIONS
    assert client.statistics().unacked_flights_abandoned == 1
    assert client.get_timer() is None
    assert not client.closed and not pair.server.closed
    # Still usable both ways once ACKs (and everything else) get through again.
    drop_acks = False
    assert pair.exchange(b"from the client", b"from the server")
    pair.close()
