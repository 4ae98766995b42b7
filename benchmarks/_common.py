"""Shared by the benchmark scripts: figures as rows, JSON for run_all.py, Markdown tables.

Every script prints its own Markdown table and, given `--json PATH`, writes the same rows as
JSON so that `benchmarks/run_all.py` can gather them into one table.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Row:
    """One figure: median, min and max of several runs, optionally a ratio to a baseline."""

    benchmark: str  # the script, e.g. "echo"
    case: str  # e.g. "ping-pong 64 B, dtls13"
    unit: str  # e.g. "msgs/s", "ms", "KiB"
    median: float
    min: float
    max: float
    runs: int
    ratio: float | None = None  # median / baseline median, measured in the same run
    baseline: str | None = None  # what the ratio compares with
    target: str | None = None  # e.g. ">= 0.75x", "<= 0.3 ms"
    met: bool | None = None  # whether the target is met (None: no target)


def summarize(values: Sequence[float]) -> tuple[float, float, float]:
    """(median, min, max) of the runs."""
    if not values:
        raise ValueError("no runs")
    return statistics.median(values), min(values), max(values)


def make_row(
    benchmark: str,
    case: str,
    unit: str,
    values: Sequence[float],
    *,
    baseline_values: Sequence[float] | None = None,
    baseline: str | None = None,
    target: str | None = None,
    met: bool | None = None,
) -> Row:
    """A row from raw run figures; the ratio is median / baseline median when given."""
    med, lo, hi = summarize(values)
    ratio = None
    if baseline_values:
        base = statistics.median(baseline_values)
        ratio = med / base if base else None
    return Row(benchmark, case, unit, med, lo, hi, len(values), ratio, baseline, target, met)


def add_json_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", metavar="PATH", help="also write the rows as JSON to PATH")


def write_json(path: str | None, rows: Iterable[Row]) -> None:
    if path:
        with open(path, "w", encoding="utf-8") as f:
            json.dump([asdict(r) for r in rows], f, indent=1)


def read_json(path: str) -> list[Row]:
    with open(path, encoding="utf-8") as f:
        return [Row(**r) for r in json.load(f)]


def _fmt(x: float) -> str:
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.3g}"


def markdown_table(rows: Iterable[Row]) -> str:
    """The rows as one Markdown table."""
    lines = [
        "| benchmark | case | median | min | max | unit | ratio | vs | target | met |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ratio = f"{r.ratio:.2f}x" if r.ratio is not None else ""
        met = "" if r.met is None else ("yes" if r.met else "**no**")
        lines.append(
            f"| {r.benchmark} | {r.case} | {_fmt(r.median)} | {_fmt(r.min)} | {_fmt(r.max)} "
            f"| {r.unit} | {ratio} | {r.baseline or ''} | {r.target or ''} | {met} |"
        )
    return "\n".join(lines)


def rss_bytes() -> int:
    """This process's resident set (VmRSS) after a garbage collection."""
    gc.collect()
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


class MeasuredServer:
    """A benchmark's server in a subprocess of its own script (`--serve ... --port P`): it
    prints "ready" once listening, and answers each "measure" line on its stdin with one
    line of JSON (its own figures). Killed on exit."""

    def __init__(self, script: str, *serve_args: str) -> None:
        self.port = 20000 + (time.monotonic_ns() // 1000) % 20000
        self.address = ("127.0.0.1", self.port)
        self._proc = subprocess.Popen(
            [sys.executable, script, "--serve", *serve_args, "--port", str(self.port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def __enter__(self) -> MeasuredServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._proc.kill()
        self._proc.wait()

    def wait_ready(self, what: str = "server") -> None:
        assert self._proc.stdout is not None
        if self._proc.stdout.readline().strip() != "ready":
            raise RuntimeError(f"{what} did not start")

    def ask(self) -> dict[str, Any]:
        """The server's figures now."""
        assert self._proc.stdout is not None and self._proc.stdin is not None
        self._proc.stdin.write("measure\n")
        self._proc.stdin.flush()
        figures: dict[str, Any] = json.loads(self._proc.stdout.readline())
        return figures
