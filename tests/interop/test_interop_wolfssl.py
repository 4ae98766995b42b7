"""Interop with wolfSSL 5.9's example client and server (DTLS 1.3)."""

from __future__ import annotations

import random

import pytest

from dtls13.alerts import AlertDescription
from dtls13.config import ClientConfig, ServerConfig
from dtls13.crypto.suites import CipherSuite
from dtls13.events import KeyUpdated
from dtls13.handshake.constants import NamedGroup
from dtls13.memory import PoolSet
from tests.interop.peers import (
    SUITES,
    Case,
    Certs,
    EndpointServer,
    Peer,
    Side,
    WolfSSL,
    assert_pools_empty,
    describe_endpoint,
    free_udp_port,
)
from tests.support.udp_driver import events_of

SERVER_REPLY = b"I hear you fa shizzle!"  # wolfSSL's example server always answers this
CLIENT_MESSAGE = b"hello wolfssl!"  # and its example client always sends this

WOLFSSL_GROUP_NAMES = {
    NamedGroup.x25519: "X25519",
    NamedGroup.secp256r1: "SECP256R1",
    NamedGroup.secp384r1: "SECP384R1",
    NamedGroup.secp521r1: "SECP521R1",
    NamedGroup.ffdhe2048: "FFDHE_2048",
    NamedGroup.X25519MLKEM768: "X25519MLKEM768",
}


def _peer_saw(peer: Peer, case: Case) -> None:
    """wolfSSL's own report of the suite and group agrees with ours (after it exits:
    its output to a pipe is buffered)."""
    group = WOLFSSL_GROUP_NAMES[case.group]
    for line in (f"SSL cipher suite is {case.suite}", f"SSL curve name is {group}"):
        assert peer.wait_output(line), peer.describe()


def _basic(ours_side: str) -> list[Case]:
    peer_flag = {"x25519": "-t", "secp256r1": "-Y"}
    cases = []
    for suite in SUITES:
        for group in (NamedGroup.x25519, NamedGroup.secp256r1):
            if ours_side == "client":
                cases.append(Case(suite, group, ours={"key_share_groups": [group]}))
            else:
                cases.append(Case(suite, group, peer=(peer_flag[group.name],)))
    return cases


CLIENT_CASES = [
    *_basic("client"),
    # ML-KEM's ~1.2 KB share: wolfSSL ignores a fragmented first ClientHello, so no
    # fragmenting here (a larger MTU).
    Case(
        "TLS_AES_128_GCM_SHA256",
        NamedGroup.X25519MLKEM768,
        ours={"key_share_groups": ["X25519MLKEM768"], "mtu": 1500},
        peer=("--pqc", "X25519MLKEM768"),
    ),
    # We send an x25519 share; the server wants secp384r1: HelloRetryRequest.
    Case(
        "TLS_AES_256_GCM_SHA384",
        NamedGroup.secp384r1,
        peer=("--force-curve", "SECP384R1"),
        hrr=True,
    ),
    # Groups we offer only when configured: a share for each, and a HelloRetryRequest to
    # secp521r1.
    Case(
        "TLS_AES_256_GCM_SHA384",
        NamedGroup.secp521r1,
        ours={"groups": ["secp521r1"], "key_share_groups": ["secp521r1"]},
    ),
    Case(
        "TLS_AES_128_GCM_SHA256",
        NamedGroup.ffdhe2048,
        ours={"groups": ["ffdhe2048"], "key_share_groups": ["ffdhe2048"]},
    ),
    Case(
        "TLS_CHACHA20_POLY1305_SHA256",
        NamedGroup.secp521r1,
        ours={"groups": ["x25519", "secp521r1"]},
        peer=("--force-curve", "SECP521R1"),
        hrr=True,
    ),
    # A first ClientHello padded to a whole datagram (RFC 7685 padding extension); wolfSSL
    # sends its cookie anyway, and the second ClientHello goes without the padding.
    Case(
        "TLS_AES_128_GCM_SHA256",
        NamedGroup.x25519,
        ours={"key_share_groups": ["x25519"], "pad_client_hello": True},
    ),
    # GREASE values (RFC 8701) in both our ClientHellos (wolfSSL asks for a cookie).
    Case("TLS_AES_128_GCM_SHA256", NamedGroup.x25519, ours={"grease": True}),
]

# Lost datagrams: recovery by retransmission (RFC 9147 §5.8) and ACKs (§7) against real
# timers. Received #1 is the server's flight after the cookie HelloRetryRequest; sent #1 is
# our second ClientHello, sent #2 our Finished.
CLIENT_CASES += [
    Case("TLS_AES_128_GCM_SHA256", NamedGroup.x25519, lose_in=frozenset({1})),
    Case("TLS_AES_128_GCM_SHA256", NamedGroup.x25519, lose_out=frozenset({1})),
    Case("TLS_AES_128_GCM_SHA256", NamedGroup.x25519, lose_out=frozenset({2})),
]

SERVER_CASES = [
    *_basic("server"),
    # wolfSSL's client sends an empty key share with --pqc and its ML-KEM share only
    # after a HelloRetryRequest that carries a cookie.
    Case(
        "TLS_AES_128_GCM_SHA256",
        NamedGroup.X25519MLKEM768,
        ours={"require_cookie": True},
        peer=("--pqc", "X25519MLKEM768"),
        hrr=True,
    ),
    # The client's share (x25519) is not among our groups: HelloRetryRequest for secp384r1.
    Case(
        "TLS_CHACHA20_POLY1305_SHA256",
        NamedGroup.secp384r1,
        ours={"groups": ["secp384r1", "secp256r1"]},
        peer=("-t",),
        hrr=True,
    ),
    # -y: the client sends only an ffdhe2048 share (256 bytes).
    Case(
        "TLS_AES_256_GCM_SHA384",
        NamedGroup.ffdhe2048,
        ours={"groups": ["ffdhe2048"]},
        peer=("-y",),
    ),
    # A share for a group we do not take, from a client that lists ffdhe2048 (-t: x25519
    # share) or secp521r1 (-Y: a secp256r1 share; -t's list lacks secp521r1) as well:
    # HelloRetryRequest. wolfSSL's client has no option to send a secp521r1 share itself.
    Case(
        "TLS_AES_128_GCM_SHA256",
        NamedGroup.ffdhe2048,
        ours={"groups": ["ffdhe2048"]},
        peer=("-t",),
        hrr=True,
    ),
    Case(
        "TLS_AES_128_GCM_SHA256",
        NamedGroup.secp521r1,
        ours={"groups": ["secp521r1", "ffdhe2048"]},
        peer=("-Y",),
        hrr=True,
    ),
]


@pytest.mark.parametrize("case", CLIENT_CASES, ids=lambda c: c.id)
def test_our_client_with_wolfssl_server(
    case: Case, wolfssl: WolfSSL, certs: Certs, pools: PoolSet
) -> None:
    port = free_udp_port()
    argv = [wolfssl.server, "-u", "-v", "4", "-p", port, "-d"]
    argv += ["-c", certs.cert, "-k", certs.key, "-l", SUITES[case.suite][0], *case.peer]
    config = ClientConfig(server_name="localhost", cafile=certs.root_pem, **case.ours)  # type: ignore[arg-type]
    with Peer(argv, cwd=wolfssl.home) as peer:
        peer.wait_bound(port)
        ours = case.side(config, pools)
        try:
            ours.connect(port)
            done = ours.handshake(peer)
            assert done.cipher_suite is CipherSuite[case.suite]
            assert done.group is case.group
            stats = ours.conn.statistics()
            # wolfSSL's server always asks for a cookie first.
            assert stats.hello_retry_requests_received == 1

            # The example server reads once: if our ACK of its NewSessionTicket and our
            # data arrive together, it may return from that read empty-handed (a race in
            # the example program). So take the ticket and let the ACK go first.
            ours.take_ticket(peer)
            ours.send(b"hello from dtls13")
            assert ours.pump(lambda: SERVER_REPLY in ours.data(), peer), peer.describe()
            assert ours.peer_said("hello from dtls13", peer), peer.describe()
            # The example server closes after its reply: close_notify, then it exits.
            assert ours.pump(lambda: ours.conn.closed, peer), peer.describe()
            ended = ours.terminated()
            assert ended is not None and ended.alert is AlertDescription.close_notify
            assert ended.by_peer
        finally:
            ours.close()
        assert peer.wait() == 0, peer.describe()
        _peer_saw(peer, case)
    case.check_padding(ours, config.mtu)
    case.check_losses(ours)
    assert_pools_empty(pools)


# Received #0 is the first ClientHello, #1 the client's Finished; sent #0 starts our flight.
SERVER_CASES += [
    Case("TLS_AES_128_GCM_SHA256", NamedGroup.x25519, peer=("-t",), lose_in=frozenset({0})),
    Case("TLS_AES_128_GCM_SHA256", NamedGroup.x25519, peer=("-t",), lose_in=frozenset({1})),
    Case("TLS_AES_128_GCM_SHA256", NamedGroup.x25519, peer=("-t",), lose_out=frozenset({0})),
]


@pytest.mark.parametrize("case", SERVER_CASES, ids=lambda c: c.id)
def test_wolfssl_client_with_our_server(
    case: Case, wolfssl: WolfSSL, certs: Certs, pools: PoolSet
) -> None:
    config = ServerConfig(
        certificate_chain=certs.chain_pem,
        private_key=certs.key_pem,
        **case.ours,  # type: ignore[arg-type]
    )
    ours = case.side(config, pools)
    argv = [wolfssl.client, "-u", "-v", "4", "-h", "127.0.0.1", "-p", ours.port, "-x"]
    argv += ["-A", certs.ca, "-l", SUITES[case.suite][0], *case.peer]
    reply = b"hello from the dtls13 server"
    try:
        with Peer(argv, cwd=wolfssl.home) as peer:
            done = ours.handshake(peer)
            assert done.cipher_suite is CipherSuite[case.suite]
            assert done.group is case.group
            stats = ours.conn.statistics()
            assert stats.hello_retry_requests_sent == (1 if case.hrr else 0)

            assert ours.pump(lambda: CLIENT_MESSAGE in ours.data(), peer), peer.describe()
            ours.send(reply)
            assert ours.peer_said(reply.decode(), peer), peer.describe()
            # The example client closes after the reply.
            assert ours.pump(lambda: ours.conn.closed, peer), peer.describe()
            ended = ours.terminated()
            assert ended is not None and ended.alert is AlertDescription.close_notify
            assert ended.by_peer
            assert peer.wait() == 0, peer.describe()
            _peer_saw(peer, case)
    finally:
        ours.close()
    case.check_losses(ours)
    assert_pools_empty(pools)


# Through our ServerEndpoint, whose gate answers every first ClientHello with a stateless
# HelloRetryRequest (cookie_policy="always"), numbered like the ClientHello record it
# answers; the ServerHello after the second ClientHello's. The first client after the
# endpoint starts, and one that comes after 100 HRRs to other sources, take the ServerHello
# at once (see the OpenSSL cases: its client keeps one epoch-0 replay window across the HRR).
ENDPOINT_CASES = [
    pytest.param(0, Case("TLS_AES_128_GCM_SHA256", NamedGroup.x25519, hrr=True), id="first-client"),
    pytest.param(
        100,
        Case("TLS_AES_128_GCM_SHA256", NamedGroup.x25519, hrr=True),
        id="after-100-hrrs-to-others",
    ),
]


@pytest.mark.parametrize(("strangers", "case"), ENDPOINT_CASES)
def test_wolfssl_client_through_our_endpoint_cookie_exchange(
    strangers: int, case: Case, wolfssl: WolfSSL, certs: Certs, pools: PoolSet
) -> None:
    reply = b"hello from the dtls13 server"
    config = ServerConfig(certificate_chain=certs.chain_pem, private_key=certs.key_pem)
    server = EndpointServer(config, pools, reply, cookie_policy="always")
    server.answer_strangers(strangers)
    argv = [wolfssl.client, "-u", "-v", "4", "-h", "127.0.0.1", "-p", server.port, "-x"]
    argv += ["-A", certs.ca, "-l", SUITES[case.suite][0], "-t"]
    try:
        with Peer(argv, cwd=wolfssl.home) as peer:
            assert server.pump(lambda: server.completed(0) is not None, peer), describe_endpoint(
                server, peer
            )
            done = server.completed(0)
            assert done is not None and done.cipher_suite is CipherSuite[case.suite]
            assert done.group is case.group
            (conn,) = server.conns
            assert conn.stats["retransmissions"] == 0, describe_endpoint(server, peer)
            assert server.endpoint.gate.counters["hello_retry_sent"] >= strangers + 1
            # The example client sends its message, prints our reply and closes.
            assert server.pump(lambda: peer.proc.poll() is not None, peer), peer.describe()
            assert peer.wait() == 0, peer.describe()
            assert reply.decode() in peer.output, peer.describe()
            _peer_saw(peer, case)
        assert server.data(0, early=False) == CLIENT_MESSAGE
    finally:
        server.close()
    assert_pools_empty(pools)


def test_mutual_auth_and_key_update_with_wolfssl_server(
    wolfssl: WolfSSL, certs: Certs, pools: PoolSet
) -> None:
    """wolfSSL's server demands our certificate and updates its keys before replying."""
    port = free_udp_port()
    argv = [wolfssl.server, "-u", "-v", "4", "-p", port, "-U"]
    argv += ["-c", certs.cert, "-k", certs.key, "-A", certs.ca]
    config = ClientConfig(
        server_name="localhost",
        cafile=certs.root_pem,
        certificate_chain=certs.chain_pem,
        private_key=certs.key_pem,
    )
    with Peer(argv, cwd=wolfssl.home) as peer:
        peer.wait_bound(port)
        ours = Side(config, pools)
        try:
            ours.connect(port)
            ours.handshake(peer)
            ours.take_ticket(peer)
            ours.send(b"hello from dtls13")
            assert ours.pump(lambda: SERVER_REPLY in ours.data(), peer), peer.describe()

            # It asked us to update too: both directions moved to epoch 4.
            # (Ours takes effect once the server ACKs our KeyUpdate, RFC 9147 §8.)
            def updated() -> set[tuple[bool, int]]:
                return {(e.sending, e.epoch) for e in events_of(ours.driver, KeyUpdated)}

            assert ours.pump(lambda: updated() == {(False, 4), (True, 4)}, peer), updated()
            # After a key update the example server reads once more, then closes.
            ours.send(b"second message")
            assert ours.pump(lambda: ours.conn.closed, peer), peer.describe()
            ended = ours.terminated()
            assert ended is not None and ended.alert is AlertDescription.close_notify
        finally:
            ours.close()
        assert peer.wait() == 0, peer.describe()
        assert "Client message: hello from dtls13" in peer.output, peer.describe()
    assert_pools_empty(pools)


def test_mutual_auth_and_key_update_with_wolfssl_client(
    wolfssl: WolfSSL, certs: Certs, pools: PoolSet
) -> None:
    """We demand wolfSSL's certificate; it updates its keys before sending its data."""
    config = ServerConfig(
        certificate_chain=certs.chain_pem,
        private_key=certs.key_pem,
        client_auth="required",
        cafile=certs.root_pem,
    )
    ours = Side(config, pools)
    argv = [wolfssl.client, "-u", "-v", "4", "-h", "127.0.0.1", "-p", ours.port, "-I"]
    argv += ["-A", certs.ca, "-c", certs.cert, "-k", certs.key]
    try:
        with Peer(argv, cwd=wolfssl.home) as peer:
            done = ours.handshake(peer)
            assert [c.subject for c in done.peer_certificates[:1]] == [certs.leaf_cert.subject]
            assert ours.pump(lambda: CLIENT_MESSAGE in ours.data(), peer), peer.describe()
            updated = events_of(ours.driver, KeyUpdated)
            assert any(not e.sending and e.epoch == 4 for e in updated), updated
            ours.send(b"hello from the dtls13 server")
            assert ours.pump(lambda: ours.conn.closed, peer), peer.describe()
            assert peer.wait() == 0, peer.describe()
            assert "hello from the dtls13 server" in peer.output, peer.describe()
    finally:
        ours.close()
    assert_pools_empty(pools)


def test_echo_with_repeated_key_updates(wolfssl: WolfSSL, certs: Certs, pools: PoolSet) -> None:
    """100 records through wolfSSL's echo server, updating keys both ways every ten
    records: epochs 3 to 13, past the 2-bit epoch of the unified header (RFC 9147 §4)."""
    port = free_udp_port()
    argv = [wolfssl.server, "-u", "-v", "4", "-p", port, "-d", "-e"]
    argv += ["-c", certs.cert, "-k", certs.key]
    config = ClientConfig(server_name="localhost", cafile=certs.root_pem)
    rng = random.Random(4)
    with Peer(argv, cwd=wolfssl.home) as peer:
        peer.wait_bound(port)
        ours = Side(config, pools)
        try:
            ours.connect(port)
            ours.handshake(peer)
            sent = b""

            def our_updates() -> int:
                return sum(e.sending for e in events_of(ours.driver, KeyUpdated))

            for i in range(100):
                chunk = rng.randbytes(1000)
                ours.send(chunk)
                sent += chunk
                if i % 10 == 5:
                    ours.conn.key_update(request_peer=True)
                    ours.driver.flush()
                    # Ours is in use once ACKed (RFC 9147 §8).
                    assert ours.pump(lambda n=i // 10 + 1: our_updates() == n, peer)
                # Keep a few records in flight, no more.
                behind = len(sent) - 4000
                assert ours.pump(lambda n=behind: len(ours.data()) >= n, peer)
            assert ours.pump(lambda: len(ours.data()) >= len(sent), peer), peer.describe()
            assert ours.data() == sent
            stats = ours.conn.statistics()
            assert stats.key_updates_sent == stats.key_updates_received == 10
            updated = {(e.sending, e.epoch) for e in events_of(ours.driver, KeyUpdated)}
            assert updated == {(side, epoch) for side in (True, False) for epoch in range(4, 14)}
        finally:
            ours.close()
        assert peer.wait() == 0, peer.describe()
    assert_pools_empty(pools)


def _wolf_hex(cid: bytes) -> str:
    return "".join(f"{b:x}" for b in cid)


def test_connection_ids_with_wolfssl_server(wolfssl: WolfSSL, certs: Certs, pools: PoolSet) -> None:
    """Both sides issue CIDs (RFC 9146, RFC 9147 §9): wolfSSL's is the ASCII of --cid."""
    port = free_udp_port()
    argv = [wolfssl.server, "-u", "-v", "4", "-p", port, "-c", certs.cert, "-k", certs.key]
    argv += ["-d", "--cid", "wolfsrv1"]
    config = ClientConfig(server_name="localhost", cafile=certs.root_pem, connection_id=6)
    with Peer(argv, cwd=wolfssl.home) as peer:
        peer.wait_bound(port)
        ours = Side(config, pools)
        try:
            ours.connect(port)
            ours.handshake(peer)
            assert ours.conn.cid_negotiated and ours.conn.peer_cid == b"wolfsrv1"
            our_cid = ours.conn.local_cids[0]
            ours.take_ticket(peer)
            ours.send(b"hello over cids")
            assert ours.pump(lambda: SERVER_REPLY in ours.data(), peer), peer.describe()
            assert ours.pump(lambda: ours.conn.closed, peer), peer.describe()
            ended = ours.terminated()
            assert ended is not None and ended.alert is AlertDescription.close_notify
        finally:
            ours.close()
        assert peer.wait() == 0, peer.describe()
        assert "CID extension was negotiated" in peer.output, peer.describe()
        # wolfSSL prints the CID it puts on its records: ours (printf "%x" per byte).
        assert f"Sending CID is {_wolf_hex(our_cid)}" in peer.output, peer.describe()
        assert "hello over cids" in peer.output, peer.describe()
    assert_pools_empty(pools)


def test_connection_ids_with_wolfssl_client(wolfssl: WolfSSL, certs: Certs, pools: PoolSet) -> None:
    config = ServerConfig(
        certificate_chain=certs.chain_pem, private_key=certs.key_pem, connection_id=8
    )
    ours = Side(config, pools)
    argv = [wolfssl.client, "-u", "-v", "4", "-h", "127.0.0.1", "-p", ours.port]
    argv += ["-A", certs.ca, "--cid", "wolfcli"]
    try:
        with Peer(argv, cwd=wolfssl.home) as peer:
            ours.handshake(peer)
            assert ours.conn.cid_negotiated and ours.conn.peer_cid == b"wolfcli"
            assert ours.pump(lambda: CLIENT_MESSAGE in ours.data(), peer), peer.describe()
            ours.send(b"hello from the dtls13 server")
            assert ours.pump(lambda: ours.conn.closed, peer), peer.describe()
            assert peer.wait() == 0, peer.describe()
            assert "CID extension was negotiated" in peer.output, peer.describe()
            hex_cid = _wolf_hex(ours.conn.local_cids[0])
            assert f"Sending CID is {hex_cid}" in peer.output, peer.describe()
            assert "hello from the dtls13 server" in peer.output, peer.describe()
    finally:
        ours.close()
    assert_pools_empty(pools)
