"""Certificates, private keys, trust stores and CertificateVerify signatures.

Loading functions take programmer input (configuration) and raise at once
with a message naming the source and what is wrong: `FileNotFoundError` for
a missing file, `ValueError` for everything else. Functions that take bytes
from the peer (chains, signatures) raise only `Alert` subclasses.

Chain verification uses `cryptography.x509.verification` (the CA/B web PKI
profile) and maps each failure to its alert; see `verify_server_chain()`.
"""

from __future__ import annotations

import datetime
import functools
import ipaddress
import os
import ssl
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeAlias, cast

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.oid import PublicKeyAlgorithmOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from ..alerts import (
    Alert,
    BadCertificate,
    CertificateExpired,
    CertificateRequired,
    DecodeErrorAlert,
    DecryptError,
    HandshakeFailure,
    IllegalParameter,
    LocalProtocolError,
    UnknownCa,
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
CertificateSource: TypeAlias = (
    "str | os.PathLike[str] | bytes | x509.Certificate | Sequence[x509.Certificate | bytes]"
)
KeySource: TypeAlias = "str | os.PathLike[str] | bytes | PrivateKey"

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


# -- loading (programmer input: raise at once) -------------------------------------


def _describe(source: object) -> str:
    if isinstance(source, str | os.PathLike):
        return os.fspath(source)
    return f"<{type(source).__name__}>"


def _read(source: str | os.PathLike[str], what: str) -> bytes:
    path = Path(source)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} file not found: {path}") from None
    except IsADirectoryError:
        raise ValueError(f"{what} {path} is a directory, not a file") from None
    except OSError as err:
        raise ValueError(f"cannot read {what} {path}: {err.strerror or err}") from None


@contextmanager
def _lenient() -> Iterator[None]:
    # Old roots in system bundles (and some peers) have e.g. non-positive serial
    # numbers; cryptography warns about those, which helps nobody here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        yield


def _parse_certificates(data: bytes, label: str) -> list[x509.Certificate]:
    if b"-----BEGIN" in data:
        if b"-----BEGIN CERTIFICATE-----" not in data:
            raise ValueError(f"{label}: no PEM CERTIFICATE block found")
        try:
            return x509.load_pem_x509_certificates(data)
        except ValueError:
            raise ValueError(
                f"{label}: bad PEM certificate: a CERTIFICATE block does not decode to an "
                "X.509 certificate (damaged or truncated file?)"
            ) from None
    if not data.strip():
        raise ValueError(f"{label}: empty, no certificate in it")
    try:
        return [x509.load_der_x509_certificate(data)]
    except ValueError:
        raise ValueError(
            f"{label}: neither PEM nor a DER certificate; give a file with a "
            "-----BEGIN CERTIFICATE----- block"
        ) from None


def load_certificate_chain(source: CertificateSource) -> list[x509.Certificate]:
    """Certificates from a PEM/DER file path, PEM/DER bytes, or certificate objects.

    The first certificate is the end-entity one; the rest are intermediates.
    """
    label = _describe(source)
    certs: list[x509.Certificate]
    if isinstance(source, x509.Certificate):
        certs = [source]
    elif isinstance(source, bytes | bytearray | memoryview):
        certs = _parse_certificates(bytes(source), "certificate chain bytes")
    elif isinstance(source, str | os.PathLike):
        certs = _parse_certificates(_read(source, "certificate chain"), label)
    elif isinstance(source, Sequence):
        certs = []
        for i, item in enumerate(source):
            if isinstance(item, x509.Certificate):
                certs.append(item)
            elif isinstance(item, bytes | bytearray):
                certs += _parse_certificates(bytes(item), f"certificate #{i}")
            else:
                raise ValueError(
                    f"certificate #{i} is a {type(item).__name__}, not a Certificate or bytes"
                )
    else:
        raise ValueError(
            f"certificate chain must be a path, bytes or Certificate objects, "
            f"not {type(source).__name__}"
        )
    if not certs:
        raise ValueError(f"{label}: the certificate chain is empty")
    return certs


def load_private_key(source: KeySource, password: bytes | str | None = None) -> PrivateKey:
    """A private key from a PEM/DER file path, PEM/DER bytes, or a key object.

    Raises ValueError when the key cannot be read (wrong or missing password
    included) or its type cannot sign a TLS 1.3 CertificateVerify.
    """
    if isinstance(source, str | os.PathLike):
        label = os.fspath(source)
        data: bytes | None = _read(source, "private key")
    elif isinstance(source, bytes | bytearray | memoryview):
        label, data = "private key bytes", bytes(source)
    else:
        label, data = f"<{type(source).__name__}>", None
    if isinstance(password, str):
        password = password.encode()
    key: object = source
    if data is not None:
        loader = (
            serialization.load_pem_private_key
            if b"-----BEGIN" in data
            else serialization.load_der_private_key
        )
        try:
            key = loader(data, password)
        except TypeError as err:  # password given for a plain key or missing for an encrypted one
            raise ValueError(f"{label}: {err}") from None
        except ValueError as err:
            msg = str(err)
            if password is not None and ("decrypt" in msg.lower() or "password" in msg.lower()):
                raise ValueError(f"{label}: wrong password for the private key") from None
            raise ValueError(
                f"{label}: cannot read the private key: not a PEM or DER private key "
                "(PKCS#8, SEC 1 or PKCS#1)"
            ) from None
        except UnsupportedAlgorithm as err:
            raise ValueError(f"{label}: unsupported private key type: {err}") from None
    if not schemes_for_key(key) or not hasattr(key, "sign"):
        raise ValueError(f"{label}: unsupported private key type {_key_name(key)}")
    return cast("PrivateKey", key)


def check_key_matches_certificate(key: PrivateKey, cert: x509.Certificate) -> None:
    """Raise ValueError unless `key` is the private half of `cert`'s public key."""
    mine = _spki(_public_key_of(key))
    try:
        theirs = _spki(cert.public_key())
    except (ValueError, UnsupportedAlgorithm) as err:
        raise ValueError(f"certificate {cert.subject.rfc4514_string()}: {err}") from None
    if mine != theirs:
        raise ValueError(
            f"the private key ({_key_name(key)}) does not match the certificate "
            f"{cert.subject.rfc4514_string()!r} ({_key_name(cert.public_key())})"
        )


def load_identity(
    chain: CertificateSource, key: KeySource, password: bytes | str | None = None
) -> tuple[list[x509.Certificate], PrivateKey]:
    """Load a certificate chain and its private key, checking they belong together."""
    certs = load_certificate_chain(chain)
    private_key = load_private_key(key, password)
    try:
        check_key_matches_certificate(private_key, certs[0])
    except ValueError as err:
        raise ValueError(f"{_describe(key)} / {_describe(chain)}: {err}") from None
    return certs, private_key


def _spki(public_key: object) -> bytes:
    public_bytes = getattr(public_key, "public_bytes", None)
    try:
        if public_bytes is None:
            raise AttributeError
        return bytes(
            public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
    except AttributeError:
        raise ValueError(f"{type(public_key).__name__} is not a public key") from None


def _public_key_of(key: object) -> object:
    public_key = getattr(key, "public_key", None)
    try:
        if public_key is None:
            raise AttributeError
        result: object = public_key()
        return result
    except AttributeError:
        raise ValueError(f"{type(key).__name__} is not a private key") from None


def _key_name(key: object) -> str:
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        return f"EC {key.curve.name}"
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return f"RSA-{key.key_size}"
    name = type(key).__name__
    for suffix in ("PrivateKey", "PublicKey"):
        name = name.removesuffix(suffix)
    return name


# -- trust stores ----------------------------------------------------------------

SYSTEM_CA_FILES = (
    "/etc/ssl/certs/ca-certificates.crt",  # Debian, Ubuntu, Alpine
    "/etc/pki/tls/certs/ca-bundle.crt",  # Fedora, RHEL
    "/etc/ssl/cert.pem",  # macOS, BSDs
)


@dataclass(frozen=True, slots=True)
class TrustStore:
    """Trusted root certificates and the `cryptography` Store built from them."""

    certificates: tuple[x509.Certificate, ...]
    store: Store
    sources: tuple[str, ...]

    @classmethod
    def from_certificates(
        cls, certs: Iterable[x509.Certificate], sources: Sequence[str] = ()
    ) -> TrustStore:
        unique: dict[bytes, x509.Certificate] = {}
        for cert in certs:
            unique.setdefault(cert.fingerprint(hashes.SHA256()), cert)
        if not unique:
            raise ValueError(f"no CA certificate found in {', '.join(sources) or 'the input'}")
        roots = tuple(unique.values())
        return cls(roots, Store(list(roots)), tuple(sources))

    def __len__(self) -> int:
        return len(self.certificates)


def _load_ca_dir(directory: Path) -> list[x509.Certificate]:
    if not directory.is_dir():
        if directory.exists():
            raise ValueError(f"CA folder {directory} is not a folder")
        raise FileNotFoundError(f"CA folder not found: {directory}")
    certs: list[x509.Certificate] = []
    for path in sorted(directory.iterdir()):
        if not path.is_file():
            continue
        data = _read(path, "CA certificate")
        # A folder may hold keys, CRLs, READMEs: only PEM certificates count.
        if b"-----BEGIN CERTIFICATE-----" in data:
            with _lenient():
                certs += _parse_certificates(data, os.fspath(path))
    if not certs:
        raise ValueError(f"CA folder {directory} holds no PEM certificate")
    return certs


@functools.cache
def system_trust_store() -> TrustStore:
    """The operating system's trusted roots (read once per process)."""
    paths = ssl.get_default_verify_paths()
    candidates = [paths.cafile, os.environ.get(paths.openssl_cafile_env), paths.openssl_cafile]
    candidates += list(SYSTEM_CA_FILES)
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            with _lenient():
                certs = _parse_certificates(_read(candidate, "system CA"), candidate)
            return TrustStore.from_certificates(certs, [candidate])
    for directory in (paths.capath, paths.openssl_capath):
        if directory and Path(directory).is_dir():
            return TrustStore.from_certificates(_load_ca_dir(Path(directory)), [directory])
    raise FileNotFoundError(
        "no system trust store found (looked for "
        + ", ".join(str(c) for c in candidates if c)
        + "); pass cafile= or cadir="
    )


def load_trust_store(
    cafile: str | os.PathLike[str] | bytes | Sequence[x509.Certificate] | None = None,
    cadir: str | os.PathLike[str] | None = None,
    *,
    use_system: bool | None = None,
) -> TrustStore:
    """Trusted roots from a CA file (or PEM bytes, or certificates), a CA folder, the system.

    With neither `cafile` nor `cadir`, the system store is used (unless
    `use_system=False`, which is then an error).
    """
    certs: list[x509.Certificate] = []
    sources: list[str] = []
    if cafile is not None:
        if isinstance(cafile, str | os.PathLike):
            certs += _parse_certificates(_read(cafile, "CA"), os.fspath(cafile))
            sources.append(os.fspath(cafile))
        elif isinstance(cafile, bytes | bytearray):
            certs += _parse_certificates(bytes(cafile), "CA bytes")
            sources.append("CA bytes")
        else:
            certs += load_certificate_chain(cafile)
            sources.append("CA certificates")
    if cadir is not None:
        certs += _load_ca_dir(Path(cadir))
        sources.append(os.fspath(cadir))
    if use_system or (use_system is None and not sources):
        system = system_trust_store()
        certs += system.certificates
        sources += system.sources
    if not sources:
        raise ValueError("no trust anchors: give cafile=, cadir= or use_system=True")
    return TrustStore.from_certificates(certs, sources)


# -- signature schemes --------------------------------------------------------------


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


def parse_certificate_chain_untrusted(ders: Iterable[bytes | memoryview]) -> list[x509.Certificate]:
    """Certificates from a Certificate message's DER entries; BadCertificate if malformed."""
    certs = []
    for i, der in enumerate(ders):
        try:
            with _lenient():
                certs.append(x509.load_der_x509_certificate(bytes(der)))
        except Exception as err:  # ValueError, InvalidVersion, ...: the peer's bytes
            said = f"certificate #{i} is malformed: {err}"
            raise _rejected(BadCertificate, said, said) from None
    return certs


def _validation_time(now: datetime.datetime | float | None) -> datetime.datetime:
    if now is None:
        return datetime.datetime.now(datetime.UTC)
    if isinstance(now, datetime.datetime):
        if now.tzinfo is None:
            raise LocalProtocolError("validation time must be timezone-aware (UTC)")
        return now
    return datetime.datetime.fromtimestamp(now, datetime.UTC)


def server_name_subject(server_name: str) -> x509.DNSName | x509.IPAddress:
    """The verifier subject for a server name: an IP address or a DNS name."""
    name = server_name.strip()
    if not name:
        raise LocalProtocolError("server_name is empty")
    try:
        return x509.IPAddress(ipaddress.ip_address(name.strip("[]")))
    except ValueError:
        pass
    name = name.rstrip(".").lower()
    if not name.isascii():
        name = name.encode("idna").decode("ascii")
    return x509.DNSName(name)


# cryptography's VerificationError messages (checked against cryptography 48; the
# tests exercise every entry), with the alert and a sentence a user can act on. First
# match wins, so specific causes come first.
_VERIFICATION_ERRORS: tuple[tuple[str, type[Alert], str], ...] = (
    (
        "not valid at validation time",
        CertificateExpired,
        "a certificate in the chain is expired or not yet valid (check the clocks)",
    ),
    # OpenSSL maps X509_V_ERR_HOSTNAME_MISMATCH to bad_certificate too.
    (
        "no matching subjectaltname",
        BadCertificate,
        "the certificate is not issued for the expected name (check server_name)",
    ),
    (
        "has no subjectaltname",
        BadCertificate,
        "the certificate names no host (no subjectAltName), so it fits no server_name",
    ),
    (
        "forbidden public key algorithm",
        UnsupportedCertificate,
        "a certificate in the chain has a key type or size that is not allowed",
    ),
    (
        "forbidden signature algorithm",
        UnsupportedCertificate,
        "a certificate in the chain is signed with an algorithm that is not allowed",
    ),
    ("unsupported", UnsupportedCertificate, "the certificate uses something unsupported"),
    # OpenSSL: X509_V_ERR_INVALID_PURPOSE -> unsupported_certificate.
    ("eku", UnsupportedCertificate, "the certificate is not issued for this use (EKU)"),
    (
        "candidates exhausted",
        UnknownCa,
        "no chain leads from the certificate to a trusted CA (is the CA that issued it "
        "among the trusted ones: cafile?)",
    ),
    (
        "chain construction exceeds max depth",
        UnknownCa,
        "the certificate chain is longer than allowed",
    ),
)


_VALIDATOR_FAILED = "Python extension validator failed: ValueError: "


def _rejected(cls: type[Alert], sentence: str, verifier_said: str) -> Alert:
    """An alert for a rejected certificate chain: `sentence` for the user, the verifier's
    own words kept as ``certificate_error``."""
    alert = cls(f"certificate verification failed: {sentence}")
    alert.certificate_error = verifier_said
    return alert


def _alert_for_verification_error(err: Exception) -> Alert:
    message = str(err)
    lowered = message.lower()
    for needle, cls, sentence in _VERIFICATION_ERRORS:
        if needle in lowered:
            # A candidate refused by our own extension checks says why; a bare signature
            # mismatch or an empty search is the usual "not issued by a CA we trust".
            _, _, detail = message.partition(_VALIDATOR_FAILED)
            if detail:
                sentence = f"no chain leads from the certificate to a trusted CA: {detail}"
            return _rejected(cls, sentence, message)
    # Missing or malformed extensions, bad encodings: the certificate is unusable.
    return _rejected(BadCertificate, f"the certificate is unusable: {message}", message)


def _alert_for(
    err: Exception, chain: Sequence[x509.Certificate], store: TrustStore | Store
) -> Alert:
    alert = _alert_for_verification_error(err)
    if isinstance(alert, UnknownCa) and _leaf_signature_broken(chain, store):
        # cryptography reports "signature does not match" as an exhausted search;
        # a leaf whose named issuer is at hand but did not sign it is a bad
        # certificate ("contained signatures that did not verify", RFC 8446 §6.2).
        return _rejected(
            BadCertificate,
            "the certificate's signature does not verify with the key of the trusted CA "
            "of its issuer's name (a different CA of the same name?)",
            str(err),
        )
    return alert


def _leaf_signature_broken(chain: Sequence[x509.Certificate], store: TrustStore | Store) -> bool:
    leaf = chain[0]
    known = list(chain[1:]) + (list(store.certificates) if isinstance(store, TrustStore) else [])
    issuers = [c for c in known if c.subject == leaf.issuer]
    if not issuers:
        return False
    for issuer in issuers:
        try:
            leaf.verify_directly_issued_by(issuer)
        except InvalidSignature:
            continue
        except (ValueError, TypeError, UnsupportedAlgorithm):
            return False  # cannot tell: keep unknown_ca
        return False
    return True


def _precheck_leaf(leaf: x509.Certificate, when: datetime.datetime) -> None:
    try:
        public_key = leaf.public_key()
    except (ValueError, UnsupportedAlgorithm) as err:
        raise UnsupportedCertificate(f"unsupported certificate public key: {err}") from None
    if not schemes_for_key(public_key):
        raise UnsupportedCertificate(
            f"the certificate's {_key_name(public_key)} key cannot sign TLS 1.3 handshakes"
        )
    if isinstance(public_key, rsa.RSAPublicKey) and public_key.key_size < MIN_RSA_BITS:
        raise UnsupportedCertificate(
            f"RSA-{public_key.key_size} certificate key is shorter than {MIN_RSA_BITS} bits"
        )
    if when < leaf.not_valid_before_utc:
        raise CertificateExpired(f"certificate not valid before {leaf.not_valid_before_utc}")
    if when > leaf.not_valid_after_utc:
        raise CertificateExpired(f"certificate expired at {leaf.not_valid_after_utc}")


def _store_of(store: TrustStore | Store) -> Store:
    return store.store if isinstance(store, TrustStore) else store


def verify_server_chain(
    chain: Sequence[x509.Certificate],
    store: TrustStore | Store,
    server_name: str,
    now: datetime.datetime | float | None = None,
) -> list[x509.Certificate]:
    """Verify a server's chain for `server_name` (DNS name or IP address) at `now`.

    `now` is wall-clock time (a POSIX timestamp or an aware datetime; None:
    the current time), not the sans-IO monotonic clock. Returns the verified
    path (leaf to root). Raises: DecodeErrorAlert for an empty chain (RFC
    8446 §4.4.2.4), UnknownCa when no path leads to a trusted root,
    CertificateExpired when a certificate is expired or not yet valid,
    BadCertificate for a name mismatch (as OpenSSL does) or a malformed or
    policy-violating certificate, UnsupportedCertificate for a key type or
    extended key usage that does not fit.
    """
    if not chain:
        raise DecodeErrorAlert("the server sent an empty Certificate message")
    return _verify_chain(chain, store, _validation_time(now), server_name_subject(server_name))


def _verify_chain(
    chain: Sequence[x509.Certificate],
    store: TrustStore | Store,
    when: datetime.datetime,
    subject: x509.DNSName | x509.IPAddress | None,
) -> list[x509.Certificate]:
    """Server verification with `subject`, client verification without."""
    try:
        _precheck_leaf(chain[0], when)
        builder = _builder(store, when, client=subject is None)
        try:
            with _lenient():
                if subject is None:
                    verified = builder.build_client_verifier().verify(chain[0], list(chain[1:]))
                    return list(verified.chain)
                verifier = builder.build_server_verifier(subject)
                return list(verifier.verify(chain[0], list(chain[1:])))
        except VerificationError as err:
            raise _alert_for(err, chain, store) from None
    except Alert as alert:
        if alert.certificate_error is None:  # our own checks (_precheck_leaf)
            alert.certificate_error = alert.reason
        raise
    except Exception as err:
        # cryptography parses certificate fields lazily, and a malformed field
        # surfaces as whatever its parser raises (ValueError, KeyError for an
        # unknown string tag, InvalidVersion, ...): all of it is the peer's bytes.
        said = f"{type(err).__name__}: {err}"
        raise _rejected(BadCertificate, f"malformed certificate: {said}", said) from None


def _ee_policy(client: bool) -> ExtensionPolicy:
    """The web PKI end-entity profile, relaxed where TLS peers commonly differ.

    Self-signed test certificates (``openssl req -x509``) and wolfSSL's test
    certificates assert cA=TRUE in the leaf, and self-signed ones may lack an
    authorityKeyIdentifier; OpenSSL accepts both, so we do. Client
    certificates need no subjectAltName (RFC 8446 sets no such rule).
    """
    policy = (
        ExtensionPolicy.webpki_defaults_ee()
        .may_be_present(x509.BasicConstraints, Criticality.AGNOSTIC, None)
        .may_be_present(x509.AuthorityKeyIdentifier, Criticality.AGNOSTIC, None)
    )
    if client:
        policy = policy.may_be_present(x509.SubjectAlternativeName, Criticality.AGNOSTIC, None)
    return policy


def _ca_key_usage(policy: object, cert: x509.Certificate, ku: x509.KeyUsage | None) -> None:
    if ku is not None and not ku.key_cert_sign:
        raise ValueError("a CA certificate's keyUsage must allow keyCertSign")


def _ca_basic_constraints(
    policy: object, cert: x509.Certificate, bc: x509.BasicConstraints
) -> None:
    if not bc.ca:
        raise ValueError("an issuer must assert cA=TRUE in basicConstraints")


def _ca_policy() -> ExtensionPolicy:
    """The web PKI CA profile, but keyUsage may be absent (wolfSSL's test CA has none;
    OpenSSL does not require it; when present it must allow keyCertSign) and
    basicConstraints may be non-critical (wolfSSL's test CA; OpenSSL accepts it) though
    it must still say cA=TRUE."""
    return (
        ExtensionPolicy.webpki_defaults_ca()
        .may_be_present(x509.KeyUsage, Criticality.AGNOSTIC, _ca_key_usage)
        .require_present(x509.BasicConstraints, Criticality.AGNOSTIC, _ca_basic_constraints)
    )


def _builder(store: TrustStore | Store, when: datetime.datetime, client: bool) -> PolicyBuilder:
    return (
        PolicyBuilder()
        .store(_store_of(store))
        .time(when)
        .extension_policies(ca_policy=_ca_policy(), ee_policy=_ee_policy(client))
    )


def verify_client_chain(
    chain: Sequence[x509.Certificate],
    store: TrustStore | Store,
    now: datetime.datetime | float | None = None,
) -> list[x509.Certificate]:
    """Verify a client's chain at `now` (see `verify_server_chain`).

    An empty chain raises CertificateRequired (RFC 8446 §4.4.2.4: for a
    server that requires client certificates; one that does not should not
    call this).
    """
    if not chain:
        raise CertificateRequired("the client sent no certificate")
    return _verify_chain(chain, store, _validation_time(now), None)
