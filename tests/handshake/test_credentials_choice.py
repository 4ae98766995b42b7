"""Credentials (X.509 chains and raw public keys): built and checked at construction, and
chosen per handshake by certificate type (RFC 7250), signature scheme (RFC 8446 §4.4.2.2,
our preference first) and, when a credential asks for it, by the peer's
certificate_authorities (RFC 8446 §4.2.4)."""

from __future__ import annotations

from typing import Any

import pytest

from dtls13._fast import Buffer, DecodeError
from dtls13.alerts import DecodeErrorAlert, HandshakeFailure, UnsupportedCertificate
from dtls13.config import ClientConfig, ServerConfig
from dtls13.handshake import extensions as ext
from dtls13.handshake.constants import SignatureScheme as SS
from dtls13.handshake.gate import FlightBound
from dtls13.handshake.identity import (
    Credential,
    choose,
    pull_certificate_authorities,
    push_certificate_authorities,
)
from dtls13.handshake.raw_keys import CertificateType, push_certificate_types, spki
from dtls13.handshake.selection import ServerCertificate, choose_server_credential
from tests.support.pki import make_ca, make_leaf

CT = CertificateType
CA_ONE = make_ca("credential CA one", "ec256", slot=200)
CA_TWO = make_ca("credential CA two", "ec256", slot=201)
EC_ONE = make_leaf(CA_ONE, "ec256", cn="ec one", slot=202)
EC_TWO = make_leaf(CA_TWO, "ec256", cn="ec two", slot=203)
RSA_ONE = make_leaf(CA_ONE, "rsa2048", cn="rsa one", slot=204)
P384 = make_leaf(CA_TWO, "ec384", cn="p384", slot=205)
ALL_SCHEMES = [int(s) for s in SS]


def _names(*cas: Any) -> frozenset[bytes]:
    return frozenset(ca.cert.subject.public_bytes() for ca in cas)


def _authorities(*cas: Any) -> bytes:
    return ext.encode(push_certificate_authorities, [ca.cert.subject.public_bytes() for ca in cas])


def _server(*creds: Any, **kw: Any) -> ServerConfig:
    return ServerConfig(certificates=list(creds), **kw)


def _pick(cfg: ServerConfig, offered: list[int], **kw: Any) -> tuple[Any, int, Any]:
    args = {"server_types": None, "authorities": None, **kw}
    return choose_server_credential(
        cfg, None, offered, lambda *_: None, args["server_types"], args["authorities"]
    )


# -- construction (programmer input: raises at once) ---------------------------------------


def test_a_raw_key_credential_sends_its_subject_public_key_info() -> None:
    cred = Credential(private_key=EC_ONE.key, raw_public_key=True)
    assert cred.certificate_type is CT.RawPublicKey and cred.chain == ()
    assert spki(EC_ONE.key.public_key()) in cred.body
    assert cred.schemes == (SS.ecdsa_secp256r1_sha256,)


def test_an_x509_credential_knows_the_issuers_of_its_chain() -> None:
    cred = Credential(EC_ONE.chain_pem, EC_ONE.key_pem)
    assert cred.certificate_type is CT.X509
    assert cred.issuers == _names(CA_ONE)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"private_key": EC_ONE.key}, ValueError, "certificate_chain is needed"),
        ({"certificate_chain": EC_ONE.chain_pem}, ValueError, "needs private_key"),
        (
            {"certificate_chain": EC_ONE.chain_pem, "private_key": EC_ONE.key,
             "raw_public_key": True},
            ValueError,
            "has no certificate_chain",
        ),
        (
            {"private_key": EC_ONE.key, "raw_public_key": True, "must_match_issuer": True},
            ValueError,
            "needs a certificate chain",
        ),
        (
            {"certificate_chain": EC_ONE.chain_pem, "private_key": EC_ONE.key,
             "signature_schemes": ["rsa_pss_rsae_sha256"]},
            ValueError,
            "signs with none",
        ),
        (
            {"certificate_chain": EC_ONE.chain_pem, "private_key": EC_ONE.key,
             "signature_schemes": "ecdsa_secp256r1_sha256"},
            TypeError,
            "not one string",
        ),
        (
            {"certificate_chain": EC_ONE.chain_pem, "private_key": EC_ONE.key,
             "signature_schemes": ["no_such_scheme"]},
            ValueError,
            "unknown signature scheme",
        ),
        (
            {"certificate_chain": EC_ONE.chain_pem, "private_key": EC_ONE.key,
             "signature_schemes": [0xFEFE]},
            ValueError,
            "unknown signature scheme 0xfefe",
        ),
        (
            {"certificate_chain": EC_ONE.chain_pem, "private_key": EC_ONE.key,
             "must_match_issuer": 1},
            TypeError,
            "True or False",
        ),
    ],
)  # fmt: skip
def test_bad_credentials_raise_at_construction(
    kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        Credential(**kwargs)


# -- signature schemes: ours first -------------------------------------------------------------


def test_a_credentials_own_schemes_limit_and_order_what_it_signs_with() -> None:
    cred = Credential(
        RSA_ONE.chain_pem,
        RSA_ONE.key,
        signature_schemes=["rsa_pss_rsae_sha512", "rsa_pss_rsae_sha384"],
    )
    offered = [SS.rsa_pss_rsae_sha256, SS.rsa_pss_rsae_sha384, SS.rsa_pss_rsae_sha512]
    assert cred.scheme_for(offered) == SS.rsa_pss_rsae_sha512
    assert cred.scheme_for([SS.rsa_pss_rsae_sha256]) is None
    # The configured order does not override the credential's own.
    assert cred.scheme_for(offered, [SS.rsa_pss_rsae_sha384]) == SS.rsa_pss_rsae_sha512


def test_signature_schemes_take_members_numbers_and_names() -> None:
    cred = Credential(
        RSA_ONE.chain_pem,
        RSA_ONE.key,
        signature_schemes=[SS.rsa_pss_rsae_sha512, 0x0805, "RSA_PSS_RSAE_SHA256"],
    )
    assert cred.schemes == (SS.rsa_pss_rsae_sha512, SS.rsa_pss_rsae_sha384, SS.rsa_pss_rsae_sha256)


def test_the_configured_order_comes_first_and_the_keys_other_schemes_after() -> None:
    cred = Credential(RSA_ONE.chain_pem, RSA_ONE.key)
    offered = [SS.rsa_pss_rsae_sha256, SS.rsa_pss_rsae_sha384]
    assert cred.scheme_for(offered, [SS.rsa_pss_rsae_sha384, SS.rsa_pss_rsae_sha256]) == (
        SS.rsa_pss_rsae_sha384
    )
    # A scheme the configured list leaves out still serves a peer that offers only it.
    assert cred.scheme_for([SS.rsa_pss_rsae_sha256], [SS.ecdsa_secp256r1_sha256]) == (
        SS.rsa_pss_rsae_sha256
    )


# -- choosing among several ------------------------------------------------------------------


def test_choose_skips_credentials_of_another_type_and_unmatched_issuers() -> None:
    raw = Credential(private_key=EC_TWO.key, raw_public_key=True)
    gated = Credential(EC_ONE.chain_pem, EC_ONE.key, must_match_issuer=True)
    plain = Credential(EC_TWO.chain_pem, EC_TWO.key)
    creds = [raw, gated, plain]
    assert choose(creds, CT.X509, ALL_SCHEMES, None, None) == (plain, SS.ecdsa_secp256r1_sha256)
    assert choose(creds, CT.X509, ALL_SCHEMES, None, _names(CA_TWO))[0] is plain
    assert choose(creds, CT.X509, ALL_SCHEMES, None, _names(CA_ONE))[0] is gated
    assert choose(creds, CT.RawPublicKey, ALL_SCHEMES, None, None)[0] is raw
    assert choose([gated], CT.X509, ALL_SCHEMES, None, None) is None


def test_an_ecdsa_key_needs_the_scheme_of_its_own_curve() -> None:
    """RFC 8446 §4.2.3: in TLS 1.3 an ECDSA scheme names the curve."""
    p384 = Credential(P384.chain_pem, P384.key)
    p256 = Credential(EC_ONE.chain_pem, EC_ONE.key)
    found = choose([p384, p256], CT.X509, [SS.ecdsa_secp256r1_sha256], None, None)
    assert found == (p256, SS.ecdsa_secp256r1_sha256)


# -- the server's choice for a ClientHello ---------------------------------------------------


def test_a_server_credential_that_must_match_goes_only_to_a_client_naming_its_issuer() -> None:
    gated = ServerCertificate(EC_ONE.chain_pem, EC_ONE.key, must_match_issuer=True)
    fallback = ServerCertificate(EC_TWO.chain_pem, EC_TWO.key)
    cfg = _server(gated, fallback)
    assert _pick(cfg, ALL_SCHEMES)[0] is fallback
    assert _pick(cfg, ALL_SCHEMES, authorities=_authorities(CA_TWO))[0] is fallback
    assert _pick(cfg, ALL_SCHEMES, authorities=_authorities(CA_TWO, CA_ONE))[0] is gated
    with pytest.raises(HandshakeFailure, match="certificate_authorities"):
        _pick(_server(gated), ALL_SCHEMES, authorities=_authorities(CA_TWO))


def test_a_malformed_certificate_authorities_extension_is_decode_error() -> None:
    cfg = _server(ServerCertificate(EC_ONE.chain_pem, EC_ONE.key))
    for bad in (b"", b"\x00\x00", b"\x00\x02\x00\x00", b"\x00\x05\x00\x04ab"):
        with pytest.raises(DecodeErrorAlert):
            _pick(cfg, ALL_SCHEMES, authorities=bad)


def test_certificate_authorities_round_trips_and_rejects_empty_names() -> None:
    data = _authorities(CA_ONE, CA_TWO)
    assert ext.decode(data, pull_certificate_authorities) == _names(CA_ONE, CA_TWO)
    for bad in (b"\x00\x00", b"\x00\x02\x00\x00", data[:-1], data + b"\x00"):
        with pytest.raises(DecodeError):
            ext.decode(bad, pull_certificate_authorities)
    buf = Buffer(capacity=8)
    try:
        with pytest.raises(DecodeError):
            pull_certificate_authorities(buf)
    finally:
        buf.close()


def test_a_per_credential_scheme_list_passes_over_a_credential_the_client_cannot_verify() -> None:
    sha384_only = ServerCertificate(RSA_ONE.chain_pem, RSA_ONE.key, signature_schemes=[0x0805])
    sha256 = ServerCertificate(RSA_ONE.chain_pem, RSA_ONE.key, signature_schemes=[0x0804])
    cfg = _server(sha384_only, sha256)
    assert _pick(cfg, [SS.rsa_pss_rsae_sha256])[:2] == (sha256, SS.rsa_pss_rsae_sha256)
    with pytest.raises(HandshakeFailure, match="no credential can sign"):
        _pick(_server(sha384_only), [SS.rsa_pss_rsae_sha256])


def test_the_server_signs_with_its_first_configured_scheme_the_client_offered() -> None:
    cfg = _server(
        ServerCertificate(RSA_ONE.chain_pem, RSA_ONE.key),
        signature_schemes=["rsa_pss_rsae_sha512", "rsa_pss_rsae_sha256"],
    )
    offered = [SS.rsa_pss_rsae_sha256, SS.rsa_pss_rsae_sha512]
    assert _pick(cfg, offered)[1] == SS.rsa_pss_rsae_sha512


def test_raw_and_x509_server_credentials_are_chosen_by_the_clients_certificate_types() -> None:
    x509 = ServerCertificate(EC_ONE.chain_pem, EC_ONE.key)
    raw = ServerCertificate(private_key=EC_TWO.key, raw_public_key=True)
    cfg = _server(x509, raw)
    assert cfg.own_types == (CT.RawPublicKey, CT.X509)

    def types(*values: int) -> bytes:
        return ext.encode(push_certificate_types, list(values))

    # No server_certificate_type: X.509 only, and nothing to answer.
    assert _pick(cfg, ALL_SCHEMES)[0::2] == (x509, None)
    cred, _, answer = _pick(cfg, ALL_SCHEMES, server_types=types(CT.RawPublicKey))
    assert cred is raw and answer is not None and answer.data == bytes([CT.RawPublicKey])
    # The client's order decides between types; within one, ours.
    assert _pick(cfg, ALL_SCHEMES, server_types=types(CT.X509, CT.RawPublicKey))[0] is x509
    # A type with no credential that fits gives way to the next the client accepts.
    only_p256 = [SS.ecdsa_secp256r1_sha256]
    raw384 = ServerCertificate(private_key=P384.key, raw_public_key=True)
    mixed = _server(raw384, x509)
    assert _pick(mixed, only_p256, server_types=types(CT.RawPublicKey, CT.X509))[0] is x509
    with pytest.raises(UnsupportedCertificate):
        _pick(_server(raw), ALL_SCHEMES)


# -- the client's credentials ------------------------------------------------------------------


def test_client_credentials_come_in_order_and_give_the_offered_certificate_types() -> None:
    extra = Credential(private_key=EC_TWO.key, raw_public_key=True)
    cfg = ClientConfig(
        verify=False,
        certificate_chain=EC_ONE.chain_pem,
        private_key=EC_ONE.key_pem,
        certificates=[extra, (RSA_ONE.chain_pem, RSA_ONE.key)],
    )
    first, second, third = cfg.credentials
    assert first.chain == tuple(EC_ONE.chain) and second is extra and third.key is RSA_ONE.key
    assert cfg.own_types == (CT.X509, CT.RawPublicKey)
    with pytest.raises(TypeError, match="sequence"):
        ClientConfig(verify=False, certificates="cert.pem")  # type: ignore[arg-type]


def test_the_first_flight_bound_counts_a_raw_key_credentials_certificate() -> None:
    """The HelloRetryRequest gate's estimate of our first flight includes the raw key's
    Certificate message (a SubjectPublicKeyInfo of ~90 bytes), never compressed."""
    raw = ServerCertificate(private_key=EC_ONE.key, raw_public_key=True)
    bound = FlightBound.of(_server(raw, certificate_compression=("zlib",)))
    assert bound.certificate >= len(raw.body) + 64 + 200
    assert all(saved == 0 for saved in bound.saves.values())
