"""Smoke test of benchmarks/bench_handshake.py's in-process part: a few sans-IO
handshakes of each kind (full, cookie=always, X25519MLKEM768, resumed, checked to resume) and
the crypto floor run; nothing about speed is asserted."""

from __future__ import annotations

import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def test_bench_handshake_in_process_smoke() -> None:
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import bench_handshake
    finally:
        sys.path.remove(str(BENCHMARKS))
    figures = bench_handshake._in_process(1, 3)
    assert set(figures) == {
        "full",
        "full, cookie=always",
        "X25519MLKEM768 full",
        "resumed",
        "floor",
    }
    assert all(len(v) == 1 and v[0] > 0 for v in figures.values())
