"""A first hello dropped as damaged leaves no trace: the genuine hello that follows (or a
spoofed one that came first) is handled as if the damaged one had never arrived.

Found by fuzz/fuzz_endpoint.py: the server narrowed its transcript to the hash of the
damaged ClientHello's suite before the hello failed to decode; a genuine ClientHello whose
suite runs another hash then raised LocalProtocolError ("transcript does not run sha256")
inside the core, which ends the handshake with internal_error (debug=False)."""

from __future__ import annotations

import pytest

from dtls13.connection import Connection
from dtls13.crypto.suites import CipherSuite
from dtls13.handshake import extensions as ext
from dtls13.handshake import messages as msgs
from dtls13.handshake.constants import ExtensionType, NamedGroup
from dtls13.memory import PoolSet
from tests.support.conn_helpers import handshake_message, plaintext_record
from tests.support.dtls_pair import CLIENT_ADDR, SERVER_ADDR, configs, make_pair


def _spoofed_hello(extension: int, data: bytes, **client: object) -> bytes:
    """A ClientHello from a client configured with `client`, `extension` replaced by
    `data`: what an off-path attacker sends from the victim's address."""
    ccfg, _ = configs(client=client)  # type: ignore[arg-type]
    pools = PoolSet()
    attacker = Connection(ccfg, pools=pools)
    attacker.connect(SERVER_ADDR, 0.0)
    for lease, _ in attacker.datagrams_to_send(0.0):
        lease.release()
    hello = attacker.handshake.client_hello
    assert hello is not None
    attacker.close()
    for lease, _ in attacker.datagrams_to_send(0.0):
        lease.release()
    extensions = tuple(
        ext.Extension(e.type, data) if e.type == extension else e for e in hello.extensions
    )
    msg_type, body = msgs.push_message(
        msgs.ClientHello(
            random=hello.random, cipher_suites=hello.cipher_suites, extensions=extensions
        )
    )
    return plaintext_record(handshake_message(msg_type, body, 0))


def test_genuine_hello_with_another_hash_completes_after_a_spoofed_undecodable_one() -> None:
    spoofed = _spoofed_hello(
        ExtensionType.key_share, b"\x00\x05\x00", cipher_suites=("TLS_AES_256_GCM_SHA384",)
    )
    pair = make_pair(5)
    pair.server.receive_datagram(spoofed, CLIENT_ADDR, 0.0)
    assert pair.server.stats["dropped_damaged_hello"] == 1
    assert pair.server.datagrams_to_send(0.0) == []
    assert pair.handshake()  # the client's suites start with AES-128-GCM: SHA-256
    assert pair.exchange(b"ping", b"pong")
    pair.close()


def test_genuine_hello_completes_after_a_spoofed_one_that_fails_after_the_transcript() -> None:
    """A connection_id extension that does not decode fails only after the hello entered the
    transcript and the server's flight began."""
    spoofed = _spoofed_hello(ExtensionType.connection_id, b"\x05", connection_id=True)
    pair = make_pair(6, client={"connection_id": True}, server={"connection_id": True})
    pair.server.receive_datagram(spoofed, CLIENT_ADDR, 0.0)
    assert pair.server.stats["dropped_damaged_hello"] == 1
    assert pair.server.datagrams_to_send(0.0) == []
    assert pair.handshake()
    assert pair.exchange(b"ping", b"pong")
    pair.close()


def test_genuine_server_hello_completes_after_a_spoofed_one_with_another_suite() -> None:
    """The client side of the same rule: a spoofed ServerHello choosing AES-256-GCM with a
    key share for a group the client never sent is dropped as damaged; the genuine
    ServerHello (AES-128-GCM) must then not be refused as "differs from the
    HelloRetryRequest's" suite, which left the client waiting until its handshake timed out."""
    pair = make_pair(7)
    versions = ext.make_extension(
        ExtensionType.supported_versions, ext.push_supported_versions_server, 0xFEFC
    )
    share = ext.make_extension(
        ExtensionType.key_share,
        ext.push_key_share_entry,
        ext.KeyShareEntry(NamedGroup.secp384r1, b"\x04" + bytes(96)),
    )
    spoofed = msgs.ServerHello(
        random=bytes(range(32)),
        cipher_suite=CipherSuite.TLS_AES_256_GCM_SHA384,
        extensions=(versions, share),
    )
    msg_type, body = msgs.push_message(spoofed)
    pair.client.connect(SERVER_ADDR, 0.0)
    pair.client.receive_datagram(
        plaintext_record(handshake_message(msg_type, body, 0)), SERVER_ADDR, 0.0
    )
    assert pair.client.stats["dropped_damaged_hello"] == 1
    assert pair.net.run(pair.completed, max_time=20.0)
    assert pair.exchange(b"ping", b"pong")
    pair.close()


@pytest.mark.parametrize("cookie", [False, True], ids=["group", "cookie_and_group"])
def test_genuine_hello_retry_request_completes_after_a_damaged_one(cookie: bool) -> None:
    """A HelloRetryRequest whose selected group (or cookie and group) came damaged, naming
    a group the client cannot use, is dropped as damaged; the genuine one that follows
    must then be taken, not refused as a "second HelloRetryRequest", and the damaged
    one's cookie must not be echoed."""
    pair = make_pair(
        8,
        client={"groups": ["x25519", "secp256r1"], "key_share_groups": ["x25519"]},
        server={"groups": ["secp256r1"]},
    )
    spoofed_cookie = ext.make_extension(ExtensionType.cookie, ext.push_cookie, b"spoofed")
    spoofed = msgs.ServerHello(
        random=msgs.HELLO_RETRY_REQUEST_RANDOM,
        cipher_suite=CipherSuite.TLS_AES_128_GCM_SHA256,
        extensions=(
            ext.make_extension(
                ExtensionType.supported_versions, ext.push_supported_versions_server, 0xFEFC
            ),
            ext.Extension(ExtensionType.key_share, b"\x12\x34"),  # no group we know
            *((spoofed_cookie,) if cookie else ()),
        ),
    )
    msg_type, body = msgs.push_message(spoofed)
    sent: list[bytes] = []
    pair.net.tamper = lambda src, dst, data: (sent.append(data), data)[1]
    pair.client.connect(SERVER_ADDR, 0.0)
    pair.client.receive_datagram(
        plaintext_record(handshake_message(msg_type, body, 0)), SERVER_ADDR, 0.0
    )
    assert pair.client.stats["dropped_damaged_hello"] == 1
    assert pair.net.run(pair.completed, max_time=20.0), pair.terminated("client")
    assert pair.client.stats["hello_retry_requests_received"] == 1
    assert not any(b"spoofed" in data for data in sent)
    assert pair.exchange(b"ping", b"pong")
    pair.close()
