"""Statistics and leak reports of the pools, as plain frozen records."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ClassStats:
    """One size class."""

    slot_size: int
    slots: int
    in_use: int
    high_water: int
    acquires: int
    releases: int
    refusals: int
    arenas: int
    arenas_added: int
    arenas_freed: int
    pooled_bytes: int
    bookkeeping_bytes: int


@dataclass(frozen=True, slots=True)
class OwnerStats:
    """One owner (endpoint, source address or connection)."""

    kind: str
    name: str
    limit: int | None
    in_use_bytes: int
    high_water_bytes: int
    live: int
    acquires: int
    releases: int
    refusals: int
    live_by_class: dict[int, int]


@dataclass(frozen=True, slots=True)
class PoolStats:
    """All classes of a PoolSet together."""

    classes: tuple[ClassStats, ...]
    owners: tuple[OwnerStats, ...]
    in_use: int
    in_use_bytes: int
    high_water_bytes: int
    pooled_bytes: int
    bookkeeping_bytes: int
    handle_bytes: int
    refusals: int
    global_limit: int | None
    # Unowned leases dropped without release() and taken back when collected.
    reclaimed: int = 0

    @property
    def bookkeeping_ratio(self) -> float:
        """Pool metadata as a share of pooled bytes (0.0 when nothing is pooled)."""
        return self.bookkeeping_bytes / self.pooled_bytes if self.pooled_bytes else 0.0


@dataclass(frozen=True, slots=True)
class LeakEntry:
    """Live leases of one owner in one size class."""

    owner: str
    slot_size: int
    count: int
    bytes: int
    where: tuple[tuple[str, ...], ...]


@dataclass(frozen=True, slots=True)
class LeakReport:
    """Every lease still out, grouped by owner and class."""

    entries: tuple[LeakEntry, ...]
    unowned: int

    @property
    def total(self) -> int:
        return sum(e.count for e in self.entries) + self.unowned

    def __bool__(self) -> bool:
        return self.total > 0

    def format(self) -> str:
        if not self:
            return "no live leases"
        lines = [f"{self.total} live lease(s):"]
        for e in self.entries:
            lines.append(f"  {e.owner}: {e.count} x {e.slot_size} B ({e.bytes} B)")
            for stack in e.where:
                lines.append("    acquired at:")
                lines.extend("      " + line.rstrip() for line in stack[-4:])
        if self.unowned:
            lines.append(f"  without owner: {self.unowned}")
        return "\n".join(lines)
