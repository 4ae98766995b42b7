"""Outgoing handshake flights: fragmentation into records, ACK tracking, retransmission.

RFC 9147 §5.5 (fragments never overlap within one transmission and bytes never change),
§5.8 (flights and the retransmission timer) and §7.2 (an ACKed fragment is not sent again).
Message bodies are held in pooled leases until the flight is acknowledged or replaced.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from .._fast import Lease, Owner
from .._fast import handshake_fragment as handshake_fragment  # header + bytes, RFC 9147 §5.2
from ..memory import PoolSet
from ..record import RecordNumber

HANDSHAKE_HEADER = 12
# Below this many bytes of room a fragment is not worth a record: start a new datagram.
MIN_FRAGMENT = 16
CONTENT_HANDSHAKE = 22


class RecordWriter(Protocol):
    """The part of the record layer's datagram writer a flight needs."""

    def space(self, epoch: int, *, last: bool = False) -> int: ...
    def add(
        self, epoch: int, content_type: int, payload: Any, *, last: bool = False
    ) -> RecordNumber | None: ...
    def new_datagram(self) -> None: ...


@dataclass
class OutgoingMessage:
    """One handshake message of a flight, its body in a pooled lease."""

    epoch: int
    msg_type: int
    message_seq: int
    body: Lease
    acked: list[tuple[int, int]] = field(default_factory=list)  # merged [start, end)

    @property
    def length(self) -> int:
        return len(self.body)

    def unacked(self) -> Iterator[tuple[int, int]]:
        """Byte ranges [start, end) not yet acknowledged (one empty range for empty bodies)."""
        if self.length == 0:
            if not self.acked:
                yield (0, 0)
            return
        pos = 0
        for start, end in self.acked:
            if start > pos:
                yield (pos, start)
            pos = max(pos, end)
        if pos < self.length:
            yield (pos, self.length)

    def ack(self, start: int, end: int) -> None:
        ranges = sorted([*self.acked, (start, end)])
        merged: list[tuple[int, int]] = []
        for s, e in ranges:
            if merged and s <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], e))
            else:
                merged.append((s, e))
        self.acked = merged

    @property
    def complete(self) -> bool:
        return next(self.unacked(), None) is None


class Flight:
    """The messages of one flight and which record carried which fragment."""

    def __init__(self, pools: PoolSet, owner: Owner | None, *, coalesce: bool = True) -> None:
        self._pools = pools
        # False: every message starts a record of its own (tests that stop between them).
        self.coalesce = coalesce
        self._owner = owner
        self.messages: list[OutgoingMessage] = []
        self._records: dict[RecordNumber, list[tuple[int, int, int]]] = {}
        self.transmissions = 0
        self.needs_ack = False  # the flight is only ACKed explicitly (RFC 9147 §7.1)
        # Post-handshake messages that wait for this flight's KeyUpdate to be ACKed.
        self.after_ack: list[object] = []
        self.traced = 0  # messages already given to a message callback (the first ones)

    def add(self, epoch: int, msg_type: int, message_seq: int, body: bytes) -> None:
        """Queue a message; its body is copied once into a pooled lease."""
        lease = self._pools.acquire(len(body), self._owner)
        if body:
            lease.write(0, body)
        self.messages.append(OutgoingMessage(epoch, msg_type, message_seq, lease))

    @property
    def acknowledged(self) -> bool:
        return bool(self.messages) and all(m.complete for m in self.messages)

    def unacked_bytes(self) -> int:
        """Handshake bytes (fragment headers included) a retransmission would send."""
        return sum(
            HANDSHAKE_HEADER + end - start for m in self.messages for start, end in m.unacked()
        )

    def emit(self, writer: RecordWriter, max_payload: int | None = None) -> int:
        """Write every unacknowledged fragment into records; returns records written.

        Fragment boundaries depend only on the room left in each datagram, so the same MTU
        gives the same fragments; after a smaller MTU the pieces are smaller but the bytes
        are the same (RFC 9147 §5.5). `max_payload` caps the payload of protected records
        (the peer's record_size_limit, RFC 8449 §4: unprotected records are not limited).
        """
        if max_payload is not None and max_payload < HANDSHAKE_HEADER + 1:
            raise ValueError("record size limit too small for any handshake fragment")
        self.transmissions += 1
        space = writer.space
        # Consecutive fragments of one epoch share a record while they fit (one AEAD seal
        # for EncryptedExtensions..Finished): `pending` is the record being filled.
        pending: list[bytes] = []
        carried: list[tuple[int, int, int]] = []
        pending_epoch = -1
        pending_size = 0
        written = 0
        for index, msg in enumerate(self.messages):
            epoch = msg.epoch
            length = len(msg.body)
            if pending and epoch != pending_epoch:
                self._flush(writer, pending_epoch, pending, carried)
                written += 1
                pending, carried, pending_size = [], [], 0
            pending_epoch = epoch
            cap = max_payload - HANDSHAKE_HEADER if max_payload is not None and epoch > 0 else None
            for start, end in [(0, length)] if not msg.acked else list(msg.unacked()):
                pos = start
                while True:
                    left = end - pos
                    room = space(epoch) - HANDSHAKE_HEADER - pending_size
                    if cap is not None and cap - pending_size < room:
                        room = cap - pending_size
                    if room < MIN_FRAGMENT and room < left:
                        if pending:
                            self._flush(writer, epoch, pending, carried)
                            written += 1
                            pending, carried, pending_size = [], [], 0
                            continue
                        writer.new_datagram()
                        room = space(epoch) - HANDSHAKE_HEADER
                        if room < 1 and end > pos:
                            raise ValueError("MTU too small for any handshake fragment")
                        if cap is not None and cap < room:
                            room = cap
                    piece = left if left < room else room
                    payload = handshake_fragment(
                        msg.msg_type, length, msg.message_seq, pos, msg.body, pos, pos + piece
                    )
                    pending.append(payload)
                    carried.append((index, pos, pos + piece))
                    pending_size += HANDSHAKE_HEADER + piece  # len(payload)
                    pos += piece
                    if pos >= end:
                        break
            if pending and not self.coalesce:
                self._flush(writer, epoch, pending, carried)
                written += 1
                pending, carried, pending_size = [], [], 0
        if pending:
            self._flush(writer, pending_epoch, pending, carried)
            written += 1
        return written

    def _flush(
        self,
        writer: RecordWriter,
        epoch: int,
        fragments: list[bytes],
        carried: list[tuple[int, int, int]],
    ) -> None:
        """One record of `fragments`; what it carried is remembered for its ACK."""
        payload = fragments[0] if len(fragments) == 1 else b"".join(fragments)
        number = writer.add(epoch, CONTENT_HANDSHAKE, payload)
        if number is None:
            writer.new_datagram()
            number = writer.add(epoch, CONTENT_HANDSHAKE, payload)
            if number is None:
                raise ValueError("MTU too small for any handshake fragment")
        known = self._records.get(number)
        if known is None:
            self._records[number] = carried
        else:
            known += carried

    @property
    def records_sent(self) -> int:
        """How many distinct records carried this flight's fragments so far."""
        return len(self._records)

    def record_numbers(self, first: int = 0) -> list[RecordNumber]:
        """The numbers of those records, in the order sent, from the `first`th on."""
        return list(self._records)[first:]

    def on_ack(self, record_numbers: list[RecordNumber]) -> bool:
        """Mark what the ACKed records carried; True when the whole flight is acknowledged."""
        for number in record_numbers:
            for index, start, end in self._records.get(number, ()):
                msg = self.messages[index]
                if start == end:
                    msg.acked.append((0, 0))
                else:
                    msg.ack(start, end)
        return self.acknowledged

    def carried(self, number: RecordNumber) -> bool:
        """Whether a record of ours with this number belongs to this flight."""
        return number in self._records

    def release(self) -> None:
        """Give every body back to the pools."""
        for msg in self.messages:
            if not msg.body.released:
                msg.body.release()
        self.messages.clear()
        self._records.clear()
