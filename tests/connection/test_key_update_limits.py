"""Key updates have limits (RFC 9147 §4.2.1, §8) and leave no state behind per epoch."""

from __future__ import annotations

import gc
import tracemalloc

import pytest

from dtls13 import connection_flights, connection_handshake
from dtls13.alerts import AlertDescription, LocalProtocolError
from dtls13.connection import Connection
from tests.support.dtls_pair import Pair, make_pair

SMALL_LIMIT = 8  # stands for 2^16-1: the rules are the same, the loops much shorter


def _established() -> Pair:
    pair = make_pair(server={"session_tickets": 0})
    assert pair.handshake()
    pair.net.run(lambda: False, max_time=pair.net.now + 5)  # the final ACK settles
    return pair


def _update(pair: Pair, conn: Connection, *, request_peer: bool = False) -> None:
    """One KeyUpdate of `conn`, run until it is ACKed and the new write keys are in use."""
    epoch = conn._records.write_epoch
    conn.key_update(request_peer=request_peer)
    assert pair.net.run(lambda: conn._records.write_epoch > epoch, max_time=pair.net.now + 30)
    pair.drain()
    pair.client_events.clear()
    pair.server_events.clear()


def test_key_updates_leave_no_state_per_epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each side keeps one write epoch and at most four read epochs however many updates
    were made: kept, every update pinned its keys for the connection's life."""
    # The process-wide table of shared idle reassembly states (bounded) takes no new entries
    # while measuring: what is measured is the connection's own state.
    monkeypatch.setattr(connection_handshake, "_IDLE_REASSEMBLY_KEPT", 0)
    pair = _established()
    for i in range(40):
        _update(pair, pair.client if i % 2 else pair.server, request_peer=i % 3 == 0)
    for conn in (pair.client, pair.server):
        assert len(conn._records.write_epochs()) == 1
        assert conn._records.write_epoch > 3
        assert len([e for e in conn._records.read_epochs() if e]) <= 4  # two epoch bits
    tracemalloc.start()
    try:
        for _ in range(20):
            _update(pair, pair.client)
        # A full collection empties CPython's free lists too (a freed tuple kept there
        # still counts as allocated): what is compared is what the connection keeps.
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(200):
            _update(pair, pair.client)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 200 * 32, f"{grown / 200:.0f} bytes kept per key update"
    assert pair.exchange(b"still", b"working")
    pair.close()
    assert pair.pools.in_use == 0


def test_a_peer_key_update_past_the_epoch_limit_is_unexpected_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(connection_flights, "MAX_EPOCH", SMALL_LIMIT)
    pair = _established()
    while pair.client._records.write_epoch < SMALL_LIMIT:
        _update(pair, pair.client)
    assert pair.server._records.read_epochs()[-1] == SMALL_LIMIT  # the limit itself is fine
    # A peer that does not stop (our own client refuses: see below).
    monkeypatch.setattr(connection_flights, "MAX_EPOCH", SMALL_LIMIT + 1)
    pair.client.key_update(request_peer=False)
    monkeypatch.setattr(connection_flights, "MAX_EPOCH", SMALL_LIMIT)
    pair.net.run(lambda: pair.terminated("server") is not None, max_time=pair.net.now + 30)
    ended = pair.terminated("server")
    assert ended is not None and not ended.by_peer
    assert ended.alert is AlertDescription.unexpected_message
    assert "too many key updates" in ended.reason
    assert pair.server.statistics().key_updates_received == SMALL_LIMIT - 3
    pair.close()


def test_our_key_update_at_the_epoch_limit_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(connection_flights, "MAX_EPOCH", SMALL_LIMIT)
    pair = _established()
    while pair.client._records.write_epoch < SMALL_LIMIT:
        _update(pair, pair.client)
    with pytest.raises(LocalProtocolError, match="too many key updates"):
        pair.client.key_update()
    assert pair.exchange(b"the connection", b"goes on")
    pair.close()


def test_an_update_request_at_our_epoch_limit_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    """RFC 9147 §8: a sender that would pass its limit "MUST NOT send its own KeyUpdate ...
    and SHOULD instead ignore the "update_requested" flag"."""
    monkeypatch.setattr(connection_flights, "MAX_EPOCH", SMALL_LIMIT)
    pair = _established()
    while pair.server._records.write_epoch < SMALL_LIMIT:
        _update(pair, pair.server)
    sent = pair.server.statistics().key_updates_sent
    _update(pair, pair.client, request_peer=True)
    pair.net.run(lambda: False, max_time=pair.net.now + 5)
    assert pair.server.statistics().key_updates_received == 1
    assert pair.server.statistics().key_updates_sent == sent
    assert pair.server._records.write_epoch == SMALL_LIMIT
    assert pair.terminated("server") is None and pair.terminated("client") is None
    assert pair.exchange(b"still", b"working")
    pair.close()


def test_our_key_update_without_a_message_number_left_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """message_seq is 16 bits and never reset in DTLS 1.3 (RFC 9147 §5.2)."""
    pair = _established()
    # The next number is the last one (2^16-1, made small): one more message fits.
    monkeypatch.setattr(connection_flights, "MAX_MESSAGE_SEQ", pair.client._send_seq)
    _update(pair, pair.client)
    with pytest.raises(LocalProtocolError, match="message_seq"):
        pair.client.key_update()
    assert pair.exchange(b"the connection", b"goes on")
    pair.close()
