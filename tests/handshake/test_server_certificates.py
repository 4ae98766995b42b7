"""Several server certificate chains in a ServerConfig: loaded and checked at construction,
indexed by name, and counted in the stateless gate's first-flight bound."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from dtls13.config import ServerConfig
from dtls13.handshake.gate import FlightBound
from dtls13.handshake.selection import CertificateSet, ServerCertificate, certificate_names
from tests.support.pki import NOW, TestPKI, cached_key

PKI = TestPKI.create("ec256", slot=240)
EC = PKI.leaf("ec256", dns_names=("localhost",), cn="ec")
RSA = PKI.leaf("rsa2048", dns_names=("localhost",), cn="rsa")
BIG = PKI.leaf("rsa4096", dns_names=("Big.Example.com", "*.Example.com"), cn="big")


def test_the_single_chain_fields_are_the_first_of_the_server_certificates() -> None:
    cfg = ServerConfig(
        certificate_chain=EC.chain_pem, private_key=EC.key_pem, certificates=[(RSA.chain, RSA.key)]
    )
    first, second = cfg.server_certificates.certificates
    assert first.chain == cfg.chain == tuple(EC.chain) and first.key is cfg.key
    assert second.chain == tuple(RSA.chain)


def test_certificates_alone_make_a_server_and_fill_chain_and_key() -> None:
    made = ServerCertificate(RSA.chain_pem, RSA.key_pem)
    cfg = ServerConfig(certificates=[made, (EC.chain_pem, EC.key_pem)])
    assert cfg.chain == tuple(RSA.chain) and cfg.server_certificates.certificates[0] is made


def test_the_certificate_body_is_encoded_once_with_the_configuration() -> None:
    from dtls13.handshake.authentication import certificate_body

    made = ServerCertificate(RSA.chain_pem, RSA.key_pem)
    assert made.body == certificate_body(tuple(RSA.chain))


@pytest.mark.parametrize(
    ("certificates", "error", "match"),
    [
        ([(RSA.chain_pem, EC.key_pem)], ValueError, "does not match"),
        ("rsa.pem", TypeError, "sequence"),
        ([RSA.chain_pem], TypeError, "ServerCertificate objects or"),
        ([(RSA.chain_pem,)], TypeError, "ServerCertificate objects or"),
        ([(b"not a certificate", RSA.key_pem)], ValueError, "certificate"),
    ],
)
def test_bad_certificates_raise_at_construction(
    certificates: Any, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        ServerConfig(
            certificate_chain=EC.chain_pem, private_key=EC.key_pem, certificates=certificates
        )


@pytest.mark.parametrize(
    ("names", "error"),
    [
        (["a*.example.com"], ValueError),
        (["*.com"], ValueError),
        (["a..example.com"], ValueError),
        (["*"], ValueError),
        ("a.example.com", TypeError),
        ([b"a.example.com"], TypeError),
    ],
)
def test_bad_server_names_raise_at_construction(names: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        ServerCertificate(EC.chain_pem, EC.key_pem, names=names)


@pytest.mark.parametrize("field", ["certificate_callback", "alpn_callback"])
def test_callbacks_that_are_not_callable_raise_at_construction(field: str) -> None:
    with pytest.raises(TypeError, match=field):
        ServerConfig(certificate_chain=EC.chain_pem, private_key=EC.key_pem, **{field: "x"})


def test_names_come_from_the_subject_alt_name_in_lower_case() -> None:
    assert certificate_names(BIG.cert) == ("big.example.com", "*.example.com")
    explicit = ServerCertificate(EC.chain_pem, EC.key_pem, names=["Www.Example.ORG", "*.Ex.org"])
    assert explicit.server_names == ("www.example.org", "*.ex.org")


def test_names_come_from_the_common_name_without_a_subject_alt_name() -> None:
    key = cached_key("ec256", 201)
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "Legacy.Example.net")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(NOW)
        .not_valid_after(NOW)
        .sign(key, hashes.SHA256())
    )
    assert certificate_names(cert) == ("legacy.example.net",)


def test_selection_prefers_exact_then_wildcard_then_order_among_keys_that_can_sign() -> None:
    ec, rsa, big = (ServerCertificate(i.chain, i.key) for i in (EC, RSA, BIG))
    chains = CertificateSet([ec, rsa, big])
    ecdsa, pss = [0x0403], [0x0804]
    assert chains.select("big.example.com", pss) == (big, 0x0804)
    assert chains.select("other.example.com", pss) == (big, 0x0804)  # the wildcard
    assert chains.select("big.example.com", ecdsa) == (ec, 0x0403)  # its key cannot
    assert chains.select("a.b.example.com", pss) == (rsa, 0x0804)  # one label only
    assert chains.select(None, pss + ecdsa) == (ec, 0x0403)
    assert chains.select("localhost", [0x0807]) is None  # ed25519: no such key


def test_the_first_flight_bound_covers_the_largest_configured_chain() -> None:
    small = ServerConfig(certificate_chain=EC.chain_pem, private_key=EC.key_pem)
    big = ServerConfig(certificate_chain=BIG.chain_pem, private_key=BIG.key_pem)
    both = ServerConfig(
        certificate_chain=EC.chain_pem, private_key=EC.key_pem, certificates=[(BIG.chain, BIG.key)]
    )
    assert FlightBound.of(small).certificate < FlightBound.of(big).certificate
    assert FlightBound.of(both).certificate == FlightBound.of(big).certificate
