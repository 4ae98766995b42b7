"""Adaptive sizing: the presets make the trade-off they promise on one bursty trace."""

from __future__ import annotations

import random

import pytest

from dtls13.memory import PRESETS, Lease, MemoryBudgetExceeded, PoolSet, SizingPolicy


def bursty_trace(seed: int = 7, steps: int = 400) -> list[int]:
    """Datagram buffers wanted at each step: a quiet base load with sharp bursts."""
    rng = random.Random(seed)
    trace = []
    burst = 0
    for _ in range(steps):
        if burst == 0 and rng.random() < 0.04:
            burst = rng.randint(10, 25)
            peak = rng.choice([800, 2000, 4000])
        if burst:
            trace.append(peak + rng.randint(-100, 100))
            burst -= 1
        else:
            trace.append(rng.randint(20, 120))
    return trace


def replay(policy: SizingPolicy, trace: list[int]) -> tuple[float, int, int]:
    """Mean bytes held, refusals and peak bytes held while following the trace."""
    pools = PoolSet(policy=policy, classes=[1536], max_total_memory=None)
    held: list[Lease] = []
    refusals = 0
    pooled = []
    for step, demand in enumerate(trace):
        while len(held) > demand:
            held.pop().release()
        while len(held) < demand:
            try:
                held.append(pools.acquire(1200))
            except MemoryBudgetExceeded:
                refusals += 1
                break
        if step % 5 == 4:
            pools.adapt()
        pooled.append(pools.statistics().pooled_bytes)
    for lease in held:
        lease.release()
    return sum(pooled) / len(pooled), refusals, max(pooled)


def test_presets_trade_memory_held_against_refusals() -> None:
    trace = bursty_trace()
    results = {name: replay(policy, trace) for name, policy in PRESETS.items()}
    for name, (mean, refusals, peak) in results.items():
        print(
            f"{name:12s} mean held {mean / 1024:8.0f} KiB  peak {peak / 1024:7.0f} KiB  "
            f"refusals {refusals}"
        )
    cons, bal, aggr = (results[n] for n in ("conservative", "balanced", "aggressive"))
    # Memory held rises from conservative to aggressive ...
    assert cons[0] < bal[0] < aggr[0]
    # ... and refusals fall: conservative's ceiling refuses the big bursts.
    assert cons[1] > bal[1] >= aggr[1]
    assert aggr[1] == 0


def test_idle_pool_gives_memory_back_down_to_its_minimum() -> None:
    pools = PoolSet(policy="balanced", classes=[1536], max_total_memory=None)
    leases = [pools.acquire(1200) for _ in range(2000)]
    grown = pools.statistics().classes[0].arenas
    for lease in leases:
        lease.release()
    pools.adapt()  # the window still saw the peak: nothing trimmed yet
    assert pools.statistics().classes[0].arenas >= grown
    pools.adapt()  # a quiet window: back to the minimum
    assert pools.statistics().classes[0].arenas == PRESETS["balanced"].min_pool_size


def test_busy_pool_grows_ahead_of_demand() -> None:
    pools = PoolSet(policy="aggressive", classes=[1536], max_total_memory=None)
    pool = pools.pools[0]
    capacity = pool.capacity
    leases = [pools.acquire(1200) for _ in range(int(capacity * 0.9))]
    pools.adapt()
    assert pool.capacity >= 2 * capacity  # growth_factor 2.0 above expand_threshold
    for lease in leases:
        lease.release()


def test_bad_policy_values_raise_at_once() -> None:
    with pytest.raises(ValueError, match="growth_factor"):
        SizingPolicy("x", 0.5, 0.3, 0.8, 1, 2)
    with pytest.raises(ValueError, match="threshold"):
        SizingPolicy("x", 1.5, 0.9, 0.8, 1, 2)
    with pytest.raises(ValueError, match="unknown sizing policy"):
        PoolSet(policy="predictive")
