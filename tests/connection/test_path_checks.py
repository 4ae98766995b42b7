"""A peer's new address with connection IDs: probed, and used only once the peer ACKs a
record sent there (RFC 9147 §11; held data as RFC 9853 §5)."""

from __future__ import annotations

from typing import Any

from dtls13.alerts import AlertDescription
from dtls13.connection_path import MAX_HELD
from tests.support.dtls_pair import CLIENT_ADDR, SERVER_ADDR, Pair, make_pair

CIDS = {"connection_id": 8}
HELD = b"held" * 150  # larger than any datagram of the probe's flight
ATTACKERS = [(f"198.51.100.{i}", 6000 + i) for i in range(1, 60)]


def _pair() -> Pair:
    pair = make_pair(client=CIDS, server=CIDS)
    assert pair.handshake()
    assert pair.exchange(b"hello", b"hi")
    return pair


def _race_next_record(pair: Pair, attacker: Any, sent_to: dict[Any, int]) -> list[int]:
    """The client sends a record and a copy of it from `attacker` reaches the server
    first (it starts a check there); returns the sizes of the copies. `sent_to` counts
    the bytes every address is sent from then on."""
    copies: list[int] = []

    def tamper(src: Any, dst: Any, data: bytes) -> bytes | None:
        if not copies and src == CLIENT_ADDR and data[0] & 0xF0 == 0x30:
            copies.append(len(data))
            pair.net.inject(attacker, SERVER_ADDR, data)
        sent_to[dst] = sent_to.get(dst, 0) + len(data)
        return data

    pair.net.tamper = tamper
    pair.client.send(b"raced")
    pair.net.flush()
    pair.net.step()  # the copy arrives first
    assert copies
    return copies


def test_data_sent_during_a_check_goes_to_the_old_address_when_the_peer_acks_from_there() -> None:
    pair = _pair()
    sent_to: dict[Any, int] = {}
    copies = _race_next_record(pair, ATTACKERS[0], sent_to)
    assert pair.server.statistics().path_checks_started == 1
    for i in range(5):
        pair.server.send(b"answer %d" % i)  # held until the check ends
    pair.net.run(lambda: False, max_time=pair.net.now + 3)
    assert pair.received("client") == [b"hi", *(b"answer %d" % i for i in range(5))]
    stats = pair.server.statistics()
    assert stats.path_checks_abandoned == 1 and stats.address_changes == 0
    assert pair.server.peer_address == CLIENT_ADDR
    assert sent_to.get(ATTACKERS[0], 0) <= 3 * sum(copies)
    pair.close()
    assert pair.pools.in_use == 0


def test_a_check_holds_at_most_max_held_datagrams_and_sends_the_rest_at_once() -> None:
    pair = _pair()
    _race_next_record(pair, ATTACKERS[0], {})
    for i in range(MAX_HELD + 3):
        pair.server.send(b"burst %d" % i)
    out = pair.server.datagrams_to_send(pair.net.now)
    data_now = [lease for lease, addr in out if addr == CLIENT_ADDR]
    assert len(data_now) == 3
    for lease, addr in out:
        pair.net.inject(SERVER_ADDR, addr, lease.tobytes())
        lease.release()
    pair.net.run(lambda: False, max_time=pair.net.now + 3)
    assert sorted(pair.received("client")[1:]) == sorted(
        b"burst %d" % i for i in range(MAX_HELD + 3)
    )
    pair.close()
    assert pair.pools.in_use == 0


def test_close_during_a_check_sends_what_it_held_ahead_of_close_notify() -> None:
    pair = _pair()
    _race_next_record(pair, ATTACKERS[0], {})
    pair.server.send(b"last words")
    pair.server.close()
    pair.net.run(lambda: False, max_time=pair.net.now + 2)
    assert pair.received("client")[-1] == b"last words"
    terminated = pair.terminated("client")
    assert terminated is not None and terminated.alert is AlertDescription.close_notify
    pair.close()
    assert pair.pools.in_use == 0


def test_an_abort_during_a_check_releases_what_it_held() -> None:
    pair = _pair()
    _race_next_record(pair, ATTACKERS[0], {})
    pair.server.send(b"never sent")
    pair.server.abandon()
    pair.net.run(lambda: False, max_time=pair.net.now + 2)
    assert b"never sent" not in pair.received("client")
    pair.close()
    assert pair.pools.in_use == 0


def test_copies_raced_from_ever_new_addresses_never_move_the_connection() -> None:
    pair = _pair()
    sent_to: dict[Any, int] = {}
    raced: dict[Any, int] = {}
    for attacker in ATTACKERS[:40]:
        raced[attacker] = sum(_race_next_record(pair, attacker, sent_to))
        pair.net.run(lambda: False, max_time=pair.net.now + 0.1)
    stats = pair.server.statistics()
    assert stats.path_checks_started == 40 and stats.address_changes == 0
    assert pair.server.peer_address == CLIENT_ADDR
    # Each probe KeyUpdate waited for the last one's ACK: the client took every one.
    assert 1 <= stats.key_updates_sent == pair.client.statistics().key_updates_received
    assert all(sent_to.get(a, 0) <= 3 * n for a, n in raced.items())
    pair.net.tamper = None
    assert pair.exchange(b"still", b"here")
    pair.close()
    assert pair.pools.in_use == 0


def test_held_data_waits_at_most_the_timer_and_a_later_ack_still_moves_the_connection() -> None:
    """RFC 9853 §5.1: the probe is lost (neither address answers): what was held goes to
    the old address when the timer expires; the check goes on, and the probe in the
    flight's retransmission, once answered, moves the connection."""
    pair = _pair()
    moved = ("192.0.2.50", 50000)
    lost = True

    def tamper(src: Any, dst: Any, data: bytes) -> bytes | None:
        if src == CLIENT_ADDR:
            pair.net.inject(moved, dst, data)  # the client's NAT rebound
            return None
        if dst == CLIENT_ADDR:
            return None  # the old mapping is gone
        if dst == moved:
            if lost:
                return None
            pair.net.inject(src, CLIENT_ADDR, data)
            return None
        return data

    pair.net.tamper = tamper
    pair.client.send(b"after the rebinding")
    assert pair.net.run(lambda: pair.server.statistics().path_checks_started == 1)
    pair.server.send(HELD)
    start = pair.net.now
    out = pair.server.datagrams_to_send(start)
    assert out == []  # the data is held
    timer = pair.server.get_timer()
    assert timer is not None and timer <= start + pair.server.config.retransmit_initial
    pair.server.handle_timer(timer)
    out = pair.server.datagrams_to_send(timer)
    # At the timer, to the old address (the probe's flight is retransmitted too).
    assert [addr for lease, addr in out if len(lease) > len(HELD)] == [CLIENT_ADDR]
    for lease, _ in out:
        lease.release()
    lost = False
    # The client is still silent; the probe's flight is retransmitted, this time with a
    # copy that arrives, and the client's ACK of it moves the connection.
    assert pair.net.run(lambda: pair.server.peer_address == moved, max_time=pair.net.now + 10)
    pair.server.send(b"now it arrives")
    assert pair.net.run(lambda: b"now it arrives" in pair.received("client"))
    stats = pair.server.statistics()
    assert stats.path_checks_started == 1 and stats.address_changes == 1
    pair.net.tamper = None
    pair.net.endpoints[moved] = pair.client
    pair.close()
    assert pair.pools.in_use == 0
