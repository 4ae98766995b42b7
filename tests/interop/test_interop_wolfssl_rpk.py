"""Raw public keys (RFC 7250) with wolfSSL 5.9's example client (``--rpk``; wolfSSL built
with ``--enable-rpk``, as .ci/build_wolfssl.sh does). Its example server has no raw-key
option, so only our server is tested against it."""

from __future__ import annotations

import functools
import os
import subprocess

import pytest

from dtls13.alerts import AlertDescription
from dtls13.config import ServerConfig
from dtls13.handshake.raw_keys import spki
from dtls13.memory import PoolSet
from tests.interop.peers import Peer, Side, WolfSSL, assert_pools_empty
from tests.support.pki import cached_key

CLIENT_MESSAGE = b"hello wolfssl!"
# The example client's raw key: the SubjectPublicKeyInfo wolfSSL ships for its client key.
CLIENT_RPK = "certs/rpk/client-cert-rpk.der"
CLIENT_ARGS = ["--rpk", "--files-are-der", "-c", f"./{CLIENT_RPK}", "-k", "./certs/client-key.der"]


@functools.cache
def _has_rpk(wolfssl: WolfSSL) -> bool:
    usage = subprocess.run(
        [wolfssl.client, "-?"], capture_output=True, timeout=10, check=False, cwd=wolfssl.home
    )
    return b"--rpk" in usage.stdout + usage.stderr


@pytest.fixture
def rpk_wolfssl(wolfssl: WolfSSL) -> WolfSSL:
    if not _has_rpk(wolfssl):
        why = f"{wolfssl.client} has no --rpk: build wolfSSL with --enable-rpk"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the wolfSSL raw public key tests: {why}", pytrace=False)
        pytest.skip(why)
    return wolfssl


def _argv(wolfssl: WolfSSL, port: int, *more: str) -> list[object]:
    return [wolfssl.client, "-u", "-v", "4", "-h", "127.0.0.1", "-p", port, *more]


def test_wolfssl_client_with_our_raw_key_server(rpk_wolfssl: WolfSSL, pools: PoolSet) -> None:
    """The client offers server_certificate_type RawPublicKey only: we present our key."""
    ours = Side(ServerConfig(private_key=cached_key("ec256", 60), raw_public_key=True), pools)
    reply = b"hello from the dtls13 server"
    try:
        with Peer(_argv(rpk_wolfssl, ours.port, "--rpk"), cwd=rpk_wolfssl.home) as peer:
            done = ours.handshake(peer)
            assert done.peer_public_key is None
            assert ours.pump(lambda: CLIENT_MESSAGE in ours.data(), peer), peer.describe()
            ours.send(reply)
            assert ours.peer_said(reply.decode(), peer), peer.describe()
            assert ours.pump(lambda: ours.conn.closed, peer), peer.describe()
            assert peer.wait() == 0, peer.describe()
    finally:
        ours.close()
    assert_pools_empty(pools)


def test_mutual_raw_keys_with_wolfssl_client(rpk_wolfssl: WolfSSL, pools: PoolSet) -> None:
    client_key = (rpk_wolfssl.home / CLIENT_RPK).read_bytes()
    config = ServerConfig(
        private_key=cached_key("ec256", 60),
        raw_public_key=True,
        client_auth="required",
        pinned_public_keys=[client_key],
    )
    ours = Side(config, pools)
    reply = b"hello from the dtls13 server"
    try:
        with Peer(_argv(rpk_wolfssl, ours.port, *CLIENT_ARGS), cwd=rpk_wolfssl.home) as peer:
            done = ours.handshake(peer)
            assert done.peer_public_key == client_key
            assert done.peer_certificates == ()
            assert ours.pump(lambda: CLIENT_MESSAGE in ours.data(), peer), peer.describe()
            ours.send(reply)
            assert ours.peer_said(reply.decode(), peer), peer.describe()
            assert ours.pump(lambda: ours.conn.closed, peer), peer.describe()
            assert peer.wait() == 0, peer.describe()
    finally:
        ours.close()
    assert_pools_empty(pools)


def test_unpinned_wolfssl_client_key_is_refused(rpk_wolfssl: WolfSSL, pools: PoolSet) -> None:
    config = ServerConfig(
        private_key=cached_key("ec256", 60),
        raw_public_key=True,
        client_auth="required",
        pinned_public_keys=[spki(cached_key("ec256", 61).public_key())],
    )
    ours = Side(config, pools)
    try:
        with Peer(_argv(rpk_wolfssl, ours.port, *CLIENT_ARGS), cwd=rpk_wolfssl.home) as peer:
            assert ours.pump(lambda: ours.conn.closed, peer), peer.describe()
            end = ours.terminated()
            assert end is not None and not end.by_peer
            assert end.alert is AlertDescription.certificate_unknown
            assert peer.wait() not in (0, None), peer.describe()
    finally:
        ours.close()
    assert_pools_empty(pools)
