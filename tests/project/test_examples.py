"""examples/echo_server.py and examples/echo_client.py run as documented."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.cli_helpers import ROOT, env


def test_echo_examples(tmp_path: Path) -> None:
    cert = tmp_path / "server.pem"
    server = subprocess.Popen(
        [sys.executable, str(ROOT / "examples" / "echo_server.py"), "0", str(cert)],
        stdout=subprocess.PIPE,
        env=env(),
        bufsize=0,
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline().decode()
        assert line.startswith("listening on 127.0.0.1:"), line
        port = line.split(":")[1].split(",")[0]
        client = subprocess.run(
            [sys.executable, str(ROOT / "examples" / "echo_client.py"), port, str(cert), "a", "bc"],
            capture_output=True,
            env=env(),
            timeout=30,
        )
        assert client.returncode == 0, client.stderr
        lines = client.stdout.decode().splitlines()
        assert lines[0].startswith("connected: TLS_")
        assert lines[1].startswith("a (") and lines[2].startswith("bc (")
        assert "closed" in server.stdout.readline().decode()
    finally:
        server.kill()
        server.communicate()
