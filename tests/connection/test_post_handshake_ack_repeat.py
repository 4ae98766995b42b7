"""Each post-handshake ACK repeats the newest records received (up to 32, as BoringSSL
does): RFC 9147 §7.1 asks to ACK as many received records as fit, and by §7.2 a record is
acknowledged if it appears in any ACK, so a lost ACK costs no retransmission once a later
one arrives."""

from __future__ import annotations

from typing import Any

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


def connected(server_opts: dict[str, Any]) -> tuple[Connection, Connection, float]:
    ccfg, scfg = configs(server=server_opts)
    pools = PoolSet()
    client = Connection(ccfg, pools=pools, wall_clock=wall_clock)
    server = Connection(scfg, pools=pools, peer_address=CLIENT_ADDR, wall_clock=wall_clock)
    now = 1.0
    client.connect(SERVER_ADDR, now)
    for _ in range(20):
        for data in output(client, now):
            server.receive_datagram(data, CLIENT_ADDR, now)
        if server.handshake_complete:
            break
        for data in output(server, now):
            client.receive_datagram(data, SERVER_ADDR, now)
    assert server.handshake_complete and client.handshake_complete
    return client, server, now


def acks_of(conn: Connection, now: float, monkeypatch: pytest.MonkeyPatch) -> list[list[Any]]:
    """Run `conn`'s delayed ACK; the record numbers of each ACK it sent."""
    sent: list[list[Any]] = []
    original = Connection._send_ack_for

    def spy(self: Connection, numbers: list[Any], writer: Any = None) -> None:
        sent.append(list(numbers))
        original(self, numbers, writer)

    monkeypatch.setattr(Connection, "_send_ack_for", spy)
    timer = conn.get_timer()
    assert timer is not None
    conn.handle_timer(timer)
    monkeypatch.setattr(Connection, "_send_ack_for", original)
    return sent


def test_a_later_post_handshake_ack_repeats_the_records_acked_before(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client, server, now = connected({"session_tickets": 1})
    try:
        for data in output(server, now):  # the NewSessionTicket
            client.receive_datagram(data, SERVER_ADDR, now)
        (first,) = acks_of(client, now, monkeypatch)
        assert first and all(n.epoch == 3 for n in first)
        output(client, now)  # that ACK is lost
        server.key_update(request_peer=False)
        for data in output(server, now):
            client.receive_datagram(data, SERVER_ADDR, now)
        (second,) = acks_of(client, now, monkeypatch)
        # The KeyUpdate's record (epoch 3), after the ticket's records, still listed.
        assert second[: len(first)] == first and len(second) > len(first)
        for data in output(client, now + 1):
            server.receive_datagram(data, CLIENT_ADDR, now + 1)
        assert server._flight is None or server._flight.acknowledged
    finally:
        client.close()
        server.close()
        output(client, now)
        output(server, now)


def test_a_repeating_ack_is_cut_to_the_newest_records_that_fit_the_mtu(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 32 record numbers make a 514-byte ACK: at an MTU of 256 it keeps the newest that fit
    # (BoringSSL cuts its ACKs to the MTU too) rather than not being sent at all. The server
    # retransmits its ticket 40 times here, past the bound on unacknowledged flights.
    monkeypatch.setattr("dtls13.connection_timers.MAX_UNACKED_RETRANSMISSIONS", 100)
    client, server, now = connected({"session_tickets": 1, "mtu": 256})
    client.set_ciphertext_mtu(256)
    try:
        copies = output(server, now)
        t = now
        for _ in range(40):  # the ticket again and again, each time in new records
            t = server.get_timer() or t
            server.handle_timer(t)
            copies += output(server, t)
        for data in copies:
            client.receive_datagram(data, SERVER_ADDR, now)
        assert len(client._ack_list) == 32
        acks_before = client.stats["acks_sent"]
        timer = client.get_timer()
        assert timer is not None
        client.handle_timer(timer)
        (ack,) = output(client, timer)
        assert len(ack) <= 256 and client.stats["acks_sent"] == acks_before + 1
        server.receive_datagram(ack, CLIENT_ADDR, timer)
        assert server._flight is None or server._flight.acknowledged  # the newest: enough
        assert not server.closed
    finally:
        client.close()
        server.close()
        output(client, now)
        output(server, now)
