"""Pooled memory: size classes, leases, budgets, statistics, leak reports, sizing."""

from __future__ import annotations

from .._fast import (
    Lease,
    LeaseReleasedError,
    MemoryBudgetExceeded,
    Owner,
    SlabPool,
    live_pools,
)
from .pools import (
    BASE_CLASSES,
    DATAGRAM_SLOT,
    RECORD_SLOT,
    PoolSet,
    default_pool_set,
    live_pool_sets,
    size_classes,
)
from .sizing import PRESETS, SizingPolicy, policy_named
from .stats import ClassStats, LeakEntry, LeakReport, OwnerStats, PoolStats

__all__ = [
    "BASE_CLASSES",
    "DATAGRAM_SLOT",
    "PRESETS",
    "RECORD_SLOT",
    "ClassStats",
    "LeakEntry",
    "LeakReport",
    "Lease",
    "LeaseReleasedError",
    "MemoryBudgetExceeded",
    "Owner",
    "OwnerStats",
    "PoolSet",
    "PoolStats",
    "SizingPolicy",
    "SlabPool",
    "default_pool_set",
    "live_pool_sets",
    "live_pools",
    "policy_named",
    "size_classes",
]
