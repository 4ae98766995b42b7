"""0-RTT anti-replay stores: one process, processes on one machine, a fleet through Redis."""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from dtls13.config import ServerConfig
from dtls13.connection import Connection
from dtls13.events import DataReceived
from dtls13.handshake.antireplay import (
    PROCESS_REPLAY_GUARD,
    RedisReplayGuard,
    ReplayGuard,
    ReplayStore,
    SharedMemoryReplayGuard,
)
from tests.support.dtls_pair import (
    CLIENT_ADDR,
    SERVER_ADDR,
    configs,
    first_session,
    make_pair,
    wall_clock,
)

SECRET = bytes(range(32))


# -- a real redis-server ---------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A redis-server of its own on a free local port (`.ci/run` installs redis-server)."""
    binary = shutil.which("redis-server")
    if binary is None:
        why = "redis-server not found: install it (Debian: apt-get install redis-server)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the Redis anti-replay tests: {why}", pytrace=False)
        pytest.skip(why)
    pytest.importorskip("redis", reason="the redis package is in the test extras")
    import redis

    port = _free_port()
    workdir = tmp_path_factory.mktemp("redis")
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", workdir]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.05)
        yield url
    finally:
        client.close()
        proc.terminate()
        proc.wait(10)


# -- each store on its own -------------------------------------------------------------------


def _close(store: object) -> None:
    close = getattr(store, "close", None)
    if callable(close):
        close()


def _stores(tmp_path: Path, redis_url: str | None) -> dict[str, Callable[[], ReplayStore]]:
    made: dict[str, Callable[[], ReplayStore]] = {
        "process": ReplayGuard,
        "shared-memory": SharedMemoryReplayGuard,
        "shared-memory-file": lambda: SharedMemoryReplayGuard(tmp_path / "table"),
    }
    if redis_url is not None:
        made["redis"] = lambda: RedisReplayGuard.from_url(redis_url, timeout=2.0)
    return made


@pytest.mark.parametrize("kind", ["process", "shared-memory", "shared-memory-file", "redis"])
def test_a_store_accepts_each_ticket_once_until_it_expires(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue("redis_url") if kind == "redis" else None
    store = _stores(tmp_path, url)[kind]()
    request.addfinalizer(lambda: _close(store))
    assert isinstance(store, ReplayStore)
    now = time.time()  # Redis expires keys on its own clock: give it real times
    ticket = os.urandom(40)
    assert store.first_use(ticket, now + 60, now)
    assert not store.first_use(ticket, now + 60, now + 1)  # a replay
    assert store.first_use(os.urandom(40), now + 60, now + 1)  # another ticket
    assert not store.first_use(os.urandom(40), now, now)  # already expired: never accepted
    if kind != "redis":  # a fake clock: the entry is gone once its ticket expired
        assert store.first_use(ticket, now + 200, now + 61)


def test_shared_memory_table_that_is_full_refuses_zero_rtt() -> None:
    store = SharedMemoryReplayGuard(capacity=4, probe=4)
    tickets = [os.urandom(16) for _ in range(5)]
    assert all(store.first_use(t, 100.0, 0.0) for t in tickets[:4])
    assert not store.first_use(tickets[4], 100.0, 1.0)  # full: refused, never accepted twice
    assert not store.first_use(tickets[0], 100.0, 1.0)
    assert store.first_use(tickets[4], 300.0, 101.0)  # the old entries expired
    assert len(store) == 4
    store.close()


def test_shared_memory_table_made_with_other_settings_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "table"
    SharedMemoryReplayGuard(path, capacity=64).close()
    with pytest.raises(ValueError, match="capacity 128"):
        SharedMemoryReplayGuard(path, capacity=128)
    with pytest.raises(ValueError, match="other settings"):
        SharedMemoryReplayGuard(path, capacity=64, probe=8)
    with pytest.raises(ValueError):
        SharedMemoryReplayGuard(capacity=0)


def _race(store: SharedMemoryReplayGuard, ticket: bytes, start: Any, out: Any) -> None:
    start.wait()
    out.put(sum(store.first_use(ticket, 100.0, 1.0) for _ in range(200)))


def test_forked_workers_sharing_the_table_accept_a_ticket_once() -> None:
    store = SharedMemoryReplayGuard()
    ctx = multiprocessing.get_context("fork")
    start, out = ctx.Event(), ctx.Queue()
    tickets = [os.urandom(32) for _ in range(3)]
    procs = [ctx.Process(target=_race, args=(store, tickets[i % 3], start, out)) for i in range(6)]
    for p in procs:
        p.start()
    start.set()
    accepted = sum(out.get(timeout=30) for _ in procs)
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    assert accepted == 3  # each ticket once, whichever worker got there first
    assert not store.first_use(tickets[0], 100.0, 2.0)  # and the parent sees it too
    store.close()


_OTHER_PROCESS = """
import sys
from dtls13.handshake.antireplay import SharedMemoryReplayGuard
store = SharedMemoryReplayGuard(sys.argv[1])
print(int(store.first_use(bytes.fromhex(sys.argv[2]), 100.0, 1.0)))
"""


def test_an_unrelated_process_opening_the_same_file_sees_the_use(tmp_path: Path) -> None:
    path = tmp_path / "table"
    store = SharedMemoryReplayGuard(path)
    ticket = os.urandom(32)
    assert store.first_use(ticket, 100.0, 0.0)
    src = str(Path(__file__).resolve().parents[2] / "src")
    env = {**os.environ, "PYTHONPATH": src}
    run = [sys.executable, "-c", _OTHER_PROCESS, str(path)]
    seen = subprocess.run([*run, ticket.hex()], capture_output=True, env=env, timeout=60)
    fresh = subprocess.run([*run, os.urandom(32).hex()], capture_output=True, env=env, timeout=60)
    assert seen.stdout.strip() == b"0", seen.stderr
    assert fresh.stdout.strip() == b"1", fresh.stderr
    store.close()


def test_redis_that_cannot_be_reached_refuses_zero_rtt_and_counts_it() -> None:
    pytest.importorskip("redis", reason="the redis package is in the test extras")
    store = RedisReplayGuard.from_url(f"redis://127.0.0.1:{_free_port()}/0", timeout=0.2)
    now = time.time()
    assert not store.first_use(b"ticket", now + 60, now)
    assert store.errors == 1
    store.close()


def test_replay_store_must_be_one() -> None:
    with pytest.raises(TypeError, match="first_use"):
        configs(server={"replay_store": object()})
    with pytest.raises(TypeError, match="set"):
        RedisReplayGuard(object())
    assert configs()[1].replay_guard is PROCESS_REPLAY_GUARD


# -- a replayed 0-RTT flight, to another server instance -------------------------------------


def _early_data_delivered(cfg: ServerConfig, flight: list[bytes], pools: Any) -> bool:
    """Replays `flight` to a fresh server connection built from `cfg`; early data taken?"""
    target = Connection(cfg, pools=pools, peer_address=CLIENT_ADDR, wall_clock=wall_clock)
    for data in flight:
        target.receive_datagram(data, CLIENT_ADDR, 1.0)
    delivered = False
    while (ev := target.next_event()) is not None:
        delivered |= isinstance(ev, DataReceived)
    replays = target.stats["early_data_replays"]
    target.close()
    for lease, _ in target.datagrams_to_send(1.0):
        lease.release()
    assert delivered != bool(replays)
    return delivered


@pytest.mark.parametrize(
    ("kind", "replayed"),
    [
        ("redis", False),
        ("shared-memory-file", False),
        ("process", True),  # each instance its own in-process guard: the hazard itself
    ],
)
def test_zero_rtt_replayed_to_another_server_instance(
    kind: str, replayed: bool, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue("redis_url") if kind == "redis" else None
    made = _stores(tmp_path, url)[kind]

    def make_store() -> ReplayStore:
        store = made()
        request.addfinalizer(lambda: _close(store))
        return store

    # Two server instances (processes, machines) sharing the ticket secret, each with its
    # own handle on the store.
    cfgs = configs(
        server={"max_early_data": 4096, "ticket_secret": SECRET, "replay_store": make_store()}
    )
    _, other = configs(
        server={"max_early_data": 4096, "ticket_secret": SECRET, "replay_store": make_store()}
    )
    session = first_session(cfgs)
    pair = make_pair(1, cfgs=(dataclasses.replace(cfgs[0], session=session), cfgs[1]))
    pair.client.connect(SERVER_ADDR, 0.0)
    pair.client.send_early_data(b"open the valve")
    flight = []
    for lease, _ in pair.client.datagrams_to_send(0.0):
        flight.append(lease.tobytes())
        lease.release()
    for data in flight:
        pair.net.inject(CLIENT_ADDR, SERVER_ADDR, data)
    assert pair.net.run(pair.completed)
    pair.drain()
    early = [e.data for e in pair.server_events if isinstance(e, DataReceived) and e.early]
    assert early == [b"open the valve"]
    assert _early_data_delivered(other, flight, pair.pools) is replayed
    pair.close()


# -- the command line ------------------------------------------------------------------------


def _server_config_from(*argv: str) -> ServerConfig:
    from dtls13.cli import _Log, build_parser, server_config

    args = build_parser().parse_args(["server", "--port", "0", "-q", *argv])
    config, _ = server_config(args, _Log(args))
    return config


def test_workers_share_one_replay_table_made_before_they_fork() -> None:
    config = _server_config_from("--workers", "2", "--max-early-data", "1024")
    assert isinstance(config.replay_guard, SharedMemoryReplayGuard)
    assert config.max_early_data == 1024
    assert _server_config_from().replay_guard is PROCESS_REPLAY_GUARD


def test_replay_store_option_points_the_server_at_redis(
    redis_url: str, request: pytest.FixtureRequest
) -> None:
    config = _server_config_from("--replay-store", redis_url, "--max-early-data", "1")
    assert isinstance(config.replay_guard, RedisReplayGuard)
    request.addfinalizer(config.replay_guard.close)
    now = time.time()
    assert config.replay_guard.first_use(b"cli ticket", now + 5, now)
    assert not config.replay_guard.first_use(b"cli ticket", now + 5, now)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--replay-store", "http://example.org"], "redis://"),
        (["--max-early-data", "-1"], "outside 0..4294967295"),
    ],
)
def test_bad_replay_options_give_one_line(args: list[str], fragment: str) -> None:
    from tests.support.cli_helpers import run_cli

    result = run_cli("server", "--port", "0", *args)
    assert result.returncode == 2
    assert fragment in result.stderr.decode()
