"""The key in a peer's certificate decides its CertificateVerify, whether or not the chain
is verified: a key of an algorithm we cannot use ends the handshake with
unsupported_certificate, never an internal error, and a key bound to RSASSA-PSS by its
OID signs with rsa_pss_pss_* (RFC 8446 §4.2.3, §4.4.3)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from dtls13.alerts import AlertDescription
from dtls13.config import ClientConfig, ServerConfig
from dtls13.events import HandshakeCompleted
from dtls13.handshake import authentication
from dtls13.handshake.constants import SignatureScheme
from dtls13.handshake.verification import PeerVerification
from tests.support.dtls_pair import make_pair, pki
from tests.support.pki import Issued, _der_tlv, swap_public_key

# SubjectPublicKeyInfo of an algorithm nobody implements: OID 1.3.6.1.4.1.55555.1, 32 bytes.
UNKNOWN_OID = _der_tlv(0x06, bytes.fromhex("2b0601040183b20301"))
UNKNOWN_SPKI = _der_tlv(0x30, _der_tlv(0x30, UNKNOWN_OID) + _der_tlv(0x03, b"\x00" + bytes(32)))
RSASSA_PSS_OID = _der_tlv(0x06, bytes.fromhex("2a864886f70d01010a"))  # 1.2.840.113549.1.1.10


class _PublicKeyBytes:
    """Stands for a public key whose SubjectPublicKeyInfo is `spki` (swap_public_key)."""

    def __init__(self, spki: bytes) -> None:
        self.spki = spki

    def public_bytes(self, *_: object) -> bytes:
        return self.spki


def _with_key(kind: str, leaf: Issued, spki: bytes) -> list[x509.Certificate]:
    """The chain of `leaf` (issued by pki(kind)), its certificate carrying `spki` instead
    of its key (re-signed by the same issuer)."""
    issuer = pki(kind).issuer
    return [swap_public_key(leaf.cert, _PublicKeyBytes(spki), issuer.key), *leaf.chain[1:]]


def _lying(config: ClientConfig | ServerConfig, chain: Sequence[x509.Certificate]) -> None:
    """`config`'s endpoint sends `chain` in its Certificate message instead of its own, and
    still signs with its own key: a peer lying about its key."""
    if isinstance(config, ClientConfig):
        (credential,) = config.credentials
    else:
        (credential,) = config.server_certificates.certificates
    body = authentication.certificate_body(tuple(chain))
    object.__setattr__(credential, "body", body)  # the credential's encoded Certificate


def _configs(
    kind: str, leaf: Issued, client: dict[str, Any], server: dict[str, Any]
) -> tuple[ClientConfig, ServerConfig]:
    scfg = ServerConfig(
        certificate_chain=server.pop("chain", leaf.chain_pem),
        private_key=leaf.key,
        idle_release_after=None,
        debug=True,
        **server,
    )
    ccfg = ClientConfig(
        server_name="localhost",
        cafile=pki(kind).root_pem,
        idle_release_after=None,
        debug=True,
        **client,
    )
    return ccfg, scfg


@pytest.mark.parametrize("verify", [False, True])
def test_a_server_key_of_an_unknown_algorithm_is_unsupported_certificate(verify: bool) -> None:
    leaf = pki("ec256").leaf("ec256")
    ccfg, scfg = _configs("ec256", leaf, {"verify": verify}, {})
    _lying(scfg, _with_key("ec256", leaf, UNKNOWN_SPKI))
    pair = make_pair(cfgs=(ccfg, scfg))
    pair.handshake_fails_with("client", AlertDescription.unsupported_certificate)
    pair.close()


def test_a_client_key_of_an_unknown_algorithm_is_unsupported_certificate_when_accepted() -> None:
    """A verify_callback may accept a chain the library could not verify; its key must
    still be one CertificateVerify can be checked with."""
    server_leaf = pki("ec256").leaf("ec256")
    client_leaf = pki("ec256").leaf("ec256", cn="client", slot=7)

    def accept(outcome: PeerVerification) -> bool:
        return True

    client = {"certificate_chain": client_leaf.chain_pem, "private_key": client_leaf.key}
    server = {"client_auth": "required", "verify_callback": accept}
    ccfg, scfg = _configs("ec256", server_leaf, client, server)
    _lying(ccfg, _with_key("ec256", client_leaf, UNKNOWN_SPKI))
    pair = make_pair(cfgs=(ccfg, scfg))
    pair.handshake_fails_with("server", AlertDescription.unsupported_certificate)
    pair.close()


def _pss_spki(leaf: Issued) -> bytes:
    """`leaf`'s RSA key under the RSASSA-PSS OID."""
    pkcs1 = leaf.key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.PKCS1
    )
    return _der_tlv(0x30, _der_tlv(0x30, RSASSA_PSS_OID) + _der_tlv(0x03, b"\x00" + pkcs1))


def test_a_server_key_bound_to_rsassa_pss_signs_with_rsa_pss_pss() -> None:
    """Even for a client that prefers rsa_pss_rsae_*, which the same key under the
    rsaEncryption OID would sign with."""
    leaf = pki("rsa2048").leaf("rsa2048")
    schemes = ["rsa_pss_rsae_sha256", "rsa_pss_pss_sha256", "rsa_pkcs1_sha256"]
    server = {"chain": _with_key("rsa2048", leaf, _pss_spki(leaf))}
    pair = make_pair(cfgs=_configs("rsa2048", leaf, {"signature_schemes": schemes}, server))
    assert pair.handshake()
    done = next(e for e in pair.client_events if isinstance(e, HandshakeCompleted))
    assert done.signature_scheme is SignatureScheme.rsa_pss_pss_sha256
    pair.close()


def test_rsa_pss_rsae_from_a_key_bound_to_rsassa_pss_is_illegal_parameter() -> None:
    """The server signs as its rsaEncryption certificate allows but sends the same key
    under the RSASSA-PSS OID, which allows rsa_pss_pss_* only."""
    leaf = pki("rsa2048").leaf("rsa2048")
    ccfg, scfg = _configs("rsa2048", leaf, {}, {})
    _lying(scfg, _with_key("rsa2048", leaf, _pss_spki(leaf)))
    pair = make_pair(cfgs=(ccfg, scfg))
    pair.handshake_fails_with("client", AlertDescription.illegal_parameter)
    pair.close()
