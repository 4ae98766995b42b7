"""The compiled DTLSHandshake fragment encoder (RFC 9147 §5.2): header fields, the slice of
the body it carries, and the same refusals as the header's field ranges demand."""

from __future__ import annotations

import os
import struct

import pytest

from dtls13._fast import EncodeError, Lease
from dtls13.handshake.flights import handshake_fragment
from dtls13.memory import PoolSet


def _reference(msg_type: int, length: int, seq: int, offset: int, body: bytes) -> bytes:
    n = len(body)
    return (
        bytes((msg_type,)) + length.to_bytes(3, "big") + struct.pack("!H", seq)
        + offset.to_bytes(3, "big") + n.to_bytes(3, "big") + body
    )  # fmt: skip


def test_fragments_are_the_header_and_the_bytes_they_carry() -> None:
    body = os.urandom(70000)
    for msg_type, seq, offset, n in ((1, 0, 0, 0), (11, 258, 0, 300), (15, 65535, 65536, 4000)):
        piece = body[offset : offset + n]
        expected = _reference(msg_type, len(body), seq, offset, piece)
        assert handshake_fragment(msg_type, len(body), seq, offset, piece) == expected
        got = handshake_fragment(msg_type, len(body), seq, offset, body, offset, offset + n)
        assert got == expected
    assert handshake_fragment(2, 3, 0, 0, b"abc") == _reference(2, 3, 0, 0, b"abc")


def test_a_fragment_of_a_pooled_body_copies_only_its_range() -> None:
    pools = PoolSet()
    lease: Lease = pools.acquire(600)
    try:
        data = os.urandom(600)
        lease.write(0, data)
        got = handshake_fragment(11, 600, 3, 100, lease, 100, 350)
        assert got == _reference(11, 600, 3, 100, data[100:350])
    finally:
        lease.release()


@pytest.mark.parametrize(
    "args",
    [
        (256, 3, 0, 0, b"abc"),  # type
        (1, 3, 1 << 16, 0, b"abc"),  # message_seq
        (1, 3, 0, 1, b"abc"),  # past the message's end
        (1, 1 << 24, 0, 0, b""),  # length
        (1, 3, 0, -1, b"a"),  # offset
        (1, 3, 0, 0, b"abc", 2, 1),  # range backwards
        (1, 3, 0, 0, b"abc", 0, 4),  # range past the body
    ],
)
def test_out_of_range_fields_are_refused(args: tuple[object, ...]) -> None:
    with pytest.raises(EncodeError):
        handshake_fragment(*args)  # type: ignore[arg-type]
