"""HKDF (RFC 5869) and TLS 1.3's HKDF-Expand-Label / Derive-Secret (RFC 8446 §7.1).

The label prefix is a parameter: DTLS 1.3 uses "dtls13" (RFC 9147 §5.9), and the RFC 8448
test vectors use TLS 1.3's "tls13 ".
"""

from __future__ import annotations

import hashlib
import hmac

DTLS13_PREFIX = b"dtls13"
TLS13_PREFIX = b"tls13 "


def hkdf_extract(hash_name: str, salt: bytes, ikm: bytes) -> bytes:
    """HKDF-Extract(salt, IKM); an empty salt means a string of HashLen zeros."""
    if not salt:
        salt = bytes(hashlib.new(hash_name).digest_size)
    return hmac.digest(salt, ikm, hash_name)


def hkdf_expand(hash_name: str, prk: bytes, info: bytes, length: int) -> bytes:
    """HKDF-Expand(PRK, info, L)."""
    size = hashlib.new(hash_name).digest_size
    if length > 255 * size:
        raise ValueError("HKDF-Expand length too large")
    out = b""
    block = b""
    counter = 1
    while len(out) < length:
        block = hmac.digest(prk, block + info + bytes([counter]), hash_name)
        out += block
        counter += 1
    return out[:length]


def hkdf_label(label: bytes, context: bytes, length: int, prefix: bytes = DTLS13_PREFIX) -> bytes:
    """The HkdfLabel structure: uint16 length, opaque label<7..255>, opaque context<0..255>."""
    full = prefix + label
    if not 7 <= len(full) <= 255 or len(context) > 255:
        raise ValueError("HkdfLabel label or context out of range")
    return length.to_bytes(2, "big") + bytes([len(full)]) + full + bytes([len(context)]) + context


def hkdf_expand_label(
    hash_name: str,
    secret: bytes,
    label: bytes,
    context: bytes,
    length: int,
    prefix: bytes = DTLS13_PREFIX,
) -> bytes:
    """HKDF-Expand-Label(Secret, Label, Context, Length)."""
    return hkdf_expand(hash_name, secret, hkdf_label(label, context, length, prefix), length)


def derive_secret(
    hash_name: str,
    secret: bytes,
    label: bytes,
    transcript_hash: bytes,
    prefix: bytes = DTLS13_PREFIX,
) -> bytes:
    """Derive-Secret(Secret, Label, Messages), given Transcript-Hash(Messages)."""
    return hkdf_expand_label(
        hash_name, secret, label, transcript_hash, len(transcript_hash), prefix
    )
