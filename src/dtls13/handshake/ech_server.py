"""The server's side of Encrypted Client Hello (RFC 9849 §7.1, §7.2), per handshake.

``ServerEch.open`` turns a ClientHelloOuter it can decrypt into its ClientHelloInner, which
the handshake then continues with; one it cannot decrypt is answered as it is, with
retry_configs in EncryptedExtensions. A ClientHello carrying the inner marker (ours after
decryption, or one a client-facing server forwarded) gets the acceptance confirmation in
the ServerHello random and the HelloRetryRequest's extension.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from .._fast import Buffer, DecodeError
from ..alerts import DecodeErrorAlert, DecryptError, IllegalParameter, MissingExtension
from ..events import EchStatus
from . import messages as msgs
from .constants import ExtensionType
from .cookie import cookie_ech_state
from .ech import (
    CONFIRMATION_LENGTH,
    ECH_INNER_MARKER,
    EchCipherSuite,
    EchOuter,
    accept_confirmation,
    client_hello_outer_aad,
    decode_client_hello_inner,
    hrr_accept_confirmation,
    pull_ech_client_hello,
    push_ech_config_list,
    supported_suite,
)
from .ech_keys import EchKey
from .extensions import Extension, decode, pull_cookie
from .hpke import HpkeContext, HpkeError, setup_base_receiver
from .key_schedule import Transcript

Hello = tuple[msgs.ClientHello, bytes]


def _encode_client_hello(hello: msgs.ClientHello) -> bytes:
    with Buffer(capacity=512) as buf:
        msgs.push_client_hello(buf, hello)
        return buf.data


class ServerEch:
    """One handshake's ECH state on a server with `keys` (possibly none)."""

    __slots__ = ("_config_id", "_contexts", "_enc", "_keys", "_suite", "inner", "status")

    def __init__(self, keys: Sequence[EchKey]) -> None:
        self._keys = tuple(keys)
        self.status = EchStatus.NOT_OFFERED
        self.inner = False  # the ClientHello we answer carries the inner marker
        # The HPKE contexts ClientHelloOuter2 may use: the one that opened ClientHelloOuter1,
        # or after a stateless retry those of every key with its config_id (RFC 9849 §7.1.1).
        self._contexts: tuple[HpkeContext, ...] = ()
        self._config_id = -1
        self._suite: EchCipherSuite | None = None
        self._enc = b""

    def _outer_extension(self, ch: msgs.ClientHello) -> EchOuter | None:
        data = ch.extension(ExtensionType.encrypted_client_hello)
        if data is None:
            return None
        try:
            return pull_ech_client_hello(data)
        except DecodeError:
            raise DecodeErrorAlert("malformed encrypted_client_hello") from None

    def open(
        self, ch: msgs.ClientHello, body: bytes, second: bool, count: Callable[[str, int], None]
    ) -> Hello:
        """The ClientHello to continue with: the inner one when `ch` is a ClientHelloOuter
        we can decrypt (or the second one after we accepted), else `ch` itself."""
        if not second:
            hello = self._open_first(ch, body, count)
        elif self.status is EchStatus.ACCEPTED:
            hello = self._open_second(ch)
        else:
            self._outer_extension(ch)  # well formed, else decode_error; not used
            hello = ch, body
        marker = hello[0].extension(ExtensionType.encrypted_client_hello)
        self.inner = marker == ECH_INNER_MARKER
        return hello

    def _open_first(
        self, ch: msgs.ClientHello, body: bytes, count: Callable[[str, int], None]
    ) -> Hello:
        # Afresh: a first ClientHello dropped as damaged must leave no trace.
        self.status, self._contexts = EchStatus.NOT_OFFERED, ()
        outer = self._outer_extension(ch)
        if outer is None:
            return ch, body  # no extension, or the inner marker
        self.status = EchStatus.REJECTED
        aad = client_hello_outer_aad(ch, outer)
        for key in self._keys:
            if key.config.config_id != outer.config_id:
                continue
            if not supported_suite(key.config, outer.suite):
                continue
            try:
                context = setup_base_receiver(
                    key.config.kem_id,
                    outer.suite.kdf,
                    outer.suite.aead,
                    outer.enc,
                    key.private_key,
                    key.config.hpke_info,
                )
                encoded = context.open(aad, outer.payload)
            except HpkeError:
                continue  # RFC 9849 §7.1: try the next config with this id, then reject
            inner = decode_client_hello_inner(encoded, ch)
            self.status = EchStatus.ACCEPTED
            self._contexts, self._config_id, self._suite = (context,), outer.config_id, outer.suite
            self._enc = outer.enc
            return inner, _encode_client_hello(inner)
        count("ech_rejected", 1)
        return ch, body

    def _open_second(self, ch: msgs.ClientHello) -> Hello:
        """RFC 9849 §7.1.1: ClientHelloOuter2 uses the same config and HPKE context."""
        if ch.extension(ExtensionType.encrypted_client_hello) is None:
            raise MissingExtension("second ClientHello without encrypted_client_hello")
        outer = self._outer_extension(ch)
        if outer is None:
            raise DecodeErrorAlert("second ClientHello with an inner encrypted_client_hello")
        if outer.config_id != self._config_id or outer.suite != self._suite or outer.enc:
            raise IllegalParameter("second ClientHelloOuter changed its ECH config or enc")
        aad = client_hello_outer_aad(ch, outer)
        for context in self._contexts:
            try:
                encoded = context.open(aad, outer.payload)
                break
            except HpkeError:
                continue
        else:
            raise DecryptError("second ClientHelloOuter does not decrypt")
        inner = decode_client_hello_inner(encoded, ch)
        return inner, _encode_client_hello(inner)

    # -- a stateless HelloRetryRequest's cookie (RFC 9147 §5.1) -------------------------

    def retry_state(self) -> bytes:
        """What a stateless HelloRetryRequest's cookie keeps of this state: nothing, the
        rejection (1), or the acceptance (2) with what rebuilds the HPKE context."""
        if self.status is EchStatus.REJECTED:
            return b"\x01"
        if self.status is not EchStatus.ACCEPTED or self._suite is None:
            return b""
        return (
            bytes((2, self._config_id))
            + self._suite.kdf.to_bytes(2, "big")
            + self._suite.aead.to_bytes(2, "big")
            + self._enc
        )

    def restore_from_cookie(
        self,
        ch: msgs.ClientHello,
        jar: Any,
        now: float,
        addr: Any,
        count: Callable[[str, int], None],
    ) -> None:
        """Take up the state a stateless HelloRetryRequest's cookie (in `ch`) kept."""
        data = ch.extension(ExtensionType.cookie)
        if data is None:
            return  # the handshake says what is missing
        try:
            cookie = decode(data, pull_cookie)
        except DecodeError:
            raise DecodeErrorAlert("malformed cookie") from None
        contents = jar.check(cookie, now, addr)
        if contents is None:
            raise IllegalParameter("invalid or expired cookie")
        if not self.restore(cookie_ech_state(contents.extra)):
            raise IllegalParameter("cookie names an ECH key no longer held")
        if self.status is EchStatus.REJECTED:
            count("ech_rejected", 1)

    def restore(self, state: bytes) -> bool:
        """Take up `retry_state()` from a valid cookie; False if it is not one of ours."""
        if state == b"\x01":
            self.status = EchStatus.REJECTED
            return True
        if not state:
            return True
        if len(state) < 6 or state[0] != 2:
            return False
        config_id = state[1]
        suite = EchCipherSuite(int.from_bytes(state[2:4], "big"), int.from_bytes(state[4:6], "big"))
        contexts = []
        for key in self._keys:
            if key.config.config_id != config_id or not supported_suite(key.config, suite):
                continue
            try:
                context = setup_base_receiver(
                    key.config.kem_id,
                    suite.kdf,
                    suite.aead,
                    state[6:],
                    key.private_key,
                    key.config.hpke_info,
                )
            except HpkeError:
                continue
            context.skip_to(1)  # ClientHelloOuter1 took sequence number 0
            contexts.append(context)
        if not contexts:
            return False  # the key is gone (rotated out since the cookie was made)
        self.status, self._config_id, self._suite = EchStatus.ACCEPTED, config_id, suite
        self._contexts, self._enc = tuple(contexts), state[6:]
        return True

    # -- what the server sends ---------------------------------------------------------

    def server_hello(
        self, hello: msgs.ServerHello, transcript: Transcript, inner_random: bytes
    ) -> msgs.ServerHello:
        """`hello` with the acceptance confirmation in its random's last 8 bytes (§7.2)."""
        if not self.inner:
            return hello
        zeroed = _server_hello(hello, hello.random[:-CONFIRMATION_LENGTH] + bytes(8))
        digest = _digest_with(transcript, zeroed)
        signal = accept_confirmation(_hash(transcript), inner_random, digest)
        return _server_hello(hello, zeroed.random[:-CONFIRMATION_LENGTH] + signal)

    def hello_retry_request(
        self, hrr: msgs.ServerHello, transcript: Transcript, inner_random: bytes
    ) -> msgs.ServerHello:
        """`hrr` with an encrypted_client_hello extension confirming acceptance (§7.2.1)."""
        if not self.inner:
            return hrr
        zeroed = _with_extension(hrr, bytes(CONFIRMATION_LENGTH))
        digest = _digest_with(transcript, zeroed)
        return _with_extension(
            hrr, hrr_accept_confirmation(_hash(transcript), inner_random, digest)
        )

    def encrypted_extensions(self) -> tuple[Extension, ...]:
        """retry_configs (§7.1) after a ClientHelloOuter we could not use."""
        if self.status is not EchStatus.REJECTED:
            return ()
        retry = [key.config for key in self._keys if key.retry]
        if not retry:
            return ()
        return (Extension(ExtensionType.encrypted_client_hello, push_ech_config_list(retry)),)


def _hash(transcript: Transcript) -> str:
    assert transcript.hash_name is not None
    return transcript.hash_name


def _digest_with(transcript: Transcript, hello: msgs.ServerHello) -> bytes:
    msg_type, body = msgs.push_message(hello)
    return transcript.digest_with(msgs.transcript_header(msg_type, len(body)) + body)


def _server_hello(hello: msgs.ServerHello, random: bytes) -> msgs.ServerHello:
    return msgs.ServerHello(
        random=random,
        cipher_suite=hello.cipher_suite,
        extensions=hello.extensions,
        legacy_session_id_echo=hello.legacy_session_id_echo,
        legacy_compression_method=hello.legacy_compression_method,
        legacy_version=hello.legacy_version,
    )


def _with_extension(hrr: msgs.ServerHello, confirmation: bytes) -> msgs.ServerHello:
    extensions = tuple(e for e in hrr.extensions if e.type != ExtensionType.encrypted_client_hello)
    return msgs.ServerHello(
        random=hrr.random,
        cipher_suite=hrr.cipher_suite,
        extensions=(*extensions, Extension(ExtensionType.encrypted_client_hello, confirmation)),
        legacy_session_id_echo=hrr.legacy_session_id_echo,
        legacy_compression_method=hrr.legacy_compression_method,
        legacy_version=hrr.legacy_version,
    )


# What a connection holds once its handshake is over (ServerHandshake.drop_handshake_state):
# one shared, empty state instead of its own, with its HPKE contexts, per idle connection.
FINISHED = ServerEch(())
