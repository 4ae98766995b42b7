"""Records that arrive ahead of their read keys (RFC 9147 §4.2.1): kept by bytes, not count."""

from __future__ import annotations

import pytest

from dtls13.crypto.suites import CipherSuite
from dtls13.memory import PoolSet
from dtls13.record import InboundRecord, RecordLayer
from tests.record import test_record_reference as ref

SUITE = CipherSuite.TLS_AES_128_GCM_SHA256


@pytest.fixture
def pools() -> PoolSet:
    return PoolSet()


def secret(tag: int) -> bytes:
    return bytes((tag + i) % 256 for i in range(ref.secret_length(SUITE)))


def take(records: list[InboundRecord]) -> list[tuple[int, int, bytes]]:
    out = []
    for r in records:
        out.append((r.epoch, r.sequence_number, r.tobytes()))
        r.release()
    return out


def packed_flight(count: int, seq0: int = 0) -> bytes:
    """A ServerHello and `count` tiny epoch-2 records in one datagram, as a peer that packs
    a flight cut into small handshake records sends it."""
    return ref.plaintext(22, 0, b"server hello") + b"".join(
        ref.protect(SUITE, secret(2), 2, seq0 + i, 22, bytes([i]) * 3) for i in range(count)
    )


def test_every_record_of_a_packed_datagram_is_kept_for_its_keys(pools: PoolSet) -> None:
    client = RecordLayer(pools)
    got = take(client.receive_datagram_untrusted(packed_flight(60), 0.0))
    assert got == [(0, 0, b"server hello")]
    client.install_read_epoch(2, SUITE, secret(2), 0.0)
    got = take(client.receive_pending(0.0))
    assert got == [(2, i, bytes([i]) * 3) for i in range(60)]
    assert sum(client.drops.values()) == 0
    client.close()


def test_one_datagram_ahead_of_its_keys_holds_one_slot(pools: PoolSet) -> None:
    """Memory held is the bytes the peer sent, rounded to one size class, not one slot per
    record (a 20-byte record in a 64-byte slot would triple what a peer can pin)."""
    client = RecordLayer(pools)
    datagram = packed_flight(60)
    take(client.receive_datagram_untrusted(datagram, 0.0))
    assert pools.in_use == 1
    assert pools.in_use_bytes <= 2 * len(datagram)
    client.close()
    assert pools.in_use == 0


def test_bytes_kept_ahead_of_keys_have_a_hard_cap(pools: PoolSet) -> None:
    client = RecordLayer(pools, max_pending_bytes=4096)
    for n in range(20):
        take(client.receive_datagram_untrusted(packed_flight(40, seq0=40 * n), n / 4))
        assert client.pending_bytes <= 4096
        assert pools.in_use_bytes <= 4096
    assert client.drops["pending_full"] > 0
    kept = client.pending_count
    client.install_read_epoch(2, SUITE, secret(2), 5.0)
    assert len(take(client.receive_pending(5.0))) > 40
    assert kept > 0 and client.pending_bytes == 0 and pools.in_use == 0


def test_a_datagram_partly_over_the_cap_keeps_what_fits(pools: PoolSet) -> None:
    client = RecordLayer(pools, max_pending_bytes=256)
    take(client.receive_datagram_untrusted(packed_flight(40), 0.0))
    kept_records = 40 - client.drops["pending_full"]
    assert 0 < kept_records < 40
    client.install_read_epoch(2, SUITE, secret(2), 0.0)
    assert take(client.receive_pending(0.0)) == [
        (2, i, bytes([i]) * 3) for i in range(kept_records)
    ]


def test_nothing_is_kept_with_a_zero_cap(pools: PoolSet) -> None:
    client = RecordLayer(pools, max_pending_bytes=0)
    take(client.receive_datagram_untrusted(packed_flight(3), 0.0))
    assert client.pending_count == 0 and client.drops["pending_full"] == 3
    assert pools.in_use == 0


def test_kept_records_expire_and_free_their_bytes(pools: PoolSet) -> None:
    client = RecordLayer(pools, pending_lifetime=5.0)
    take(client.receive_datagram_untrusted(packed_flight(10), 0.0))
    take(client.receive_datagram_untrusted(packed_flight(10, seq0=10), 4.0))
    assert client.pending_count == 2 and client.pending_bytes > 0
    client.expire(7.0)
    assert client.pending_count == 1 and client.drops["pending_expired"] == 10
    client.expire(10.0)
    assert client.pending_bytes == 0 and client.drops["pending_expired"] == 20
    assert pools.in_use == 0
