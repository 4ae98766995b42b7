"""A throwaway test PKI: a root CA, an optional intermediate, leaves of every key type.

Keys are cached per (kind, slot) for the whole test session: RSA-4096 takes
about a second to generate and the tests need only a few distinct keys.
"""

from __future__ import annotations

import datetime
import functools
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

try:
    from cryptography.hazmat.primitives.asymmetric import mldsa

    HAVE_MLDSA = True
except ImportError:  # pragma: no cover - cryptography without ML-DSA
    mldsa = None  # type: ignore[assignment]
    HAVE_MLDSA = False

KEY_KINDS = ["ec256", "ec384", "rsa2048", "rsa4096", "ed25519", "ed448"]
MLDSA_KINDS = ["mldsa44", "mldsa65", "mldsa87"]
if HAVE_MLDSA:
    KEY_KINDS += MLDSA_KINDS

NOW = datetime.datetime(2026, 6, 1, 12, 0, tzinfo=datetime.UTC)
DAY = datetime.timedelta(days=1)


def make_key(kind: str) -> Any:
    """A fresh private key of `kind` (see KEY_KINDS)."""
    if kind == "ec256":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "ec384":
        return ec.generate_private_key(ec.SECP384R1())
    if kind == "ec521":
        return ec.generate_private_key(ec.SECP521R1())
    if kind.startswith("rsa"):
        return rsa.generate_private_key(65537, int(kind[3:]))
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if kind == "ed448":
        return ed448.Ed448PrivateKey.generate()
    if kind in MLDSA_KINDS and HAVE_MLDSA:
        return {
            "mldsa44": mldsa.MLDSA44PrivateKey,
            "mldsa65": mldsa.MLDSA65PrivateKey,
            "mldsa87": mldsa.MLDSA87PrivateKey,
        }[kind].generate()
    raise ValueError(f"unknown key kind {kind!r}")


@functools.cache
def cached_key(kind: str, slot: int = 0) -> Any:
    """The same key for (kind, slot) for the whole session (RSA-4096 is slow)."""
    return make_key(kind)


def _sign_hash(issuer_key: Any) -> hashes.HashAlgorithm | None:
    if isinstance(issuer_key, ec.EllipticCurvePrivateKey):
        return hashes.SHA384() if issuer_key.curve.key_size >= 384 else hashes.SHA256()
    if isinstance(issuer_key, rsa.RSAPrivateKey):
        return hashes.SHA256()
    return None  # Ed25519, Ed448, ML-DSA: the algorithm fixes the hash


def key_pem(key: Any, password: bytes | None = None) -> bytes:
    enc: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    return bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)
    )


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@dataclass
class Issued:
    """A certificate and its private key."""

    cert: x509.Certificate
    key: Any
    chain: list[x509.Certificate] = field(default_factory=list)  # leaf first, no root

    @property
    def cert_pem(self) -> bytes:
        return cert_pem(self.cert)

    @property
    def key_pem(self) -> bytes:
        return key_pem(self.key)

    @property
    def chain_pem(self) -> bytes:
        return b"".join(cert_pem(c) for c in self.chain)

    def write(self, directory: Path, name: str) -> tuple[Path, Path]:
        """Write <name>.pem (the chain) and <name>.key; return both paths."""
        cert_path = directory / f"{name}.pem"
        key_path = directory / f"{name}.key"
        cert_path.write_bytes(self.chain_pem)
        key_path.write_bytes(self.key_pem)
        return cert_path, key_path


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "dtls13 tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def make_ca(
    cn: str = "dtls13 test root",
    kind: str = "ec256",
    issuer: Issued | None = None,
    *,
    not_before: datetime.datetime = NOW - 365 * DAY,
    not_after: datetime.datetime = NOW + 3650 * DAY,
    slot: int = 0,
    key_cert_sign: bool = True,
) -> Issued:
    """A root CA (self-signed) or, with `issuer`, an intermediate CA."""
    key = cached_key(kind, slot)
    subject = _name(cn)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.cert.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=key_cert_sign,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
    )
    signer = issuer.key if issuer else key
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False,
        )
    cert = builder.sign(signer, _sign_hash(signer))
    # A root is never sent: its chain is empty; an intermediate's is itself and above.
    return Issued(cert, key, [cert, *issuer.chain] if issuer is not None else [])


# -- DER surgery for ML-DSA leaves ------------------------------------------------
# cryptography's CertificateBuilder does not accept ML-DSA public keys yet, so an
# ML-DSA leaf is built with a placeholder key whose SubjectPublicKeyInfo is then
# swapped for the ML-DSA one, and the TBSCertificate is signed again.


def _der_len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def _der_tlv(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + _der_len(len(content)) + content


def _der_children(der: bytes) -> list[bytes]:
    """The TLVs inside a constructed DER element (whole element given)."""
    pos = 1
    n = der[pos]
    pos += 1
    if n & 0x80:
        k = n & 0x7F
        n = int.from_bytes(der[pos : pos + k], "big")
        pos += k
    content = der[pos : pos + n]
    out = []
    i = 0
    while i < len(content):
        j = i + 1
        m = content[j]
        j += 1
        if m & 0x80:
            k = m & 0x7F
            m = int.from_bytes(content[j : j + k], "big")
            j += k
        out.append(content[i : j + m])
        i = j + m
    return out


def _sign_raw(issuer_key: Any, data: bytes) -> bytes:
    algorithm = _sign_hash(issuer_key)
    if isinstance(issuer_key, ec.EllipticCurvePrivateKey):
        assert algorithm is not None
        return bytes(issuer_key.sign(data, ec.ECDSA(algorithm)))
    if isinstance(issuer_key, rsa.RSAPrivateKey):
        from cryptography.hazmat.primitives.asymmetric import padding

        assert algorithm is not None
        return bytes(issuer_key.sign(data, padding.PKCS1v15(), algorithm))
    return bytes(issuer_key.sign(data))


def swap_public_key(cert: x509.Certificate, public_key: Any, issuer_key: Any) -> x509.Certificate:
    """`cert` with its SubjectPublicKeyInfo replaced by `public_key`'s, re-signed."""
    spki = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    outer = _der_children(cert.public_bytes(serialization.Encoding.DER))
    fields = _der_children(cert.tbs_certificate_bytes)
    # version [0], serial, signature, issuer, validity, subject, SPKI, [3] extensions
    assert fields[0][0] == 0xA0 and fields[6][0] == 0x30
    fields[6] = spki
    tbs = _der_tlv(0x30, b"".join(fields))
    signature = _der_tlv(0x03, b"\x00" + _sign_raw(issuer_key, tbs))
    return x509.load_der_x509_certificate(_der_tlv(0x30, tbs + outer[1] + signature))


def make_leaf(
    issuer: Issued,
    kind: str = "ec256",
    *,
    dns_names: Sequence[str] = ("localhost",),
    ips: Sequence[str] = ("127.0.0.1",),
    not_before: datetime.datetime = NOW - 30 * DAY,
    not_after: datetime.datetime = NOW + 365 * DAY,
    server: bool = True,
    client: bool = True,
    slot: int = 0,
    cn: str = "dtls13 test leaf",
    extra: Sequence[x509.ExtensionType] = (),
) -> Issued:
    """An end-entity certificate issued by `issuer` (chain: leaf, intermediates), with the
    non-critical extensions `extra` besides the usual ones."""
    key = cached_key(kind, slot)
    # ML-DSA: build with a placeholder key, then swap the key in (see above).
    cert_key = cached_key("ec256", 1000 + slot) if kind in MLDSA_KINDS else key
    names: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    names += [x509.IPAddress(ipaddress.ip_address(a)) for a in ips]
    usages = []
    if server:
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
    if client:
        usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(issuer.cert.subject)
        .public_key(cert_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), False
        )
    )
    if cert_key is key:
        builder = builder.add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False
        )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    if usages:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    for extension in extra:
        builder = builder.add_extension(extension, critical=False)
    cert = builder.sign(issuer.key, _sign_hash(issuer.key))
    if cert_key is not key:
        cert = swap_public_key(cert, key.public_key(), issuer.key)
    return Issued(cert, key, [cert, *issuer.chain])


@dataclass
class TestPKI:
    """A root, an optional intermediate and a way to issue leaves under them."""

    __test__ = False  # not a pytest test class

    root: Issued
    intermediate: Issued | None

    @classmethod
    def create(cls, kind: str = "ec256", intermediate: bool = True, slot: int = 0) -> TestPKI:
        root = make_ca("dtls13 test root", kind, slot=slot)
        inter = (
            make_ca("dtls13 test intermediate", kind, issuer=root, slot=slot + 1)
            if intermediate
            else None
        )
        return cls(root, inter)

    @property
    def issuer(self) -> Issued:
        return self.intermediate or self.root

    def leaf(self, kind: str = "ec256", **kwargs: Any) -> Issued:
        return make_leaf(self.issuer, kind, **kwargs)

    @property
    def root_pem(self) -> bytes:
        return cert_pem(self.root.cert)

    def write_root(self, directory: Path, name: str = "ca.pem") -> Path:
        path = directory / name
        path.write_bytes(self.root_pem)
        return path


def make_self_signed(
    kind: str = "ec256",
    *,
    dns_names: Sequence[str] = ("localhost",),
    ips: Sequence[str] = ("127.0.0.1",),
    slot: int = 0,
) -> Issued:
    """A certificate like `openssl req -x509` makes: self-signed, cA=TRUE, a SAN, no EKU."""
    key = cached_key(kind, slot)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    names: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    names += [x509.IPAddress(ipaddress.ip_address(a)) for a in ips]
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - DAY)
        .not_valid_after(NOW + 3650 * DAY)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(key, _sign_hash(key))
    )
    return Issued(cert, key, [cert])


def make_wolfssl_like(slot: int = 60) -> tuple[Issued, Issued]:
    """A root and leaf shaped like wolfSSL's certs/ca-cert.pem and server-cert.pem.

    Both carry a non-critical cA=TRUE basicConstraints, an authorityKeyIdentifier with
    issuer name and serial, a subjectAltName and an EKU for server and client.
    """
    root_key = cached_key("rsa2048", slot)
    leaf_key = cached_key("rsa2048", slot + 1)
    root_name = _name("www.wolfssl.com")
    root_serial = x509.random_serial_number()
    san = x509.SubjectAlternativeName(
        [x509.DNSName("example.com"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    )
    eku = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH])
    ski = x509.SubjectKeyIdentifier.from_public_key(root_key.public_key())
    aki = x509.AuthorityKeyIdentifier(ski.digest, [x509.DirectoryName(root_name)], root_serial)

    def build(subject: x509.Name, key: Any, serial: int, critical_ca: bool) -> x509.Certificate:
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(root_name)
            .public_key(key.public_key())
            .serial_number(serial)
            .not_valid_before(NOW - 30 * DAY)
            .not_valid_after(NOW + 365 * DAY)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .add_extension(aki, False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical_ca)
            .add_extension(san, False)
            .add_extension(eku, False)
            .sign(root_key, hashes.SHA256())
        )

    root = build(root_name, root_key, root_serial, False)
    leaf = build(_name("wolfSSL server"), leaf_key, 1, False)
    return Issued(root, root_key, []), Issued(leaf, leaf_key, [leaf])
