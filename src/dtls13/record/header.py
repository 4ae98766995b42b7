"""Record headers: content types, record numbers, epoch reconstruction (RFC 9147 §4).

The byte-level codecs live in `dtls13._fast` (re-exported here): DTLSPlaintext
(epoch 0) and the unified header 0b001CSLEE of DTLSCiphertext.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable

from .._fast import (
    RecordNumber,
    encode_plaintext_header,
    encode_unified_header,
    parse_header_untrusted,
    reconstruct_sequence,
    unified_header_length,
)

__all__ = [
    "MAX_CIPHERTEXT",
    "MAX_PLAINTEXT",
    "PLAINTEXT_HEADER_LENGTH",
    "SEQUENCE_LIMIT",
    "ContentType",
    "RecordNumber",
    "encode_plaintext_header",
    "encode_unified_header",
    "epoch_from_bits",
    "is_unified_header",
    "parse_header_untrusted",
    "reconstruct_sequence",
    "unified_header_length",
]

PLAINTEXT_HEADER_LENGTH = 13
MAX_PLAINTEXT = 1 << 14
MAX_CIPHERTEXT = (1 << 14) + 256
# RFC 9147 §4: records are never "sent with sequence numbers that would exceed 2^48-1".
SEQUENCE_LIMIT = 1 << 48

# Unified header flag bits (RFC 9147 §4, Figure 3).
FLAG_CID = 0x10
FLAG_SEQ16 = 0x08
FLAG_LENGTH = 0x04


class ContentType(enum.IntEnum):
    """TLS ContentType registry values used by DTLS 1.3."""

    invalid = 0
    change_cipher_spec = 20
    alert = 21
    handshake = 22
    application_data = 23
    tls12_cid = 25
    ack = 26


def is_unified_header(first_byte: int) -> bool:
    """RFC 9147 §4.1: a first byte 0b001xxxxx starts a DTLSCiphertext record."""
    return first_byte & 0xE0 == 0x20


def epoch_from_bits(bits: int, epochs: Iterable[int]) -> int | None:
    """The most recent of `epochs` whose two low bits are `bits` (RFC 9147 §4.2.2).

    "If the epoch bits do not match those from the current epoch, implementations
    SHOULD use the most recent past epoch which has matching bits."
    """
    best: int | None = None
    for epoch in epochs:
        if epoch & 3 == bits & 3 and (best is None or epoch > best):
            best = epoch
    return best
