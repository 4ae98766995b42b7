"""Delegated credentials (RFC 9345): a short-lived key the leaf certificate's key vouches for.

A server holding a delegated credential (DC) signs its CertificateVerify with the DC's key
instead of the certificate's; the DC itself, signed by the leaf's key, travels in the leaf's
CertificateEntry (RFC 9345 §4.1.2). The server uses one only for a client that sent the
delegated_credential extension naming the DC's scheme, and whose signature_algorithms
hold the scheme the leaf signed the DC with (§4.1.1). A client offers the extension
(`ClientConfig.delegated_credential_schemes`), then checks a DC it receives: the leaf's
signature on it, its validity (not expired, at most 7 days ahead), the leaf's
DelegationUsage extension and digitalSignature key usage (§4.2), and verifies the
CertificateVerify with the DC's key and scheme (§4.1.3).

Encodings (RFC 9345 §4):
  struct { uint32 valid_time; SignatureScheme dc_cert_verify_algorithm;
           opaque ASN1_subjectPublicKeyInfo<1..2^24-1>; } Credential;
  struct { Credential cred; SignatureScheme algorithm; opaque signature<1..2^16-1>; }
      DelegatedCredential;
  signed: 64 spaces, "TLS, server delegated credentials", 0x00, the leaf's DER,
      Credential, algorithm.

Functions ending in _untrusted read the peer's bytes and raise only Alert subclasses;
configuration (`own`, `delegated_credential`) raises ValueError / TypeError at once.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding

from .._fast import Buffer, DecodeError
from ..alerts import DecodeErrorAlert, IllegalParameter, UnexpectedMessage
from . import extensions as ext
from . import messages as msgs
from .constants import ExtensionType, SignatureScheme
from .signatures import (
    _HASHES,
    PrivateKey,
    _pss,
    _scheme_name,
    _schemes_for_peer,
    _signer,
    schemes_for_key,
)

EXTENSION = ExtensionType.delegated_credential
# id-pe-delegationUsage (RFC 9345 §4.2): DelegationUsage ::= NULL.
DELEGATION_USAGE = x509.ObjectIdentifier("1.3.6.1.4.1.44363.44")
DELEGATION_USAGE_VALUE = b"\x05\x00"
# §4.1.3: a DC valid for more than 7 days from now is invalid; §3: so is minting one.
MAX_VALID_TIME = 7 * 24 * 3600
SERVER_CONTEXT = b"TLS, server delegated credentials"


@dataclass(frozen=True, slots=True)
class DelegatedCredential:
    """A parsed DelegatedCredential; `raw` is its encoding as sent."""

    valid_time: int  # seconds after the leaf's notBefore when it expires
    dc_cert_verify_algorithm: int  # the scheme the DC's key signs CertificateVerify with
    public_key: bytes  # DER SubjectPublicKeyInfo
    algorithm: int  # the scheme the leaf's key signed the DC with
    signature: bytes
    raw: bytes

    def expires(self, leaf: x509.Certificate) -> datetime.datetime:
        return _not_before(leaf) + datetime.timedelta(seconds=self.valid_time)


def pull_delegated_credential(buf: Buffer) -> DelegatedCredential:
    start = buf.tell()
    valid_time = buf.pull_uint32()
    scheme = buf.pull_uint16()
    public_key = buf.pull_vector(3)
    algorithm = buf.pull_uint16()
    signature = buf.pull_vector(2)
    if not public_key or not signature:
        raise DecodeError("empty public key or signature in a delegated credential")
    raw = buf.data_slice(start, buf.tell())
    return DelegatedCredential(valid_time, scheme, public_key, algorithm, signature, raw)


def _credential_bytes(valid_time: int, scheme: int, public_key: bytes) -> bytes:
    buf = Buffer(capacity=len(public_key) + 16)
    try:
        buf.push_uint32(valid_time)
        buf.push_uint16(scheme)
        buf.push_vector(3, public_key)
        return buf.data
    finally:
        buf.close()


def signed_content(leaf_der: bytes, dc: DelegatedCredential) -> bytes:
    """What the leaf's key signs (RFC 9345 §4)."""
    cred = _credential_bytes(dc.valid_time, dc.dc_cert_verify_algorithm, dc.public_key)
    return b" " * 64 + SERVER_CONTEXT + b"\x00" + leaf_der + cred + dc.algorithm.to_bytes(2)


def decode(data: bytes) -> DelegatedCredential:
    """A DelegatedCredential from its encoding; DecodeError when malformed."""
    return ext.decode(data, pull_delegated_credential)


def _not_before(cert: x509.Certificate) -> datetime.datetime:
    return cert.not_valid_before_utc


def leaf_allows_delegation(leaf: x509.Certificate) -> str | None:
    """Why `leaf` cannot issue delegated credentials (RFC 9345 §4.2), or None."""
    try:
        extensions = leaf.extensions
        extensions.get_extension_for_oid(DELEGATION_USAGE)
        usage = extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound as missing:
        if missing.oid == DELEGATION_USAGE:
            return "the certificate has no DelegationUsage extension"
        return "the certificate has no key usage extension (digitalSignature is required)"
    except Exception as err:  # the peer's bytes, parsed lazily by cryptography
        return f"the certificate's extensions do not parse: {err}"
    if not usage.digital_signature:
        return "the certificate's key usage lacks digitalSignature"
    return None


# -- minting and configuration (programmer input: raise at once) -----------------------------


def delegated_credential(
    leaf_cert: x509.Certificate,
    leaf_key: PrivateKey,
    dc_key: PrivateKey,
    scheme: SignatureScheme | str | int,
    valid_for: datetime.timedelta | float,
    *,
    algorithm: SignatureScheme | str | int | None = None,
    now: datetime.datetime | None = None,
) -> bytes:
    """A delegated credential (its encoding) for `dc_key`, signed by `leaf_key`.

    `scheme`: what `dc_key` will sign CertificateVerify with; `valid_for`: how long from
    `now` (default: the current time) it stays valid, at most 7 days (RFC 9345 §3);
    `algorithm`: the scheme `leaf_key` signs with (default: its first). Give the result,
    with `dc_key` as the private key and the leaf's chain, to a Credential's
    `delegated_credential`.
    """
    scheme = _to_scheme(scheme)
    if scheme not in schemes_for_key(dc_key):
        raise ValueError(f"the delegated key cannot sign with {scheme.name}")
    leaf_schemes = schemes_for_key(leaf_key)
    sign_with = leaf_schemes[0] if algorithm is None else _to_scheme(algorithm)
    if sign_with not in leaf_schemes:
        raise ValueError(f"the leaf's key cannot sign with {_scheme_name(sign_with)}")
    seconds = valid_for.total_seconds() if isinstance(valid_for, datetime.timedelta) else valid_for
    if not 0 < seconds <= MAX_VALID_TIME:
        raise ValueError("valid_for must be more than 0 and at most 7 days (RFC 9345 §3)")
    now = now or datetime.datetime.now(datetime.UTC)
    valid_time = int((now - _not_before(leaf_cert)).total_seconds() + seconds)
    if not 0 < valid_time < 1 << 32:
        raise ValueError("the leaf's notBefore is in the future or too far in the past")
    spki = dc_key.public_key().public_bytes(
        Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    unsigned = DelegatedCredential(valid_time, scheme, spki, sign_with, b"", b"")
    signature = _signer(leaf_key, sign_with)(
        signed_content(leaf_cert.public_bytes(Encoding.DER), unsigned)
    )
    cred = _credential_bytes(valid_time, scheme, spki)
    return cred + sign_with.to_bytes(2) + len(signature).to_bytes(2) + signature


def _to_scheme(value: object) -> SignatureScheme:
    """A SignatureScheme from a member, its number or its name (programmer input)."""
    if isinstance(value, str):
        match = SignatureScheme.__members__.get(value.lower())
        if match is None:
            raise ValueError(f"unknown signature scheme {value!r}")
        return match
    if isinstance(value, int):
        try:
            return SignatureScheme(value)
        except ValueError:
            raise ValueError(f"unknown signature scheme 0x{value:04x}") from None
    raise TypeError(f"a signature scheme is a name, a number or a member, not {value!r}")


def own(data: object, leaf: x509.Certificate, key: PrivateKey) -> DelegatedCredential:
    """A credential's configured DC: it parses, its public key is `key`'s and `key` signs
    with its scheme. Its signature and expiry are the client's to check (as BoringSSL)."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"delegated_credential is bytes, not {type(data).__name__}")
    try:
        dc = decode(bytes(data))
    except DecodeError as err:
        raise ValueError(f"delegated_credential does not parse: {err}") from None
    mine = key.public_key().public_bytes(
        Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if dc.public_key != mine:
        raise ValueError("the private key does not match the delegated credential's public key")
    if dc.dc_cert_verify_algorithm not in schemes_for_key(key):
        raise ValueError(
            f"the delegated credential's scheme {_scheme_name(dc.dc_cert_verify_algorithm)} "
            "does not fit its key"
        )
    return dc


def leaf_entry(chain: Sequence[x509.Certificate], dc: DelegatedCredential) -> msgs.CertificateEntry:
    """The leaf's CertificateEntry carrying `dc` (RFC 9345 §4.1.2)."""
    return msgs.CertificateEntry(
        chain[0].public_bytes(Encoding.DER), (ext.Extension(EXTENSION, dc.raw),)
    )


# -- server: which credential a ClientHello allows ------------------------------------------


def offered_schemes_untrusted(data: bytes | None) -> tuple[int, ...] | None:
    """The schemes of a ClientHello's delegated_credential extension (None: not sent)."""
    if data is None:
        return None
    try:
        return ext.decode(data, ext.pull_signature_algorithms)
    except DecodeError as err:
        raise DecodeErrorAlert(f"malformed delegated_credential: {err}") from None


def scheme_for(
    cred: Any,
    offered: Sequence[int],
    preference: Sequence[int] | None,
    dc_offered: Sequence[int] | None,
) -> int | None:
    """The CertificateVerify scheme `cred` signs with for this client (None: unusable).

    With a DC: its scheme, if the client's delegated_credential names it and its
    signature_algorithms name the scheme the leaf signed the DC with (RFC 9345 §4.1.1).
    """
    dc: DelegatedCredential | None = cred.delegation
    if dc is None:
        found: int | None = cred.scheme_for(offered, preference)
        return found
    if dc_offered is None or dc.dc_cert_verify_algorithm not in dc_offered:
        return None
    if dc.algorithm not in offered:
        return None
    return dc.dc_cert_verify_algorithm


def unusable_reason(credentials: Sequence[Any], dc_offered: Sequence[int] | None) -> str | None:
    """Why no credential fits when each holds a delegated credential (None: not that)."""
    if not credentials or any(c.delegation is None for c in credentials):
        return None
    if dc_offered is None:
        return "only delegated credentials, and the client did not ask for them (RFC 9345)"
    return (
        "no delegated credential for a scheme the client accepts: ours "
        f"{sorted({_scheme_name(c.delegation.dc_cert_verify_algorithm) for c in credentials})}, "
        f"offered {[_scheme_name(s) for s in dc_offered]}"
    )


# -- client: checking what the server sent ----------------------------------------------------


def client_extension(schemes: Sequence[int]) -> ext.Extension:
    return ext.make_extension(EXTENSION, ext.push_signature_algorithms, list(schemes))


def peer_credential_untrusted(
    entries: Sequence[msgs.CertificateEntry],
    leaf: x509.Certificate,
    offered: Sequence[int],
    signature_schemes: Sequence[int],
    now: datetime.datetime,
) -> DelegatedCredential | None:
    """The server's DC, checked (RFC 9345 §4.1.3), or None when it sent none.

    `offered`: our delegated_credential schemes (empty: we sent none, and a DC is then
    unexpected_message, §4.1.1); `signature_schemes`: our signature_algorithms. An
    invalid DC is illegal_parameter (§4.1.3); a DC on another certificate is ignored
    (§4.1.2: "SHOULD ignore")."""
    data = entries[0].extension(EXTENSION) if entries else None
    if data is None:
        return None
    if not offered:
        raise UnexpectedMessage("a delegated credential we did not ask for")
    try:
        dc = decode(data)
    except DecodeError as err:
        raise DecodeErrorAlert(f"malformed delegated credential: {err}") from None
    reason = leaf_allows_delegation(leaf)
    if reason is not None:
        raise IllegalParameter(f"delegated credential refused: {reason}")
    if dc.dc_cert_verify_algorithm not in offered:
        raise IllegalParameter(
            f"delegated credential for {_scheme_name(dc.dc_cert_verify_algorithm)}, "
            "which we did not offer"
        )
    if dc.algorithm not in signature_schemes:
        raise IllegalParameter(
            f"delegated credential signed with {_scheme_name(dc.algorithm)}, not offered"
        )
    expires = dc.expires(leaf)
    if now.tzinfo is None:  # an application's wall clock without a zone: taken as UTC
        now = now.replace(tzinfo=datetime.UTC)
    if now >= expires:
        raise IllegalParameter("delegated credential expired")
    if (expires - now).total_seconds() > MAX_VALID_TIME:
        raise IllegalParameter("delegated credential valid for more than 7 days")
    _verify_signature(leaf, dc)
    return dc


def _verify_signature(leaf: x509.Certificate, dc: DelegatedCredential) -> None:
    public_key, fitting = _schemes_for_peer(leaf)
    if dc.algorithm not in fitting:
        raise IllegalParameter(
            f"delegated credential signed with {_scheme_name(dc.algorithm)}, "
            "which does not fit the certificate's key"
        )
    content = signed_content(leaf.public_bytes(Encoding.DER), dc)
    scheme = SignatureScheme(dc.algorithm)
    try:
        if isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(dc.signature, content, ec.ECDSA(_HASHES[scheme]()))
        elif isinstance(public_key, rsa.RSAPublicKey):
            pad, algorithm = _pss(scheme)
            public_key.verify(dc.signature, content, pad, algorithm)
        else:
            public_key.verify(dc.signature, content)
    except (InvalidSignature, ValueError):
        raise IllegalParameter("the delegated credential's signature does not verify") from None


def peer_key_untrusted(dc: DelegatedCredential) -> Any:
    """The DC's public key, for the CertificateVerify (illegal_parameter if unusable)."""
    try:
        key = serialization.load_der_public_key(dc.public_key)
    except (ValueError, UnsupportedAlgorithm) as err:
        raise IllegalParameter(f"delegated credential public key: {err}") from None
    if dc.dc_cert_verify_algorithm not in schemes_for_key(key):
        raise IllegalParameter("the delegated credential's scheme does not fit its key")
    return key
