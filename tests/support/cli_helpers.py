"""Run ``python -m dtls13`` in subprocesses from this checkout."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def env(**extra: str) -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(ROOT / "src")
    e.pop("SSLKEYLOGFILE", None)
    e.update(extra)
    return e


def run_cli(*args: str, input: bytes | None = None, timeout: float = 30, **kw: Any) -> Any:
    return subprocess.run(
        [sys.executable, "-m", "dtls13", *args],
        input=input,
        capture_output=True,
        timeout=timeout,
        cwd=ROOT,
        env=kw.pop("env", None) or env(),
        **kw,
    )


class ServerProcess:
    """``python -m dtls13 server ...`` until stop(); knows its port and certificate."""

    def __init__(self, *args: str, extra_env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dtls13", "server", "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=ROOT,
            env=env(**(extra_env or {})),
            bufsize=0,  # unbuffered: select() on the pipe then sees every line
        )
        self.lines: list[str] = []
        self.port = 0
        self.cert_path: str | None = None
        deadline = time.monotonic() + 20
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.1)
            if not ready:
                if self.proc.poll() is not None:
                    break
                continue
            line = self.proc.stdout.readline().decode()
            if not line:
                break
            self.lines.append(line)
            if "certificate:" in line:
                self.cert_path = line.split("certificate:", 1)[1].strip()
            if "listening on" in line:
                self.port = int(line.rsplit(":", 1)[1])
                return
        err = self.proc.stderr.read().decode() if self.proc.stderr else ""
        self.proc.kill()
        raise AssertionError(f"server did not start: {self.lines} {err}")

    def stop(self) -> tuple[int, str]:
        self.proc.terminate()
        try:
            _, err = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return self.proc.returncode, err.decode()
