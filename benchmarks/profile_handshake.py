"""Python calls per full handshake in the sans-IO server, by function (cProfile).

The loop of bench_handshake.py's in-process rows (a ServerEndpoint fed by sans-IO client
Connections, x25519 + ECDSA P-256, one session ticket, the client's close_notify), with the
profiler on only around the server's calls. Call counts do not depend on the machine's load,
so they compare trees where timings on a shared machine cannot.

    PYTHONPATH=src python benchmarks/profile_handshake.py [--handshakes 50] [--top 40]
"""

from __future__ import annotations

import argparse
import cProfile
import os
import sys
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_handshake import _client_config, _SansIO, _server_config

from dtls13.certgen import make_self_signed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--handshakes", type=int, default=50)
    parser.add_argument("--top", type=int, default=40, help="functions listed (0: none)")
    parser.add_argument("--policy", default="under_load", choices=("under_load", "always"))
    args = parser.parse_args()
    cert, key = make_self_signed(["localhost"])
    bench = _SansIO(args.policy, _server_config(cert, key))
    profile: cProfile.Profile | None = None
    server = bench._server

    def profiled(datagrams: list[bytes], addr: Any) -> list[bytes]:
        if profile is None:
            return server(datagrams, addr)
        profile.enable()
        try:
            return server(datagrams, addr)
        finally:
            profile.disable()

    bench._server = profiled  # type: ignore[method-assign]
    for i in range(5):  # warm-up: per-configuration caches filled
        bench.handshake(i, _client_config())
    profile = cProfile.Profile()
    n = args.handshakes
    for i in range(n):
        bench.handshake(i, _client_config())
    profile.create_stats()
    stats: dict[Any, Any] = profile.stats  # type: ignore[attr-defined]
    total = sum(entry[1] for entry in stats.values())
    print(f"Python calls per server handshake: {total / n:.1f} (cProfile, {n} handshakes)")
    rows = sorted(((entry[1], where) for where, entry in stats.items()), reverse=True)
    for count, (path, line, name) in rows[: args.top]:
        place = f"{os.path.relpath(path)}:{line}" if not path.startswith("~") else "builtin"
        print(f"{count / n:8.1f}  {place} {name}")


if __name__ == "__main__":
    main()
