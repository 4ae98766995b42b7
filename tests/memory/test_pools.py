"""Slab pools, leases, budgets, statistics and leak reports."""

from __future__ import annotations

import gc
import itertools
import os
import socket
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from dtls13.memory import (
    DATAGRAM_SLOT,
    RECORD_SLOT,
    Lease,
    LeaseReleasedError,
    MemoryBudgetExceeded,
    Owner,
    PoolSet,
    SlabPool,
    size_classes,
)

pytest_plugins = ["pytester"]


# -- SlabPool -----------------------------------------------------------------


def test_slots_are_carved_from_shared_arenas_and_aligned() -> None:
    pool = SlabPool(1500, 8, 4)
    leases = [pool.acquire() for _ in range(8)]
    assert pool.arenas == 1
    assert pool.slot_size == 1536  # rounded to a cache-line multiple
    addresses = sorted(_address(lease) for lease in leases)
    assert all(a % 64 == 0 for a in addresses)
    # One arena: the slots are contiguous, one slot apart.
    assert [b - a for a, b in itertools.pairwise(addresses)] == [1536] * 7
    leases.append(pool.acquire())
    assert pool.arenas == 2
    for lease in leases:
        lease.release()
    assert pool.in_use == 0


def test_pool_refuses_past_its_arena_cap() -> None:
    pool = SlabPool(64, 2, 2)
    leases = [pool.acquire() for _ in range(4)]
    with pytest.raises(MemoryBudgetExceeded) as info:
        pool.acquire()
    assert info.value.reason == "pool"
    assert pool.refusals == 1
    leases.pop().release()
    leases.append(pool.acquire())  # a freed slot is lent again
    for lease in leases:
        lease.release()


def test_released_slot_is_reused_first() -> None:
    pool = SlabPool(256, 4, 1)
    a = pool.acquire()
    where = _address(a)
    a.release()
    b = pool.acquire()
    assert _address(b) == where
    b.release()


def test_trim_gives_back_only_idle_arenas() -> None:
    pool = SlabPool(64, 2, 8, min_arenas=1)
    leases = [pool.acquire() for _ in range(6)]
    assert pool.arenas == 3
    for lease in leases[:4]:
        lease.release()
    # Arenas 0 and 1 are idle now; arena 2 still holds two leases and stays.
    assert pool.trim() == 2
    assert pool.arenas == 1 and pool.in_use == 2
    for lease in leases[4:]:
        lease.release()
    assert pool.trim(0) == 0  # min_arenas=1 still applies
    assert pool.arenas == 1 and pool.arenas_freed == 2
    pool.acquire().release()  # the kept arena still serves


def test_reserve_adds_arenas_ahead_of_demand() -> None:
    pool = SlabPool(64, 4, 3)
    assert pool.reserve(5) == 3
    assert pool.arenas == 3
    assert pool.capacity == 12


# -- Lease: buffer protocol, lifetime ---------------------------------------


def test_lease_is_a_writable_buffer_of_its_length() -> None:
    pool = SlabPool(256, 4, 1)
    lease = pool.acquire(100)
    assert len(lease) == 100 and lease.capacity == 256
    view = memoryview(lease)
    assert view.nbytes == 100 and not view.readonly and view.contiguous
    view[0:3] = b"abc"
    del view
    assert lease.tobytes()[:3] == b"abc"
    lease.length = 256
    assert len(memoryview(lease)) == 256
    lease.release()


def test_recvfrom_into_writes_straight_into_a_lease() -> None:
    pools = PoolSet()
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        rx.bind(("127.0.0.1", 0))
        tx.bind(("127.0.0.1", 0))
        payload = os.urandom(1200)
        tx.sendto(payload, rx.getsockname())
        lease = pools.acquire(DATAGRAM_SLOT)
        n, addr = rx.recvfrom_into(lease)
        lease.length = n
        assert lease.tobytes() == payload
        assert addr == tx.getsockname()
        lease.release()
    finally:
        rx.close()
        tx.close()
    assert pools.in_use == 0


def test_aesgcm_encrypt_into_and_decrypt_into_use_leases() -> None:
    pools = PoolSet()
    key = AESGCM.generate_key(bit_length=128)
    aead = AESGCM(key)
    nonce = os.urandom(12)
    plaintext = os.urandom(1200)
    out = pools.acquire(len(plaintext) + 16)
    aead.encrypt_into(nonce, plaintext, b"aad", out)
    assert out.tobytes() == aead.encrypt(nonce, plaintext, b"aad")
    back = pools.acquire(len(plaintext))
    aead.decrypt_into(nonce, out, b"aad", back)
    assert back.tobytes() == plaintext
    # The input can be a slice of a lease too, without a copy.
    again = pools.acquire(len(plaintext))
    with pytest.raises(InvalidTag):
        aead.decrypt_into(nonce, out.view(0, len(out)), b"other", again)
    for lease in (out, back, again):
        lease.release()


def test_use_after_release_raises_instead_of_touching_memory() -> None:
    pool = SlabPool(64, 4, 1)
    lease = pool.acquire()
    lease.release()
    for use in (
        lambda: memoryview(lease),
        lambda: len(lease),
        lambda: lease.tobytes(),
        lambda: lease.view(),
        lambda: lease[0],
        lambda: lease.write(0, b"x"),
    ):
        with pytest.raises(LeaseReleasedError):
            use()
    with pytest.raises(LeaseReleasedError):
        lease.length = 3


def test_double_release_raises() -> None:
    pool = SlabPool(64, 4, 1)
    lease = pool.acquire()
    lease.release()
    with pytest.raises(LeaseReleasedError):
        lease.release()
    assert pool.in_use == 0 and pool.releases == 1


def test_stale_handle_cannot_free_a_slot_lent_again() -> None:
    pool = SlabPool(64, 1, 1)
    first = pool.acquire()
    first.release()
    second = pool.acquire()  # the same slot, lent again
    assert _address(second) is not None
    with pytest.raises(LeaseReleasedError):
        first.release()
    assert pool.in_use == 1
    second.release()


def test_views_keep_the_slot_out_of_the_pool() -> None:
    pool = SlabPool(64, 1, 1)
    lease = pool.acquire()
    view = lease.view(0, 8)
    view[:] = b"12345678"
    lease.release()
    assert pool.in_use == 1  # still held by the view
    with pytest.raises(MemoryBudgetExceeded):
        pool.acquire()  # the only slot is not lent twice
    assert bytes(view) == b"12345678"
    view.release()
    assert pool.in_use == 0
    pool.acquire().release()


def test_lease_cannot_resize_while_viewed() -> None:
    pool = SlabPool(64, 1, 1)
    lease = pool.acquire(10)
    view = memoryview(lease)
    with pytest.raises(BufferError):
        lease.length = 20
    view.release()
    lease.length = 20
    lease.release()


def test_secure_lease_is_zeroed_on_release() -> None:
    pool = SlabPool(256, 1, 1)
    lease = pool.acquire(secure=True)
    lease.write(0, b"\xaa" * 256)
    lease.release()
    again = pool.acquire()
    assert again.tobytes() == bytes(256)
    again.release()


def test_plain_lease_is_not_zeroed_but_hides_the_free_list_link() -> None:
    pool = SlabPool(256, 1, 1)
    lease = pool.acquire()
    lease.write(0, b"\xaa" * 256)
    lease.release()
    again = pool.acquire()
    data = again.tobytes()
    assert data[:8] == bytes(8) and data[8:] == b"\xaa" * 248
    again.release()


def test_leases_have_no_public_constructor() -> None:
    with pytest.raises(TypeError):
        Lease()  # type: ignore[call-arg]


# -- PoolSet: classes, budgets ----------------------------------------------


def test_poolset_picks_the_smallest_class_that_fits() -> None:
    pools = PoolSet()
    for size, expected in [
        (1, 64),
        (64, 64),
        (65, 256),
        (1200, 1536),
        (1537, 4096),
        (16384, RECORD_SLOT),
        (RECORD_SLOT + 1, 32768),
        (65536, 65536),
    ]:
        lease = pools.acquire(size)
        assert lease.size_class == expected, size
        assert len(lease) == size
        lease.release()
    with pytest.raises(MemoryBudgetExceeded) as info:
        pools.acquire(65537)
    assert info.value.reason == "size class"


def test_size_classes_reach_the_configured_message_cap() -> None:
    assert size_classes(65536)[-1] == 65536
    assert size_classes(100_000)[-2:] == (65536, 100032)
    assert size_classes(1000)[-1] == RECORD_SLOT


def test_global_budget_refuses_with_the_figures() -> None:
    pools = PoolSet(max_total_memory=4096)
    a = pools.acquire(1536)
    b = pools.acquire(1536)
    with pytest.raises(MemoryBudgetExceeded) as info:
        pools.acquire(1536)
    err = info.value
    assert (err.owner, err.requested, err.in_use, err.limit) == ("global budget", 1536, 3072, 4096)
    assert "3072 B in use" in str(err) and "limit 4096 B" in str(err)
    assert pools.statistics().refusals == 1
    a.release()
    b.release()


def test_owner_budget_is_charged_up_the_parent_chain() -> None:
    pools = PoolSet()
    endpoint = pools.owner("endpoint", "udp:4433", limit=3 * 1536)
    conn1 = pools.owner("connection", "10.0.0.1:1", limit=2 * 1536, parent=endpoint)
    conn2 = pools.owner("connection", "10.0.0.2:1", parent=endpoint)
    a = pools.acquire(1500, conn1)
    b = pools.acquire(1500, conn1)
    with pytest.raises(MemoryBudgetExceeded) as info:
        pools.acquire(1500, conn1)
    assert info.value.owner == "connection 10.0.0.1:1"
    c = pools.acquire(1500, conn2)
    with pytest.raises(MemoryBudgetExceeded) as info:
        pools.acquire(10, conn2)  # conn2 has no cap of its own; the endpoint's applies
    assert info.value.owner == "endpoint udp:4433"
    assert endpoint.in_use == 3 * 1536 and conn1.in_use == 2 * 1536
    assert (conn1.refusals, conn2.refusals, endpoint.refusals) == (1, 1, 1)
    for lease in (a, b, c):
        lease.release()
    assert endpoint.in_use == conn1.in_use == conn2.in_use == 0


def test_statistics_count_per_class_and_per_owner() -> None:
    pools = PoolSet()
    owner = pools.owner("connection", "peer")
    leases = [pools.acquire(1200, owner) for _ in range(3)] + [pools.acquire(100, owner)]
    stats = pools.statistics()
    datagram = next(c for c in stats.classes if c.slot_size == DATAGRAM_SLOT)
    assert (datagram.in_use, datagram.acquires, datagram.high_water) == (3, 3, 3)
    (ostats,) = stats.owners
    assert ostats.live == 4 and ostats.live_by_class == {DATAGRAM_SLOT: 3, 256: 1}
    assert ostats.in_use_bytes == 3 * DATAGRAM_SLOT + 256
    assert stats.in_use == 4 and stats.in_use_bytes == 3 * DATAGRAM_SLOT + 256
    assert 0 < stats.bookkeeping_ratio < 0.02
    for lease in leases:
        lease.release()
    stats = pools.statistics()
    assert stats.in_use == 0 and stats.owners[0].releases == 4


def test_leak_report_names_owner_class_and_where_in_debug_mode() -> None:
    pools = PoolSet(debug=True)
    owner = pools.owner("connection", "leaky")
    held = [pools.acquire(1200, owner), pools.acquire(1200, owner), pools.acquire(50, owner)]
    report = pools.leak_report()
    assert report.total == 3
    by_class = {e.slot_size: e for e in report.entries}
    assert by_class[DATAGRAM_SLOT].count == 2 and by_class[64].count == 1
    assert by_class[DATAGRAM_SLOT].owner == "connection leaky"
    assert any("test_leak_report_names_owner" in line for line in by_class[64].where[0])
    assert "connection leaky: 2 x 1536 B" in report.format()
    assert pools.release_owner(owner) == 3
    assert all(lease.released for lease in held)
    assert not pools.leak_report() and pools.in_use == 0


def test_released_owner_refuses_new_leases() -> None:
    pools = PoolSet()
    owner = pools.owner("connection", "gone")
    pools.release_owner(owner)
    with pytest.raises(ValueError, match="closed"):
        pools.acquire(10, owner)


def test_dropped_unowned_lease_is_reclaimed_and_counted() -> None:
    pools = PoolSet()
    pools.acquire(100)  # dropped at once without release
    gc.collect()
    assert pools.in_use == 0
    assert pools.statistics().reclaimed == 1


def test_leaked_owned_lease_stays_visible_until_owner_released() -> None:
    pools = PoolSet()
    owner = pools.owner("connection", "x")
    pools.acquire(100, owner)  # handle dropped: the owner still lists it
    gc.collect()
    assert pools.in_use == 1 and pools.leak_report().total == 1
    owner.release_all()
    assert pools.in_use == 0


def test_pool_cannot_join_two_pool_sets() -> None:
    from dtls13._fast import PoolCore

    pool = SlabPool(64, 4, 1)
    PoolCore([pool])
    with pytest.raises(ValueError, match="another pool set"):
        PoolCore([pool])


def test_owner_name_is_free_form() -> None:
    owner = Owner("source", ("127.0.0.1", 5000))
    assert owner.label == "source ('127.0.0.1', 5000)"


# -- the autouse fixture itself ---------------------------------------------


def test_fixture_fails_a_test_that_leaves_a_lease_live(pytester: pytest.Pytester) -> None:
    conftest = (Path(__file__).parents[1] / "conftest.py").read_text()
    pytester.makeconftest(conftest)
    pytester.makepyfile(
        """
        from dtls13.memory import PoolSet
        KEEP = []
        def test_leaks():
            pools = PoolSet()
            KEEP.append((pools, pools.acquire(100)))
        def test_clean():
            pools = PoolSet()
            pools.acquire(100).release()
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*test left leases live*1 in use*"])


def _address(lease: Lease) -> int:
    import ctypes

    view = memoryview(lease)
    try:
        return ctypes.addressof(ctypes.c_char.from_buffer(view))
    finally:
        view.release()
