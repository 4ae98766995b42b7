"""The wire-format Buffer: every malformed read is one DecodeError, nothing else."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dtls13._fast import Buffer, DecodeError, EncodeError
from dtls13.memory import PoolSet


def _read_everything(buf: Buffer) -> list[Any]:
    """A small made-up structure that exercises every pull."""
    out: list[Any] = [
        buf.pull_uint8(),
        buf.pull_uint16(),
        buf.pull_uint24(),
        buf.pull_uint32(),
        buf.pull_uint48(),
        buf.pull_uint64(),
    ]
    out.append(buf.pull_vector(1))
    out.append(buf.pull_vector(2))
    out.append(buf.pull_vector(3))
    with buf.pull_block(2) as length:
        out.append(length)
        out.append(buf.pull_list(1, lambda b: b.pull_uint16()))
        out.append(bytes(buf.pull_view(2)))
    out.append(buf.pull_bytes(3))
    buf.expect_end()
    return out


def _write_everything() -> bytes:
    buf = Buffer(capacity=8)
    buf.push_uint8(0xAB)
    buf.push_uint16(0xBEEF)
    buf.push_uint24(0x123456)
    buf.push_uint32(0xDEADBEEF)
    buf.push_uint48(0x0102030405)
    buf.push_uint64(2**64 - 1)
    buf.push_vector(1, b"one")
    buf.push_vector(2, b"two!")
    buf.push_vector(3, b"three")
    with buf.push_block(2):
        buf.push_list(1, lambda b, v: b.push_uint16(v), [1, 2, 3])
        buf.push_bytes(b"vw")
    buf.push_bytes(b"end")
    return buf.data


EXPECTED = [
    0xAB,
    0xBEEF,
    0x123456,
    0xDEADBEEF,
    0x0102030405,
    2**64 - 1,
    b"one",
    b"two!",
    b"three",
    9,
    [1, 2, 3],
    b"vw",
    b"end",
]


def test_round_trip_of_every_push_and_pull() -> None:
    data = _write_everything()
    assert _read_everything(Buffer(data)) == EXPECTED


def test_every_truncation_point_raises_decode_error() -> None:
    data = _write_everything()
    for cut in range(len(data)):
        with pytest.raises(DecodeError):
            _read_everything(Buffer(data[:cut]))


def test_trailing_bytes_raise_decode_error() -> None:
    data = _write_everything()
    with pytest.raises(DecodeError):
        _read_everything(Buffer(data + b"\x00"))


def test_vector_that_overruns_its_container_raises() -> None:
    buf = Buffer(b"\x00\x05abc")
    with pytest.raises(DecodeError):
        buf.pull_vector(2)
    buf = Buffer(b"\x04\x00\x05abcd")
    with pytest.raises(DecodeError), buf.pull_block(1):
        buf.pull_vector(2)  # inner length 5 exceeds the outer block of 4


def test_block_with_leftover_bytes_raises() -> None:
    buf = Buffer(b"\x03\x01\x02\x03")
    with pytest.raises(DecodeError), buf.pull_block(1):
        buf.pull_uint8()


@given(st.binary(max_size=80))
def test_arbitrary_bytes_raise_only_decode_error(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        _read_everything(Buffer(data))


@given(st.binary(max_size=64), st.integers(0, 255))
def test_single_byte_corruption_raises_only_decode_error(junk: bytes, flip: int) -> None:
    data = bytearray(_write_everything())
    for i in range(len(data)):
        corrupt = bytearray(data)
        corrupt[i] ^= flip or 1
        with contextlib.suppress(DecodeError):
            _read_everything(Buffer(bytes(corrupt) + junk))


def test_fixed_capacity_writer_refuses_overflow() -> None:
    target = bytearray(3)
    buf = Buffer(target)
    buf.push_uint16(0x0102)
    with pytest.raises(EncodeError):
        buf.push_uint16(0x0304)
    buf.push_uint8(3)
    assert target == b"\x01\x02\x03"


@pytest.mark.parametrize(
    ("push", "value"),
    [
        (Buffer.push_uint8, 256),
        (Buffer.push_uint16, 65536),
        (Buffer.push_uint24, 1 << 24),
        (Buffer.push_uint32, 1 << 32),
        (Buffer.push_uint48, 1 << 48),
    ],
)
def test_values_that_do_not_fit_raise_encode_error(
    push: Callable[[Buffer, int], None], value: int
) -> None:
    with pytest.raises(EncodeError):
        push(Buffer(capacity=16), value)


def test_block_too_long_for_its_length_prefix_raises() -> None:
    buf = Buffer()
    with pytest.raises(EncodeError), buf.push_block(1):
        buf.push_bytes(bytes(256))


def test_read_only_source_cannot_be_written() -> None:
    buf = Buffer(b"abc")
    with pytest.raises(EncodeError):
        buf.push_uint8(1)


def test_writer_over_a_lease_writes_in_place() -> None:
    pools = PoolSet()
    lease = pools.acquire(8)
    with Buffer(lease) as buf:
        buf.push_uint32(0x01020304)
        buf.push_uint32(0x05060708)
        with pytest.raises(EncodeError):
            buf.push_uint8(9)
    assert lease.tobytes() == bytes(range(1, 9))
    lease.release()


def test_pull_view_is_zero_copy_into_the_source() -> None:
    source = bytearray(b"\x00\x00hello")
    buf = Buffer(source)
    buf.pull_uint16()
    view = buf.pull_view(5)
    source[2] = ord("j")
    assert bytes(view) == b"jello"
    view.release()
    buf.close()


def test_seek_tell_and_slices() -> None:
    buf = Buffer(b"abcdef")
    buf.seek(2)
    assert buf.tell() == 2 and buf.remaining == 4
    assert buf.data_slice(1, 3) == b"bc"
    assert bytes(buf.view_slice(4, 6)) == b"ef"
    for bad in (lambda: buf.seek(7), lambda: buf.data_slice(3, 9), lambda: buf.pull_bytes(-1)):
        with pytest.raises(DecodeError):
            bad()


def test_pull_uint16_list() -> None:
    from dtls13._fast import Buffer as B
    from dtls13._fast import DecodeError as DE

    buf = B(b"\x04\xfe\xfc\xfe\xfd\x99")
    assert buf.pull_uint16_list(1, 2) == (0xFEFC, 0xFEFD)
    assert buf.pull_uint8() == 0x99
    assert B(b"\x00\x00").pull_uint16_list(2) == ()
    for data, size, minimum in (
        (b"\x00\x00", 2, 2),  # below the minimum
        (b"\x03\x00\x01\x02", 1, 0),  # odd
        (b"\x00\x04\x00\x01", 2, 0),  # past the end
        (b"\x00", 2, 0),  # no length
    ):
        with pytest.raises(DE):
            B(data).pull_uint16_list(size, minimum)
    outer = B(b"\x00\x03\x00\x04\x00\x01\x00\x02")
    with pytest.raises(DE), outer.pull_block(2):
        outer.pull_uint16_list(2)  # runs past the enclosing block
    with pytest.raises(ValueError):
        B(b"\x00").pull_uint16_list(3)
