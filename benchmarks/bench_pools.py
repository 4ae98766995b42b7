"""Pool acquire+release from Python against bytearray, measured in the same run.

Targets (issue: foundation): the 1.5 KiB path no slower than bytearray(1500), the
16 KiB path at least 2x faster than bytearray(16384), bookkeeping under 2% of pooled bytes.

    python benchmarks/bench_pools.py [--runs 7] [--number 200000]
"""

from __future__ import annotations

import argparse
import statistics
import timeit

from dtls13.memory import PoolSet


def measure(stmt: str, env: dict[str, object], number: int, runs: int) -> list[float]:
    """Nanoseconds per iteration, one figure per run."""
    timer = timeit.Timer(stmt, globals=env)
    timer.timeit(number // 10)  # warm-up
    return [timer.timeit(number) / number * 1e9 for _ in range(runs)]


def row(name: str, figures: list[float]) -> str:
    return (
        f"| {name} | {statistics.median(figures):.1f} | {min(figures):.1f} | {max(figures):.1f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--number", type=int, default=200_000)
    args = parser.parse_args()

    pools = PoolSet()
    owner = pools.owner("connection", "bench", limit=1 << 20)
    env: dict[str, object] = {"acquire": pools.acquire, "owner": owner}
    cases = {
        "pool 1.5 KiB": "l = acquire(1500); l.release()",
        "pool 1.5 KiB (owner-charged)": "l = acquire(1500, owner); l.release()",
        "bytearray(1500)": "b = bytearray(1500); del b",
        "pool 16 KiB": "l = acquire(16384); l.release()",
        "pool 16 KiB (owner-charged)": "l = acquire(16384, owner); l.release()",
        "bytearray(16384)": "b = bytearray(16384); del b",
    }
    # Interleave the cases run by run so drift hits all of them alike.
    figures: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.runs):
        for name, stmt in cases.items():
            figures[name] += measure(stmt, env, args.number, 1)

    print("| case | median ns | min ns | max ns |")
    print("|---|---|---|---|")
    for name in cases:
        print(row(name, figures[name]))

    med = {name: statistics.median(f) for name, f in figures.items()}
    r15 = med["bytearray(1500)"] / med["pool 1.5 KiB"]
    r16 = med["bytearray(16384)"] / med["pool 16 KiB"]
    r15o = med["bytearray(1500)"] / med["pool 1.5 KiB (owner-charged)"]
    r16o = med["bytearray(16384)"] / med["pool 16 KiB (owner-charged)"]

    # Bookkeeping with a realistic load: 1,000 connections' worth of leases.
    loaded = PoolSet()
    conn = loaded.owner("connection", "load")
    held = [loaded.acquire(size, conn) for size in [1200] * 2000 + [64] * 500 + [16384] * 50]
    stats = loaded.statistics()
    for lease in held:
        lease.release()

    print()
    print("| figure | value | target |")
    print("|---|---|---|")
    print(f"| speed-up vs bytearray(1500) | {r15:.2f}x | >= 1.00x |")
    print(f"| speed-up vs bytearray(16384) | {r16:.2f}x | >= 2.00x |")
    print(f"| owner-charged speed-up vs bytearray(1500) | {r15o:.2f}x | (reported) |")
    print(f"| owner-charged speed-up vs bytearray(16384) | {r16o:.2f}x | (reported) |")
    print(f"| pool bookkeeping / pooled bytes | {stats.bookkeeping_ratio:.3%} | < 2% |")
    print(
        f"| lease handles / pooled bytes (while {stats.in_use} leases are out) | "
        f"{stats.handle_bytes / stats.pooled_bytes:.3%} | (reported) |"
    )


if __name__ == "__main__":
    main()
