"""OCSP stapling and signed certificate timestamps as (D)TLS 1.3 carries them.

A client asks with status_request (RFC 6066 §8) and signed_certificate_timestamp (RFC 6962
§3.3.1) in its ClientHello; a server that has something to send puts it in the extensions of
the leaf's CertificateEntry (RFC 8446 §4.4.2, §4.4.2.1), only when asked. The library does
not check an OCSP response or an SCT itself: it hands them to the application.

Encodings:
  CertificateStatusRequest: status_type ocsp(1), ResponderID list<0..2^16-1>,
      request extensions<0..2^16-1> (RFC 6066 §8); the client sends both lists empty.
  CertificateStatus: status_type ocsp(1), opaque OCSPResponse<1..2^24-1> (RFC 6066 §8).
  SignedCertificateTimestampList: SerializedSCT sct_list<1..2^16-1>, each
      opaque SerializedSCT<1..2^16-1> (RFC 6962 §3.3).

Functions ending in _untrusted read the peer's bytes and raise only Alert subclasses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.serialization import Encoding

from dtls13._fast import Buffer, DecodeError

from ..alerts import (
    BadCertificateStatusResponse,
    DecodeErrorAlert,
    InternalError,
    UnsupportedExtension,
)
from . import extensions as ext
from . import messages as msgs
from . import trust_anchors
from .constants import ExtensionType

STATUS_TYPE_OCSP = 1
# What our ClientHello's status_request carries: OCSP, no responder IDs, no extensions.
STATUS_REQUEST_DATA = bytes([STATUS_TYPE_OCSP, 0, 0, 0, 0])
_OCSP = ExtensionType.status_request
_SCT = ExtensionType.signed_certificate_timestamp
_ANCHORS = trust_anchors.EXTENSION_TYPE


@dataclass(frozen=True, slots=True)
class Stapled:
    """What the peer stapled to its leaf certificate (None / empty: nothing)."""

    ocsp_response: bytes | None = None
    signed_certificate_timestamps: tuple[bytes, ...] = ()


NOTHING = Stapled()


# -- configuration (programmer input: raise at once) ----------------------------------------


# A CertificateEntry's extensions are a <0..2^16-1> block (RFC 8446 §4.4.2): the staples
# of one leaf, with their 4-byte extension headers, fit in it.
MAX_STAPLED = 0xFFFF
MAX_OCSP_RESPONSE = MAX_STAPLED - 8  # extension header, status_type, 24-bit length


def check_ocsp_response(value: object) -> bytes | None:
    """A configured OCSP response: None or 1 .. MAX_OCSP_RESPONSE bytes (DER, not checked)."""
    if value is None:
        return None
    if not isinstance(value, bytes | bytearray | memoryview):
        raise TypeError(f"ocsp_response must be bytes or None, not {type(value).__name__}")
    data = bytes(value)
    if not 1 <= len(data) <= MAX_OCSP_RESPONSE:
        raise ValueError(
            f"ocsp_response must be 1 to {MAX_OCSP_RESPONSE} bytes (or None): it travels in "
            "the leaf's CertificateEntry extensions, a block of at most 2**16 - 1 bytes"
        )
    return data


def check_fits(response: bytes | None, scts: Sequence[bytes]) -> None:
    """The OCSP response and the SCTs together fit the leaf entry's extensions block."""
    if _size(response, scts) > MAX_STAPLED:
        raise ValueError(
            "ocsp_response and signed_certificate_timestamps together exceed the 2**16 - 1 "
            "bytes of the leaf's CertificateEntry extensions"
        )


def check_timestamps(value: object) -> tuple[bytes, ...]:
    """Configured SCTs: a sequence of serialized SCTs, each 1 .. 2^16-1 bytes, whose list
    encoding fits its 2^16-1 byte limit (RFC 6962 §3.3)."""
    if isinstance(value, bytes | bytearray | str) or not isinstance(value, Sequence):
        raise TypeError(
            "signed_certificate_timestamps is a sequence of serialized SCTs (bytes), not one value"
        )
    items = []
    for item in value:
        if not isinstance(item, bytes | bytearray | memoryview):
            raise TypeError(f"a serialized SCT is bytes, not {type(item).__name__}")
        if not 1 <= len(item) < 1 << 16:
            raise ValueError("each serialized SCT must be 1 to 2**16 - 1 bytes")
        items.append(bytes(item))
    if sum(2 + len(i) for i in items) >= 1 << 16:
        raise ValueError("signed_certificate_timestamps exceed the list's 2**16 - 1 bytes")
    return tuple(items)


def check_callback(value: object, name: str = "ocsp_callback") -> None:
    if value is not None and not callable(value):
        raise TypeError(f"{name} must be callable (or None)")


# -- codecs ---------------------------------------------------------------------------------


def encode_certificate_status(response: bytes) -> bytes:
    buf = Buffer(capacity=len(response) + 4)
    try:
        buf.push_uint8(STATUS_TYPE_OCSP)
        buf.push_vector(3, response)
        return buf.data
    finally:
        buf.close()


def _pull_certificate_status(buf: Buffer) -> bytes:
    if buf.pull_uint8() != STATUS_TYPE_OCSP:
        raise DecodeError("CertificateStatus of a type other than ocsp")
    response = buf.pull_vector(3)
    if not response:
        raise DecodeError("empty OCSPResponse")
    return response


def encode_timestamps(scts: Sequence[bytes]) -> bytes:
    return ext.encode(lambda buf, items: buf.push_list(2, _push_sct, items), scts)


def _push_sct(buf: Buffer, sct: bytes) -> None:
    buf.push_vector(2, sct)


def _pull_sct(buf: Buffer) -> bytes:
    sct = buf.pull_vector(2)
    if not sct:
        raise DecodeError("empty SerializedSCT")
    return sct


def _pull_timestamps(buf: Buffer) -> tuple[bytes, ...]:
    items = tuple(buf.pull_list(2, _pull_sct))
    if not items:
        raise DecodeError("empty SignedCertificateTimestampList")
    return items


def _pull_status_request(buf: Buffer) -> bool:
    """CertificateStatusRequest: True for OCSP. Another status type is read no further (its
    body is that type's) and ignored (RFC 6066 §8: the server then sends no status)."""
    if buf.pull_uint8() != STATUS_TYPE_OCSP:
        buf.pull_bytes(buf.remaining)
        return False
    buf.pull_vector(2)  # responder_id_list: which responders the client trusts; advisory
    buf.pull_vector(2)  # request_extensions
    return True


def _decode(data: bytes, pull: Any, what: str) -> Any:
    try:
        return ext.decode(data, pull)
    except DecodeError as exc:
        raise DecodeErrorAlert(f"malformed {what}: {exc}") from None


# -- client ---------------------------------------------------------------------------------


def client_extensions(cfg: Any) -> list[ext.Extension]:
    """The ClientHello's requests, as configured."""
    out = []
    if cfg.request_ocsp:
        out.append(ext.Extension(_OCSP, STATUS_REQUEST_DATA))
    if cfg.request_signed_certificate_timestamps:
        # RFC 6962 §3.3.1: "extension_data" is empty in the ClientHello.
        out.append(ext.Extension(_SCT, b""))
    return out


def peer_stapled_untrusted(
    entries: Sequence[msgs.CertificateEntry], ocsp: bool, sct: bool, anchors: bool = False
) -> Stapled:
    """What the server stapled to its leaf; `ocsp` / `sct` / `anchors` (trust anchor IDs):
    we asked for it.

    RFC 8446 §4.4.2: an extension in a CertificateEntry must answer one of the ClientHello
    (else unsupported_extension). Those on intermediates are allowed and ignored: what
    matters is the leaf's. A malformed one: decode_error."""
    allowed = {t for t, asked in ((_OCSP, ocsp), (_SCT, sct), (_ANCHORS, anchors)) if asked}
    allowed.add(ExtensionType.delegated_credential)  # handshake.delegated checks it
    for entry in entries:
        for e in entry.extensions:
            if e.type not in allowed:
                raise UnsupportedExtension(
                    f"{_name(e.type)} in a CertificateEntry, which we did not ask for"
                )
    if not entries or not entries[0].extensions:
        return NOTHING
    leaf = entries[0]
    status = leaf.extension(_OCSP)
    timestamps = leaf.extension(_SCT)
    return Stapled(
        _decode(status, _pull_certificate_status, "CertificateStatus")
        if status is not None
        else None,
        _decode(timestamps, _pull_timestamps, "SignedCertificateTimestampList")
        if timestamps is not None
        else (),
    )


def check_client_entries_untrusted(entries: Sequence[msgs.CertificateEntry]) -> None:
    """A server never asks for the client's status (no status_request in our
    CertificateRequest): any extension on the client's certificates is unsolicited."""
    for entry in entries:
        for e in entry.extensions:
            raise UnsupportedExtension(f"{_name(e.type)} on a client certificate")


def of_session(session: Any) -> Stapled:
    """What the original handshake of a resumed session stapled."""
    if session.peer_ocsp_response is None and not session.peer_signed_certificate_timestamps:
        return NOTHING
    return Stapled(session.peer_ocsp_response, session.peer_signed_certificate_timestamps)


def run_client_callback(cfg: Any, stapled: Stapled, chain: tuple[Any, ...]) -> None:
    """`cfg.ocsp_callback(response, chain)`: False rejects the stapled status (or its
    absence) with bad_certificate_status_response (RFC 6066 §8)."""
    callback = cfg.ocsp_callback
    if callback is None or not cfg.request_ocsp:
        return
    if not callback(stapled.ocsp_response, chain):
        raise BadCertificateStatusResponse("ocsp_callback rejected the certificate status")


# -- server ---------------------------------------------------------------------------------


def requested_untrusted(ch: msgs.ClientHello) -> tuple[bool, bool]:
    """(OCSP asked for, SCTs asked for) in a ClientHello."""
    status = ch.extension(_OCSP)
    timestamps = ch.extension(_SCT)
    ocsp = status is not None and bool(_decode(status, _pull_status_request, "status_request"))
    if timestamps:  # RFC 6962 §3.3.1: empty in the ClientHello
        raise DecodeErrorAlert("signed_certificate_timestamp with data in the ClientHello")
    return ocsp, timestamps is not None


def server_body(
    cfg: Any, certificate: Any, ch: msgs.ClientHello, count: Any, anchor_matched: bool = False
) -> bytes:
    """The Certificate message body for `certificate` (a selection.ServerCertificate): its
    plain body, or one whose leaf entry carries what the client asked for and we have.

    `cfg.ocsp_callback(certificate)`, when set and the client asked for OCSP, says what to
    staple (bytes) or that nothing is (None). An exception from it, or an answer that is
    no OCSP response, is the programmer's bug: counted (`server_callback_errors`) and
    answered with internal_error."""
    ocsp, sct = requested_untrusted(ch)
    response = certificate.ocsp_response if ocsp else None
    callback = cfg.ocsp_callback
    if ocsp and callback is not None:
        try:
            response = check_ocsp_response(callback(certificate))
            check_fits(response, certificate.signed_certificate_timestamps if sct else ())
        except (TypeError, ValueError) as exc:
            count("server_callback_errors", 1)
            raise InternalError(f"ocsp_callback: {exc}") from None
        except Exception:
            count("server_callback_errors", 1)
            raise
    timestamps = certificate.signed_certificate_timestamps if sct else ()
    if response is None and not timestamps and not anchor_matched:
        return bytes(certificate.body)
    return stapled_body(certificate, response, tuple(timestamps), anchor_matched)


def stapled_body(
    certificate: Any, response: bytes | None, scts: tuple[bytes, ...], anchor: bool = False
) -> bytes:
    """The body of `certificate`'s Certificate message with the leaf entry's extensions
    (`anchor`: the empty trust_anchors of draft-ietf-tls-trust-anchor-ids); the configured
    values' body is made once per chain (a callback's, each time)."""
    key = (response, scts, anchor)
    cache: dict[Any, bytes] = certificate.stapled_bodies
    body = cache.get(key)
    if body is not None:
        return body
    dc = getattr(certificate, "delegation", None)  # RFC 9345 §4.1.2: on the leaf, too
    leaf_ext = [] if dc is None else [ext.Extension(ExtensionType.delegated_credential, dc.raw)]
    if response is not None:
        leaf_ext.append(ext.Extension(_OCSP, encode_certificate_status(response)))
    if scts:
        leaf_ext.append(ext.Extension(_SCT, encode_timestamps(scts)))
    if anchor:
        leaf_ext.append(ext.Extension(trust_anchors.EXTENSION_TYPE, b""))
    ders = [c.public_bytes(Encoding.DER) for c in certificate.chain]
    entries = [msgs.CertificateEntry(ders[0], tuple(leaf_ext))]
    entries += [msgs.CertificateEntry(der) for der in ders[1:]]
    _, body = msgs.push_message(msgs.Certificate(b"", tuple(entries)))
    if response == certificate.ocsp_response and len(cache) < 8:
        cache[key] = body
    return body


def stapled_size(certificate: Any) -> int:
    """The most bytes stapling adds to `certificate`'s Certificate message (the
    amplification bound of the server's first flight)."""
    anchor = 4 if certificate.trust_anchor_id is not None else 0  # an empty extension
    return anchor + _size(certificate.ocsp_response, certificate.signed_certificate_timestamps)


def _size(response: bytes | None, scts: Sequence[bytes]) -> int:
    """The leaf entry's extensions (headers included) that stapling these takes."""
    size = 8 + len(response) if response is not None else 0
    return size + (6 + sum(2 + len(s) for s in scts) if scts else 0)


def _name(ext_type: int) -> str:
    try:
        return ExtensionType(ext_type).name
    except ValueError:
        return f"extension {ext_type}"
