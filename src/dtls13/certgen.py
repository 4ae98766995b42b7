"""Self-signed certificates made on the spot (the echo server's default identity)."""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# id-pe-delegationUsage (RFC 9345 §4.2), DelegationUsage ::= NULL (as handshake.delegated).
_DELEGATION_USAGE = x509.ObjectIdentifier("1.3.6.1.4.1.44363.44")


def make_self_signed(
    dns_names: Sequence[str] = ("localhost",),
    ips: Sequence[str] = ("127.0.0.1", "::1"),
    *,
    days: int = 30,
    common_name: str = "dtls13 echo server",
    delegation_usage: bool = False,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """An ECDSA P-256 certificate signed by its own key, for `dns_names` and `ips`;
    `delegation_usage`: one that may issue delegated credentials (RFC 9345 §4.2: the
    DelegationUsage extension and the digitalSignature key usage)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    names: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    names += [x509.IPAddress(ipaddress.ip_address(a)) for a in ips]
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if delegation_usage:
        usage = x509.KeyUsage(True, False, False, False, False, True, False, False, False)
        builder = builder.add_extension(usage, critical=True).add_extension(
            x509.UnrecognizedExtension(_DELEGATION_USAGE, b"\x05\x00"), critical=False
        )
    return builder.sign(key, hashes.SHA256()), key


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the DER certificate as colon-separated hex (as `openssl x509 -fingerprint`)."""
    return ":".join(f"{b:02X}" for b in cert.fingerprint(hashes.SHA256()))


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def public_key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    """The PEM SubjectPublicKeyInfo of a key's public half (a raw public key, RFC 7250)."""
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
