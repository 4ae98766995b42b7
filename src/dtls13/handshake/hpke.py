"""Hybrid Public Key Encryption (RFC 9180), base mode, as Encrypted Client Hello needs it.

Only DHKEM(X25519, HKDF-SHA256) as KEM; the three HKDFs and three AEADs of RFC 9180 §7.
``cryptography``'s own HPKE has no AAD and no sequence numbers, so this builds the key
schedule (§5.1) and the encryption context (§5.2) on its X25519 / HMAC / AEAD primitives.
"""

from __future__ import annotations

import enum
import hashlib

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from dtls13.crypto.hkdf import hkdf_expand as _expand
from dtls13.crypto.hkdf import hkdf_extract as _extract


class KemId(enum.IntEnum):
    DHKEM_X25519_HKDF_SHA256 = 0x0020


class KdfId(enum.IntEnum):
    HKDF_SHA256 = 1
    HKDF_SHA384 = 2
    HKDF_SHA512 = 3


class AeadId(enum.IntEnum):
    AES_128_GCM = 1
    AES_256_GCM = 2
    CHACHA20_POLY1305 = 3


class HpkeError(Exception):
    """A bad encapsulated key, a failed decryption or an exhausted sequence number."""


_HASHES = {KdfId.HKDF_SHA256: "sha256", KdfId.HKDF_SHA384: "sha384", KdfId.HKDF_SHA512: "sha512"}
# (Nk, Nn) per AEAD (RFC 9180 §7.3); the tag is 16 bytes for all three.
_AEAD_SIZES = {
    AeadId.AES_128_GCM: (16, 12),
    AeadId.AES_256_GCM: (32, 12),
    AeadId.CHACHA20_POLY1305: (32, 12),
}
AEAD_TAG_LENGTH = 16
X25519_ENC_LENGTH = 32


def _labeled_extract(
    hash_name: str, suite_id: bytes, salt: bytes, label: bytes, ikm: bytes
) -> bytes:
    return _extract(hash_name, salt, b"HPKE-v1" + suite_id + label + ikm)


def _labeled_expand(
    hash_name: str, suite_id: bytes, prk: bytes, label: bytes, info: bytes, length: int
) -> bytes:
    labeled_info = length.to_bytes(2, "big") + b"HPKE-v1" + suite_id + label + info
    return _expand(hash_name, prk, labeled_info, length)


def _check_suite(kem: int, kdf: int, aead: int) -> tuple[KdfId, AeadId]:
    if kem != KemId.DHKEM_X25519_HKDF_SHA256:
        raise ValueError(f"unsupported HPKE KEM {kem:#06x}")
    try:
        return KdfId(kdf), AeadId(aead)
    except ValueError:
        raise ValueError(f"unsupported HPKE KDF {kdf} or AEAD {aead}") from None


def _dh_shared_secret(dh: bytes, enc: bytes, pk_r: bytes) -> bytes:
    """DHKEM ExtractAndExpand (RFC 9180 §4.1) for X25519 with HKDF-SHA256."""
    suite_id = b"KEM" + KemId.DHKEM_X25519_HKDF_SHA256.to_bytes(2, "big")
    eae_prk = _labeled_extract("sha256", suite_id, b"", b"eae_prk", dh)
    return _labeled_expand("sha256", suite_id, eae_prk, b"shared_secret", enc + pk_r, 32)


def _exchange(private: X25519PrivateKey, public: bytes) -> bytes:
    if len(public) != X25519_ENC_LENGTH:
        raise HpkeError("X25519 public key of the wrong length")
    try:
        return private.exchange(X25519PublicKey.from_public_bytes(public))
    except ValueError:  # an all-zero shared secret (small-order point), RFC 9180 §7.1.4
        raise HpkeError("invalid X25519 public key") from None


class HpkeContext:
    """An HPKE encryption context (RFC 9180 §5.2): one key, one base nonce, a sequence."""

    __slots__ = ("_aead", "_base_nonce", "_key", "_sequence", "exporter_secret")

    def __init__(self, aead: AeadId, key: bytes, base_nonce: bytes, exporter_secret: bytes):
        self._aead: AESGCM | ChaCha20Poly1305 = (
            ChaCha20Poly1305(key) if aead == AeadId.CHACHA20_POLY1305 else AESGCM(key)
        )
        self._key = key
        self._base_nonce = base_nonce
        self._sequence = 0
        self.exporter_secret = exporter_secret

    @property
    def sequence(self) -> int:
        return self._sequence

    def skip_to(self, sequence: int) -> None:
        """Continue at `sequence`: a context rebuilt after messages it did not see."""
        if sequence < self._sequence:
            raise ValueError("an HPKE sequence number never goes back")
        self._sequence = sequence

    def _nonce(self) -> bytes:
        if self._sequence >= (1 << (8 * len(self._base_nonce))) - 1:
            raise HpkeError("HPKE sequence number exhausted")
        seq = self._sequence.to_bytes(len(self._base_nonce), "big")
        return bytes(a ^ b for a, b in zip(self._base_nonce, seq, strict=True))

    def seal(self, aad: bytes, plaintext: bytes) -> bytes:
        ciphertext = self._aead.encrypt(self._nonce(), plaintext, aad)
        self._sequence += 1
        return ciphertext

    def open(self, aad: bytes, ciphertext: bytes) -> bytes:
        """Decrypt; a failure raises HpkeError and leaves the sequence number unchanged."""
        try:
            plaintext = self._aead.decrypt(self._nonce(), ciphertext, aad)
        except InvalidTag:
            raise HpkeError("HPKE decryption failed") from None
        self._sequence += 1
        return plaintext


def _key_schedule(kdf: KdfId, aead: AeadId, shared_secret: bytes, info: bytes) -> HpkeContext:
    """KeySchedule for mode_base (RFC 9180 §5.1): empty psk and psk_id."""
    hash_name = _HASHES[kdf]
    suite_id = (
        b"HPKE"
        + KemId.DHKEM_X25519_HKDF_SHA256.to_bytes(2, "big")
        + kdf.to_bytes(2, "big")
        + aead.to_bytes(2, "big")
    )
    psk_id_hash = _labeled_extract(hash_name, suite_id, b"", b"psk_id_hash", b"")
    info_hash = _labeled_extract(hash_name, suite_id, b"", b"info_hash", info)
    context = b"\x00" + psk_id_hash + info_hash
    secret = _labeled_extract(hash_name, suite_id, shared_secret, b"secret", b"")
    nk, nn = _AEAD_SIZES[aead]
    nh = hashlib.new(hash_name).digest_size
    return HpkeContext(
        aead,
        _labeled_expand(hash_name, suite_id, secret, b"key", context, nk),
        _labeled_expand(hash_name, suite_id, secret, b"base_nonce", context, nn),
        _labeled_expand(hash_name, suite_id, secret, b"exp", context, nh),
    )


def setup_base_sender(
    kem: int,
    kdf: int,
    aead: int,
    pk_r: bytes,
    info: bytes,
    *,
    ephemeral: X25519PrivateKey | None = None,
) -> tuple[bytes, HpkeContext]:
    """SetupBaseS (RFC 9180 §5.1.1): the encapsulated key ``enc`` and the sender's context."""
    kdf_id, aead_id = _check_suite(kem, kdf, aead)
    sk_e = ephemeral if ephemeral is not None else X25519PrivateKey.generate()
    enc = sk_e.public_key().public_bytes_raw()
    shared_secret = _dh_shared_secret(_exchange(sk_e, pk_r), enc, pk_r)
    return enc, _key_schedule(kdf_id, aead_id, shared_secret, info)


def setup_base_receiver(
    kem: int, kdf: int, aead: int, enc: bytes, sk_r: X25519PrivateKey, info: bytes
) -> HpkeContext:
    """SetupBaseR (RFC 9180 §5.1.1); a malformed or invalid ``enc`` raises HpkeError."""
    kdf_id, aead_id = _check_suite(kem, kdf, aead)
    pk_r = sk_r.public_key().public_bytes_raw()
    shared_secret = _dh_shared_secret(_exchange(sk_r, enc), enc, pk_r)
    return _key_schedule(kdf_id, aead_id, shared_secret, info)
