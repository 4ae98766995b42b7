"""Where the CPU goes: kernel, Python interpreter, crypto, dtls13's compiled code (perf).

Runs the server of bench_echo.py or bench_handshake.py in its own process and the same
clients those benchmarks run in this one, with `perf record` attached to both processes for
the measured window, then splits each side's samples by shared object:

- kernel: `[kernel.kallsyms]` (system calls, epoll, the UDP stack, page faults) and the
  vDSO (the clock);
- interpreter: libpython and the python binary: every Python-level line, dtls13's own
  Python, trio's scheduler and the benchmark loop alike;
- crypto: `cryptography`'s Rust module (OpenSSL linked in), libcrypto/libssl, `_hashlib`;
- dtls13 compiled: `dtls13._fast.*` and `dtls13._io`;
- libc: libc and the dynamic loader (malloc, memcpy);
- other: any other shared object (the standard library's extension modules, brotli).

    PYTHONPATH=src python benchmarks/profile_shares.py [--case handshake] [--seconds 5]

Linux only; needs `perf` (linux-perf) and permission to attach to the two processes.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

GROUPS = ("kernel", "interpreter", "crypto", "dtls13 compiled", "libc", "other")

# perf report --sort dso: "  12.34%  libpython3.11.so.1.0"
_LINE = re.compile(r"^\s*([0-9.]+)%\s+(\S.*?)\s*$")


def group_of(dso: str) -> str:
    """The group a shared object's samples count under."""
    name = os.path.basename(dso)
    if dso.startswith("[kernel") or dso.startswith("[vdso"):
        return "kernel"
    if name.startswith("libpython") or re.fullmatch(r"python3(\.\d+)?", name):
        return "interpreter"
    if name.startswith(("_rust.abi3", "libcrypto", "libssl", "_hashlib", "_openssl")):
        return "crypto"
    if "/dtls13/" in dso:
        return "dtls13 compiled"
    if name.startswith(("libc.so", "libc-", "ld-linux", "libm.so")):
        return "libc"
    return "other"


def shares(report: str) -> dict[str, float]:
    """Percent of samples per group, from `perf report --sort dso --stdio` output."""
    out = dict.fromkeys(GROUPS, 0.0)
    for line in report.splitlines():
        if line.startswith("#"):
            continue
        match = _LINE.match(line)
        if match:
            out[group_of(match.group(2))] += float(match.group(1))
    return out


def _perf_report(data: str) -> str:
    return subprocess.run(
        ["perf", "report", "-i", data, "--sort", "dso", "--stdio", "-v"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def _record(pids: Iterable[int], directory: str) -> list[tuple[subprocess.Popen[bytes], str]]:
    recorders = []
    for pid in pids:
        data = os.path.join(directory, f"{pid}.data")
        proc = subprocess.Popen(
            ["perf", "record", "-q", "-F", "999", "-p", str(pid), "-o", data],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        recorders.append((proc, data))
    time.sleep(0.3)  # perf attached before the measured window starts
    return recorders


def _stop(recorders: list[tuple[subprocess.Popen[bytes], str]]) -> list[str]:
    for proc, _ in recorders:
        proc.send_signal(signal.SIGINT)
    for proc, _ in recorders:
        proc.wait(timeout=60)
    return [data for _, data in recorders]


def _profiled(
    start_server: Callable[[], tuple[subprocess.Popen[str], Any]],
    client: Callable[[int, Any], None],
) -> tuple[dict[str, float], dict[str, float]]:
    """(server shares, client shares) of one profiled run."""
    server, address = start_server()
    try:
        with tempfile.TemporaryDirectory() as directory:
            recorders = _record((server.pid, os.getpid()), directory)
            try:
                client(server.pid, address)
            finally:
                server_data, client_data = _stop(recorders)
            return shares(_perf_report(server_data)), shares(_perf_report(client_data))
    finally:
        server.kill()
        server.wait()


def _server(script: str, mode: str) -> Callable[[], tuple[subprocess.Popen[str], int]]:
    def start() -> tuple[subprocess.Popen[str], int]:
        port = 20000 + (time.monotonic_ns() // 1000) % 20000
        here = os.path.dirname(os.path.abspath(__file__))
        proc = subprocess.Popen(
            [sys.executable, os.path.join(here, script), "--serve", mode, "--port", str(port)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":
            proc.kill()
            raise RuntimeError(f"{script} --serve {mode} did not start")
        return proc, port

    return start


def _cases(seconds: float) -> dict[str, tuple[Callable[[], Any], Callable[[int, Any], None]]]:
    import bench_echo
    import bench_handshake
    import trio

    def handshakes(server_pid: int, port: int) -> None:
        async def run() -> None:
            await bench_handshake._measure(
                server_pid,
                ("127.0.0.1", port),
                bench_handshake._dtls13_handshake,
                bench_handshake._client_config(),
                8,
                seconds,
            )

        trio.run(run)

    def echo(work: Callable[..., Any], mode: str, size: int) -> Callable[[int, int], None]:
        def run(_server_pid: int, port: int) -> None:
            trio.run(work, mode, port, size, seconds)

        return run

    return {
        "handshake, 8 clients, dtls13": (_server("bench_handshake.py", "dtls13"), handshakes),
        "windowed 1178 B, dtls13": (
            _server("bench_echo.py", "dtls13"),
            echo(bench_echo._windowed, "dtls13", 1178),
        ),
        "windowed 1178 B, raw": (
            _server("bench_echo.py", "raw"),
            echo(bench_echo._windowed, "raw", 1178),
        ),
        "ping-pong 64 B, dtls13": (
            _server("bench_echo.py", "dtls13"),
            echo(bench_echo._ping_pong, "dtls13", 64),
        ),
        "ping-pong 64 B, raw": (
            _server("bench_echo.py", "raw"),
            echo(bench_echo._ping_pong, "raw", 64),
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--case", action="append", help="a case name (default: all)")
    args = parser.parse_args()
    if shutil.which("perf") is None:
        raise SystemExit("perf is not installed (Debian: apt-get install linux-perf)")
    cases = _cases(args.seconds)
    chosen = args.case or list(cases)
    print("| case | side | " + " | ".join(GROUPS) + " |")
    print("|---|---|" + "---|" * len(GROUPS))
    for name in chosen:
        start, client = cases[name]
        server_shares, client_shares = _profiled(start, client)
        for side, figures in (("server", server_shares), ("client", client_shares)):
            cells = " | ".join(f"{figures[group]:.0f}%" for group in GROUPS)
            print(f"| {name} | {side} | {cells} |", flush=True)


if __name__ == "__main__":
    main()
