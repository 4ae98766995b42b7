"""A hand-built Encrypted Client Hello client for server tests (RFC 9849 §6.1).

`EchWrapper` makes an ordinary client's ClientHellos carry the inner marker (so that its
transcript holds the ClientHelloInner) and, on the simulated network, replaces each of its
plaintext ClientHello datagrams by a ClientHelloOuter that encrypts it: the first with a
fresh HPKE context, the second (after a HelloRetryRequest) with the same context and an
empty enc. `mangle_encoded`, `mangle_outer` and `corrupt_payload` let a test damage what it sends.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from dtls13._fast import Buffer
from dtls13.connection import Connection
from dtls13.handshake import messages as msgs
from dtls13.handshake.constants import ExtensionType, HandshakeType
from dtls13.handshake.ech import (
    ECH_INNER_MARKER,
    EchCipherSuite,
    EchConfig,
    EchOuter,
    client_hello_outer_aad,
    encode_client_hello_inner,
    push_ech_outer,
)
from dtls13.handshake.extensions import Extension
from dtls13.handshake.hpke import AeadId, HpkeContext, KdfId, setup_base_sender
from tests.support.dtls_pair import CLIENT_ADDR, Pair

SUITE = EchCipherSuite(KdfId.HKDF_SHA256, AeadId.AES_128_GCM)
RECORD_HEADER = 13
HANDSHAKE_HEADER = 12


def _server_name(name: bytes) -> bytes:
    entry = b"\x00" + len(name).to_bytes(2, "big") + name
    return len(entry).to_bytes(2, "big") + entry


class EchWrapper:
    """Wrap `pair`'s client so that its ClientHellos go out encrypted under `config`
    (`pair`: anything with the client at CLIENT_ADDR as `.client` and the `.net`)."""

    def __init__(
        self,
        pair: Pair | Any,
        config: EchConfig,
        *,
        suite: EchCipherSuite = SUITE,
        compressed: Sequence[int] = (),
        padding: int = 0,
        config_id: int | None = None,
        outer_drops: Sequence[int] = (),
    ) -> None:
        self.config = config
        self.suite = suite
        self.compressed = compressed
        self.padding = padding
        self.config_id = config.config_id if config_id is None else config_id
        self.outer_drops = outer_drops  # extension types left out of the outer ClientHello
        self.context: HpkeContext | None = None
        self.sent: list[msgs.ClientHello] = []  # the outer ClientHellos, in order
        self.inner: list[msgs.ClientHello] = []
        # Tests damage the EncodedClientHelloInner (index: 0 first, 1 second ClientHello).
        self.mangle_encoded: Callable[[int, bytes], bytes] | None = None
        self.mangle_outer: Callable[[int, EchOuter], EchOuter] | None = None
        self.corrupt_payload = False  # flip a bit of the sealed payload
        _mark_inner(pair.client)
        pair.net.tamper = self._tamper

    def _tamper(self, src: Any, dst: Any, data: bytes) -> bytes | None:
        if src != CLIENT_ADDR or len(data) < RECORD_HEADER + HANDSHAKE_HEADER:
            return data
        if data[0] != 22 or data[3:5] != b"\x00\x00" or data[RECORD_HEADER] != 1:
            return data  # not an epoch-0 handshake record holding a ClientHello
        header = data[RECORD_HEADER : RECORD_HEADER + HANDSHAKE_HEADER]
        length = int.from_bytes(header[1:4], "big")
        assert header[6:9] == bytes(3) and header[9:12] == header[1:4], "whole ClientHello"
        body = data[RECORD_HEADER + HANDSHAKE_HEADER : RECORD_HEADER + HANDSHAKE_HEADER + length]
        outer = self.outer_hello(msgs.pull_message(HandshakeType.client_hello, body))
        with Buffer(capacity=2048) as buf:
            msgs.push_client_hello(buf, outer)
            new_body = buf.data
        n = len(new_body).to_bytes(3, "big")
        fragment = bytes([1]) + n + header[4:6] + bytes(3) + n + new_body
        return data[:11] + len(fragment).to_bytes(2, "big") + fragment

    def outer_hello(self, inner: Any) -> msgs.ClientHello:
        """The ClientHelloOuter for `inner` (the client's own ClientHello)."""
        index = len(self.sent)
        self.inner.append(inner)
        encoded = encode_client_hello_inner(inner, self.compressed, self.padding)
        if self.mangle_encoded is not None:
            encoded = self.mangle_encoded(index, encoded)
        if self.context is None:
            enc, self.context = setup_base_sender(
                self.config.kem_id,
                self.suite.kdf,
                self.suite.aead,
                self.config.public_key,
                self.config.hpke_info,
            )
        else:
            enc = b""  # RFC 9849 §6.1.5: ClientHelloOuter2 reuses the HPKE context
        ech = EchOuter(self.suite, self.config_id, enc, bytes(len(encoded) + 16))
        if self.mangle_outer is not None:
            ech = self.mangle_outer(index, ech)
        extensions = []
        for ext in inner.extensions:
            if ext.type == ExtensionType.encrypted_client_hello or ext.type in self.outer_drops:
                continue
            if ext.type == ExtensionType.server_name:
                ext = Extension(ext.type, _server_name(self.config.public_name))
            extensions.append(ext)
        extensions.append(Extension(ExtensionType.encrypted_client_hello, push_ech_outer(ech)))
        outer = msgs.ClientHello(
            random=self.sent[0].random if self.sent else os.urandom(32),
            cipher_suites=inner.cipher_suites,
            extensions=tuple(extensions),
            legacy_session_id=inner.legacy_session_id,
            legacy_compression_methods=inner.legacy_compression_methods,
        )
        payload = self.context.seal(client_hello_outer_aad(outer, ech), encoded)
        if len(payload) != len(ech.payload):  # a test changed the payload's length
            payload = payload[: len(ech.payload)].ljust(len(ech.payload), b"\x00")
        if self.corrupt_payload:
            payload = payload[:-1] + bytes([payload[-1] ^ 1])
        final = EchOuter(ech.suite, ech.config_id, ech.enc, payload)
        outer = msgs.ClientHello(
            random=outer.random,
            cipher_suites=outer.cipher_suites,
            extensions=tuple(
                Extension(e.type, push_ech_outer(final))
                if e.type == ExtensionType.encrypted_client_hello
                else e
                for e in outer.extensions
            ),
            legacy_session_id=outer.legacy_session_id,
            legacy_compression_methods=outer.legacy_compression_methods,
        )
        self.sent.append(outer)
        return outer


def _mark_inner(client: Connection) -> None:
    """The client's ClientHellos carry the inner encrypted_client_hello (in its transcript)."""
    hs = client._hs
    send = hs._send

    def send_marked(msg: Any, epoch: int | None, **kwargs: Any) -> None:
        if (
            isinstance(msg, msgs.ClientHello)
            and msg.extension(ExtensionType.encrypted_client_hello) is None
        ):
            marker = Extension(ExtensionType.encrypted_client_hello, ECH_INNER_MARKER)
            msg = msgs.ClientHello(
                random=msg.random,
                cipher_suites=msg.cipher_suites,
                extensions=(marker, *msg.extensions),
                legacy_session_id=msg.legacy_session_id,
                legacy_cookie=msg.legacy_cookie,
                legacy_compression_methods=msg.legacy_compression_methods,
                legacy_version=msg.legacy_version,
            )
            hs._work.client_hello = msg  # what it checks the server's extensions against
        send(msg, epoch, **kwargs)

    hs._send = send_marked  # type: ignore[method-assign]
