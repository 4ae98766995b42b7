"""Harnesses: a server Connection after a valid ClientHello, a client after a valid
server flight, each fed the fuzz input as further datagrams.

At start, each scenario of ``fuzz_common.SCENARIOS`` (suites, groups incl.
X25519MLKEM768, HelloRetryRequests, a 256-byte MTU, connection IDs, resumption) is
handshaken once in memory and recorded. Each input replays the recorded prefix into a
fresh connection (deterministic: the same keys as the recording) and then delivers its
chunks: input = scenario selector byte, then ``tag:1 length:2 data`` chunks (tag < 0x80:
a datagram, 1 ms later; tag >= 0x80: the clock moves (tag & 0x7F) / 10 s and timers run).

Nothing may escape ``receive_datagram``, ``handle_timer``, ``datagrams_to_send`` or
``next_event`` (the configs set ``debug=True``: an unexpected exception inside the core
escapes instead of becoming an internal_error alert; an internal_error alert for anything
but the memory budget fails too), and after ``close()`` and a last ``datagrams_to_send()``
the pools must be back to zero.
"""

from __future__ import annotations

import sys

import fuzz_common

from dtls13.connection import Connection
from dtls13.events import ConnectionTerminated
from dtls13.memory import PoolSet

POOLS = PoolSet()
_RECORDINGS: dict[int, fuzz_common.Recording] = {}


def recording(index: int) -> fuzz_common.Recording:
    if index not in _RECORDINGS:
        _RECORDINGS[index] = fuzz_common.record(index, POOLS)
    return _RECORDINGS[index]


def _check_events(conn: Connection) -> None:
    for event in fuzz_common.events(conn):
        if isinstance(event, ConnectionTerminated) and not event.by_peer:
            # Our own internal_error means an exception inside the core: a bug.
            internal = event.alert is not None and event.alert.name == "internal_error"
            assert not internal or event.reason.startswith("memory budget"), event


def _feed(conn: Connection, peer: object, data: bytes, now: float) -> None:
    for tag, payload in fuzz_common.split_chunks(data):
        if tag & 0x80:
            now += (tag & 0x7F) / 10
            timer = conn.get_timer()
            if timer is not None and timer <= now:
                conn.handle_timer(now)
        else:
            now += 0.001
            conn.receive_datagram(payload, peer, now)
        fuzz_common.drain(conn, now)
        _check_events(conn)
    conn.close()
    fuzz_common.drain(conn, now)
    _check_events(conn)


def _run(side: str, data: bytes) -> None:
    if not data:
        return
    rec = recording(data[0] % len(fuzz_common.SCENARIOS))
    rec.configs.reset()
    if side == "server":
        conn = fuzz_common.new_server(rec.configs, POOLS)
        prefix, peer = rec.to_server[: rec.server_prefix], fuzz_common.CLIENT_ADDR
    else:
        conn = fuzz_common.new_client(rec.configs, POOLS)
        conn.connect(fuzz_common.SERVER_ADDR, fuzz_common.START)
        prefix, peer = rec.to_client[: rec.client_prefix], fuzz_common.SERVER_ADDR
    now = fuzz_common.START
    try:
        for d in prefix:
            now = d.at
            conn.receive_datagram(d.data, peer, now)
            fuzz_common.drain(conn, now)
        fuzz_common.events(conn)
        _feed(conn, peer, data[1:], now)
    finally:
        conn.close()
        fuzz_common.drain(conn, now)
    fuzz_common.check_pools(POOLS, f"{side} connection ({rec.scenario.name})")


def server_input(data: bytes) -> None:
    with fuzz_common.pinned_key_shares():
        _run("server", data)


def client_input(data: bytes) -> None:
    with fuzz_common.pinned_key_shares():
        _run("client", data)


if __name__ == "__main__":
    # python fuzz/fuzz_connection.py server|client [libFuzzer options] [corpus dirs]
    side = sys.argv.pop(1)
    fuzz_common.atheris_main(server_input if side == "server" else client_input)
