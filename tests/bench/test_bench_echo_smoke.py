"""Smoke test of benchmarks/bench_echo.py (a few seconds): it runs and writes its rows.

Nothing about speed is asserted here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_bench_echo_quick_writes_rows(tmp_path: Path) -> None:
    pytest.importorskip("OpenSSL")
    out = tmp_path / "echo.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    args = ["--runs", "1", "--seconds", "0.1", "--case", "ping-pong 64 B", "--json", str(out)]
    subprocess.run(
        [sys.executable, "benchmarks/bench_echo.py", *args],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=60,
    )
    rows = json.loads(out.read_text())
    cases = [r["case"] for r in rows]
    assert "ping-pong 64 B, raw" in cases and "ping-pong 64 B, dtls13" in cases
    dtls = next(r for r in rows if r["case"] == "ping-pong 64 B, dtls13")
    assert dtls["target"] == ">= 0.75x" and dtls["met"] in (True, False)
    assert dtls["median"] > 0 and dtls["ratio"] is not None
    relay = next(r for r in rows if r["case"] == "ping-pong 64 B, raw-relay")
    assert relay["median"] > 0 and relay["baseline"] == "raw trio UDP"
    assert any(r.get("baseline") == "raw UDP through a receive task" for r in rows)
    client = next(r for r in rows if r["case"] == "ping-pong 64 B, dtls13, client CPU")
    assert client["median"] > 0 and client["baseline"] == "raw trio UDP"
