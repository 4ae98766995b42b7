"""CPU and Python calls per full handshake over sockets: the trio adapter's share (cProfile).

Both sides in one trio run over loopback: a DTLSEndpoint serving (the handler reads until
the peer's close_notify) and `--clients` concurrent client tasks, each making a fresh socket
and endpoint per handshake, connecting, completing the handshake and closing, as
bench_handshake.py's socket rows do (x25519 + ECDSA P-256, one session ticket).

Without --profile it prints the CPU per handshake (process time, client and server
together). With --profile, the same loop under cProfile: Python calls per handshake grouped
as the sans-IO core, the trio adapter (dtls13.trio), trio itself, builtins and the rest
(stdlib, outcome, attrs), then the busiest functions outside the core and, with --callers,
who calls the functions whose description contains a given text. Call counts do not depend
on the machine's load, so they compare trees where timings on a shared machine cannot.

    PYTHONPATH=src python benchmarks/profile_adapter.py [--handshakes 400] [--profile]
        [--top 45] [--callers isEnabledFor] [--callers socket.py:99]
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import os
import pstats
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import trio
from bench_handshake import BENCH_DOS, _client_config, _dtls13_handshake, _server_config

from dtls13.certgen import make_self_signed
from dtls13.trio import DTLSChannel, DTLSEndpoint

WARM_UP = 20  # handshakes before measuring: per-configuration caches filled


def _group(path: str) -> str:
    if path == "~":
        return "builtins"
    if "dtls13/trio/" in path:
        return "dtls13.trio adapter"
    if "/dtls13/" in path:
        return "dtls13 core"
    if "/trio/" in path:
        return "trio"
    if "benchmarks" in path:
        return "benchmark loop"
    return "other"


def _where(path: str, line: int, name: str) -> str:
    if path == "~":
        return name
    for marker in ("site-packages/", "/lib/python3."):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    else:
        path = os.path.relpath(path)
    return f"{path}:{line}({name})"


async def _run(handshakes: int, clients: int, profile: cProfile.Profile | None) -> float:
    """CPU seconds (process time) for `handshakes` handshakes."""
    sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
    await sock.bind(("127.0.0.1", 0))
    addr = sock.getsockname()
    cert, key = make_self_signed(["localhost"])
    config = _client_config()

    async def read_to_end(channel: DTLSChannel) -> None:
        async for _ in channel:
            pass

    endpoint = DTLSEndpoint(sock, dos=BENCH_DOS, cookie_policy="under_load")
    async with endpoint, trio.open_nursery() as nursery:
        await nursery.start(endpoint.serve, _server_config(cert, key), read_to_end)
        for _ in range(WARM_UP):
            await _dtls13_handshake(addr, config)
        started = 0

        async def client() -> None:
            nonlocal started
            while started < handshakes:
                started += 1
                await _dtls13_handshake(addr, config)

        t0 = time.process_time()
        if profile is not None:
            profile.enable()
        async with trio.open_nursery() as clients_nursery:
            for _ in range(clients):
                clients_nursery.start_soon(client)
        if profile is not None:
            profile.disable()
        cpu = time.process_time() - t0
        nursery.cancel_scope.cancel()
    return cpu


def _other_by_caller(entries: dict[Any, Any]) -> collections.Counter[str]:
    """The calls of group 'other' (stdlib, outcome, attrs), split by the group of the code
    that called them, through chains of 'other' and builtin callers in proportion to
    their calls."""
    shares: dict[Any, dict[str, float]] = {}

    def share(key: Any, seen: frozenset[Any]) -> dict[str, float]:
        if key in shares:
            return shares[key]
        out: collections.Counter[str] = collections.Counter()
        for caller, entry in entries[key][4].items():
            group = _group(caller[0])
            if group not in ("other", "builtins"):
                out[group] += entry[1]
            elif caller in entries and caller not in seen:
                for g, part in share(caller, seen | {key}).items():
                    out[g] += entry[1] * part
        total = sum(out.values()) or 1.0
        shares[key] = {g: c / total for g, c in out.items()}
        return shares[key]

    result: collections.Counter[str] = collections.Counter()
    for key, entry in entries.items():
        if _group(key[0]) == "other":
            for group, part in share(key, frozenset()).items():
                result[group] += entry[1] * part
    return result


def _report(profile: cProfile.Profile, n: int, top: int, callers: list[str]) -> None:
    stats = pstats.Stats(profile)
    entries: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    calls: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    for (path, _, _), (_, ncalls, tottime, _, _) in entries.items():
        calls[_group(path)] += ncalls
        own[_group(path)] += tottime
    print("Python calls per handshake (client and server), by group:")
    for group, count in calls.most_common():
        print(f"  {group:22s} {count / n:8.1f}   own time {own[group] * 1000 / n:.3f} ms")
    outside = calls["dtls13.trio adapter"] + calls["trio"] + calls["other"]
    print(f"  {'adapter + trio + other':22s} {outside / n:8.1f}")
    print("'other' by the group of its nearest caller outside 'other' and builtins:")
    for group, count in _other_by_caller(entries).most_common():
        print(f"  {group:22s} {count / n:8.1f}")
    if top:
        print("\nBusiest functions outside the core (calls per handshake, own time):")
        rows = sorted(
            (
                (ncalls / n, tottime * 1000 / n, _where(*key))
                for key, (_, ncalls, tottime, _, _) in entries.items()
                if _group(key[0]) != "dtls13 core"
            ),
            reverse=True,
        )
        for count, ms, where in rows[:top]:
            print(f"{count:8.1f}  {ms:.3f} ms  {where}")
    for text in callers:
        for key, (_, ncalls, _, _, by) in entries.items():
            if text not in _where(*key):
                continue
            print(f"\n{_where(*key)}: {ncalls / n:.1f} calls per handshake, from")
            for caller, entry in sorted(by.items(), key=lambda item: -item[1][1]):
                print(f"{entry[1] / n:8.1f}  {_where(*caller)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--handshakes", type=int, default=400)
    parser.add_argument("--clients", type=int, default=8, help="concurrent client tasks")
    parser.add_argument("--profile", action="store_true", help="run under cProfile")
    parser.add_argument("--top", type=int, default=45, help="functions listed (0: none)")
    parser.add_argument(
        "--callers", action="append", default=[], help="list the callers of these functions"
    )
    args = parser.parse_args()
    profile = cProfile.Profile() if args.profile else None
    cpu = trio.run(_run, args.handshakes, args.clients, profile)
    label = " (under cProfile)" if profile is not None else ""
    per_handshake = cpu * 1000 / args.handshakes
    print(f"CPU per handshake, both sides in one process: {per_handshake:.2f} ms{label}")
    if profile is not None:
        _report(profile, args.handshakes, args.top, args.callers)


if __name__ == "__main__":
    main()
