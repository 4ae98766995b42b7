"""Session tickets (RFC 8446 §4.6.1, §2.2): stateless, sealed with rotating keys.

The server keeps nothing per session: a ticket is the session state (suite, resumption
PSK, issue time, lifetime, age_add, ALPN, the server name the client asked for and the
client's certificate chain or raw public key, if it authenticated) sealed with AES-256-GCM
under a key derived from one shared secret and the current rotation period. Every process
or machine given the same secret derives the same keys, so any of them opens any ticket; a
ticket sealed in the previous period still opens, older ones do not.

The chain is in the ticket whole, as DER: a resumed connection inherits the original's
authentication (RFC 8446 §2.2) and reports the same peer certificates, which a hash could
not reproduce. The ticket is encrypted and authenticated, so the chain is neither readable
nor forgeable by the client; it travels in every resuming ClientHello, so its size is
bounded (MAX_TICKET_CHAIN): a server issues no ticket for a longer chain. It is compressed
(zlib; a P-256 leaf and intermediate: ~1000 -> ~700 bytes), which keeps such tickets under
the ~1 KB that wolfSSL 5.9's client can send back; only the client's own, public
certificates are compressed, so the ticket's length reveals nothing secret.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.serialization import Encoding

from .._fast import Buffer, DecodeError
from ..crypto.hkdf import hkdf_expand, hkdf_extract
from ..crypto.suites import CipherSuite

# What a client keeps to resume; configs and events carry it, so it sits below the handshake.
from ..session import Session as Session
from .ticket_keys import (
    KEY_NAME_LENGTH,
    TicketDecision,
    TicketKey,
    TicketKeyCallback,
    TicketSealer,
)

TICKET_VERSION = 3
# The most DER bytes of client certificates a ticket carries. The ticket comes back in the
# resuming ClientHello, whose first flight a server endpoint assembles only up to 8 KiB
# (HelloGate.max_hello), next to key shares of up to ~1.2 KiB (X25519MLKEM768): 4 KiB keeps
# it well inside, and holds a leaf and an intermediate of RSA-4096 or ECDSA. Longer chains
# (ML-DSA certificates are ~4-7 KiB each) get no ticket: a full handshake each time.
MAX_TICKET_CHAIN = 4096
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
    # The SNI of the ClientHello the ticket was issued after (lower case), or None.
    server_name: str | None = None
    # The client's chain, as verified by the issuing server; () when none was sent.
    client_chain: tuple[x509.Certificate, ...] = ()
    # Or the client's raw public key (RFC 7250, DER SubjectPublicKeyInfo); b"": none.
    client_public_key: bytes = b""


def chain_size(chain: tuple[x509.Certificate, ...]) -> int:
    """DER bytes of a certificate chain, as a ticket would carry it."""
    if not chain:  # most handshakes: no client certificate
        return 0
    return sum(len(cert.public_bytes(Encoding.DER)) for cert in chain)


class TicketProtector:
    """Seals and opens tickets; keys rotate every `rotation_interval` seconds.

    With `keys` (a TicketKeyCallback) the application names the keys instead, and with
    `sealer` (a TicketSealer) it seals and opens the tickets itself; both raise what the
    application's code raises, and TypeError for an answer of the wrong type.
    """

    def __init__(
        self,
        secret: bytes | None = None,
        *,
        rotation_interval: float = 3600.0,
        random_bytes: Callable[[int], bytes] = os.urandom,
        keys: TicketKeyCallback | None = None,
        sealer: TicketSealer | None = None,
    ) -> None:
        if secret is not None and len(secret) < 32:
            raise ValueError("ticket secret must be at least 32 bytes")
        if rotation_interval <= 0:
            raise ValueError("rotation_interval must be positive")
        if keys is not None and sealer is not None:
            raise ValueError("give ticket keys or a ticket sealer, not both")
        self._prk = hkdf_extract("sha256", b"dtls13 ticket keys", secret or random_bytes(32))
        self.rotation_interval = rotation_interval
        self._random = random_bytes
        self._keys: dict[int, AESGCM] = {}
        self.callback = keys
        self.sealer = sealer

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

    def seal(self, state: TicketState, now: float) -> bytes | None:
        """The sealed ticket; None when the application's keys or sealer issue none.

        ValueError if the client chain is over MAX_TICKET_CHAIN.
        """
        plain = _encode(state)
        if self.sealer is not None:
            ticket = self.sealer.seal(plain)
            if ticket is not None and not isinstance(ticket, bytes):
                raise TypeError(f"ticket sealer returned a {type(ticket).__name__}, not bytes")
            if ticket is not None and not 0 < len(ticket) < 0x10000:
                raise TypeError("ticket sealer returned a ticket of 0 or over 65535 bytes")
            return ticket
        nonce = self._random(_NONCE)
        if self.callback is not None:
            key = self.callback.encryption_key()
            if key is None:
                return None
            if not isinstance(key, TicketKey):
                raise TypeError(f"encryption_key() returned a {type(key).__name__}")
            return key.name + nonce + AESGCM(key.key).encrypt(nonce, plain, key.name)
        period = self._period(now)
        key_id = struct.pack("!I", period & 0xFFFFFFFF)
        return key_id + nonce + self._key(period).encrypt(nonce, plain, key_id)

    def open(self, ticket: bytes, now: float) -> TicketState | None:
        """The state in a ticket this protector (or a sibling) sealed, unexpired; else None.

        Never raises on network input.
        """
        opened = self.open_ticket(ticket, now)
        return None if opened is None else opened[0]

    def open_ticket(self, ticket: bytes, now: float) -> tuple[TicketState, bool] | None:
        """As open(), with whether this handshake issues new tickets (the application's
        TicketDecision; always with our own keys or a sealer)."""
        renew = True
        if self.sealer is not None:
            plain = self.sealer.open(ticket)
            if plain is not None and not isinstance(plain, bytes):
                raise TypeError(f"ticket sealer opened a {type(plain).__name__}, not bytes")
        elif self.callback is not None:
            plain, renew = self._open_with_callback(self.callback, ticket)
        else:
            plain = self._open_derived(ticket, now)
        if plain is None:
            return None
        state = _decode(plain, now)
        return None if state is None else (state, renew)

    def _open_derived(self, ticket: bytes, now: float) -> bytes | None:
        if len(ticket) < _KEY_ID + _NONCE + 16:
            return None
        (key_id,) = struct.unpack("!I", ticket[:_KEY_ID])
        period = self._period(now)
        if period > 0 and key_id == (period - 1) & 0xFFFFFFFF:
            period -= 1  # sealed in the previous period: still accepted (none before 0)
        elif key_id != period & 0xFFFFFFFF:
            return None
        try:
            return self._key(period).decrypt(
                ticket[_KEY_ID : _KEY_ID + _NONCE], ticket[_KEY_ID + _NONCE :], ticket[:_KEY_ID]
            )
        except InvalidTag:
            return None

    @staticmethod
    def _open_with_callback(
        callback: TicketKeyCallback, ticket: bytes
    ) -> tuple[bytes | None, bool]:
        head = KEY_NAME_LENGTH + _NONCE
        if len(ticket) < head + 16:
            return None, False
        name = ticket[:KEY_NAME_LENGTH]
        found = callback.decryption_key(name)
        if found is None:
            return None, False
        if (
            not isinstance(found, tuple)
            or len(found) != 2
            or not isinstance(found[0], TicketKey)
            or not isinstance(found[1], TicketDecision)
        ):
            raise TypeError("decryption_key() must return (TicketKey, TicketDecision) or None")
        key, decision = found
        if key.name != name:
            raise TypeError("decryption_key() returned a key of another name")
        try:
            plain = AESGCM(key.key).decrypt(ticket[KEY_NAME_LENGTH:head], ticket[head:], name)
        except InvalidTag:
            return None, False
        return plain, decision is TicketDecision.RENEW


def _packed_chain(client_chain: tuple[x509.Certificate, ...]) -> bytes:
    """The client's chain as a ticket carries it: 24-bit-length-prefixed DER, compressed."""
    ders = [cert.public_bytes(Encoding.DER) for cert in client_chain]
    if sum(map(len, ders)) > MAX_TICKET_CHAIN:
        raise ValueError("client certificate chain too large for a ticket")
    return zlib.compress(b"".join(len(d).to_bytes(3, "big") + d for d in ders), 9)


def _encode(state: TicketState) -> bytes:
    """A ticket's plaintext; ValueError if the client chain is over MAX_TICKET_CHAIN."""
    packed = _packed_chain(state.client_chain) if state.client_chain else b""
    buf = Buffer(capacity=128 + len(packed) + len(state.client_public_key))
    buf.push_uint8(TICKET_VERSION)
    buf.push_uint16(state.suite)
    buf.push_uint64(int(state.issued_at * 1000))
    buf.push_uint32(state.lifetime)
    buf.push_uint32(state.age_add)
    buf.push_uint32(state.max_early_data)
    buf.push_vector(1, state.psk)
    buf.push_vector(1, (state.alpn or "").encode())
    buf.push_vector(2, (state.server_name or "").encode("ascii"))
    buf.push_vector(2, packed)
    buf.push_vector(2, state.client_public_key)
    return buf.data


def _decode(plain: bytes, now: float) -> TicketState | None:
    """The state in a ticket's plaintext, unexpired; else None (never raises)."""
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
        server_name = buf.pull_vector(2).decode("ascii") or None
        packed = buf.pull_vector(2)
        client_public_key = buf.pull_vector(2)
        buf.expect_end()
    except (DecodeError, ValueError):
        return None
    if not 0 <= now - issued < lifetime:
        return None
    try:
        chain = _unpack_chain(packed)
    except (DecodeError, ValueError, zlib.error):
        return None
    return TicketState(
        suite,
        psk,
        issued,
        lifetime,
        age_add,
        max_early,
        alpn,
        server_name,
        chain,
        client_public_key,
    )


def _unpack_chain(packed: bytes) -> tuple[x509.Certificate, ...]:
    """The certificates of a sealed ticket's compressed chain (bounded, as sealed)."""
    if not packed:
        return ()
    inflater = zlib.decompressobj()
    raw = inflater.decompress(packed, 2 * MAX_TICKET_CHAIN)
    if not inflater.eof or inflater.unconsumed_tail:
        raise ValueError("chain over the limit or truncated")
    buf = Buffer(raw)
    ders = []
    while not buf.eof():
        ders.append(buf.pull_vector(3))
    return tuple(x509.load_der_x509_certificate(der) for der in ders)
