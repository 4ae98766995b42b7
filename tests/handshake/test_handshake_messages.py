"""Handshake message and extension codecs: RFC 8448 bodies byte-exact, DTLS specifics, and
decoders that raise nothing but DecodeError on malformed input."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dtls13._fast import Buffer, DecodeError
from dtls13.handshake import extensions as ex
from dtls13.handshake.constants import (
    DTLS13_VERSION,
    ExtensionType,
    HandshakeType,
    NamedGroup,
    PskKeyExchangeMode,
    SignatureScheme,
)
from dtls13.handshake.extensions import Extension, KeyShareEntry, OfferedPsks, PskIdentity
from dtls13.handshake.messages import (
    HELLO_RETRY_REQUEST_RANDOM,
    Certificate,
    CertificateEntry,
    CertificateRequest,
    CertificateVerify,
    ClientHello,
    EncryptedExtensions,
    Finished,
    HandshakeHeader,
    KeyUpdate,
    NewConnectionId,
    NewSessionTicket,
    RequestConnectionId,
    ServerHello,
    UnexpectedHandshakeType,
    binder_prefix,
    encode_transcript_message,
    pull_client_hello,
    pull_handshake_header,
    pull_message,
    push_client_hello,
    push_handshake_header,
    push_message,
    replace_binders,
    transcript_header,
)
from dtls13.memory import PoolSet
from tests.handshake.test_key_schedule import message, trace


def _ch_tls(body: bytes) -> ClientHello:
    buf = Buffer(body)
    try:
        msg = pull_client_hello(buf, dtls=False)
        buf.expect_end()
    finally:
        buf.close()
    return msg


def _push_ch_tls(msg: ClientHello) -> bytes:
    buf = Buffer(capacity=64)
    try:
        push_client_hello(buf, msg, dtls=False)
        return buf.data
    finally:
        buf.close()


# -- RFC 8448 bodies ------------------------------------------------------------------------

RFC_MESSAGES = [
    (3, "server", "ServerHello", 0),
    (3, "server", "EncryptedExtensions", 0),
    (3, "server", "Certificate", 0),
    (3, "server", "CertificateVerify", 0),
    (3, "server", "Finished", 0),
    (3, "client", "Finished", 0),
    (3, "server", "NewSessionTicket", 0),
    (4, "server", "ServerHello", 0),
    (4, "server", "EncryptedExtensions", 0),
    (5, "server", "ServerHello", 0),
    (5, "server", "ServerHello", 1),
    (6, "server", "CertificateRequest", 0),
    (6, "client", "Certificate", 0),
    (6, "client", "CertificateVerify", 0),
]


@pytest.mark.parametrize(("section", "role", "name", "nth"), RFC_MESSAGES)
def test_rfc8448_bodies_round_trip(section: int, role: str, name: str, nth: int) -> None:
    msg_type, body = message(section, role, name, nth)
    msg = pull_message(msg_type, body)
    assert type(msg).__name__ == name
    assert push_message(msg) == (msg_type, body)
    assert encode_transcript_message(msg) == transcript_header(msg_type, len(body)) + body


def test_rfc8448_server_messages_fields() -> None:
    sh = pull_message(*message(3, "server", "ServerHello"))
    assert isinstance(sh, ServerHello)
    assert sh.cipher_suite == 0x1301 and not sh.is_hello_retry_request
    assert sh.legacy_version == 0x0303  # TLS trace; DTLS would carry 0xfefd
    data = sh.extension(ExtensionType.key_share)
    assert data is not None
    share = ex.decode(data, ex.pull_key_share_server)
    assert share.group == NamedGroup.x25519
    assert share.key_exchange == trace(3, "server", "create an ephemeral x25519", "public key")
    sv = sh.extension(ExtensionType.supported_versions)
    assert sv is not None and ex.decode(sv, ex.pull_supported_versions_server) == 0x0304

    hrr = pull_message(*message(5, "server", "ServerHello", 0))
    assert isinstance(hrr, ServerHello) and hrr.is_hello_retry_request
    assert hrr.random == HELLO_RETRY_REQUEST_RANDOM
    ks = hrr.extension(ExtensionType.key_share)
    assert ks is not None and ex.decode(ks, ex.pull_key_share_hrr) == NamedGroup.secp256r1
    cookie = hrr.extension(ExtensionType.cookie)
    assert cookie is not None and len(ex.decode(cookie, ex.pull_cookie)) > 0

    cert = pull_message(*message(3, "server", "Certificate"))
    assert isinstance(cert, Certificate)
    assert cert.certificate_request_context == b"" and len(cert.certificate_list) == 1
    assert cert.certificate_list[0].cert_data[:2] == b"\x30\x82"  # DER SEQUENCE

    cv = pull_message(*message(3, "server", "CertificateVerify"))
    assert isinstance(cv, CertificateVerify)
    assert cv.algorithm == SignatureScheme.rsa_pss_rsae_sha256 and len(cv.signature) == 128

    nst = pull_message(*message(3, "server", "NewSessionTicket"))
    assert isinstance(nst, NewSessionTicket)
    assert nst.ticket_lifetime == 30 and nst.ticket_nonce == b"\x00\x00"
    ed = nst.extension(ExtensionType.early_data)
    assert ed is not None and ex.decode(ed, ex.pull_early_data_ticket) == 1024

    creq = pull_message(*message(6, "server", "CertificateRequest"))
    assert isinstance(creq, CertificateRequest) and creq.certificate_request_context == b""
    sa = creq.extension(ExtensionType.signature_algorithms)
    assert sa is not None
    assert SignatureScheme.rsa_pss_rsae_sha256 in ex.decode(sa, ex.pull_signature_algorithms)


def test_rfc8448_client_hello_and_its_extensions() -> None:
    msg_type, body = message(3, "client", "ClientHello")
    assert msg_type == HandshakeType.client_hello
    ch = _ch_tls(body)
    assert _push_ch_tls(ch) == body
    assert ch.cipher_suites == (0x1301, 0x1303, 0x1302)
    assert ch.legacy_compression_methods == b"\x00"
    # Same bytes with an empty legacy_cookie inserted parse as the DTLS form.
    dtls_body = body[:35] + b"\x00" + body[35:]
    dch = pull_message(HandshakeType.client_hello, dtls_body)
    assert isinstance(dch, ClientHello)
    assert dch.extensions == ch.extensions and dch.legacy_cookie == b""
    assert push_message(dch) == (HandshakeType.client_hello, dtls_body)

    def get(t: int) -> bytes:
        data = ch.extension(t)
        assert data is not None
        return data

    assert ex.decode(get(ExtensionType.server_name), ex.pull_server_name) == "server"
    assert ex.decode(get(ExtensionType.supported_versions), ex.pull_supported_versions_client) == (
        0x0304,
    )
    groups = ex.decode(get(ExtensionType.supported_groups), ex.pull_supported_groups)
    assert groups[:3] == (NamedGroup.x25519, NamedGroup.secp256r1, NamedGroup.secp384r1)
    shares = ex.decode(get(ExtensionType.key_share), ex.pull_key_share_client)
    assert shares == (
        KeyShareEntry(
            NamedGroup.x25519, trace(3, "client", "create an ephemeral x25519", "public key")
        ),
    )
    schemes = ex.decode(get(ExtensionType.signature_algorithms), ex.pull_signature_algorithms)
    assert schemes[0] == SignatureScheme.ecdsa_secp256r1_sha256 and len(schemes) == 15
    assert ex.decode(get(ExtensionType.psk_key_exchange_modes), ex.pull_psk_key_exchange_modes) == (
        PskKeyExchangeMode.psk_dhe_ke,
    )
    assert ex.decode(get(ExtensionType.record_size_limit), ex.pull_record_size_limit) == 0x4001
    # Unknown/other extensions are kept in order: renegotiation_info, session_ticket.
    types = ex.extension_types(ch.extensions)
    assert types.index(ExtensionType.renegotiation_info) < types.index(ExtensionType.session_ticket)

    # Every typed codec re-encodes its extension byte-exactly.
    for ext_type, pull, push in [
        (ExtensionType.server_name, ex.pull_server_name, ex.push_server_name),
        (
            ExtensionType.supported_versions,
            ex.pull_supported_versions_client,
            ex.push_supported_versions_client,
        ),
        (ExtensionType.supported_groups, ex.pull_supported_groups, ex.push_supported_groups),
        (ExtensionType.key_share, ex.pull_key_share_client, ex.push_key_share_client),
        (
            ExtensionType.signature_algorithms,
            ex.pull_signature_algorithms,
            ex.push_signature_algorithms,
        ),
        (
            ExtensionType.psk_key_exchange_modes,
            ex.pull_psk_key_exchange_modes,
            ex.push_psk_key_exchange_modes,
        ),
        (ExtensionType.record_size_limit, ex.pull_record_size_limit, ex.push_record_size_limit),
    ]:
        assert ex.encode(push, ex.decode(get(ext_type), pull)) == get(ext_type)


def test_rfc8448_pre_shared_key_client_hello() -> None:
    whole = trace(4, "client", "send handshake record", "payload")
    ch = _ch_tls(whole[4:])
    assert ch.extensions[-1].type == ExtensionType.pre_shared_key
    offered = ex.decode(ch.extensions[-1].data, ex.pull_pre_shared_key_client)
    assert len(offered.identities) == 1 and len(offered.binders) == 1
    assert offered.binders[0] == trace(4, "client", "calculate PSK binder", "finished")
    nst = pull_message(*message(3, "server", "NewSessionTicket"))
    assert isinstance(nst, NewSessionTicket) and offered.identities[0].identity == nst.ticket
    assert ex.encode(ex.push_pre_shared_key_client, offered) == ch.extensions[-1].data
    n = ex.binders_length(len(b) for b in offered.binders)
    prefix = trace(4, "client", "calculate PSK binder", "ClientHello prefix")
    assert whole[:-n] == prefix
    assert binder_prefix(ch, dtls=False) == prefix
    assert ex.encode(ex.push_early_data_ticket, 7) == b"\x00\x00\x00\x07"
    sh = pull_message(*message(4, "server", "ServerHello"))
    assert isinstance(sh, ServerHello)
    data = sh.extension(ExtensionType.pre_shared_key)
    assert data is not None and ex.decode(data, ex.pull_pre_shared_key_server) == 0


# -- DTLS specifics --------------------------------------------------------------------------


def _dtls_client_hello() -> ClientHello:
    exts = (
        ex.make_extension(ExtensionType.server_name, ex.push_server_name, "example.com"),
        ex.make_extension(
            ExtensionType.supported_versions, ex.push_supported_versions_client, [DTLS13_VERSION]
        ),
        ex.make_extension(ExtensionType.cookie, ex.push_cookie, b"c" * 40),
        ex.make_extension(
            ExtensionType.key_share,
            ex.push_key_share_client,
            [KeyShareEntry(NamedGroup.x25519, b"k" * 32)],
        ),
        ex.make_extension(ExtensionType.supported_groups, ex.push_supported_groups, [29, 23]),
        ex.make_extension(
            ExtensionType.signature_algorithms, ex.push_signature_algorithms, [0x0403, 0x0804]
        ),
        ex.make_extension(
            ExtensionType.application_layer_protocol_negotiation, ex.push_alpn, [b"h2", b"coap"]
        ),
        ex.make_extension(ExtensionType.connection_id, ex.push_connection_id, b"\x01\x02"),
        ex.make_extension(
            ExtensionType.psk_key_exchange_modes, ex.push_psk_key_exchange_modes, [1]
        ),
        Extension(0x1234, b"unknown"),
        Extension(ExtensionType.early_data, b""),
        ex.make_extension(
            ExtensionType.pre_shared_key,
            ex.push_pre_shared_key_client,
            OfferedPsks((PskIdentity(b"ticket", 1234),), (b"b" * 32,)),
        ),
    )
    return ClientHello(random=bytes(range(32)), cipher_suites=(0x1301, 0x1303), extensions=exts)


def test_dtls_client_hello_layout() -> None:
    ch = _dtls_client_hello()
    msg_type, body = push_message(ch)
    assert msg_type == HandshakeType.client_hello
    # legacy_version 0xfefd, random, empty session id, then the empty legacy_cookie.
    assert body[:2] == b"\xfe\xfd" and body[34:36] == b"\x00\x00"
    assert body[36:42] == b"\x00\x04\x13\x01\x13\x03"
    assert pull_message(msg_type, body) == ch
    sv = ch.extension(ExtensionType.supported_versions)
    assert sv == b"\x02\xfe\xfc"
    alpn = ch.extension(ExtensionType.application_layer_protocol_negotiation)
    assert alpn is not None and ex.decode(alpn, ex.pull_alpn) == (b"h2", b"coap")
    cid = ch.extension(ExtensionType.connection_id)
    assert cid is not None and ex.decode(cid, ex.pull_connection_id) == b"\x01\x02"
    assert ex.decode(b"\x00", ex.pull_connection_id) == b""  # empty CID is legal
    assert ch.extension(0x9999) is None
    with_cookie = ClientHello(ch.random, ch.cipher_suites, ch.extensions, legacy_cookie=b"x")
    assert pull_message(*push_message(with_cookie)) == with_cookie  # caller rejects it


def test_handshake_header() -> None:
    h = HandshakeHeader(HandshakeType.certificate, 5000, 3, 1200, 600)
    buf = Buffer(capacity=12)
    try:
        push_handshake_header(buf, h)
        data = buf.data
    finally:
        buf.close()
    assert data == bytes.fromhex("0b00138800030004b0000258")
    rb = Buffer(data)
    try:
        assert pull_handshake_header(rb) == h
    finally:
        rb.close()
    bad = Buffer(bytes.fromhex("0b0000100000000008000009"))
    try:
        with pytest.raises(DecodeError):
            pull_handshake_header(bad)
    finally:
        bad.close()
    assert transcript_header(2, 0x123456) == b"\x02\x12\x34\x56"
    with pytest.raises(ValueError):
        transcript_header(2, 1 << 24)


def test_server_hello_defaults_and_hrr() -> None:
    sh = ServerHello(
        random=HELLO_RETRY_REQUEST_RANDOM,
        cipher_suite=0x1301,
        extensions=(
            ex.make_extension(
                ExtensionType.supported_versions, ex.push_supported_versions_server, 0xFEFC
            ),
            ex.make_extension(ExtensionType.key_share, ex.push_key_share_hrr, 0x11EC),
        ),
    )
    msg_type, body = push_message(sh)
    assert body[:2] == b"\xfe\xfd" and body[34:38] == b"\x00\x13\x01\x00"
    back = pull_message(msg_type, body)
    assert isinstance(back, ServerHello) and back.is_hello_retry_request and back == sh
    assert not back.has_downgrade_sentinel
    assert ServerHello(bytes(24) + b"DOWNGRD\x01", 0x1301, ()).has_downgrade_sentinel
    assert ServerHello(bytes(24) + b"DOWNGRD\x00", 0x1301, ()).has_downgrade_sentinel


def test_other_messages_round_trip() -> None:
    msgs: list[Any] = [
        EncryptedExtensions(()),
        CertificateRequest(b"ctx", (Extension(13, b"\x00\x02\x08\x04"),)),
        Certificate(b"", ()),
        Certificate(
            b"", (CertificateEntry(b"der1", (Extension(5, b"ocsp"),)), CertificateEntry(b"d2"))
        ),
        CertificateVerify(0x0807, b"s" * 64),
        Finished(b"f" * 48),
        NewSessionTicket(7200, 0xDEADBEEF, b"", b"t", (Extension(42, b"\x00\x00\x04\x00"),)),
        KeyUpdate(1),
        RequestConnectionId(3),
        NewConnectionId((b"", b"\x01\x02\x03"), 1),
    ]
    for msg in msgs:
        assert pull_message(*push_message(msg)) == msg


def test_unexpected_types_and_duplicates() -> None:
    for t in (HandshakeType.end_of_early_data, HandshakeType.message_hash, 3, 99):
        with pytest.raises(UnexpectedHandshakeType):
            pull_message(t, b"")
    dup = b"\x00\x08" + b"\x00\x2b\x00\x00" * 2
    with pytest.raises(ex.DuplicateExtensionError):
        pull_message(HandshakeType.encrypted_extensions, dup)
    assert issubclass(ex.DuplicateExtensionError, DecodeError)
    two_shares = ex.encode(
        ex.push_key_share_client,
        [KeyShareEntry(29, b"a" * 32), KeyShareEntry(29, b"b" * 32)],
    )
    with pytest.raises(DecodeError):
        ex.decode(two_shares, ex.pull_key_share_client)


@pytest.mark.parametrize(
    ("pull", "data"),
    [
        (ex.pull_supported_versions_client, b"\x00"),  # versions<2..254>
        (ex.pull_supported_versions_client, b"\x03\xfe\xfc\x00"),  # odd length
        (ex.pull_supported_groups, b"\x00\x00"),
        (ex.pull_signature_algorithms, b"\x00\x01\x04"),
        (ex.pull_key_share_client, b"\x00\x04\x00\x1d\x00\x00"),  # empty key_exchange
        (ex.pull_server_name, b"\x00\x00"),
        (ex.pull_server_name, b"\x00\x04\x00\x00\x01\xff"),  # not ASCII
        (ex.pull_server_name, b"\x00\x03\x00\x00\x00"),  # empty host_name
        (ex.pull_server_name, b"\x00\x0a\x00\x00\x02ab\x00\x00\x02cd"),  # two host_names
        (ex.pull_alpn, b"\x00\x00"),
        (ex.pull_alpn, b"\x00\x01\x00"),
        (ex.pull_cookie, b"\x00\x00"),
        (ex.pull_psk_key_exchange_modes, b"\x00"),
        (ex.pull_pre_shared_key_client, b"\x00\x00\x00\x00"),
        (ex.pull_pre_shared_key_client, b"\x00\x07\x00\x01a\x00\x00\x00\x00\x00\x02\x01b"),
    ],
)
def test_extension_decoders_reject(pull: Callable[[Buffer], object], data: bytes) -> None:
    with pytest.raises(DecodeError):
        ex.decode(data, pull)


def test_server_name_skips_other_types() -> None:
    assert ex.decode(b"\x00\x04\x05\x00\x01x", ex.pull_server_name) is None
    data = ex.encode(ex.push_server_name, "a.example")
    assert ex.decode(data, ex.pull_server_name) == "a.example"


# -- robustness: truncation, trailing bytes, corruption -----------------------------------------


def _samples() -> list[tuple[int, bytes]]:
    samples = [push_message(_dtls_client_hello())]
    samples += [
        push_message(m)
        for m in (
            ServerHello(bytes(32), 0x1301, (Extension(43, b"\xfe\xfc"),)),
            EncryptedExtensions((Extension(16, b"\x00\x03\x02h2"), Extension(0, b""))),
            CertificateRequest(b"", (Extension(13, b"\x00\x02\x08\x04"),)),
            Certificate(b"", (CertificateEntry(b"der", (Extension(5, b"x"),)),)),
            CertificateVerify(0x0403, b"sig"),
            NewSessionTicket(1, 2, b"n", b"ticket", (Extension(42, b"\x00\x00\x00\x01"),)),
            KeyUpdate(0),
            NewConnectionId((b"\x01",), 0),
        )
    ]
    return samples


def _decode_only_decode_error(msg_type: int, body: bytes) -> None:
    with contextlib.suppress(DecodeError):
        pull_message(msg_type, body)


def test_every_truncation_and_trailing_bytes() -> None:
    for msg_type, body in _samples():
        for n in range(len(body)):
            try:
                msg = pull_message(msg_type, body[:n])
            except DecodeError:
                continue
            # Only a hello cut right before its extensions block parses (the pre-1.3 form).
            assert push_message(msg)[1] == body[:n] + b"\x00\x00"
            assert msg_type in (HandshakeType.client_hello, HandshakeType.server_hello)
        with pytest.raises(DecodeError):
            pull_message(msg_type, body + b"\x00")


def test_every_single_byte_corruption() -> None:
    for msg_type, body in _samples():
        for i in range(len(body)):
            for value in (0x00, 0xFF, body[i] ^ 0x01, body[i] ^ 0x80):
                _decode_only_decode_error(msg_type, body[:i] + bytes([value]) + body[i + 1 :])


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_random_corruption(data: st.DataObject) -> None:
    samples = _samples()
    msg_type, body = samples[data.draw(st.integers(0, len(samples) - 1))]
    mutated = bytearray(body)
    for _ in range(data.draw(st.integers(1, 4))):
        mutated[data.draw(st.integers(0, len(mutated) - 1))] = data.draw(st.integers(0, 255))
    _decode_only_decode_error(msg_type, bytes(mutated))


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(int(t) for t in HandshakeType)), st.binary(max_size=200))
def test_random_bodies(msg_type: int, body: bytes) -> None:
    _decode_only_decode_error(msg_type, body)


_EXTENSION_SAMPLES: list[tuple[Callable[[Buffer], object], bytes]] = [
    (ex.pull_supported_versions_client, b"\x04\xfe\xfc\xfe\xfd"),
    (ex.pull_supported_versions_server, b"\xfe\xfc"),
    (ex.pull_key_share_client, ex.encode(ex.push_key_share_client, [KeyShareEntry(29, b"k" * 8)])),
    (ex.pull_key_share_server, ex.encode(ex.push_key_share_server, KeyShareEntry(23, b"k" * 8))),
    (ex.pull_key_share_hrr, b"\x00\x1d"),
    (ex.pull_supported_groups, b"\x00\x04\x00\x1d\x00\x17"),
    (ex.pull_signature_algorithms, b"\x00\x04\x04\x03\x08\x04"),
    (ex.pull_server_name, ex.encode(ex.push_server_name, "host.example")),
    (ex.pull_alpn, ex.encode(ex.push_alpn, [b"h2", b"http/1.1"])),
    (ex.pull_cookie, b"\x00\x03abc"),
    (ex.pull_record_size_limit, b"\x40\x01"),
    (ex.pull_early_data_ticket, b"\x00\x00\x04\x00"),
    (ex.pull_psk_key_exchange_modes, b"\x02\x00\x01"),
    (
        ex.pull_pre_shared_key_client,
        ex.encode(
            ex.push_pre_shared_key_client,
            OfferedPsks((PskIdentity(b"id", 5), PskIdentity(b"id2", 6)), (b"b" * 32, b"c" * 48)),
        ),
    ),
    (ex.pull_pre_shared_key_server, b"\x00\x01"),
    (ex.pull_connection_id, b"\x02ab"),
]


def test_extension_codecs_truncation_trailing_corruption() -> None:
    for pull, data in _EXTENSION_SAMPLES:
        ex.decode(data, pull)
        for n in range(len(data)):
            with pytest.raises(DecodeError):
                ex.decode(data[:n], pull)
        with pytest.raises(DecodeError):
            ex.decode(data + b"\x00", pull)
        for i in range(len(data)):
            for value in (0x00, 0xFF, data[i] ^ 0x01):
                with contextlib.suppress(DecodeError):
                    ex.decode(data[:i] + bytes([value]) + data[i + 1 :], pull)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(range(len(_EXTENSION_SAMPLES))), st.binary(max_size=64))
def test_extension_codecs_random_input(index: int, data: bytes) -> None:
    pull = _EXTENSION_SAMPLES[index][0]
    with contextlib.suppress(DecodeError):
        ex.decode(data, pull)


def test_legacy_hellos_without_extensions() -> None:
    # A DTLS 1.2 ClientHello after HelloVerifyRequest: a cookie, no extensions block.
    body = b"\xfe\xfd" + bytes(32) + b"\x00" + b"\x02ck" + b"\x00\x02\xc0\x2b" + b"\x01\x00"
    ch = pull_message(HandshakeType.client_hello, body)
    assert isinstance(ch, ClientHello)
    assert ch.extensions == () and ch.legacy_cookie == b"ck"
    assert ch.extension(ExtensionType.supported_versions) is None
    sh_body = b"\xfe\xfd" + bytes(32) + b"\x00" + b"\xc0\x2b\x00"
    sh = pull_message(HandshakeType.server_hello, sh_body)
    assert isinstance(sh, ServerHello) and sh.extensions == ()


def test_parse_in_place_from_a_pooled_lease() -> None:
    pools = PoolSet()
    msg_type, body = push_message(_dtls_client_hello())
    lease = pools.acquire(12 + len(body))
    try:
        header = HandshakeHeader(msg_type, len(body), 0, 0, len(body))
        buf = Buffer(lease)
        try:
            push_handshake_header(buf, header)
            buf.push_bytes(body)
        finally:
            buf.close()
        lease.length = 12 + len(body)
        view = lease.view(0, 12)
        hb = Buffer(view)
        try:
            assert pull_handshake_header(hb) == header
        finally:
            hb.close()
        view.release()
        body_view = lease.view(12, 12 + len(body))
        msg = pull_message(msg_type, body_view)
        body_view.release()
        assert msg == _dtls_client_hello()
    finally:
        lease.release()  # raises if a decoder kept an export of the lease alive
    assert pools.in_use == 0


def test_handshake_header_truncation_and_fuzz() -> None:
    data = bytes.fromhex("0100001000000000000000000010")[:12]
    for n in range(12):
        b = Buffer(data[:n])
        try:
            with pytest.raises(DecodeError):
                pull_handshake_header(b)
        finally:
            b.close()


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=12, max_size=12))
def test_handshake_header_random(data: bytes) -> None:
    b = Buffer(data)
    try:
        h = pull_handshake_header(b)
        assert h.fragment_offset + h.fragment_length <= h.length
    except DecodeError:
        pass
    finally:
        b.close()


def test_binder_prefix_and_replace_binders() -> None:
    ch = _dtls_client_hello()
    msg_type, body = push_message(ch)
    whole = transcript_header(msg_type, len(body)) + body
    prefix = binder_prefix(ch)
    assert whole.startswith(prefix) and whole[len(prefix) :] == b"\x00\x21\x20" + b"b" * 32
    real = replace_binders(ch, (b"R" * 32,))
    assert binder_prefix(real) == prefix  # the prefix does not depend on the binders
    assert push_message(real)[1].endswith(b"\x20" + b"R" * 32)
    with pytest.raises(ValueError):
        replace_binders(ch, (b"R" * 48,))
    no_psk = ClientHello(ch.random, ch.cipher_suites, ch.extensions[:-1])
    with pytest.raises(DecodeError):
        binder_prefix(no_psk)
    not_last = ClientHello(ch.random, ch.cipher_suites, (ch.extensions[-1], *ch.extensions[:-1]))
    with pytest.raises(DecodeError):
        binder_prefix(not_last)


# -- property: every message a peer could send survives encode/decode --------------------------

_u16 = st.integers(0, 0xFFFF)
_exts = st.lists(st.tuples(_u16, st.binary(max_size=20)), max_size=5, unique_by=lambda t: t[0]).map(
    lambda items: tuple(Extension(t, d) for t, d in items)
)
_messages = st.one_of(
    st.builds(
        ClientHello,
        random=st.binary(min_size=32, max_size=32),
        cipher_suites=st.lists(_u16, min_size=1, max_size=5).map(tuple),
        extensions=_exts,
        legacy_session_id=st.binary(max_size=32),
        legacy_cookie=st.binary(max_size=10),
        legacy_compression_methods=st.binary(min_size=1, max_size=3),
        legacy_version=_u16,
    ),
    st.builds(
        ServerHello,
        random=st.binary(min_size=32, max_size=32),
        cipher_suite=_u16,
        extensions=_exts,
        legacy_session_id_echo=st.binary(max_size=32),
        legacy_compression_method=st.integers(0, 255),
        legacy_version=_u16,
    ),
    st.builds(EncryptedExtensions, _exts),
    st.builds(CertificateRequest, st.binary(max_size=10), _exts),
    st.builds(
        Certificate,
        st.binary(max_size=10),
        st.lists(st.builds(CertificateEntry, st.binary(min_size=1, max_size=30), _exts)).map(tuple),
    ),
    st.builds(CertificateVerify, _u16, st.binary(max_size=100)),
    st.builds(Finished, st.binary(max_size=64)),
    st.builds(
        NewSessionTicket,
        st.integers(0, 2**32 - 1),
        st.integers(0, 2**32 - 1),
        st.binary(max_size=10),
        st.binary(min_size=1, max_size=40),
        _exts,
    ),
    st.builds(KeyUpdate, st.integers(0, 255)),
    st.builds(RequestConnectionId, st.integers(0, 255)),
    st.builds(NewConnectionId, st.lists(st.binary(max_size=20)).map(tuple), st.integers(0, 255)),
)


@settings(max_examples=300, deadline=None)
@given(_messages)
def test_random_messages_round_trip(msg: Any) -> None:
    msg_type, body = push_message(msg)
    assert pull_message(msg_type, body) == msg
