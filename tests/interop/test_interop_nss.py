"""Interop with NSS 3.123's tstclnt, a DTLS 1.3 client (`-P client`) to our server, and a
DTLS 1.3 server (`-P server`) to our client (NSS's selfserv has no DTLS mode).

tstclnt sends what it reads from a file (-A; from a pipe it never sees the end of its
input: poll reports only a hang-up, which it ignores) and prints what it receives. As a
client it exits once its input has ended and the server's close_notify has come, so each
test closes our side and then expects it to exit 0 (its stdout, where its exporter output
goes, is flushed only then); as a server, once its input has ended (sending close_notify).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from dtls13.alerts import AlertDescription
from dtls13.config import ClientConfig, ServerConfig
from dtls13.crypto.suites import CipherSuite
from dtls13.events import HandshakeCompleted, KeyUpdated
from dtls13.handshake.constants import HandshakeType, NamedGroup
from dtls13.memory import PoolSet
from dtls13.record.message_trace import TracedMessage
from tests.interop.peers import (
    HOST,
    Certs,
    EndpointServer,
    Nss,
    Peer,
    Side,
    assert_pools_empty,
    describe_endpoint,
    free_udp_port,
)
from tests.support.pki import Issued, TestPKI
from tests.support.udp_driver import events_of

MESSAGE = b"hello from nss\n"
REPLY = b"hello from the dtls13 server\n"
LABEL = "EXPORTER-dtls13-nss"
NICKNAME = "dtls13-nss"  # of the certificate and key tstclnt presents
# tstclnt's -c takes suites as ":" and four hex digits.
NSS_SUITES = {
    CipherSuite.TLS_AES_128_GCM_SHA256: ":1301",
    CipherSuite.TLS_AES_256_GCM_SHA384: ":1302",
    CipherSuite.TLS_CHACHA20_POLY1305_SHA256: ":1303",
}
# tstclnt's -I names; it sends a key share for the first group listed only.
NSS_GROUPS = {
    NamedGroup.x25519: "x25519",
    NamedGroup.secp256r1: "P256",
    NamedGroup.secp384r1: "P384",
    NamedGroup.secp521r1: "P521",
    NamedGroup.ffdhe2048: "FF2048",
    NamedGroup.X25519MLKEM768: "x25519mlkem768",
    NamedGroup.SecP256r1MLKEM768: "secp256r1mlkem768",
    NamedGroup.SecP384r1MLKEM1024: "secp384r1mlkem1024",
}


def nss_db(
    nss: Nss,
    directory: Path,
    certs: Certs,
    *,
    trust_root: bool = True,
    identity: Issued | None = None,
) -> Path:
    """A certificate database (`-d sql:DIR`) trusting our test root for TLS servers, with
    `identity`'s chain and key under the nickname NICKNAME."""
    db = directory / "nssdb"
    db.mkdir()
    nss.run("certutil", "-N", "-d", f"sql:{db}", "--empty-password")
    if trust_root:
        nss.run(
            "certutil", "-A", "-d", f"sql:{db}", "-n", "dtls13-root", "-t", "C,,", "-i", certs.ca
        )
    if identity is not None:
        bundle = directory / "identity.p12"
        bundle.write_bytes(
            pkcs12.serialize_key_and_certificates(
                NICKNAME.encode(),
                identity.key,
                identity.cert,
                identity.chain[1:],
                serialization.BestAvailableEncryption(b"p12"),
            )
        )
        nss.run("pk12util", "-i", bundle, "-d", f"sql:{db}", "-W", "p12")
    return db


def tstclnt(
    nss: Nss, directory: Path, port: int, db: Path | None, *extra: str, name: str = "localhost"
) -> Peer:
    """tstclnt sending MESSAGE to our server on `port` (on each of its connections),
    verifying it for `name` against `db` (None: no database, any certificate accepted)."""
    message = directory / "message.txt"
    message.write_bytes(MESSAGE)
    argv: list[str | Path] = [nss.tstclnt, "-h", HOST, "-p", str(port), "-P", "client"]
    argv += ["-V", "tls1.3:tls1.3"]
    argv += ["-a", name, "-A", message]  # (a second -a names a second handshake)
    argv += ["-d", f"sql:{db}"] if db else ["-D", "-o"]
    return Peer([*map(str, argv), *extra], env=nss.env)


def server_config(certs: Certs, **extra: Any) -> ServerConfig:
    return ServerConfig(certificate_chain=certs.chain_pem, private_key=certs.key_pem, **extra)


def peer_exported(peer: Peer) -> bytes:
    """The keying material tstclnt printed for `-x LABEL:LEN` (hex bytes on the indented
    lines after "Keying Material:")."""
    found = re.search(r"Keying Material:\n((?:[ \t]+[0-9a-f:]+\n)+)", peer.output)
    assert found, peer.describe()
    return bytes.fromhex(re.sub(r"[^0-9a-f]", "", found.group(1)))


def converse(ours: Side, peer: Peer) -> HandshakeCompleted:
    """tstclnt's MESSAGE to us and our REPLY back, then our close_notify, after which it
    exits 0. The handshake's report, as our server saw it."""
    done = ours.handshake(peer)
    assert ours.pump(lambda: len(ours.data()) >= len(MESSAGE), peer), peer.describe()
    assert ours.data() == MESSAGE
    ours.send(REPLY)
    assert ours.peer_said(REPLY.decode(), peer), peer.describe()
    ours.close()
    assert peer.wait() == 0, peer.describe()
    assert ours.conn.statistics().retransmissions == 0, ours.conn.statistics()
    return done


def test_nss_client_verifies_our_chain_and_exchanges_data(
    nss: Nss, certs: Certs, tmp_path: Path, pools: PoolSet
) -> None:
    """tstclnt's defaults (an X25519MLKEM768 share), our chain checked against the root in
    its database, data both ways, and the same exported keying material on both sides."""
    db = nss_db(nss, tmp_path, certs)
    ours = Side(server_config(certs), pools)
    try:
        with tstclnt(nss, tmp_path, ours.port, db, "-x", f"{LABEL}:32") as peer:
            done = converse(ours, peer)
            assert done.cipher_suite is CipherSuite.TLS_AES_128_GCM_SHA256
            assert done.group is NamedGroup.X25519MLKEM768
            assert not done.resumed and done.peer_certificates == ()
            stats = ours.conn.statistics()
            assert stats.hello_retry_requests_sent == 0
            assert peer_exported(peer) == ours.conn.export_keying_material(LABEL, None, 32)
            # It printed the leaf and its issuer from the chain we sent.
            assert "subject DN: CN=dtls13 test leaf,O=dtls13 tests" in peer.output
            assert "issuer  DN: CN=dtls13 test intermediate,O=dtls13 tests" in peer.output
    finally:
        ours.close()
    assert_pools_empty(pools)


@pytest.mark.parametrize("suite", list(NSS_SUITES), ids=lambda s: s.name)
def test_nss_client_cipher_suite(
    suite: CipherSuite, nss: Nss, certs: Certs, tmp_path: Path, pools: PoolSet
) -> None:
    """tstclnt offering one suite (-c): that suite, and the same keying material exported
    through its hash on both sides."""
    ours = Side(server_config(certs), pools)
    try:
        with tstclnt(
            nss, tmp_path, ours.port, None, "-c", NSS_SUITES[suite], "-x", f"{LABEL}:48"
        ) as peer:
            done = converse(ours, peer)
            assert done.cipher_suite is suite
            assert peer_exported(peer) == ours.conn.export_keying_material(LABEL, None, 48)
    finally:
        ours.close()
    assert_pools_empty(pools)


@pytest.mark.parametrize("group", list(NSS_GROUPS), ids=lambda g: g.name)
def test_nss_client_key_share(
    group: NamedGroup, nss: Nss, certs: Certs, tmp_path: Path, pools: PoolSet
) -> None:
    """tstclnt sending a key share for one group (-I): our server, which takes all of
    them, uses it at once."""
    ours = Side(server_config(certs, groups=list(NSS_GROUPS)), pools)
    try:
        with tstclnt(nss, tmp_path, ours.port, None, "-I", NSS_GROUPS[group], "-x", LABEL) as peer:
            done = converse(ours, peer)
            assert done.group is group
            assert ours.conn.statistics().hello_retry_requests_sent == 0
            # 20 bytes: tstclnt's default length.
            assert peer_exported(peer) == ours.conn.export_keying_material(LABEL, None, 20)
    finally:
        ours.close()
    assert_pools_empty(pools)


HRR_CASES = [
    # A share for x25519 only; we take secp384r1 only, which the client also lists.
    pytest.param(
        {"groups": ["secp384r1"]}, ("-I", "x25519,P384"), NamedGroup.secp384r1, id="group"
    ),
    # A share we take, but we demand a cookie first (the HRR keeps the group).
    pytest.param({"require_cookie": True}, (), NamedGroup.X25519MLKEM768, id="cookie"),
    # Both in one HelloRetryRequest.
    pytest.param(
        {"groups": ["secp256r1"], "require_cookie": True},
        ("-I", "x25519mlkem768,x25519,P256"),
        NamedGroup.secp256r1,
        id="group-and-cookie",
    ),
]


@pytest.mark.parametrize(("ours_extra", "peer_extra", "group"), HRR_CASES)
def test_nss_client_hello_retry_request(
    ours_extra: dict[str, object],
    peer_extra: tuple[str, ...],
    group: NamedGroup,
    nss: Nss,
    certs: Certs,
    tmp_path: Path,
    pools: PoolSet,
) -> None:
    """One HelloRetryRequest from our server (for a group, a cookie, or both), then the
    key exchange in the group it asked for."""
    ours = Side(server_config(certs, **ours_extra), pools)
    try:
        with tstclnt(nss, tmp_path, ours.port, None, *peer_extra, "-x", LABEL) as peer:
            done = converse(ours, peer)
            assert done.group is group
            assert ours.conn.statistics().hello_retry_requests_sent == 1
            assert peer_exported(peer) == ours.conn.export_keying_material(LABEL, None, 20)
    finally:
        ours.close()
    assert_pools_empty(pools)


REJECTIONS = [
    # No trust anchor: the root is not in its database.
    pytest.param(
        False,
        "localhost",
        "SEC_ERROR_UNKNOWN_ISSUER",
        AlertDescription.unknown_ca,
        id="unknown-root",
    ),
    # Trusted chain, but not for the name it asked for.
    pytest.param(
        True,
        "nss.invalid",
        "SSL_ERROR_BAD_CERT_DOMAIN",
        AlertDescription.bad_certificate,
        id="wrong-name",
    ),
]


@pytest.mark.parametrize(("trust_root", "name", "error", "alert"), REJECTIONS)
def test_nss_client_rejects_our_chain(
    trust_root: bool,
    name: str,
    error: str,
    alert: AlertDescription,
    nss: Nss,
    certs: Certs,
    tmp_path: Path,
    pools: PoolSet,
) -> None:
    """tstclnt really checks what we send (without -o): it refuses our chain when it cannot
    trust it, or when it is for another name, and tells us with an alert."""
    db = nss_db(nss, tmp_path, certs, trust_root=trust_root)
    ours = Side(server_config(certs), pools)
    try:
        with tstclnt(nss, tmp_path, ours.port, db, name=name) as peer:
            assert ours.pump(lambda: ours.conn.closed, peer), peer.describe()
            ended = ours.terminated()
            assert ended is not None and ended.by_peer, (ended, peer.describe())
            assert ended.alert is alert, (ended, peer.describe())
            assert not ours.conn.handshake_complete and ours.data() == b""
            assert peer.wait() not in (0, None), peer.describe()
            assert error in peer.output, peer.describe()
    finally:
        ours.close()
    assert_pools_empty(pools)


@pytest.mark.parametrize("with_certificate", [True, False], ids=["certificate", "none"])
def test_nss_client_certificate(
    with_certificate: bool,
    nss: Nss,
    certs: Certs,
    interop_pki: TestPKI,
    tmp_path: Path,
    pools: PoolSet,
) -> None:
    """We require a client certificate: tstclnt presents its chain from its database (-n),
    which we verify against our root; without one, we refuse it (certificate_required).
    (Without -n it would pick one from its database by itself: the second database has
    none.)"""
    client = interop_pki.leaf("ec256", cn="dtls13 nss client", dns_names=(), ips=(), slot=9)
    db = nss_db(nss, tmp_path, certs, identity=client if with_certificate else None)
    config = server_config(certs, client_auth="required", cafile=certs.root_pem)
    ours = Side(config, pools)
    nickname = ("-n", NICKNAME) if with_certificate else ()
    try:
        with tstclnt(nss, tmp_path, ours.port, db, *nickname) as peer:
            if with_certificate:
                done = converse(ours, peer)
                assert done.peer_certificates == tuple(client.chain)
            else:
                assert ours.pump(lambda: ours.conn.closed, peer), peer.describe()
                ended = ours.terminated()
                assert ended is not None and not ended.by_peer
                assert ended.alert is AlertDescription.certificate_required
                assert ours.data() == b""
                assert peer.wait() not in (0, None), peer.describe()
    finally:
        ours.close()
    assert_pools_empty(pools)


def _serve_and_close(server: EndpointServer, peer: Peer, connections: int) -> None:
    """Serve tstclnt's connections one after another (-L): each is closed once its
    handshake is done and MESSAGE has come (and been answered), which ends it for
    tstclnt; it exits after the last."""

    def close_served() -> bool:
        for i, conn in enumerate(server.conns):
            got = server.data(i, early=False)
            if not conn.closed and got == MESSAGE and server.completed(i) is not None:
                conn.close()
        server.flush()
        return peer.proc.poll() is not None

    assert server.pump(close_served, peer, timeout=20), describe_endpoint(server, peer)
    assert peer.wait() == 0, describe_endpoint(server, peer)
    assert len(server.conns) == connections, describe_endpoint(server, peer)


def test_nss_client_resumes(nss: Nss, certs: Certs, tmp_path: Path, pools: PoolSet) -> None:
    """Two connections from tstclnt (-L 2) to our ServerEndpoint: the second resumes with
    the ticket we issued on the first."""
    server = EndpointServer(server_config(certs), pools, REPLY)
    try:
        with tstclnt(nss, tmp_path, server.port, None, "-L", "2") as peer:
            _serve_and_close(server, peer, 2)
            first, second = server.completed(0), server.completed(1)
            assert first is not None and not first.resumed, describe_endpoint(server, peer)
            assert second is not None and second.resumed, describe_endpoint(server, peer)
            assert server.data(0, early=False) == server.data(1, early=False) == MESSAGE
            assert peer.output.count(REPLY.decode()) == 2, peer.describe()
            # Its own count: one session taken from its cache, resumed with our ticket.
            assert "1 cache hits" in peer.output, peer.describe()
            assert "1 stateless resumes" in peer.output, peer.describe()
    finally:
        server.close()
    assert_pools_empty(pools)


def test_nss_client_through_our_endpoint_stateless_cookie(
    nss: Nss, certs: Certs, tmp_path: Path, pools: PoolSet
) -> None:
    """Our ServerEndpoint answering every first ClientHello with a stateless
    HelloRetryRequest (cookie_policy="always"): tstclnt's second ClientHello, with the
    cookie, starts the connection."""
    server = EndpointServer(server_config(certs), pools, REPLY, cookie_policy="always")
    try:
        with tstclnt(nss, tmp_path, server.port, None) as peer:
            _serve_and_close(server, peer, 1)
            done = server.completed(0)
            assert done is not None and done.group is NamedGroup.X25519MLKEM768
            assert server.endpoint.gate.counters["hello_retry_sent"] == 1
            assert server.conns[0].stats["retransmissions"] == 0
            assert server.data(0, early=False) == MESSAGE
            assert REPLY.decode() in peer.output, peer.describe()
    finally:
        server.close()
    assert_pools_empty(pools)


PSK = bytes(range(32))


@pytest.mark.parametrize("key", [PSK, PSK[::-1]], ids=["same-key", "other-key"])
def test_nss_client_external_psk(
    key: bytes, nss: Nss, certs: Certs, tmp_path: Path, pools: PoolSet
) -> None:
    """tstclnt's external PSK (-z KEY:IDENTITY, SHA-256): we authenticate with it instead
    of our certificate; with another key under the same identity its binder fails and we
    abort (decrypt_error, RFC 8446 §4.2.11)."""
    config = server_config(certs, external_psks={b"nss-psk": PSK})
    ours = Side(config, pools)
    try:
        with tstclnt(nss, tmp_path, ours.port, None, "-z", f"0x{key.hex()}:nss-psk") as peer:
            if key == PSK:
                done = converse(ours, peer)
                assert done.psk_identity == b"nss-psk" and done.credential is None
                assert done.cipher_suite is CipherSuite.TLS_AES_128_GCM_SHA256
                # No certificate came: tstclnt prints the subject of one when it does.
                assert "subject DN" not in peer.output, peer.describe()
            else:
                assert ours.pump(lambda: ours.conn.closed, peer), peer.describe()
                ended = ours.terminated()
                assert ended is not None and not ended.by_peer
                assert ended.alert is AlertDescription.decrypt_error
                assert peer.wait() not in (0, None), peer.describe()
    finally:
        ours.close()
    assert_pools_empty(pools)


def test_nss_client_decompresses_our_certificate(
    nss: Nss, certs: Certs, tmp_path: Path, pools: PoolSet
) -> None:
    """tstclnt offering zlib certificate compression (RFC 8879): our chain goes out
    compressed, and it still verifies it against its database."""
    db = nss_db(nss, tmp_path, certs)
    ours = Side(server_config(certs, certificate_compression=["zlib"]), pools)
    try:
        with tstclnt(nss, tmp_path, ours.port, db, "--zlib-certificate-compression") as peer:
            done = converse(ours, peer)
            assert done.certificate_compression_sent == "zlib"
            assert ours.conn.statistics().certificates_compressed == 1
            assert "issuer  DN: CN=dtls13 test intermediate" in peer.output, peer.describe()
    finally:
        ours.close()
    assert_pools_empty(pools)


def test_nss_client_answers_our_key_update(
    nss: Nss, certs: Certs, tmp_path: Path, pools: PoolSet
) -> None:
    """We update our keys and ask tstclnt to update its own (RFC 9147 §8): it does, and
    takes our reply under our new keys."""
    ours = Side(server_config(certs), pools)
    try:
        with tstclnt(nss, tmp_path, ours.port, None) as peer:
            ours.handshake(peer)
            assert ours.pump(lambda: ours.data() == MESSAGE, peer), peer.describe()
            ours.conn.key_update(request_peer=True)
            ours.driver.flush()

            def updated() -> set[tuple[bool, int]]:
                return {(e.sending, e.epoch) for e in events_of(ours.driver, KeyUpdated)}

            # Ours is in use once tstclnt ACKs our KeyUpdate. (It answers only when our
            # retransmission of it comes, a second later.)
            assert ours.pump(lambda: updated() == {(True, 4), (False, 4)}, peer), updated()
            ours.send(REPLY)
            assert ours.peer_said(REPLY.decode(), peer), peer.describe()
            ours.close()
            assert peer.wait() == 0, peer.describe()
            stats = ours.conn.statistics()
            assert stats.key_updates_sent == stats.key_updates_received == 1
    finally:
        ours.close()
    assert_pools_empty(pools)


# -- tstclnt -P server, our client --------------------------------------------------------

SERVER_MESSAGE = b"hello from the nss server\n"


def tstclnt_server(nss: Nss, directory: Path, db: Path, port: int, *extra: str) -> Peer:
    """tstclnt serving on `port` with NICKNAME's certificate from `db`: it sends
    SERVER_MESSAGE once the handshake is done, then closes (close_notify) and exits."""
    message = directory / "server-message.txt"
    message.write_bytes(SERVER_MESSAGE)
    argv = [str(nss.tstclnt), "-P", "server", "-h", HOST, "-p", str(port), "-d", f"sql:{db}"]
    argv += ["-n", NICKNAME, "-V", "tls1.3:tls1.3", "-A", str(message), *extra]
    return Peer(argv, env=nss.env)


def client_config(certs: Certs, **extra: Any) -> ClientConfig:
    return ClientConfig(server_name="localhost", cafile=certs.root_pem, **extra)


SERVER_CASES = [
    *(
        pytest.param(suite, NamedGroup.x25519, (), False, id=suite.name)
        for suite in NSS_SUITES
        if suite is not CipherSuite.TLS_AES_128_GCM_SHA256
    ),
    *(
        pytest.param(CipherSuite.TLS_AES_128_GCM_SHA256, group, (), False, id=group.name)
        for group in (
            NamedGroup.x25519,
            NamedGroup.secp256r1,
            NamedGroup.secp384r1,
            NamedGroup.X25519MLKEM768,
        )
    ),
    # Our share (x25519) is not for the group it takes (-I): HelloRetryRequest.
    pytest.param(
        CipherSuite.TLS_AES_128_GCM_SHA256,
        NamedGroup.secp384r1,
        ("-I", "P384"),
        False,
        id="hrr-secp384r1",
    ),
    # GREASE values (RFC 8701) in our ClientHellos: ignored, before and after an HRR.
    pytest.param(CipherSuite.TLS_AES_128_GCM_SHA256, NamedGroup.x25519, (), True, id="grease"),
    pytest.param(
        CipherSuite.TLS_AES_128_GCM_SHA256,
        NamedGroup.secp384r1,
        ("-I", "P384"),
        True,
        id="grease-hrr-secp384r1",
    ),
]


@pytest.mark.parametrize(("suite", "group", "peer_extra", "grease"), SERVER_CASES)
def test_our_client_with_nss_server(
    suite: CipherSuite,
    group: NamedGroup,
    peer_extra: tuple[str, ...],
    grease: bool,
    nss: Nss,
    certs: Certs,
    interop_pki: TestPKI,
    tmp_path: Path,
    pools: PoolSet,
) -> None:
    """We verify tstclnt's chain for "localhost", take its message and its close_notify;
    both sides export the same keying material."""
    identity = interop_pki.leaf("ec256", cn="dtls13 nss server", slot=9)
    db = nss_db(nss, tmp_path, certs, identity=identity)
    port = free_udp_port()
    hrr = bool(peer_extra)
    # Only the group (else it may prefer another we list, and ask for it); for the HRR,
    # x25519 first with a share.
    groups = [NamedGroup.x25519, group] if hrr else [group]
    config = client_config(
        certs, cipher_suites=[suite], groups=groups, key_share_groups=groups[:1], grease=grease
    )
    with tstclnt_server(nss, tmp_path, db, port, *peer_extra, "-x", LABEL) as peer:
        peer.wait_bound(port)
        ours = Side(config, pools)
        try:
            ours.connect(port)
            done = ours.handshake(peer)
            assert done.cipher_suite is suite and done.group is group
            assert done.peer_certificates[:2] == tuple(identity.chain)
            assert ours.conn.statistics().hello_retry_requests_received == int(hrr)
            assert ours.pump(lambda: ours.conn.closed, peer), peer.describe()
            assert ours.data() == SERVER_MESSAGE
            ended = ours.terminated()
            assert ended is not None and ended.by_peer
            assert ended.alert is AlertDescription.close_notify
            assert peer.wait() == 0, peer.describe()
            assert peer_exported(peer) == ours.conn.export_keying_material(LABEL, None, 20)
        finally:
            ours.close()
    assert_pools_empty(pools)


def test_our_client_data_to_nss_server(
    nss: Nss, certs: Certs, interop_pki: TestPKI, tmp_path: Path, pools: PoolSet
) -> None:
    """Data both ways with tstclnt reading its standard input (so it waits for ours)."""
    identity = interop_pki.leaf("ec256", cn="dtls13 nss server", slot=9)
    db = nss_db(nss, tmp_path, certs, identity=identity)
    port = free_udp_port()
    argv = [str(nss.tstclnt), "-P", "server", "-h", HOST, "-p", str(port), "-d", f"sql:{db}"]
    argv += ["-n", NICKNAME, "-V", "tls1.3:tls1.3"]
    with Peer(argv, env=nss.env) as peer:
        peer.wait_bound(port)
        ours = Side(client_config(certs), pools)
        try:
            ours.connect(port)
            ours.handshake(peer)
            ours.send(b"hello from the dtls13 client\n")
            assert ours.peer_said("hello from the dtls13 client\n", peer), peer.describe()
            peer.write(SERVER_MESSAGE)
            assert ours.pump(lambda: ours.data() == SERVER_MESSAGE, peer), peer.describe()
            assert ours.conn.statistics().retransmissions == 0
        finally:
            ours.close()
    assert_pools_empty(pools)


def test_nss_client_sends_early_data_and_its_end_of_early_data(
    nss: Nss, certs: Certs, tmp_path: Path, pools: PoolSet
) -> None:
    """tstclnt's second connection (-L 2 -Z) resumes with our ticket and 0-RTT is
    accepted. NSS's DTLS client then sends EndOfEarlyData under the early data keys and
    hashes it, as in TLS 1.3, although RFC 9147 §5.6 omits it: our server takes it, so
    the handshake completes (it waited for the message NSS numbered after it). Whether
    tstclnt's message itself goes as 0-RTT depends on when it has read its file."""
    read: list[int | None] = []

    def trace(message: TracedMessage) -> None:
        if not message.sent:
            read.append(message.message_type)

    config = server_config(certs, max_early_data=4096, message_callback=trace)
    server = EndpointServer(config, pools, REPLY)

    def close_served() -> bool:
        # The server answers only data after the handshake: a 0-RTT message gets its
        # REPLY here, once the handshake is complete, before our close_notify.
        for i, conn in enumerate(server.conns):
            early = server.data(i, early=True)
            got = server.data(i, early=False) + early
            if not conn.closed and got == MESSAGE and server.completed(i) is not None:
                if early:
                    conn.send(REPLY)
                conn.close()
        server.flush()
        return peer.proc.poll() is not None

    try:
        with tstclnt(nss, tmp_path, server.port, None, "-L", "2", "-Z") as peer:
            assert server.pump(close_served, peer, timeout=20), describe_endpoint(server, peer)
            assert peer.wait() == 0, describe_endpoint(server, peer)
            assert len(server.conns) == 2, describe_endpoint(server, peer)
            first, second = server.completed(0), server.completed(1)
            assert first is not None and not first.resumed, describe_endpoint(server, peer)
            assert first.early_data_accepted is None, describe_endpoint(server, peer)
            assert second is not None and second.resumed, describe_endpoint(server, peer)
            assert second.early_data_accepted is True, describe_endpoint(server, peer)
            assert read.count(HandshakeType.end_of_early_data) == 1, read
            early = server.data(1, early=True)
            assert early + server.data(1, early=False) == MESSAGE, describe_endpoint(server, peer)
            stats = server.conns[1].statistics()
            assert stats.early_data_bytes_in == len(early), stats
            assert stats.retransmissions == 0 and stats.dropped_handshake_fragments == 0, stats
            assert peer.output.count(REPLY.decode()) == 2, peer.describe()
    finally:
        server.close()
    assert_pools_empty(pools)
