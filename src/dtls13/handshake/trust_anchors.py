"""Trust anchor IDs (draft-ietf-tls-trust-anchor-ids): a client names the trust anchors it
has by short IDs, a server picks a credential that chains to one and says so.

    opaque TrustAnchorIdentifier<1..2^8-1>;
    TrustAnchorIdentifier TrustAnchorIdentifierList<0..2^16-1>;

- ClientHello: the trust_anchors extension holds the IDs the client trusts (maybe none).
- EncryptedExtensions: the server's available IDs (never an empty list), so a client whose
  request matched nothing can learn what to ask for next time.
- The leaf's CertificateEntry: an empty trust_anchors extension when the certificate sent
  chains to a trust anchor the client named.

The draft has no code point yet: 0xca34, BoringSSL's (and Chrome's) experimental one.
Codecs read network bytes and raise only DecodeError.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from .._fast import Buffer, DecodeError
from ..alerts import DecodeErrorAlert, IllegalParameter
from . import extensions as ext
from . import messages as msgs

EXTENSION_TYPE = 0xCA34


def check_id(value: object) -> bytes:
    """A trust anchor ID from the programmer: 1 to 255 bytes (ValueError, TypeError)."""
    if not isinstance(value, bytes):
        raise TypeError(f"a trust anchor ID is bytes, not {type(value).__name__}")
    if not 0 < len(value) < 256:
        raise ValueError("a trust anchor ID is 1 to 255 bytes")
    return value


def check_ids(values: Iterable[object]) -> tuple[bytes, ...]:
    """A list of trust anchor IDs from the programmer, each checked, the list bounded."""
    if isinstance(values, bytes | str):
        raise TypeError("trust anchor IDs are a sequence of bytes, not one bytes or str")
    ids = tuple(check_id(v) for v in values)
    if sum(1 + len(i) for i in ids) >= 0x10000:
        raise ValueError("too many trust anchor IDs for one extension")
    return ids


def push_ids(buf: Buffer, ids: Sequence[bytes]) -> None:
    """A TrustAnchorIdentifierList."""
    inner = Buffer(capacity=sum(1 + len(i) for i in ids) + 1)
    for i in ids:
        inner.push_vector(1, i)
    buf.push_vector(2, inner.data)
    inner.close()


def pull_ids(buf: Buffer) -> tuple[bytes, ...]:
    """A TrustAnchorIdentifierList (maybe empty); an empty ID is a DecodeError."""
    inner = Buffer(buf.pull_vector(2))
    ids = []
    try:
        while not inner.eof():
            value = inner.pull_vector(1)
            if not value:
                raise DecodeError("empty trust anchor ID")
            ids.append(value)
    finally:
        inner.close()
    return tuple(ids)


def pull_available_ids(buf: Buffer) -> tuple[bytes, ...]:
    """The server's list in EncryptedExtensions, which is never empty."""
    ids = pull_ids(buf)
    if not ids:
        raise DecodeError("empty trust anchor ID list in EncryptedExtensions")
    return ids


# -- per handshake (the peer's input: raise only Alert subclasses) -------------------------


def _decode(data: bytes, pull: Any) -> Any:
    try:
        return ext.decode(data, pull)
    except DecodeError as exc:
        raise DecodeErrorAlert(f"malformed trust_anchors: {exc}") from None


def requested_untrusted(ch: msgs.ClientHello) -> frozenset[bytes] | None:
    """The trust anchor IDs a ClientHello names (None: no trust_anchors extension)."""
    data = ch.extension(EXTENSION_TYPE)
    return None if data is None else frozenset(_decode(data, pull_ids))


def available_extension(cfg: Any, requested: frozenset[bytes] | None) -> ext.Extension | None:
    """The server's EncryptedExtensions entry: the IDs of its credentials, for a client
    that sent trust_anchors (None: it did not, or no credential has an ID)."""
    if requested is None:
        return None
    ids = [c.trust_anchor_id for c in cfg.server_certificates.certificates if c.trust_anchor_id]
    if not ids:
        return None
    return ext.Extension(EXTENSION_TYPE, ext.encode(push_ids, tuple(dict.fromkeys(ids))))


def matched(credential: Any, requested: frozenset[bytes] | None) -> bool:
    """Whether `credential` chains to a trust anchor the client named."""
    return requested is not None and credential.trust_anchor_id in requested


def client_extension(cfg: Any) -> list[ext.Extension]:
    """The ClientHello's trust_anchors, when the client names its trust anchors."""
    if cfg.trust_anchor_ids is None:
        return []
    return [ext.Extension(EXTENSION_TYPE, ext.encode(push_ids, cfg.trust_anchor_ids))]


def available_untrusted(ee: msgs.EncryptedExtensions) -> tuple[bytes, ...]:
    """The server's available trust anchor IDs in EncryptedExtensions (() when none)."""
    data = ee.extension(EXTENSION_TYPE)
    return () if data is None else tuple(_decode(data, pull_available_ids))


def matched_untrusted(entries: Sequence[msgs.CertificateEntry]) -> bool:
    """Whether the server's leaf says it chains to a trust anchor we named: an empty
    trust_anchors extension, only on the leaf."""
    for entry in entries[1:]:
        if entry.extension(EXTENSION_TYPE) is not None:
            raise IllegalParameter("trust_anchors on a certificate other than the leaf")
    if not entries:
        return False
    data = entries[0].extension(EXTENSION_TYPE)
    if data is None:
        return False
    if data:
        raise DecodeErrorAlert("trust_anchors on the leaf certificate is not empty")
    return True
