"""Test hook: make the n-th pool acquire fail (BoringSSL's malloc-failure tests, mapped onto
this library's pools). Off by default and free when off: ``PoolSet.acquire`` is then the
compiled call itself."""

from __future__ import annotations

from collections.abc import Callable

from .._fast import Lease, MemoryBudgetExceeded, Owner

Acquire = Callable[..., Lease]


class AcquireFault:
    """Wraps an acquire function: its `fail_at`-th call (1 = the first) raises
    MemoryBudgetExceeded, as a refused budget would; the others go through. `calls` counts
    every call, so a test knows when `fail_at` lies past the last acquire of a scenario."""

    __slots__ = ("_acquire", "calls", "fail_at", "fired")

    def __init__(self, acquire: Acquire, fail_at: int) -> None:
        if fail_at < 1:
            raise ValueError("fail_at counts from 1")
        self._acquire = acquire
        self.fail_at = fail_at
        self.calls = 0
        self.fired = False

    def __call__(self, size: int, owner: Owner | None = None, secure: bool = False) -> Lease:
        self.calls += 1
        if self.calls == self.fail_at:
            self.fired = True
            label = owner.label if owner is not None else "pool set"
            raise MemoryBudgetExceeded(label, size, 0, 0, "injected fault")
        return self._acquire(size, owner, secure)
