"""PoolSet: size classes, budgets, statistics and leak reports over the slab pools."""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Sequence

from .._fast import Lease, Owner, OwnerSet, PoolCore, SlabPool
from .faults import Acquire, AcquireFault
from .sizing import SizingPolicy, policy_named
from .stats import ClassStats, LeakEntry, LeakReport, OwnerStats, PoolStats

# A full DTLS record: 2^14 bytes of plaintext plus up to 256 of expansion
# (RFC 8446 §5.2 allows 2^14 + 256 for TLSCiphertext.length).
RECORD_SLOT = 16384 + 256
DATAGRAM_SLOT = 1536
BASE_CLASSES: tuple[int, ...] = (64, 256, DATAGRAM_SLOT, 4096, RECORD_SLOT)
DEFAULT_MAX_MESSAGE = 65536
DEFAULT_MAX_TOTAL_MEMORY = 256 * 1024 * 1024
# Arenas of about this many bytes, but never fewer than two slots.
ARENA_TARGET_BYTES = 65536

_all_sets: weakref.WeakSet[PoolSet] = weakref.WeakSet()


def size_classes(max_message_size: int) -> tuple[int, ...]:
    """The base classes plus doubling classes up to the largest handshake message."""
    if max_message_size < 1:
        raise ValueError("max_message_size must be positive")
    classes = list(BASE_CLASSES)
    size = 32768
    while classes[-1] < max_message_size:
        classes.append(min(size, (max_message_size + 63) // 64 * 64))
        size *= 2
    return tuple(classes)


class PoolSet:
    """Slab pools by size class with a global byte cap and per-owner budgets.

    ``acquire(size, owner=None, secure=False)`` lends the smallest slot that
    holds ``size`` bytes; past any cap it raises MemoryBudgetExceeded, which
    the protocol layers turn into a drop and a counter.
    """

    def __init__(
        self,
        *,
        policy: SizingPolicy | str = "balanced",
        max_total_memory: int | None = DEFAULT_MAX_TOTAL_MEMORY,
        max_message_size: int = DEFAULT_MAX_MESSAGE,
        classes: Sequence[int] | None = None,
        debug: bool = False,
    ) -> None:
        self.policy = policy_named(policy)
        if max_total_memory is not None and max_total_memory < 0:
            raise ValueError("max_total_memory must be non-negative or None")
        sizes = tuple(sorted(set(classes))) if classes else size_classes(max_message_size)
        pools = [
            SlabPool(
                size,
                max(2, ARENA_TARGET_BYTES // size),
                self.policy.max_pool_size,
                self.policy.min_pool_size,
            )
            for size in sizes
        ]
        for pool in pools:
            pool.grow_by = self.policy.grow_step(pool.arenas)
        self._core = PoolCore(pools, -1 if max_total_memory is None else max_total_memory, debug)
        # Not kept alive by the set (one per connection: no weak reference each).
        self._owners = OwnerSet()
        # Bound once: the per-datagram path calls straight into the compiled core.
        self.acquire: Acquire = self._core.acquire
        _all_sets.add(self)

    def inject_acquire_fault(self, fail_at: int | None) -> AcquireFault | None:
        """Test hook: the `fail_at`-th acquire from now (1 = the next) raises
        MemoryBudgetExceeded; None removes the hook. Components bind ``acquire`` when they
        are made: install the hook before making the connections under test."""
        if fail_at is None:
            self.acquire = self._core.acquire
            return None
        fault = AcquireFault(self._core.acquire, fail_at)
        self.acquire = fault
        return fault

    # -- owners -------------------------------------------------------------

    def owner(
        self, kind: str, name: object, limit: int | None = None, parent: Owner | None = None
    ) -> Owner:
        """A new budget owner (charged up its parent chain)."""
        o = Owner(kind, name, -1 if limit is None else limit, parent)
        self._owners.add(o)
        return o

    def release_owner(self, owner: Owner) -> int:
        """Release everything `owner` holds and close it; returns how many leases."""
        n = owner.close()
        self._owners.discard(owner)
        return n

    # -- figures ------------------------------------------------------------

    @property
    def pools(self) -> tuple[SlabPool, ...]:
        return self._core.pools

    @property
    def largest_class(self) -> int:
        return self._core.largest

    @property
    def global_limit(self) -> int | None:
        return None if self._core.global_limit < 0 else self._core.global_limit

    @global_limit.setter
    def global_limit(self, value: int | None) -> None:
        self._core.global_limit = -1 if value is None else value

    @property
    def in_use(self) -> int:
        """Leases out, all classes together."""
        return sum(p.in_use for p in self._core.pools)

    @property
    def in_use_bytes(self) -> int:
        return self._core.in_use_bytes

    @property
    def debug(self) -> bool:
        return self._core.debug

    @debug.setter
    def debug(self, value: bool) -> None:
        self._core.debug = value

    def statistics(self) -> PoolStats:
        classes = tuple(_class_stats(p) for p in self._core.pools)
        pooled = sum(c.pooled_bytes for c in classes)
        live = sum(c.in_use for c in classes)
        return PoolStats(
            classes=classes,
            owners=tuple(_owner_stats(o, self._core.pools) for o in self.owners()),
            in_use=live,
            in_use_bytes=self._core.in_use_bytes,
            high_water_bytes=self._core.high_water_bytes,
            pooled_bytes=pooled,
            bookkeeping_bytes=sum(c.bookkeeping_bytes for c in classes),
            handle_bytes=live * Lease.__basicsize__,
            refusals=self._core.refusals,
            global_limit=self.global_limit,
            reclaimed=self._core.reclaimed,
        )

    def owners(self) -> list[Owner]:
        return sorted(self._owners.owners(), key=lambda o: (o.kind, str(o.name)))

    def leak_report(self) -> LeakReport:
        """Live leases by owner and class; where each was taken in debug mode."""
        entries = []
        owned = 0
        for o in self.owners():
            by_size: dict[int, list[Lease]] = {}
            for lease in o.leases():
                by_size.setdefault(lease.size_class, []).append(lease)
            for size, leases in sorted(by_size.items()):
                owned += len(leases)
                wheres = tuple(tuple(lease.where) for lease in leases if lease.where)
                entries.append(LeakEntry(o.label, size, len(leases), size * len(leases), wheres))
        return LeakReport(tuple(entries), max(0, self.in_use - owned))

    # -- sizing -------------------------------------------------------------

    def adapt(self) -> None:
        """Apply the sizing policy to every class (call periodically)."""
        for pool in self._core.pools:
            self.policy.adapt(pool)

    def trim(self) -> int:
        """Give back every idle arena above each class's minimum."""
        return sum(p.trim() for p in self._core.pools)

    def __repr__(self) -> str:
        return (
            f"<PoolSet {self.policy.name} classes={[p.slot_size for p in self.pools]} "
            f"in_use={self.in_use}>"
        )


_default: PoolSet | None = None


def default_pool_set() -> PoolSet:
    """The process-wide PoolSet used when a connection is given none."""
    global _default
    if _default is None:
        _default = PoolSet()
    return _default


def live_pool_sets() -> list[PoolSet]:
    """Every PoolSet alive in this process."""
    return list(_all_sets)


def _class_stats(p: SlabPool) -> ClassStats:
    return ClassStats(
        slot_size=p.slot_size,
        slots=p.capacity,
        in_use=p.in_use,
        high_water=p.high_water,
        acquires=p.acquires,
        releases=p.releases,
        refusals=p.refusals,
        arenas=p.arenas,
        arenas_added=p.arenas_added,
        arenas_freed=p.arenas_freed,
        pooled_bytes=p.pooled_bytes,
        bookkeeping_bytes=p.bookkeeping_bytes,
    )


def _owner_stats(o: Owner, pools: Iterable[SlabPool]) -> OwnerStats:
    sizes = [p.slot_size for p in pools]
    return OwnerStats(
        kind=o.kind,
        name=str(o.name),
        limit=None if o.limit < 0 else o.limit,
        in_use_bytes=o.in_use,
        high_water_bytes=o.high_water,
        live=o.live,
        acquires=o.acquires,
        releases=o.releases,
        refusals=o.refusals,
        live_by_class={sizes[i]: n for i, n in o.live_by_class().items()},
    )
