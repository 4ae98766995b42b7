"""OpenSSL's s_client gets the chain our server picks by its -servername and -sigalgs."""

from __future__ import annotations

from pathlib import Path

import pytest

from dtls13.alerts import AlertDescription
from dtls13.config import ServerConfig
from dtls13.handshake.constants import SignatureScheme
from dtls13.handshake.signatures import HAVE_MLDSA
from dtls13.memory import PoolSet
from tests.interop.peers import Peer, Side, assert_pools_empty
from tests.support.pki import Issued, TestPKI

PKI = TestPKI.create("ec256", slot=300)
EC = PKI.leaf("ec256", dns_names=("localhost", "ec.example.com"), cn="certsel ec leaf")
RSA = PKI.leaf("rsa2048", dns_names=("localhost",), cn="certsel rsa leaf")
WILD = PKI.leaf("ec256", dns_names=("*.example.net",), cn="certsel wildcard leaf")
MLDSA = (
    PKI.leaf("mldsa65", dns_names=("localhost",), cn="certsel ml-dsa leaf") if HAVE_MLDSA else None
)
P256, PSS = "ecdsa_secp256r1_sha256", "rsa_pss_rsae_sha256"


@pytest.mark.parametrize(
    ("server_name", "sigalgs", "expected", "scheme"),
    [
        ("localhost", P256, EC, P256),
        ("localhost", PSS, RSA, PSS),
        ("ec.example.com", f"{PSS}:{P256}", EC, P256),
        ("www.example.net", f"{PSS}:{P256}", WILD, P256),
        pytest.param(
            "localhost", "mldsa65", MLDSA, "mldsa65",
            marks=pytest.mark.skipif(not HAVE_MLDSA, reason="cryptography without ML-DSA"),
        ),
    ],
    ids=["ecdsa-only", "rsa-pss-only", "sni-exact", "sni-wildcard", "mldsa65-only"],
)  # fmt: skip
def test_openssl_client_gets_the_chain_for_its_servername_and_sigalgs(
    server_name: str,
    sigalgs: str,
    expected: Issued | None,
    scheme: str,
    openssl: str,
    pools: PoolSet,
    tmp_path: Path,
) -> None:
    assert expected is not None
    # RSA first: the others are sent only when chosen.
    more = [EC, WILD, *([MLDSA] if MLDSA is not None else [])]
    config = ServerConfig(
        certificate_chain=RSA.chain_pem,
        private_key=RSA.key_pem,
        certificates=[(c.chain_pem, c.key_pem) for c in more],
    )
    ca = PKI.write_root(tmp_path)
    ours = Side(config, pools)
    argv = [openssl, "s_client", "-dtls1_3", "-connect", f"127.0.0.1:{ours.port}"]
    argv += ["-CAfile", str(ca), "-servername", server_name, "-verify_hostname", server_name]
    argv += ["-verify_return_error", "-sigalgs", sigalgs]
    try:
        with Peer(argv) as peer:
            done = ours.handshake(peer)
            assert done.signature_scheme is SignatureScheme[scheme]
            cn = expected.cert.subject.rfc4514_string().split("CN=", 1)[1].split(",")[0]
            assert ours.peer_said(f"CN={cn}", peer), peer.describe()
            assert ours.peer_said("Verification: OK", peer), peer.describe()
            peer.write(b"hello from openssl\n")
            assert ours.pump(lambda: ours.data() == b"hello from openssl\n", peer), peer.describe()
            peer.close_stdin()
            assert ours.pump(lambda: ours.conn.closed, peer), peer.describe()
            assert peer.wait() == 0, peer.describe()
    finally:
        ours.close()
    ended = ours.terminated()
    assert ended is not None and ended.alert is AlertDescription.close_notify
    assert_pools_empty(pools)


def test_openssl_client_whose_sigalgs_no_chain_fits_gets_handshake_failure(
    openssl: str, pools: PoolSet, tmp_path: Path
) -> None:
    config = ServerConfig(
        certificate_chain=EC.chain_pem,
        private_key=EC.key_pem,
        certificates=[(WILD.chain_pem, WILD.key_pem)],
    )
    ours = Side(config, pools)
    argv = [openssl, "s_client", "-dtls1_3", "-connect", f"127.0.0.1:{ours.port}"]
    argv += ["-servername", "localhost", "-sigalgs", "rsa_pss_rsae_sha256"]
    try:
        with Peer(argv) as peer:
            assert ours.pump(lambda: ours.conn.closed, peer), peer.describe()
            assert ours.peer_said("handshake failure", peer), peer.describe()
    finally:
        ours.close()
    ended = ours.terminated()
    assert ended is not None and ended.alert is AlertDescription.handshake_failure
    assert not ended.by_peer
    assert_pools_empty(pools)
