"""Key types, signature schemes and CertificateVerify signatures (RFC 8446 §4.2.3, §4.4.3).

`verify_certificate_verify()` takes the peer's bytes and raises only `Alert` subclasses.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TypeAlias, cast

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.x509.oid import PublicKeyAlgorithmOID

from ..alerts import (
    DecryptError,
    HandshakeFailure,
    IllegalParameter,
    LocalProtocolError,
    UnsupportedCertificate,
)
from .constants import SignatureScheme

try:  # ML-DSA arrived in cryptography 48; support it only where present.
    from cryptography.hazmat.primitives.asymmetric import mldsa as _mldsa

    HAVE_MLDSA = True
    _MLDSA_PRIVATE: dict[type, SignatureScheme] = {
        _mldsa.MLDSA44PrivateKey: SignatureScheme.mldsa44,
        _mldsa.MLDSA65PrivateKey: SignatureScheme.mldsa65,
        _mldsa.MLDSA87PrivateKey: SignatureScheme.mldsa87,
    }
    _MLDSA_PUBLIC: dict[type, SignatureScheme] = {
        _mldsa.MLDSA44PublicKey: SignatureScheme.mldsa44,
        _mldsa.MLDSA65PublicKey: SignatureScheme.mldsa65,
        _mldsa.MLDSA87PublicKey: SignatureScheme.mldsa87,
    }
except ImportError:  # pragma: no cover - older cryptography
    HAVE_MLDSA = False
    _MLDSA_PRIVATE = {}
    _MLDSA_PUBLIC = {}

PrivateKey: TypeAlias = (
    "ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey"
    " | ed448.Ed448PrivateKey | _mldsa.MLDSA44PrivateKey | _mldsa.MLDSA65PrivateKey"
    " | _mldsa.MLDSA87PrivateKey"
)
PublicKey: TypeAlias = (
    "ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey"
    " | ed448.Ed448PublicKey | _mldsa.MLDSA44PublicKey | _mldsa.MLDSA65PublicKey"
    " | _mldsa.MLDSA87PublicKey"
)

# RFC 8446 §4.4.3: 64 spaces, the context string, a zero byte, the transcript hash.
SERVER_CONTEXT = b"TLS 1.3, server CertificateVerify"
CLIENT_CONTEXT = b"TLS 1.3, client CertificateVerify"

_EC_SCHEMES = {
    "secp256r1": SignatureScheme.ecdsa_secp256r1_sha256,
    "secp384r1": SignatureScheme.ecdsa_secp384r1_sha384,
    "secp521r1": SignatureScheme.ecdsa_secp521r1_sha512,
}
_RSAE_SCHEMES = [
    SignatureScheme.rsa_pss_rsae_sha256,
    SignatureScheme.rsa_pss_rsae_sha384,
    SignatureScheme.rsa_pss_rsae_sha512,
]
_PSS_SCHEMES = [
    SignatureScheme.rsa_pss_pss_sha256,
    SignatureScheme.rsa_pss_pss_sha384,
    SignatureScheme.rsa_pss_pss_sha512,
]
_HASHES: dict[SignatureScheme, type[hashes.HashAlgorithm]] = {
    SignatureScheme.ecdsa_secp256r1_sha256: hashes.SHA256,
    SignatureScheme.ecdsa_secp384r1_sha384: hashes.SHA384,
    SignatureScheme.ecdsa_secp521r1_sha512: hashes.SHA512,
    SignatureScheme.rsa_pss_rsae_sha256: hashes.SHA256,
    SignatureScheme.rsa_pss_rsae_sha384: hashes.SHA384,
    SignatureScheme.rsa_pss_rsae_sha512: hashes.SHA512,
    SignatureScheme.rsa_pss_pss_sha256: hashes.SHA256,
    SignatureScheme.rsa_pss_pss_sha384: hashes.SHA384,
    SignatureScheme.rsa_pss_pss_sha512: hashes.SHA512,
}
MIN_RSA_BITS = 2048

# What we offer in signature_algorithms, most preferred first. The rsa_pkcs1_*
# entries come last and "refer solely to signatures which appear in
# certificates" (RFC 8446 §4.2.3): many chains are PKCS#1-signed, and peers such as
# OpenSSL check the chain against this list; CertificateVerify never uses them.
DEFAULT_SIGNATURE_SCHEMES: tuple[SignatureScheme, ...] = (
    SignatureScheme.ecdsa_secp256r1_sha256,
    SignatureScheme.ecdsa_secp384r1_sha384,
    SignatureScheme.ecdsa_secp521r1_sha512,
    SignatureScheme.ed25519,
    SignatureScheme.ed448,
    SignatureScheme.rsa_pss_rsae_sha256,
    SignatureScheme.rsa_pss_rsae_sha384,
    SignatureScheme.rsa_pss_rsae_sha512,
    SignatureScheme.rsa_pss_pss_sha256,
    SignatureScheme.rsa_pss_pss_sha384,
    SignatureScheme.rsa_pss_pss_sha512,
    *(
        (SignatureScheme.mldsa44, SignatureScheme.mldsa65, SignatureScheme.mldsa87)
        if HAVE_MLDSA
        else ()
    ),
    SignatureScheme.rsa_pkcs1_sha256,
    SignatureScheme.rsa_pkcs1_sha384,
    SignatureScheme.rsa_pkcs1_sha512,
)


def _key_name(key: object) -> str:
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        return f"EC {key.curve.name}"
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return f"RSA-{key.key_size}"
    name = type(key).__name__
    for suffix in ("PrivateKey", "PublicKey"):
        name = name.removesuffix(suffix)
    return name


def schemes_for_key(key: object) -> list[SignatureScheme]:
    """The TLS 1.3 CertificateVerify schemes `key` (private or public) can use.

    Empty for key types TLS 1.3 cannot sign with. RSA keys only get RSASSA-PSS
    (RFC 8446 §4.4.3: "RSA signatures MUST use an RSASSA-PSS algorithm").
    """
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        scheme = _EC_SCHEMES.get(key.curve.name)
        return [scheme] if scheme is not None else []
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return list(_RSAE_SCHEMES)
    if isinstance(key, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey):
        return [SignatureScheme.ed25519]
    if isinstance(key, ed448.Ed448PrivateKey | ed448.Ed448PublicKey):
        return [SignatureScheme.ed448]
    for table in (_MLDSA_PRIVATE, _MLDSA_PUBLIC):
        for cls, scheme in table.items():
            if isinstance(key, cls):
                return [scheme]
    return []


def _schemes_for_peer(key_or_cert: object) -> tuple[PublicKey, list[SignatureScheme]]:
    if isinstance(key_or_cert, x509.Certificate):
        try:
            public_key = key_or_cert.public_key()
            key_or_cert.public_key_algorithm_oid  # noqa: B018 - parse it now, inside the try
        except Exception as err:  # lazily parsed peer bytes: see _verify_chain
            raise UnsupportedCertificate(
                f"cannot use the certificate's public key: {err}"
            ) from None
        if key_or_cert.public_key_algorithm_oid == PublicKeyAlgorithmOID.RSASSA_PSS:
            return cast("PublicKey", public_key), schemes_for_certificate(key_or_cert)
        key_or_cert = public_key
    schemes = schemes_for_key(key_or_cert)
    if not schemes:
        raise UnsupportedCertificate(
            f"the peer's {_key_name(key_or_cert)} key cannot sign TLS 1.3 handshakes"
        )
    return cast("PublicKey", key_or_cert), schemes


def schemes_for_certificate(cert: x509.Certificate) -> list[SignatureScheme]:
    """The CertificateVerify schemes that fit `cert`'s key (RSASSA-PSS OID: rsa_pss_pss_*)."""
    if cert.public_key_algorithm_oid == PublicKeyAlgorithmOID.RSASSA_PSS:
        # RFC 8446 §4.2.3: rsa_pss_pss_* for public keys with the RSASSA-PSS OID,
        # rsa_pss_rsae_* for rsaEncryption keys.
        return list(_PSS_SCHEMES)
    try:
        return schemes_for_key(cert.public_key())
    except (ValueError, UnsupportedAlgorithm):
        return []


def choose_scheme(
    key: PrivateKey,
    peer_schemes: Iterable[int],
    allowed: Iterable[int] | None = None,
    certificate: x509.Certificate | None = None,
) -> SignatureScheme:
    """The first scheme in the peer's preference order that `key` can sign with.

    `allowed` (our configured list) filters further; with `certificate` (our
    leaf) the schemes are those of its key's OID. Raises HandshakeFailure when
    there is none (RFC 8446 §4.4.2.2).
    """
    if certificate is None and allowed is None:
        mine: Sequence[SignatureScheme] = _key_schemes(key)
        permitted: set[int] | frozenset[int] = frozenset(mine)
    else:
        mine = schemes_for_key(key) if certificate is None else schemes_for_certificate(certificate)
        permitted = set(mine if allowed is None else (s for s in mine if s in set(allowed)))
    offered = list(peer_schemes)
    for value in offered:
        if value in permitted:
            return SignatureScheme(value)
    raise HandshakeFailure(
        f"no common signature scheme for a {_key_name(key)} key: we can use "
        f"{[s.name for s in mine if s in permitted]}, the peer offered "
        f"{[_scheme_name(v) for v in offered]}"
    )


def _scheme_name(value: int) -> str:
    try:
        return SignatureScheme(value).name
    except ValueError:
        return f"0x{value:04x}"


def certificate_verify_content(transcript_hash: bytes, is_server: bool) -> bytes:
    """The bytes a CertificateVerify signs (RFC 8446 §4.4.3, unchanged by RFC 9147)."""
    context = SERVER_CONTEXT if is_server else CLIENT_CONTEXT
    return b" " * 64 + context + b"\x00" + bytes(transcript_hash)


def _pss(scheme: SignatureScheme) -> tuple[padding.PSS, hashes.HashAlgorithm]:
    algorithm = _HASHES[scheme]()
    # RFC 8446 §4.2.3: "The length of the Salt MUST be equal to the length of the
    # output of the digest algorithm."
    return padding.PSS(padding.MGF1(algorithm), algorithm.digest_size), algorithm


def sign_certificate_verify(
    key: PrivateKey, scheme: int, transcript_hash: bytes, is_server: bool
) -> bytes:
    """Sign a CertificateVerify. Raises LocalProtocolError if `scheme` does not fit `key`."""
    try:
        signer = _SIGNERS.get((key, scheme))
    except TypeError:  # an unhashable key type (e.g. a user's wrapper): no caching
        return _signer(key, scheme)(certificate_verify_content(transcript_hash, is_server))
    if signer is None:
        signer = _signer(key, scheme)
        if len(_SIGNERS) >= _MAX_CACHED_KEYS:
            _SIGNERS.clear()
        _SIGNERS[(key, scheme)] = signer
    return signer(certificate_verify_content(transcript_hash, is_server))


# Keys are configuration: what depends only on the key (the schemes it can use, how it
# signs) is worked out once per key, not per handshake. Keys hash by identity.
_MAX_CACHED_KEYS = 64
_SIGNERS: dict[tuple[object, int], Callable[[bytes], bytes]] = {}
_KEY_SCHEMES: dict[object, tuple[SignatureScheme, ...]] = {}


def _key_schemes(key: object) -> tuple[SignatureScheme, ...]:
    """schemes_for_key(key), kept per key object."""
    try:
        schemes = _KEY_SCHEMES.get(key)
    except TypeError:  # an unhashable key type: no caching
        return tuple(schemes_for_key(key))
    if schemes is None:
        schemes = tuple(schemes_for_key(key))
        if len(_KEY_SCHEMES) >= _MAX_CACHED_KEYS:
            _KEY_SCHEMES.clear()
        _KEY_SCHEMES[key] = schemes
    return schemes


def _signer(key: PrivateKey, scheme: int) -> Callable[[bytes], bytes]:
    """A function signing CertificateVerify content with `key` under `scheme`."""
    usable = schemes_for_key(key)
    if isinstance(key, rsa.RSAPrivateKey):
        usable += _PSS_SCHEMES  # the same signature, for a certificate with the PSS OID
    if scheme not in usable:
        raise LocalProtocolError(
            f"signature scheme {_scheme_name(scheme)} cannot be used with a {_key_name(key)} key"
        )
    scheme = SignatureScheme(scheme)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        ec_key, ecdsa = key, ec.ECDSA(_HASHES[scheme]())
        return lambda content: ec_key.sign(content, ecdsa)
    if isinstance(key, rsa.RSAPrivateKey):
        rsa_key, (pad, algorithm) = key, _pss(scheme)
        return lambda content: rsa_key.sign(content, pad, algorithm)
    # Ed25519, Ed448, ML-DSA (empty context string): the algorithm fixes the hash.
    sign = key.sign

    def sign_bytes(content: bytes) -> bytes:
        return bytes(sign(content))

    return sign_bytes


def verify_certificate_verify(
    public_key_or_cert: object,
    scheme: int,
    signature: bytes,
    transcript_hash: bytes,
    is_server: bool,
    offered: Iterable[int] | None = None,
) -> None:
    """Check a peer's CertificateVerify.

    Raises IllegalParameter when `scheme` is not one we offered (when
    `offered` is given) or does not fit the key (RFC 8446 §4.4.3, incl.
    PKCS#1 v1.5), DecryptError when the signature does not verify
    ("the receiver MUST terminate the handshake with a decrypt_error alert").
    """
    public_key, fitting = _schemes_for_peer(public_key_or_cert)
    if offered is not None and scheme not in set(offered):
        raise IllegalParameter(
            f"CertificateVerify uses {_scheme_name(scheme)}, which we did not offer"
        )
    if scheme not in fitting:
        raise IllegalParameter(
            f"CertificateVerify scheme {_scheme_name(scheme)} does not fit the peer's "
            f"{_key_name(public_key)} key"
        )
    content = certificate_verify_content(transcript_hash, is_server)
    sig = bytes(signature)
    s = SignatureScheme(scheme)
    try:
        if isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(sig, content, ec.ECDSA(_HASHES[s]()))
        elif isinstance(public_key, rsa.RSAPublicKey):
            pad, algorithm = _pss(s)
            public_key.verify(sig, content, pad, algorithm)
        else:
            public_key.verify(sig, content)
    except (InvalidSignature, ValueError) as err:
        raise DecryptError(
            f"CertificateVerify signature ({s.name}) does not verify"
            + (f": {err}" if str(err) else "")
        ) from None


# -- chains from the peer ---------------------------------------------------------------
