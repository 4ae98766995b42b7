"""HKDF (RFC 5869) and TLS 1.3's HKDF-Expand-Label / Derive-Secret (RFC 8446 §7.1).

The label prefix is a parameter: DTLS 1.3 uses "dtls13" (RFC 9147 §5.9), and the RFC 8448
test vectors use TLS 1.3's "tls13 ".

Every output a handshake needs fits one hash block, so HKDF-Expand is one HMAC call (an
OpenSSL HMAC object, `_fast.hmac_digest`); the HkdfLabel of a label with an empty context
(traffic keys, "finished", "derived" after the empty hash) is built once and kept.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable

_hmac_digest: Callable[[bytes, bytes, str], bytes]
try:  # compiled: an OpenSSL HMAC object, faster than OpenSSL 3's one-shot HMAC()
    from .._fast import hmac_digest as _hmac_digest
except ImportError:  # pragma: no cover - an old build of _fast
    _hmac_digest = hmac.digest

hmac_digest = _hmac_digest

DTLS13_PREFIX = b"dtls13"
TLS13_PREFIX = b"tls13 "

_DIGEST_SIZES: dict[str, int] = {"sha256": 32, "sha384": 48}
_LABELS: dict[tuple[bytes, bytes, bytes, int], bytes] = {}
_MAX_CACHED_LABELS = 256


def digest_size(hash_name: str) -> int:
    size = _DIGEST_SIZES.get(hash_name)
    if size is None:
        size = _DIGEST_SIZES[hash_name] = hashlib.new(hash_name).digest_size
    return size


def hkdf_extract(hash_name: str, salt: bytes, ikm: bytes) -> bytes:
    """HKDF-Extract(salt, IKM); an empty salt means a string of HashLen zeros."""
    if not salt:
        salt = bytes(digest_size(hash_name))
    return _hmac_digest(salt, ikm, hash_name)


def hkdf_expand(hash_name: str, prk: bytes, info: bytes, length: int) -> bytes:
    """HKDF-Expand(PRK, info, L)."""
    size = digest_size(hash_name)
    if not 0 <= length <= 255 * size:
        raise ValueError("HKDF-Expand length out of range")
    if length <= size:
        return _hmac_digest(prk, info + b"\x01", hash_name)[:length]
    out = b""
    block = b""
    counter = 1
    while len(out) < length:
        block = _hmac_digest(prk, block + info + bytes([counter]), hash_name)
        out += block
        counter += 1
    return out[:length]


def hkdf_label(label: bytes, context: bytes, length: int, prefix: bytes = DTLS13_PREFIX) -> bytes:
    """The HkdfLabel structure: uint16 length, opaque label<7..255>, opaque context<0..255>."""
    full = prefix + label
    n_full, n_context = len(full), len(context)
    if not 7 <= n_full <= 255 or n_context > 255:
        raise ValueError("HkdfLabel label or context out of range")
    return length.to_bytes(2, "big") + bytes((n_full,)) + full + bytes((n_context,)) + context


def expand_label_info(label: bytes, length: int, prefix: bytes = DTLS13_PREFIX) -> bytes:
    """HkdfLabel for an empty context followed by HKDF-Expand's first counter byte: the
    whole HMAC input of a one-block HKDF-Expand-Label (cached)."""
    key = (prefix, label, b"", length)
    info = _LABELS.get(key)
    if info is None:
        info = hkdf_label(label, b"", length, prefix) + b"\x01"
        if len(_LABELS) < _MAX_CACHED_LABELS:
            _LABELS[key] = info
    return info


def hkdf_expand_label(
    hash_name: str,
    secret: bytes,
    label: bytes,
    context: bytes,
    length: int,
    prefix: bytes = DTLS13_PREFIX,
) -> bytes:
    """HKDF-Expand-Label(Secret, Label, Context, Length)."""
    if length <= 32 or length <= digest_size(hash_name):  # one block: one HMAC
        info = (
            hkdf_label(label, context, length, prefix) + b"\x01"
            if context
            else expand_label_info(label, length, prefix)
        )
        return _hmac_digest(secret, info, hash_name)[:length]
    return hkdf_expand(hash_name, secret, hkdf_label(label, context, length, prefix), length)


_DERIVE_HEADS: dict[tuple[bytes, bytes, int], bytes] = {}


def derive_secret_head(label: bytes, size: int, prefix: bytes = DTLS13_PREFIX) -> bytes:
    """Derive-Secret's HkdfLabel up to its context, for a transcript hash of `size` bytes:
    length = Hash.length, the label, the context's length (cached)."""
    key = (prefix, label, size)
    head = _DERIVE_HEADS.get(key)
    if head is None:
        full = prefix + label
        if not 7 <= len(full) <= 255 or size > 255:
            raise ValueError("HkdfLabel label or context out of range")
        head = size.to_bytes(2, "big") + bytes((len(full),)) + full + bytes((size,))
        if len(_DERIVE_HEADS) < _MAX_CACHED_LABELS:
            _DERIVE_HEADS[key] = head
    return head


def derive_secret(
    hash_name: str,
    secret: bytes,
    label: bytes,
    transcript_hash: bytes,
    prefix: bytes = DTLS13_PREFIX,
) -> bytes:
    """Derive-Secret(Secret, Label, Messages), given Transcript-Hash(Messages)."""
    size = len(transcript_hash)
    head = _DERIVE_HEADS.get((prefix, label, size)) or derive_secret_head(label, size, prefix)
    # One block (HKDF-Expand's counter 1); every TLS 1.3 hash is at least 32 bytes long.
    if size <= 32 or size <= digest_size(hash_name):
        return _hmac_digest(secret, head + transcript_hash + b"\x01", hash_name)[:size]
    return hkdf_expand(hash_name, secret, head + transcript_hash, size)
