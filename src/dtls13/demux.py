"""Telling DTLS from the other protocols that share its port (RFC 7983 §7), as WebRTC does:
STUN, ZRTP, TURN channels and RTP/RTCP beside DTLS-SRTP.

RFC 7983 §7, by the first byte of a datagram:

                 +----------------+
                 |        [0..3] -+--> forward to STUN
                 |      [16..19] -+--> forward to ZRTP
    packet -->   |      [20..63] -+--> forward to DTLS
                 |      [64..79] -+--> forward to TURN Channel
                 |    [128..191] -+--> forward to RTP/RTCP
                 +----------------+

Anything else (and an empty datagram) is none of these: dropped as today.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any

# What an endpoint hands a datagram of another protocol to: (the datagram's bytes, the
# address it came from). Called synchronously from the receive path; it must not block.
NonDtlsHandler = Callable[[bytes, Any], None]


class DatagramKind(enum.Enum):
    STUN = "stun"
    ZRTP = "zrtp"
    DTLS = "dtls"
    TURN_CHANNEL = "turn-channel"
    RTP_RTCP = "rtp/rtcp"
    UNKNOWN = "unknown"


def _table() -> tuple[DatagramKind, ...]:
    kinds = [DatagramKind.UNKNOWN] * 256
    for first, last, kind in (
        (0, 3, DatagramKind.STUN),
        (16, 19, DatagramKind.ZRTP),
        (20, 63, DatagramKind.DTLS),
        (64, 79, DatagramKind.TURN_CHANNEL),
        (128, 191, DatagramKind.RTP_RTCP),
    ):
        kinds[first : last + 1] = [kind] * (last - first + 1)
    return tuple(kinds)


_KINDS = _table()
# First bytes an endpoint hands to an application's handler instead of to DTLS.
_OTHER = frozenset(
    b for b, k in enumerate(_KINDS) if k not in (DatagramKind.DTLS, DatagramKind.UNKNOWN)
)


def classify(data: bytes | bytearray | memoryview) -> DatagramKind:
    """The protocol a datagram belongs to, by its first byte (RFC 7983 §7)."""
    return _KINDS[data[0]] if len(data) else DatagramKind.UNKNOWN


def is_other_protocol(data: Any) -> bool:
    """STUN, ZRTP, TURN channel or RTP/RTCP: for the application, not for DTLS."""
    return len(data) > 0 and data[0] in _OTHER
