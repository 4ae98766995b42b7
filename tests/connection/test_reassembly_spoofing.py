"""Spoofed handshake fragments before authentication: memory follows the bytes received,
conflicting plaintext fragments never latch, and only accepted records are acknowledged."""

from __future__ import annotations

import random
from typing import Any

import pytest

from dtls13.connection import Connection
from dtls13.handshake.constants import HandshakeType
from dtls13.handshake.fragments import Reassembler, fragment_message
from dtls13.handshake.state import ServerState
from dtls13.memory import PoolSet
from dtls13.record import RecordNumber
from tests.support.conn_helpers import plaintext_record
from tests.support.dtls_pair import CLIENT_ADDR, SERVER_ADDR, Pair, make_pair

SPOOF_SEQ = 7  # the spoofed record's sequence number, distinct from any genuine one


def _fragment(msg_type: int, length: int, message_seq: int, body: bytes, offset: int = 0) -> bytes:
    """One handshake fragment with its 12-byte DTLS header (RFC 9147 §5.2)."""
    return (
        bytes([msg_type])
        + length.to_bytes(3, "big")
        + message_seq.to_bytes(2, "big")
        + offset.to_bytes(3, "big")
        + len(body).to_bytes(3, "big")
        + body
    )


def _spoof(msg_type: int, claimed: int, message_seq: int, body_len: int = 65) -> bytes:
    return plaintext_record(
        _fragment(msg_type, claimed, message_seq, bytes(body_len)), seq=SPOOF_SEQ
    )


@pytest.fixture
def pairs() -> Any:
    """Pairs made through this are closed even when the test fails."""
    made: list[Pair] = []

    def make(hrr: bool = False) -> Pair:
        pair = _hrr_pair() if hrr else make_pair()
        made.append(pair)
        return pair

    yield make
    for pair in made:
        pair.close()


def _hrr_pair() -> Pair:
    """A pair whose server answers the first ClientHello with a HelloRetryRequest (it
    wants a secp256r1 share, the client offers only x25519) and keeps its connection."""
    return make_pair(
        client={"groups": ["x25519", "secp256r1"], "key_share_groups": ["x25519"]},
        server={"groups": ["secp256r1"]},
    )


def _first_datagram(pair: Pair, src: Connection, dst: Connection, now: float) -> None:
    addr = CLIENT_ADDR if src is pair.client else SERVER_ADDR
    for lease, _ in src.datagrams_to_send(now):
        dst.receive_datagram(bytes(lease), addr, now)
        lease.release()


def _acks_sent(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, list[RecordNumber]]]:
    """Every ACK any connection sends, as (id of the connection, record numbers)."""
    sent: list[tuple[int, list[RecordNumber]]] = []
    original = Connection._send_ack_for

    def spy(self: Connection, numbers: list[RecordNumber], *args: Any, **kwargs: Any) -> Any:
        sent.append((id(self), list(numbers)))
        return original(self, numbers, *args, **kwargs)

    monkeypatch.setattr(Connection, "_send_ack_for", spy)
    return sent


# -- memory grows with the bytes received, not with the length claimed ---------------


def test_spoofed_server_hello_fragment_pins_memory_in_proportion_to_its_size(pairs: Any) -> None:
    pair = pairs()
    client = pair.client
    client.connect(SERVER_ADDR, 0.0)
    for lease, _ in client.datagrams_to_send(0.0):
        lease.release()
    before = client.owner.in_use
    spoof = _spoof(HandshakeType.server_hello, 65000, 0)
    assert len(spoof) - 13 == 77  # a 77-byte handshake fragment
    client.receive_datagram(spoof, SERVER_ADDR, 0.1)
    held = client.owner.in_use - before
    assert held < 2048, f"a 77-byte fragment pins {held} bytes"
    assert client.statistics().memory_in_use == client.owner.in_use


def test_spoofed_client_hello_fragments_after_a_retry_pin_memory_in_proportion(pairs: Any) -> None:
    pair = pairs(hrr=True)
    client, server = pair.client, pair.server
    client.connect(SERVER_ADDR, 0.0)
    _first_datagram(pair, client, server, 0.0)  # ClientHello1 -> HelloRetryRequest
    assert server.state is ServerState.WAIT_CLIENT_HELLO_AFTER_RETRY
    for lease, _ in server.datagrams_to_send(0.0):
        lease.release()
    before = server.owner.in_use
    # A 65-byte fragment claiming a 64 KiB second ClientHello, and one for each
    # message_seq the reassembler would buffer ahead.
    for seq in (1, 2, 3, 4):
        server.receive_datagram(
            _spoof(HandshakeType.client_hello, 65000, seq, 53), CLIENT_ADDR, 0.1
        )
    held = server.owner.in_use - before
    assert held < 2048, f"four 65-byte fragments pin {held} bytes"


def test_forty_kib_certificate_in_random_order_fragments_reassembles() -> None:
    pools = PoolSet()
    owner = pools.owner("connection", "c")
    r = Reassembler(pools, owner)
    rnd = random.Random(40)
    body = rnd.randbytes(40 * 1024)
    frags = fragment_message(HandshakeType.certificate, 0, body, 1187)
    rnd.shuffle(frags)
    received = 0
    for i, f in enumerate(frags):
        piece = body[f.offset : f.offset + f.length]
        r.add_fragment_untrusted(HandshakeType.certificate, len(body), 0, f.offset, f.length, piece)
        received += f.length
        if i + 1 < len(frags):
            # Storage follows what arrived: at most a small chunk's slack per fragment.
            assert r.bytes_buffered <= received + 2 * 256 * (i + 1)
    message = r.next_message()
    assert message is not None and bytes(message.body) == body
    message.release()
    r.close()
    assert pools.in_use == 0 and owner.in_use == 0


# -- conflicting plaintext fragments do not latch, and are not acknowledged -----------


def test_spoofed_conflicting_server_hello_fragment_first_does_not_block_the_handshake(
    monkeypatch: pytest.MonkeyPatch, pairs: Any
) -> None:
    acks = _acks_sent(monkeypatch)
    pair = pairs()
    spoofed = False

    def tamper(src: Any, dst: Any, data: bytes) -> bytes | None:
        nonlocal spoofed
        if src == SERVER_ADDR and not spoofed:
            # Ahead of the real ServerHello: a well-formed fragment with a wrong length.
            spoofed = True
            pair.net.inject(SERVER_ADDR, CLIENT_ADDR, _spoof(HandshakeType.server_hello, 900, 0))
        return data

    pair.net.tamper = tamper
    assert pair.handshake(max_time=30.0), pair.terminated("client")
    assert spoofed
    spoof = RecordNumber(0, SPOOF_SEQ)
    assert all(spoof not in numbers for who, numbers in acks if who == id(pair.client))
    assert pair.client.rare_stat("dropped_conflicting_fragments") >= 1


def test_spoofed_conflicting_second_client_hello_fragment_does_not_block_the_handshake(
    monkeypatch: pytest.MonkeyPatch, pairs: Any
) -> None:
    acks = _acks_sent(monkeypatch)
    pair = pairs(hrr=True)
    spoofed = False

    def tamper(src: Any, dst: Any, data: bytes) -> bytes | None:
        nonlocal spoofed
        if src == SERVER_ADDR and not spoofed:
            # The HelloRetryRequest is on its way: a spoofed ClientHello2 fragment with a
            # length of its own reaches the server before the real ClientHello2.
            assert pair.server.state is ServerState.WAIT_CLIENT_HELLO_AFTER_RETRY
            spoofed = True
            pair.net.inject(CLIENT_ADDR, SERVER_ADDR, _spoof(HandshakeType.client_hello, 900, 1))
        return data

    pair.net.tamper = tamper
    assert pair.handshake(max_time=30.0), pair.terminated("server")
    assert spoofed
    spoof = RecordNumber(0, SPOOF_SEQ)
    assert all(spoof not in numbers for who, numbers in acks if who == id(pair.server))
    assert pair.server.rare_stat("dropped_conflicting_fragments") >= 1


def test_spoofed_fragment_with_changed_bytes_does_not_block_the_handshake(pairs: Any) -> None:
    """A fragment of the right length whose bytes differ from the genuine ServerHello."""
    pair = pairs()
    spoofed = False

    def tamper(src: Any, dst: Any, data: bytes) -> bytes | None:
        nonlocal spoofed
        if src == SERVER_ADDR and not spoofed:
            spoofed = True
            # The genuine ServerHello's length, read from the datagram it travels in.
            length = int.from_bytes(data[13 + 1 : 13 + 4], "big")
            record = plaintext_record(
                _fragment(HandshakeType.server_hello, length, 0, b"\xee" * 40), seq=SPOOF_SEQ
            )
            pair.net.inject(SERVER_ADDR, CLIENT_ADDR, record)
        return data

    pair.net.tamper = tamper
    assert pair.handshake(max_time=30.0), pair.terminated("client")


def test_conflicting_fragments_in_an_encrypted_epoch_stay_a_protocol_error() -> None:
    pools = PoolSet()
    r = Reassembler(pools, None)
    r.add_fragment_untrusted(11, 100, 0, 0, 10, b"x" * 10)
    with pytest.raises(Exception, match="disagree"):
        r.add_fragment_untrusted(11, 101, 0, 50, 10, b"x" * 10)
    r.close()
    assert pools.in_use == 0


def test_conflicting_unauthenticated_fragment_replaces_the_partial_message() -> None:
    pools = PoolSet()
    r = Reassembler(pools, None)
    r.add_fragment_untrusted(2, 900, 0, 0, 65, bytes(65), authenticated=False)
    body = bytes(range(200))
    r.add_fragment_untrusted(2, 200, 0, 0, 120, body[:120], authenticated=False)
    r.add_fragment_untrusted(2, 200, 0, 100, 100, body[100:], authenticated=False)
    assert r.counters["conflicts"] == 1
    message = r.next_message()
    assert message is not None and bytes(message.body) == body
    r.close()
    assert pools.in_use == 0
