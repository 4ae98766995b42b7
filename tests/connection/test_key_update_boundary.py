"""Handshake messages must not span a key change (RFC 8446 §5.1): nothing may follow a
KeyUpdate under the keys it retires. In DTLS the new keys wait for the KeyUpdate's ACK
(RFC 9147 §8), and so must any post-handshake message sent after it."""

from __future__ import annotations

from dtls13.alerts import AlertDescription
from dtls13.handshake.constants import HandshakeType
from dtls13.record import ContentType
from tests.support.conn_helpers import handshake_message, protected_datagram
from tests.support.dtls_pair import CLIENT_ADDR, Pair, make_pair

KEY_UPDATE_NOT_REQUESTED = b"\x00"


def _established() -> Pair:
    pair = make_pair(server={"session_tickets": 0})
    assert pair.handshake()
    pair.net.run(lambda: False, max_time=pair.net.now + 5)  # the final ACK settles
    return pair


def _key_update(seq: int) -> bytes:
    return handshake_message(HandshakeType.key_update, KEY_UPDATE_NOT_REQUESTED, seq)


def _from_client(pair: Pair, payload: bytes) -> None:
    """`payload` in one record under the client's current keys, to the server."""
    epoch = pair.client._records.write_epoch
    data = protected_datagram(pair.client, epoch, payload, ContentType.handshake)
    pair.server.receive_datagram(data, CLIENT_ADDR, pair.net.now)


def _ended_with_unexpected_message(pair: Pair) -> None:
    ended = pair.terminated("server")
    assert ended is not None and not ended.by_peer, ended
    assert ended.alert is AlertDescription.unexpected_message
    assert pair.server.statistics().key_updates_received == 0
    pair.close()


def test_a_message_after_a_key_update_in_its_record_is_unexpected_message() -> None:
    pair = _established()
    seq = pair.client._send_seq
    _from_client(pair, _key_update(seq) + _key_update(seq + 1))
    _ended_with_unexpected_message(pair)


def test_a_message_buffered_before_the_key_update_it_follows_is_unexpected_message() -> None:
    pair = _established()
    seq = pair.client._send_seq
    _from_client(pair, _key_update(seq + 1))  # ahead of its turn: buffered
    assert pair.terminated("server") is None
    _from_client(pair, _key_update(seq))
    _ended_with_unexpected_message(pair)


def test_a_message_after_a_key_update_in_a_later_record_under_the_old_keys() -> None:
    pair = _established()
    seq = pair.client._send_seq
    _from_client(pair, _key_update(seq))
    assert pair.server.statistics().key_updates_received == 1
    _from_client(pair, _key_update(seq + 1))  # the client's keys have not moved
    ended = pair.terminated("server")
    assert ended is not None and ended.alert is AlertDescription.unexpected_message
    pair.close()


def test_a_repeated_key_update_under_the_old_keys_is_not_an_error() -> None:
    pair = _established()
    seq = pair.client._send_seq
    _from_client(pair, _key_update(seq))
    _from_client(pair, _key_update(seq))  # a retransmission: no new message
    assert pair.terminated("server") is None
    assert pair.server.statistics().key_updates_received == 1
    pair.close()


def test_a_key_update_alone_is_taken() -> None:
    pair = _established()
    _from_client(pair, _key_update(pair.client._send_seq))
    assert pair.terminated("server") is None
    assert pair.server.statistics().key_updates_received == 1
    pair.close()


def test_a_post_handshake_message_after_our_key_update_waits_for_its_ack() -> None:
    pair = make_pair(client={"connection_id": 4}, server={"connection_id": 6})
    assert pair.handshake()
    pair.net.run(lambda: False, max_time=pair.net.now + 5)  # the final ACK settles
    pair.client.key_update(request_peer=False)
    pair.client.request_connection_ids(2)
    flight = pair.client._flight
    assert flight is not None
    assert [m.msg_type for m in flight.messages] == [HandshakeType.key_update]
    # The RequestConnectionId goes once the KeyUpdate is ACKed, under the new keys; sent
    # after the KeyUpdate under the old ones, the server would end the connection.
    assert pair.net.run(lambda: len(pair.client.spare_peer_cids) == 2, max_time=20)
    assert pair.terminated("server") is None and pair.terminated("client") is None
    assert pair.server.statistics().key_updates_received == 1
    assert pair.exchange(b"after", b"both")
    pair.close()
    assert pair.pools.in_use == 0
