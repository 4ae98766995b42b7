"""A client with several credentials answers a CertificateRequest with the first that fits
it (its signature_algorithms, RFC 8446 §4.3.2), or with an empty Certificate when none does
(§4.4.2); both sides report the credential they authenticated with."""

from __future__ import annotations

from typing import Any

import pytest

from dtls13.alerts import AlertDescription as A
from dtls13.config import ClientConfig, ServerConfig
from dtls13.events import ConnectionTerminated, HandshakeCompleted
from dtls13.handshake import authentication, server_flight
from dtls13.handshake import extensions as ext
from dtls13.handshake.constants import ExtensionType
from dtls13.handshake.constants import SignatureScheme as SS
from dtls13.handshake.identity import Credential
from dtls13.handshake.selection import ServerCertificate
from tests.support.dtls_pair import Pair, make_pair
from tests.support.pki import cert_pem, make_ca, make_leaf

CA = make_ca("client credentials CA", "ec256", slot=210)
EC = make_leaf(CA, "ec256", cn="client ec", slot=211)
RSA = make_leaf(CA, "rsa2048", cn="client rsa", slot=212)
SERVER = make_leaf(CA, "ec256", cn="server", slot=213)
P384 = make_leaf(CA, "ec384", cn="client p384", slot=214)
# The server asks for ECDSA P-256 or RSASSA-PSS with SHA-256 or SHA-512 only.
ASKED = ["ecdsa_secp256r1_sha256", "rsa_pss_rsae_sha256", "rsa_pss_rsae_sha512"]


def _pair(client: dict[str, Any], client_auth: str = "required") -> Pair:
    served = ServerCertificate(SERVER.chain_pem, SERVER.key)
    scfg = ServerConfig(
        certificates=[served],
        client_auth=client_auth,  # type: ignore[arg-type]
        cafile=cert_pem(CA.cert),
        signature_schemes=ASKED,
        idle_release_after=None,
        debug=True,
    )
    ccfg = ClientConfig(verify=False, idle_release_after=None, debug=True, **client)
    return make_pair(cfgs=(ccfg, scfg))


def _completed(pair: Pair) -> tuple[HandshakeCompleted, HandshakeCompleted]:
    assert pair.handshake()
    pair.drain()
    client = next(e for e in pair.client_events if isinstance(e, HandshakeCompleted))
    server = next(e for e in pair.server_events if isinstance(e, HandshakeCompleted))
    pair.close()
    return client, server


def test_the_client_sends_its_first_credential_the_request_can_verify() -> None:
    sha384_only = Credential(RSA.chain_pem, RSA.key, signature_schemes=["rsa_pss_rsae_sha384"])
    ec = Credential(EC.chain_pem, EC.key)
    client, server = _completed(_pair({"certificates": [sha384_only, ec]}))
    assert client.credential is ec
    assert server.peer_certificates[0] == EC.cert
    assert isinstance(server.credential, ServerCertificate)
    assert server.credential.chain[0] == SERVER.cert


def test_the_client_signs_with_its_first_configured_scheme_the_request_lists(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    signed: list[tuple[int, bool]] = []
    original = authentication.certs.sign_certificate_verify

    def spy(key: Any, scheme: int, digest: bytes, is_server: bool) -> bytes:
        signed.append((scheme, is_server))
        return original(key, scheme, digest, is_server=is_server)

    monkeypatch.setattr(authentication.certs, "sign_certificate_verify", spy)
    rsa = Credential(RSA.chain_pem, RSA.key)
    ours = ["ecdsa_secp256r1_sha256", "rsa_pss_rsae_sha512", "rsa_pss_rsae_sha256"]
    client, _ = _completed(_pair({"certificates": [rsa], "signature_schemes": ours}))
    assert client.credential is rsa
    assert (SS.rsa_pss_rsae_sha512, False) in signed


def test_a_client_without_a_fitting_credential_sends_an_empty_certificate() -> None:
    """RFC 8446 §4.4.2: a client with no suitable certificate sends none (it used to end
    the handshake with handshake_failure when its one key could not sign)."""
    p384 = {"certificate_chain": P384.chain_pem, "private_key": P384.key_pem}
    client, server = _completed(_pair(p384, client_auth="optional"))
    assert client.credential is None and server.peer_certificates == ()
    # A server that requires a certificate refuses the empty one (certificate_required).
    pair = _pair(p384)
    assert not pair.handshake()
    pair.drain()
    ended = [e for e in pair.server_events if isinstance(e, ConnectionTerminated)]
    assert ended and ended[0].alert is A.certificate_required
    pair.close()


def test_a_malformed_certificate_authorities_in_a_certificate_request_is_decode_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """RFC 8446 §4.2.4: authorities<3..2^16-1>; an empty list is malformed."""
    real = server_flight.msgs

    class WithEmptyAuthorities:
        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

        @staticmethod
        def CertificateRequest(context: bytes, extensions: Any) -> Any:
            bad = ext.Extension(ExtensionType.certificate_authorities, b"\x00\x00")
            return real.CertificateRequest(context, (*extensions, bad))

    monkeypatch.setattr(server_flight, "msgs", WithEmptyAuthorities())
    pair = _pair({"certificates": [Credential(EC.chain_pem, EC.key)]})
    assert not pair.handshake()
    ended = pair.terminated("client")
    assert ended is not None and not ended.by_peer and ended.alert is A.decode_error
    pair.close()
