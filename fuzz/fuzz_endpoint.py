"""Harness: a ServerEndpoint fed datagrams from many sources.

Input: a selector byte (scenario: its low bits; cookie policy: bits 5-6), then
``tag:1 length:2 data`` chunks: tag < 0x80 is a datagram from source ``tag % 8`` (eight
ports on four hosts, so per-host limits bite), tag >= 0x80 moves the clock
(tag & 0x7F) / 10 s and runs the endpoint's timers. The endpoint's DoS limits are small
so that the fuzzer reaches them. Nothing may escape the endpoint; after ``close()``, a last
``datagrams_to_send()`` and ``release()`` the pools must be back to zero, and no closed
connection may still hold memory before ``release()`` gives it back.
"""

from __future__ import annotations

from typing import Any

import fuzz_common

from dtls13.endpoint import DoSProtectionConfig, ServerEndpoint
from dtls13.memory import PoolSet

POOLS = PoolSet()
SOURCES = tuple((f"192.0.2.{1 + i // 2}", 5000 + i) for i in range(8))
POLICIES = ("under_load", "always", "never", "under_load")
DOS = DoSProtectionConfig(
    max_total_memory=4 * 1024 * 1024,
    max_per_connection_memory=256 * 1024,
    max_concurrent_connections=6,
    max_connections_per_ip=2,
    max_half_open=4,
    max_half_open_per_ip=2,
    datagrams_per_second=100.0,
    datagram_burst=40.0,
    max_tracked_sources=6,
    cookie_threshold=2,
    handshake_reassembly_bytes=4096,
    reassembly_total_bytes=12288,
)
_CONFIGS: dict[int, fuzz_common.Configs] = {}


def configs(index: int) -> fuzz_common.Configs:
    if index not in _CONFIGS:
        _CONFIGS[index] = fuzz_common.make_configs(fuzz_common.SCENARIOS[index], index)
    return _CONFIGS[index]


def scenario_index(selector: int) -> int:
    """The scenario of a selector byte: its low five bits (bits 5-6 pick the policy)."""
    return (selector & 0x1F) % len(fuzz_common.SCENARIOS)


def endpoint(selector: int) -> ServerEndpoint:
    cfg = configs(scenario_index(selector))
    cfg.reset()
    return ServerEndpoint(
        cfg.server,
        pools=POOLS,
        dos=DOS,
        cookie_policy=POLICIES[(selector >> 5) & 3],  # type: ignore[arg-type]
        wall_clock=lambda: fuzz_common.CLOCK,
    )


def _drain(ep: ServerEndpoint, now: float) -> list[tuple[bytes, Any]]:
    return fuzz_common.drain(ep, now)


def one_input(data: bytes) -> None:
    if not data:
        return
    with fuzz_common.pinned_key_shares():
        _one_input(data)


def _one_input(data: bytes) -> None:
    ep = endpoint(data[0])
    now = fuzz_common.START
    try:
        for tag, payload in fuzz_common.split_chunks(data[1:]):
            if tag & 0x80:
                now += (tag & 0x7F) / 10
                timer = ep.get_timer()
                if timer is not None and timer <= now:
                    ep.handle_timer(now)
            else:
                now += 0.001
                ep.receive_datagram(payload, SOURCES[tag % len(SOURCES)], now)
            _drain(ep, now)
            ep.new_connections()
            ep.attention()
            for conn in ep.connections.values():
                fuzz_common.events(conn)
            ep.reap()
        ep.close()
        _drain(ep, now)
        for conn in ep.connections.values():
            assert conn.closed, conn
            assert conn.owner.in_use == 0, f"closed connection holds {conn.owner.in_use} bytes"
    finally:
        ep.close()
        _drain(ep, now)
        ep.release()
    fuzz_common.check_pools(POOLS, "endpoint")


def main() -> None:
    fuzz_common.atheris_main(one_input)


if __name__ == "__main__":
    main()
