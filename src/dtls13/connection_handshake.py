"""The connection's side of the handshake: handshake records in, reassembly fed, each
complete message handed to the handshake context (handshake/client.py, handshake/server.py)
and what it returns applied: flights queued per epoch, keys installed, events emitted.

Methods of `Connection` (connection.py binds them; it holds the state they use). The
handshake itself (messages, transcript, keys, states) lives in the context, which never
calls back here. A ClientHello other than the one a server answered goes to
connection_new_association.py (RFC 9147 §5.11).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._fast import MemoryBudgetExceeded
from .alerts import Alert, DecodeErrorAlert, IllegalParameter, UnexpectedMessage
from .events import HandshakeCompleted
from .handshake.client import ClientHandshake
from .handshake.constants import HandshakeType
from .handshake.fragments import COUNTER_NAMES as REASSEMBLY_COUNTER_NAMES
from .handshake.fragments import Reassembler, pull_handshake_fragments_untrusted
from .handshake.state import MESSAGE_EPOCH, ClientState, ServerState
from .handshake.work import FlightKind, HandshakeOutput
from .record import ContentType, RecordNumber
from .record.message_trace import TracedMessage

if TYPE_CHECKING:
    from .connection import Connection

MAX_RESTARTS = 3  # handshake restarts after damaged hellos (see _restart_handshake)
KNOWN_TYPES = frozenset(int(t) for t in HandshakeType if t != HandshakeType.message_hash)
MAX_ACK_RECORDS = 32  # record numbers awaiting our ACK (the newest are kept; BoringSSL: 32)


def reassembly(self: Connection) -> Reassembler:
    """The reassembler, made again if it was let go while idle after the handshake."""
    reassembler = self._reassembler
    if reassembler is None:
        assert self._idle_reassembly is not None
        seq, counts = self._idle_reassembly
        reassembler = self._reassembler = self._new_reassembler(seq)
        reassembler.counters = dict(zip(REASSEMBLY_COUNTER_NAMES, counts, strict=True))
        self._idle_reassembly = None
    return reassembler


def next_receive_seq(self: Connection) -> int:
    if self._reassembler is not None:
        return self._reassembler.next_expected_seq
    assert self._idle_reassembly is not None
    return self._idle_reassembly[0]


# What an idle connection holds as _hello_records: never written to (buffer_hello_fragment
# gives the connection a dict of its own first).
NO_HELLO_RECORDS: dict[int, list[RecordNumber]] = {}

# Shared (next message_seq, counter values) tuples of idle connections' reassembly (immutable;
# at most this many distinct ones are kept for sharing, the rest stay per connection).
_IDLE_REASSEMBLY: dict[tuple[int, tuple[int, ...]], tuple[int, tuple[int, ...]]] = {}
_IDLE_REASSEMBLY_KEPT = 256


def idle_reassembler(self: Connection) -> None:
    """Let the reassembler go when the handshake is over and it holds nothing."""
    reassembler = self._reassembler
    if (
        reassembler is not None
        and self._hs.connected
        and reassembler.bytes_buffered == 0
        and reassembler.pending == 0
    ):
        # The counters' values only (~110 B instead of a ~270-byte dict per idle connection),
        # and most idle connections have the same ones: one shared tuple for them all.
        counts = tuple(map(reassembler.counters.__getitem__, REASSEMBLY_COUNTER_NAMES))
        idle = (reassembler.next_expected_seq, counts)
        shared = _IDLE_REASSEMBLY.get(idle)
        if shared is None and len(_IDLE_REASSEMBLY) < _IDLE_REASSEMBLY_KEPT:
            shared = _IDLE_REASSEMBLY[idle] = idle
        self._idle_reassembly = idle if shared is None else shared
        reassembler.close()
        self._reassembler = None


def new_reassembler(self: Connection, first_message_seq: int) -> Reassembler:
    return Reassembler(
        self.pools,
        self.owner,
        max_message_size=self.config.max_handshake_message,
        max_messages_ahead=self.config.max_messages_ahead,
        max_bytes_buffered=self.config.max_bytes_buffered,
        first_message_seq=first_message_seq,
    )


def restart_handshake(
    self: Connection, now: float, reason: str, first_message_seq: int = 0
) -> None:
    """Start the handshake over, keeping the deadline.

    Hellos are not authenticated: a ClientHello or ServerHello damaged on the way
    still parses, and the two sides then hold different transcripts. The signs are
    a server seeing a retransmitted ClientHello whose bytes differ from the one it
    processed, and a client whose epoch-2 records fail to authenticate while the
    server repeats its ServerHello. Starting over is safe: the new handshake is
    authenticated by its own CertificateVerify and Finished.
    """
    self.stats["handshake_restarts"] += 1
    self._restarts += 1
    if self.is_client and self._records.write_epoch == 2:
        # An empty ACK under the keys we derived (RFC 9147 §7.1 allows empty ACKs):
        # the server fails to authenticate it, which tells it the hellos were damaged.
        self._send_ack_for([])
    if self._flight is not None:
        self._flight.release()
    if self._reassembler is not None:
        self._reassembler.close()
    self._drop_other_hello()
    # The association goes on: its epoch-0 numbers do not start over (the peer's
    # epoch-0 replay window saw the earlier ones, RFC 9147 §4.5.1).
    plaintext_seq = self._records.next_sequence_number(0)
    self._records.close()
    self._init_handshake(first_message_seq)
    self._records.continue_plaintext_after(plaintext_seq - 1)
    self._arm_unanswered(now)
    if isinstance(self._hs, ClientHandshake):
        self._apply(self._hs.start(self._hello_padding()), now)


def handle_handshake_record(self: Connection, record: Any, now: float) -> None:
    plaintext = record.epoch == 0
    if plaintext and not self.is_client:
        # A server numbers its epoch-0 records after the client's ClientHello record.
        # A stateless HelloRetryRequest was numbered like the ClientHello1 record it
        # answered (RFC 6347 §4.2.1's convention; handshake/gate.py), and the client
        # numbers ClientHello2 after ClientHello1 (sequence numbers never repeat in an
        # epoch, RFC 9147 §4.2.1), so our ServerHello lands right of every HRR in the
        # client's epoch-0 replay window (§4.5.1), which OpenSSL keeps across the HRR.
        # RFC 6347 numbered the ServerHello like ClientHello2; one past it is as safe,
        # and never a number a stateless reply (a client record's number) could carry.
        self._records.continue_plaintext_after(record.sequence_number)
    ackable = False
    unbuffered = False  # a fragment of this record was dropped unread: no ACK (§7)
    repeat = False
    repeated_types: set[int] = set()
    try:
        fragments = pull_handshake_fragments_untrusted(record.payload)
        for header, fragment in fragments:
            if not self._fragment_in_right_epoch(header.msg_type, record.epoch):
                if record.epoch == 2 and header.msg_type not in KNOWN_TYPES:
                    # A type that exists in no epoch, under the handshake keys: the peer
                    # itself sent it (as in epoch 3 and later, where such a message meets
                    # the state machine): unexpected_message, not a quiet drop.
                    raise UnexpectedMessage(f"handshake type {header.msg_type} in epoch 2")
                self.stats["dropped_handshake_fragments"] += 1
            elif header.message_seq < self._next_receive_seq():
                if self._changed_hello(header, fragment):
                    self._other_client_hello(header, fragment, now, record.record_number)
                    continue
                repeat = True
                repeated_types.add(header.msg_type)
                # Repeated post-handshake messages are ACKed again; a repeated
                # handshake flight is answered by our own flight, or by our final ACK
                # (the flights it implicitly acknowledges SHOULD NOT be ACKed, §7.1).
                ackable = ackable or (self._hs.connected and record.epoch >= 3)
            elif record.epoch >= 3 and record.epoch < self._records.read_epochs()[-1]:
                # A new message under keys that a KeyUpdate of the peer's retired: RFC 8446
                # §5.1, handshake messages MUST NOT span key changes (on_post_handshake
                # checks what came before the KeyUpdate was processed).
                raise UnexpectedMessage("a handshake message after KeyUpdate under the old keys")
            elif plaintext and not self._hs.in_hello:
                # RFC 9147 §5.11: a forged epoch-0 message must not destroy the
                # association; past the hellos only retransmissions are plaintext.
                if header.msg_type == HandshakeType.client_hello and self._changed_hello(
                    header, fragment
                ):
                    self._other_client_hello(header, fragment, now, record.record_number)
                else:
                    self.stats["dropped_handshake_fragments"] += 1
            elif plaintext:
                self._buffer_hello_fragment(header, fragment, record.record_number)
            elif self._buffer_fragment(header, fragment):
                ackable = True
            else:
                # An ACK covers the whole record: the peer would never resend this
                # fragment, and the handshake would stall on it.
                unbuffered = True
                self.stats["dropped_handshake_fragments"] += 1
    except Alert:
        # Unauthenticated plaintext cannot end a handshake or a connection (off-path
        # injection; RFC 9147 §4.5.2: invalid records SHOULD be silently discarded).
        if plaintext:
            self.stats["dropped_malformed_plaintext"] += 1
            return
        raise
    if ackable and not unbuffered:
        acks_to_send(self).append(record.record_number)
    if self._hello_records:
        # Records of hellos now complete were processed: they may be ACKed (§7).
        complete = self._next_receive_seq()
        for seq in [seq for seq in self._hello_records if seq < complete]:
            acks_to_send(self).extend(self._hello_records.pop(seq))
    if len(self._ack_list) > MAX_ACK_RECORDS:
        # A peer may send many records before our delayed ACK is due: keep the newest.
        del acks_to_send(self)[:-MAX_ACK_RECORDS]
    damaged = self.stats["dropped_damaged_hello"]
    progressed = self._process_messages(now)
    if plaintext and progressed and self.stats["dropped_damaged_hello"] == damaged:
        # A hello from this record was used: copies of the record are replays now.
        self._records.plaintext_taken(record.sequence_number)
    if (
        HandshakeType.server_hello in repeated_types
        and self._hs.state is ClientState.WAIT_ENCRYPTED_EXTENSIONS
        and self._records.auth_failures(2) > 0
        and self._epoch2_records == 0
        and self._restarts < MAX_RESTARTS
    ):
        # The server repeats its flight and none of its epoch-2 records authenticate:
        # our transcript differs from the server's (one damaged record would not do).
        self._restart_handshake(now, "epoch-2 records fail to authenticate")
    elif repeat:
        self._on_peer_repeat(now, in_handshake=record.epoch < 3)
    elif (
        not self._hs.closed
        and self._ack_at is None
        and ((ackable and not progressed) or (not self._hs.connected and self._ack_list))
    ):
        # Part of a flight arrived and the rest did not (yet): ACK after rto/4 (§7.1).
        # During the handshake the list holds records of the peer's current flight only
        # (our next flight clears it: an implicit ACK), also when whole messages of it
        # were processed, so a partial flight gets an ACK of all that arrived.
        self._ack_at = now + self._rto / 4


def acks_to_send(self: Connection) -> list[RecordNumber]:
    """The connection's list of records to ACK, made when the first one comes."""
    acks = self._ack_list
    if isinstance(acks, tuple):
        acks = self._ack_list = []
    return acks


def fragment_in_right_epoch(msg_type: int, epoch: int) -> bool:
    """Hellos travel in epoch 0, the rest of the handshake in 2, later messages in 3+."""
    expected = MESSAGE_EPOCH.get(msg_type, 3)
    if expected >= 3:
        # EndOfEarlyData is not sent in DTLS 1.3 (RFC 9147 §5.6), yet NSS's client sends
        # it after its 0-RTT under the early data keys, as in TLS 1.3: the state machine
        # takes it there (server.py) and refuses it in epoch 3 and later.
        return epoch >= 3 or (epoch == 1 and msg_type == HandshakeType.end_of_early_data)
    return epoch == expected


def buffer_fragment(
    self: Connection,
    header: Any,
    fragment: memoryview,
    *,
    authenticated: bool = True,
    into: Reassembler | None = None,
) -> bool:
    """Give a fragment to the reassembler (or `into`); False if it was not processed or
    buffered (such records must not be ACKed, RFC 9147 §7)."""
    reassembler = self._reassembly() if into is None else into
    counters = reassembler.counters
    before = counters["too_far_ahead"] + counters["over_budget"] + counters["too_scattered"]
    reassembler.add_fragment_untrusted(
        header.msg_type,
        header.length,
        header.message_seq,
        header.fragment_offset,
        header.fragment_length,
        fragment,
        authenticated=authenticated,
    )
    after = counters["too_far_ahead"] + counters["over_budget"] + counters["too_scattered"]
    return after == before  # not-buffered drops, summed without a generator (RFC 9147 §7)


def buffer_hello_fragment(
    self: Connection, header: Any, fragment: memoryview, record_number: RecordNumber
) -> None:
    """A fragment from a plaintext record: anyone who knows the addresses may have
    forged it, so a conflict with what is buffered drops the partial message rather
    than the handshake, and the record is ACKed only once its message is complete."""
    seq = header.message_seq
    conflicts = self._reassembly().counters["conflicts"]
    buffered = self._buffer_fragment(header, fragment, authenticated=False)
    if self._reassembly().counters["conflicts"] != conflicts:
        self.count("dropped_conflicting_fragments")
        self._hello_records.pop(seq, None)  # what they carried was dropped
    if not buffered:
        self.stats["dropped_handshake_fragments"] += 1
        return
    if self._hello_records is NO_HELLO_RECORDS:
        self._hello_records = {}
    records = self._hello_records.setdefault(seq, [])
    if record_number not in records:
        records.append(record_number)


def on_peer_repeat(self: Connection, now: float, *, in_handshake: bool = False) -> None:
    """The peer retransmitted a flight we already processed (RFC 9147 §5.8.1 case 3)."""
    # A client that is CONNECTED still owes its final flight until it is ACKed: a
    # repeated server flight means that flight was lost, so resend it (case 3).
    # Once per repeated handshake flight, not once per datagram of it: the peer's
    # flight comes as a burst, and answering each of its datagrams multiplied ours.
    # Not within rto/4 of sending our flight either (apply()). A repeated post-handshake
    # message says only that the peer lacks our ACK: our own post-handshake flight has
    # its timer (RFC 9147 §7, §8), and resending it here made two sides with a flight
    # each answer each other's copies at once for as long as their ACKs were lost.
    recently = self._retransmitted_at is not None and now - self._retransmitted_at < self._rto / 4
    if (
        in_handshake
        and self._flight is not None
        and not self._flight.acknowledged
        and not self._retransmitted_this_input
        and not recently
    ):
        self._retransmit(now)
    if self._hs.connected:
        # Repeated records are ACKed again, a repeated KeyUpdate or NewSessionTicket
        # included: answering those with the final flight's old ACK left the peer's
        # KeyUpdate unacknowledged forever, and with it every later key update (§7.1).
        # After the usual delay, like the first copy: copies that come in a burst get one
        # ACK, and a peer reading in order meets no ACK where it waits for data.
        # The list is kept once connected (send_ack): a repeat of the final flight (epoch
        # 2, never in the list) gets the final ACK whatever the list holds.
        if not in_handshake and self._ack_list:
            if self._ack_at is None:
                self._ack_at = now + self._rto / 4
        elif self._final_acks:
            self._send_ack_for(self._final_acks)


def process_messages(self: Connection, now: float) -> bool:
    """Handle every complete message in order; True if any was handled."""
    handled = False
    while not self._hs.closed:
        reassembler = self._reassembler
        message = reassembler.next_message() if reassembler is not None else None
        if message is None:
            self._idle_reassembler()
            break
        handled = True
        self._current_seq = message.message_seq
        msg_type = message.msg_type
        first_hello = self._first_hello(msg_type)
        # A first hello dropped as damaged must leave no trace: its handler may have
        # narrowed the transcript to its suite's hash (or added itself) and taken its
        # suite before failing, and the genuine hello that follows may differ.
        hello_state = self._hs.in_hello
        saved = self._hs.save_hello() if first_hello or hello_state else None
        if self.config.message_callback is not None:
            trace = TracedMessage(False, ContentType.handshake, msg_type, bytes(message.body))
            self.config.message_callback(trace)
        try:
            self._handle_message(msg_type, message.body, now)
        except (DecodeErrorAlert, IllegalParameter) as alert:
            # A hello that does not even decode is garbage, whoever sent it: before
            # keys exist it came unprotected, so it must not end the handshake.
            garbage = isinstance(alert, DecodeErrorAlert) and hello_state
            if saved is None or not (first_hello or garbage):
                raise
            self._hs.restore_hello(saved)
            # An unauthenticated first hello that does not make sense is most likely
            # damaged on the way: drop it and wait for the peer's retransmission.
            self.stats["dropped_damaged_hello"] += 1
            self._reassembly().close()
            self._reassembler = self._new_reassembler(message.message_seq)
            break
    return handled


def first_hello(self: Connection, msg_type: int) -> bool:
    """Whether this message would be the first hello seen from the peer (epoch 0,
    nothing committed yet), so that a decoding problem can be treated as damage."""
    state = self._hs.state
    if self.is_client:
        return msg_type == HandshakeType.server_hello and state is ClientState.WAIT_SERVER_HELLO
    # A second ClientHello (message_seq 1, after a stateless HRR) is not a first hello:
    # an invalid cookie there MUST end with illegal_parameter (RFC 9147 §5.1).
    return (
        msg_type == HandshakeType.client_hello
        and state is ServerState.WAIT_CLIENT_HELLO
        and self._current_seq == 0
    )


def handle_message(self: Connection, msg_type: int, body: memoryview, now: float) -> None:
    """Hand one complete message to the handshake context and apply what it returns."""
    hs = self._hs
    if hs.connected and self._ack_at is None:
        # Post-handshake messages are ACKed after 1/4 of the retransmission timeout
        # (RFC 9147 §7.1), not at once: the peer's other messages of the flight (a second
        # ticket) join the same ACK, and a peer reading in order finds no ACK where it waits
        # for application data. The ACK of a KeyUpdate goes ahead of our own next
        # update request (_send_key_update): a peer whose KeyUpdate waits for its ACK
        # ignores our update request until then (wolfSSL).
        self._ack_at = now + self._rto / 4
    if hs.connected and msg_type == HandshakeType.key_update:
        self._ack_key_update = True
    hello, self._decoded_hello = self._decoded_hello, None
    parsed = None
    if hello is not None and msg_type == HandshakeType.client_hello and hello[0] == body:
        parsed = hello[1]  # the endpoint's gate decoded these very bytes
    out = hs.handle_message(
        msg_type,
        body,
        now,
        seq=self._current_seq,
        peer_address=self.peer_address,
        parsed=parsed,
    )
    self._apply(out, now)


def apply(self: Connection, out: HandshakeOutput, now: float) -> None:
    """Do what the handshake context asked: the order of HandshakeOutput's fields."""
    records = self._records
    callback = self.config.message_callback
    if out.ech_inner_hello is not None and callback is not None:
        inner = out.ech_inner_hello
        callback(
            TracedMessage(
                self.is_client,
                ContentType.handshake,
                HandshakeType.client_hello,
                inner,
                ech_inner=True,
            )
        )
    if out.address_validated:
        self._cookie_checked = True
    if out.answered:
        # The peer's answer implicitly acknowledged our flight: stop retransmitting it.
        if self._flight is not None:
            if self._timeouts == 0:
                # Answered without a retransmission: the timer a lossy earlier flight
                # backed off to is kept no longer (RFC 9147 §5.8.2).
                self._rto = self._retransmit_initial
            self._flight.release()
            self._flight = None
        self._retransmit_at = None
        if self.is_client:
            # The records that answered us (the ServerHello) start the peer's flight:
            # still to be ACKed while the rest of it is missing (§7.1).
            records.tentative_cid_length = 0
    if out.peer_cid is not None:
        self._use_cids(out.peer_cid)
        records.cid_optional = out.cid_optional
    if out.peer_record_limit is not None:
        self._peer_record_limit = out.peer_record_limit
    if out.enforce_record_limit:
        self._enforce_record_limit = True
    for keys in out.keys:
        if keys.write:
            records.install_write_epoch(keys.epoch, keys.suite, keys.secret)
        else:
            records.install_read_epoch(keys.epoch, keys.suite, keys.secret, now)
    if out.end_early_data:
        records.retire_read_epoch(1)
        records.cid_optional = False
    kind = out.flight
    if out.completed is not None and not self.is_client:
        self._server_completed(out, now)
        return
    if kind is not None:
        self._start_flight(handshake=True)
        flight = self._flight
        assert flight is not None
        for m in out.messages:
            self._add_encoded(m.msg_type, m.body, m.epoch)
        if kind is FlightKind.RETRY:
            # Like a stateless server, do not retransmit the HRR on a timer: a repeated
            # ClientHello1 gets it again (RFC 9147 §5.8.1 case 3).
            with records.datagram_writer(self.flight_mtu) as w:
                flight.emit(w)
                self._queue(w.finish())
            self._trace_sent(flight)
        else:
            flight.needs_ack = kind is FlightKind.FINAL
            self._emit_flight(now)
            # Copies of the peer's flight that come soon after ours crossed it on the
            # way (network duplicates, or a peer that sends fragments twice): they do
            # not say ours was lost, so on_peer_repeat waits as after a retransmission.
            self._retransmitted_at = now
    if out.abort is not None:
        raise out.abort
    if out.completed is not None:
        self._complete(out.completed, now)
        self._drop_handshake_state()
    if out.ticket is not None:
        self._event(out.ticket)
    if out.post_handshake is not None:
        self._on_post_handshake(out.post_handshake, now)


def server_completed(self: Connection, out: HandshakeOutput, now: float) -> None:
    """The client's Finished verified: ACK its final flight, send the tickets."""
    assert out.completed is not None
    self._final_acks = sorted(set(self._ack_list), key=lambda n: (n.epoch, n.sequence_number))
    self._ack_list = ()
    self._ack_at = None
    self._complete(out.completed, now)
    tickets = False
    if out.flight is FlightKind.TICKETS:
        self._start_flight()
        assert self._flight is not None
        self._flight.needs_ack = True
        try:
            for m in out.messages:
                self._add_encoded(m.msg_type, m.body, m.epoch)
            tickets = True
        except MemoryBudgetExceeded:
            # Tickets are optional (RFC 8446 §4.6.1): with no memory for them, none.
            self.count("tickets_withheld", len(out.messages))
            self._flight.release()
            self._flight = None
    # The ACK and the session tickets leave in one datagram when they fit (one send). No
    # memory for it is a lost datagram: the client repeats its final flight and gets the
    # ACK again (_repeat_final_acks); the tickets' timer sends them again.
    try:
        with self._records.datagram_writer(self.flight_mtu) as w:
            self._send_ack_for(self._final_acks, w)
            if tickets:
                self._emit_flight(now, writer=w)
            self._queue(w.finish())
    except MemoryBudgetExceeded:
        self.count("flight_datagrams_unsent")
        if tickets:
            self._retransmit_at = now + self._rto
    self._drop_handshake_state()
    # Our handshake flight is done with (implicitly acknowledged above); alerts and
    # ACKs go out in epoch 3 from now on. The epoch-2 read keys go too: the only
    # epoch-2 records still to come are repeats of the client's final flight (our
    # ACK was lost), which _repeat_final_acks answers without reading them.
    self._records.retire_write_epoch(2)
    self._records.retire_read_epoch(2)


def complete(self: Connection, event: HandshakeCompleted, now: float) -> None:
    self.handshake_completed_at = now
    self._arm_idle_check(now)
    self._event(event)


def repeat_final_acks(self: Connection, now: float) -> None:
    """A server whose epoch-2 read keys are gone got a record of a retired epoch while
    it has final ACKs: the client repeats its final flight because our ACK was lost
    (RFC 9147 §7.1), so send that ACK again, at most once per quarter of the initial
    retransmission timeout (the record is not read: it may be anything)."""
    if not self._hs.connected or self.is_client:
        return
    last = self._final_ack_repeated_at
    if last is not None and now - last < self._retransmit_initial / 4:
        return
    self._final_ack_repeated_at = now
    self._send_ack_for(self._final_acks)


def drop_handshake_state(self: Connection) -> None:
    """Forget what only the handshake needed, once it has completed (see
    HandshakeContext.drop_handshake_state); no plaintext record is sent after this."""
    self._hs.drop_handshake_state()
    self._records.retire_write_epoch(0)
    if self._flight is None or self._flight.acknowledged:
        self._forget_flight_mtu()
    if not self._hello_records:
        # An emptied dict keeps the table it grew to (~160 B), and even an empty one is 64 B:
        # an idle connection shares NO_HELLO_RECORDS until a hello record comes again.
        self._hello_records = NO_HELLO_RECORDS
