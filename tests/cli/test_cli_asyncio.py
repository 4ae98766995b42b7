"""``python -m dtls13 server|client --loop asyncio``: the same echo server and client on
the asyncio adapter, talking to each other and to the trio ones."""

from __future__ import annotations

import socket
from pathlib import Path

from tests.support.cli_helpers import ServerProcess, run_cli
from tests.support.dtls_pair import pki


def one_line(stderr: bytes) -> str:
    lines = stderr.decode().strip().splitlines()
    assert len(lines) == 1, lines
    assert "Traceback" not in lines[0]
    return lines[0]


def test_asyncio_server_and_client_echo_stdin_and_export_the_same_keys() -> None:
    server = ServerProcess("-v", "--loop", "asyncio", "--keymatexport", "EXPORTER-cli")
    try:
        assert server.cert_path is not None
        result = run_cli(
            "client", "--loop", "asyncio", "--host", "127.0.0.1", "--port", str(server.port),
            "--cafile", server.cert_path, "--server-name", "localhost", "-v",
            "--keymatexport", "EXPORTER-cli", input=b"hello\nworld\n\nlast line\n",
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        out = result.stdout.decode()
        assert out.endswith("hello\nworld\nlast line\n")
        material = [line for line in out.splitlines() if "Keying material: " in line]
        assert len(material) == 1
        assert "connected to 127.0.0.1" in result.stderr.decode()
    finally:
        server.proc.terminate()
        server_out, server_err = server.proc.communicate(timeout=10)
    assert server.proc.returncode == 0, server_err
    assert material[0] in server_out.decode()  # the server exported the same bytes
    err = server_err.decode()
    assert "(asyncio adapter)" in err
    assert "handshake done (DTLSv1.3" in err and "closed by peer" in err
    assert "stopping" in err


def test_asyncio_server_answers_the_trio_client_and_the_other_way_round() -> None:
    for server_loop, client_loop in (("asyncio", "trio"), ("trio", "asyncio")):
        server = ServerProcess("-q", "--loop", server_loop, "--cookie", "always")
        try:
            result = run_cli(
                "client", "--loop", client_loop, "--host", "localhost",
                "--port", str(server.port), "--insecure", "--count", "20", "--size", "300",
                "-q",
            )  # fmt: skip
            assert result.returncode == 0, result.stderr
            assert result.stdout.decode().startswith("20/20 echoes of 300 bytes")
        finally:
            status, err = server.stop()
        assert status == 0 and err == "", (server_loop, err)


def test_asyncio_client_failures_give_one_line_and_exit_1(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    result = run_cli(
        "client", "--loop", "asyncio", "--host", "127.0.0.1", "--port", str(port),
        "--insecure", input=b"x\n",
    )  # fmt: skip
    assert result.returncode == 1
    assert "nothing listens on that port" in one_line(result.stderr)

    server = ServerProcess("-q", "--loop", "asyncio")
    try:
        other_ca = pki("ec384").write_root(tmp_path)
        result = run_cli(
            "client", "--loop", "asyncio", "--host", "127.0.0.1", "--port", str(server.port),
            "--cafile", str(other_ca), "--server-name", "localhost", input=b"x\n",
        )  # fmt: skip
        assert result.returncode == 1
        assert "certificate was rejected" in one_line(result.stderr)
    finally:
        server.stop()


def test_asyncio_server_port_in_use_and_workers_give_one_line() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        result = run_cli("server", "--loop", "asyncio", "--port", str(port))
    assert result.returncode == 1
    line = one_line(result.stderr)
    assert f"cannot listen on 127.0.0.1:{port}" in line and "in use" in line
    result = run_cli("server", "--loop", "asyncio", "--workers", "2")
    assert result.returncode == 2
    assert "--workers" in one_line(result.stderr)
    result = run_cli("server", "--loop", "curio")
    assert result.returncode == 2
    assert "invalid choice" in one_line(result.stderr)
