"""PoolSet.inject_acquire_fault: the test hook that makes the n-th pool acquire fail."""

from __future__ import annotations

import pytest

from dtls13._fast import MemoryBudgetExceeded
from dtls13.memory import PoolSet


def test_the_hook_is_removed_and_checks_its_argument() -> None:
    pools = PoolSet()
    core_acquire = pools.acquire
    assert pools.inject_acquire_fault(None) is None and pools.acquire == core_acquire
    with pytest.raises(ValueError):
        pools.inject_acquire_fault(0)
    fault = pools.inject_acquire_fault(2)
    assert fault is not None
    first = pools.acquire(10)
    with pytest.raises(MemoryBudgetExceeded, match="injected"):
        pools.acquire(10)
    third = pools.acquire(10)
    first.release()
    third.release()
    assert fault.calls == 3 and fault.fired
