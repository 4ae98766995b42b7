"""An ended connection is freed by reference counting alone.

A server makes and drops a connection per handshake; one kept alive by a reference cycle
holds its objects (the handshake's state, the record layer, the pools' owner) until the
cycle collector runs, and costs that collector a traversal of each. These tests run with
the collector off and check that the connections are gone as soon as nothing refers to
them, however they ended.
"""

from __future__ import annotations

import dataclasses
import gc
import weakref
from collections.abc import Callable, Iterator

import pytest

from dtls13.connection import Connection
from dtls13.memory import PoolSet
from tests.support.dtls_pair import SERVER_ADDR, Pair, configs, first_session, make_pair
from tests.support.netsim import Impairments


@pytest.fixture
def no_cycle_collector() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _closed_after_data(pair: Pair) -> None:
    assert pair.handshake()
    assert pair.exchange(b"ping", b"pong")
    pair.close()


def _closed_after_key_updates(pair: Pair) -> None:
    assert pair.handshake()
    pair.client.key_update()
    assert pair.exchange(b"ping", b"pong")
    pair.server.key_update()
    assert pair.exchange(b"ping 2", b"pong 2")
    pair.close()


def _abandoned_before_an_answer(pair: Pair) -> None:
    pair.client.connect(("192.0.2.9", 4433), pair.net.now)  # not the simulated server
    pair.net.run(lambda: False, max_time=pair.net.now + 2)
    pair.client.abandon()
    pair.server.abandon()


def _handshake_failed(pair: Pair) -> None:
    pair.handshake(max_time=5)
    assert pair.client.closed and pair.server.closed


def _peer_vanished(pair: Pair) -> None:
    assert pair.handshake()
    pair.net.imp.loss = 1.0
    pair.client.send(b"into the void")
    pair.server.close()
    pair.net.run(lambda: pair.client.closed, max_time=pair.net.now + 600)
    pair.client.abandon()


_NO_COMMON_ALPN = ({"alpn_protocols": ["a"]}, {"alpn_protocols": ["b"]})
ENDINGS: dict[str, tuple[Callable[[Pair], None], tuple[dict[str, object], dict[str, object]]]] = {
    "close_notify after data": (_closed_after_data, ({}, {})),
    "connection IDs and KeyUpdates": (
        _closed_after_key_updates,
        ({"connection_id": 8}, {"connection_id": 5}),
    ),
    "abandoned before an answer": (_abandoned_before_an_answer, ({}, {})),
    "a handshake failure alert": (_handshake_failed, _NO_COMMON_ALPN),
    "the peer vanished": (_peer_vanished, ({}, {})),
}


@pytest.mark.parametrize("ending", list(ENDINGS))
def test_an_ended_connection_needs_no_cycle_collector(
    ending: str, no_cycle_collector: None
) -> None:
    end, (client, server) = ENDINGS[ending]
    pair = make_pair(0, Impairments(), client=client, server=server)
    end(pair)
    client_ref, server_ref, pools = _ended(pair)
    del pair
    assert client_ref() is None, "the client connection is still referenced"
    assert server_ref() is None, "the server connection is still referenced"
    assert pools.in_use == 0


def test_a_resumed_session_with_early_data_needs_no_cycle_collector(
    no_cycle_collector: None,
) -> None:
    client, server = configs(server={"max_early_data": 1000})
    resuming = dataclasses.replace(client, session=first_session((client, server)))
    pair = make_pair(1, cfgs=(resuming, server))
    pair.client.connect(SERVER_ADDR, pair.net.now)
    pair.client.send_early_data(b"early")
    assert pair.net.run(pair.completed)
    assert pair.received("server") == [b"early"]
    assert pair.exchange(b"ping", b"pong")
    pair.close()
    client_ref, server_ref, pools = _ended(pair)
    del pair
    assert client_ref() is None and server_ref() is None
    assert pools.in_use == 0


def _ended(pair: Pair) -> tuple[weakref.ref[Connection], weakref.ref[Connection], PoolSet]:
    """Weak references to both ended connections and their pools, what they had left to
    send released."""
    assert pair.client.closed and pair.server.closed
    for lease, _ in [*pair.client.datagrams_to_send(1e9), *pair.server.datagrams_to_send(1e9)]:
        lease.release()
    return weakref.ref(pair.client), weakref.ref(pair.server), pair.pools
