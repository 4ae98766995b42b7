"""After the handshake each side's flights (KeyUpdate, NewSessionTicket, the connection ID
messages) are retransmitted on their own timer until ACKed (RFC 9147 §7, §8). A repeat of
the peer's post-handshake message only says the peer lacks our ACK: it is ACKed again and
does not make us resend a flight of ours, else two sides with a flight each in flight
answer each other's copies at once, over and over, while their ACKs are lost."""

from __future__ import annotations

from dtls13.memory import PoolSet
from tests.connection.test_post_handshake_ack_repeat import connected, output
from tests.support.dtls_pair import CLIENT_ADDR, SERVER_ADDR, make_pair
from tests.support.netsim import Impairments


def test_a_repeated_ticket_does_not_resend_the_clients_key_update() -> None:
    client, server, now = connected({"session_tickets": 1})
    try:
        for data in output(server, now):  # the NewSessionTicket
            client.receive_datagram(data, SERVER_ADDR, now)
        ack_at = client.get_timer()
        assert ack_at is not None
        client.handle_timer(ack_at)
        assert output(client, ack_at)  # the ticket's ACK: lost
        now = ack_at + 0.5
        server.send(b"data")  # the client's next input is at `now`
        for data in output(server, now):
            client.receive_datagram(data, SERVER_ADDR, now)
        client.key_update(request_peer=False)
        assert output(client, now)  # the KeyUpdate: lost
        retransmissions = client.stats["retransmissions"]
        acks = client.stats["acks_sent"]
        # The server, lacking our ACK, sends its ticket again (new record numbers),
        # before the KeyUpdate's own retransmission is due.
        at = server.get_timer()
        kept = client.get_timer()
        assert at is not None and kept is not None and at < kept
        server.handle_timer(at)
        repeat = output(server, at)
        assert repeat and server.stats["retransmissions"] == 1
        for data in repeat:
            client.receive_datagram(data, SERVER_ADDR, at)
        assert not output(client, at)  # no KeyUpdate at once...
        assert client.stats["retransmissions"] == retransmissions
        ack_at = client.get_timer()
        assert ack_at is not None and ack_at < at + 0.5
        client.handle_timer(ack_at)  # ...the repeat's ACK after the usual delay
        assert client.stats["acks_sent"] == acks + 1
        for data in output(client, ack_at):
            server.receive_datagram(data, CLIENT_ADDR, ack_at)
        assert server._flight is None or server._flight.acknowledged
        # The KeyUpdate still goes again on its own timer.
        while client.stats["retransmissions"] == retransmissions:
            timer = client.get_timer()
            assert timer is not None and timer < now + 5
            client.handle_timer(timer)
        assert output(client, timer)
    finally:
        for conn in (client, server):
            conn.close()
            output(conn, now)


def test_crossing_post_handshake_flights_under_loss_go_quiet() -> None:
    """A client KeyUpdate crossing the server's ticket on a lossy path: once both are
    acknowledged the two sides fall silent (this seed lost the ACKs often enough for the
    two to answer each other's copies tens of times)."""
    pools = PoolSet()
    imp = Impairments(loss=0.2, reorder=0.3, duplicate=0.2)
    pair = make_pair(266851808, imp, pools=pools, cache=True)
    assert pair.handshake()
    pair.client.key_update(request_peer=False)
    assert pair.exchange(b"c", b"s")
    before = pair.client.stats["datagrams_out"] + pair.server.stats["datagrams_out"]
    pair.net.run(lambda: False, max_time=pair.net.now + 30)
    after = pair.client.stats["datagrams_out"] + pair.server.stats["datagrams_out"]
    assert after - before <= 12
    assert pair.client._flight is None and pair.server._flight is None
    pair.close()
    assert pools.in_use == 0
