"""Retransmission back-off of the handshake's datagram size (RFC 9147 §4.4).

Unanswered flights are retransmitted in smaller datagrams: the handshake "places a premium
on rapid completion over accurate PMTU discovery". That guess is the handshake's own; the
record size of application data stays what the application set (config `mtu`,
`set_ciphertext_mtu`), since DTLS "leaves PMTU discovery to the application" and "SHOULD NOT
interfere with upper layer protocols performing PMTU discovery".
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.dtls_pair import SERVER_ADDR, make_pair
from tests.support.netsim import Impairments

BIG_FLIGHT = "rsa2048"  # a server flight of several full datagrams
MTU = {"mtu": 1400}


def _reference_cleartext_mtu() -> tuple[int, int]:
    """(client, server) get_cleartext_mtu() after a handshake that lost nothing."""
    pair = make_pair(kind=BIG_FLIGHT, client=MTU, server=MTU)
    assert pair.handshake()
    sizes = pair.client.get_cleartext_mtu(), pair.server.get_cleartext_mtu()
    pair.close()
    assert pair.pools.in_use == 0
    return sizes


def test_flights_lost_to_congestion_leave_the_application_mtu_alone() -> None:
    # Every datagram of the server is lost for the first 3.5 s (a congested link, not a
    # small path): both sides time out twice and retransmit in smaller datagrams.
    reference = _reference_cleartext_mtu()
    pair = make_pair(kind=BIG_FLIGHT, client=MTU, server=MTU)
    server_sizes: list[tuple[float, int]] = []

    def lose_early_server_datagrams(src: Any, dst: Any, data: bytes) -> bytes | None:
        if src == SERVER_ADDR:
            server_sizes.append((pair.net.now, len(data)))
            if pair.net.now < 3.5:
                return None
        return data

    pair.net.tamper = lose_early_server_datagrams
    assert pair.handshake(max_time=120)
    assert pair.server.statistics().mtu_backoffs >= 1
    assert pair.client.statistics().mtu_backoffs >= 1
    first = max(n for t, n in server_sizes if t < 1)
    later = max(n for t, n in server_sizes if t >= 3.5)
    assert first > 1050 >= later  # the flight did go out in smaller datagrams
    # ...and the application's records did not shrink with it.
    assert (pair.client.get_cleartext_mtu(), pair.server.get_cleartext_mtu()) == reference
    c2s, s2c = b"c" * reference[0], b"s" * reference[1]
    assert pair.exchange(c2s, s2c)
    pair.close()
    assert pair.pools.in_use == 0


def test_a_path_smaller_than_the_mtu_is_left_to_the_application() -> None:
    # A path that silently drops datagrams over 1,000 bytes: the handshake gets through
    # by shrinking its datagrams; application records keep the MTU the application set,
    # and the application lowers it when it learns of the path's.
    reference = _reference_cleartext_mtu()
    pair = make_pair(impairments=Impairments(mtu=1000), kind=BIG_FLIGHT, client=MTU, server=MTU)
    assert pair.handshake(max_time=120)
    assert pair.net.stats.too_big > 0
    assert pair.server.statistics().mtu_backoffs >= 1
    assert pair.server.get_cleartext_mtu() == reference[1]
    assert pair.exchange(b"small path", b"ok")
    too_big = pair.net.stats.too_big
    pair.server.send(b"x" * (reference[1]))  # accepted: it fits the application's MTU
    pair.drain()
    pair.net.run(lambda: False, max_time=pair.net.now + 1)
    assert pair.net.stats.too_big == too_big + 1  # ...and the path dropped it
    pair.server.set_ciphertext_mtu(1000)
    smaller = pair.server.get_cleartext_mtu()
    assert smaller < reference[1]
    with pytest.raises(ValueError):
        pair.server.send(b"x" * (smaller + 1))
    assert pair.exchange(b"fits now", b"y" * smaller)
    pair.close()
    assert pair.pools.in_use == 0


def test_the_handshake_datagram_size_lasts_until_its_flights_are_acknowledged() -> None:
    # Flights back off while the handshake lasts; once our last flight is acknowledged
    # a later one (a KeyUpdate, a ticket) starts from the MTU again, and an application
    # that sets the MTU replaces the guess at once.
    pair = make_pair(impairments=Impairments(mtu=1000), kind=BIG_FLIGHT, client=MTU, server=MTU)
    pair.client.connect(SERVER_ADDR, pair.net.now)
    assert pair.net.run(lambda: pair.server.flight_mtu < 1000, max_time=120)
    assert pair.server.mtu == 1400
    pair.server.set_ciphertext_mtu(1200)
    assert pair.server.flight_mtu == pair.server.mtu == 1200
    assert pair.net.run(pair.completed, max_time=120)
    assert pair.exchange(b"a", b"b")
    assert pair.client.flight_mtu == pair.client.mtu == 1400
    assert pair.server.flight_mtu == pair.server.mtu == 1200
    assert pair.client.statistics().mtu_backoffs + pair.server.statistics().mtu_backoffs >= 2
    pair.close()
    assert pair.pools.in_use == 0
