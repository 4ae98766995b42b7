"""Certificates, keys, trust stores, CertificateVerify signatures and chain verification."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, padding, x25519

from dtls13.alerts import (
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
from dtls13.handshake.certificates import (
    CLIENT_CONTEXT,
    SERVER_CONTEXT,
    TrustStore,
    certificate_verify_content,
    check_key_matches_certificate,
    choose_scheme,
    load_certificate_chain,
    load_identity,
    load_private_key,
    load_trust_store,
    parse_certificate_chain_untrusted,
    schemes_for_key,
    server_name_subject,
    sign_certificate_verify,
    system_trust_store,
    verify_certificate_verify,
    verify_client_chain,
    verify_server_chain,
)
from dtls13.handshake.constants import SignatureScheme as S
from tests.support.pki import (
    DAY,
    HAVE_MLDSA,
    KEY_KINDS,
    NOW,
    TestPKI,
    cached_key,
    cert_pem,
    key_pem,
    make_ca,
    make_leaf,
    make_self_signed,
    make_wolfssl_like,
)

TRANSCRIPT = bytes(range(32))

EXPECTED_SCHEMES = {
    "ec256": [S.ecdsa_secp256r1_sha256],
    "ec384": [S.ecdsa_secp384r1_sha384],
    "ec521": [S.ecdsa_secp521r1_sha512],
    "rsa2048": [S.rsa_pss_rsae_sha256, S.rsa_pss_rsae_sha384, S.rsa_pss_rsae_sha512],
    "rsa4096": [S.rsa_pss_rsae_sha256, S.rsa_pss_rsae_sha384, S.rsa_pss_rsae_sha512],
    "ed25519": [S.ed25519],
    "ed448": [S.ed448],
    "mldsa44": [S.mldsa44],
    "mldsa65": [S.mldsa65],
    "mldsa87": [S.mldsa87],
}


@pytest.fixture(scope="module")
def pki() -> TestPKI:
    return TestPKI.create("ec256", intermediate=True)


@pytest.fixture(scope="module")
def store(pki: TestPKI) -> TrustStore:
    return load_trust_store([pki.root.cert])


# -- signature schemes -------------------------------------------------------------


def test_mldsa_is_supported_with_cryptography_48() -> None:
    assert HAVE_MLDSA


@pytest.mark.parametrize("kind", [*KEY_KINDS, "ec521"])
def test_schemes_for_key(kind: str) -> None:
    key = cached_key(kind)
    assert schemes_for_key(key) == EXPECTED_SCHEMES[kind]
    assert schemes_for_key(key.public_key()) == EXPECTED_SCHEMES[kind]


def test_schemes_never_offer_pkcs1_for_rsa() -> None:
    schemes = schemes_for_key(cached_key("rsa2048"))
    assert not {S.rsa_pkcs1_sha256, S.rsa_pkcs1_sha384, S.rsa_pkcs1_sha512} & set(schemes)


def test_unsupported_key_types_have_no_scheme() -> None:
    assert schemes_for_key(x25519.X25519PrivateKey.generate()) == []
    assert schemes_for_key(ec.generate_private_key(ec.SECP256K1())) == []
    assert schemes_for_key(b"not a key") == []


@pytest.mark.parametrize("kind", KEY_KINDS)
@pytest.mark.parametrize("is_server", [True, False])
def test_every_scheme_signs_and_verifies(pki: TestPKI, kind: str, is_server: bool) -> None:
    leaf = pki.leaf(kind)
    for scheme in schemes_for_key(leaf.key):
        sig = sign_certificate_verify(leaf.key, scheme, TRANSCRIPT, is_server)
        # Against the certificate and against the bare public key.
        verify_certificate_verify(leaf.cert, scheme, sig, TRANSCRIPT, is_server)
        verify_certificate_verify(leaf.key.public_key(), scheme, sig, TRANSCRIPT, is_server)
        # A flipped bit anywhere in the signature fails with decrypt_error.
        for pos in (0, len(sig) // 2, len(sig) - 1):
            bad = bytearray(sig)
            bad[pos] ^= 0x01
            with pytest.raises(DecryptError):
                verify_certificate_verify(leaf.cert, scheme, bytes(bad), TRANSCRIPT, is_server)
        # The other role's context string, another transcript, a truncated signature.
        with pytest.raises(DecryptError):
            verify_certificate_verify(leaf.cert, scheme, sig, TRANSCRIPT, not is_server)
        with pytest.raises(DecryptError):
            verify_certificate_verify(leaf.cert, scheme, sig, TRANSCRIPT[::-1], is_server)
        with pytest.raises(DecryptError):
            verify_certificate_verify(leaf.cert, scheme, sig[:-1], TRANSCRIPT, is_server)


def test_signed_content_is_rfc8446_4_4_3() -> None:
    assert SERVER_CONTEXT == b"TLS 1.3, server CertificateVerify"
    assert CLIENT_CONTEXT == b"TLS 1.3, client CertificateVerify"
    content = certificate_verify_content(TRANSCRIPT, True)
    assert content == b"\x20" * 64 + SERVER_CONTEXT + b"\x00" + TRANSCRIPT
    key = ed25519.Ed25519PrivateKey.generate()
    sig = sign_certificate_verify(key, S.ed25519, TRANSCRIPT, False)
    key.public_key().verify(sig, b" " * 64 + CLIENT_CONTEXT + b"\x00" + TRANSCRIPT)


def test_rsa_pss_salt_is_the_digest_length() -> None:
    key = cached_key("rsa2048")
    content = certificate_verify_content(TRANSCRIPT, True)
    sig = sign_certificate_verify(key, S.rsa_pss_rsae_sha384, TRANSCRIPT, True)
    key.public_key().verify(
        sig, content, padding.PSS(padding.MGF1(hashes.SHA384()), 48), hashes.SHA384()
    )
    # A PSS signature with another salt length is refused (RFC 8446 §4.2.3).
    other = key.sign(
        content, padding.PSS(padding.MGF1(hashes.SHA384()), padding.PSS.MAX_LENGTH), hashes.SHA384()
    )
    with pytest.raises(DecryptError):
        verify_certificate_verify(key.public_key(), S.rsa_pss_rsae_sha384, other, TRANSCRIPT, True)


@pytest.mark.parametrize(
    ("kind", "scheme"),
    [
        ("rsa2048", S.rsa_pkcs1_sha256),  # PKCS#1 v1.5 never in TLS 1.3 CertificateVerify
        ("rsa2048", S.ecdsa_secp256r1_sha256),
        ("ec256", S.ecdsa_secp384r1_sha384),  # the curve is bound to the scheme
        ("ec384", S.ecdsa_secp256r1_sha256),
        ("ec256", S.ed25519),
        ("ed25519", S.ed448),
        ("ed448", S.ecdsa_secp256r1_sha256),
        ("mldsa44", S.mldsa65),
        ("ec256", 0x1234),  # unknown code point
    ],
)
def test_wrong_scheme_for_key(pki: TestPKI, kind: str, scheme: int) -> None:
    leaf = pki.leaf(kind)
    good = sign_certificate_verify(leaf.key, schemes_for_key(leaf.key)[0], TRANSCRIPT, True)
    with pytest.raises(IllegalParameter, match=r"does not fit"):
        verify_certificate_verify(leaf.cert, scheme, good, TRANSCRIPT, True)
    with pytest.raises(LocalProtocolError, match=r"cannot be used"):
        sign_certificate_verify(leaf.key, scheme, TRANSCRIPT, True)


def test_scheme_not_offered_is_illegal_parameter() -> None:
    key = cached_key("ec256")
    sig = sign_certificate_verify(key, S.ecdsa_secp256r1_sha256, TRANSCRIPT, True)
    verify_certificate_verify(
        key.public_key(), S.ecdsa_secp256r1_sha256, sig, TRANSCRIPT, True, offered=[0x0403]
    )
    with pytest.raises(IllegalParameter, match=r"did not offer"):
        verify_certificate_verify(
            key.public_key(), S.ecdsa_secp256r1_sha256, sig, TRANSCRIPT, True, offered=[S.ed25519]
        )


def test_verify_with_unsupported_peer_key() -> None:
    with pytest.raises(UnsupportedCertificate):
        verify_certificate_verify(
            x25519.X25519PrivateKey.generate().public_key(), S.ed25519, b"x", TRANSCRIPT, True
        )


def test_choose_scheme() -> None:
    rsa_key = cached_key("rsa2048")
    peer = [S.ecdsa_secp256r1_sha256, S.rsa_pss_rsae_sha512, S.rsa_pss_rsae_sha256]
    assert choose_scheme(rsa_key, peer) == S.rsa_pss_rsae_sha512  # the peer's order
    assert choose_scheme(rsa_key, peer, allowed=[S.rsa_pss_rsae_sha256]) == S.rsa_pss_rsae_sha256
    assert choose_scheme(cached_key("ec256"), [0x9999, *peer]) == S.ecdsa_secp256r1_sha256
    with pytest.raises(HandshakeFailure, match=r"no common signature scheme"):
        choose_scheme(rsa_key, [S.rsa_pkcs1_sha256, S.ecdsa_secp256r1_sha256, 0x9999])
    with pytest.raises(HandshakeFailure):
        choose_scheme(cached_key("ec384"), [S.ecdsa_secp256r1_sha256])
    with pytest.raises(HandshakeFailure):
        choose_scheme(rsa_key, peer, allowed=[S.ed25519])


# -- chain verification: success and each failure mapping ---------------------------------


@pytest.mark.parametrize("kind", KEY_KINDS)
def test_valid_chains_verify(pki: TestPKI, store: TrustStore, kind: str) -> None:
    leaf = pki.leaf(kind)
    path = verify_server_chain(leaf.chain, store, "localhost", NOW)
    assert path == [leaf.cert, pki.intermediate.cert, pki.root.cert]  # type: ignore[union-attr]
    assert verify_client_chain(leaf.chain, store, NOW)[0] == leaf.cert


@pytest.mark.parametrize("root_kind", ["rsa2048", "ec384"])
def test_other_root_types_and_no_intermediate(root_kind: str) -> None:
    pki = TestPKI.create(root_kind, intermediate=False, slot=10)
    leaf = pki.leaf("rsa2048")
    store = load_trust_store(pki.root_pem)
    assert len(verify_server_chain(leaf.chain, store, "localhost", NOW)) == 2


def test_validation_time_forms(pki: TestPKI, store: TrustStore) -> None:
    leaf = pki.leaf()
    verify_server_chain(leaf.chain, store, "localhost", NOW.timestamp())
    verify_server_chain(leaf.chain, store.store, "localhost", NOW)  # a bare Store works too
    with pytest.raises(LocalProtocolError):
        verify_server_chain(leaf.chain, store, "localhost", NOW.replace(tzinfo=None))
    # None means "now": these certificates are valid around 2026-06.
    fresh = make_leaf(pki.issuer, not_before=datetime.datetime.now(datetime.UTC) - DAY)
    verify_server_chain(fresh.chain, store, "localhost", None)


def test_server_name_forms(pki: TestPKI, store: TrustStore) -> None:
    leaf = pki.leaf(dns_names=("host.example",), ips=("127.0.0.1", "::1"))
    for name in ("host.example", "HOST.Example.", "127.0.0.1", "::1", "[::1]"):
        verify_server_chain(leaf.chain, store, name, NOW)
    assert server_name_subject("bücher.example") == x509.DNSName("xn--bcher-kva.example")
    with pytest.raises(LocalProtocolError):
        server_name_subject(" ")


def test_expired_and_not_yet_valid_leaf(pki: TestPKI, store: TrustStore) -> None:
    expired = pki.leaf(not_before=NOW - 10 * DAY, not_after=NOW - DAY)
    early = pki.leaf(not_before=NOW + DAY)
    for leaf in (expired, early):
        with pytest.raises(CertificateExpired):
            verify_server_chain(leaf.chain, store, "localhost", NOW)
        with pytest.raises(CertificateExpired):
            verify_client_chain(leaf.chain, store, NOW)


def test_expired_intermediate(pki: TestPKI) -> None:
    inter = make_ca(
        "expired intermediate", issuer=pki.root, not_after=NOW - DAY, not_before=NOW - 9 * DAY
    )
    leaf = make_leaf(inter, not_before=NOW - 5 * DAY)
    store = load_trust_store([pki.root.cert])
    with pytest.raises(CertificateExpired, match=r"expired or not yet valid") as info:
        verify_server_chain(leaf.chain, store, "localhost", NOW)
    assert "not valid at validation time" in (info.value.certificate_error or "")


def test_unknown_ca(pki: TestPKI, store: TrustStore) -> None:
    other = TestPKI.create("ec256", slot=20)
    leaf = other.leaf()
    with pytest.raises(UnknownCa, match=r"no chain leads .* to a trusted CA") as info:
        verify_server_chain(leaf.chain, store, "localhost", NOW)
    assert "candidates exhausted" in (info.value.certificate_error or "")
    with pytest.raises(UnknownCa):
        verify_client_chain(leaf.chain, store, NOW)
    # Missing intermediate: no path to the root.
    mine = pki.leaf()
    with pytest.raises(UnknownCa):
        verify_server_chain(mine.chain[:1], store, "localhost", NOW)


def test_self_signed_leaf_is_unknown_ca(store: TrustStore) -> None:
    root = make_ca("lonely", slot=30)
    leaf = make_leaf(root, slot=31)
    with pytest.raises(UnknownCa):
        verify_server_chain([leaf.cert, root.cert], store, "localhost", NOW)


def test_tampered_leaf_signature_is_bad_certificate(pki: TestPKI, store: TrustStore) -> None:
    leaf = pki.leaf()
    der = bytearray(leaf.cert.public_bytes(serialization.Encoding.DER))
    der[-5] ^= 0x01  # inside the signature value
    tampered = x509.load_der_x509_certificate(bytes(der))
    with pytest.raises(BadCertificate, match=r"signature does not verify"):
        verify_server_chain([tampered, *leaf.chain[1:]], store, "localhost", NOW)


def test_hostname_mismatch_is_bad_certificate(pki: TestPKI, store: TrustStore) -> None:
    leaf = pki.leaf(dns_names=("other.example",), ips=("10.0.0.1",))
    for name in ("localhost", "127.0.0.1", "x.other.example"):
        with pytest.raises(BadCertificate, match=r"not issued for the expected name") as info:
            verify_server_chain(leaf.chain, store, name, NOW)
        assert "subjectAltName" in (info.value.certificate_error or "")
    wildcard = pki.leaf(dns_names=("*.example.net",), ips=())
    verify_server_chain(wildcard.chain, store, "a.example.net", NOW)
    with pytest.raises(BadCertificate):
        verify_server_chain(wildcard.chain, store, "a.b.example.net", NOW)


def test_missing_san(pki: TestPKI, store: TrustStore) -> None:
    leaf = pki.leaf(dns_names=(), ips=())
    with pytest.raises(BadCertificate, match=r"names no host \(no subjectAltName\)"):
        verify_server_chain(leaf.chain, store, "localhost", NOW)
    # Client certificates need no subjectAltName.
    verify_client_chain(leaf.chain, store, NOW)


def test_wrong_extended_key_usage_is_unsupported_certificate(
    pki: TestPKI, store: TrustStore
) -> None:
    client_only = pki.leaf(server=False)
    with pytest.raises(UnsupportedCertificate, match=r"not issued for this use \(EKU\)"):
        verify_server_chain(client_only.chain, store, "localhost", NOW)
    server_only = pki.leaf(client=False)
    with pytest.raises(UnsupportedCertificate, match=r"not issued for this use \(EKU\)"):
        verify_client_chain(server_only.chain, store, NOW)


def test_forbidden_ca_key_is_unsupported_certificate() -> None:
    # The web PKI profile allows no Ed25519 CA keys.
    pki = TestPKI.create("ed25519", intermediate=False, slot=40)
    leaf = pki.leaf()
    with pytest.raises(UnsupportedCertificate, match=r"key type or size that is not allowed") as e:
        verify_server_chain(leaf.chain, load_trust_store([pki.root.cert]), "localhost", NOW)
    assert "Forbidden public key algorithm" in (e.value.certificate_error or "")


def test_unsupported_leaf_keys(pki: TestPKI, store: TrustStore) -> None:
    small = pki.leaf("rsa1024")
    with pytest.raises(UnsupportedCertificate, match=r"RSA-1024"):
        verify_server_chain(small.chain, store, "localhost", NOW)
    x = make_leaf(pki.issuer, "ec256")
    # An X25519 key cannot sign: build the same leaf with one.
    builder = (
        x509.CertificateBuilder()
        .subject_name(x.cert.subject)
        .issuer_name(x.cert.issuer)
        .public_key(x25519.X25519PrivateKey.generate().public_key())
        .serial_number(1)
        .not_valid_before(NOW - DAY)
        .not_valid_after(NOW + DAY)
    )
    for ext in x.cert.extensions:
        if not isinstance(ext.value, x509.SubjectKeyIdentifier):
            builder = builder.add_extension(ext.value, ext.critical)
    dh = builder.sign(pki.issuer.key, hashes.SHA256())
    with pytest.raises(UnsupportedCertificate, match=r"cannot sign"):
        verify_server_chain([dh, *x.chain[1:]], store, "localhost", NOW)
    with pytest.raises(UnsupportedCertificate):
        verify_certificate_verify(dh, S.ed25519, b"sig", TRANSCRIPT, True)


def test_empty_chains() -> None:
    store = load_trust_store([make_ca().cert])
    with pytest.raises(DecodeErrorAlert):
        verify_server_chain([], store, "localhost", NOW)
    with pytest.raises(CertificateRequired):
        verify_client_chain([], store, NOW)


def test_parse_chain_untrusted(pki: TestPKI) -> None:
    leaf = pki.leaf()
    ders = [c.public_bytes(serialization.Encoding.DER) for c in leaf.chain]
    assert parse_certificate_chain_untrusted([memoryview(d) for d in ders]) == leaf.chain
    for bad in (b"", b"\x30\x03\x02\x01\x01", ders[0][:-1], b"garbage"):
        with pytest.raises(BadCertificate, match=r"malformed"):
            parse_certificate_chain_untrusted([ders[0], bad])


# -- loading ---------------------------------------------------------------------------


def test_load_certificate_chain_forms(pki: TestPKI, tmp_path: Path) -> None:
    leaf = pki.leaf("ec384")
    cert_path, key_path = leaf.write(tmp_path, "server")
    assert load_certificate_chain(cert_path) == leaf.chain
    assert load_certificate_chain(str(cert_path)) == leaf.chain
    assert load_certificate_chain(leaf.chain_pem) == leaf.chain
    der = leaf.cert.public_bytes(serialization.Encoding.DER)
    assert load_certificate_chain(der) == [leaf.cert]
    (tmp_path / "leaf.der").write_bytes(der)
    assert load_certificate_chain(tmp_path / "leaf.der") == [leaf.cert]
    assert load_certificate_chain(leaf.cert) == [leaf.cert]
    assert load_certificate_chain(leaf.chain) == leaf.chain
    assert load_certificate_chain([der, leaf.chain[1]]) == leaf.chain
    certs, key = load_identity(cert_path, key_path)
    assert certs == leaf.chain and schemes_for_key(key) == [S.ecdsa_secp384r1_sha384]


def test_load_certificate_chain_errors(pki: TestPKI, tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    with pytest.raises(FileNotFoundError, match=r"certificate chain file not found: .*nope.pem"):
        load_certificate_chain(missing)
    garbage = tmp_path / "garbage.pem"
    garbage.write_bytes(b"this is not a certificate")
    with pytest.raises(ValueError, match=r"garbage.pem: neither PEM nor a DER certificate"):
        load_certificate_chain(garbage)
    key_only = tmp_path / "key.pem"
    key_only.write_bytes(key_pem(cached_key("ec256")))
    with pytest.raises(ValueError, match=r"key.pem: no PEM CERTIFICATE block"):
        load_certificate_chain(key_only)
    broken = tmp_path / "broken.pem"
    pem = cert_pem(pki.root.cert)
    broken.write_bytes(pem[:40] + b"!!!!" + pem[44:])
    with pytest.raises(ValueError, match=r"broken.pem: bad PEM certificate"):
        load_certificate_chain(broken)
    empty = tmp_path / "empty.pem"
    empty.write_bytes(b"\n")
    with pytest.raises(ValueError, match=r"empty.pem: empty"):
        load_certificate_chain(empty)
    with pytest.raises(ValueError, match=r"is a directory"):
        load_certificate_chain(tmp_path)
    with pytest.raises(ValueError, match=r"empty"):
        load_certificate_chain([])
    with pytest.raises(ValueError, match=r"not a Certificate or bytes"):
        load_certificate_chain([42])  # type: ignore[list-item]
    with pytest.raises(ValueError, match=r"not int"):
        load_certificate_chain(42)  # type: ignore[arg-type]


def test_load_private_key_forms(tmp_path: Path) -> None:
    key = cached_key("rsa2048")
    path = tmp_path / "k.pem"
    path.write_bytes(key_pem(key))
    assert load_private_key(path).private_numbers() == key.private_numbers()  # type: ignore[union-attr]
    der = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    assert load_private_key(der).private_numbers() == key.private_numbers()  # type: ignore[union-attr]
    assert load_private_key(key) is key
    encrypted = tmp_path / "enc.pem"
    encrypted.write_bytes(key_pem(key, b"s3cret"))
    assert load_private_key(encrypted, "s3cret").private_numbers() == key.private_numbers()  # type: ignore[union-attr]
    ml = cached_key("mldsa65")
    assert schemes_for_key(load_private_key(key_pem(ml))) == [S.mldsa65]


def test_load_private_key_errors(tmp_path: Path, pki: TestPKI) -> None:
    key = cached_key("ec256")
    with pytest.raises(FileNotFoundError, match=r"private key file not found: .*missing.key"):
        load_private_key(tmp_path / "missing.key")
    encrypted = tmp_path / "enc.pem"
    encrypted.write_bytes(key_pem(key, b"s3cret"))
    with pytest.raises(ValueError, match=r"enc.pem: wrong password"):
        load_private_key(encrypted, b"wrong")
    with pytest.raises(ValueError, match=r"enc.pem: .*encrypted"):
        load_private_key(encrypted)
    with pytest.raises(ValueError, match=r"not encrypted"):
        load_private_key(key_pem(key), b"pw")
    bad = tmp_path / "bad.key"
    bad.write_bytes(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    with pytest.raises(ValueError, match=r"bad.key: cannot read the private key"):
        load_private_key(bad)
    with pytest.raises(ValueError, match=r"unsupported private key type X25519"):
        load_private_key(key_pem(x25519.X25519PrivateKey.generate()))
    with pytest.raises(ValueError, match=r"unsupported private key type DSA"):
        load_private_key(key_pem(dsa.generate_private_key(2048)))
    with pytest.raises(ValueError, match=r"unsupported private key type EC secp256k1"):
        load_private_key(ec.generate_private_key(ec.SECP256K1()))
    with pytest.raises(ValueError, match=r"unsupported"):
        load_private_key(pki.root.cert)  # type: ignore[arg-type]


def test_key_must_match_leaf(pki: TestPKI, tmp_path: Path) -> None:
    leaf = pki.leaf("ec256")
    other = cached_key("ec256", 7)
    cert_path, _ = leaf.write(tmp_path, "srv")
    key_path = tmp_path / "other.key"
    key_path.write_bytes(key_pem(other))
    with pytest.raises(
        ValueError, match=r"other.key / .*srv.pem: .*does not match the certificate"
    ):
        load_identity(cert_path, key_path)
    with pytest.raises(ValueError, match=r"RSA-2048.*EC secp256r1"):
        check_key_matches_certificate(cached_key("rsa2048"), leaf.cert)
    check_key_matches_certificate(leaf.key, leaf.cert)
    ml = pki.leaf("mldsa44")
    check_key_matches_certificate(ml.key, ml.cert)
    with pytest.raises(ValueError, match=r"does not match"):
        check_key_matches_certificate(cached_key("mldsa44", 3), ml.cert)


# -- trust stores ------------------------------------------------------------------------


def test_trust_store_from_file_bytes_and_folder(pki: TestPKI, tmp_path: Path) -> None:
    other = TestPKI.create("ec384", slot=50)
    ca_file = pki.write_root(tmp_path)
    store = load_trust_store(ca_file)
    assert store.certificates == (pki.root.cert,) and store.sources == (str(ca_file),)
    assert len(load_trust_store(pki.root_pem + other.root_pem + pki.root_pem)) == 2  # deduped
    folder = tmp_path / "cas"
    folder.mkdir()
    (folder / "a.pem").write_bytes(pki.root_pem)
    (folder / "b.crt").write_bytes(other.root_pem)
    (folder / "README").write_text("not a certificate")
    (folder / "c.key").write_bytes(key_pem(cached_key("ec256")))
    (folder / "sub").mkdir()
    both = load_trust_store(cadir=folder)
    assert set(both.certificates) == {pki.root.cert, other.root.cert}
    leaf = other.leaf()
    verify_server_chain(leaf.chain, both, "localhost", NOW)
    with pytest.raises(UnknownCa):
        verify_server_chain(leaf.chain, store, "localhost", NOW)
    combined = load_trust_store(ca_file, folder)
    assert len(combined) == 2 and len(combined.sources) == 2


def test_trust_store_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"CA file not found: .*ca.pem"):
        load_trust_store(tmp_path / "ca.pem")
    with pytest.raises(FileNotFoundError, match=r"CA folder not found: .*nowhere"):
        load_trust_store(cadir=tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match=r"holds no PEM certificate"):
        load_trust_store(cadir=empty)
    (empty / "broken.pem").write_bytes(
        b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    )
    with pytest.raises(ValueError, match=r"broken.pem: bad PEM certificate"):
        load_trust_store(cadir=empty)
    not_dir = tmp_path / "file"
    not_dir.write_text("x")
    with pytest.raises(ValueError, match=r"is not a folder"):
        load_trust_store(cadir=not_dir)
    with pytest.raises(ValueError, match=r"no trust anchors"):
        load_trust_store(use_system=False)


def test_system_trust_store() -> None:
    try:
        system = system_trust_store()
    except FileNotFoundError:
        pytest.skip("this machine has no system trust store")
    assert len(system) > 10
    assert load_trust_store() is not None
    assert system_trust_store() is system  # read once
    with_extra = load_trust_store([make_ca().cert], use_system=True)
    assert len(with_extra) == len(system) + 1


def test_self_signed_certificate_trusted_directly() -> None:
    # `openssl req -x509` certificates (cA=TRUE, used as their own trust anchor),
    # as the interop peers use them.
    cert = make_self_signed("ec256", slot=70)
    store = load_trust_store(cert_pem(cert.cert))
    assert verify_server_chain(cert.chain, store, "localhost", NOW) == [cert.cert]
    assert verify_server_chain(cert.chain, store, "127.0.0.1", NOW) == [cert.cert]
    assert verify_client_chain(cert.chain, store, NOW) == [cert.cert]
    with pytest.raises(BadCertificate):
        verify_server_chain(cert.chain, store, "example.com", NOW)
    with pytest.raises(UnknownCa):
        verify_server_chain(cert.chain, load_trust_store([make_ca().cert]), "localhost", NOW)


def test_wolfssl_shaped_certificates() -> None:
    root, leaf = make_wolfssl_like()
    store = load_trust_store([root.cert])
    assert verify_server_chain(leaf.chain, store, "example.com", NOW)[-1] == root.cert
    assert verify_client_chain(leaf.chain, store, NOW)[-1] == root.cert


def test_ca_without_key_cert_sign_is_refused() -> None:
    pki = TestPKI.create(slot=80)
    inter = make_ca("no keyCertSign", issuer=pki.root, key_cert_sign=False, slot=82)
    leaf = make_leaf(inter, slot=83)
    with pytest.raises(UnknownCa, match="keyCertSign"):
        verify_server_chain(leaf.chain, load_trust_store([pki.root.cert]), "localhost", NOW)


def test_default_signature_schemes_cover_every_key_type() -> None:
    from dtls13.handshake.certificates import DEFAULT_SIGNATURE_SCHEMES

    for kind in [*KEY_KINDS, "ec521"]:
        assert set(schemes_for_key(cached_key(kind))) <= set(DEFAULT_SIGNATURE_SCHEMES)
        # Any key can pick a scheme from what we offer.
        choose_scheme(cached_key(kind), DEFAULT_SIGNATURE_SCHEMES)
    # PKCS#1 only for certificates: listed last, never chosen for CertificateVerify.
    assert DEFAULT_SIGNATURE_SCHEMES[-3:] == (
        S.rsa_pkcs1_sha256,
        S.rsa_pkcs1_sha384,
        S.rsa_pkcs1_sha512,
    )
    assert choose_scheme(cached_key("rsa2048"), DEFAULT_SIGNATURE_SCHEMES[::-1]) in (
        S.rsa_pss_rsae_sha512,
        S.rsa_pss_rsae_sha384,
        S.rsa_pss_rsae_sha256,
    )


def test_rsa_pss_pss_binding() -> None:
    """rsa_pss_rsae_* fits rsaEncryption keys, rsa_pss_pss_* keys with the RSASSA-PSS OID."""
    from dtls13.handshake.certificates import schemes_for_certificate
    from tests.support.pki import _der_tlv, swap_public_key

    pki = TestPKI.create(slot=90)
    leaf = pki.leaf("rsa2048")
    pkcs1 = leaf.key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.PKCS1
    )
    rsassa_pss = bytes.fromhex("06092a864886f70d01010a")  # OID 1.2.840.113549.1.1.10
    spki = _der_tlv(0x30, _der_tlv(0x30, rsassa_pss) + _der_tlv(0x03, b"\x00" + pkcs1))

    class PssKey:
        def public_bytes(self, *args: object) -> bytes:
            return spki

    pss_cert = swap_public_key(leaf.cert, PssKey(), pki.issuer.key)
    assert schemes_for_certificate(pss_cert) == [
        S.rsa_pss_pss_sha256,
        S.rsa_pss_pss_sha384,
        S.rsa_pss_pss_sha512,
    ]
    assert schemes_for_certificate(leaf.cert) == EXPECTED_SCHEMES["rsa2048"]
    scheme = choose_scheme(leaf.key, [S.rsa_pss_rsae_sha256, S.rsa_pss_pss_sha384], None, pss_cert)
    assert scheme == S.rsa_pss_pss_sha384
    sig = sign_certificate_verify(leaf.key, scheme, TRANSCRIPT, True)
    verify_certificate_verify(pss_cert, scheme, sig, TRANSCRIPT, True)
    with pytest.raises(IllegalParameter):
        verify_certificate_verify(pss_cert, S.rsa_pss_rsae_sha384, sig, TRANSCRIPT, True)
    with pytest.raises(IllegalParameter):
        verify_certificate_verify(leaf.cert, S.rsa_pss_pss_sha384, sig, TRANSCRIPT, True)
    # The chain still verifies: the OID only binds the key to PSS.
    store = load_trust_store([pki.root.cert])
    verify_server_chain([pss_cert, *leaf.chain[1:]], store, "localhost", NOW)


def test_issuer_without_ca_flag_is_refused_even_with_relaxed_criticality() -> None:
    pki = TestPKI.create(slot=84)
    not_a_ca = make_leaf(pki.root, slot=86)  # basicConstraints cA=FALSE
    leaf = make_leaf(not_a_ca, slot=87)
    with pytest.raises(UnknownCa):
        verify_server_chain(leaf.chain, load_trust_store([pki.root.cert]), "localhost", NOW)


@pytest.mark.parametrize("kind", ["ec256", "rsa2048", "ed25519"])
def test_every_one_byte_corruption_gives_an_alert_or_a_valid_chain(
    pki: TestPKI, store: TrustStore, kind: str
) -> None:
    """Peer bytes never raise anything but an Alert, whatever byte is flipped."""
    from dtls13.alerts import Alert

    leaf = pki.leaf(kind)
    der = leaf.cert.public_bytes(serialization.Encoding.DER)
    inter = leaf.chain[1].public_bytes(serialization.Encoding.DER)
    outcomes: set[str] = set()
    cases = [(i, pos) for i, blob in enumerate((der, inter)) for pos in range(len(blob))]
    for which, pos in cases:
        pair = [bytearray(der), bytearray(inter)]
        pair[which][pos] ^= 0x55
        try:
            chain = parse_certificate_chain_untrusted([bytes(b) for b in pair])
            verify_server_chain(chain, store, "localhost", NOW)
            verify_certificate_verify(
                chain[0], schemes_for_key(leaf.key)[0], b"x", TRANSCRIPT, True
            )
            outcomes.add("accepted")
        except Alert as alert:
            outcomes.add(type(alert).__name__)
    assert "accepted" not in outcomes
    assert {"BadCertificate"} <= outcomes
