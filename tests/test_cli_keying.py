"""``python -m dtls13`` prints exported keying material as openssl s_client/s_server do."""

from __future__ import annotations

import re

import pytest
from cli_helpers import ServerProcess, run_cli

_MATERIAL = re.compile(r"^    Keying material: ([0-9A-F]+)$", re.M)


def test_client_and_server_print_the_same_keying_material() -> None:
    server = ServerProcess("--keymatexport", "EXPORTER-cli", "--keymatexportlen", "48")
    try:
        result = run_cli(
            "client", "--host", "127.0.0.1", "--port", str(server.port), "--insecure",
            "--keymatexport", "EXPORTER-cli", "--keymatexportlen", "48", "-q",
            input=b"ping\n",
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        out = result.stdout.decode()
        assert out.startswith(
            "Keying material exporter:\n    Label: 'EXPORTER-cli'\n    Length: 48 bytes\n"
        ), out
        assert out.endswith("ping\n")
        ours = _MATERIAL.findall(out)
        assert len(ours) == 1 and len(bytes.fromhex(ours[0])) == 48
    finally:
        server.proc.terminate()
        rest, err = server.proc.communicate(timeout=10)  # stop(), keeping its output
    assert server.proc.returncode == 0, err
    server_out = "".join(server.lines) + rest.decode()
    assert _MATERIAL.findall(server_out) == ours


def test_default_export_length_is_openssls() -> None:
    server = ServerProcess("-q")
    try:
        result = run_cli(
            "client", "--host", "127.0.0.1", "--port", str(server.port), "--insecure",
            "--keymatexport", "EXPORTER-cli", "-q", input=b"",
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        out = result.stdout.decode()
        assert "    Length: 20 bytes\n" in out
        assert len(bytes.fromhex(_MATERIAL.findall(out)[0])) == 20
    finally:
        server.stop()


def test_use_srtp_prints_the_profile_both_sides_agreed() -> None:
    server = ServerProcess("--use-srtp", "SRTP_AES128_CM_SHA1_80:SRTP_AEAD_AES_128_GCM")
    try:
        result = run_cli(
            "client", "--host", "127.0.0.1", "--port", str(server.port), "--insecure",
            "--use-srtp", "SRTP_AEAD_AES_128_GCM:SRTP_AES128_CM_SHA1_80", "-q", input=b"",
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert result.stdout.decode() == (
            "SRTP Extension negotiated, profile=SRTP_AES128_CM_SHA1_80\n"
        )
        # No profile in common: plain DTLS, and nothing printed.
        result = run_cli(
            "client", "--host", "127.0.0.1", "--port", str(server.port), "--insecure",
            "--use-srtp", "SRTP_AEAD_AES_256_GCM", "-q", input=b"",
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert result.stdout == b""
    finally:
        server.proc.terminate()
        rest, err = server.proc.communicate(timeout=10)
    assert server.proc.returncode == 0, err
    assert rest.decode().count("SRTP Extension negotiated, profile=SRTP_AES128_CM_SHA1_80") == 1


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--keymatexportlen", "16"], "--keymatexportlen needs --keymatexport"),
        (["--keymatexport", "EXPORTER-x", "--keymatexportlen", "0"], "outside 1..8160"),
        (["--keymatexport", "EXPORTER-é"], "not ASCII"),
        (["--keymatexport", ""], "label must be 1 to 249 bytes"),
        (["--use-srtp", "SRTP_AES128_CM_SHA1_80:NOPE"], "unknown SRTP protection profile 'NOPE'"),
        (["--use-srtp", ""], "unknown SRTP protection profile ''"),
    ],
)
def test_bad_export_options_give_one_line_and_exit_2(args: list[str], fragment: str) -> None:
    for command in (["server"], ["client", "--host", "127.0.0.1", "--port", "9", "--insecure"]):
        result = run_cli(*command, *args)
        assert result.returncode == 2, result.stderr
        lines = result.stderr.decode().strip().splitlines()
        assert len(lines) == 1 and fragment in lines[0], lines
