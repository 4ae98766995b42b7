"""A KeyUpdate asked for while the client's final flight (its Finished) is unacknowledged
waits for that ACK and then goes as a flight of its own (RFC 9147 §5.8: one flight at a
time, as BoringSSL does). Joining the Finished flight re-sent the epoch-2 Finished at once,
after the handshake, next to an epoch-3 KeyUpdate; BoringSSL's runner took the stale epoch
for an error."""

from __future__ import annotations

from typing import Any

import pytest

from dtls13.handshake.constants import HandshakeType
from dtls13.handshake.state import ClientState
from tests.support.dtls_pair import SERVER_ADDR, Pair, make_pair


def _client_done_server_ack_lost() -> tuple[Pair, dict[str, bool]]:
    """Both sides connected; the server's ACK of the client's Finished is lost until the
    returned switch is turned off."""
    pair = make_pair()
    block = {"on": True}

    def tamper(src: Any, dst: Any, data: bytes) -> bytes | None:
        if (
            src == SERVER_ADDR
            and block["on"]
            and pair.server.handshake_complete
            and data[0] & 0xE0 == 0x20
        ):
            return None  # protected records after its handshake: the ACK, the ticket
        return data

    pair.net.tamper = tamper
    pair.client.connect(SERVER_ADDR, 0.0)
    assert pair.net.run(pair.completed)
    assert pair.client.state is ClientState.CONNECTED
    assert pair.client._flight is not None and not pair.client._flight.acknowledged
    return pair, block


def test_key_update_waits_for_the_finished_ack_and_does_not_resend_the_finished() -> None:
    pair, block = _client_done_server_ack_lost()
    client = pair.client
    client.key_update(request_peer=False)
    out = []
    for lease, _ in client.datagrams_to_send(pair.net.now):
        out.append(bytes(lease))
        lease.release()
    assert out == []  # neither a KeyUpdate nor, at once, the Finished again
    assert client.stats["key_updates_sent"] == 0
    flight = client._flight
    assert flight is not None
    assert [m.msg_type for m in flight.messages][-1] == HandshakeType.finished
    block["on"] = False
    # The Finished's retransmission gets the ACK; then the KeyUpdate goes, alone.
    assert pair.net.run(lambda: client._records.write_epoch == 4, max_time=pair.net.now + 30)
    assert client.stats["key_updates_sent"] == 1
    assert pair.exchange(b"after", b"key update")
    pair.close()
    assert pair.pools.in_use == 0


def test_a_second_key_update_request_while_one_waits_is_merged() -> None:
    pair, block = _client_done_server_ack_lost()
    client = pair.client
    client.key_update(request_peer=False)
    client.key_update(request_peer=True)  # coalesced with the one waiting
    block["on"] = False
    assert pair.net.run(lambda: client._records.write_epoch == 4, max_time=pair.net.now + 30)
    pair.net.run(lambda: False, max_time=pair.net.now + 5)
    assert client.stats["key_updates_sent"] == 1
    assert pair.server.stats["key_updates_sent"] == 0  # update_not_requested, the first
    pair.close()
    assert pair.pools.in_use == 0


def test_a_waiting_key_update_joins_the_flight_once_its_retransmission_is_given_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("dtls13.connection_timers.MAX_UNACKED_RETRANSMISSIONS", 1)
    pair, block = _client_done_server_ack_lost()
    client = pair.client
    client.key_update(request_peer=False)
    assert client.stats["key_updates_sent"] == 0
    # The Finished is retransmitted once, then given up: the KeyUpdate joins its flight.
    assert pair.net.run(lambda: client.stats["key_updates_sent"] == 1, max_time=pair.net.now + 30)
    flight = client._flight
    assert flight is not None
    types = [m.msg_type for m in flight.messages]
    assert types[-2:] == [HandshakeType.finished, HandshakeType.key_update]
    block["on"] = False
    assert pair.net.run(lambda: client._records.write_epoch == 4, max_time=pair.net.now + 200)
    assert pair.exchange(b"after", b"key update")
    pair.close()
    assert pair.pools.in_use == 0
