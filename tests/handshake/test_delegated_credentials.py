"""Delegated credentials (RFC 9345): a server signs CertificateVerify with a short-lived key
its leaf vouches for, only for a client that asked; the client checks the credential (the
leaf's signature, its validity, the leaf's DelegationUsage) before trusting its key."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

import dtls13
from dtls13.alerts import AlertDescription, UnexpectedMessage
from dtls13.certgen import make_self_signed
from dtls13.config import ClientConfig, ServerConfig
from dtls13.handshake import delegated
from dtls13.handshake import messages as msgs
from dtls13.handshake.constants import ExtensionType
from dtls13.handshake.constants import SignatureScheme as SS
from dtls13.handshake.extensions import Extension
from dtls13.handshake.selection import ServerCertificate
from dtls13.handshake.server import ServerHandshake
from tests.support.dtls_pair import Pair, make_pair
from tests.support.pki import DAY, NOW, TestPKI, cached_key

PKI = TestPKI.create("ec256", slot=260)
USAGE = x509.UnrecognizedExtension(delegated.DELEGATION_USAGE, delegated.DELEGATION_USAGE_VALUE)
LEAF = PKI.leaf("ec256", cn="delegating leaf", slot=262, extra=[USAGE])
PLAIN_LEAF = PKI.leaf("ec256", cn="leaf without DelegationUsage", slot=263)
DC_KEY = cached_key("ec256", 264)
P256 = SS.ecdsa_secp256r1_sha256


def _dc(leaf: Any = LEAF, **kw: Any) -> bytes:
    args: dict[str, Any] = {"valid_for": DAY, "now": NOW, **kw}
    return dtls13.delegated_credential(leaf.cert, leaf.key, DC_KEY, P256, **args)


def _dc_credential(leaf: Any = LEAF, dc: bytes | None = None) -> ServerCertificate:
    """The leaf's chain with the DC key as its only key: a server holding it can sign
    CertificateVerify only with the delegated credential."""
    return ServerCertificate(leaf.chain_pem, DC_KEY, delegated_credential=dc or _dc(leaf))


def _pair(server_creds: list[Any], offer: bool = True) -> Pair:
    client = ClientConfig(
        server_name="localhost",
        cafile=PKI.root_pem,
        delegated_credential_schemes=[P256] if offer else [],
        idle_release_after=None,
        debug=True,
    )
    server = ServerConfig(certificates=server_creds, idle_release_after=None, debug=True)
    return make_pair(cfgs=(client, server))


def _client_alert(pair: Pair) -> AlertDescription | None:
    assert not pair.handshake(max_time=10)
    ended = pair.terminated("client")
    assert ended is not None and not ended.by_peer
    return ended.alert


def test_a_client_that_asks_gets_the_delegated_credential() -> None:
    pair = _pair([_dc_credential()])
    assert pair.handshake()  # only the DC key can have signed the CertificateVerify
    assert pair.exchange(b"ping", b"pong")
    pair.close()


def test_a_client_that_does_not_ask_gets_the_plain_certificate() -> None:
    plain = ServerCertificate(LEAF.chain_pem, LEAF.key_pem)
    pair = _pair([_dc_credential(), plain], offer=False)
    assert pair.handshake()
    pair.close()
    # With only the delegated credential, nothing fits a client that did not ask.
    pair = _pair([_dc_credential()], offer=False)
    assert not pair.handshake(max_time=10)
    ended = pair.terminated("server")
    assert ended is not None and ended.alert == AlertDescription.handshake_failure
    assert "did not ask for them" in ended.reason


def test_the_credential_is_chosen_only_when_the_client_names_its_scheme() -> None:
    cred = _dc_credential()
    assert delegated.scheme_for(cred, [P256], None, [P256]) == P256
    assert delegated.scheme_for(cred, [P256], None, None) is None  # no extension
    assert delegated.scheme_for(cred, [P256], None, [SS.ed25519]) is None  # its key's scheme
    # signature_algorithms must hold the scheme the leaf signed the DC with (RFC 9345 §4.1.1).
    assert delegated.scheme_for(cred, [SS.ed25519], None, [P256]) is None


@pytest.mark.parametrize(
    ("case", "dc_kw"),
    [
        ("expired", {"now": NOW - 2 * DAY}),
        ("valid for more than 7 days", {"now": NOW + 3 * DAY, "valid_for": 6 * DAY}),
    ],
)
def test_a_credential_out_of_its_validity_is_illegal_parameter(
    case: str, dc_kw: dict[str, Any]
) -> None:
    pair = _pair([_dc_credential(dc=_dc(**dc_kw))])
    assert _client_alert(pair) == AlertDescription.illegal_parameter, case


def test_a_credential_with_a_bad_signature_is_illegal_parameter() -> None:
    good = _dc()
    bad = good[:-1] + bytes([good[-1] ^ 1])
    pair = _pair([_dc_credential(dc=bad)])
    assert _client_alert(pair) == AlertDescription.illegal_parameter


def test_a_leaf_without_delegation_usage_cannot_delegate() -> None:
    pair = _pair([_dc_credential(PLAIN_LEAF)])
    assert _client_alert(pair) == AlertDescription.illegal_parameter
    assert delegated.leaf_allows_delegation(PLAIN_LEAF.cert) is not None
    assert delegated.leaf_allows_delegation(LEAF.cert) is None


def test_a_delegated_credential_we_did_not_ask_for_is_unexpected_message() -> None:
    entry = msgs.CertificateEntry(b"leaf", (Extension(ExtensionType.delegated_credential, _dc()),))
    with pytest.raises(UnexpectedMessage):
        delegated.peer_credential_untrusted((entry,), LEAF.cert, (), [P256], NOW)
    # Asked for, it is checked and returned; on another certificate it is ignored (§4.1.2).
    got = delegated.peer_credential_untrusted((entry,), LEAF.cert, [P256], [P256], NOW)
    assert got is not None and got.dc_cert_verify_algorithm == P256
    # An application's wall clock without a time zone is taken as UTC.
    naive = NOW.replace(tzinfo=None)
    assert delegated.peer_credential_untrusted((entry,), LEAF.cert, [P256], [P256], naive)
    plain = msgs.CertificateEntry(b"leaf")
    assert delegated.peer_credential_untrusted((plain, entry), LEAF.cert, (), [P256], NOW) is None


def test_the_client_takes_the_credentials_key() -> None:
    entry = msgs.CertificateEntry(b"leaf", (Extension(ExtensionType.delegated_credential, _dc()),))
    dc = delegated.peer_credential_untrusted((entry,), LEAF.cert, [P256], [P256], NOW)
    assert dc is not None
    assert delegated.peer_key_untrusted(dc).public_numbers() == DC_KEY.public_key().public_numbers()


def test_a_server_that_signs_with_the_leaf_key_instead_is_refused(monkeypatch: Any) -> None:
    """With a delegated credential sent, CertificateVerify must use its scheme and verify
    with its key (RFC 9345 §4.1.3): a valid signature by the leaf's key does not do."""
    p384_key = cached_key("ec384", 266)
    dc = dtls13.delegated_credential(
        LEAF.cert, LEAF.key, p384_key, SS.ecdsa_secp384r1_sha384, DAY, now=NOW
    )
    real = ServerHandshake._send_certificate_and_verify

    def leaf_signs(
        self: Any, scheme: Any, body: Any = None, key: Any = None, chain: Any = None
    ) -> None:
        real(self, P256, body, LEAF.key, chain)

    monkeypatch.setattr(ServerHandshake, "_send_certificate_and_verify", leaf_signs)
    client = ClientConfig(
        server_name="localhost",
        cafile=PKI.root_pem,
        delegated_credential_schemes=[SS.ecdsa_secp384r1_sha384],
        idle_release_after=None,
        debug=True,
    )
    cred = ServerCertificate(LEAF.chain_pem, p384_key, delegated_credential=dc)
    server = ServerConfig(certificates=[cred], idle_release_after=None, debug=True)
    pair = make_pair(cfgs=(client, server))
    assert _client_alert(pair) == AlertDescription.illegal_parameter


def test_configuration_mistakes_raise_at_once() -> None:
    other = cached_key("ec256", 265)
    with pytest.raises(ValueError, match="does not match the delegated credential"):
        ServerCertificate(LEAF.chain_pem, other, delegated_credential=_dc())
    with pytest.raises(ValueError, match="certificate chain"):
        ServerCertificate(private_key=DC_KEY, raw_public_key=True, delegated_credential=_dc())
    with pytest.raises(ValueError, match="does not parse"):
        ServerCertificate(LEAF.chain_pem, DC_KEY, delegated_credential=b"\x00\x01")
    with pytest.raises(ValueError, match="7 days"):
        _dc(valid_for=8 * DAY)
    with pytest.raises(ValueError, match="cannot sign"):
        dtls13.delegated_credential(LEAF.cert, LEAF.key, DC_KEY, SS.ed25519, DAY)
    with pytest.raises(ValueError, match="unknown signature scheme"):
        ClientConfig(server_name="x", cafile=PKI.root_pem, delegated_credential_schemes=["nope"])


def test_the_delegated_credential_rides_on_the_leaf_entry() -> None:
    dc = _dc()
    cred = _dc_credential(dc=dc)
    msg = msgs.pull_message(msgs.HandshakeType.certificate, memoryview(cred.body))
    assert isinstance(msg, msgs.Certificate)
    leaf, *rest = msg.certificate_list
    assert leaf.extension(ExtensionType.delegated_credential) == dc
    assert all(not e.extensions for e in rest)
    assert cred.schemes == (P256,)


def test_minting_follows_the_rfc_9345_layout() -> None:
    raw = _dc()
    dc = delegated.decode(raw)
    assert dc.raw == raw and dc.dc_cert_verify_algorithm == P256
    assert dc.expires(LEAF.cert) == NOW + DAY
    cred_len = 4 + 2 + 3 + len(dc.public_key)
    assert raw[4:6] == int(P256).to_bytes(2, "big")
    # Signed: 64 spaces, the context, 0, the leaf, Credential, then the algorithm (§4).
    leaf_der = LEAF.cert.public_bytes(Encoding.DER)
    prefix = b" " * 64 + b"TLS, server delegated credentials\x00"
    expected = prefix + leaf_der + raw[:cred_len] + raw[cred_len : cred_len + 2]
    assert delegated.signed_content(leaf_der, dc) == expected


def test_timedelta_and_seconds_both_give_the_validity() -> None:
    a = delegated.decode(_dc(valid_for=3600))
    b = delegated.decode(_dc(valid_for=datetime.timedelta(hours=1)))
    assert a.valid_time == b.valid_time


def test_certgen_makes_a_certificate_that_may_delegate() -> None:
    cert, _ = make_self_signed(["device.example"], delegation_usage=True)
    assert delegated.leaf_allows_delegation(cert) is None
    plain, _ = make_self_signed(["device.example"])
    assert delegated.leaf_allows_delegation(plain) is not None
