"""A server with Encrypted Client Hello keys (RFC 9849), against a hand-built ECH client
(tests.support.ech_client): acceptance, rejection with retry_configs, HelloRetryRequest,
malformed ClientHelloInners and corrupted payloads."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from dtls13 import EchKey, EchStatus, ech_config_list, generate_ech_key
from dtls13.alerts import AlertDescription
from dtls13.events import HandshakeCompleted
from dtls13.handshake import messages as msgs
from dtls13.handshake.constants import ExtensionType, HandshakeType
from dtls13.handshake.ech import (
    EchCipherSuite,
    EchOuter,
    accept_confirmation,
    hrr_accept_confirmation,
    pull_ech_config_list,
)
from dtls13.handshake.hpke import AeadId, KdfId
from tests.support.dtls_pair import Pair, make_pair
from tests.support.ech_client import EchWrapper

KEY = generate_ech_key(7, "public.example")
OTHER = generate_ech_key(8, "public.example")
_PAIRS: list[Pair] = []


@pytest.fixture(autouse=True)
def _close_pairs() -> Any:
    yield
    while _PAIRS:
        _PAIRS.pop().close()


def _pair(keys: list[EchKey], *, hrr: bool = False, **server: Any) -> Pair:
    # The client shares X25519 only; a server that takes P-256 only asks it to retry.
    client = {"groups": ["x25519", "secp256r1"], "key_share_groups": ["x25519"]}
    groups = {"groups": ["secp256r1"]} if hrr else {}
    pair = make_pair(client=client, server={"ech_keys": keys, **groups, **server}, cache=True)
    _PAIRS.append(pair)
    return pair


def _server_messages(pair: Pair) -> list[tuple[int, bytes]]:
    """Every handshake message the server sends, in plaintext, as (type, body)."""
    sent: list[tuple[int, bytes]] = []
    hs = pair.server._hs
    send = hs._send_encoded

    def record(msg_type: int, body: bytes, epoch: int | None, **kwargs: Any) -> None:
        sent.append((msg_type, bytes(body)))
        send(msg_type, body, epoch, **kwargs)

    hs._send_encoded = record  # type: ignore[method-assign]
    return sent


def _completed(pair: Pair, side: str) -> HandshakeCompleted:
    pair.drain()
    events = pair.server_events if side == "server" else pair.client_events
    return next(e for e in events if isinstance(e, HandshakeCompleted))


def _transcript_hash(*messages: tuple[int, bytes]) -> bytes:
    h = hashlib.sha256()
    for msg_type, body in messages:
        h.update(msgs.transcript_header(msg_type, len(body)) + body)
    return h.digest()


def _inner_body(wrapper: EchWrapper, index: int) -> bytes:
    from dtls13._fast import Buffer

    with Buffer(capacity=2048) as buf:
        msgs.push_client_hello(buf, wrapper.inner[index])
        return buf.data


def test_server_answers_the_inner_client_hello_and_confirms_acceptance() -> None:
    pair = _pair([OTHER, KEY])
    wrapper = EchWrapper(pair, KEY.config)
    sent = _server_messages(pair)
    assert pair.handshake()
    done = _completed(pair, "server")
    assert done.ech_status is EchStatus.ACCEPTED
    assert pair.server._hs.server_name == "localhost"  # the inner SNI, not public.example
    assert wrapper.sent[0].extension(ExtensionType.server_name).endswith(b"public.example")
    # RFC 9849 §7.2: the last 8 bytes of ServerHello.random confirm acceptance.
    sh_type, sh_body = sent[0]
    zeroed = sh_body[: 2 + 24] + bytes(8) + sh_body[2 + 32 :]
    expected = accept_confirmation(
        "sha256",
        wrapper.inner[0].random,
        _transcript_hash((HandshakeType.client_hello, _inner_body(wrapper, 0)), (sh_type, zeroed)),
    )
    assert sh_body[2 + 24 : 2 + 32] == expected
    # No retry_configs after acceptance.
    ee = msgs.pull_message(HandshakeType.encrypted_extensions, sent[1][1])
    assert ee.extension(ExtensionType.encrypted_client_hello) is None
    assert pair.server.statistics().ech_rejected == 0
    assert pair.server._hs._work.ech._contexts == ()  # the HPKE keys go with the handshake


def test_compressed_outer_extensions_and_padding_are_accepted() -> None:
    pair = _pair([KEY])
    EchWrapper(
        pair,
        KEY.config,
        compressed=(ExtensionType.supported_groups, ExtensionType.key_share),
        padding=17,
    )
    assert pair.handshake()
    assert _completed(pair, "server").ech_status is EchStatus.ACCEPTED


@pytest.mark.parametrize(
    "suite",
    [
        EchCipherSuite(KdfId.HKDF_SHA256, AeadId.AES_128_GCM),
        EchCipherSuite(KdfId.HKDF_SHA256, AeadId.CHACHA20_POLY1305),
    ],
    ids=["aes128gcm", "chacha20"],
)
def test_each_configured_suite_is_accepted(suite: EchCipherSuite) -> None:
    pair = _pair([KEY])
    EchWrapper(pair, KEY.config, suite=suite)
    assert pair.handshake()
    assert _completed(pair, "server").ech_status is EchStatus.ACCEPTED


def _rejected(pair: Pair, sent: list[tuple[int, bytes]]) -> bytes | None:
    """The handshake goes on with the outer ClientHello; the EE's retry_configs."""
    assert pair.net.run(lambda: any(t == HandshakeType.finished for t, _ in sent), max_time=30)
    assert pair.server._hs.ech_status() is EchStatus.REJECTED
    assert pair.server._hs.server_name == "public.example"
    ee = next(b for t, b in sent if t == HandshakeType.encrypted_extensions)
    return msgs.pull_message(HandshakeType.encrypted_extensions, ee).extension(
        ExtensionType.encrypted_client_hello
    )


def test_an_unknown_config_is_rejected_with_the_retry_configs_only() -> None:
    hidden = generate_ech_key(9, "public.example")
    keys = [KEY, EchKey(hidden.config, hidden.private_key, retry=False), OTHER]
    pair = _pair(keys)
    EchWrapper(pair, generate_ech_key(7, "public.example").config)  # same id, other key
    sent = _server_messages(pair)
    pair.client.connect(("10.0.0.2", 4433), pair.net.now)
    retry = _rejected(pair, sent)
    assert retry == ech_config_list([KEY, OTHER])
    assert [c.config_id for c in pull_ech_config_list(retry)] == [7, 8]
    assert pair.server.statistics().ech_rejected == 1


def test_a_corrupted_payload_is_rejected_not_fatal() -> None:
    pair = _pair([KEY])
    wrapper = EchWrapper(pair, KEY.config)
    wrapper.corrupt_payload = True
    sent = _server_messages(pair)
    pair.client.connect(("10.0.0.2", 4433), pair.net.now)
    assert _rejected(pair, sent) == ech_config_list([KEY])
    assert pair.server.statistics().ech_rejected == 1


def test_a_suite_the_config_does_not_list_is_rejected() -> None:
    only_aes = generate_ech_key(
        7, "public.example", suites=[EchCipherSuite(KdfId.HKDF_SHA256, AeadId.AES_128_GCM)]
    )
    pair = _pair([only_aes])
    EchWrapper(
        pair, only_aes.config, suite=EchCipherSuite(KdfId.HKDF_SHA256, AeadId.CHACHA20_POLY1305)
    )
    sent = _server_messages(pair)
    pair.client.connect(("10.0.0.2", 4433), pair.net.now)
    assert _rejected(pair, sent) == ech_config_list([only_aes])


def test_a_server_without_keys_ignores_the_extension() -> None:
    pair = _pair([])
    EchWrapper(pair, KEY.config)
    sent = _server_messages(pair)
    pair.client.connect(("10.0.0.2", 4433), pair.net.now)
    assert _rejected(pair, sent) is None


def test_hello_retry_request_confirms_and_the_second_hello_uses_the_same_context() -> None:
    pair = _pair([KEY], hrr=True)
    wrapper = EchWrapper(pair, KEY.config)
    sent = _server_messages(pair)
    assert pair.handshake()
    assert _completed(pair, "server").ech_status is EchStatus.ACCEPTED
    assert pair.server.statistics().hello_retry_requests_sent == 1
    assert len(wrapper.sent) == 2 and wrapper.sent[1].extension(
        ExtensionType.encrypted_client_hello
    )
    # RFC 9849 §7.2.1: the HRR's encrypted_client_hello holds the confirmation.
    hrr_type, hrr_body = sent[0]
    hrr = msgs.pull_message(HandshakeType.server_hello, hrr_body)
    assert hrr.is_hello_retry_request
    signal = hrr.extension(ExtensionType.encrypted_client_hello)
    assert signal is not None and len(signal) == 8
    zeroed = hrr_body[: len(hrr_body) - 8] + bytes(8)
    ch1_hash = hashlib.sha256(
        msgs.transcript_header(HandshakeType.client_hello, len(_inner_body(wrapper, 0)))
        + _inner_body(wrapper, 0)
    ).digest()
    expected = hrr_accept_confirmation(
        "sha256",
        wrapper.inner[0].random,
        _transcript_hash((HandshakeType.message_hash, ch1_hash), (hrr_type, zeroed)),
    )
    assert signal == expected


def test_a_cookie_hello_retry_request_of_the_connection_carries_the_ech_state() -> None:
    pair = _pair([KEY], require_cookie=True)
    wrapper = EchWrapper(pair, KEY.config)
    assert pair.handshake()
    assert _completed(pair, "server").ech_status is EchStatus.ACCEPTED
    assert wrapper.sent[1].extension(ExtensionType.cookie) is not None


def _alert(pair: Pair) -> AlertDescription | None:
    pair.net.run(lambda: pair.server.closed, max_time=30)
    ended = pair.terminated("server")
    return None if ended is None else ended.alert


def test_second_hello_without_encrypted_client_hello_is_missing_extension() -> None:
    pair = _pair([KEY], hrr=True)
    wrapper = EchWrapper(pair, KEY.config)
    original = wrapper.outer_hello

    def second_plain(inner: Any) -> msgs.ClientHello:
        outer = original(inner)
        if len(wrapper.sent) < 2:
            return outer
        return msgs.ClientHello(
            random=outer.random,
            cipher_suites=outer.cipher_suites,
            extensions=tuple(
                e for e in outer.extensions if e.type != ExtensionType.encrypted_client_hello
            ),
            legacy_session_id=outer.legacy_session_id,
        )

    wrapper.outer_hello = second_plain  # type: ignore[method-assign]
    pair.client.connect(("10.0.0.2", 4433), pair.net.now)
    assert _alert(pair) is AlertDescription.missing_extension


def test_second_hello_with_another_config_id_is_illegal_parameter() -> None:
    pair = _pair([KEY], hrr=True)
    wrapper = EchWrapper(pair, KEY.config)
    wrapper.mangle_outer = lambda i, ech: (
        ech if i == 0 else EchOuter(ech.suite, 8, b"", ech.payload)
    )
    pair.client.connect(("10.0.0.2", 4433), pair.net.now)
    assert _alert(pair) is AlertDescription.illegal_parameter


def test_second_hello_that_does_not_decrypt_is_decrypt_error() -> None:
    pair = _pair([KEY], hrr=True)
    wrapper = EchWrapper(pair, KEY.config)
    original = wrapper.outer_hello

    def corrupt_second(inner: Any) -> msgs.ClientHello:
        wrapper.corrupt_payload = len(wrapper.sent) == 1
        return original(inner)

    wrapper.outer_hello = corrupt_second  # type: ignore[method-assign]
    pair.client.connect(("10.0.0.2", 4433), pair.net.now)
    assert _alert(pair) is AlertDescription.decrypt_error


def _outer_extensions(types: list[int]) -> Any:
    """A mangle_encoded that puts ech_outer_extensions naming `types` after the marker."""
    from dtls13._fast import Buffer
    from dtls13.handshake.extensions import Extension

    body = b"".join(t.to_bytes(2, "big") for t in types)
    ext = Extension(ExtensionType.ech_outer_extensions, bytes((len(body),)) + body)

    def mangle(index: int, encoded: bytes) -> bytes:
        with Buffer(encoded) as buf:
            hello = msgs.pull_client_hello(buf)
        hello = msgs.ClientHello(
            random=hello.random,
            cipher_suites=hello.cipher_suites,
            extensions=(*hello.extensions[:1], ext, *hello.extensions[1:]),
        )
        with Buffer(capacity=2048) as buf:
            msgs.push_client_hello(buf, hello)
            return buf.data

    return mangle


SG, KS, SN = ExtensionType.supported_groups, ExtensionType.key_share, ExtensionType.server_name
MALFORMED = {
    "duplicate": _outer_extensions([SG, SG]),
    "wrong-order": _outer_extensions([KS, SG]),
    "self-reference": _outer_extensions([ExtensionType.encrypted_client_hello]),
    "missing": _outer_extensions([ExtensionType.cookie]),
    "bad-padding": lambda index, encoded: encoded + b"\x00\x07",
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_inner_in_the_first_hello_is_dropped_as_damaged(case: str) -> None:
    pair = _pair([KEY])
    wrapper = EchWrapper(pair, KEY.config)
    wrapper.mangle_encoded = MALFORMED[case]
    pair.client.connect(("10.0.0.2", 4433), pair.net.now)
    pair.net.run(lambda: pair.server.statistics().dropped_damaged_hello > 0, max_time=5)
    # An unauthenticated first ClientHello that makes no sense is dropped and counted,
    # never fatal (as any malformed first ClientHello; the client may retransmit).
    assert pair.server.statistics().dropped_damaged_hello >= 1
    assert not pair.server.closed


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_inner_in_the_second_hello_is_illegal_parameter(case: str) -> None:
    pair = _pair([KEY], hrr=True)
    wrapper = EchWrapper(pair, KEY.config)
    mangle = MALFORMED[case]
    wrapper.mangle_encoded = lambda i, encoded: encoded if i == 0 else mangle(i, encoded)
    pair.client.connect(("10.0.0.2", 4433), pair.net.now)
    assert _alert(pair) is AlertDescription.illegal_parameter


def test_ech_config_list_and_generated_keys() -> None:
    key = generate_ech_key(3, "p.example", maximum_name_length=32)
    assert key.retry and key.config.public_name == b"p.example"
    assert key.config.maximum_name_length == 32
    assert pull_ech_config_list(ech_config_list([key, KEY])) == (key.config, KEY.config)
    assert (
        EchKey.from_bytes(key.config.encoded, key.private_key.private_bytes_raw()).config
        == key.config
    )
    with pytest.raises(ValueError):
        EchKey(key.config, OTHER.private_key)  # not the config's key
    with pytest.raises(ValueError):
        EchKey.from_bytes(b"\x00", bytes(32))
    with pytest.raises(TypeError):
        make_pair(server={"ech_keys": [key.config]})
