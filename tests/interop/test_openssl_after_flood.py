"""OpenSSL 4.1's s_client gets through to `python -m dtls13 server` right after a flood of
copied ClientHellos and garbage from 200 source addresses (binary from DTLS13_OPENSSL)."""

from __future__ import annotations

import os
import socket
import time

import pytest
from cli_helpers import ServerProcess
from peers import Peer

from dtls13.config import ClientConfig
from dtls13.connection import Connection
from dtls13.memory import PoolSet

SOURCES = 200
DATAGRAMS = 32_000


def _client_hello(port: int) -> bytes:
    pools = PoolSet()
    client = Connection(ClientConfig(server_name="localhost", verify=False), pools=pools)
    client.connect(("127.0.0.1", port), 0.0)
    (lease, _), *_ = client.datagrams_to_send(0.0)
    hello = lease.tobytes()
    lease.release()
    client.abandon()
    for lease, _ in client.datagrams_to_send(0.0):
        lease.release()
    return hello


def _flood(port: int) -> float:
    """DATAGRAMS datagrams from SOURCES loopback addresses (127.0.1.x): half of them copies
    of one ClientHello, half random bytes. Returns the seconds it took to send them."""
    hello = _client_hello(port)
    socks = []
    try:
        for i in range(1, SOURCES + 1):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind((f"127.0.1.{i}", 0))
            sock.setblocking(False)
            socks.append(sock)
        garbage = [os.urandom(n) for n in (13, 60, 200, 900, 1400)]
        start = time.monotonic()
        for n in range(DATAGRAMS):
            sock = socks[n % SOURCES]
            data = hello if n % 2 else garbage[n % len(garbage)]
            while True:
                try:
                    sock.sendto(data, ("127.0.0.1", port))
                    break
                except BlockingIOError:
                    time.sleep(0.001)
        return time.monotonic() - start
    finally:
        for sock in socks:
            sock.close()


@pytest.mark.parametrize("cookie", ["under_load", "always"])
def test_openssl_client_gets_through_right_after_a_flood(cookie: str, openssl: str) -> None:
    server = ServerProcess("--cookie", cookie)
    try:
        assert server.cert_path is not None
        took = _flood(server.port)
        argv = [openssl, "s_client", "-dtls1_3", "-connect", f"127.0.0.1:{server.port}"]
        argv += ["-CAfile", server.cert_path, "-servername", "localhost"]
        argv += ["-verify_hostname", "localhost", "-verify_return_error"]
        started = time.monotonic()
        with Peer(argv) as peer:
            # Before the fix of stateless HelloRetryRequest numbering, s_client took a
            # ServerHello numbered below its replay window after a flood and gave up for
            # about two minutes.
            assert peer.wait_output("Cipher is", timeout=15), peer.describe()
            peer.write(b"through the flood\n")
            assert peer.wait_output("through the flood", timeout=10), peer.describe()
            handshake_and_echo = time.monotonic() - started
            peer.close_stdin()
            assert peer.wait(10) == 0, peer.describe()
    finally:
        status, err = server.stop()
    assert status == 0, err
    assert "Traceback" not in err, err
    print(f"flood sent in {took:.2f} s; s_client handshake and echo in {handshake_and_echo:.2f} s")
