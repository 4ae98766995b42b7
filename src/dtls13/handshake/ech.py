"""Encrypted Client Hello (RFC 9849): codecs and pure computations, no connection state.

ECHConfigList (§4), the encrypted_client_hello extension (§5), ClientHelloOuterAAD (§5.2),
EncodedClientHelloInner and its ech_outer_extensions expansion (§5.1), and the
acceptance confirmations (§7.2, §7.2.1). Decoders raise ``DecodeError`` or an ``Alert``.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from dtls13._fast import Buffer, DecodeError
from dtls13.alerts import DecodeErrorAlert, IllegalParameter
from dtls13.crypto.hkdf import DTLS13_PREFIX, hkdf_expand_label, hkdf_extract
from dtls13.events import EchStatus as EchStatus

from .constants import ExtensionType
from .extensions import Extension, pull_extension
from .hpke import AeadId, KdfId, KemId
from .messages import ClientHello, pull_client_hello, push_client_hello

ECH_VERSION = 0xFE0D
ECH_INFO_PREFIX = b"tls ech\x00"  # HPKE info = this + the ECHConfig as on the wire (§6.1)
CONFIRMATION_LENGTH = 8

# Versions older than (D)TLS 1.3 a ClientHelloInner must not offer (§7.1).
_OLD_VERSIONS = frozenset((0x0300, 0x0301, 0x0302, 0x0303, 0xFEFF, 0xFEFD))


class EchClientHelloType(enum.IntEnum):
    OUTER = 0
    INNER = 1


@dataclass(frozen=True, slots=True)
class EchCipherSuite:
    """HpkeSymmetricCipherSuite: an HPKE KDF and AEAD (RFC 9849 §4)."""

    kdf: int
    aead: int

    @property
    def supported(self) -> bool:
        return self.kdf in KdfId._value2member_map_ and self.aead in AeadId._value2member_map_


@dataclass(frozen=True, slots=True)
class EchConfig:
    """One ECHConfig of version 0xfe0d; ``encoded`` is it as on the wire (version first)."""

    config_id: int
    kem_id: int
    public_key: bytes
    cipher_suites: tuple[EchCipherSuite, ...]
    maximum_name_length: int
    public_name: bytes
    extensions: tuple[tuple[int, bytes], ...]
    encoded: bytes

    @property
    def hpke_info(self) -> bytes:
        return ECH_INFO_PREFIX + self.encoded


def _pull_suite(buf: Buffer) -> EchCipherSuite:
    return EchCipherSuite(buf.pull_uint16(), buf.pull_uint16())


def _push_suite(buf: Buffer, suite: EchCipherSuite) -> None:
    buf.push_uint16(suite.kdf)
    buf.push_uint16(suite.aead)


def _pull_config_contents(data: bytes, encoded: bytes) -> EchConfig:
    with Buffer(data) as buf:
        config_id = buf.pull_uint8()
        kem_id = buf.pull_uint16()
        public_key = buf.pull_vector(2)
        suites = tuple(buf.pull_list(2, _pull_suite))
        maximum_name_length = buf.pull_uint8()
        public_name = buf.pull_vector(1)
        extensions = tuple((e.type, e.data) for e in buf.pull_list(2, pull_extension))
        buf.expect_end()
    if not public_key or not suites or not public_name:
        raise DecodeError("ECHConfig with an empty public_key, cipher_suites or public_name")
    return EchConfig(
        config_id,
        kem_id,
        public_key,
        suites,
        maximum_name_length,
        public_name,
        extensions,
        encoded,
    )


def pull_ech_config_list(data: bytes) -> tuple[EchConfig, ...]:
    """ECHConfigList (§4); configs of another version are skipped, malformed is DecodeError."""
    configs: list[EchConfig] = []
    with Buffer(data) as outer:
        body = outer.pull_vector(2)
        outer.expect_end()
    if not body:
        raise DecodeError("empty ECHConfigList")
    with Buffer(body) as buf:
        while not buf.eof():
            start = buf.tell()
            version = buf.pull_uint16()
            contents = buf.pull_vector(2)
            if version == ECH_VERSION:
                encoded = buf.data_slice(start, buf.tell())
                configs.append(_pull_config_contents(contents, encoded))
    return tuple(configs)


def _push_config_extension(buf: Buffer, extension: tuple[int, bytes]) -> None:
    buf.push_uint16(extension[0])
    buf.push_vector(2, extension[1])


def encode_ech_config(
    config_id: int,
    kem_id: int,
    public_key: bytes,
    cipher_suites: Sequence[EchCipherSuite],
    public_name: bytes,
    *,
    maximum_name_length: int = 0,
    extensions: Sequence[tuple[int, bytes]] = (),
) -> EchConfig:
    """Build an ECHConfig (version 0xfe0d) and its wire form."""
    if not 0 <= config_id <= 255 or not 0 <= maximum_name_length <= 255:
        raise ValueError("config_id and maximum_name_length must fit in one byte")
    if not 1 <= len(public_name) <= 255:
        raise ValueError("public_name must be 1 to 255 bytes")
    if not cipher_suites or not public_key:
        raise ValueError("an ECHConfig needs a public key and at least one cipher suite")
    with Buffer(capacity=128 + len(public_key) + len(public_name)) as buf:
        buf.push_uint16(ECH_VERSION)
        with buf.push_block(2):
            buf.push_uint8(config_id)
            buf.push_uint16(kem_id)
            buf.push_vector(2, public_key)
            buf.push_list(2, _push_suite, cipher_suites)
            buf.push_uint8(maximum_name_length)
            buf.push_vector(1, public_name)
            buf.push_list(2, _push_config_extension, extensions)
        encoded = buf.data
    return EchConfig(
        config_id,
        kem_id,
        public_key,
        tuple(cipher_suites),
        maximum_name_length,
        public_name,
        tuple(extensions),
        encoded,
    )


def push_ech_config_list(configs: Iterable[EchConfig]) -> bytes:
    """The ECHConfigList carrying `configs` (their ``encoded`` forms, in order)."""
    body = b"".join(config.encoded for config in configs)
    if not body or len(body) > 0xFFFF:
        raise ValueError("an ECHConfigList holds 1 to 65535 bytes of configs")
    return len(body).to_bytes(2, "big") + body


# -- the encrypted_client_hello extension ------------------------------------------------


@dataclass(frozen=True, slots=True)
class EchOuter:
    """The outer variant of the encrypted_client_hello extension (§5)."""

    suite: EchCipherSuite
    config_id: int
    enc: bytes
    payload: bytes


def pull_ech_client_hello(data: bytes) -> EchOuter | None:
    """The extension body of a ClientHello: an EchOuter, or None for the INNER marker."""
    with Buffer(data) as buf:
        kind = buf.pull_uint8()
        if kind == EchClientHelloType.INNER:
            buf.expect_end()
            return None
        if kind != EchClientHelloType.OUTER:
            raise DecodeError("unknown ECHClientHelloType")
        suite = _pull_suite(buf)
        config_id = buf.pull_uint8()
        enc = buf.pull_vector(2)
        payload = buf.pull_vector(2)
        buf.expect_end()
    if not payload:
        raise DecodeError("empty ECH payload")
    return EchOuter(suite, config_id, enc, payload)


def push_ech_outer(outer: EchOuter) -> bytes:
    with Buffer(capacity=16 + len(outer.enc) + len(outer.payload)) as buf:
        buf.push_uint8(EchClientHelloType.OUTER)
        _push_suite(buf, outer.suite)
        buf.push_uint8(outer.config_id)
        buf.push_vector(2, outer.enc)
        buf.push_vector(2, outer.payload)
        return buf.data


ECH_INNER_MARKER = bytes((EchClientHelloType.INNER,))


def _encode_client_hello(hello: ClientHello) -> bytes:
    with Buffer(capacity=512) as buf:
        push_client_hello(buf, hello)
        return buf.data


def client_hello_outer_aad(outer: ClientHello, ech: EchOuter) -> bytes:
    """ClientHelloOuterAAD (§5.2): the outer ClientHello body with the payload zeroed."""
    zeroed = push_ech_outer(EchOuter(ech.suite, ech.config_id, ech.enc, bytes(len(ech.payload))))
    extensions = tuple(
        Extension(e.type, zeroed) if e.type == ExtensionType.encrypted_client_hello else e
        for e in outer.extensions
    )
    return _encode_client_hello(_replace_extensions(outer, extensions))


def _replace_extensions(hello: ClientHello, extensions: tuple[Extension, ...]) -> ClientHello:
    return ClientHello(
        random=hello.random,
        cipher_suites=hello.cipher_suites,
        extensions=extensions,
        legacy_session_id=hello.legacy_session_id,
        legacy_cookie=hello.legacy_cookie,
        legacy_compression_methods=hello.legacy_compression_methods,
        legacy_version=hello.legacy_version,
    )


# -- EncodedClientHelloInner ---------------------------------------------------------------


def encode_client_hello_inner(
    inner: ClientHello, compressed: Sequence[int] = (), padding: int = 0
) -> bytes:
    """EncodedClientHelloInner (§5.1): `inner` without legacy_session_id, the extensions in
    `compressed` replaced by one ech_outer_extensions (where the first of them stood, in
    the order they appear in `inner`), then `padding` zero bytes."""
    extensions: list[Extension] = []
    referenced = [e.type for e in inner.extensions if e.type in compressed]
    for ext in inner.extensions:
        if ext.type not in compressed:
            extensions.append(ext)
        elif ext.type == referenced[0]:
            body = b"".join(t.to_bytes(2, "big") for t in referenced)
            extensions.append(
                Extension(ExtensionType.ech_outer_extensions, bytes((len(body),)) + body)
            )
    encoded = _replace_extensions(inner, tuple(extensions))
    encoded = ClientHello(
        random=encoded.random,
        cipher_suites=encoded.cipher_suites,
        extensions=encoded.extensions,
        legacy_cookie=encoded.legacy_cookie,
        legacy_compression_methods=encoded.legacy_compression_methods,
        legacy_version=encoded.legacy_version,
    )
    return _encode_client_hello(encoded) + bytes(padding)


def _expand_outer_extensions(data: bytes, outer: ClientHello) -> list[Extension]:
    """The outer extensions an ech_outer_extensions names (§5.1): each must be in the outer
    ClientHello, in the same relative order, never encrypted_client_hello."""
    if len(data) < 3 or data[0] != len(data) - 1 or data[0] % 2:
        raise DecodeErrorAlert("malformed ech_outer_extensions")
    wanted = [int.from_bytes(data[i : i + 2], "big") for i in range(1, len(data), 2)]
    expanded: list[Extension] = []
    cursor = iter(outer.extensions)
    for want in wanted:
        if want == ExtensionType.encrypted_client_hello:
            raise IllegalParameter("ech_outer_extensions names encrypted_client_hello")
        for ext in cursor:
            if ext.type == want:
                expanded.append(ext)
                break
        else:  # absent, repeated, or out of order: the cursor ran off the end
            raise IllegalParameter("ech_outer_extensions names a missing or misordered one")
    return expanded


def decode_client_hello_inner(encoded: bytes, outer: ClientHello) -> ClientHello:
    """ClientHelloInner from the decrypted EncodedClientHelloInner and ClientHelloOuter.

    Raises DecodeErrorAlert or IllegalParameter (§5.1, §7.1); the result carries the INNER
    marker and offers only (D)TLS 1.3."""
    try:
        with Buffer(encoded) as buf:
            inner = pull_client_hello(buf)
            padding = buf.pull_bytes(buf.remaining)
    except DecodeError as exc:  # includes duplicate extensions
        raise DecodeErrorAlert(f"malformed EncodedClientHelloInner: {exc}") from None
    if padding.strip(b"\x00"):
        raise IllegalParameter("EncodedClientHelloInner padding is not zeros")
    if not inner.extensions or inner.legacy_session_id:
        raise DecodeErrorAlert("EncodedClientHelloInner with a session id or no extensions")
    extensions: list[Extension] = []
    for ext in inner.extensions:
        if ext.type == ExtensionType.ech_outer_extensions:
            extensions.extend(_expand_outer_extensions(ext.data, outer))
        else:
            extensions.append(ext)
    if len({e.type for e in extensions}) != len(extensions):
        raise IllegalParameter("ClientHelloInner repeats an extension")
    hello = ClientHello(
        random=inner.random,
        cipher_suites=inner.cipher_suites,
        extensions=tuple(extensions),
        legacy_session_id=outer.legacy_session_id,
        legacy_cookie=inner.legacy_cookie,
        legacy_compression_methods=inner.legacy_compression_methods,
        legacy_version=inner.legacy_version,
    )
    _check_inner(hello)
    return hello


def _check_inner(hello: ClientHello) -> None:
    """§7.1: the inner carries the INNER marker and offers no version older than 1.3."""
    versions = hello.extension(ExtensionType.supported_versions)
    if hello.extension(ExtensionType.encrypted_client_hello) != ECH_INNER_MARKER:
        raise IllegalParameter("ClientHelloInner without the inner encrypted_client_hello")
    if versions is None:
        raise IllegalParameter("ClientHelloInner without supported_versions")
    if len(versions) < 3 or versions[0] != len(versions) - 1 or versions[0] % 2:
        raise DecodeErrorAlert("malformed supported_versions")
    offered = {int.from_bytes(versions[i : i + 2], "big") for i in range(1, len(versions), 2)}
    if offered & _OLD_VERSIONS:
        raise IllegalParameter("ClientHelloInner offers a version older than (D)TLS 1.3")


# -- acceptance confirmation ----------------------------------------------------------------


def _confirmation(
    hash_name: str, inner_random: bytes, transcript_hash: bytes, label: bytes, prefix: bytes
) -> bytes:
    zeros = bytes(hashlib.new(hash_name).digest_size)
    secret = hkdf_extract(hash_name, zeros, inner_random)
    return hkdf_expand_label(hash_name, secret, label, transcript_hash, CONFIRMATION_LENGTH, prefix)


def accept_confirmation(
    hash_name: str, inner_random: bytes, transcript_hash: bytes, prefix: bytes = DTLS13_PREFIX
) -> bytes:
    """§7.2: the 8 bytes closing ServerHello.random when ECH is accepted.

    `transcript_hash`: Transcript-Hash(ClientHelloInner..ServerHello) with the last 8
    bytes of ServerHello.random zeroed."""
    return _confirmation(
        hash_name, inner_random, transcript_hash, b"ech accept confirmation", prefix
    )


def hrr_accept_confirmation(
    hash_name: str, inner_random: bytes, transcript_hash: bytes, prefix: bytes = DTLS13_PREFIX
) -> bytes:
    """§7.2.1: the 8 bytes of the HelloRetryRequest's encrypted_client_hello extension.

    `transcript_hash`: Transcript-Hash(message_hash(ClientHelloInner1), HRR) with the
    extension's 8 bytes zeroed."""
    return _confirmation(
        hash_name, inner_random, transcript_hash, b"hrr ech accept confirmation", prefix
    )


def supported_suite(config: EchConfig, suite: EchCipherSuite) -> bool:
    """Whether `suite` is one `config` lists and this library implements."""
    return (
        config.kem_id == KemId.DHKEM_X25519_HKDF_SHA256
        and suite in config.cipher_suites
        and suite.supported
    )
