"""An authenticated peer that sends fragments of post-handshake messages (of any type,
claimed length, offset and message_seq) pins memory only in proportion to the bytes it
actually sent, and never more than max_bytes_buffered: reassembly storage grows with
what arrives, not with what a header claims."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dtls13.record import ContentType
from tests.support.conn_helpers import protected_datagram
from tests.support.dtls_pair import CLIENT_ADDR, SERVER_ADDR, make_pair

BUFFERED = 64 * 1024  # max_bytes_buffered on both sides
SLACK = 16 * 1024  # a few pool slots of bookkeeping, whatever came

fragment = st.tuples(
    st.sampled_from((4, 4, 4, 24, 13, 99)),  # mostly NewSessionTicket
    st.integers(0, 12),  # message_seq ahead of the next expected one
    # The length the header claims: mostly within max_handshake_message (over it, the
    # message is refused at once).
    st.one_of(st.integers(1, BUFFERED), st.integers(1, BUFFERED), st.integers(1, (1 << 24) - 1)),
    st.floats(0.0, 1.0),  # where in that length the fragment starts
    st.integers(1, 900),  # bytes actually sent
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fragments=st.lists(fragment, min_size=8, max_size=60), to_client=st.booleans())
def test_a_peer_pins_memory_only_in_proportion_to_the_fragments_it_sent(
    fragments: list[tuple[int, int, int, float, int]], to_client: bool
) -> None:
    limits = {"max_bytes_buffered": BUFFERED, "max_handshake_message": BUFFERED}
    pair = make_pair(11, client=limits, server={**limits, "session_tickets": 0})
    assert pair.handshake()
    pair.net.run(lambda: False, max_time=pair.net.now + 3)  # the final ACK settles
    victim, sender = (pair.client, pair.server) if to_client else (pair.server, pair.client)
    addr = SERVER_ADDR if to_client else CLIENT_ADDR
    base = victim.owner.in_use
    next_seq = victim._reassembly().next_expected_seq if not victim.closed else 0
    sent = 0
    messages: dict[int, tuple[int, int]] = {}  # message_seq -> (type, length): consistent
    for msg_type, ahead, claimed, at, size in fragments:
        if victim.closed:
            break  # a message that made no sense ended it: nothing more is kept
        msg_type, claimed = messages.setdefault(ahead, (msg_type, claimed))
        size = min(size, claimed)
        offset = int(at * (claimed - size))
        header = (
            bytes([msg_type])
            + claimed.to_bytes(3, "big")
            + (next_seq + ahead).to_bytes(2, "big")
            + offset.to_bytes(3, "big")
            + size.to_bytes(3, "big")
        )
        body = bytes((offset + i) * 7 % 251 for i in range(size))  # overlaps agree
        datagram = protected_datagram(sender, 3, header + body, ContentType.handshake)
        victim.receive_datagram(datagram, addr, pair.net.now)
        for lease, _ in victim.datagrams_to_send(pair.net.now):
            lease.release()
        sent += size
        held = victim.owner.in_use - base
        assert held <= SLACK + 2 * sent, (held, sent)
        assert held <= SLACK + BUFFERED, (held, sent)
    pair.close()
    assert pair.pools.in_use == 0
