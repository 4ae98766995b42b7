"""Raw public keys (RFC 7250) with OpenSSL 4.1's s_server and s_client (-enable_server_rpk,
-enable_client_rpk, -expected-rpks; binary from DTLS13_OPENSSL)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization

from dtls13.alerts import AlertDescription
from dtls13.config import ClientConfig, ServerConfig
from dtls13.handshake.raw_keys import spki
from dtls13.memory import PoolSet
from tests.interop.peers import Certs, Peer, Side, assert_pools_empty, free_udp_port
from tests.support.pki import cached_key


def _public_pem(key: Any) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _our_key(tmp_path: Path) -> tuple[Any, Path]:
    """Our raw key and a file with its public half, for OpenSSL's -expected-rpks."""
    key = cached_key("ec256", 60)
    path = tmp_path / "ours.pub.pem"
    path.write_bytes(_public_pem(key))
    return key, path


def _their_key(certs: Certs) -> Any:
    """The key OpenSSL presents raw: its certificate's."""
    return serialization.load_pem_private_key(certs.key_pem, None)


def test_mutual_raw_keys_with_openssl_server(
    openssl: str, certs: Certs, pools: PoolSet, tmp_path: Path
) -> None:
    ours_key, ours_pub = _our_key(tmp_path)
    port = free_udp_port()
    argv = [openssl, "s_server", "-dtls1_3", "-accept", f"127.0.0.1:{port}", "-naccept", "1"]
    argv += ["-cert", certs.leaf, "-key", certs.key, "-enable_server_rpk"]
    argv += ["-enable_client_rpk", "-Verify", "1", "-verify_return_error"]
    argv += ["-expected-rpks", ours_pub]
    config = ClientConfig(
        private_key=ours_key,
        raw_public_key=True,
        pinned_public_keys=[_their_key(certs).public_key()],
    )
    with Peer(argv) as peer:
        peer.wait_bound(port)
        ours = Side(config, pools)
        try:
            ours.connect(port)
            done = ours.handshake(peer)
            assert done.peer_public_key == spki(_their_key(certs).public_key())
            assert done.peer_certificates == ()
            ours.send(b"hello from dtls13\n")
            assert ours.peer_said("hello from dtls13", peer), peer.describe()
            peer.write(b"hello from openssl\n")
            assert ours.pump(lambda: ours.data() == b"hello from openssl\n", peer), peer.describe()
            ours.close()
            assert peer.wait() == 0, peer.describe()
        finally:
            ours.close()
    assert "Client raw public key" in peer.output, peer.describe()
    assert_pools_empty(pools)


def test_mutual_raw_keys_with_openssl_client(
    openssl: str, certs: Certs, pools: PoolSet, tmp_path: Path
) -> None:
    ours_key, ours_pub = _our_key(tmp_path)
    config = ServerConfig(
        private_key=ours_key,
        raw_public_key=True,
        client_auth="required",
        pinned_public_keys=[_their_key(certs).public_key()],
    )
    ours = Side(config, pools)
    argv = [openssl, "s_client", "-dtls1_3", "-connect", f"127.0.0.1:{ours.port}"]
    argv += ["-enable_server_rpk", "-expected-rpks", ours_pub, "-verify_return_error"]
    argv += ["-enable_client_rpk", "-cert", certs.leaf, "-key", certs.key]
    try:
        with Peer(argv) as peer:
            done = ours.handshake(peer)
            assert done.peer_public_key == spki(_their_key(certs).public_key())
            ours.send(b"hello from dtls13\n")
            assert ours.peer_said("hello from dtls13", peer), peer.describe()
            peer.write(b"hello from openssl\n")
            assert ours.pump(lambda: ours.data() == b"hello from openssl\n", peer), peer.describe()
            peer.close_stdin()
            assert ours.pump(lambda: ours.conn.closed, peer), peer.describe()
            assert peer.wait() == 0, peer.describe()
    finally:
        ours.close()
    assert "Server raw public key" in peer.output, peer.describe()
    assert_pools_empty(pools)


def test_openssl_server_key_not_pinned_is_refused(
    openssl: str, certs: Certs, pools: PoolSet
) -> None:
    port = free_udp_port()
    argv = [openssl, "s_server", "-dtls1_3", "-accept", f"127.0.0.1:{port}", "-naccept", "1"]
    argv += ["-cert", certs.leaf, "-key", certs.key, "-enable_server_rpk"]
    stranger = cached_key("ec256", 61)
    config = ClientConfig(pinned_public_keys=[stranger.public_key()])
    with Peer(argv) as peer:
        peer.wait_bound(port)
        ours = Side(config, pools)
        try:
            ours.connect(port)
            assert ours.pump(lambda: ours.conn.closed, peer), peer.describe()
            end = ours.terminated()
            assert end is not None and not end.by_peer
            assert end.alert is AlertDescription.certificate_unknown
            assert peer.wait_output("certificate unknown"), peer.describe()
        finally:
            ours.close()
    assert_pools_empty(pools)


def test_our_server_refuses_an_unpinned_openssl_client_key(
    openssl: str, certs: Certs, pools: PoolSet, tmp_path: Path
) -> None:
    ours_key, ours_pub = _our_key(tmp_path)
    config = ServerConfig(
        private_key=ours_key,
        raw_public_key=True,
        client_auth="required",
        pinned_public_keys=[cached_key("ec256", 61).public_key()],
    )
    ours = Side(config, pools)
    argv = [openssl, "s_client", "-dtls1_3", "-connect", f"127.0.0.1:{ours.port}"]
    argv += ["-enable_server_rpk", "-expected-rpks", ours_pub, "-verify_return_error"]
    argv += ["-enable_client_rpk", "-cert", certs.leaf, "-key", certs.key]
    try:
        with Peer(argv) as peer:
            assert ours.pump(lambda: ours.conn.closed, peer), peer.describe()
            end = ours.terminated()
            assert end is not None and not end.by_peer
            assert end.alert is AlertDescription.certificate_unknown
            assert peer.wait_output("certificate unknown"), peer.describe()
    finally:
        ours.close()
    assert_pools_empty(pools)
