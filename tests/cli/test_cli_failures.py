"""Every way a user can make ``python -m dtls13`` fail ends with one line and a non-zero
status, never a traceback; Ctrl-C and a server that closes first end cleanly."""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import trio

import dtls13
from dtls13 import DTLSEndpoint, open_dtls_client
from dtls13.cli import DEFAULT_CLEARTEXT_MTU
from tests.support.cli_helpers import ROOT, ServerProcess, env, run_cli
from tests.support.trio_helpers import configs


def one_line(stderr: bytes) -> str:
    lines = stderr.decode().strip().splitlines()
    assert len(lines) == 1, lines
    assert "Traceback" not in lines[0]
    return lines[0]


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_version_prints_the_one_version() -> None:
    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout.decode().strip() == f"dtls13 {dtls13.__version__}"
    # pyproject takes the version from the package: it is written in one place.
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in pyproject and '\nversion = "' not in pyproject
    from importlib.metadata import version

    assert version("dtls13") == dtls13.__version__


def test_client_with_nothing_listening_fails_fast_with_no_answer() -> None:
    port = free_udp_port()
    started = time.monotonic()
    result = run_cli("client", "--host", "127.0.0.1", "--port", str(port), "--insecure")
    assert time.monotonic() - started < 10  # the handshake timeout is 15 s
    assert result.returncode == 1
    assert f"no answer from 127.0.0.1:{port}: nothing listens" in one_line(result.stderr)


def test_untrusted_server_certificate_says_what_to_do(tmp_path: Path) -> None:
    from tests.support.dtls_pair import pki

    server = ServerProcess("-q")
    try:
        result = run_cli(
            "client", "--host", "127.0.0.1", "--port", str(server.port),
            "--cafile", str(pki("ec384").write_root(tmp_path)), "--server-name", "localhost",
        )  # fmt: skip
    finally:
        server.stop()
    assert result.returncode == 1
    line = one_line(result.stderr)
    assert "the server's certificate was rejected" in line and "--cafile" in line
    assert "candidates exhausted" not in line


def test_unparseable_numbers_and_files_get_plain_sentences(tmp_path: Path) -> None:
    result = run_cli("client", "--host", "127.0.0.1", "--port", "abc")
    assert result.returncode == 2
    assert "a port must be a whole number, not 'abc'" in one_line(result.stderr)
    result = run_cli("client", "--host", "h", "--port", "1", "--mtu", "10")
    assert result.returncode == 2
    assert "the MTU must be between 256 and 65535, not 10" in one_line(result.stderr)
    not_a_cert = tmp_path / "notes.txt"
    not_a_cert.write_text("not a certificate\n")
    result = run_cli("client", "--host", "h", "--port", "1", "--cafile", str(not_a_cert))
    assert result.returncode == 2
    line = one_line(result.stderr)
    assert "neither PEM nor a DER certificate" in line and "ParseError" not in line


def test_size_that_does_not_fit_is_refused_with_the_limit() -> None:
    server = ServerProcess("-q")
    try:
        too_big = run_cli(
            "client", "--host", "127.0.0.1", "--port", str(server.port), "--insecure",
            "--count", "1", "--size", str(DEFAULT_CLEARTEXT_MTU + 1), "-q",
        )  # fmt: skip
        fits = run_cli(
            "client", "--host", "127.0.0.1", "--port", str(server.port), "--insecure",
            "--count", "1", "--size", str(DEFAULT_CLEARTEXT_MTU), "-q",
        )  # fmt: skip
    finally:
        server.stop()
    assert too_big.returncode == 2
    assert f"at most {DEFAULT_CLEARTEXT_MTU} bytes at --mtu 1200" in one_line(too_big.stderr)
    assert fits.returncode == 0, fits.stderr
    assert fits.stdout.decode().startswith(f"1/1 echoes of {DEFAULT_CLEARTEXT_MTU} bytes")
    help_text = run_cli("client", "--help").stdout.decode()
    assert f"at most {DEFAULT_CLEARTEXT_MTU} bytes at the default --mtu 1200" in " ".join(
        help_text.split()
    )


async def test_the_documented_size_limit_is_what_a_default_connection_carries() -> None:
    client_config, server_config = configs()
    sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
    await sock.bind(("127.0.0.1", 0))
    async with DTLSEndpoint(sock) as endpoint, trio.open_nursery() as nursery:
        await nursery.start(endpoint.serve, server_config, lambda ch: trio.sleep_forever())
        channel = await open_dtls_client(*sock.getsockname()[:2], client_config)
        assert channel.get_cleartext_mtu() == DEFAULT_CLEARTEXT_MTU
        await channel.aclose()
        nursery.cancel_scope.cancel()


def test_line_too_long_for_a_datagram_fails_with_one_line() -> None:
    server = ServerProcess("-q")
    try:
        result = run_cli(
            "client", "--host", "127.0.0.1", "--port", str(server.port), "--insecure", "-q",
            input=b"short\n" + b"x" * 2000 + b"\nafter\n",
        )  # fmt: skip
    finally:
        server.stop()
    assert result.returncode == 1
    assert result.stdout == b"short\nafter\n"
    assert "a line of 2000 bytes does not fit one datagram" in one_line(result.stderr)


def test_config_error_leaves_no_certificate_file_behind(tmp_path: Path) -> None:
    result = run_cli("server", "--groups", "nosuchgroup", env=env(TMPDIR=str(tmp_path)))
    assert result.returncode == 2 and "unknown group" in one_line(result.stderr)
    assert list(tmp_path.iterdir()) == []


SERVER_THAT_CLOSES_FIRST = """
import sys, trio
from dtls13 import serve_dtls
from dtls13.certgen import make_self_signed
from dtls13.config import ServerConfig

async def once(channel):
    await channel.send(await channel.receive())  # one echo, then close_notify

async def main():
    cert, key = make_self_signed(["localhost"])
    config = ServerConfig(certificate_chain=[cert], private_key=key)
    async with trio.open_nursery() as nursery:
        ep = await nursery.start(serve_dtls, once, 0, config)
        print(ep.socket.getsockname()[1], flush=True)

trio.run(main)
"""


def start_client(port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "dtls13", "client", "--host", "127.0.0.1", "--port", str(port),
         "--insecure"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env(),
        cwd=ROOT,
    )  # fmt: skip


def wait_connected(client: subprocess.Popen[bytes]) -> None:
    assert client.stderr is not None
    ready, _, _ = select.select([client.stderr], [], [], 20)
    assert ready, "the client did not connect"
    assert client.stderr.readline().startswith(b"connected to ")


def test_client_ends_cleanly_when_the_server_closes_first() -> None:
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER_THAT_CLOSES_FIRST], stdout=subprocess.PIPE, env=env()
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        client = start_client(port)
        assert client.stdin is not None
        client.stdin.write(b"only once\n")
        client.stdin.flush()  # stdin stays open: the server's close must end the client
        client.wait(timeout=20)  # (communicate() would close stdin: an end of input)
        assert client.stdout is not None and client.stderr is not None
        out, err = client.stdout.read(), client.stderr.read()
        client.stdin.close()
        client.stdout.close()
        client.stderr.close()
    finally:
        server.kill()
        server.communicate()
    assert client.returncode == 0, err
    assert out == b"only once\n"
    assert "Traceback" not in err.decode()
    assert "the server closed the connection" in err.decode()


def test_interactive_client_stops_on_ctrl_c() -> None:
    server = ServerProcess("-q")
    try:
        client = start_client(server.port)
        wait_connected(client)
        client.send_signal(signal.SIGINT)  # stdin is open and idle: the read must not block it
        _, err = client.communicate(timeout=30)
    finally:
        server.stop()
    assert client.returncode == 0
    assert "Traceback" not in err.decode(), err.decode()


def test_example_echo_server_stops_on_ctrl_c_without_a_traceback(tmp_path: Path) -> None:
    server = subprocess.Popen(
        [sys.executable, str(ROOT / "examples" / "echo_server.py"), "0", str(tmp_path / "c.pem")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env(),
    )  # fmt: skip
    assert server.stdout is not None
    assert server.stdout.readline().startswith(b"listening on ")
    os.kill(server.pid, signal.SIGINT)
    _, err = server.communicate(timeout=30)
    assert server.returncode == 0
    assert b"Traceback" not in err, err.decode()
