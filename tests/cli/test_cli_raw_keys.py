"""``--raw-key`` / ``--pin``: the echo server and client with raw public keys (RFC 7250)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from tests.support.cli_helpers import ServerProcess, run_cli
from tests.support.pki import cached_key, key_pem


def _write(tmp_path: Path, name: str, key: Any) -> tuple[str, str]:
    """(private key file, public key file) for `key`."""
    private = tmp_path / f"{name}.key"
    public = tmp_path / f"{name}.pub"
    private.write_bytes(key_pem(key))
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return str(private), str(public)


def test_mutual_raw_keys_echo(tmp_path: Path) -> None:
    server_key, server_pub = _write(tmp_path, "server", cached_key("ec256", 50))
    client_key, client_pub = _write(tmp_path, "client", cached_key("ec256", 51))
    server = ServerProcess(
        "-v", "--raw-key", "--key", server_key, "--pin", client_pub, "--require-client-cert"
    )
    try:
        assert server.cert_path is None  # no certificate made: the raw key is the identity
        result = run_cli(
            "client", "--host", "127.0.0.1", "--port", str(server.port),
            "--raw-key", "--key", client_key, "--pin", server_pub,
            input=b"raw\nkeys\n",
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert result.stdout == b"raw\nkeys\n"
        # A client whose key the server does not pin is refused.
        stranger_key, _ = _write(tmp_path, "stranger", cached_key("ec256", 52))
        refused = run_cli(
            "client", "--host", "127.0.0.1", "--port", str(server.port),
            "--raw-key", "--key", stranger_key, "--pin", server_pub, input=b"x\n",
        )  # fmt: skip
        assert refused.returncode == 1
        assert "certificate_unknown" in refused.stderr.decode()
    finally:
        status, err = server.stop()
    assert status == 0, err
    assert "handshake done (DTLSv1.3" in err


def test_generated_identity_offers_its_raw_key_to_pin() -> None:
    server = ServerProcess("--raw-key")
    try:
        pinned = [ln for ln in server.lines if "raw public key (pin it with --pin):" in ln]
        assert len(pinned) == 1 and server.cert_path
        path = pinned[0].rsplit(":", 1)[1].strip()
        assert path == server.cert_path
        result = run_cli(
            "client", "--host", "127.0.0.1", "--port", str(server.port), "--pin", path,
            input=b"pinned\n",
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert result.stdout == b"pinned\n"
        # The same server still serves a client that verifies its certificate.
        result = run_cli(
            "client", "--host", "127.0.0.1", "--port", str(server.port),
            "--cafile", server.cert_path, "--server-name", "localhost", input=b"x509\n",
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
    finally:
        status, err = server.stop()
    assert status == 0, err


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["server", "--key", "k.pem"], "a bare --key needs --raw-key"),
        (["server", "--raw-key", "--pin", "/nonexistent.pem"], "not found"),
        (["client", "--host", "h", "--port", "1", "--insecure", "--pin", "p"], "--insecure"),
    ],
)
def test_bad_raw_key_options_give_one_line_and_exit_2(args: list[str], fragment: str) -> None:
    result = run_cli(*args)
    assert result.returncode == 2
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0], lines
