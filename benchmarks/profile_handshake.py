"""Python calls per full handshake in the sans-IO server, by function (cProfile).

The loop of bench_handshake.py's in-process rows (a ServerEndpoint fed by sans-IO client
Connections, x25519 + ECDSA P-256, one session ticket, the client's close_notify), with the
profiler on only around the server's calls. Call counts do not depend on the machine's load,
so they compare trees where timings on a shared machine cannot.

With ``--side client``, the client Connections' calls instead (the profiler on around
everything but the server's calls), with one ClientConfig for every handshake, as a user
would reuse it: its per-configuration caches are warm.

    PYTHONPATH=src python benchmarks/profile_handshake.py [--handshakes 50] [--top 40]
        [--side server|client]
"""

from __future__ import annotations

import argparse
import cProfile
import os
import sys
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_handshake import _client_config, _SansIO, _server_config

from dtls13 import ClientConfig
from dtls13.certgen import make_self_signed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--handshakes", type=int, default=50)
    parser.add_argument("--top", type=int, default=40, help="functions listed (0: none)")
    parser.add_argument("--policy", default="under_load", choices=("under_load", "always"))
    parser.add_argument("--side", default="server", choices=("server", "client"))
    args = parser.parse_args()
    cert, key = make_self_signed(["localhost"])
    bench = _SansIO(args.policy, _server_config(cert, key))
    profile: cProfile.Profile | None = None
    server = bench._server
    client_side = args.side == "client"

    def profiled(datagrams: list[bytes], addr: Any) -> list[bytes]:
        if profile is None:
            return server(datagrams, addr)
        if client_side:  # off around the server's calls
            profile.disable()
            try:
                return server(datagrams, addr)
            finally:
                profile.enable()
        profile.enable()  # server side: on around them only
        try:
            return server(datagrams, addr)
        finally:
            profile.disable()

    bench._server = profiled  # type: ignore[method-assign]
    # Server side: a configuration per handshake, as bench_handshake.py's in-process rows.
    config = _client_config()
    make_config: Callable[[], ClientConfig] = (lambda: config) if client_side else _client_config
    for i in range(5):  # warm-up: per-configuration caches filled
        bench.handshake(i, make_config())
    profile = cProfile.Profile()
    n = args.handshakes
    if client_side:
        profile.enable()
    for i in range(n):
        bench.handshake(i, make_config())
    profile.disable()
    profile.create_stats()
    stats: dict[Any, Any] = profile.stats  # type: ignore[attr-defined]
    total = sum(entry[1] for entry in stats.values())
    print(f"Python calls per {args.side} handshake: {total / n:.1f} (cProfile, {n} handshakes)")
    rows = sorted(((entry[1], where) for where, entry in stats.items()), reverse=True)
    for count, (path, line, name) in rows[: args.top]:
        place = f"{os.path.relpath(path)}:{line}" if not path.startswith("~") else "builtin"
        print(f"{count / n:8.1f}  {place} {name}")


if __name__ == "__main__":
    main()
