"""Interop with OpenSSL 4.1's s_server and s_client (DTLS 1.3; binary from DTLS13_OPENSSL)."""

from __future__ import annotations

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
    assert_pools_empty,
    describe_endpoint,
    free_udp_port,
)
from tests.support.udp_driver import events_of


def _ids(case: Case) -> str:
    return case.id


def _basic(ours_side: str) -> list[Case]:
    cases = []
    for suite in SUITES:
        for group in (NamedGroup.x25519, NamedGroup.secp256r1):
            ours = {"key_share_groups": [group]} if ours_side == "client" else {}
            cases.append(Case(suite, group, ours=ours, peer=("-groups", group.name)))
    return cases


# s_client's default ClientHello (~1.4 KB, X25519MLKEM768 and x25519 shares) in fragments.
BIG_CH = ("-mtu", "1200")

CLIENT_CASES = [
    *_basic("client"),
    # Our ~1.3 KB ClientHello is fragmented at MTU 1200; s_server without -mtu answers
    # in ~230-byte datagrams (its ServerHello alone in several fragments).
    Case(
        "TLS_AES_256_GCM_SHA384",
        NamedGroup.X25519MLKEM768,
        ours={"key_share_groups": ["X25519MLKEM768"]},
        peer=("-groups", "X25519MLKEM768"),
    ),
    # We send an x25519 share; the server only takes secp384r1: HelloRetryRequest.
    Case("TLS_AES_128_GCM_SHA256", NamedGroup.secp384r1, peer=("-groups", "secp384r1"), hrr=True),
    # A first ClientHello padded to a whole datagram (RFC 7685 padding extension).
    Case(
        "TLS_AES_128_GCM_SHA256",
        NamedGroup.x25519,
        ours={"key_share_groups": ["x25519"], "pad_client_hello": True},
        peer=("-groups", "x25519"),
    ),
    # GREASE values (RFC 8701) in our ClientHellos: ignored, before and after an HRR.
    Case(
        "TLS_AES_128_GCM_SHA256",
        NamedGroup.x25519,
        ours={"key_share_groups": ["x25519"], "grease": True},
        peer=("-groups", "x25519"),
    ),
    Case(
        "TLS_AES_128_GCM_SHA256",
        NamedGroup.secp384r1,
        ours={"grease": True},
        peer=("-groups", "secp384r1"),
        hrr=True,
    ),
]

# Lost datagrams: recovery by retransmission (RFC 9147 §5.8) and ACKs (§7). Sent #1 is
# the first fragment of our second ClientHello (after s_server's HelloRetryRequest for
# X25519MLKEM768), sent #3 our Finished.
CLIENT_CASES += [
    Case("TLS_AES_128_GCM_SHA256", NamedGroup.X25519MLKEM768, hrr=True, lose_out=frozenset({1})),
    Case("TLS_AES_128_GCM_SHA256", NamedGroup.X25519MLKEM768, hrr=True, lose_out=frozenset({3})),
    # Received #1 is the first fragment of s_server's ServerHello. Plaintext records are
    # ACKed only once their hello is complete (a forged fragment is never ACKed), so no ACK
    # goes out here: OpenSSL 4.1-dev's server, waiting for our Finished, takes any ACK as
    # an unexpected message (statem_srvr.c, TLS_ST_SW_FINISHED) and aborts.
    Case("TLS_AES_128_GCM_SHA256", NamedGroup.X25519MLKEM768, hrr=True, lose_in=frozenset({1})),
]

SERVER_CASES = [
    *_basic("server"),
    # s_client's default ClientHello (X25519MLKEM768 and x25519 shares, ~1.4 KB) in
    # fragments at MTU 1200: we reassemble the first ClientHello.
    Case(
        "TLS_CHACHA20_POLY1305_SHA256",
        NamedGroup.X25519MLKEM768,
        ours={"groups": ["X25519MLKEM768", "x25519"]},
        peer=("-mtu", "1200"),
    ),
    # The client's share (x25519) is not among our groups: one HelloRetryRequest carrying
    # both the group and a cookie.
    Case(
        "TLS_AES_256_GCM_SHA384",
        NamedGroup.secp384r1,
        ours={"groups": ["secp384r1"], "require_cookie": True},
        peer=("-groups", "x25519:secp384r1"),
        hrr=True,
    ),
]


@pytest.mark.parametrize("case", CLIENT_CASES, ids=_ids)
def test_our_client_with_openssl_server(
    case: Case, openssl: str, certs: Certs, pools: PoolSet
) -> None:
    port = free_udp_port()
    argv = [openssl, "s_server", "-dtls1_3", "-accept", f"127.0.0.1:{port}", "-naccept", "1"]
    argv += ["-cert", certs.leaf, "-cert_chain", certs.intermediates, "-key", certs.key]
    argv += ["-ciphersuites", SUITES[case.suite][1], *case.peer]
    config = ClientConfig(server_name="localhost", cafile=certs.root_pem, **case.ours)  # type: ignore[arg-type]
    with Peer(argv) as peer:
        peer.wait_bound(port)
        ours = case.side(config, pools)
        try:
            ours.connect(port)
            done = ours.handshake(peer)
            assert done.cipher_suite is CipherSuite[case.suite]
            assert done.group is case.group
            stats = ours.conn.statistics()
            assert stats.hello_retry_requests_received == (1 if case.hrr else 0)
            assert ours.peer_said(f"CIPHER is {case.suite}", peer), peer.describe()
            # s_server drops data that arrives before our Finished (lost in one case), and
            # data is never retransmitted: send once it has ACKed our final flight.
            assert ours.pump(lambda: ours.conn.statistics().acks_received != 0, peer)

            ours.send(b"hello from dtls13\n")
            assert ours.peer_said("hello from dtls13", peer), peer.describe()
            peer.write(b"hello from openssl\n")
            assert ours.pump(lambda: ours.data() == b"hello from openssl\n", peer), peer.describe()
            ours.close()
            # s_server -naccept 1 takes our close_notify and exits.
            assert peer.wait() == 0, peer.describe()
            assert "CONNECTION CLOSED" in peer.output, peer.describe()
        finally:
            ours.close()
    ended = ours.terminated()
    assert ended is not None and ended.alert is AlertDescription.close_notify
    assert not ended.by_peer
    case.check_padding(ours, config.mtu)
    case.check_losses(ours)
    assert_pools_empty(pools)


# Received #0 and #1 are the fragments of the ClientHello, #2 the client's Finished; sent
# #0 starts our flight.
SERVER_CASES += [
    Case("TLS_AES_128_GCM_SHA256", NamedGroup.x25519, peer=BIG_CH, lose_in=frozenset({2})),
    Case("TLS_AES_128_GCM_SHA256", NamedGroup.x25519, peer=BIG_CH, lose_out=frozenset({0})),
    # Only the second fragment arrives: it is not ACKed while the ClientHello is partial
    # (plaintext records are ACKed once their hello is complete). OpenSSL 4.1-dev's client,
    # waiting for a ServerHello, takes any ACK as an unexpected message (statem_clnt.c,
    # TLS_ST_CW_CLNT_HELLO) and aborts.
    Case("TLS_AES_128_GCM_SHA256", NamedGroup.x25519, peer=BIG_CH, lose_in=frozenset({0})),
]


@pytest.mark.parametrize("case", SERVER_CASES, ids=_ids)
def test_openssl_client_with_our_server(
    case: Case, openssl: str, certs: Certs, pools: PoolSet
) -> None:
    config = ServerConfig(
        certificate_chain=certs.chain_pem,
        private_key=certs.key_pem,
        **case.ours,  # type: ignore[arg-type]
    )
    ours = case.side(config, pools)
    argv = [openssl, "s_client", "-dtls1_3", "-connect", f"127.0.0.1:{ours.port}"]
    argv += ["-CAfile", certs.ca, "-servername", "localhost", "-verify_hostname", "localhost"]
    argv += ["-verify_return_error", "-ciphersuites", SUITES[case.suite][1], *case.peer]
    try:
        with Peer(argv) as peer:
            done = ours.handshake(peer)
            assert done.cipher_suite is CipherSuite[case.suite]
            assert done.group is case.group
            stats = ours.conn.statistics()
            assert stats.hello_retry_requests_sent == (1 if case.hrr else 0)
            if case.group is NamedGroup.X25519MLKEM768:
                reassembly = stats.reassembly
                assert isinstance(reassembly, dict) and reassembly["reassembled"] >= 1
            assert ours.peer_said(f"Cipher is {case.suite}", peer), peer.describe()
            assert ours.peer_said("Verification: OK", peer), peer.describe()

            peer.write(b"hello from openssl\n")
            assert ours.pump(lambda: ours.data() == b"hello from openssl\n", peer), peer.describe()
            ours.send(b"hello from dtls13\n")
            assert ours.peer_said("hello from dtls13", peer), peer.describe()
            # s_client closes (close_notify) when its input ends.
            peer.close_stdin()
            assert ours.pump(lambda: ours.conn.closed, peer), peer.describe()
            assert peer.wait() == 0, peer.describe()
    finally:
        ours.close()
    ended = ours.terminated()
    assert ended is not None and ended.alert is AlertDescription.close_notify
    assert ended.by_peer
    case.check_losses(ours)
    assert_pools_empty(pools)


# Through our ServerEndpoint, whose gate answers every first ClientHello with a stateless
# HelloRetryRequest (cookie_policy="always"). s_client keeps one 64-record replay window for
# epoch 0 across the HRR: the HRR is numbered like the ClientHello record it answers, the
# ServerHello after the second ClientHello's, so the first client after the endpoint starts
# and one that comes after 100 HRRs to other sources both take the ServerHello at once
# (when one counter numbered every HRR, the ServerHello came as a replay: ~120 s stall).
ENDPOINT_CASES = [
    pytest.param(
        0,
        Case("TLS_AES_128_GCM_SHA256", NamedGroup.x25519, peer=("-groups", "x25519"), hrr=True),
        id="first-client",
    ),
    pytest.param(
        100,
        Case("TLS_AES_128_GCM_SHA256", NamedGroup.x25519, peer=("-groups", "x25519"), hrr=True),
        id="after-100-hrrs-to-others",
    ),
    # s_client's default ~1.4 KB ClientHello in fragments: the gate's slow path assembles
    # it, and its HRR carries the last fragment's record number.
    pytest.param(
        100,
        Case("TLS_AES_256_GCM_SHA384", NamedGroup.x25519, peer=BIG_CH, hrr=True),
        id="after-100-hrrs-to-others-fragmented",
    ),
]


@pytest.mark.parametrize(("strangers", "case"), ENDPOINT_CASES)
def test_openssl_client_through_our_endpoint_cookie_exchange(
    strangers: int, case: Case, openssl: str, certs: Certs, pools: PoolSet
) -> None:
    reply = b"hello from dtls13\n"
    config = ServerConfig(
        certificate_chain=certs.chain_pem,
        private_key=certs.key_pem,
        **case.ours,  # type: ignore[arg-type]
    )
    server = EndpointServer(config, pools, reply, cookie_policy="always")
    server.answer_strangers(strangers)
    argv = [openssl, "s_client", "-dtls1_3", "-connect", f"127.0.0.1:{server.port}"]
    argv += ["-CAfile", certs.ca, "-servername", "localhost", "-verify_hostname", "localhost"]
    argv += ["-verify_return_error", "-ciphersuites", SUITES[case.suite][1], *case.peer]
    try:
        with Peer(argv) as peer:
            assert server.pump(lambda: server.completed(0) is not None, peer), describe_endpoint(
                server, peer
            )
            done = server.completed(0)
            assert done is not None and done.cipher_suite is CipherSuite[case.suite]
            assert done.group is case.group
            # s_client took our first ServerHello: no retransmission on either side (its
            # timer is 1 s; a ServerHello dropped as a replay brings ClientHello2 again).
            (conn,) = server.conns
            assert conn.stats["retransmissions"] == 0, describe_endpoint(server, peer)
            assert server.endpoint.gate.counters["hello_retry_sent"] >= strangers + 1
            assert server.pump(lambda: f"Cipher is {case.suite}" in peer.output, peer)
            peer.write(b"hello from openssl\n")
            assert server.pump(lambda: reply.decode() in peer.output, peer), peer.describe()
            peer.close_stdin()
            assert server.pump(lambda: peer.proc.poll() is not None, peer), peer.describe()
            assert peer.wait() == 0, peer.describe()
        assert server.data(0, early=False) == b"hello from openssl\n"
    finally:
        server.close()
    assert_pools_empty(pools)


def _updated(ours: Side) -> set[tuple[bool, int]]:
    return {(e.sending, e.epoch) for e in events_of(ours.driver, KeyUpdated)}


def test_mutual_auth_and_key_update_with_openssl_server(
    openssl: str, certs: Certs, pools: PoolSet
) -> None:
    """s_server demands our certificate; we update keys both ways (update_requested)."""
    port = free_udp_port()
    argv = [openssl, "s_server", "-dtls1_3", "-accept", f"127.0.0.1:{port}", "-naccept", "1"]
    argv += ["-cert", certs.leaf, "-cert_chain", certs.intermediates, "-key", certs.key]
    argv += ["-Verify", "2", "-verify_return_error", "-CAfile", certs.ca]
    config = ClientConfig(
        server_name="localhost",
        cafile=certs.root_pem,
        certificate_chain=certs.chain_pem,
        private_key=certs.key_pem,
    )
    with Peer(argv) as peer:
        peer.wait_bound(port)
        ours = Side(config, pools)
        try:
            ours.connect(port)
            ours.handshake(peer)
            ours.conn.key_update(request_peer=True)
            ours.driver.flush()
            # Our KeyUpdate counts once ACKed (RFC 9147 §8)...
            assert ours.pump(lambda: (True, 4) in _updated(ours), peer), peer.describe()
            ours.send(b"hello from dtls13\n")
            assert ours.peer_said("hello from dtls13", peer), peer.describe()
            peer.write(b"hello from openssl\n")
            assert ours.pump(lambda: ours.data() == b"hello from openssl\n", peer), peer.describe()
            # ... OpenSSL answers update_requested with its next write, before its data.
            assert _updated(ours) == {(True, 4), (False, 4)}
            ours.close()
            assert peer.wait() == 0, peer.describe()
        finally:
            ours.close()
    assert "Client certificate" in peer.output, peer.describe()
    assert_pools_empty(pools)


def test_mutual_auth_and_key_update_with_openssl_client(
    openssl: str, certs: Certs, pools: PoolSet
) -> None:
    """We demand s_client's certificate and update keys both ways (update_requested)."""
    config = ServerConfig(
        certificate_chain=certs.chain_pem,
        private_key=certs.key_pem,
        client_auth="required",
        cafile=certs.root_pem,
    )
    ours = Side(config, pools)
    argv = [openssl, "s_client", "-dtls1_3", "-connect", f"127.0.0.1:{ours.port}"]
    argv += ["-CAfile", certs.ca, "-servername", "localhost", "-verify_return_error"]
    argv += ["-cert", certs.leaf, "-cert_chain", certs.intermediates, "-key", certs.key]
    try:
        with Peer(argv) as peer:
            done = ours.handshake(peer)
            assert done.peer_certificates[0] == certs.leaf_cert
            ours.conn.key_update(request_peer=True)
            ours.driver.flush()
            # Our KeyUpdate counts once ACKed (RFC 9147 §8)...
            assert ours.pump(lambda: (True, 4) in _updated(ours), peer), peer.describe()
            ours.send(b"hello from dtls13\n")
            assert ours.peer_said("hello from dtls13", peer), peer.describe()
            peer.write(b"hello from openssl\n")
            assert ours.pump(lambda: ours.data() == b"hello from openssl\n", peer), peer.describe()
            # ... OpenSSL answers update_requested with its next write, before its data.
            assert _updated(ours) == {(True, 4), (False, 4)}
            peer.close_stdin()
            assert ours.pump(lambda: ours.conn.closed, peer), peer.describe()
            assert peer.wait() == 0, peer.describe()
    finally:
        ours.close()
    assert_pools_empty(pools)
