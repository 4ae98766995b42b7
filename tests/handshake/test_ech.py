"""Encrypted Client Hello codecs (RFC 9849): ECHConfigList, the extension, the inner
ClientHello's encoding and ech_outer_extensions expansion, the confirmations."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from dtls13._fast import DecodeError
from dtls13.alerts import DecodeErrorAlert, IllegalParameter
from dtls13.handshake.constants import ExtensionType
from dtls13.handshake.ech import (
    ECH_INNER_MARKER,
    EchCipherSuite,
    EchConfig,
    EchOuter,
    accept_confirmation,
    client_hello_outer_aad,
    decode_client_hello_inner,
    encode_client_hello_inner,
    encode_ech_config,
    hrr_accept_confirmation,
    pull_ech_client_hello,
    pull_ech_config_list,
    push_ech_config_list,
    push_ech_outer,
)
from dtls13.handshake.extensions import Extension
from dtls13.handshake.hpke import AeadId, KdfId, KemId
from dtls13.handshake.messages import ClientHello

SUITE = EchCipherSuite(KdfId.HKDF_SHA256, AeadId.AES_128_GCM)
DTLS13_VERSIONS = b"\x02\xfe\xfc"


def _config(config_id: int = 7, name: bytes = b"public.example") -> EchConfig:
    return encode_ech_config(
        config_id,
        KemId.DHKEM_X25519_HKDF_SHA256,
        bytes(range(32)),
        [SUITE],
        name,
        maximum_name_length=64,
        extensions=[(0x1234, b"x")],
    )


def test_config_list_round_trips() -> None:
    a, b = _config(1), _config(2, b"other.example")
    configs = pull_ech_config_list(push_ech_config_list([a, b]))
    assert configs == (a, b)
    assert configs[0].public_name == b"public.example"
    assert configs[0].cipher_suites == (SUITE,)
    assert configs[0].extensions == ((0x1234, b"x"),)
    assert configs[0].hpke_info == b"tls ech\x00" + a.encoded
    assert a.encoded[:2] == b"\xfe\x0d"


def test_configs_of_another_version_are_skipped() -> None:
    a = _config(1)
    unknown = b"\xfe\x0c\x00\x03abc"
    data = push_ech_config_list([a])
    body = unknown + data[2:]
    assert pull_ech_config_list(len(body).to_bytes(2, "big") + body) == (a,)


def _trailing_byte() -> bytes:
    return push_ech_config_list([_config()]) + b"\x00"


def _empty_public_name() -> bytes:
    good = _config(name=b"n").encoded
    contents = good[4:].replace(b"\x01n", b"\x00", 1)
    config = good[:2] + len(contents).to_bytes(2, "big") + contents
    return len(config).to_bytes(2, "big") + config


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00\x00",  # empty list
        b"\x00\x05\xfe\x0d\x00",  # truncated
        b"\x00\x04\xfe\x0d\x00\x00",  # empty contents
        b"\x00\x02\xfe\x0d",  # no length
        _trailing_byte(),
        _empty_public_name(),
    ],
    ids=["nothing", "empty", "truncated", "empty-contents", "no-length", "trailing", "name"],
)
def test_malformed_config_lists_are_decode_errors(data: bytes) -> None:
    with pytest.raises(DecodeError):
        pull_ech_config_list(data)


def test_encode_config_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        encode_ech_config(256, 0x20, bytes(32), [SUITE], b"x")
    with pytest.raises(ValueError):
        encode_ech_config(1, 0x20, bytes(32), [SUITE], b"")
    with pytest.raises(ValueError):
        encode_ech_config(1, 0x20, bytes(32), [], b"x")
    with pytest.raises(ValueError):
        push_ech_config_list([])


def test_extension_codec_round_trips_and_knows_the_inner_marker() -> None:
    outer = EchOuter(SUITE, 9, b"e" * 32, b"payload")
    assert pull_ech_client_hello(push_ech_outer(outer)) == outer
    assert pull_ech_client_hello(ECH_INNER_MARKER) is None
    for bad in (b"", b"\x02", b"\x01\x00", push_ech_outer(outer) + b"\x00"):
        with pytest.raises(DecodeError):
            pull_ech_client_hello(bad)
    with pytest.raises(DecodeError):  # empty payload
        pull_ech_client_hello(push_ech_outer(EchOuter(SUITE, 9, b"", b"")))


def _outer(*extensions: Extension) -> ClientHello:
    return ClientHello(
        random=b"O" * 32,
        cipher_suites=(0x1301,),
        extensions=extensions,
        legacy_session_id=b"sid",
    )


def _inner(*extensions: Extension) -> ClientHello:
    base = (
        Extension(ExtensionType.supported_versions, DTLS13_VERSIONS),
        Extension(ExtensionType.encrypted_client_hello, ECH_INNER_MARKER),
    )
    return ClientHello(random=b"I" * 32, cipher_suites=(0x1301,), extensions=base + extensions)


def test_outer_aad_zeroes_only_the_payload() -> None:
    ech = EchOuter(SUITE, 1, b"k" * 32, b"\xaa" * 20)
    outer = _outer(
        Extension(ExtensionType.server_name, b"n"),
        Extension(ExtensionType.encrypted_client_hello, push_ech_outer(ech)),
    )
    aad = client_hello_outer_aad(outer, ech)
    assert b"\xaa" not in aad
    assert aad.endswith(b"k" * 32 + b"\x00\x14" + bytes(20))
    assert b"sid" in aad and b"O" * 32 in aad


def test_inner_round_trips_through_its_encoding_with_compression_and_padding() -> None:
    groups = Extension(ExtensionType.supported_groups, b"\x00\x02\x00\x1d")
    share = Extension(ExtensionType.key_share, b"\x00\x00")
    alpn = Extension(ExtensionType.application_layer_protocol_negotiation, b"\x00\x03\x02h2")
    inner = _inner(groups, alpn, share)
    outer = _outer(groups, Extension(ExtensionType.server_name, b"x"), share)
    encoded = encode_client_hello_inner(
        inner, compressed=(ExtensionType.supported_groups, ExtensionType.key_share), padding=9
    )
    assert encoded.endswith(bytes(9))
    decoded = decode_client_hello_inner(encoded, outer)
    # The session id comes from the outer; ech_outer_extensions expands in place.
    assert decoded.legacy_session_id == b"sid"
    assert [e.type for e in decoded.extensions] == [
        ExtensionType.supported_versions,
        ExtensionType.encrypted_client_hello,
        ExtensionType.supported_groups,
        ExtensionType.key_share,
        ExtensionType.application_layer_protocol_negotiation,
    ]


def _with_outer_extensions(types: list[int]) -> bytes:
    body = b"".join(t.to_bytes(2, "big") for t in types)
    inner = _inner(Extension(ExtensionType.ech_outer_extensions, bytes((len(body),)) + body))
    return encode_client_hello_inner(inner)


A, B, C = ExtensionType.supported_groups, ExtensionType.key_share, ExtensionType.server_name
OUTER_ABC = _outer(Extension(A, b"a"), Extension(C, b"c"), Extension(B, b"b"))


def test_outer_extensions_may_interleave_with_others() -> None:
    decoded = decode_client_hello_inner(_with_outer_extensions([A, B]), OUTER_ABC)
    assert decoded.extension(A) == b"a" and decoded.extension(B) == b"b"
    assert decoded.extension(C) is None


@pytest.mark.parametrize(
    "types",
    [[A, A], [B, A], [ExtensionType.encrypted_client_hello], [ExtensionType.cookie]],
    ids=["duplicate", "wrong-order", "self-reference", "missing"],
)
def test_bad_outer_extensions_are_illegal_parameter(types: list[int]) -> None:
    with pytest.raises(IllegalParameter):
        decode_client_hello_inner(_with_outer_extensions(types), OUTER_ABC)


def test_outer_extensions_naming_one_the_inner_also_has_is_illegal_parameter() -> None:
    body = A.to_bytes(2, "big")
    inner = _inner(
        Extension(A, b"mine"), Extension(ExtensionType.ech_outer_extensions, b"\x02" + body)
    )
    with pytest.raises(IllegalParameter):
        decode_client_hello_inner(encode_client_hello_inner(inner), OUTER_ABC)


@pytest.mark.parametrize("data", [b"\x00", b"\x03\x00\x0a\x00", b"\x02\x00"])
def test_malformed_outer_extensions_are_decode_errors(data: bytes) -> None:
    inner = _inner(Extension(ExtensionType.ech_outer_extensions, data))
    with pytest.raises(DecodeErrorAlert):
        decode_client_hello_inner(encode_client_hello_inner(inner), OUTER_ABC)


def test_nonzero_padding_is_illegal_parameter() -> None:
    with pytest.raises(IllegalParameter):
        decode_client_hello_inner(encode_client_hello_inner(_inner()) + b"\x00\x01", OUTER_ABC)


def test_garbage_and_a_session_id_are_decode_errors() -> None:
    with pytest.raises(DecodeErrorAlert):
        decode_client_hello_inner(b"\xfe\xfd" + bytes(10), OUTER_ABC)
    encoded = bytearray(encode_client_hello_inner(_inner()))
    # legacy_session_id is the byte after version and random: give it one byte.
    with_sid = bytes(encoded[:34]) + b"\x01x" + bytes(encoded[35:])
    with pytest.raises(DecodeErrorAlert):
        decode_client_hello_inner(with_sid, OUTER_ABC)


def test_inner_without_the_marker_or_offering_dtls12_is_illegal_parameter() -> None:
    no_marker = ClientHello(
        random=b"I" * 32,
        cipher_suites=(0x1301,),
        extensions=(Extension(ExtensionType.supported_versions, DTLS13_VERSIONS),),
    )
    with pytest.raises(IllegalParameter):
        decode_client_hello_inner(encode_client_hello_inner(no_marker), OUTER_ABC)
    dtls12 = ClientHello(
        random=b"I" * 32,
        cipher_suites=(0x1301,),
        extensions=(
            Extension(ExtensionType.supported_versions, b"\x04\xfe\xfc\xfe\xfd"),
            Extension(ExtensionType.encrypted_client_hello, ECH_INNER_MARKER),
        ),
    )
    with pytest.raises(IllegalParameter):
        decode_client_hello_inner(encode_client_hello_inner(dtls12), OUTER_ABC)


def _expand_label(secret: bytes, label: bytes, context: bytes) -> bytes:
    full = b"dtls13" + label
    info = b"\x00\x08" + bytes((len(full),)) + full + bytes((len(context),)) + context
    return hmac.digest(secret, info + b"\x01", "sha256")[:8]


def test_confirmations_follow_the_spec_formula() -> None:
    random, transcript = b"r" * 32, hashlib.sha256(b"t").digest()
    secret = hmac.digest(bytes(32), random, "sha256")  # HKDF-Extract(0, inner random)
    assert accept_confirmation("sha256", random, transcript) == _expand_label(
        secret, b"ech accept confirmation", transcript
    )
    assert hrr_accept_confirmation("sha256", random, transcript) == _expand_label(
        secret, b"hrr ech accept confirmation", transcript
    )
