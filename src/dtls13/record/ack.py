"""The ACK message (RFC 9147 §7).

struct {
    RecordNumber record_numbers<0..2^16-1>;
} ACK;
"""

from __future__ import annotations

from collections.abc import Sequence

from .._fast import Buffer
from .header import RecordNumber


def _pull_record_number(buf: Buffer) -> RecordNumber:
    return RecordNumber(buf.pull_uint64(), buf.pull_uint64())


def _push_record_number(buf: Buffer, number: RecordNumber) -> None:
    buf.push_uint64(number.epoch)
    buf.push_uint64(number.sequence_number)


def pull_ack(buf: Buffer) -> list[RecordNumber]:
    """Read an ACK body; the vector must hold whole 16-byte RecordNumbers."""
    return buf.pull_list(2, _pull_record_number)


def push_ack(buf: Buffer, numbers: Sequence[RecordNumber]) -> None:
    """Write an ACK body (at most 4095 record numbers fit the 2^16-1 vector)."""
    buf.push_list(2, _push_record_number, numbers)
