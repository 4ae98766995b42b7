"""Interop for session resumption and 0-RTT early data with wolfSSL 5.9 and OpenSSL 4.1.

Our client resumes with a ticket from the peer's server (and sends early data); the peer's
client resumes against our ServerEndpoint, which serves its connections one after another
on one socket. External PSKs (certificate-less, psk_dhe_ke and psk_ke) with OpenSSL.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from dtls13.alerts import AlertDescription
from dtls13.config import ClientConfig, ServerConfig
from dtls13.events import HandshakeCompleted
from dtls13.memory import PoolSet
from tests.interop.peers import (
    Certs,
    EndpointServer,
    Peer,
    Side,
    WolfSSL,
    assert_pools_empty,
    describe_endpoint,
    free_udp_port,
    udp_port_sockets,
)

SERVER_REPLY = b"I hear you fa shizzle!"  # wolfSSL's example server always answers this
CLIENT_MESSAGE = b"hello wolfssl!"  # and its example client always sends this
RESUME_MESSAGE = b"resuming wolfssl!"  # and this on its resumed connection (-r)
WOLFSSL_EARLY = b"A drop of info"  # what its client sends as early data with -0
EARLY = b"early hello from dtls13"


# -- our client against the peers' servers --------------------------------------------


def _wolfssl_server_round(ours: Side, peer: Peer) -> HandshakeCompleted:
    """One connection to wolfSSL's example server: handshake, ticket, data, its close."""
    done = ours.handshake(peer)
    # The example server reads once: our ACK of its ticket goes before our data.
    ours.take_ticket(peer)
    ours.send(b"hello from dtls13")
    assert ours.pump(lambda: SERVER_REPLY in ours.data(), peer), peer.describe()
    assert ours.pump(lambda: ours.conn.closed, peer), peer.describe()
    ended = ours.terminated()
    assert ended is not None and ended.alert is AlertDescription.close_notify and ended.by_peer
    return done


def _our_client_resumes_with_wolfssl(
    wolfssl: WolfSSL, certs: Certs, pools: PoolSet, early: bool, cookie: bool = False
) -> None:
    port = free_udp_port()
    # -r: a connection and its resumption, then it exits (its output is then all read).
    argv = [wolfssl.server, "-u", "-v", "4", "-p", port, "-d", "-r"]
    argv += ["-c", certs.cert, "-k", certs.key]
    if early:
        argv += ["-0"]
        if not cookie:
            argv += ["-J", "n"]  # no cookie exchange: a HelloRetryRequest rules out 0-RTT
    config = ClientConfig(server_name="localhost", cafile=certs.root_pem)
    with Peer(argv, cwd=wolfssl.home) as peer:
        peer.wait_bound(port)
        socket_of_first = udp_port_sockets(port)
        first = Side(config, pools)
        try:
            first.connect(port)
            assert not _wolfssl_server_round(first, peer).resumed
            session = first.tickets()[0].session
        finally:
            first.close()
        # It binds a new socket for the resumption: the 0-RTT record, sent once, must not
        # arrive before it (the ClientHello would be sent again, the early data not).
        peer.wait_rebound(port, socket_of_first)
        if early:
            assert session.max_early_data > 0, session

        second = Side(dataclasses.replace(config, session=session), pools)
        try:
            second.connect(port)
            if early:
                assert second.conn.early_data_possible
                second.conn.send_early_data(EARLY)
                second.driver.flush()
            done = _wolfssl_server_round(second, peer)
            # No Certificate message; the chain reported is the one the session recorded.
            assert done.resumed and done.peer_certificates == session.peer_certificates != ()
            assert done.early_data_accepted is ((not cookie) if early else None)
            stats = second.conn.statistics()
            assert stats.early_data_bytes_out == (len(EARLY) if early else 0)
            # wolfSSL's server asks for a cookie unless told not to (-J n).
            assert stats.hello_retry_requests_received == (0 if "-J" in argv else 1)
        finally:
            second.close()
        assert peer.wait() == 0, peer.describe()
        said = f"Early Data Client message: {EARLY.decode()}" in peer.output
        assert said is (early and not cookie), peer.describe()
    assert_pools_empty(pools)


def test_our_client_resumes_with_wolfssl_server(
    wolfssl: WolfSSL, certs: Certs, pools: PoolSet
) -> None:
    _our_client_resumes_with_wolfssl(wolfssl, certs, pools, early=False)


def test_our_client_sends_early_data_to_wolfssl_server(
    wolfssl: WolfSSL, certs: Certs, pools: PoolSet
) -> None:
    _our_client_resumes_with_wolfssl(wolfssl, certs, pools, early=True)


def test_our_early_data_is_rejected_after_wolfssl_asks_for_a_cookie(
    wolfssl: WolfSSL, certs: Certs, pools: PoolSet
) -> None:
    """The server's cookie HelloRetryRequest rules out 0-RTT (RFC 8446 §4.2.10): the
    session still resumes, and we learn that our early data was not taken."""
    _our_client_resumes_with_wolfssl(wolfssl, certs, pools, early=True, cookie=True)


# -- the peers' clients against our server ----------------------------------------------


def _server_config(certs: Certs, early: bool, client_auth: bool = False) -> ServerConfig:
    if client_auth:
        return ServerConfig(
            certificate_chain=certs.chain_pem,
            private_key=certs.key_pem,
            client_auth="required",
            cafile=certs.root_pem,
        )
    return ServerConfig(
        certificate_chain=certs.chain_pem,
        private_key=certs.key_pem,
        max_early_data=16384 if early else 0,
    )


def _wolfssl_client_resumes_with_us(
    wolfssl: WolfSSL, certs: Certs, pools: PoolSet, early: bool, client_auth: bool = False
) -> None:
    reply = b"hello from the dtls13 server"
    server = EndpointServer(_server_config(certs, early, client_auth), pools, reply)
    argv = [wolfssl.client, "-u", "-v", "4", "-h", "127.0.0.1", "-p", server.port]
    argv += ["-c", certs.cert, "-k", certs.key] if client_auth else ["-x"]
    argv += ["-A", certs.ca, "-r", *(["-0"] if early else [])]
    try:
        with Peer(argv, cwd=wolfssl.home) as peer:
            # The client's two connections, each from its own port; it exits after both.
            assert server.pump(lambda: peer.proc.poll() is not None, peer), describe_endpoint(
                server, peer
            )
            assert peer.wait() == 0, describe_endpoint(server, peer)
            assert server.pump(lambda: all(c.closed for c in server.conns), peer)
            assert len(server.conns) == 2, describe_endpoint(server, peer)
            first, second = server.completed(0), server.completed(1)
            assert first is not None and not first.resumed
            assert second is not None and second.resumed, describe_endpoint(server, peer)
            # The resumed connection reports the chain the ticket was issued for.
            assert second.peer_certificates == first.peer_certificates
            assert bool(first.peer_certificates) is client_auth
            # Under the ~1 KB wolfSSL's client can send back (see the client-auth test).
            sizes = [int(n) for n in re.findall(r"ticketSz = (\d+)", peer.output)]
            assert sizes and max(sizes) < 1000, peer.describe()
            assert server.data(0, early=False) == CLIENT_MESSAGE, describe_endpoint(server, peer)
            assert server.data(1, early=False) == RESUME_MESSAGE, describe_endpoint(server, peer)
            assert server.data(0, early=True) == b""
            assert server.data(1, early=True) == (WOLFSSL_EARLY if early else b"")
            assert "reused session id" in peer.output, peer.describe()
            assert peer.output.count(reply.decode()) == 2, peer.describe()
    finally:
        server.close()
    assert_pools_empty(pools)


def test_wolfssl_client_resumes_with_our_server(
    wolfssl: WolfSSL, certs: Certs, pools: PoolSet
) -> None:
    _wolfssl_client_resumes_with_us(wolfssl, certs, pools, early=False)


def test_wolfssl_client_sends_early_data_to_our_server(
    wolfssl: WolfSSL, certs: Certs, pools: PoolSet
) -> None:
    _wolfssl_client_resumes_with_us(wolfssl, certs, pools, early=True)


def test_wolfssl_client_with_a_certificate_resumes_with_our_server_requiring_one(
    wolfssl: WolfSSL, certs: Certs, pools: PoolSet
) -> None:
    """The ticket carries wolfSSL's certificate chain (it is opaque to wolfSSL): the
    resumption needs no certificate and reports the same chain.

    wolfSSL 5.9's client resumes only with tickets up to about 1 KB: beyond, its resuming
    ClientHello outgrows one datagram, and it either fails (BUFFER_E, -328) or leaves out
    its key share, even after a HelloRetryRequest. This P-256 leaf and intermediate (~1 KB
    of DER) make a ticket of ~0.8 KB, compressed."""
    _wolfssl_client_resumes_with_us(wolfssl, certs, pools, early=False, client_auth=True)


# -- OpenSSL ------------------------------------------------------------------------------


@pytest.mark.parametrize("early", [False, True], ids=["resume", "early-data"])
def test_our_client_resumes_with_openssl_server(
    early: bool, openssl: str, certs: Certs, pools: PoolSet
) -> None:
    """s_server [-early_data]: two tickets after the first handshake (sent once our first
    ClientHello lists psk_key_exchange_modes), then a resumption [with 0-RTT accepted]."""
    port = free_udp_port()
    argv = [openssl, "s_server", "-dtls1_3", "-accept", f"127.0.0.1:{port}", "-naccept", "2"]
    argv += ["-cert", certs.leaf, "-cert_chain", certs.intermediates, "-key", certs.key]
    # Our x25519 share is taken: a HelloRetryRequest would rule out 0-RTT (RFC 8446 §4.2.10).
    argv += ["-groups", "x25519:secp256r1", *(["-early_data"] if early else [])]
    config = ClientConfig(server_name="localhost", cafile=certs.root_pem)
    with Peer(argv) as peer:
        peer.wait_bound(port)
        first = Side(config, pools)
        try:
            first.connect(port)
            assert not first.handshake(peer).resumed
            assert first.pump(lambda: len(first.tickets()) == 2, peer), peer.describe()
            first.send(b"hello from dtls13\n")
            assert first.peer_said("hello from dtls13", peer), peer.describe()
        finally:
            first.close()
        session = first.tickets()[-1].session
        assert (session.max_early_data > 0) is early, session

        second = Side(dataclasses.replace(config, session=session), pools)
        try:
            second.connect(port)
            assert second.conn.early_data_possible is early
            if early:
                second.conn.send_early_data(EARLY)
                second.driver.flush()
            done = second.handshake(peer)
            # No Certificate message; the chain reported is the one the session recorded.
            assert done.resumed and done.peer_certificates == session.peer_certificates != ()
            assert done.early_data_accepted is (True if early else None)
            if early:
                assert second.peer_said("Early data received:", peer), peer.describe()
                assert second.peer_said(EARLY.decode(), peer), peer.describe()
            second.send(b"after the handshake\n")
            assert second.peer_said("after the handshake", peer), peer.describe()
            peer.write(b"hello from openssl\n")
            assert second.pump(lambda: second.data() == b"hello from openssl\n", peer)
            second.close()
            assert peer.wait() == 0, peer.describe()
        finally:
            second.close()
    ended = second.terminated()
    assert ended is not None and ended.alert is AlertDescription.close_notify
    assert_pools_empty(pools)


def _s_client(openssl: str, certs: Certs, port: int, *extra: str | Path) -> list[str | Path]:
    return [
        openssl,
        "s_client",
        "-dtls1_3",
        "-connect",
        f"127.0.0.1:{port}",
        "-CAfile",
        certs.ca,
        "-servername",
        "localhost",
        "-verify_return_error",
        *extra,
    ]


@pytest.mark.parametrize("early", [False, True], ids=["resume", "early-data"])
def test_openssl_client_resumes_with_our_server(
    early: bool, openssl: str, certs: Certs, pools: PoolSet, tmp_path: Path
) -> None:
    """s_client -sess_out, then -sess_in [-early_data], against our ServerEndpoint."""
    reply = b"hello from dtls13\n"
    server = EndpointServer(_server_config(certs, early), pools, reply)
    session_file = tmp_path / "session.pem"
    early_file = tmp_path / "early.txt"
    early_file.write_bytes(EARLY + b"\n")
    try:
        with Peer(_s_client(openssl, certs, server.port, "-sess_out", session_file)) as peer:
            assert server.pump(lambda: server.completed(0) is not None, peer), peer.describe()
            peer.write(b"hello from openssl\n")
            # Our ticket went out right after the handshake, before this reply.
            assert server.pump(lambda: reply.decode() in peer.output, peer), peer.describe()
            peer.close_stdin()
            assert server.pump(lambda: peer.proc.poll() is not None, peer), peer.describe()
            assert peer.wait() == 0, peer.describe()
        assert b"SSL SESSION PARAMETERS" in session_file.read_bytes()

        argv = _s_client(openssl, certs, server.port, "-sess_in", session_file)
        if early:
            argv += ["-early_data", early_file]
        with Peer(argv) as peer:
            assert server.pump(lambda: server.completed(1) is not None, peer), describe_endpoint(
                server, peer
            )
            # s_client prints its session report once the handshake is done.
            assert server.pump(lambda: "Verify return code" in peer.output, peer), (
                describe_endpoint(server, peer)
            )
            verdict = "Early data was accepted" if early else "Early data was not sent"
            assert verdict in peer.output, peer.describe()
            assert "Reused, TLSv1.3" in peer.output, peer.describe()
            peer.write(b"after the handshake\n")
            assert server.pump(lambda: peer.output.count(reply.decode()) == 1, peer)
            peer.close_stdin()
            assert server.pump(lambda: peer.proc.poll() is not None, peer), peer.describe()
            assert peer.wait() == 0, peer.describe()
        assert server.pump(lambda: all(c.closed for c in server.conns), peer)
        first, second = server.completed(0), server.completed(1)
        assert first is not None and not first.resumed
        assert second is not None and second.resumed
        assert server.data(1, early=True) == (EARLY + b"\n" if early else b"")
        assert server.data(1, early=False) == b"after the handshake\n"
        assert len(server.conns) == 2
    finally:
        server.close()
    assert_pools_empty(pools)


# -- external PSKs (certificate-less) ---------------------------------------------------

PSK_IDENTITY, PSK_KEY = "client1", bytes(range(32))


@pytest.mark.parametrize("modes", [("psk_dhe_ke",), ("psk_ke",)], ids=lambda m: m[0])
def test_our_client_with_external_psk_to_openssl_server(
    modes: tuple[str, ...], openssl: str, pools: PoolSet
) -> None:
    """s_server -nocert -psk: a certificate-less handshake on an external PSK."""
    port = free_udp_port()
    argv = [openssl, "s_server", "-dtls1_3", "-accept", f"127.0.0.1:{port}", "-naccept", "1"]
    argv += ["-nocert", "-psk", PSK_KEY.hex(), "-psk_identity", PSK_IDENTITY]
    if modes == ("psk_ke",):
        argv.append("-allow_no_dhe_kex")  # OpenSSL refuses psk_ke without it
    config = ClientConfig(psk=(PSK_IDENTITY.encode(), PSK_KEY), psk_modes=modes)
    with Peer(argv) as peer:
        peer.wait_bound(port)
        ours = Side(config, pools)
        try:
            ours.connect(port)
            done = ours.handshake(peer)
            assert done.resumed and done.peer_certificates == ()
            assert (done.group is None) is (modes == ("psk_ke",)), done
            ours.send(b"hello from dtls13\n")
            assert ours.peer_said("hello from dtls13", peer), peer.describe()
            peer.write(b"hello from openssl\n")
            assert ours.pump(lambda: ours.data() == b"hello from openssl\n", peer), peer.describe()
            ours.close()
            assert peer.wait() == 0, peer.describe()
        finally:
            ours.close()
    assert "Reused session-id" in peer.output, peer.describe()
    assert_pools_empty(pools)


@pytest.mark.parametrize("modes", [("psk_dhe_ke",), ("psk_ke",)], ids=lambda m: m[0])
def test_openssl_client_with_external_psk_to_our_server(
    modes: tuple[str, ...], openssl: str, pools: PoolSet
) -> None:
    """s_client -psk against our certificate-less server (ServerConfig(external_psks=...))."""
    reply = b"hello from dtls13\n"
    config = ServerConfig(external_psks={PSK_IDENTITY.encode(): PSK_KEY}, psk_modes=modes)
    server = EndpointServer(config, pools, reply)
    argv = [openssl, "s_client", "-dtls1_3", "-connect", f"127.0.0.1:{server.port}"]
    argv += ["-psk", PSK_KEY.hex(), "-psk_identity", PSK_IDENTITY]
    if modes == ("psk_ke",):
        argv.append("-allow_no_dhe_kex")  # so that s_client offers psk_ke too
    try:
        with Peer(argv) as peer:
            assert server.pump(lambda: server.completed(0) is not None, peer), describe_endpoint(
                server, peer
            )
            peer.write(b"hello from openssl\n")
            assert server.pump(lambda: reply.decode() in peer.output, peer), peer.describe()
            peer.close_stdin()
            assert server.pump(lambda: peer.proc.poll() is not None, peer), peer.describe()
            assert peer.wait() == 0, peer.describe()
        assert server.pump(lambda: all(c.closed for c in server.conns), peer)
        done = server.completed(0)
        assert done is not None and done.resumed and done.peer_certificates == ()
        assert (done.group is None) is (modes == ("psk_ke",)), done
        assert server.data(0, early=False) == b"hello from openssl\n"
    finally:
        server.close()
    assert_pools_empty(pools)
