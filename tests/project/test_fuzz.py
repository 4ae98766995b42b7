"""The fuzz harnesses of fuzz/ run in CI, bounded: each over its committed corpus and a
few hundred to a few thousand seeded mutations of it (libFuzzer-like byte mutations from
a seeded random.Random, so a failure reproduces), and, where atheris is installed, under
atheris for a few hundred runs. Longer runs are local: see fuzz/README.md."""

from __future__ import annotations

import importlib.util
import random
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dtls13.handshake import groups
from dtls13.handshake.constants import NamedGroup

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "fuzz"))

import fuzz_codecs  # noqa: E402
import fuzz_common  # noqa: E402
import fuzz_connection  # noqa: E402
import fuzz_endpoint  # noqa: E402
import fuzz_record  # noqa: E402

# harness -> (one-input function, mutated inputs in CI)
HARNESSES: dict[str, tuple[Callable[[bytes], None], int]] = {
    "record": (fuzz_record.one_input, 4000),
    "codecs": (fuzz_codecs.one_input, 20000),
    "server": (fuzz_connection.server_input, 500),
    "client": (fuzz_connection.client_input, 500),
    "endpoint": (fuzz_endpoint.one_input, 300),
}


@pytest.mark.parametrize("name", list(HARNESSES))
def test_harness_survives_its_corpus_and_seeded_mutations(name: str) -> None:
    one_input, mutations = HARNESSES[name]
    seeds = fuzz_common.corpus(name)
    assert seeds, f"fuzz/corpus/{name} is empty: run fuzz/make_corpus.py"
    for seed in seeds:
        one_input(seed)
    rng = random.Random(name)
    for _ in range(mutations):
        data = fuzz_common.mutate(rng, rng.choice(seeds))
        try:
            one_input(data)
        except BaseException as exc:
            raise AssertionError(f"{name} harness failed on input {data!r}") from exc


def test_connection_harness_replays_reach_the_recorded_states() -> None:
    """The seeds are worth their bytes only if a replayed prefix makes the same keys as the
    recording: every deterministic scenario completes its handshake again in the harness."""
    with fuzz_common.pinned_key_shares():
        _replay_every_scenario()


def _replay_every_scenario() -> None:
    for index, scenario in enumerate(fuzz_common.SCENARIOS):
        if scenario.name.startswith("mlkem"):
            continue  # the server's ML-KEM encapsulation is random: only the client replays
        rec = fuzz_connection.recording(index)
        for side in ("server", "client"):
            rec.configs.reset()
            if side == "server":
                conn = fuzz_common.new_server(rec.configs, fuzz_connection.POOLS)
                deliveries, peer = rec.to_server, fuzz_common.CLIENT_ADDR
            else:
                conn = fuzz_common.new_client(rec.configs, fuzz_connection.POOLS)
                fuzz_common.start_client(conn, rec.scenario)
                deliveries, peer = rec.to_client, fuzz_common.SERVER_ADDR
            completed = False
            for d in deliveries:
                conn.receive_datagram(d.data, peer, d.at)
                fuzz_common.drain(conn, d.at)
                completed = completed or conn.handshake_complete
            conn.close()
            fuzz_common.drain(conn, 0.0)
            fuzz_common.events(conn)
            assert completed, f"{scenario.name}: the {side} replay did not complete"


def _event_counts(
    monkeypatch: pytest.MonkeyPatch, one_input: Callable[[bytes], None], seed: bytes
) -> Counter[str]:
    """The events the harness's connections give on `seed`, by type name."""
    for index in range(len(fuzz_common.SCENARIOS)):
        fuzz_connection.recording(index)  # recorded (with their events) before counting
    counts: Counter[str] = Counter()
    original = fuzz_common.events

    def events(conn: Any) -> list[Any]:
        got = original(conn)
        counts.update(type(e).__name__ for e in got)
        return got

    monkeypatch.setattr(fuzz_common, "events", events)
    try:
        one_input(seed)
    finally:
        monkeypatch.setattr(fuzz_common, "events", original)
    return counts


def _sealed_chunks(seed: bytes) -> int:
    return sum(1 for tag, _ in fuzz_common.split_chunks(seed[1:]) if tag & 0xC0 == 0x40)


def _own_seeds(name: str) -> list[bytes]:
    """The seeds make_corpus.py recorded (not wolfSSL's, not crashes) whose encrypted
    records a harness can read again: the server's ML-KEM encapsulation is random, so each
    recording of that scenario (the harness makes its own) has other keys."""
    mlkem = next(i for i, s in enumerate(fuzz_common.SCENARIOS) if s.name.startswith("mlkem"))
    folder = fuzz_common.CORPUS / name
    seeds = [p.read_bytes() for p in sorted(folder.iterdir()) if "-" not in p.name]
    seeds = [s for s in seeds if not _sealed_chunks(s)]
    if name == "endpoint":
        return [s for s in seeds if fuzz_endpoint.scenario_index(s[0]) != mlkem]
    return [s for s in seeds if fuzz_connection.scenario_index(s[0]) != mlkem]


def test_committed_connection_seeds_still_authenticate(monkeypatch: pytest.MonkeyPatch) -> None:
    """Encrypted seeds are worth their bytes only while the harness derives the keys they
    were written with: a change to the handshake's messages (and so its transcript) makes
    them fail authentication, and the fuzzer then never gets past it. After such a
    change, run fuzz/make_corpus.py."""
    for seed in _own_seeds("server"):
        counts = _event_counts(monkeypatch, fuzz_connection.server_input, seed)
        assert counts["HandshakeCompleted"] == 1, f"server seed {seed[:16].hex()}: {counts}"
    for seed in _own_seeds("client"):
        counts = _event_counts(monkeypatch, fuzz_connection.client_input, seed)
        assert counts["DataReceived"] >= 1, f"client seed {seed[:16].hex()}: {counts}"
    for seed in _own_seeds("endpoint"):
        counts = _event_counts(monkeypatch, fuzz_endpoint.one_input, seed)
        assert counts["HandshakeCompleted"] >= 1, f"endpoint seed {seed[:16].hex()}: {counts}"


def test_sealed_seeds_reach_what_the_recorded_peer_did(monkeypatch: pytest.MonkeyPatch) -> None:
    """A seed whose records the harness seals itself (the recorded records' content) takes
    a connection as far as the recording did: the server to its completed handshake, data
    and the client's KeyUpdate; the client to its tickets, data and KeyUpdate. (The
    crashing inputs kept in the corpora are no recordings.)"""
    for side, run, wanted in (
        ("server", fuzz_connection.server_input, ("HandshakeCompleted", "KeyUpdated")),
        ("client", fuzz_connection.client_input, ("NewSessionTicketReceived", "KeyUpdated")),
    ):
        files = sorted((fuzz_common.CORPUS / side).iterdir())
        recorded = [p.read_bytes() for p in files if not p.name.startswith("crash-")]
        seeds = [s for s in recorded if _sealed_chunks(s) > 1]
        assert len(seeds) >= len(fuzz_common.SCENARIOS) - 1, side
        for seed in seeds:
            counts = _event_counts(monkeypatch, run, seed)
            missing = [w for w in (*wanted, "DataReceived") if not counts[w]]
            assert not missing, f"{side} seed {seed[:16].hex()}: {counts}"


def test_harnesses_leave_key_generation_random() -> None:
    """The harnesses pin key shares only while they run: other tests keep fresh keys."""
    fuzz_connection.server_input(fuzz_common.corpus("server")[0])
    fuzz_endpoint.one_input(fuzz_common.corpus("endpoint")[0])
    first, second = groups.generate(NamedGroup.x25519), groups.generate(NamedGroup.x25519)
    assert first.public_bytes != second.public_bytes


@pytest.mark.skipif(importlib.util.find_spec("atheris") is None, reason="atheris not installed")
def test_record_harness_runs_under_atheris(tmp_path: Path) -> None:
    """The atheris entry point works (instrumentation, corpus loading); one harness only,
    as each start costs seconds: the others share fuzz_common.atheris_main."""
    work = tmp_path / "corpus"
    work.mkdir()
    result = subprocess.run(
        [sys.executable, str(ROOT / "fuzz" / "fuzz_record.py"), "-runs=500", "-seed=1",
         f"-artifact_prefix={tmp_path}/", str(work), str(ROOT / "fuzz" / "corpus" / "record")],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Done 500 runs" in result.stderr, result.stderr[-3000:]
