"""The Certificate and CertificateVerify a handshake sends and reads (RFC 8446 §4.4.2,
§4.4.3), both roles: the peer's chain or raw public key (RFC 7250) checked and verified,
a CompressedCertificate opened (RFC 8879), a delegated credential's key used (RFC 9345),
and our own Certificate (compressed when the peer asked) and CertificateVerify sent.

Functions of `HandshakeContext` (context.py binds them; it holds the state they use).
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from .._fast import DecodeError
from ..alerts import (
    CertificateRequired,
    DecodeErrorAlert,
    IllegalParameter,
    UnexpectedMessage,
    UnsupportedCertificate,
)
from ..config import ClientConfig
from . import certificates as certs
from . import compression, delegated, raw_keys, stapling, trust_anchors, verification
from . import messages as msgs
from .constants import HandshakeType, SignatureScheme

if TYPE_CHECKING:
    from .context import HandshakeContext

# Wire values to members by a dict lookup (cheaper than calling the enum).
_SIGNATURE_SCHEMES = {int(s): s for s in SignatureScheme}


def on_certificate(
    self: HandshakeContext,
    msg: msgs.Certificate,
    body: bytes,
    msg_type: int = HandshakeType.certificate,
) -> None:
    cfg = self.config
    if msg.certificate_request_context != b"":
        raise IllegalParameter("non-empty certificate_request_context")
    if not msg.certificate_list:
        if self.is_client:
            raise DecodeErrorAlert("server sent an empty Certificate")
        raise CertificateRequired("client sent no certificate")
    if isinstance(cfg, ClientConfig):
        asked_anchors = cfg.trust_anchor_ids is not None
        self.peer_stapled = stapling.peer_stapled_untrusted(
            msg.certificate_list,
            cfg.request_ocsp,
            cfg.request_signed_certificate_timestamps,
            asked_anchors,
        )
        if asked_anchors:
            self.trust_anchor_matched = trust_anchors.matched_untrusted(msg.certificate_list)
    else:
        stapling.check_client_entries_untrusted(msg.certificate_list)
    if self.peer_type == raw_keys.CertificateType.RawPublicKey:
        entries = [e.cert_data for e in msg.certificate_list]
        self.peer_public_key = raw_keys.peer_key_untrusted(entries, cfg.pinned)
        self.peer_verification = verification.verify_peer(self, (), self.peer_public_key)
        self._work.transcript.add(HandshakeType.certificate, body)
        return
    if raw_keys.CertificateType.X509 not in cfg.peer_types:
        # We accept only raw public keys, which the peer did not agree to send.
        raise UnsupportedCertificate("an X.509 certificate where a raw public key was needed")
    chain = self._parse_peer_chain_untrusted(msg.certificate_list)
    # The trust store's verdict and verify_callback's; raises when the chain is rejected
    # and verification is required (RFC 8446 §4.4.2.4).
    self.peer_verification = verification.verify_peer(self, chain, None)
    if isinstance(cfg, ClientConfig):
        stapling.run_client_callback(cfg, self.peer_stapled, chain)
        self._work.peer_delegation = delegated.peer_credential_untrusted(
            msg.certificate_list,
            chain[0],
            cfg.dc_schemes,
            signing_schemes(cfg.schemes),
            self._wall_clock(),
        )
    self.peer_chain = chain
    # RFC 8879 §4: CompressedCertificate replaces Certificate, in the transcript too.
    self._work.transcript.add(msg_type, body)


def parse_peer_chain_untrusted(
    self: HandshakeContext, entries: tuple[msgs.CertificateEntry, ...]
) -> tuple[x509.Certificate, ...]:
    """The peer's certificates, parsed (BadCertificate when one is malformed)."""
    return tuple(certs.parse_certificate_chain_untrusted(e.cert_data for e in entries))


def decompress_certificate(self: HandshakeContext, body: bytes, offered: bool) -> msgs.Certificate:
    """The Certificate a CompressedCertificate carries (RFC 8879 §4); `offered`: we
    sent compress_certificate (else the message is unexpected_message)."""
    if not offered or not self.config.compression:
        raise UnexpectedMessage("CompressedCertificate, but no compression was offered")

    def parse(view: memoryview) -> msgs.Certificate:
        # §5: "processed as if it were encoded without being compressed".
        try:
            msg = msgs.pull_message(HandshakeType.certificate, view)
        except DecodeError as exc:
            raise DecodeErrorAlert(f"certificate: {exc}") from None
        assert isinstance(msg, msgs.Certificate)
        return msg

    algorithm, certificate = compression.open_untrusted(
        body,
        self.config.compression,
        self.config.max_handshake_message,
        self._work.scratch,
        parse,
    )
    self._work.certificate_compression_received = algorithm
    self._count("certificates_decompressed", 1)
    result: msgs.Certificate = certificate
    return result


def on_certificate_verify(
    self: HandshakeContext, cv: msgs.CertificateVerify, body: bytes, now: float, seq: int, addr: Any
) -> None:
    dc = self._work.peer_delegation
    # RFC 9345 §4.1.3: with a delegated credential, its scheme and its key.
    offered = (dc.dc_cert_verify_algorithm,) if dc else signing_schemes(self.config.schemes)
    if cv.algorithm not in offered:
        raise IllegalParameter(f"signature scheme 0x{cv.algorithm:04x} was not offered")
    scheme = _SIGNATURE_SCHEMES.get(cv.algorithm) or SignatureScheme(cv.algorithm)
    peer_key = self.peer_public_key
    certs.verify_certificate_verify(
        # The certificate itself, not its key: its key may not parse (unsupported_certificate,
        # also when the chain was not verified), and its OID may bind it to RSASSA-PSS.
        delegated.peer_key_untrusted(dc)
        if dc
        else raw_keys.load_peer_key(peer_key)
        if peer_key
        else self.peer_chain[0],
        scheme,
        cv.signature,
        self._work.transcript.digest(),
        is_server=self.is_client,
    )
    if self.is_client:
        self.scheme = scheme
    self._work.transcript.add(HandshakeType.certificate_verify, body)
    self._set_state(self._after_certificate_verify)


def send_certificate_and_verify(
    self: HandshakeContext,
    scheme: SignatureScheme,
    body: bytes | None = None,
    key: Any = None,
    chain: tuple[x509.Certificate, ...] | None = None,
) -> None:
    """Certificate (or CompressedCertificate) and CertificateVerify: `body` (an encoded
    Certificate of `chain`) and `key`, or the configured chain (or raw key) and key."""
    cfg = self.config
    if body is None:
        key = cfg.key
        if self._work.own_type == raw_keys.CertificateType.RawPublicKey:
            body, chain = raw_key_certificate_body(cfg.own_spki), None
        else:
            chain = cfg.chain
            body = certificate_body(chain)
    # A raw key is not compressed (OpenSSL does not either): ~100 bytes.
    algorithm = (
        compression.choose(self._work.peer_compression, cfg.compression)
        if chain is not None
        else None
    )
    compressed = (
        compression.compressed_certificate_body(chain, body, algorithm)
        if algorithm is not None and chain is not None
        else None
    )
    if compressed is None:
        self._send_encoded(HandshakeType.certificate, body, 2)
    else:
        # RFC 8879 §4: sent instead of the Certificate message, hashed as sent.
        self._work.certificate_compression_sent = algorithm
        self._count("certificates_compressed", 1)
        self._send_encoded(HandshakeType.compressed_certificate, compressed, 2)
    signature = certs.sign_certificate_verify(
        key, scheme, self._work.transcript.digest(), is_server=not self.is_client
    )
    self._send(msgs.CertificateVerify(scheme, signature), 2)


# Our own Certificate message depends only on the configured chain: encoded once per chain.
_CERTIFICATE_BODIES: dict[int, tuple[tuple[x509.Certificate, ...], bytes]] = {}


def certificate_body(chain: tuple[x509.Certificate, ...]) -> bytes:
    """The body of a Certificate message (empty request context) carrying `chain`."""
    entry = _CERTIFICATE_BODIES.get(id(chain))
    if entry is not None and entry[0] is chain:
        return entry[1]
    entries = tuple(msgs.CertificateEntry(c.public_bytes(Encoding.DER)) for c in chain)
    _, body = msgs.push_message(msgs.Certificate(b"", entries))
    if len(_CERTIFICATE_BODIES) >= 64:
        _CERTIFICATE_BODIES.clear()
    _CERTIFICATE_BODIES[id(chain)] = (chain, body)
    return body


def raw_key_certificate_body(spki: bytes) -> bytes:
    """A Certificate message body with our raw public key (RFC 8446 §4.4.2, RFC 7250 §3)."""
    _, body = msgs.push_message(msgs.Certificate(b"", (msgs.CertificateEntry(spki),)))
    return body


_PKCS1 = frozenset(
    {
        SignatureScheme.rsa_pkcs1_sha256,
        SignatureScheme.rsa_pkcs1_sha384,
        SignatureScheme.rsa_pkcs1_sha512,
    }
)


@lru_cache(maxsize=64)
def signing_schemes(schemes: tuple[SignatureScheme, ...]) -> tuple[SignatureScheme, ...]:
    """The configured schemes CertificateVerify may use (not PKCS#1 v1.5, RFC 8446 §4.4.3)."""
    return tuple(s for s in schemes if s not in _PKCS1)
