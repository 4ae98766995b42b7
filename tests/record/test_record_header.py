"""Record-layer codecs and helpers in _fast: headers, reconstruction, masks, nonces, ACKs."""

from __future__ import annotations

import itertools
import os
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dtls13._fast import (
    Buffer,
    DecodeError,
    EncodeError,
    ReplayWindow,
    chacha20_mask_into,
    encode_plaintext_header,
    encode_unified_header,
    inner_content_type,
    make_nonce_into,
    parse_header_untrusted,
    reconstruct_sequence,
    unified_header_length,
    unmask_header_into,
    xor_into,
    zero_fill,
)
from dtls13.crypto.suites import CipherSuite
from dtls13.record import (
    ContentType,
    EpochKeys,
    RecordNumber,
    derive_record_keys,
    epoch_from_bits,
    pull_ack,
    push_ack,
)
from tests.record import test_record_reference as ref

# -- header codecs ------------------------------------------------------------------


def test_content_types() -> None:
    assert [int(t) for t in ContentType] == [0, 20, 21, 22, 23, 25, 26]


def test_plaintext_header_round_trip() -> None:
    buf = bytearray(13 + 3)
    assert encode_plaintext_header(buf, 0, 22, 0, 0x0102030405, 3) == 13
    buf[13:] = b"abc"
    assert bytes(buf) == ref.plaintext(22, 0x0102030405, b"abc")
    assert parse_header_untrusted(bytes(buf), 0, 0) == (22, 0, 0x0102030405, 13, 3)
    with pytest.raises(EncodeError):
        encode_plaintext_header(buf, 0, 22, 0, 1 << 48, 3)
    with pytest.raises(EncodeError):
        encode_plaintext_header(bytearray(12), 0, 22, 0, 0, 0)


@pytest.mark.parametrize(
    ("cid", "seq_bits", "with_length"),
    list(itertools.product((b"", b"\x01", b"0123456789abcdef"), (8, 16), (True, False))),
)
def test_unified_header_every_form(cid: bytes, seq_bits: int, with_length: bool) -> None:
    hl = unified_header_length(len(cid), seq_bits, with_length)
    body = bytes(range(40))
    buf = bytearray(hl + len(body))
    length = len(body) if with_length else -1
    assert encode_unified_header(buf, 0, 7, 0x1234, seq_bits, cid or None, length) == hl
    buf[hl:] = body
    first = buf[0]
    assert (
        first
        == 0x20
        | (0x10 if cid else 0)
        | (0x08 if seq_bits == 16 else 0)
        | (0x04 if with_length else 0)
        | 3
    )
    low = 0x1234 if seq_bits == 16 else 0x34
    assert parse_header_untrusted(bytes(buf), 0, len(cid)) == (first, 3, low, hl, 40)
    # Every truncation inside the header (or, with a length, the body) is a DecodeError.
    for cut in range(len(buf)):
        if with_length or cut < hl:
            with pytest.raises(DecodeError):
                parse_header_untrusted(bytes(buf[:cut]), 0, len(cid))
        else:
            assert parse_header_untrusted(bytes(buf[:cut]), 0, len(cid))[4] == cut - hl
    # The receiver's idea of the CID decides how the header parses.
    if cid:
        with pytest.raises(DecodeError):
            parse_header_untrusted(bytes(buf), 0, 0)
    else:
        with pytest.raises(DecodeError):
            parse_header_untrusted(bytes(buf), 0, 4)


def test_parse_rejects() -> None:
    for first in [0, 20, 23, 24, 25, 27, 0x1F, 0x40, 0x80, 0xFF]:
        with pytest.raises(DecodeError):
            parse_header_untrusted(bytes([first]) + bytes(30), 0, 0)
    with pytest.raises(DecodeError):
        parse_header_untrusted(b"", 0, 0)
    with pytest.raises(DecodeError):
        parse_header_untrusted(b"\x2c\x00\x00\x05abcd", 0, 0)  # length overruns
    with pytest.raises(DecodeError):
        parse_header_untrusted(b"\x2c\x00\x00\x05abcde", 9, 0)
    with pytest.raises(DecodeError):
        parse_header_untrusted(object(), 0, 0)  # type: ignore[arg-type]
    big = b"\x28\x00\x00" + bytes(16384 + 257)  # no length: runs to the end
    with pytest.raises(DecodeError):
        parse_header_untrusted(big, 0, 0)
    with pytest.raises(DecodeError):
        parse_header_untrusted(ref.plaintext(22, 0, bytes(16385)), 0, 0)


@given(st.binary(max_size=64), st.integers(0, 70), st.integers(0, 8))
def test_parse_only_raises_decode_error(data: bytes, offset: int, cid_length: int) -> None:
    try:
        _first, _e, _s, hl, length = parse_header_untrusted(data, offset, cid_length)
    except DecodeError:
        return
    assert offset + hl + length <= len(data)


def test_encode_rejects() -> None:
    buf = bytearray(10)
    with pytest.raises(EncodeError):
        encode_unified_header(buf, 0, 1, 0, 12, None, 5)
    with pytest.raises(EncodeError):
        encode_unified_header(buf, 0, 1, 1 << 48, 16, None, 5)
    with pytest.raises(EncodeError):
        encode_unified_header(buf, 8, 1, 0, 16, None, 5)
    with pytest.raises(EncodeError):
        encode_unified_header(bytearray(300), 0, 1, 0, 16, bytes(256), 5)


# -- reconstruction (RFC 9147 §4.2.2) ----------------------------------------------------


def closest(expected: int, low: int, bits: int) -> int:
    """Brute force: among all 48-bit numbers with these low bits, the closest to expected."""
    span = 1 << bits
    base = expected - expected % span + low
    cands = [c for c in (base - span, base, base + span) if 0 <= c < 1 << 48]
    return min(cands, key=lambda c: (abs(c - expected), c))


@pytest.mark.parametrize("bits", [8, 16])
def test_reconstruction_at_wrap_points(bits: int) -> None:
    span = 1 << bits
    for k in (0, 1, 2, 1000):
        for expected in range(k * span - 3, k * span + 4):
            if expected < 0:
                continue
            for low in (0, 1, 2, span // 2 - 1, span // 2, span // 2 + 1, span - 2, span - 1):
                assert reconstruct_sequence(expected, low, bits) == closest(expected, low, bits)
    # Just past a wrap, small low bits are the new cycle; large ones the old.
    assert reconstruct_sequence(span + 1, span - 1, bits) == span - 1
    assert reconstruct_sequence(span - 1, 1, bits) == span + 1
    assert reconstruct_sequence(0, span - 1, bits) == span - 1  # nothing below zero


@given(st.integers(0, (1 << 48) - 1), st.integers(0, 0xFFFF), st.sampled_from([8, 16]))
def test_reconstruction_is_closest(expected: int, low: int, bits: int) -> None:
    low &= (1 << bits) - 1
    got = reconstruct_sequence(expected, low, bits)
    assert got % (1 << bits) == low or got == (1 << 48) - 1
    assert got == closest(expected, low, bits)


def test_epoch_from_bits() -> None:
    assert epoch_from_bits(2, [0, 1, 2, 3]) == 2
    assert epoch_from_bits(0, [1, 2, 3, 4]) == 4
    assert epoch_from_bits(3, [3, 4, 5, 6, 7]) == 7
    assert epoch_from_bits(1, [2, 3, 4]) is None
    assert epoch_from_bits(5, [1, 2]) == 1  # only the two low bits count


# -- masks, nonces, inner plaintext ------------------------------------------------------


def test_chacha20_block_rfc8439_vector() -> None:
    # RFC 8439 §2.3.2: key 00..1f, counter 1, nonce 000000090000004a00000000.
    key = bytes(range(32))
    sample = (1).to_bytes(4, "little") + bytes.fromhex("000000090000004a00000000")
    out = bytearray(64)
    chacha20_mask_into(key, b"xx" + sample, 2, out)
    assert out.hex() == (
        "10f1e7e4d13b5915500fdd1fa32071c4c7d1f4c733c068030422aa9ac3d46c4e"
        "d2826446079faa0914c2d705d98b02a2b5129cd1de164eb9cbd083e8a2503c4e"
    )


def test_chacha20_mask_matches_cryptography() -> None:
    for _ in range(50):
        key, sample = os.urandom(32), os.urandom(16)
        out = bytearray(64)
        chacha20_mask_into(key, sample, 0, out)
        assert bytes(out[:16]) == ref.mask(0x1303, key, sample)
    with pytest.raises(ValueError):
        chacha20_mask_into(bytes(31), bytes(16), 0, bytearray(64))
    with pytest.raises(ValueError):
        chacha20_mask_into(bytes(32), bytes(16), 1, bytearray(64))


@pytest.mark.parametrize("suite", list(CipherSuite), ids=lambda s: s.name)
def test_epoch_keys_match_reference(suite: CipherSuite) -> None:
    secret = os.urandom(ref.secret_length(suite))
    assert derive_record_keys(suite, secret) == ref.keys(suite, secret)
    keys = EpochKeys(3, suite, secret)
    _, iv, sn_key = ref.keys(suite, secret)
    for seq in (0, 1, 0xFFFF, (1 << 48) - 1):
        assert bytes(keys.nonce(seq)) == ref.nonce(iv, seq)
    sample = os.urandom(20)
    assert bytes(keys.mask(sample, 3)[:16]) == ref.mask(suite, sn_key, sample[3:19])


def test_nonce_xor_and_helpers() -> None:
    out = bytearray(12)
    make_nonce_into(out, bytes(range(12)), 0x0102030405060708)
    assert out == bytes([0, 1, 2, 3, 4 ^ 1, 5 ^ 2, 6 ^ 3, 7 ^ 4, 8 ^ 5, 9 ^ 6, 10 ^ 7, 11 ^ 8])
    with pytest.raises(ValueError):
        make_nonce_into(bytearray(11), bytes(12), 0)
    buf = bytearray(b"\x01\x02\x03\x04")
    xor_into(buf, 1, b"\xff\xff", 2)
    assert buf == b"\x01\xfd\xfc\x04"
    with pytest.raises(ValueError):
        xor_into(buf, 3, b"\xff\xff", 2)
    zero_fill(buf, 0, 2)
    assert buf == b"\x00\x00\xfc\x04"
    with pytest.raises(ValueError):
        zero_fill(buf, 3, 2)
    assert inner_content_type(b"hi\x17\x00\x00", 5) == (2, 23)
    assert inner_content_type(b"hi\x17\x00\x00", 2) == (1, ord("i"))
    assert inner_content_type(b"\x00\x00", 2) == (-1, 0)
    assert inner_content_type(b"", 0) == (-1, 0)
    out2 = bytearray(8)
    assert unmask_header_into(out2, b"..\x2c\xaa\xbb\x00\x10", 2, 5, 1, 2, b"\x0f\xf0") == 0xA54B
    assert out2[:5] == b"\x2c\xa5\x4b\x00\x10"
    with pytest.raises(ValueError):
        unmask_header_into(out2, b"\x2c\xaa", 0, 5, 1, 2, b"\x0f\xf0")


# -- replay window (RFC 9147 §4.5.1) ---------------------------------------------------


def test_replay_window_edges() -> None:
    w = ReplayWindow(64)
    assert w.size == 64 and w.highest == -1 and w.expected == 0
    assert w.check(0) and w.check(1 << 47)
    w.update(100)
    assert w.highest == 100 and w.expected == 101
    assert not w.check(100)
    assert w.check(37) and not w.check(36)  # the window holds 37..100
    w.update(37)
    assert not w.check(37)
    w.update(36)  # outside: ignored
    assert not w.check(36)
    w.update(101 + 63)  # slide: 37 leaves, 100 stays
    assert not w.check(100) and w.check(101) and not w.check(37)
    w.update(10_000)  # a jump clears everything
    assert w.check(10_000 - 63) and not w.check(10_000 - 64) and not w.check(10_000)
    assert ReplayWindow(1).size == 64 and ReplayWindow(65).size == 128
    with pytest.raises(ValueError):
        ReplayWindow(0)
    assert ReplayWindow(1 << 24).size == 1 << 24  # the largest (its size is a C int)
    with pytest.raises(ValueError):
        ReplayWindow((1 << 24) + 1)


@pytest.mark.parametrize("size", [64, 256, 1000])
def test_replay_window_against_a_model(size: int) -> None:
    rng = random.Random(size)
    w = ReplayWindow(size)
    size = w.size
    seen: set[int] = set()
    top = -1
    for _ in range(20_000):
        base = max(top, 0)
        seq = max(0, base + rng.randint(-size - 20, 40))
        if rng.random() < 0.02:
            seq = base + rng.randint(size, 3 * size)
        expect = seq not in seen and seq > top - size
        assert w.check(seq) == expect, (seq, top)
        if expect:
            w.update(seq)
            seen.add(seq)
            top = max(top, seq)
        assert w.highest == top


# -- ACK (RFC 9147 §7) ------------------------------------------------------------------


def test_ack_round_trip() -> None:
    numbers = [RecordNumber(2, 0), RecordNumber(2, 1), RecordNumber(3, (1 << 48) - 1)]
    buf = Buffer(capacity=64)
    push_ack(buf, numbers)
    data = buf.data
    assert data == (48).to_bytes(2, "big") + b"".join(
        n.epoch.to_bytes(8, "big") + n.sequence_number.to_bytes(8, "big") for n in numbers
    )
    assert pull_ack(Buffer(data)) == numbers
    empty = Buffer(capacity=4)
    push_ack(empty, [])
    assert pull_ack(Buffer(empty.data)) == []
    for cut in range(len(data)):
        with pytest.raises(DecodeError):
            pull_ack(Buffer(data[:cut]))
    with pytest.raises(DecodeError):
        pull_ack(Buffer(b"\x00\x0f" + bytes(15)))  # not a whole RecordNumber
    rd = Buffer(data + b"x")
    pull_ack(rd)
    with pytest.raises(DecodeError):
        rd.expect_end()
