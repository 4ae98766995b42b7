"""``python -m dtls13 server`` / ``client`` as a user runs them (real processes, real sockets)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from tests.support.cli_helpers import ServerProcess, env, run_cli
from tests.support.dtls_pair import pki


def one_line(stderr: bytes) -> str:
    lines = stderr.decode().strip().splitlines()
    assert len(lines) == 1, lines
    assert "Traceback" not in lines[0]
    return lines[0]


def test_echo_server_and_client_over_stdin() -> None:
    server = ServerProcess("-v")
    try:
        assert any("SHA-256 fingerprint: " in line for line in server.lines)
        assert server.cert_path and Path(server.cert_path).exists()
        result = run_cli(
            "client", "--host", "127.0.0.1", "--port", str(server.port),
            "--cafile", server.cert_path, "--server-name", "localhost",
            input=b"hello\nworld\n\nlast line\n",
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert result.stdout == b"hello\nworld\nlast line\n"
    finally:
        status, err = server.stop()
    assert status == 0, err
    assert "handshake done (DTLSv1.3" in err and "closed by peer" in err
    assert not Path(server.cert_path).exists()


def test_client_count_prints_round_trip_figures() -> None:
    server = ServerProcess("-q", "--cookie", "always")
    try:
        result = run_cli(
            "client", "--host", "localhost", "--port", str(server.port), "--insecure",
            "--count", "20", "--size", "500", "--groups", "X25519MLKEM768",
            "--ciphers", "TLS_CHACHA20_POLY1305_SHA256", "--mtu", "1400", "-q",
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        out = result.stdout.decode()
        assert out.startswith("20/20 echoes of 500 bytes") and "p99" in out
    finally:
        status, err = server.stop()
    assert status == 0 and err == ""


def test_server_with_given_certificate_alpn_keylog_and_ipv6(tmp_path: Path) -> None:
    try:
        socket.socket(socket.AF_INET6, socket.SOCK_DGRAM).close()
    except OSError:
        pytest.skip("no IPv6")
    p = pki("ec256")
    cert, key = p.leaf("ec256", ips=("127.0.0.1", "::1")).write(tmp_path, "server")
    ca = p.write_root(tmp_path)
    keylog = tmp_path / "keys.log"
    server = ServerProcess(
        "--host", "::1", "--cert", str(cert), "--key", str(key), "--alpn", "echo"
    )
    try:
        assert server.cert_path is None
        result = run_cli(
            "client", "--host", "::1", "--port", str(server.port), "--cafile", str(ca),
            "--server-name", "localhost", "--alpn", "echo", "-v",
            input=b"over ipv6\n", env=env(SSLKEYLOGFILE=str(keylog)),
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert result.stdout == b"over ipv6\n"
        assert "ALPN echo" in result.stderr.decode()
        assert "CLIENT_TRAFFIC_SECRET_0" in keylog.read_text()
    finally:
        status, _ = server.stop()
    assert status == 0


def test_groups_secp521r1_and_ffdhe2048_by_name() -> None:
    # The client sends a share for the first group it lists. A secp521r1 share is taken
    # at once; for an x25519 one the server asks for ffdhe2048 with a HelloRetryRequest.
    server = ServerProcess("-v", "--groups", "ffdhe2048,secp521r1")
    try:
        for offered, chosen in (
            ("secp521r1,ffdhe2048", "secp521r1"),
            ("x25519,ffdhe2048", "ffdhe2048"),
        ):
            result = run_cli(
                "client", "--host", "127.0.0.1", "--port", str(server.port), "--insecure",
                "--groups", offered, "-v", input=b"hello\n",
            )  # fmt: skip
            assert result.returncode == 0, result.stderr
            assert result.stdout == b"hello\n"
            connected = [ln for ln in result.stderr.decode().splitlines() if "connected to" in ln]
            assert len(connected) == 1 and f", {chosen}" in connected[0], connected
    finally:
        status, err = server.stop()
    assert status == 0, err
    done = [line for line in err.splitlines() if "handshake done" in line]
    assert len(done) == 2 and "secp521r1)" in done[0] and "ffdhe2048)" in done[1], done


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["server", "--port", "99999"], "outside 0..65535"),
        (["server", "--groups", "nosuchgroup"], "unknown group"),
        (["server", "--ciphers", "TLS_RC4"], "unknown cipher suite"),
        (["server", "--cookie", "sometimes"], "invalid choice"),
        (["server", "--cert", "/nonexistent.pem", "--key", "/nonexistent.key"], "not found"),
        (["server", "--cert", "/nonexistent.pem"], "--cert and --key go together"),
        (["server", "--require-client-cert"], "needs --cafile"),
        (["server", "--mtu", "10"], "mtu"),
        (["client", "--host", "127.0.0.1"], "--port"),
        (["client", "--host", "h", "--port", "1", "--insecure", "--cafile", "x"], "not allowed"),
        (["client", "--host", "h", "--port", "1", "--count", "0"], "not a positive"),
        (["frobnicate"], "invalid choice"),
        ([], "required"),
    ],
)
def test_bad_options_give_one_line_and_exit_2(args: list[str], fragment: str) -> None:
    result = run_cli(*args)
    assert result.returncode == 2
    assert fragment in one_line(result.stderr)


def test_unreadable_key_gives_one_line(tmp_path: Path) -> None:
    p = pki("ec256")
    cert, key = p.leaf("ec256").write(tmp_path, "server")
    key.write_bytes(b"-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    result = run_cli("server", "--cert", str(cert), "--key", str(key))
    assert result.returncode == 2
    assert "key" in one_line(result.stderr)
    os.chmod(key, 0)
    if os.access(key, os.R_OK):  # root reads anything
        return
    result = run_cli("server", "--cert", str(cert), "--key", str(key))
    assert result.returncode == 2
    one_line(result.stderr)


def test_port_in_use_gives_one_line_and_exit_1() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        result = run_cli("server", "--port", str(port))
    assert result.returncode == 1
    line = one_line(result.stderr)
    assert f"cannot listen on 127.0.0.1:{port}" in line and "in use" in line


def test_client_handshake_failure_gives_one_line_and_exit_1(tmp_path: Path) -> None:
    server = ServerProcess("-q")
    try:
        other_ca = pki("ec384").write_root(tmp_path)
        result = run_cli(
            "client", "--host", "127.0.0.1", "--port", str(server.port),
            "--cafile", str(other_ca), "--server-name", "localhost", input=b"x\n",
        )  # fmt: skip
        assert result.returncode == 1
        assert "handshake with 127.0.0.1" in one_line(result.stderr)
    finally:
        server.stop()


def test_server_with_two_chains_sends_each_client_the_one_for_its_server_name(
    tmp_path: Path,
) -> None:
    p = pki("ec256")
    a_cert, a_key = p.leaf("ec256", dns_names=("a.example.com",)).write(tmp_path, "a")
    b_cert, b_key = p.leaf("ec256", dns_names=("b.example.com",)).write(tmp_path, "b")
    ca = p.write_root(tmp_path)
    server = ServerProcess(
        "--cert", str(a_cert), "--key", str(a_key), "--cert", str(b_cert), "--key", str(b_key)
    )  # fmt: skip
    try:
        for name in ("a.example.com", "b.example.com"):
            result = run_cli(
                "client", "--host", "127.0.0.1", "--port", str(server.port), "--cafile", str(ca),
                "--server-name", name, input=name.encode() + b"\n",
            )  # fmt: skip
            assert result.returncode == 0, result.stderr
            assert result.stdout == name.encode() + b"\n"
    finally:
        status, err = server.stop()
    assert status == 0, err


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["server", "--cert", "a.pem", "--key", "a.key", "--cert", "b.pem"], "one --key for each"),
        (
            ["client", "--host", "h", "--port", "1", "--cert", "a", "--key", "a", "--cert", "b",
             "--key", "b"],
            "one --cert and one --key",
        ),
    ],
)  # fmt: skip
def test_cert_and_key_pairs_that_do_not_pair_give_one_line_and_exit_2(
    args: list[str], fragment: str
) -> None:
    result = run_cli(*args)
    assert result.returncode == 2
    assert fragment in one_line(result.stderr)
