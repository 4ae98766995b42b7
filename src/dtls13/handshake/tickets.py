"""Session tickets (RFC 8446 §4.6.1, §2.2): stateless, sealed with rotating keys.

The server keeps nothing per session: a ticket is the session state (suite, resumption
PSK, issue time, lifetime, age_add, ALPN) sealed with AES-256-GCM under a key derived from
one shared secret and the current rotation period. Every process or machine given the same
secret derives the same keys, so any of them opens any ticket; a ticket sealed in the
previous period still opens, older ones do not.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .._fast import Buffer, DecodeError
from ..crypto.hkdf import hkdf_expand, hkdf_extract
from ..crypto.suites import CipherSuite

TICKET_VERSION = 1
_KEY_ID = 4
_NONCE = 12
MAX_LIFETIME = 7 * 24 * 3600  # RFC 8446 §4.6.1: at most seven days


@dataclass(frozen=True, slots=True)
class TicketState:
    """What a ticket carries (the server's view of a session)."""

    suite: CipherSuite
    psk: bytes
    issued_at: float  # wall-clock seconds
    lifetime: int
    age_add: int
    max_early_data: int = 0
    alpn: str | None = None


@dataclass(frozen=True, slots=True)
class Session:
    """What a client keeps to resume: the ticket and the PSK it stands for."""

    ticket: bytes
    psk: bytes
    suite: CipherSuite
    received_at: float  # wall-clock seconds
    lifetime: int
    age_add: int
    max_early_data: int = 0
    alpn: str | None = None
    server_name: str | None = None

    def expired(self, now: float) -> bool:
        return now - self.received_at >= self.lifetime

    def obfuscated_age(self, now: float) -> int:
        """The ticket's age in milliseconds plus age_add, modulo 2^32 (§4.2.11.1)."""
        age_ms = max(0, int((now - self.received_at) * 1000))
        return (age_ms + self.age_add) & 0xFFFFFFFF


class TicketProtector:
    """Seals and opens tickets; keys rotate every `rotation_interval` seconds."""

    def __init__(
        self,
        secret: bytes | None = None,
        *,
        rotation_interval: float = 3600.0,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        if secret is not None and len(secret) < 32:
            raise ValueError("ticket secret must be at least 32 bytes")
        if rotation_interval <= 0:
            raise ValueError("rotation_interval must be positive")
        self._prk = hkdf_extract("sha256", b"dtls13 ticket keys", secret or random_bytes(32))
        self.rotation_interval = rotation_interval
        self._random = random_bytes
        self._keys: dict[int, AESGCM] = {}

    def _key(self, period: int) -> AESGCM:
        key = self._keys.get(period)
        if key is None:
            # Any period has a key, before 1970 too (a clock without a real-time source):
            # the label takes the period modulo 2^64, so pack() never fails.
            label = b"period" + struct.pack("!Q", period & 0xFFFFFFFFFFFFFFFF)
            raw = hkdf_expand("sha256", self._prk, label, 32)
            key = AESGCM(raw)
            self._keys = {p: k for p, k in self._keys.items() if p >= period - 1}
            self._keys[period] = key
        return key

    def _period(self, now: float) -> int:
        return int(now // self.rotation_interval)

    def seal(self, state: TicketState, now: float) -> bytes:
        period = self._period(now)
        key_id = struct.pack("!I", period & 0xFFFFFFFF)
        nonce = self._random(_NONCE)
        buf = Buffer(capacity=96)
        buf.push_uint8(TICKET_VERSION)
        buf.push_uint16(state.suite)
        buf.push_uint64(int(state.issued_at * 1000))
        buf.push_uint32(state.lifetime)
        buf.push_uint32(state.age_add)
        buf.push_uint32(state.max_early_data)
        buf.push_vector(1, state.psk)
        buf.push_vector(1, (state.alpn or "").encode())
        sealed = self._key(period).encrypt(nonce, buf.data, key_id)
        return key_id + nonce + sealed

    def open(self, ticket: bytes, now: float) -> TicketState | None:
        """The state in a ticket this protector (or a sibling) sealed, unexpired; else None.

        Never raises on network input.
        """
        if len(ticket) < _KEY_ID + _NONCE + 16:
            return None
        (key_id,) = struct.unpack("!I", ticket[:_KEY_ID])
        period = self._period(now)
        if period > 0 and key_id == (period - 1) & 0xFFFFFFFF:
            period -= 1  # sealed in the previous period: still accepted (none before 0)
        elif key_id != period & 0xFFFFFFFF:
            return None
        try:
            plain = self._key(period).decrypt(
                ticket[_KEY_ID : _KEY_ID + _NONCE], ticket[_KEY_ID + _NONCE :], ticket[:_KEY_ID]
            )
        except InvalidTag:
            return None
        try:
            buf = Buffer(plain)
            if buf.pull_uint8() != TICKET_VERSION:
                return None
            suite = CipherSuite(buf.pull_uint16())
            issued = buf.pull_uint64() / 1000
            lifetime = buf.pull_uint32()
            age_add = buf.pull_uint32()
            max_early = buf.pull_uint32()
            psk = buf.pull_vector(1)
            alpn = buf.pull_vector(1).decode() or None
            buf.expect_end()
        except (DecodeError, ValueError):
            return None
        if not 0 <= now - issued < lifetime:
            return None
        return TicketState(suite, psk, issued, lifetime, age_add, max_early, alpn)


class ReplayGuard:
    """Tickets already used for 0-RTT, forgotten when they expire (RFC 8446 §8.1).

    Guarantee: within one process, a ticket's early data is accepted at most once; the
    set is bounded, and when it is full 0-RTT is refused (never accepted twice).
    """

    def __init__(self, capacity: int = 100_000) -> None:
        self.capacity = capacity
        self._seen: dict[bytes, float] = {}  # ticket digest -> expiry (wall clock)

    def first_use(self, ticket: bytes, expires: float, now: float) -> bool:
        import hashlib

        if len(self._seen) >= self.capacity:
            self._seen = {k: t for k, t in self._seen.items() if t > now}
            if len(self._seen) >= self.capacity:
                return False
        key = hashlib.sha256(ticket).digest()
        if key in self._seen:
            return False
        self._seen[key] = expires
        return True
