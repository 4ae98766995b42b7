"""Keying material exporters (RFC 8446 §7.5) for DTLS 1.3.

    TLS-Exporter(label, context_value, key_length) =
        HKDF-Expand-Label(Derive-Secret(Secret, label, ""),
                          "exporter", Hash(context_value), key_length)

Secret is the exporter_master_secret ("exp master" over ClientHello..server Finished) or,
for 0-RTT, the early_exporter_master_secret ("e exp master" over ClientHello), RFC 8446
§7.1. Derive-Secret is defined through HKDF-Expand-Label, so both steps take DTLS 1.3's
"dtls13" label prefix (RFC 9147 §5.9: "Section 7.1 of [TLS13] specifies that
HKDF-Expand-Label uses a label prefix of "tls13 ". For DTLS 1.3, that label SHALL be
"dtls13".") -- OpenSSL 4.1's DTLS 1.3 exporter agrees (tests/interop).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from dtls13.crypto.hkdf import DTLS13_PREFIX, digest_size, hkdf_expand, hkdf_label
from dtls13.crypto.zeroize import zeroize

# HkdfLabel's label is opaque<7..255> and holds the prefix too (RFC 8446 §7.1).
MAX_LABEL = 255 - len(DTLS13_PREFIX)


@dataclass(frozen=True, slots=True)
class ExporterSecret:
    """An exporter master secret and the hash of the suite it belongs to; the secret is
    zeroed when this object goes (it outlives the connection's close: keys may still be
    exported after it, e.g. for SRTP)."""

    hash_name: str
    secret: bytes = b""

    def __del__(self) -> None:
        secret = self.secret
        object.__setattr__(self, "secret", b"")
        zeroize(secret)

    def export(self, label: str | bytes, context: bytes | None, length: int) -> bytes:
        """TLS-Exporter(label, context, length) under this secret."""
        return export_keying_material(self.hash_name, self.secret, label, context, length)


def exporter_label(label: str | bytes) -> bytes:
    """The label's bytes; ValueError/TypeError for one HkdfLabel cannot carry."""
    if isinstance(label, str):
        try:
            raw = label.encode("ascii")
        except UnicodeEncodeError:
            raise ValueError(f"exporter label {label!r} is not ASCII") from None
    elif isinstance(label, bytes | bytearray | memoryview):
        raw = bytes(label)
    else:
        raise TypeError(f"exporter label must be str or bytes, not {type(label).__name__}")
    if not 1 <= len(raw) <= MAX_LABEL:
        raise ValueError(f"exporter label must be 1 to {MAX_LABEL} bytes, not {len(raw)}")
    return raw


def export_keying_material(
    hash_name: str,
    secret: bytes,
    label: str | bytes,
    context: bytes | None,
    length: int,
    prefix: bytes = DTLS13_PREFIX,
) -> bytes:
    """RFC 8446 §7.5. No context and an empty context give the same value in (D)TLS 1.3
    ("providing no context computes the same value as providing an empty context"),
    unlike TLS 1.2's RFC 5705 exporter."""
    raw = exporter_label(label)
    if context is None:
        context = b""
    elif not isinstance(context, bytes | bytearray | memoryview):
        raise TypeError(f"exporter context must be bytes or None, not {type(context).__name__}")
    if isinstance(length, bool) or not isinstance(length, int):
        raise TypeError("exporter length must be an int")
    most = 255 * digest_size(hash_name)  # HKDF-Expand's limit (RFC 5869 §2.3)
    if not 1 <= length <= most:
        raise ValueError(f"exporter length must be 1 to {most} bytes, not {length}")
    empty = hashlib.new(hash_name).digest()
    size = len(empty)
    # Derive-Secret(Secret, label, "") with "" hashed: Transcript-Hash of no messages.
    derived = hkdf_expand(hash_name, secret, hkdf_label(raw, empty, size, prefix), size)
    context_hash = hashlib.new(hash_name, bytes(context)).digest()
    return hkdf_expand(
        hash_name, derived, hkdf_label(b"exporter", context_hash, length, prefix), length
    )
