"""The owners a PoolSet lists: each listed while it lives, never kept alive by the list.

PoolSet keeps them in an OwnerSet, a list threaded through the owners themselves (no weak
reference per owner); an owner that goes leaves it, and one that outlives its set is just
no longer in any.
"""

from __future__ import annotations

import gc

from dtls13._fast import OwnerSet
from dtls13.memory import DATAGRAM_SLOT, Owner, PoolSet


def test_pool_set_lists_live_owners_without_keeping_them_alive() -> None:
    pools = PoolSet()
    owners = [pools.owner("connection", f"peer{i}") for i in range(5)]
    assert [o.name for o in pools.owners()] == [f"peer{i}" for i in range(5)]
    # Dropped in the middle, at the ends, and released explicitly.
    del owners[2]
    del owners[0]
    owners.pop()
    gc.collect()
    assert [o.name for o in pools.owners()] == ["peer1", "peer3"]
    pools.release_owner(owners[0])
    assert [o.name for o in pools.owners()] == ["peer3"]
    assert owners[0].closed
    # A released owner that is still referenced is no longer listed, nor in the statistics.
    assert [o.name for o in pools.statistics().owners] == ["peer3"]
    del owners
    gc.collect()
    assert pools.owners() == [] and pools.statistics().owners == ()


def test_owner_set_add_discard_iterate_and_contains() -> None:
    owners = OwnerSet()
    a, b, c = Owner("k", "a"), Owner("k", "b"), Owner("k", "c")
    for o in (a, b, c, b):  # adding twice lists once
        owners.add(o)
    assert len(owners) == owners.count == 3
    assert owners.owners() == [c, b, a] and list(owners) == [c, b, a]
    assert b in owners and "b" not in owners
    owners.discard(b)
    owners.discard(b)  # not in it any more: nothing
    assert owners.owners() == [c, a] and b not in owners
    # An owner moved to another set leaves the first.
    other = OwnerSet()
    other.add(a)
    assert owners.owners() == [c] and other.owners() == [a]
    owners.discard(a)  # in the other set: left alone
    assert other.owners() == [a]


def test_owners_outlive_their_set() -> None:
    owners = OwnerSet()
    kept = [Owner("k", i) for i in range(3)]
    for o in kept:
        owners.add(o)
    del owners
    gc.collect()
    # No set to leave now: each owner still works and goes cleanly.
    again = OwnerSet()
    again.add(kept[1])
    assert again.owners() == [kept[1]]
    del kept
    gc.collect()
    assert again.owners() == [] and len(again) == 0


def test_owner_in_a_reference_cycle_leaves_the_set_when_collected() -> None:
    pools = PoolSet()
    holder: list[object] = []
    owner = pools.owner("connection", holder)  # its name refers back to it: a cycle
    holder.append(owner)
    kept = pools.owner("connection", "kept")
    del owner, holder
    assert len(pools.owners()) == 2
    gc.collect()  # the collector clears the owner's references, then it goes
    assert pools.owners() == [kept]


def test_live_by_class_counts_the_owners_live_leases() -> None:
    pools = PoolSet()
    owner = pools.owner("connection", "peer")
    leases = [pools.acquire(1200, owner) for _ in range(3)] + [pools.acquire(100, owner)]
    classes = [p.slot_size for p in pools.pools]
    counts = {classes[i]: n for i, n in owner.live_by_class().items()}
    assert counts == {DATAGRAM_SLOT: 3, 256: 1}
    leases.pop(1).release()
    counts = {classes[i]: n for i, n in owner.live_by_class().items()}
    assert counts == {DATAGRAM_SLOT: 2, 256: 1}
    for lease in leases:
        lease.release()
    assert owner.live_by_class() == {}
