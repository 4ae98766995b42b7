"""Smoke tests: bench_memory.py and bench_flood.py --quick run and write rows (a few seconds
each). No figure is asserted; only that the scripts work and their sanity checks passed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(script: str, tmp_path: Path) -> list[dict[str, object]]:
    out = tmp_path / "rows.json"
    path = str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")
    env = {**os.environ, "PYTHONPATH": path}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    rows: list[dict[str, object]] = json.loads(out.read_text())
    return rows


def test_bench_smoke_memory_quick(tmp_path: Path) -> None:
    pytest.importorskip("OpenSSL")
    rows = _run("bench_memory.py", tmp_path)
    cases = [str(r["case"]) for r in rows]
    assert any("per idle connection" in c and "dtls13" in c for c in cases)
    assert any("trio.DTLSEndpoint" in c for c in cases)


def test_bench_smoke_flood_quick(tmp_path: Path) -> None:
    rows = _run("bench_flood.py", tmp_path)
    cases = [str(r["case"]) for r in rows]
    assert any(c.startswith("HRRs answered") for c in cases)
    assert any("sans-IO" in c for c in cases)
