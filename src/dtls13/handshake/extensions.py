"""TLS 1.3 extensions as DTLS 1.3 uses them (RFC 8446 §4.2, RFC 9147, RFC 9146, RFC 8449).

Messages carry extensions generically as ``Extension(type, data)`` tuples in wire order, so
unknown extensions survive a decode/encode round trip. The typed codecs below turn the
``data`` of one extension into a value and back: ``decode_x(data)`` / ``encode_x(value)``,
built on ``pull_x(buf)`` / ``push_x(buf, value)`` pairs. Decoders raise only ``DecodeError``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from dtls13._fast import Buffer, DecodeError

_T = TypeVar("_T")
_T_co = TypeVar("_T_co", covariant=True)


class DuplicateExtensionError(DecodeError):
    """An extension block carries two extensions of one type (RFC 8446 §4.2).

    A ``DecodeError`` so fuzzers see one error type; callers answer it with
    illegal_parameter.
    """


@dataclass(frozen=True, slots=True)
class Extension:
    """One extension: its type (an ``ExtensionType`` or an unknown int) and raw data."""

    type: int
    data: bytes


Extensions = tuple[Extension, ...]


def pull_extension(buf: Buffer) -> Extension:
    ext_type = buf.pull_uint16()
    return Extension(ext_type, buf.pull_vector(2))


def push_extension(buf: Buffer, ext: Extension) -> None:
    buf.push_uint16(ext.type)
    buf.push_vector(2, ext.data)


def pull_extensions(buf: Buffer) -> Extensions:
    """``Extension extensions<0..2^16-1>``; duplicates raise ``DuplicateExtensionError``."""
    # pull_extension inlined, and the extensions kept by type in wire order: no Python
    # call per extension (a ClientHello carries some ten).
    by_type: dict[int, Extension] = {}
    duplicate: int | None = None
    with buf.pull_block(2):
        while not buf.eof():
            ext_type = buf.pull_uint16()
            # Raised after the block: a malformed block is a plain DecodeError first.
            if duplicate is None and ext_type in by_type:
                duplicate = ext_type
            by_type[ext_type] = Extension(ext_type, buf.pull_vector(2))
    if duplicate is not None:
        raise DuplicateExtensionError(f"duplicate extension {duplicate}")
    return tuple(by_type.values())


def push_extensions(buf: Buffer, extensions: Iterable[Extension]) -> None:
    # push_extension inlined: no Python call per extension (this runs for every message).
    with buf.push_block(2):
        for ext in extensions:
            buf.push_uint16(ext.type)
            buf.push_vector(2, ext.data)


def find_extension(extensions: Iterable[Extension], ext_type: int) -> bytes | None:
    """The data of the extension of `ext_type`, or None when absent."""
    for ext in extensions:
        if ext.type == ext_type:
            return ext.data
    return None


def extension_types(extensions: Iterable[Extension]) -> list[int]:
    return [ext.type for ext in extensions]


class _Puller(Protocol[_T_co]):
    def __call__(self, buf: Buffer, /) -> _T_co: ...


def decode(data: bytes | memoryview, pull: _Puller[_T]) -> _T:
    """Decode a whole extension body with `pull`; trailing bytes are a ``DecodeError``."""
    buf = Buffer(data)
    try:
        value = pull(buf)
        buf.expect_end()
    finally:
        buf.close()
    return value


def encode(push: Callable[[Buffer, _T], object], value: _T) -> bytes:
    """An extension body written by `push`."""
    buf = Buffer(capacity=64)
    try:
        push(buf, value)
        return buf.data
    finally:
        buf.close()


def make_extension(ext_type: int, push: Callable[[Buffer, _T], object], value: _T) -> Extension:
    """``Extension(ext_type, encode(push, value))``."""
    return Extension(ext_type, encode(push, value))


def _pull_uint16_list(buf: Buffer, length_size: int, minimum: int) -> tuple[int, ...]:
    return buf.pull_uint16_list(length_size, minimum)


def _push_uint16_list(buf: Buffer, length_size: int, values: Sequence[int]) -> None:
    with buf.push_block(length_size):
        for value in values:
            buf.push_uint16(value)


# -- supported_versions (RFC 8446 §4.2.1) -----------------------------------------------


def pull_supported_versions_client(buf: Buffer) -> tuple[int, ...]:
    """ClientHello form: ``ProtocolVersion versions<2..254>``."""
    return _pull_uint16_list(buf, 1, 2)


def push_supported_versions_client(buf: Buffer, versions: Sequence[int]) -> None:
    _push_uint16_list(buf, 1, versions)


def pull_supported_versions_server(buf: Buffer) -> int:
    """ServerHello / HelloRetryRequest form: ``ProtocolVersion selected_version``."""
    return buf.pull_uint16()


def push_supported_versions_server(buf: Buffer, version: int) -> None:
    buf.push_uint16(version)


# -- key_share (RFC 8446 §4.2.8) --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KeyShareEntry:
    group: int
    key_exchange: bytes


def pull_key_share_entry(buf: Buffer) -> KeyShareEntry:
    group = buf.pull_uint16()
    key_exchange = buf.pull_vector(2)
    if not key_exchange:
        raise DecodeError("empty key_exchange")  # opaque key_exchange<1..2^16-1>
    return KeyShareEntry(group, key_exchange)


def push_key_share_entry(buf: Buffer, entry: KeyShareEntry) -> None:
    buf.push_uint16(entry.group)
    buf.push_vector(2, entry.key_exchange)


def pull_key_share_client(buf: Buffer) -> tuple[KeyShareEntry, ...]:
    """``KeyShareEntry client_shares<0..2^16-1>``; a repeated group is illegal (§4.2.8)."""
    entries = tuple(buf.pull_list(2, pull_key_share_entry))
    if len({e.group for e in entries}) != len(entries):
        raise DuplicateExtensionError("two key shares for one group")
    return entries


def push_key_share_client(buf: Buffer, entries: Sequence[KeyShareEntry]) -> None:
    buf.push_list(2, push_key_share_entry, entries)


pull_key_share_server = pull_key_share_entry
push_key_share_server = push_key_share_entry


def pull_key_share_hrr(buf: Buffer) -> int:
    """HelloRetryRequest form: ``NamedGroup selected_group``."""
    return buf.pull_uint16()


def push_key_share_hrr(buf: Buffer, group: int) -> None:
    buf.push_uint16(group)


# -- supported_groups (§4.2.7), signature_algorithms(_cert) (§4.2.3) ---------------------


def pull_supported_groups(buf: Buffer) -> tuple[int, ...]:
    """``NamedGroup named_group_list<2..2^16-1>``."""
    return _pull_uint16_list(buf, 2, 2)


def push_supported_groups(buf: Buffer, groups: Sequence[int]) -> None:
    _push_uint16_list(buf, 2, groups)


def pull_signature_algorithms(buf: Buffer) -> tuple[int, ...]:
    """``SignatureScheme supported_signature_algorithms<2..2^16-2>`` (also for _cert)."""
    return _pull_uint16_list(buf, 2, 2)


def push_signature_algorithms(buf: Buffer, schemes: Sequence[int]) -> None:
    _push_uint16_list(buf, 2, schemes)


# -- server_name (RFC 6066 §3) ----------------------------------------------------------

HOST_NAME_TYPE = 0


def pull_server_name(buf: Buffer) -> str | None:
    """The host_name of a ServerNameList, or None when it has none.

    Other name types are skipped; two host_names are an error ("MUST NOT contain more
    than one name of the same name_type").
    """
    host: str | None = None
    with buf.pull_block(2) as length:
        if length == 0:
            raise DecodeError("empty server_name_list")
        while not buf.eof():
            name_type = buf.pull_uint8()
            name = buf.pull_vector(2)
            if name_type != HOST_NAME_TYPE:
                continue
            if host is not None:
                raise DecodeError("two host_name entries")
            if not name:
                raise DecodeError("empty host_name")
            try:
                host = name.decode("ascii")
            except UnicodeDecodeError:
                raise DecodeError("host_name is not ASCII") from None
    return host


def push_server_name(buf: Buffer, host_name: str) -> None:
    with buf.push_block(2):
        buf.push_uint8(HOST_NAME_TYPE)
        buf.push_vector(2, host_name.encode("ascii"))


def pull_server_name_ack(buf: Buffer) -> None:
    """The server's answer in EncryptedExtensions: "extension_data" SHALL be empty."""
    if not buf.eof():
        raise DecodeError("server_name acknowledgement is not empty")


# -- certificate_authorities (RFC 8446 §4.2.4) -------------------------------------------


def _pull_distinguished_name(buf: Buffer) -> bytes:
    name = buf.pull_vector(2)
    if not name:
        raise DecodeError("empty DistinguishedName")  # opaque DistinguishedName<1..2^16-1>
    return name


def _push_distinguished_name(buf: Buffer, name: bytes) -> None:
    buf.push_vector(2, name)


def pull_certificate_authorities(buf: Buffer) -> tuple[bytes, ...]:
    """``DistinguishedName authorities<3..2^16-1>``: DER names, at least one."""
    names = tuple(buf.pull_list(2, _pull_distinguished_name))
    if not names:
        raise DecodeError("empty certificate_authorities")
    return names


def push_certificate_authorities(buf: Buffer, names: Sequence[bytes]) -> None:
    buf.push_list(2, _push_distinguished_name, names)


# -- application_layer_protocol_negotiation (RFC 7301 §3.1) ------------------------------


def _pull_protocol_name(buf: Buffer) -> bytes:
    name = buf.pull_vector(1)
    if not name:
        raise DecodeError("empty ALPN protocol name")
    return name


def _push_protocol_name(buf: Buffer, name: bytes) -> None:
    buf.push_vector(1, name)


def pull_alpn(buf: Buffer) -> tuple[bytes, ...]:
    """``ProtocolName protocol_name_list<2..2^16-1>`` (the server sends exactly one)."""
    names = tuple(buf.pull_list(2, _pull_protocol_name))
    if not names:
        raise DecodeError("empty ALPN list")
    return names


def push_alpn(buf: Buffer, names: Sequence[bytes]) -> None:
    buf.push_list(2, _push_protocol_name, names)


# -- cookie (§4.2.2) ---------------------------------------------------------------------


def pull_cookie(buf: Buffer) -> bytes:
    """``opaque cookie<1..2^16-1>``."""
    cookie = buf.pull_vector(2)
    if not cookie:
        raise DecodeError("empty cookie")
    return cookie


def push_cookie(buf: Buffer, cookie: bytes) -> None:
    buf.push_vector(2, cookie)


# -- record_size_limit (RFC 8449 §4) -----------------------------------------------------


def pull_record_size_limit(buf: Buffer) -> int:
    """``uint16 RecordSizeLimit``; values below 64 are the caller's illegal_parameter."""
    return buf.pull_uint16()


def push_record_size_limit(buf: Buffer, limit: int) -> None:
    buf.push_uint16(limit)


# -- early_data (§4.2.10) ---------------------------------------------------------------


def pull_early_data_ticket(buf: Buffer) -> int:
    """NewSessionTicket form: ``uint32 max_early_data_size``; elsewhere the data is empty."""
    return buf.pull_uint32()


def push_early_data_ticket(buf: Buffer, max_early_data_size: int) -> None:
    buf.push_uint32(max_early_data_size)


# -- psk_key_exchange_modes (§4.2.9) ----------------------------------------------------


def pull_psk_key_exchange_modes(buf: Buffer) -> tuple[int, ...]:
    """``PskKeyExchangeMode ke_modes<1..255>``."""
    modes = buf.pull_vector(1)
    if not modes:
        raise DecodeError("empty ke_modes")
    return tuple(modes)


def push_psk_key_exchange_modes(buf: Buffer, modes: Sequence[int]) -> None:
    buf.push_vector(1, bytes(modes))


# -- pre_shared_key (§4.2.11) -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PskIdentity:
    identity: bytes
    obfuscated_ticket_age: int


@dataclass(frozen=True, slots=True)
class OfferedPsks:
    identities: tuple[PskIdentity, ...]
    binders: tuple[bytes, ...]


def _pull_psk_identity(buf: Buffer) -> PskIdentity:
    identity = buf.pull_vector(2)
    if not identity:
        raise DecodeError("empty PSK identity")
    return PskIdentity(identity, buf.pull_uint32())


def _push_psk_identity(buf: Buffer, item: PskIdentity) -> None:
    buf.push_vector(2, item.identity)
    buf.push_uint32(item.obfuscated_ticket_age)


def _pull_binder(buf: Buffer) -> bytes:
    binder = buf.pull_vector(1)
    if len(binder) < 32:
        raise DecodeError("PSK binder shorter than 32 bytes")  # PskBinderEntry<32..255>
    return binder


def _push_binder(buf: Buffer, binder: bytes) -> None:
    buf.push_vector(1, binder)


def pull_pre_shared_key_client(buf: Buffer) -> OfferedPsks:
    """``OfferedPsks``: at least one identity and one binder. Whether there are as many
    binders as identities is for the server to check (illegal_parameter, as BoringSSL)."""
    identities = tuple(buf.pull_list(2, _pull_psk_identity))
    binders = tuple(buf.pull_list(2, _pull_binder))
    if not identities or not binders:
        raise DecodeError("no PSK identities or no binders")
    return OfferedPsks(identities, binders)


def push_pre_shared_key_client(buf: Buffer, offered: OfferedPsks) -> None:
    buf.push_list(2, _push_psk_identity, offered.identities)
    buf.push_list(2, _push_binder, offered.binders)


def binders_length(binder_lengths: Iterable[int]) -> int:
    """Bytes taken by the ``binders`` vector (length prefix included) at the end of a
    ClientHello whose binders have these lengths.

    RFC 8446 §4.2.11.2: the binder is computed over the ClientHello "up to and including
    the PreSharedKeyExtension.identities field", i.e. the whole message minus this many
    trailing bytes (pre_shared_key is the last extension).
    """
    return 2 + sum(1 + n for n in binder_lengths)


def pull_pre_shared_key_server(buf: Buffer) -> int:
    """ServerHello form: ``uint16 selected_identity``."""
    return buf.pull_uint16()


def push_pre_shared_key_server(buf: Buffer, selected_identity: int) -> None:
    buf.push_uint16(selected_identity)


# -- connection_id (RFC 9146 §3) --------------------------------------------------------


def pull_connection_id(buf: Buffer) -> bytes:
    """``opaque cid<0..2^8-1>``."""
    return buf.pull_vector(1)


def push_connection_id(buf: Buffer, cid: bytes) -> None:
    buf.push_vector(1, cid)
