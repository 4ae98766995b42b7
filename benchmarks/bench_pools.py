"""Pool acquire+release from Python against bytearray, measured in the same run.

Targets: the 1.5 KiB path no slower than bytearray(1500), the
16 KiB path at least 2x faster than bytearray(16384), bookkeeping under 2% of pooled bytes.

    python benchmarks/bench_pools.py [--runs 7] [--number 200000] [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import timeit

from _common import Row, add_json_argument, make_row, write_json

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
    parser.add_argument("--quick", action="store_true", help="3 runs of 20,000")
    add_json_argument(parser)
    args = parser.parse_args()
    if args.quick:
        args.runs, args.number = 3, 20_000

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
    write_json(args.json, rows(figures, stats.bookkeeping_ratio))


def rows(figures: dict[str, list[float]], bookkeeping: float) -> list[Row]:
    """The figures as rows: time per acquire+release as a ratio to bytearray's."""
    out: list[Row] = []
    for size, label, goal in ((1500, "1.5 KiB", 1.0), (16384, "16 KiB", 0.5)):
        base = f"bytearray({size})"
        out.append(make_row("pools", f"{base} + del", "ns", figures[base]))
        for case, target in ((f"pool {label}", goal), (f"pool {label} (owner-charged)", None)):
            row = make_row(
                "pools",
                f"acquire + release {case.removeprefix('pool ')}",
                "ns",
                figures[case],
                baseline_values=figures[base],
                baseline=base,
                target=None if target is None else f"<= {target:.2f}x",
            )
            if target is not None and row.ratio is not None:
                row = dataclasses.replace(row, met=row.ratio <= target)
            out.append(row)
    out.append(
        make_row(
            "pools",
            "bookkeeping / pooled bytes (2,550 leases out)",
            "%",
            [bookkeeping * 100],
            target="< 2%",
            met=bookkeeping < 0.02,
        )
    )
    return out


if __name__ == "__main__":
    main()
