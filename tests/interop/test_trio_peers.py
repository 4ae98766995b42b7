"""``python -m dtls13 server`` (the trio adapter) with OpenSSL's s_client and wolfSSL's client,
and our trio client with wolfSSL's server. The peers come from the `openssl` and `wolfssl`
fixtures (tests/interop/conftest.py), which skip, saying why, without them.
"""

from __future__ import annotations

import select
import socket
import subprocess
import time

from dtls13.memory import PoolSet
from tests.interop.peers import WolfSSL
from tests.support.cli_helpers import ServerProcess


def test_openssl_s_client_talks_to_our_echo_server(openssl: str) -> None:
    binary = openssl
    server = ServerProcess("-v")
    assert server.cert_path is not None
    client = subprocess.Popen(
        [binary, "s_client", "-dtls1_3", "-connect", f"127.0.0.1:{server.port}",
         "-CAfile", server.cert_path, "-verify_return_error", "-servername", "localhost",
         "-quiet"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0,
    )  # fmt: skip
    try:
        assert client.stdin is not None and client.stdout is not None
        client.stdin.write(b"ping from openssl\n")
        seen = b""
        deadline = time.monotonic() + 10
        while b"ping from openssl" not in seen and time.monotonic() < deadline:
            if select.select([client.stdout], [], [], 0.1)[0]:
                seen += client.stdout.read(4096) or b""
        assert b"ping from openssl" in seen
    finally:
        client.kill()
        client.communicate()
        _, log = server.stop()
    assert "handshake done (DTLSv1.3" in log


def test_wolfssl_client_talks_to_our_echo_server(wolfssl: WolfSSL) -> None:
    tree = wolfssl.home
    server = ServerProcess("-v")
    assert server.cert_path is not None
    try:
        result = subprocess.run(
            ["./examples/client/client", "-u", "-v", "4", "-h", "127.0.0.1",
             "-p", str(server.port), "-A", server.cert_path],
            cwd=tree, capture_output=True, timeout=30,
        )  # fmt: skip
    finally:
        _, log = server.stop()
    assert result.returncode == 0, result.stdout + result.stderr
    assert b"hello wolfssl!" in result.stdout
    assert "handshake done (DTLSv1.3" in log


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_our_trio_client_talks_to_the_wolfssl_server(
    wolfssl: WolfSSL, pools: PoolSet
) -> None:
    import trio

    from dtls13 import ClientConfig, open_dtls_client

    tree = wolfssl.home
    port = free_udp_port()
    server = subprocess.Popen(
        ["./examples/server/server", "-u", "-v", "4", "-p", str(port), "-d"],
        cwd=tree, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        config = ClientConfig(server_name="example.com", cafile=str(tree / "certs" / "ca-cert.pem"))
        with trio.fail_after(15):
            channel = await open_dtls_client("127.0.0.1", port, config, pools=pools)
            assert channel.statistics().handshake_time is not None
            await channel.send(b"hello from the trio adapter")
            assert await channel.receive() == b"I hear you fa shizzle!"
            await channel.aclose()
        # The server exits after our close_notify; its piped stdout is flushed only then.
        server.wait(timeout=5)
    finally:
        try:  # it exits after our close_notify; its output is lost if killed first
            out, _ = server.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            server.kill()
            out, _ = server.communicate()
    assert b"hello from the trio adapter" in out
    assert pools.in_use == 0
