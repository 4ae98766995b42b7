"""Keying material exporters and DTLS-SRTP with OpenSSL 4.1 (binary from DTLS13_OPENSSL):
s_client and s_server print what `-keymatexport LABEL -keymatexportlen N` exports ("Keying
material: HEX"), which must be what our side exports."""

from __future__ import annotations

import re
from typing import Any

import pytest
from peers import SUITES, Certs, Peer, Side, assert_pools_empty, free_udp_port

from dtls13.config import ClientConfig, ServerConfig
from dtls13.handshake.srtp import SrtpProtectionProfile
from dtls13.memory import PoolSet

EXPORT_CASES = [
    pytest.param("TLS_AES_128_GCM_SHA256", "EXPORTER-dtls13-interop", 32, id="sha256-32"),
    pytest.param("TLS_AES_256_GCM_SHA384", "EXPORTER-dtls13-interop", 100, id="sha384-100"),
    pytest.param("TLS_CHACHA20_POLY1305_SHA256", "EXTRACTOR-dtls_srtp", 60, id="srtp-label-60"),
]
_MATERIAL = re.compile(r"Keying material: ([0-9A-F]+)")


def peer_material(ours: Side, peer: Peer) -> bytes:
    """The keying material the peer printed (driving our side until it has)."""
    assert ours.pump(lambda: _MATERIAL.search(peer.output) is not None, peer), peer.describe()
    found = _MATERIAL.search(peer.output)
    assert found is not None
    return bytes.fromhex(found.group(1))


def openssl_server(openssl: str, certs: Certs, port: int, *extra: str) -> list[str]:
    argv = [openssl, "s_server", "-dtls1_3", "-accept", f"127.0.0.1:{port}", "-naccept", "1"]
    argv += ["-cert", certs.leaf, "-cert_chain", certs.intermediates, "-key", certs.key]
    return argv + list(extra)


def openssl_client(openssl: str, certs: Certs, port: int, *extra: str) -> list[str]:
    argv = [openssl, "s_client", "-dtls1_3", "-connect", f"127.0.0.1:{port}"]
    argv += ["-CAfile", certs.ca, "-servername", "localhost", "-verify_return_error"]
    return argv + list(extra)


@pytest.mark.parametrize(("suite", "label", "length"), EXPORT_CASES)
def test_our_client_exports_what_openssl_server_exports(
    suite: str, label: str, length: int, openssl: str, certs: Certs, pools: PoolSet
) -> None:
    port = free_udp_port()
    argv = openssl_server(openssl, certs, port, "-ciphersuites", SUITES[suite][1])
    argv += ["-keymatexport", label, "-keymatexportlen", str(length)]
    config = ClientConfig(server_name="localhost", cafile=certs.root_pem, cipher_suites=[suite])
    with Peer(argv) as peer:
        peer.wait_bound(port)
        ours = Side(config, pools)
        try:
            ours.connect(port)
            ours.handshake(peer)
            theirs = peer_material(ours, peer)
            assert ours.conn.export_keying_material(label, None, length) == theirs
            assert len(theirs) == length
        finally:
            ours.close()
        assert peer.wait() == 0, peer.describe()
    assert_pools_empty(pools)


@pytest.mark.parametrize(("suite", "label", "length"), EXPORT_CASES)
def test_our_server_exports_what_openssl_client_exports(
    suite: str, label: str, length: int, openssl: str, certs: Certs, pools: PoolSet
) -> None:
    config = ServerConfig(certificate_chain=certs.chain_pem, private_key=certs.key_pem)
    ours = Side(config, pools)
    argv = openssl_client(openssl, certs, ours.port, "-ciphersuites", SUITES[suite][1])
    argv += ["-keymatexport", label, "-keymatexportlen", str(length)]
    try:
        with Peer(argv) as peer:
            ours.handshake(peer)
            theirs = peer_material(ours, peer)
            assert ours.conn.export_keying_material(label, b"", length) == theirs
            peer.close_stdin()
            assert ours.pump(lambda: ours.conn.closed, peer), peer.describe()
            assert peer.wait() == 0, peer.describe()
    finally:
        ours.close()
    assert_pools_empty(pools)


# DTLS-SRTP (RFC 5764) as WebRTC runs it: OpenSSL's -use_srtp and our srtp_profiles agree on
# a profile, and the SRTP keys are the exporter's EXTRACTOR-dtls_srtp output, split (§4.2).
SRTP_CASES = [
    pytest.param(
        "SRTP_AES128_CM_SHA1_80", "SRTP_AES128_CM_SHA1_80", "SRTP_AES128_CM_SHA1_80", 60, id="cm-80"
    ),
    # Both servers pick the first of their own profiles that the client offered.
    pytest.param(
        "SRTP_AEAD_AES_128_GCM:SRTP_AES128_CM_SHA1_80",
        "SRTP_AES128_CM_SHA1_80:SRTP_AEAD_AES_128_GCM",
        "SRTP_AEAD_AES_128_GCM",
        56,
        id="server-prefers-aead-gcm",
    ),
]


def _joined(conn: Any) -> bytes:
    m = conn.srtp_keying_material()
    return m.client_write_key + m.server_write_key + m.client_write_salt + m.server_write_salt


@pytest.mark.parametrize(("server", "client", "chosen", "length"), SRTP_CASES)
def test_our_client_agrees_srtp_with_openssl_server(
    server: str, client: str, chosen: str, length: int, openssl: str, certs: Certs, pools: PoolSet
) -> None:
    port = free_udp_port()
    argv = openssl_server(openssl, certs, port, "-use_srtp", server)
    argv += ["-keymatexport", "EXTRACTOR-dtls_srtp", "-keymatexportlen", str(length)]
    config = ClientConfig(
        server_name="localhost",
        cafile=certs.root_pem,
        srtp_profiles=client.split(":"),
    )
    with Peer(argv) as peer:
        peer.wait_bound(port)
        ours = Side(config, pools)
        try:
            ours.connect(port)
            ours.handshake(peer)
            assert ours.conn.srtp_profile is SrtpProtectionProfile[chosen]
            theirs = peer_material(ours, peer)
            assert f"SRTP Extension negotiated, profile={chosen}" in peer.output, peer.describe()
            assert _joined(ours.conn) == theirs
        finally:
            ours.close()
        assert peer.wait() == 0, peer.describe()
    assert_pools_empty(pools)


@pytest.mark.parametrize(("server", "client", "chosen", "length"), SRTP_CASES)
def test_our_server_agrees_srtp_with_openssl_client(
    server: str, client: str, chosen: str, length: int, openssl: str, certs: Certs, pools: PoolSet
) -> None:
    config = ServerConfig(
        certificate_chain=certs.chain_pem,
        private_key=certs.key_pem,
        srtp_profiles=server.split(":"),
    )
    ours = Side(config, pools)
    argv = openssl_client(openssl, certs, ours.port, "-use_srtp", client)
    argv += ["-keymatexport", "EXTRACTOR-dtls_srtp", "-keymatexportlen", str(length)]
    try:
        with Peer(argv) as peer:
            ours.handshake(peer)
            assert ours.conn.srtp_profile is SrtpProtectionProfile[chosen]
            theirs = peer_material(ours, peer)
            assert f"SRTP Extension negotiated, profile={chosen}" in peer.output, peer.describe()
            assert _joined(ours.conn) == theirs
            peer.close_stdin()
            assert ours.pump(lambda: ours.conn.closed, peer), peer.describe()
            assert peer.wait() == 0, peer.describe()
    finally:
        ours.close()
    assert_pools_empty(pools)
