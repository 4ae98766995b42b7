"""Certificate compression (RFC 8879) with OpenSSL 4.1's s_server and s_client, in both
roles and both directions (an OpenSSL built with enable-zlib enable-brotli enable-zstd,
from DTLS13_OPENSSL_COMP or DTLS13_OPENSSL; skipped without one).

s_server sends a CompressedCertificate only with -cert_comp (its certificates compressed
in advance); its CertificateRequest offers compression for ours. s_client offers every
algorithm it was built with. `-msg` makes either print each handshake message's type: the
proof that the message on the wire was a CompressedCertificate.
"""

from __future__ import annotations

import pytest

from dtls13.alerts import AlertDescription
from dtls13.config import ClientConfig, ServerConfig
from dtls13.memory import PoolSet
from tests.interop.peers import Certs, Peer, Side, assert_pools_empty, free_udp_port

ALGORITHMS = ["zlib", "brotli", "zstd"]


def _need(algorithm: str, built: frozenset[str]) -> None:
    if algorithm not in built:
        pytest.skip(f"this openssl was built without {algorithm}")


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_openssl_server_and_our_client_exchange_compressed_certificates(
    algorithm: str, openssl_compression: tuple[str, frozenset[str]], certs: Certs, pools: PoolSet
) -> None:
    """s_server's certificate comes compressed with the algorithm we offer, and ours goes
    compressed with the one its CertificateRequest offers that we have."""
    openssl, built = openssl_compression
    _need(algorithm, built)
    port = free_udp_port()
    argv = [openssl, "s_server", "-dtls1_3", "-accept", f"127.0.0.1:{port}", "-naccept", "1"]
    argv += ["-cert", certs.leaf, "-cert_chain", certs.intermediates, "-key", certs.key]
    argv += ["-cert_comp", "-msg", "-Verify", "2", "-verify_return_error", "-CAfile", certs.ca]
    config = ClientConfig(
        server_name="localhost",
        cafile=certs.root_pem,
        certificate_chain=certs.chain_pem,
        private_key=certs.key_pem,
        certificate_compression=(algorithm,),
    )
    with Peer(argv) as peer:
        peer.wait_bound(port)
        ours = Side(config, pools)
        try:
            ours.connect(port)
            done = ours.handshake(peer)
            assert done.certificate_compression_received == algorithm
            assert done.certificate_compression_sent == algorithm
            stats = ours.conn.statistics()
            assert stats.certificates_decompressed == stats.certificates_compressed == 1
            assert ours.pump(lambda: ours.conn.statistics().acks_received != 0, peer)
            ours.send(b"hello from dtls13\n")
            assert ours.peer_said("hello from dtls13", peer), peer.describe()
            ours.close()
            assert peer.wait() == 0, peer.describe()
        finally:
            ours.close()
    # Both CompressedCertificates on the wire: s_server's (">>>") and ours ("<<<").
    sent = [line for line in peer.output.splitlines() if "CompressedCertificate" in line]
    assert any(line.startswith(">>>") for line in sent), peer.describe()
    assert any(line.startswith("<<<") for line in sent), peer.describe()
    assert "Client certificate" in peer.output, peer.describe()
    ended = ours.terminated()
    assert ended is not None and ended.alert is AlertDescription.close_notify
    assert_pools_empty(pools)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_openssl_client_takes_our_compressed_certificate(
    algorithm: str, openssl_compression: tuple[str, frozenset[str]], certs: Certs, pools: PoolSet
) -> None:
    openssl, built = openssl_compression
    _need(algorithm, built)
    config = ServerConfig(
        certificate_chain=certs.chain_pem,
        private_key=certs.key_pem,
        certificate_compression=(algorithm,),
    )
    ours = Side(config, pools)
    argv = [openssl, "s_client", "-dtls1_3", "-connect", f"127.0.0.1:{ours.port}", "-msg"]
    argv += ["-CAfile", certs.ca, "-servername", "localhost", "-verify_hostname", "localhost"]
    argv += ["-verify_return_error"]
    try:
        with Peer(argv) as peer:
            done = ours.handshake(peer)
            assert done.certificate_compression_sent == algorithm
            assert ours.conn.statistics().certificates_compressed == 1
            # s_client hashed the CompressedCertificate as we did: our Finished verified.
            assert ours.peer_said("Verification: OK", peer), peer.describe()
            peer.write(b"hello from openssl\n")
            assert ours.pump(lambda: ours.data() == b"hello from openssl\n", peer), peer.describe()
            peer.close_stdin()
            assert ours.pump(lambda: ours.conn.closed, peer), peer.describe()
            assert peer.wait() == 0, peer.describe()
    finally:
        ours.close()
    received = [line for line in peer.output.splitlines() if "CompressedCertificate" in line]
    assert any(line.startswith("<<<") for line in received), peer.describe()
    ended = ours.terminated()
    assert ended is not None and ended.alert is AlertDescription.close_notify
    assert_pools_empty(pools)


def test_openssl_client_offers_its_algorithms_and_we_choose_in_its_order(
    openssl_compression: tuple[str, frozenset[str]], certs: Certs, pools: PoolSet
) -> None:
    """With every algorithm on our side, the first of s_client's list (its preference:
    brotli, zlib, zstd as built) is the one used."""
    openssl, built = openssl_compression
    config = ServerConfig(certificate_chain=certs.chain_pem, private_key=certs.key_pem)
    ours = Side(config, pools)
    argv = [openssl, "s_client", "-dtls1_3", "-connect", f"127.0.0.1:{ours.port}"]
    argv += ["-CAfile", certs.ca, "-servername", "localhost", "-verify_return_error"]
    try:
        with Peer(argv) as peer:
            done = ours.handshake(peer)
            first = next(a for a in ("brotli", "zlib", "zstd") if a in built)
            assert done.certificate_compression_sent == first
            assert ours.peer_said("Verification: OK", peer), peer.describe()
            peer.close_stdin()
            assert ours.pump(lambda: ours.conn.closed, peer), peer.describe()
            assert peer.wait() == 0, peer.describe()
    finally:
        ours.close()
    assert_pools_empty(pools)
