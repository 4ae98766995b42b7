"""Encrypted Client Hello, the client's side (RFC 9849 §6), as pure computations.

`choose` picks the ECHConfig and HPKE suite to use; an `EchOffer` holds what one handshake
needs (the HPKE context, the outer random and transcript) and turns a ClientHelloInner into
its ClientHelloOuter (`seal`); `confirmation` computes the server's acceptance signal
(§7.2, §7.2.1); `grease_extension` is the GREASE extension (§6.2.1). handshake/client.py
holds the decisions that depend on the handshake's state.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Sequence

from .._fast import Buffer, DecodeError
from ..alerts import DecodeErrorAlert
from . import ech, hpke
from . import extensions as ext
from . import messages as msgs
from .constants import ExtensionType, HandshakeType
from .key_schedule import Transcript

ET = ExtensionType
ECH_TYPE = ET.encrypted_client_hello
AEAD_TAG = hpke.AEAD_TAG_LENGTH
CONFIRMATION_LENGTH = ech.CONFIRMATION_LENGTH
# Never copied from ClientHelloOuter (§5.1): the real name is the secret, the ECH
# extensions differ, and pre_shared_key is never offered in ClientHelloOuter (§6.1).
_NOT_COMPRESSED = frozenset({ET.server_name, ECH_TYPE, ET.pre_shared_key})


def valid_public_name(name: bytes) -> bool:
    """§6.1.7: a dot-separated sequence of LDH labels of at most 63 octets, not starting or
    ending with a dot, whose last label is not a number (decimal or 0x-hexadecimal), which
    could be read as an IPv4 address."""
    if not name:
        return False
    labels = name.split(b".")
    for label in labels:
        if not 0 < len(label) <= 63 or label[:1] == b"-" or label[-1:] == b"-":
            return False
        if not all(c in _LDH for c in label):
            return False
    last = labels[-1].lower()
    if last.isdigit():
        return False
    return not (last.startswith(b"0x") and all(c in _HEX for c in last[2:]))


_LDH = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-")
_HEX = frozenset(b"0123456789abcdef")


def choose(configs: Sequence[ech.EchConfig]) -> tuple[ech.EchConfig, ech.EchCipherSuite] | None:
    """The first config we can use and its first suite we support (§6.1): KEM X25519, a
    known KDF and AEAD, a valid public_name (§6.1.7), no mandatory extension (the high bit
    of its type, §4.2) we do not know -- we know none."""
    for config in configs:
        if config.kem_id != hpke.KemId.DHKEM_X25519_HKDF_SHA256:
            continue
        if any(t & 0x8000 for t, _ in config.extensions):
            continue
        if not valid_public_name(config.public_name):
            continue
        for suite in config.cipher_suites:
            if suite.supported:
                return config, suite
    return None


def inner_order(extensions: Sequence[ext.Extension]) -> list[ext.Extension]:
    """ClientHelloInner's extensions in the order compression needs (§6.1 rule 3): those
    copied from ClientHelloOuter together, after the others; pre_shared_key stays last."""
    kept = [e for e in extensions if e.type in _NOT_COMPRESSED and e.type != ET.pre_shared_key]
    copied = [e for e in extensions if e.type not in _NOT_COMPRESSED]
    psk = [e for e in extensions if e.type == ET.pre_shared_key]
    return kept + copied + psk


def inner_marker() -> ext.Extension:
    """The ClientHelloInner's encrypted_client_hello: an empty inner variant (§5)."""
    return ext.Extension(ECH_TYPE, ech.ECH_INNER_MARKER)


class EchOffer:
    """One handshake's ECH offer: the chosen config and suite, the HPKE sender context
    (kept for the second ClientHello, §6.1.5), ClientHelloOuter's random and transcript."""

    __slots__ = (
        "_context",
        "_enc",
        "config",
        "outer_hello",
        "outer_random",
        "outer_transcript",
        "suite",
    )

    def __init__(
        self,
        config: ech.EchConfig,
        suite: ech.EchCipherSuite,
        random_bytes: Callable[[int], bytes],
    ) -> None:
        self.config = config
        self.suite = suite
        self._enc, self._context = hpke.setup_base_sender(
            config.kem_id, suite.kdf, suite.aead, config.public_key, config.hpke_info
        )
        # §6.1 rule 4: a fresh random for ClientHelloOuter; the same in a second one
        # (RFC 8446 §4.1.2).
        self.outer_random = random_bytes(32)
        self.outer_transcript = Transcript()
        self.outer_hello: msgs.ClientHello | None = None

    @property
    def public_name(self) -> str:
        return self.config.public_name.decode("ascii")

    def seal(
        self, inner: msgs.ClientHello, natural: Sequence[ext.Extension], server_name: str | None
    ) -> msgs.ClientHello:
        """ClientHelloOuter for `inner` (whose extensions are in `inner_order`; `natural`
        is their order before that, which the outer keeps), its payload sealed with
        ClientHelloOuterAAD (§5.2, §6.1.1). The first call sends `enc`; a second
        ClientHello sends it empty and seals with the same context (§6.1.5)."""
        encoded = _encoded_inner(inner, self.config.maximum_name_length, server_name)
        outer_extensions: list[ext.Extension] = []
        public = ext.make_extension(ET.server_name, ext.push_server_name, self.public_name)
        for e in natural:
            if e.type == ET.server_name:
                outer_extensions.append(public)
            elif e.type not in _NOT_COMPRESSED:
                outer_extensions.append(e)
        enc, self._enc = self._enc, b""
        placeholder = bytes(len(encoded) + AEAD_TAG)

        def outer(payload: bytes) -> tuple[msgs.ClientHello, ech.EchOuter]:
            body = ech.EchOuter(self.suite, self.config.config_id, enc, payload)
            extension = ext.Extension(ECH_TYPE, ech.push_ech_outer(body))
            hello = msgs.ClientHello(
                random=self.outer_random,
                cipher_suites=inner.cipher_suites,
                extensions=(*outer_extensions, extension),
            )
            return hello, body

        aad = ech.client_hello_outer_aad(*outer(placeholder))
        hello, _ = outer(self._context.seal(aad, encoded))
        self.outer_hello = hello
        return hello


def _encoded_inner(inner: msgs.ClientHello, max_name: int, server_name: str | None) -> bytes:
    """EncodedClientHelloInner (§5.1): the extensions ClientHelloInner shares with
    ClientHelloOuter replaced by one ech_outer_extensions, padded as §6.1.3 recommends."""
    copied = [e.type for e in inner.extensions if e.type not in _NOT_COMPRESSED]
    body = ech.encode_client_hello_inner(inner, copied)
    if server_name is not None:
        padding = max(0, max_name - len(server_name.encode("ascii")))
    else:
        padding = max_name + 9  # the size of a server_name extension with such a name
    padding += 31 - ((len(body) + padding - 1) % 32)
    return body + bytes(padding)


def grease_extension(random_bytes: Callable[[int], bytes]) -> ext.Extension:
    """A GREASE encrypted_client_hello (§6.2.1): a random config_id, HKDF-SHA256 with
    AES-128-GCM, a random X25519 key as enc, and a random payload of a plausible size
    (an EncodedClientHelloInner of 128 to 224 bytes, a multiple of 32, plus the tag)."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    seed = random_bytes(2)
    enc = X25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    payload = random_bytes(32 * (4 + seed[1] % 4) + AEAD_TAG)
    suite = ech.EchCipherSuite(hpke.KdfId.HKDF_SHA256, hpke.AeadId.AES_128_GCM)
    return ext.Extension(ECH_TYPE, ech.push_ech_outer(ech.EchOuter(suite, seed[0], enc, payload)))


def confirmation(
    hash_name: str,
    inner_random: bytes,
    transcript: Transcript,
    msg_type: int,
    body: bytes,
    hrr: bool,
) -> bytes:
    """accept_confirmation (§7.2) or hrr_accept_confirmation (§7.2.1) over the inner
    transcript followed by `body` (the ServerHello or HelloRetryRequest with the signal
    already zeroed), hashed behind its TLS-style header (RFC 9147 §5.2)."""
    header = bytes([msg_type]) + len(body).to_bytes(3, "big")
    digest = transcript.digest_with(header + body, hash_name)
    compute = ech.hrr_accept_confirmation if hrr else ech.accept_confirmation
    return compute(hash_name, inner_random, digest)


def check_hrr_signal(hrr: msgs.ServerHello) -> None:
    """§6.1.4: a HelloRetryRequest's encrypted_client_hello is 8 bytes, else decode_error."""
    signal = hrr.extension(ECH_TYPE)
    if signal is not None and len(signal) != CONFIRMATION_LENGTH:
        raise DecodeErrorAlert("encrypted_client_hello in HelloRetryRequest is not 8 bytes")


def accepted(
    hash_name: str, inner_random: bytes, inner: Transcript, sh: msgs.ServerHello, body: bytes
) -> bool:
    """Whether ServerHello (or HelloRetryRequest) `sh`, encoded `body`, confirms that the
    server took ClientHelloInner (§6.1.4), `inner` being the inner transcript before it."""
    if sh.is_hello_retry_request:
        signal = sh.extension(ECH_TYPE)
        if signal is None:
            return False
        # §7.2.1: over message_hash(ClientHelloInner1) and the HRR, its signal zeroed.
        inner = inner.copy()
        inner.select(hash_name)
        inner.restart_with_message_hash()
        zeroed = zero_extension(body, ECH_TYPE)
    else:
        zeroed, signal = zero_server_hello_signal(body)
    expected = confirmation(
        hash_name,
        inner_random,
        inner,
        HandshakeType.server_hello,
        zeroed,
        sh.is_hello_retry_request,
    )
    return hmac.compare_digest(expected, signal)


def check_retry_configs(data: bytes) -> None:
    """The server's retry_configs must parse (§6.1.6, §6.2.1), else decode_error."""
    try:
        ech.pull_ech_config_list(data)
    except DecodeError as exc:
        raise DecodeErrorAlert(f"malformed retry_configs: {exc}") from None


def zero_server_hello_signal(body: bytes) -> tuple[bytes, bytes]:
    """(ServerHello with the last 8 bytes of its random zeroed, those 8 bytes) (§7.2)."""
    start = 2 + 32 - CONFIRMATION_LENGTH
    return body[:start] + bytes(CONFIRMATION_LENGTH) + body[34:], body[start:34]


def zero_extension(body: bytes, ext_type: int) -> bytes:
    """A ServerHello-shaped `body` with the data of its `ext_type` extension zeroed."""
    buf = Buffer(body)
    try:
        buf.pull_bytes(2 + 32)
        buf.pull_vector(1)
        buf.pull_bytes(2 + 1)
        end = buf.pull_uint16() + buf.tell()
        while buf.tell() < end:
            found = buf.pull_uint16()
            length = buf.pull_uint16()
            start = buf.tell()
            if found == ext_type:
                return body[:start] + bytes(length) + body[start + length :]
            buf.pull_bytes(length)
    finally:
        buf.close()
    raise DecodeError("no such extension")
