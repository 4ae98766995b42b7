"""Flights, ACKs and retransmission (RFC 9147 §5.8, §7) and the post-handshake messages a
connection handles itself, sent and received: KeyUpdate (§8, ``key_update()``) and
connection IDs (§9, ``request_connection_ids()``, ``use_spare_connection_id()``).

Methods of `Connection` (connection.py binds them; it holds the state they use).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._fast import Buffer, DecodeError, MemoryBudgetExceeded
from .alerts import (
    DecodeErrorAlert,
    IllegalParameter,
    LocalProtocolError,
    TooManyCidsRequested,
    UnexpectedMessage,
)
from .cid_layout import NoFreeConnectionId
from .events import KeyUpdated
from .handshake import messages as msgs
from .handshake.constants import HandshakeType, KeyUpdateRequest
from .handshake.flights import Flight
from .record import ContentType, DatagramWriter, RecordNumber, pull_ack, push_ack
from .record.message_trace import TracedMessage

if TYPE_CHECKING:
    from .connection import Connection

MAX_CIDS = 4  # CIDs issued per NewConnectionId, and spare peer CIDs kept (RFC 9147 §9)
MAX_LOCAL_CIDS = 8  # CIDs of ours a connection holds in all (DTLS 1.3 cannot retire one)
# Timeouts of one flight after the handshake (the client's final flight, a post-handshake
# message) before we stop retransmitting it: RFC 9147 sets no limit, but a peer that never
# ACKs must not keep an idle connection sending. With the §5.8.2 timers (1 s doubling to
# 60 s) that is about 5 minutes, past the peer's handshake_timeout (120 s by default).
MAX_UNACKED_RETRANSMISSIONS = 10
MAX_REFUSED_CID_REQUESTS = 8  # requests answered with no CIDs before too_many_cids_requested
CID_IMMEDIATE, CID_SPARE = 0, 1  # ConnectionIdUsage
# RFC 9147 §4.2.1: "Implementations MUST NOT allow the epoch to wrap"; §8: a sender MUST NOT
# pass 2^48-1. Each KeyUpdate also takes one of the 2^16 message_seq values, which DTLS 1.3
# never resets (§5.2), so no peer can take an epoch much past 2^16 anyway: both directions
# stop at 2^16-1, as BoringSSL does (a KeyUpdate past it is unexpected_message there).
MAX_EPOCH = 0xFFFF
MAX_MESSAGE_SEQ = 0xFFFF  # the uint16 message_seq of the DTLS handshake header (§5.2)


def key_update(self: Connection, request_peer: bool = True) -> None:
    """Update our sending keys (and ask the peer to update theirs), RFC 9147 §8.

    Raises LocalProtocolError once no update is possible: the write epoch reached
    2^16-1, or every 16-bit handshake message number is used (open a new connection)."""
    self._activity()
    if not self._hs.connected:
        raise LocalProtocolError("key_update() needs an established connection")
    if self._key_update_pending or self._key_update_deferred is not None:
        return
    refusal = self._key_update_refusal()
    if refusal is not None:
        raise LocalProtocolError(f"no key update possible: {refusal}")
    request = (
        KeyUpdateRequest.update_requested if request_peer else KeyUpdateRequest.update_not_requested
    )
    flight = self._flight
    if (
        flight is not None
        and not flight.acknowledged
        and self._retransmit_at is not None
        and any(m.msg_type == HandshakeType.finished for m in flight.messages)
    ):
        # The client's final flight is still unacknowledged: the KeyUpdate goes once it
        # is ACKed, as its own flight (RFC 9147 §5.8: one flight at a time). Joining it
        # re-sent our epoch-2 Finished at once, after the handshake, next to an epoch-3
        # KeyUpdate, and the peer took the stale epoch for an error.
        self._key_update_deferred = request
        return
    self._send_key_update(request)


def send_key_update(self: Connection, request: KeyUpdateRequest) -> None:
    self._key_update_pending = True
    if (
        request == KeyUpdateRequest.update_requested
        and self._ack_key_update
        and self._ack_at is not None
        and self._ack_list
    ):
        # The peer's KeyUpdate is ACKed first: until then it may send no KeyUpdate
        # (RFC 9147 §8), so it would drop our request (wolfSSL does).
        self._send_ack(self._now)
    # A flight still unacknowledged (its retransmission given up) must be delivered:
    # the KeyUpdate joins it. A new flight dropped it, and the peer, missing that
    # message_seq, never processed the KeyUpdate behind it (RFC 9147 §7.1, §8).
    if self._flight is None or self._flight.acknowledged:
        self._start_flight()
    self._add_message(msgs.KeyUpdate(request))
    self._emit_flight(None)
    self.stats["key_updates_sent"] += 1


def key_update_refusal(self: Connection) -> str | None:
    """Why no KeyUpdate of ours can be sent any more (None: one can)."""
    if self._records.write_epoch >= MAX_EPOCH:
        return f"too many key updates: the write epoch reached its limit ({MAX_EPOCH})"
    if self._send_seq > MAX_MESSAGE_SEQ:
        return "message_seq overflow: every 16-bit handshake message number is used"
    return None


def send_post_handshake(self: Connection, msg: Any, now: float) -> None:
    """One post-handshake message; it joins an unacknowledged flight, as KeyUpdate does,
    but never follows a KeyUpdate under the old keys: it waits for that KeyUpdate's ACK."""
    if self._key_update_pending and self._flight is not None:
        # RFC 8446 §5.1: handshake messages MUST NOT span key changes; RFC 9147 §8: the
        # new keys wait for the ACK, and so does whatever comes after the KeyUpdate.
        self._flight.after_ack.append(msg)
        return
    if self._flight is None or self._flight.acknowledged:
        self._start_flight()
    assert self._flight is not None
    self._flight.needs_ack = True
    self._add_message(msg)
    self._emit_flight(now)


def on_request_connection_id(self: Connection, msg: msgs.RequestConnectionId, now: float) -> None:
    # §9: no RequestConnectionId from a peer that sends us empty CIDs.
    if not self.cid_negotiated or not self.local_cids or not self.local_cids[0]:
        raise UnexpectedMessage("RequestConnectionId without a negotiated CID")
    # §9: "An endpoint MAY handle requests which it considers excessive by responding
    # with a NewConnectionId message containing fewer than num_cids CIDs, including no
    # CIDs at all ... MAY handle an excessive number of RequestConnectionId messages by
    # terminating the connection using a too_many_cids_requested alert." Every CID we
    # issue stays valid (and routed) for the connection's life: hold at most
    # MAX_LOCAL_CIDS.
    count = min(msg.num_cids, MAX_CIDS, MAX_LOCAL_CIDS - len(self.local_cids))
    cids: list[bytes] = []
    try:
        while len(cids) < count:
            cids.append(self._new_cid(len(self.local_cids[0])))
    except NoFreeConnectionId:
        pass  # the endpoint's CID space is full: fewer (perhaps none), as §9 allows
    self.local_cids += cids  # issued: routed to us until the connection goes
    if len(cids) < min(msg.num_cids, MAX_CIDS):
        self.count("cid_requests_refused")
        if self.rare_stat("cid_requests_refused") > MAX_REFUSED_CID_REQUESTS:
            raise TooManyCidsRequested("the peer keeps asking for connection IDs")
    self._send_post_handshake(msgs.NewConnectionId(tuple(cids), CID_SPARE), now)


def on_new_connection_id(self: Connection, msg: msgs.NewConnectionId) -> None:
    # §9: no NewConnectionId to a peer that negotiated receiving an empty CID.
    if not self.cid_negotiated or self._records.write_cid is None:
        raise UnexpectedMessage("NewConnectionId without a negotiated CID")
    if msg.usage not in (CID_IMMEDIATE, CID_SPARE) or not all(msg.cids):
        raise IllegalParameter("bad NewConnectionId usage or empty CID")
    if msg.usage == CID_IMMEDIATE and not msg.cids:
        raise IllegalParameter("cid_immediate without a CID")
    self._cid_request_outstanding = False
    cids = list(msg.cids)
    if msg.usage == CID_IMMEDIATE:
        self._records.write_cid = cids.pop(0)
    known = set(self._spare_peer_cids)
    spares = (*self._spare_peer_cids, *(c for c in cids if c not in known))
    self._spare_peer_cids = spares[:MAX_CIDS]  # §9: extra spares MAY be discarded


def request_connection_ids(self: Connection, count: int = 1) -> None:
    """Ask the peer for `count` spare CIDs (RequestConnectionId, RFC 9147 §9)."""
    self._activity()
    if not self._hs.connected or self.peer_cid is None:
        raise LocalProtocolError("no connection IDs negotiated with a non-empty peer CID")
    if self._cid_request_outstanding:
        raise LocalProtocolError("a RequestConnectionId is still unanswered")
    if not 1 <= count <= 255:
        raise ValueError("count must be between 1 and 255")
    self._cid_request_outstanding = True
    self._send_post_handshake(msgs.RequestConnectionId(count), self._now)


def use_spare_connection_id(self: Connection) -> bool:
    """Put the next spare CID from the peer on our records (e.g. on a new path)."""
    if not self._spare_peer_cids:
        return False
    self._records.write_cid, *rest = self._spare_peer_cids
    self._spare_peer_cids = tuple(rest)
    return True


def new_cid(self: Connection, length: int) -> bytes:
    if self._cid_issuer is not None:
        return self._cid_issuer(self, length)
    return self.config.random_bytes(length)


def use_cids(self: Connection, peer_cid: bytes) -> None:
    """connection_id negotiated (RFC 9146 §3): from the encrypted epochs on, records
    carry the peer's CID to it and ours to us (RFC 9147 §9.1)."""
    self.cid_negotiated = True
    self._records.write_cid = peer_cid or None
    self._records.read_cid_length = len(self.local_cids[0]) if self.local_cids else 0
    self._records.tentative_cid_length = 0


def start_flight(self: Connection, *, handshake: bool = False) -> None:
    """Begin a new flight; the previous one is implicitly acknowledged."""
    if self._flight is not None:
        self._flight.release()
    self._flight = Flight(self.pools, self.owner, coalesce=self.coalesce_handshake_records)
    self._timeouts = 0
    if handshake:
        # This flight answers the peer's, which it acknowledges implicitly: no ACK
        # for that flight, so none still pending from its first fragments (§7.1).
        self._ack_list = ()
        self._ack_at = None


def add_message(self: Connection, msg: Any, epoch: int | None = None) -> bytes:
    """A message outside the handshake transcript (post-handshake) joins the flight."""
    msg_type, body = msgs.push_message(msg)
    return self._add_encoded(msg_type, body, epoch)


def add_encoded(self: Connection, msg_type: int, body: bytes, epoch: int | None) -> bytes:
    """Add to the flight; epoch None: the current write epoch."""
    if epoch is None:
        epoch = self._records.write_epoch
    assert self._flight is not None
    self._flight.add(epoch, msg_type, self._send_seq, body)
    self._send_seq += 1
    return body


def trace_sent(self: Connection, flight: Flight) -> None:
    """Give the message callback the flight's messages sent for the first time (in the
    order they went, after what went ahead of them in the datagram, e.g. an ACK)."""
    callback = self.config.message_callback
    if callback is not None and flight.traced < len(flight.messages):
        for m in flight.messages[flight.traced :]:
            callback(TracedMessage(True, ContentType.handshake, m.msg_type, m.body.tobytes()))
        flight.traced = len(flight.messages)


def emit_flight(
    self: Connection,
    now: float | None,
    *,
    with_ack: bool = False,
    writer: DatagramWriter | None = None,
) -> None:
    """Send the current flight's unacknowledged fragments and arm the timer; into
    `writer`'s datagrams (after what it holds) when given."""
    flight = self._flight
    if flight is None:
        return
    if writer is not None:
        flight.emit(writer, self._max_payload())
        trace_sent(self, flight)
    else:
        emit_datagrams(self, flight)
    self._retransmit_at = (self._now if now is None else now) + self._rto


def emit_datagrams(self: Connection, flight: Flight) -> None:
    """The flight's unacknowledged fragments in datagrams of their own. No memory for
    them is a lost datagram: counted, and the retransmission timer sends them again (the
    flight itself is stored, so nothing is lost for good)."""
    try:
        with self._records.datagram_writer(self.flight_mtu) as w:
            flight.emit(w, self._max_payload())
            self._queue(w.finish())
    except MemoryBudgetExceeded:
        self.count("flight_datagrams_unsent")
        return
    trace_sent(self, flight)
    if self._path_check is not None:
        self._send_path_copies(flight)


def retransmit(self: Connection, now: float) -> None:
    flight = self._flight
    if flight is None or flight.acknowledged:
        self._retransmit_at = None
        return
    self.stats["retransmissions"] += 1
    self._retransmitted_this_input = True
    self._retransmitted_at = now
    emit_datagrams(self, flight)
    self._retransmit_at = now + self._rto


def ack_numbers(self: Connection) -> list[RecordNumber]:
    """The records the next ACK lists, oldest first."""
    return sorted(set(self._ack_list), key=lambda n: (n.epoch, n.sequence_number))


def send_ack(self: Connection, now: float) -> None:
    self._ack_at = None
    self._ack_key_update = False
    numbers = ack_numbers(self)
    # Once connected the list is not emptied: each ACK repeats the newest records received
    # (MAX_ACK_RECORDS of them, as BoringSSL does), so one lost ACK costs the peer no
    # retransmission when a later one arrives. RFC 9147 §7.1: implementations SHOULD ACK as
    # many received records as fit, favouring those not yet acknowledged; §7.2: a record
    # is acknowledged if it appears in any ACK.
    self._send_ack_for(numbers)


def send_ack_for(
    self: Connection, numbers: list[RecordNumber], writer: DatagramWriter | None = None
) -> bool:
    """An ACK record of `numbers`, in a datagram of its own or first in `writer`'s; False
    if it could not be sent.

    Best effort in a datagram of its own: ACKs are advisory (RFC 9147 §7), so with no
    memory left for one (output piling up uncollected) it is counted, not raised."""
    limit = self._max_payload()
    if limit is not None and self._records.write_epoch > 0 and 2 + 16 * len(numbers) > limit:
        # The newest fit the peer's record_size_limit; ACKs are advisory (RFC 9147 §7).
        numbers = numbers[len(numbers) - max(0, (limit - 2) // 16) :]
    epoch = self._records.write_epoch
    if writer is not None:
        # ...and what is left of the writer's datagram: the newest again.
        fit = (writer.space(epoch) - 2) // 16
        if fit < 0 or (fit == 0 and numbers):
            return False
        numbers = numbers[max(0, len(numbers) - fit) :]
    elif len(numbers) > 1:
        # ...and a datagram of the MTU (a 32-record ACK is 514 bytes): the newest again.
        pad = self.config.record_padding
        room = self.mtu - self._records.record_overhead(epoch) - (pad - 1 if pad > 1 else 0)
        fit = max(1, (room - 2) // 16)
        numbers = numbers[max(0, len(numbers) - fit) :]
    buf = Buffer(capacity=2 + 16 * len(numbers))
    push_ack(buf, numbers)
    if writer is not None:
        writer.add(epoch, ContentType.ack, buf.data)
    else:
        try:
            with self._records.datagram_writer(self.mtu) as w:
                w.add(epoch, ContentType.ack, buf.data)
                self._queue(w.finish())
        except MemoryBudgetExceeded:
            self.count("acks_unsent")
            return False
    if self.config.message_callback is not None:
        self.config.message_callback(TracedMessage(True, ContentType.ack, None, bytes(buf.data)))
    self.stats["acks_sent"] += 1
    return True


def handle_ack(self: Connection, record: Any, now: float) -> None:
    if record.epoch == 0:
        # Anyone may forge a plaintext ACK, and acting on one could stop our hellos'
        # retransmission for good. None is needed: a hello flight is acknowledged by
        # the peer's next flight (RFC 9147 §7.1), and our own epoch-0 ACKs only spare
        # the peer resending fragments we already have.
        self.stats["dropped_malformed_plaintext"] += 1
        return
    try:
        buf = Buffer(record.payload)
        numbers = pull_ack(buf)
        buf.close()
    except DecodeError:
        raise DecodeErrorAlert("malformed ACK") from None
    self.stats["acks_received"] += 1
    if self.config.message_callback is not None:
        data = bytes(record.payload)
        self.config.message_callback(TracedMessage(False, ContentType.ack, None, data))
    if self._path_check is not None:
        self._on_ack_numbers(numbers)
    flight = self._flight
    if flight is None:
        return
    if record.epoch < 3:
        # RFC 9147 §7: "During the handshake, ACK records MUST be sent with an epoch which
        # is equal to or higher than the record which is being acknowledged." (Later the
        # two sides' epochs move apart with KeyUpdate, so the rule stops there.)
        numbers = [n for n in numbers if n.epoch <= record.epoch]
    if flight.on_ack(numbers):
        self._retransmit_at = None
        if self._path_check is not None:
            # Acknowledged through the copies sent to the peer's address alone: it reads
            # there, and no probe of the new address awaits an answer any more.
            self._end_path_check(moved=False)
        self._on_flight_acknowledged(now)
    elif any(flight.carried(n) for n in numbers) and not self._retransmitted_this_input:
        # RFC 9147 §7.2: a partial ACK: send what is missing at once.
        self._retransmit(now)


def forget_flight_mtu(self: Connection) -> None:
    """Later flights start from `mtu` again: the back-off was the handshake's guess, made
    to complete it quickly (RFC 9147 §4.4); a later flight backs off on its own timeouts."""
    if self._flight_mtu is not None:
        del self._flight_mtu


def on_flight_acknowledged(self: Connection, now: float) -> None:
    flight = self._flight
    assert flight is not None
    key_update = any(m.msg_type == HandshakeType.key_update for m in flight.messages)
    after_ack, flight.after_ack = flight.after_ack, []
    flight.release()
    self._flight = None
    self._rto = self._retransmit_initial
    if self._hs.connected:
        forget_flight_mtu(self)
    if self._hs.connected and 2 in self._records.write_epochs():
        # The client's final flight (epoch 2) is acknowledged: nothing will be sent in
        # epoch 2 again, so its keys (an AEAD and a mask cipher) can go. The server
        # has our Finished, so it will not repeat its epoch-2 flight either.
        self._records.retire_write_epoch(2)
        self._records.retire_read_epoch(2)
    if key_update:
        # RFC 9147 §8: switch sending keys only once the KeyUpdate is acknowledged.
        self._key_update_pending = False
        hs = self._hs
        epoch = self._records.write_epoch + 1
        assert hs.suite is not None
        self._records.install_write_epoch(epoch, hs.suite, hs.next_write_secret())
        # The flight that carried the KeyUpdate carried every message still unacknowledged
        # (send_key_update): nothing is sent under an older epoch again (RFC 9147 §4.2.1:
        # retransmissions use the original epoch), so its keys go. Kept, one per update
        # made the connection grow, and every write_epoch lookup slower, for its lifetime.
        for old in self._records.write_epochs():
            if 3 <= old < epoch:
                self._records.retire_write_epoch(old)
        self._event(KeyUpdated(sending=True, epoch=epoch))
    for msg in after_ack:
        if not self._hs.closed:
            self._send_post_handshake(msg, now)
    deferred, self._key_update_deferred = self._key_update_deferred, None
    if deferred is not None and not self._hs.closed and self._key_update_refusal() is None:
        self._send_key_update(deferred)


def on_post_handshake(self: Connection, msg: Any, now: float) -> None:
    """KeyUpdate and the CID messages: the context checked and decoded them."""
    if isinstance(msg, msgs.RequestConnectionId):
        self._on_request_connection_id(msg, now)
    elif isinstance(msg, msgs.NewConnectionId):
        self._on_new_connection_id(msg)
    else:
        assert isinstance(msg, msgs.KeyUpdate)
        if msg.request_update not in (0, 1):
            raise IllegalParameter("bad KeyUpdate request_update")
        reassembler = self._reassembler
        if reassembler is not None and reassembler.pending:
            # Something of a later message came before the new keys existed, under the
            # old ones: RFC 8446 §5.1, messages MUST NOT span key changes (RFC 9147 §8:
            # what follows a KeyUpdate waits for its ACK and the new keys).
            raise UnexpectedMessage("a handshake message after KeyUpdate under the old keys")
        epoch = max(self._records.read_epochs()) + 1
        if epoch > MAX_EPOCH:
            raise UnexpectedMessage(
                f"too many key updates: the peer's epoch would pass {MAX_EPOCH}"
            )
        self.stats["key_updates_received"] += 1
        hs = self._hs
        assert hs.suite is not None
        self._records.install_read_epoch(epoch, hs.suite, hs.next_read_secret(), now)
        self._event(KeyUpdated(sending=False, epoch=epoch))
        if (
            msg.request_update == KeyUpdateRequest.update_requested
            and self._key_update_refusal() is None
        ):
            # Our answer goes at once, its ACK after the usual delay: a peer reading for
            # our KeyUpdate finds it first (BoringSSL), and one whose KeyUpdate waits for
            # that ACK still takes an update that requests nothing. At our epoch limit the
            # request is ignored (RFC 9147 §8: it "SHOULD instead ignore" the flag).
            self.key_update(request_peer=False)


def set_retransmit_timeout(self: Connection, initial: float) -> None:
    """Use `initial` seconds as this connection's initial retransmission timeout from now
    on (the config's `retransmit_initial` for a new one), as a path's round-trip time
    becomes known (RFC 9147 §5.8.2: 1.5 times an RTT estimate).

    Running timers are rescaled, keeping their back-off and when they were armed: the
    retransmission timer a flight already doubled twice becomes 4 * `initial`, the delayed
    ACK a quarter of the rescaled timer; one already past is due at once."""
    if isinstance(initial, bool) or not isinstance(initial, int | float):
        raise TypeError(f"initial must be a number of seconds, not {initial!r}")
    limit = self.config.retransmit_max
    if not 0 < initial <= limit:  # NaN fails this too
        raise ValueError(f"need 0 < initial <= retransmit_max ({limit:g}), not {initial!r}")
    old_rto = self._rto
    rto = min(old_rto * initial / self._retransmit_initial, limit)
    self._retransmit_initial = float(initial)
    self._rto = rto
    # Both timers were armed `old_rto` (the ACK's: a quarter of it) before they are due.
    if self._retransmit_at is not None:
        self._retransmit_at += rto - old_rto
    if self._ack_at is not None:
        self._ack_at += (rto - old_rto) / 4
    self._activity()
