"""Post-handshake messages are ACKed after a short delay (RFC 9147 §7.1: a timer of 1/4 the
retransmission timeout), so tickets that come in separate datagrams get one ACK between them,
and a peer that reads records in order (BoringSSL's test runner) never finds an ACK where it
waits for application data."""

from __future__ import annotations

from dtls13.config import ClientConfig, ServerConfig
from dtls13.connection import Connection
from dtls13.memory import PoolSet
from tests.support.dtls_pair import CLIENT_ADDR, SERVER_ADDR, configs, wall_clock


def output(conn: Connection, now: float) -> list[bytes]:
    out = []
    for lease, _ in conn.datagrams_to_send(now):
        out.append(bytes(lease))
        lease.release()
    return out


def test_two_tickets_in_separate_datagrams_get_one_delayed_ack() -> None:
    ccfg, scfg = configs(server={"session_tickets": 2, "mtu": 256})
    pools = PoolSet()
    client = Connection(ccfg, pools=pools, wall_clock=wall_clock)
    server = Connection(scfg, pools=pools, peer_address=CLIENT_ADDR, wall_clock=wall_clock)
    now = 1.0
    client.connect(SERVER_ADDR, now)
    try:
        for _ in range(20):
            for data in output(client, now):
                server.receive_datagram(data, CLIENT_ADDR, now)
            if server.handshake_complete:
                break
            for data in output(server, now):
                client.receive_datagram(data, SERVER_ADDR, now)
        assert server.handshake_complete and client.handshake_complete
        tickets = output(server, now)
        assert len(tickets) >= 2  # each ticket in a datagram of its own at this MTU
        acks_before = client.stats["acks_sent"]
        for data in tickets:
            client.receive_datagram(data, SERVER_ADDR, now)
            assert output(client, now) == []  # no ACK at once, between or after the tickets
        timer = client.get_timer()
        assert timer is not None and timer == now + ccfg.retransmit_initial / 4
        client.handle_timer(timer)
        acks = output(client, timer)
        assert len(acks) == 1 and client.stats["acks_sent"] == acks_before + 1
        for data in acks:
            server.receive_datagram(data, CLIENT_ADDR, timer)
        assert server._flight is None or server._flight.acknowledged
    finally:
        client.close()
        server.close()
        output(client, now)
        output(server, now)


def test_repeated_post_handshake_records_are_acked_after_the_delay_too() -> None:
    # A ticket that comes twice before the ACK was due (the server's retransmission, new
    # record numbers) gets one ACK after the delay, not an ACK at once for the copy.
    ccfg, scfg = configs(server={"session_tickets": 1})
    pools = PoolSet()
    client = Connection(ccfg, pools=pools, wall_clock=wall_clock)
    server = Connection(scfg, pools=pools, peer_address=CLIENT_ADDR, wall_clock=wall_clock)
    now = 1.0
    client.connect(SERVER_ADDR, now)
    try:
        for _ in range(20):
            for data in output(client, now):
                server.receive_datagram(data, CLIENT_ADDR, now)
            if server.handshake_complete:
                break
            for data in output(server, now):
                client.receive_datagram(data, SERVER_ADDR, now)
        tickets = output(server, now)
        assert tickets
        retransmit_at = server.get_timer()
        assert retransmit_at is not None
        server.handle_timer(retransmit_at)
        again = output(server, retransmit_at)
        assert again and again != tickets
        acks_before = client.stats["acks_sent"]
        for data in tickets + again:
            client.receive_datagram(data, SERVER_ADDR, now)
            assert output(client, now) == []
        timer = client.get_timer()
        assert timer is not None and timer == now + ccfg.retransmit_initial / 4
        client.handle_timer(timer)
        assert len(output(client, timer)) == 1
        assert client.stats["acks_sent"] == acks_before + 1
    finally:
        client.close()
        server.close()
        output(client, now)
        output(server, now)


def test_records_awaiting_an_ack_are_bounded_to_the_newest_32() -> None:
    # A peer can send many records before our delayed ACK is due (BoringSSL's runner sends
    # 65535 KeyUpdates): the list of record numbers to ACK keeps the newest 32 (BoringSSL's
    # bound too), so it cannot grow without limit nor overflow the ACK record's length.
    ccfg, scfg = configs(server={"session_tickets": 1})
    pools = PoolSet()
    client = Connection(ccfg, pools=pools, wall_clock=wall_clock)
    server = Connection(scfg, pools=pools, peer_address=CLIENT_ADDR, wall_clock=wall_clock)
    now = 1.0
    client.connect(SERVER_ADDR, now)
    try:
        for _ in range(20):
            for data in output(client, now):
                server.receive_datagram(data, CLIENT_ADDR, now)
            if server.handshake_complete:
                break
            for data in output(server, now):
                client.receive_datagram(data, SERVER_ADDR, now)
        copies = output(server, now)
        t = now
        for _ in range(40):  # the ticket again and again, each time in new records
            t = server.get_timer() or t
            server.handle_timer(t)
            copies += output(server, t)
        for data in copies:
            client.receive_datagram(data, SERVER_ADDR, now)
            assert len(client._ack_list) <= 32
        timer = client.get_timer()
        assert timer is not None
        client.handle_timer(timer)
        (ack,) = output(client, timer)
        for data in [ack]:
            server.receive_datagram(data, CLIENT_ADDR, timer)
        assert server._flight is None or server._flight.acknowledged
        assert not client.closed and not server.closed
    finally:
        client.close()
        server.close()
        output(client, now)
        output(server, now)


def _established(ccfg: ClientConfig, scfg: ServerConfig) -> tuple[Connection, Connection, float]:
    pools = PoolSet()
    client = Connection(ccfg, pools=pools, wall_clock=wall_clock)
    server = Connection(scfg, pools=pools, peer_address=CLIENT_ADDR, wall_clock=wall_clock)
    now = 1.0
    client.connect(SERVER_ADDR, now)
    for _ in range(20):
        for data in output(client, now):
            server.receive_datagram(data, CLIENT_ADDR, now)
        for data in output(server, now):
            client.receive_datagram(data, SERVER_ADDR, now)
        if server.handshake_complete and client.handshake_complete:
            break
    assert server.handshake_complete and client.handshake_complete
    now += 5.0
    for conn in (client, server):
        conn.handle_timer(now)
        output(conn, now)
    return client, server, now


def test_a_key_update_is_acked_after_the_delay_or_ahead_of_our_own_update_request() -> None:
    """A KeyUpdate is ACKed like other post-handshake messages, after the delay (BoringSSL
    reads nothing but data where it waits for data), except that the ACK goes ahead of
    our own next update request: a peer whose KeyUpdate waits for its ACK may send no
    KeyUpdate (RFC 9147 §8) and ignores our request until then (wolfSSL)."""
    ccfg, scfg = configs(server={"session_tickets": 0})
    client, server, now = _established(ccfg, scfg)
    try:
        acks_before = server.stats["acks_sent"]
        client.key_update(request_peer=False)
        for data in output(client, now):
            server.receive_datagram(data, CLIENT_ADDR, now)
        assert output(server, now) == []  # not at once
        server.send(b"data while the ACK waits")
        datagrams = output(server, now)
        assert len(datagrams) == 1 and server.stats["acks_sent"] == acks_before  # data alone
        server.key_update(request_peer=True)
        datagrams = output(server, now)
        assert server.stats["acks_sent"] == acks_before + 1  # the ACK, then our KeyUpdate
        for data in datagrams:
            client.receive_datagram(data, SERVER_ADDR, now)
        # Its KeyUpdate acknowledged, the client sends with the new keys and answers ours.
        assert client._records.write_epoch == 4
        assert client.stats["key_updates_sent"] == 2
        assert server.get_timer() != now + scfg.retransmit_initial / 4  # no second ACK due
    finally:
        client.close()
        server.close()
        output(client, now)
        output(server, now)


def test_the_key_update_answering_a_request_goes_before_the_ack_of_the_request() -> None:
    """The peer asked us to update: our KeyUpdate goes at once and alone, its ACK after the
    delay. A peer reading for our KeyUpdate (BoringSSL's runner) met an ACK first and
    failed with unexpected_message."""
    ccfg, scfg = configs(server={"session_tickets": 0})
    client, server, now = _established(ccfg, scfg)
    try:
        acks_before = server.stats["acks_sent"]
        client.key_update(request_peer=True)
        for data in output(client, now):
            server.receive_datagram(data, CLIENT_ADDR, now)
        datagrams = output(server, now)
        assert len(datagrams) == 1 and server.stats["acks_sent"] == acks_before
        assert server.stats["key_updates_sent"] == 1
        for data in datagrams:
            client.receive_datagram(data, SERVER_ADDR, now)
        assert client.stats["key_updates_received"] == 1
        assert client._flight is not None and not client._flight.acknowledged
        now += scfg.retransmit_initial / 4
        server.handle_timer(now)
        for data in output(server, now):
            client.receive_datagram(data, SERVER_ADDR, now)
        assert server.stats["acks_sent"] == acks_before + 1
        assert client._flight is None or client._flight.acknowledged
    finally:
        client.close()
        server.close()
        output(client, now)
        output(server, now)


def test_a_key_update_alone_is_acked_when_the_delay_runs_out() -> None:
    ccfg, scfg = configs(server={"session_tickets": 0})
    client, server, now = _established(ccfg, scfg)
    try:
        client.key_update(request_peer=False)
        for data in output(client, now):
            server.receive_datagram(data, CLIENT_ADDR, now)
        assert output(server, now) == []
        timer = server.get_timer()
        assert timer is not None and timer <= now + scfg.retransmit_initial / 4
        server.handle_timer(timer)
        for data in output(server, timer):
            client.receive_datagram(data, SERVER_ADDR, timer)
        assert client._flight is None or client._flight.acknowledged
    finally:
        client.close()
        server.close()
        output(client, now)
        output(server, now)
