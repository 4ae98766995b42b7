"""Handshake messages of DTLS 1.3 (RFC 9147 §5, RFC 8446 §4) and their codecs.

Each message is a frozen dataclass with a ``pull_x(buf)`` / ``push_x(buf, msg)`` pair over
the message body only. The 12-byte DTLS header (``HandshakeHeader``) is separate, and the
transcript uses the TLS 1.3 4-byte header instead (``transcript_header``, RFC 9147 §5.2).
Decoders raise only ``DecodeError``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeAlias

from dtls13._fast import Buffer, DecodeError

from .constants import DTLS_LEGACY_VERSION, ExtensionType, HandshakeType
from .extensions import (
    Extension,
    Extensions,
    OfferedPsks,
    binders_length,
    decode,
    encode,
    pull_extensions,
    pull_pre_shared_key_client,
    push_extensions,
    push_pre_shared_key_client,
)

HANDSHAKE_HEADER_LENGTH = 12
TRANSCRIPT_HEADER_LENGTH = 4

# RFC 8446 §4.1.3: a HelloRetryRequest is a ServerHello with this random,
# SHA-256("HelloRetryRequest").
HELLO_RETRY_REQUEST_RANDOM = bytes.fromhex(
    "cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c"
)

# RFC 8446 §4.1.3 (and RFC 9147 §5.3 for DTLS 1.2 / 1.0): the last 8 bytes of a ServerHello
# random when a 1.3-capable server negotiates an older version; a 1.3 client that sees one
# aborts with illegal_parameter.
DOWNGRADE_SENTINEL_12 = b"DOWNGRD\x01"
DOWNGRADE_SENTINEL_10 = b"DOWNGRD\x00"


class UnexpectedHandshakeType(DecodeError):
    """A handshake type DTLS 1.3 does not carry here; callers answer unexpected_message."""


# -- headers ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HandshakeHeader:
    """The DTLSHandshake header (RFC 9147 §5.2)."""

    msg_type: int
    length: int
    message_seq: int
    fragment_offset: int
    fragment_length: int


def pull_handshake_header(buf: Buffer) -> HandshakeHeader:
    """Read the 12-byte header; a fragment reaching past the message is a DecodeError."""
    header = HandshakeHeader(
        msg_type=buf.pull_uint8(),
        length=buf.pull_uint24(),
        message_seq=buf.pull_uint16(),
        fragment_offset=buf.pull_uint24(),
        fragment_length=buf.pull_uint24(),
    )
    if header.fragment_offset + header.fragment_length > header.length:
        raise DecodeError("handshake fragment beyond the message length")
    return header


def push_handshake_header(buf: Buffer, header: HandshakeHeader) -> None:
    buf.push_uint8(header.msg_type)
    buf.push_uint24(header.length)
    buf.push_uint16(header.message_seq)
    buf.push_uint24(header.fragment_offset)
    buf.push_uint24(header.fragment_length)


def transcript_header(msg_type: int, length: int) -> bytes:
    """TLS 1.3 ``Handshake`` header (type, uint24 length) as hashed into the transcript."""
    if not 0 <= length < 1 << 24:
        raise ValueError("handshake message too long")
    return bytes((msg_type, length >> 16, (length >> 8) & 0xFF, length & 0xFF))


# -- ClientHello / ServerHello ----------------------------------------------------------------


def _pull_cipher_suite(buf: Buffer) -> int:
    return buf.pull_uint16()


def _push_cipher_suite(buf: Buffer, suite: int) -> None:
    buf.push_uint16(suite)


class _HasExtensions:
    """Mixin: look up an extension's data by type."""

    __slots__ = ()
    extensions: Extensions

    def extension(self, ext_type: int) -> bytes | None:
        for ext in self.extensions:  # find_extension, without a call per lookup
            if ext.type == ext_type:
                return ext.data
        return None


class _IndexedExtensions:
    """Mixin: look up an extension through a type -> data index built on the first lookup
    (a server looks up some 25 per ClientHello). The index is kept in a slot, not a
    dataclass field: equality, hashing, repr, replace() and pickling do not see it."""

    __slots__ = ("extension",)
    extensions: Extensions
    # `extension(ext_type) -> bytes | None`, as _HasExtensions has it. Once the index is
    # built this slot holds its bound dict.get: a lookup is one C call, with no Python
    # frame around it. Unset until then; __getattr__ builds it on the first lookup.
    extension: Callable[[int], bytes | None]

    def __getattr__(self, name: str) -> Any:
        if name != "extension":
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        # The first extension of a type wins, as in a scan (only a message built locally
        # can repeat a type: pull_extensions refuses duplicates).
        lookup = {ext.type: ext.data for ext in reversed(self.extensions)}.get
        object.__setattr__(self, "extension", lookup)
        return lookup


@dataclass(frozen=True, slots=True)
class ClientHello(_IndexedExtensions):
    """RFC 9147 §5.3. `cipher_suites` may hold unknown values; `legacy_cookie` must be empty."""

    random: bytes
    cipher_suites: tuple[int, ...]
    extensions: Extensions
    legacy_session_id: bytes = b""
    legacy_cookie: bytes = b""
    legacy_compression_methods: bytes = b"\x00"
    legacy_version: int = DTLS_LEGACY_VERSION


def pull_client_hello(buf: Buffer, *, dtls: bool = True) -> ClientHello:
    """Read a ClientHello body; ``dtls=False`` reads TLS 1.3's (no legacy_cookie)."""
    legacy_version = buf.pull_uint16()
    random = buf.pull_bytes(32)
    session_id = buf.pull_vector(1)
    if len(session_id) > 32:
        raise DecodeError("legacy_session_id longer than 32 bytes")
    cookie = buf.pull_vector(1) if dtls else b""
    suites = buf.pull_uint16_list(2, 2)  # cipher_suites<2..2^16-2>
    compression = buf.pull_vector(1)
    if not compression:
        raise DecodeError("empty legacy_compression_methods")
    # A pre-1.3 ClientHello may end here with no extensions block at all; it then has no
    # supported_versions and the caller answers protocol_version (RFC 8446 §4.1.2).
    extensions = pull_extensions(buf) if not buf.eof() else ()
    return ClientHello(
        random=random,
        cipher_suites=suites,
        extensions=extensions,
        legacy_session_id=session_id,
        legacy_cookie=cookie,
        legacy_compression_methods=compression,
        legacy_version=legacy_version,
    )


def push_client_hello(buf: Buffer, msg: ClientHello, *, dtls: bool = True) -> None:
    buf.push_uint16(msg.legacy_version)
    buf.push_bytes(msg.random)
    buf.push_vector(1, msg.legacy_session_id)
    if dtls:
        buf.push_vector(1, msg.legacy_cookie)
    buf.push_list(2, _push_cipher_suite, msg.cipher_suites)
    buf.push_vector(1, msg.legacy_compression_methods)
    push_extensions(buf, msg.extensions)


@dataclass(frozen=True, slots=True)
class ServerHello(_HasExtensions):
    """RFC 9147 §5.4 / RFC 8446 §4.1.3; also the HelloRetryRequest (see its random)."""

    random: bytes
    cipher_suite: int
    extensions: Extensions
    legacy_session_id_echo: bytes = b""
    legacy_compression_method: int = 0
    legacy_version: int = DTLS_LEGACY_VERSION

    @property
    def is_hello_retry_request(self) -> bool:
        return self.random == HELLO_RETRY_REQUEST_RANDOM

    @property
    def has_downgrade_sentinel(self) -> bool:
        return self.random[-8:] in (DOWNGRADE_SENTINEL_12, DOWNGRADE_SENTINEL_10)


def pull_server_hello(buf: Buffer) -> ServerHello:
    legacy_version = buf.pull_uint16()
    random = buf.pull_bytes(32)
    session_id = buf.pull_vector(1)
    if len(session_id) > 32:
        raise DecodeError("legacy_session_id_echo longer than 32 bytes")
    suite = buf.pull_uint16()
    compression = buf.pull_uint8()
    extensions = pull_extensions(buf) if not buf.eof() else ()  # a DTLS 1.2 ServerHello
    return ServerHello(
        random=random,
        cipher_suite=suite,
        extensions=extensions,
        legacy_session_id_echo=session_id,
        legacy_compression_method=compression,
        legacy_version=legacy_version,
    )


def push_server_hello(buf: Buffer, msg: ServerHello) -> None:
    buf.push_uint16(msg.legacy_version)
    buf.push_bytes(msg.random)
    buf.push_vector(1, msg.legacy_session_id_echo)
    buf.push_uint16(msg.cipher_suite)
    buf.push_uint8(msg.legacy_compression_method)
    push_extensions(buf, msg.extensions)


# -- EncryptedExtensions, CertificateRequest ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class EncryptedExtensions(_HasExtensions):
    """RFC 8446 §4.3.1."""

    extensions: Extensions


def pull_encrypted_extensions(buf: Buffer) -> EncryptedExtensions:
    return EncryptedExtensions(pull_extensions(buf))


def push_encrypted_extensions(buf: Buffer, msg: EncryptedExtensions) -> None:
    push_extensions(buf, msg.extensions)


@dataclass(frozen=True, slots=True)
class CertificateRequest(_HasExtensions):
    """RFC 8446 §4.3.2 (signature_algorithms is mandatory; the caller checks)."""

    certificate_request_context: bytes
    extensions: Extensions


def pull_certificate_request(buf: Buffer) -> CertificateRequest:
    context = buf.pull_vector(1)
    return CertificateRequest(context, pull_extensions(buf))


def push_certificate_request(buf: Buffer, msg: CertificateRequest) -> None:
    buf.push_vector(1, msg.certificate_request_context)
    push_extensions(buf, msg.extensions)


# -- Certificate, CertificateVerify, Finished ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class CertificateEntry(_HasExtensions):
    """One X.509 certificate (DER) with its per-entry extensions (RFC 8446 §4.4.2)."""

    cert_data: bytes
    extensions: Extensions = ()


def _pull_certificate_entry(buf: Buffer) -> CertificateEntry:
    cert_data = buf.pull_vector(3)
    if not cert_data:
        raise DecodeError("empty cert_data")  # opaque cert_data<1..2^24-1>
    return CertificateEntry(cert_data, pull_extensions(buf))


def _push_certificate_entry(buf: Buffer, entry: CertificateEntry) -> None:
    buf.push_vector(3, entry.cert_data)
    push_extensions(buf, entry.extensions)


@dataclass(frozen=True, slots=True)
class Certificate:
    """RFC 8446 §4.4.2; an empty list means no certificate (a client's choice)."""

    certificate_request_context: bytes
    certificate_list: tuple[CertificateEntry, ...]


def pull_certificate(buf: Buffer) -> Certificate:
    context = buf.pull_vector(1)
    entries = tuple(buf.pull_list(3, _pull_certificate_entry))
    return Certificate(context, entries)


def push_certificate(buf: Buffer, msg: Certificate) -> None:
    buf.push_vector(1, msg.certificate_request_context)
    buf.push_list(3, _push_certificate_entry, msg.certificate_list)


@dataclass(frozen=True, slots=True)
class CertificateVerify:
    """RFC 8446 §4.4.3."""

    algorithm: int
    signature: bytes


def pull_certificate_verify(buf: Buffer) -> CertificateVerify:
    algorithm = buf.pull_uint16()
    return CertificateVerify(algorithm, buf.pull_vector(2))


def push_certificate_verify(buf: Buffer, msg: CertificateVerify) -> None:
    buf.push_uint16(msg.algorithm)
    buf.push_vector(2, msg.signature)


@dataclass(frozen=True, slots=True)
class Finished:
    """RFC 8446 §4.4.4: ``opaque verify_data[Hash.length]``."""

    verify_data: bytes


def pull_finished(buf: Buffer, length: int | None = None) -> Finished:
    """Read `length` bytes of verify_data, or the rest of the body when None (the caller
    then compares with Hash.length: a mismatch is decode_error)."""
    if length is None:
        length = buf.remaining
    return Finished(buf.pull_bytes(length))


def push_finished(buf: Buffer, msg: Finished) -> None:
    buf.push_bytes(msg.verify_data)


# -- post-handshake messages ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NewSessionTicket(_HasExtensions):
    """RFC 8446 §4.6.1."""

    ticket_lifetime: int
    ticket_age_add: int
    ticket_nonce: bytes
    ticket: bytes
    extensions: Extensions = ()


def pull_new_session_ticket(buf: Buffer) -> NewSessionTicket:
    lifetime = buf.pull_uint32()
    age_add = buf.pull_uint32()
    nonce = buf.pull_vector(1)
    ticket = buf.pull_vector(2)
    if not ticket:
        raise DecodeError("empty ticket")  # opaque ticket<1..2^16-1>
    return NewSessionTicket(lifetime, age_add, nonce, ticket, pull_extensions(buf))


def push_new_session_ticket(buf: Buffer, msg: NewSessionTicket) -> None:
    buf.push_uint32(msg.ticket_lifetime)
    buf.push_uint32(msg.ticket_age_add)
    buf.push_vector(1, msg.ticket_nonce)
    buf.push_vector(2, msg.ticket)
    push_extensions(buf, msg.extensions)


@dataclass(frozen=True, slots=True)
class KeyUpdate:
    """RFC 8446 §4.6.3; values other than 0/1 are the caller's illegal_parameter."""

    request_update: int


def pull_key_update(buf: Buffer) -> KeyUpdate:
    return KeyUpdate(buf.pull_uint8())


def push_key_update(buf: Buffer, msg: KeyUpdate) -> None:
    buf.push_uint8(msg.request_update)


@dataclass(frozen=True, slots=True)
class RequestConnectionId:
    """RFC 9147 §9: ``uint8 num_cids``."""

    num_cids: int


def pull_request_connection_id(buf: Buffer) -> RequestConnectionId:
    return RequestConnectionId(buf.pull_uint8())


def push_request_connection_id(buf: Buffer, msg: RequestConnectionId) -> None:
    buf.push_uint8(msg.num_cids)


@dataclass(frozen=True, slots=True)
class NewConnectionId:
    """RFC 9147 §9: ``ConnectionId cids<0..2^16-1>; ConnectionIdUsage usage``."""

    cids: tuple[bytes, ...]
    usage: int  # cid_immediate(0), cid_spare(1)


def _pull_cid(buf: Buffer) -> bytes:
    return buf.pull_vector(1)


def _push_cid(buf: Buffer, cid: bytes) -> None:
    buf.push_vector(1, cid)


def pull_new_connection_id(buf: Buffer) -> NewConnectionId:
    cids = tuple(buf.pull_list(2, _pull_cid))
    return NewConnectionId(cids, buf.pull_uint8())


def push_new_connection_id(buf: Buffer, msg: NewConnectionId) -> None:
    buf.push_list(2, _push_cid, msg.cids)
    buf.push_uint8(msg.usage)


# -- dispatch --------------------------------------------------------------------------------------

HandshakeMessage: TypeAlias = (
    ClientHello
    | ServerHello
    | EncryptedExtensions
    | CertificateRequest
    | Certificate
    | CertificateVerify
    | Finished
    | NewSessionTicket
    | KeyUpdate
    | RequestConnectionId
    | NewConnectionId
)

_PULLERS: dict[int, Callable[[Buffer], HandshakeMessage]] = {
    HandshakeType.client_hello: pull_client_hello,
    HandshakeType.server_hello: pull_server_hello,
    HandshakeType.encrypted_extensions: pull_encrypted_extensions,
    HandshakeType.certificate_request: pull_certificate_request,
    HandshakeType.certificate: pull_certificate,
    HandshakeType.certificate_verify: pull_certificate_verify,
    HandshakeType.finished: pull_finished,
    HandshakeType.new_session_ticket: pull_new_session_ticket,
    HandshakeType.key_update: pull_key_update,
    HandshakeType.request_connection_id: pull_request_connection_id,
    HandshakeType.new_connection_id: pull_new_connection_id,
}

# Keyed by class: the message's type and its body writer.
_PUSHERS: dict[type, tuple[HandshakeType, Callable[[Buffer, Any], None]]] = {
    ClientHello: (HandshakeType.client_hello, push_client_hello),
    ServerHello: (HandshakeType.server_hello, push_server_hello),
    EncryptedExtensions: (HandshakeType.encrypted_extensions, push_encrypted_extensions),
    CertificateRequest: (HandshakeType.certificate_request, push_certificate_request),
    Certificate: (HandshakeType.certificate, push_certificate),
    CertificateVerify: (HandshakeType.certificate_verify, push_certificate_verify),
    Finished: (HandshakeType.finished, push_finished),
    NewSessionTicket: (HandshakeType.new_session_ticket, push_new_session_ticket),
    KeyUpdate: (HandshakeType.key_update, push_key_update),
    RequestConnectionId: (HandshakeType.request_connection_id, push_request_connection_id),
    NewConnectionId: (HandshakeType.new_connection_id, push_new_connection_id),
}


def pull_message(msg_type: int, body: bytes | memoryview) -> HandshakeMessage:
    """Decode a whole message body of `msg_type`.

    Raises ``UnexpectedHandshakeType`` (a ``DecodeError``) for types DTLS 1.3 does not
    carry (end_of_early_data is not used, RFC 9147 §5.6; message_hash is never sent)
    and ``DecodeError`` for any malformed body, including trailing bytes.
    """
    pull = _PULLERS.get(msg_type)
    if pull is None:
        raise UnexpectedHandshakeType(f"handshake type {msg_type} not expected")
    buf = Buffer(body)
    try:
        msg = pull(buf)
        buf.expect_end()
    finally:
        buf.close()
    return msg


def push_message(msg: HandshakeMessage) -> tuple[HandshakeType, bytes]:
    """Encode a message: its type and its body (without any header)."""
    msg_type, push = _PUSHERS[type(msg)]
    buf = Buffer(capacity=256)
    try:
        push(buf, msg)
        return msg_type, buf.data
    finally:
        buf.close()


def encode_transcript_message(msg: HandshakeMessage) -> bytes:
    """The message as the transcript hashes it: 4-byte TLS header + body."""
    msg_type, body = push_message(msg)
    return transcript_header(msg_type, len(body)) + body


# -- PSK binders (RFC 8446 §4.2.11.2) ---------------------------------------------------------


def _offered_psks(msg: ClientHello) -> OfferedPsks:
    # "The "pre_shared_key" extension MUST be the last extension in the ClientHello"
    # (§4.2.11); the caller answers a DecodeError here with illegal_parameter.
    if not msg.extensions or msg.extensions[-1].type != ExtensionType.pre_shared_key:
        raise DecodeError("pre_shared_key is not the last ClientHello extension")
    return decode(msg.extensions[-1].data, pull_pre_shared_key_client)


def binder_prefix(msg: ClientHello, *, dtls: bool = True) -> bytes:
    """The ClientHello as the transcript hashes it (4-byte header, full length) cut before
    the binders list: what each binder's Transcript-Hash covers after any earlier messages.
    """
    offered = _offered_psks(msg)
    buf = Buffer(capacity=512)
    try:
        push_client_hello(buf, msg, dtls=dtls)
        body = buf.data
    finally:
        buf.close()
    whole = transcript_header(HandshakeType.client_hello, len(body)) + body
    return whole[: -binders_length(len(b) for b in offered.binders)]


def replace_binders(msg: ClientHello, binders: tuple[bytes, ...]) -> ClientHello:
    """The same ClientHello with its PSK binders replaced by ones of the same lengths (a
    client computes them over ``binder_prefix`` of the ClientHello with placeholders)."""
    offered = _offered_psks(msg)
    if [len(b) for b in binders] != [len(b) for b in offered.binders]:
        raise ValueError("binders must keep their lengths")
    ext = Extension(
        ExtensionType.pre_shared_key,
        encode(push_pre_shared_key_client, OfferedPsks(offered.identities, binders)),
    )
    return ClientHello(
        random=msg.random,
        cipher_suites=msg.cipher_suites,
        extensions=(*msg.extensions[:-1], ext),
        legacy_session_id=msg.legacy_session_id,
        legacy_cookie=msg.legacy_cookie,
        legacy_compression_methods=msg.legacy_compression_methods,
        legacy_version=msg.legacy_version,
    )
