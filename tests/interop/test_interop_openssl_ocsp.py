"""OCSP stapling (RFC 6066 §8 as RFC 8446 §4.4.2.1 carries it) with OpenSSL 4.1's s_server
(-status_file: a DER OCSP response it staples) and s_client (-status: it asks, and prints
the response it got). Skipped without an OpenSSL that speaks DTLS 1.3."""

from __future__ import annotations

import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from dtls13.config import ClientConfig, ServerConfig
from dtls13.memory import PoolSet
from tests.interop.peers import Certs, Peer, Side, assert_pools_empty, free_udp_port


def _ocsp_response(certs: Certs) -> bytes:
    """A "good" OCSP response for the leaf, signed by the leaf's own key (neither side
    verifies it here: OpenSSL only parses it, we only pass it on)."""
    leaf, issuer = x509.load_pem_x509_certificates(certs.chain_pem)[:2]
    key = serialization.load_pem_private_key(certs.key_pem, None)
    now = datetime.datetime.now(datetime.UTC)
    builder = ocsp.OCSPResponseBuilder().add_response(
        cert=leaf,
        issuer=issuer,
        algorithm=hashes.SHA1(),  # the CertID hash OpenSSL matches responses by
        cert_status=ocsp.OCSPCertStatus.GOOD,
        this_update=now,
        next_update=now + datetime.timedelta(days=1),
        revocation_time=None,
        revocation_reason=None,
    )
    builder = builder.responder_id(ocsp.OCSPResponderEncoding.HASH, leaf)
    signed = builder.sign(key, hashes.SHA256())  # type: ignore[arg-type]
    return signed.public_bytes(serialization.Encoding.DER)


def test_openssl_server_staples_its_response_for_our_client(
    openssl: str, certs: Certs, pools: PoolSet, tmp_path: Path
) -> None:
    response = _ocsp_response(certs)
    status_file = tmp_path / "status.der"
    status_file.write_bytes(response)
    port = free_udp_port()
    argv = [openssl, "s_server", "-dtls1_3", "-accept", f"127.0.0.1:{port}", "-naccept", "1"]
    argv += ["-cert", str(certs.leaf), "-cert_chain", str(certs.intermediates)]
    argv += ["-key", str(certs.key), "-status_file", str(status_file)]
    seen: list[bytes | None] = []
    config = ClientConfig(
        server_name="localhost",
        cafile=certs.root_pem,
        request_ocsp=True,
        ocsp_callback=lambda got, chain: seen.append(got) is None,
    )
    with Peer(argv) as peer:
        peer.wait_bound(port)
        ours = Side(config, pools)
        try:
            ours.connect(port)
            done = ours.handshake(peer)
            assert done.peer_ocsp_response == response, peer.describe()
            assert seen == [response]
            parsed = ocsp.load_der_ocsp_response(done.peer_ocsp_response)
            assert parsed.certificate_status is ocsp.OCSPCertStatus.GOOD
            ours.close()
            assert peer.wait() == 0, peer.describe()
        finally:
            ours.close()
    assert_pools_empty(pools)


def test_openssl_client_asks_for_and_gets_our_stapled_response(
    openssl: str, certs: Certs, pools: PoolSet
) -> None:
    response = _ocsp_response(certs)
    config = ServerConfig(
        certificate_chain=certs.chain_pem, private_key=certs.key_pem, ocsp_response=response
    )
    ours = Side(config, pools)
    argv = [openssl, "s_client", "-dtls1_3", "-connect", f"127.0.0.1:{ours.port}", "-status"]
    argv += ["-CAfile", str(certs.ca), "-servername", "localhost", "-verify_return_error"]
    try:
        with Peer(argv) as peer:
            ours.handshake(peer)
            assert ours.peer_said("OCSP Response Status: successful", peer), peer.describe()
            assert ours.peer_said("Cert Status: good", peer), peer.describe()
            peer.close_stdin()
            assert ours.pump(lambda: ours.conn.closed, peer), peer.describe()
            assert peer.wait() == 0, peer.describe()
    finally:
        ours.close()
    assert "OCSP response: no response sent" not in peer.output
    assert_pools_empty(pools)
