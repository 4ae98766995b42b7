"""Certificate chains, private keys, identities and trust stores loaded from configuration.

Loading functions take programmer input (configuration) and raise at once
with a message naming the source and what is wrong: `FileNotFoundError` for
a missing file, `ValueError` for everything else.
"""

from __future__ import annotations

import functools
import os
import ssl
import warnings
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeAlias, cast

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.verification import (
    Store,
)

from .signatures import PrivateKey, _key_name, schemes_for_key

CertificateSource: TypeAlias = (
    "str | os.PathLike[str] | bytes | x509.Certificate | Sequence[x509.Certificate | bytes]"
)
KeySource: TypeAlias = "str | os.PathLike[str] | bytes | PrivateKey"


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
