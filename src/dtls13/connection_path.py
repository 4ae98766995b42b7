"""The peer's address with connection IDs: a new one is used only once shown to reach
the peer (RFC 9146 §6, RFC 9147 §11).

RFC 9147 §11: "DTLS implementations MUST NOT update the address they send to in response
to packets from a different address unless they first perform some reachability test".
The test here needs nothing of the peer beyond DTLS 1.3: a record that authenticates from
a new address and is the newest seen starts a check of that address; the connection's
unacknowledged flight, or a KeyUpdate made for the purpose (which the peer must ACK,
§8), goes there in records of its own, and an ACK naming one of those records shows that
the peer reads at that address. The new address gets at most three times the bytes that
came from it (as §5.1 bounds an unproven address); the probe's other copies and our ACKs
go to the old address. Application data sent while the probe awaits its ACK waits for the
check's end and then goes to the address it settled on, as RFC 9853 §5 (the Return
Routability Check) has it. A newer record from the old address (the peer's ACK of such a
copy, say) ends the check there. RFC 9853's own messages (path_challenge, negotiated by
an extension) are not implemented.

Methods of `Connection` (connection.py binds them; it holds the state they use).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ._fast import Lease, MemoryBudgetExceeded
from .handshake.constants import KeyUpdateRequest
from .handshake.flights import Flight
from .record import RecordNumber

if TYPE_CHECKING:
    from .connection import Address, Connection

AMPLIFICATION = 3  # bytes sent to an address under check, per byte received from it
# KeyUpdates one check may make to elicit an ACK there (each newer record from the new
# address asks again while nothing is unacknowledged). Each spends one of the 2^16 epochs
# (MAX_EPOCH); a new one waits for the last one's ACK, so an attacker racing copies from
# ever new addresses spends at most one a round trip.
PROBE_KEY_UPDATES = 3
MAX_HELD = 32  # application datagrams held during a check; later ones go to the old address
MIN_PROBE = 32  # bytes: less is no room for a record with a handshake fragment


@dataclass(slots=True)
class PathCheck:
    """An address the peer's newest record came from, not yet shown to reach the peer."""

    addr: Address
    received: int = 0  # bytes from `addr` since the check began
    sent: int = 0  # bytes we sent there
    records: set[RecordNumber] = field(default_factory=set)  # our records sent there
    key_updates: int = 0  # KeyUpdates made to probe it
    # RFC 9853 §5.5's timer T (the connection's initial retransmission timeout after the
    # first probe; None: no probe yet): application data is held until then at most. The
    # check itself goes on: a later ACK of a probe proves the address all the same.
    hold_until: float | None = None
    probe_due: bool = True  # a probe goes once the datagram being read is counted
    held: list[Lease] = field(default_factory=list)  # application datagrams sent meanwhile


def follow(self: Connection, newest: tuple[int, int], addr: Address) -> None:
    """`newest` (epoch, sequence number) authenticated from `addr`: if it is the newest
    record seen, check a new address, or end the check of another."""
    if newest <= self._newest_protected:
        return
    self._newest_protected = newest
    check = self._path_check
    if addr == self.peer_address:
        if check is not None:
            # The peer still sends from its address: whoever sent from the other did not
            # speak for it (a copy raced ahead of the original), or it moved back.
            end_check(self, moved=False)
        return
    if not (self.cid_negotiated and self._hs.connected):
        return
    if check is None or check.addr != addr:
        if check is not None:
            end_check(self, moved=False)
        self._path_check = PathCheck(addr)
        self.count("path_checks_started")
    elif self._flight is None or self._flight.acknowledged:
        check.probe_due = True  # no probe under way: another (after_input)


def probe(self: Connection, check: PathCheck) -> None:
    """Send `check.addr` something the peer must ACK: the unacknowledged flight, else a
    KeyUpdate (which emit_datagrams copies there)."""
    flight = self._flight
    if flight is not None and not flight.acknowledged:
        send_copies(self, flight)
        return
    if (
        check.key_updates >= PROBE_KEY_UPDATES
        or self._key_update_pending
        or self._key_update_deferred is not None
        or self._key_update_refusal() is not None
    ):
        return
    check.key_updates += 1
    self._send_key_update(KeyUpdateRequest.update_not_requested)


def send_copies(self: Connection, flight: Flight) -> None:
    """The start of the flight's unacknowledged fragments again, in a datagram of its own
    that fits the check's limit, to the address under check (the normal copies went to
    the peer's address). An ACK of any of it will do."""
    check = self._path_check
    if check is None or flight.acknowledged:
        return
    room = min(self.flight_mtu, AMPLIFICATION * check.received - check.sent)
    if room < MIN_PROBE:
        return  # (nothing counted from there yet: after_input sends the probe)
    first = flight.records_sent
    try:
        with self._records.datagram_writer(room) as w:
            flight.emit(w, self._max_payload())
            datagrams = w.finish()
    except MemoryBudgetExceeded:
        self.count("flight_datagrams_unsent")
        return
    except ValueError:  # no room for a fragment within the limit: no probe now
        return
    for d in datagrams[1:]:
        d.release()
    del datagrams[1:]
    check.records.update(flight.record_numbers(first))
    if check.hold_until is None:
        check.hold_until = self._now + self._retransmit_initial
    outbox = self._outbox
    if isinstance(outbox, tuple):
        outbox = self._outbox = []
    addr = check.addr
    outbox.extend((d, addr) for d in datagrams)


def after_input(self: Connection, addr: Address, size: int) -> None:
    """A datagram of `size` bytes from `addr` was read: more may go there while it is
    under check, and a probe due goes now."""
    check = self._path_check
    if check is None:
        return
    if addr == check.addr:
        check.received += size
    if check.probe_due and not self._hs.closed:
        check.probe_due = False
        self._guard(self._now, lambda: probe(self, check))


def within_check_limit(
    self: Connection, check: PathCheck, out: list[tuple[Lease, Address]]
) -> list[tuple[Lease, Address]]:
    """What goes to the address under check, within AMPLIFICATION x what came from it;
    the rest of `out` as it is."""
    kept: list[tuple[Lease, Address]] = []
    for lease, addr in out:
        if addr == check.addr:
            size = len(lease)
            if check.sent + size > AMPLIFICATION * check.received:
                lease.release()
                self.count("amplification_limited")
                continue
            check.sent += size
        kept.append((lease, addr))
    return kept


def on_ack_numbers(self: Connection, numbers: list[RecordNumber]) -> None:
    """An authenticated ACK: if it names a record sent only to the address under check,
    the peer reads there, and what we send goes there from now on."""
    check = self._path_check
    if check is not None and not check.records.isdisjoint(numbers):
        end_check(self, moved=True)


def hold(self: Connection, datagram: Lease) -> bool:
    """Keep an application datagram until the check ends or its timer expires; False: it
    goes now (no probe awaiting its ACK, the timer expired, or MAX_HELD held already)."""
    check = self._path_check
    if (
        check is None
        or check.hold_until is None
        or self._now >= check.hold_until
        or len(check.held) >= MAX_HELD
    ):
        return False
    check.held.append(datagram)
    return True


def release_held(self: Connection, check: PathCheck) -> None:
    """What `check` held goes to the peer's address now: the check ended, or its timer
    expired without an ACK from the new address (RFC 9853 §5.1: the address stays)."""
    if check.held:
        outbox = self._outbox
        if isinstance(outbox, tuple):
            outbox = self._outbox = []
        addr = self.peer_address
        outbox.extend((d, addr) for d in check.held)
        check.held = []


def end_check(self: Connection, *, moved: bool) -> None:
    """The check is over: the peer reads at its new address (`moved`), or it is still at
    the old one. What was held goes to that address."""
    check = self._path_check
    assert check is not None
    del self._path_check  # the class default (None) again
    if moved:
        self.peer_address = check.addr
        self.stats["address_changes"] += 1
    else:
        self.count("path_checks_abandoned")
        if self._outbox:
            # Probes queued there before the check ended keep to its limit.
            self._outbox = within_check_limit(self, check, list(self._outbox))
    release_held(self, check)


def drop_check(self: Connection) -> None:
    """The connection ended: what a check held is not sent."""
    check = self._path_check
    if check is not None:
        del self._path_check
        for lease in check.held:
            lease.release()
