"""Adaptive pool sizing: presets and the policy that grows and trims arenas."""

from __future__ import annotations

import math
from dataclasses import dataclass

from .._fast import SlabPool


@dataclass(frozen=True, slots=True)
class SizingPolicy:
    """How a size class grows under demand and gives memory back.

    Units follow the seed report's ``SizingConfig``: pool sizes count arenas
    per size class; thresholds are shares of the slots currently allocated.
    """

    name: str
    growth_factor: float
    shrink_threshold: float
    expand_threshold: float
    min_pool_size: int
    max_pool_size: int

    def __post_init__(self) -> None:
        if self.growth_factor < 1.0:
            raise ValueError("growth_factor must be at least 1.0")
        if not 0.0 <= self.shrink_threshold < self.expand_threshold <= 1.0:
            raise ValueError("need 0 <= shrink_threshold < expand_threshold <= 1")
        if not 0 <= self.min_pool_size <= self.max_pool_size or self.max_pool_size < 1:
            raise ValueError("need 0 <= min_pool_size <= max_pool_size and max_pool_size >= 1")

    def grow_step(self, arenas: int) -> int:
        """Arenas to add when a class runs out of free slots."""
        return max(1, math.ceil(arenas * (self.growth_factor - 1.0)))

    def adapt(self, pool: SlabPool) -> None:
        """Resize one class from the demand seen since the previous call.

        Demand is the peak number of slots in use during the window. Above
        ``expand_threshold`` of capacity the class grows ahead of demand by
        ``growth_factor``; below ``shrink_threshold`` idle arenas go back until
        the peak would sit at ``expand_threshold`` (never under the minimum).
        """
        peak = pool.reset_window()
        per = pool.slots_per_arena
        capacity = pool.arenas * per
        pool.grow_by = self.grow_step(pool.arenas)
        if capacity == 0:
            if peak:
                pool.reserve(max(1, math.ceil(peak / per)))
            return
        use = peak / capacity
        if use > self.expand_threshold:
            pool.reserve(math.ceil(pool.arenas * self.growth_factor))
        elif use < self.shrink_threshold:
            keep = max(pool.min_arenas, math.ceil(peak / (per * self.expand_threshold)))
            pool.trim(keep)


PRESETS: dict[str, SizingPolicy] = {
    # Holds little memory: slow growth, trims early, a low ceiling.
    "conservative": SizingPolicy("conservative", 1.25, 0.5, 0.9, 1, 64),
    # The seed report's example configuration.
    "balanced": SizingPolicy("balanced", 1.5, 0.3, 0.8, 4, 256),
    # Favours never refusing: fast growth, keeps memory, a high ceiling.
    "aggressive": SizingPolicy("aggressive", 2.0, 0.1, 0.6, 8, 1024),
}


def policy_named(policy: SizingPolicy | str) -> SizingPolicy:
    """A preset by name, or the policy itself."""
    if isinstance(policy, SizingPolicy):
        return policy
    try:
        return PRESETS[policy]
    except KeyError:
        raise ValueError(
            f"unknown sizing policy {policy!r}; choose one of {', '.join(PRESETS)}"
        ) from None
