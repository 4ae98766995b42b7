"""Smoke test of benchmarks/bench_handshake.py's in-process part: a few sans-IO
handshakes of each kind (full, cookie=always, X25519MLKEM768, resumed, checked to resume) and
the crypto floor run; and of benchmarks/profile_handshake.py's call counts, server side and
client side. Nothing about speed is asserted."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

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
        "full, padded hello",
        "full, cookie=always",
        "X25519MLKEM768 full",
        "resumed",
        "floor",
    }
    assert all(len(v) == 1 and v[0] > 0 for v in figures.values())


def _profile_handshake(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str
) -> list[str]:
    """What benchmarks/profile_handshake.py prints with `args`, line by line."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import profile_handshake
    finally:
        sys.path.remove(str(BENCHMARKS))
    monkeypatch.setattr(sys, "argv", ["profile_handshake.py", "--handshakes", "2", *args])
    profile_handshake.main()
    return capsys.readouterr().out.splitlines()


def test_profile_handshake_counts_the_servers_calls(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = _profile_handshake(monkeypatch, capsys, "--top", "3")
    assert lines[0].startswith("Python calls per server handshake: ")
    assert float(lines[0].split(": ")[1].split()[0]) > 100  # a whole handshake was profiled
    assert len(lines) == 4


def test_profile_handshake_counts_the_clients_calls_apart_from_the_servers(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = _profile_handshake(monkeypatch, capsys, "--top", "1000", "--side", "client")
    assert lines[0].startswith("Python calls per client handshake: ")
    assert float(lines[0].split(": ")[1].split()[0]) > 100
    places = " ".join(lines[1:])
    assert "client_offer.py" in places  # the client's handshake was profiled...
    assert "/endpoint.py" not in places  # ...and the server's endpoint was not
    assert "server_flight.py" not in places
