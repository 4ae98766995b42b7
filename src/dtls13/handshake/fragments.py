"""Handshake message fragmentation and reassembly (RFC 9147 §5.2, §5.5).

Outgoing: `fragment_message()` splits a message body into contiguous,
non-overlapping fragments; it is a pure function, so a retransmission at the
same fragment size produces identical bytes ("Senders MUST NOT change
handshake message bytes upon retransmission", §5.5).

Incoming: `Reassembler` turns fragments (in any order, duplicated,
overlapping) into whole messages delivered strictly in message_seq order.
A message that arrives whole as the next expected one is used in place;
otherwise its fragments are written at their offset into a `FragmentStore`
(reassembly_store.py, with `ReassembledMessage`):
pooled chunks of `REASSEMBLY_CHUNK` bytes taken only for the byte ranges that
actually arrived (coverage tracked by `_fast.FragmentCoverage`), so memory
follows the bytes received, never the length a peer merely claims.
"""

from __future__ import annotations

from typing import NamedTuple

from .._fast import (
    FRAGMENT_MISMATCH,
    FRAGMENT_TOO_SCATTERED,
    Buffer,
    DecodeError,
    Lease,
    MemoryBudgetExceeded,
    Owner,
)
from ..alerts import DecodeErrorAlert, IllegalParameter
from ..memory import PoolSet
from .messages import (
    HandshakeHeader,
    pull_handshake_header,
    push_handshake_header,
    transcript_header,
)
from .reassembly_store import (
    REASSEMBLY_CHUNK,
    FragmentStore,
    ReassembledMessage,
    _release_view,
)

__all__ = [
    "COUNTER_NAMES",
    "HANDSHAKE_HEADER_LENGTH",
    "REASSEMBLY_CHUNK",
    "FragmentStore",
    "HandshakeHeader",
    "OutgoingFragment",
    "ReassembledMessage",
    "Reassembler",
    "fragment_message",
    "handshake_header_bytes",
    "pull_handshake_fragments_untrusted",
    "pull_handshake_header",
    "push_fragment",
    "push_handshake_header",
    "tls_handshake_header",
]

HANDSHAKE_HEADER_LENGTH = 12
TLS_HANDSHAKE_HEADER_LENGTH = 4
MAX_UINT24 = 0xFFFFFF
MAX_MESSAGE_SEQ = 0xFFFF


# -- the 12-byte DTLS handshake header (RFC 9147 §5.2) ---------------------
# HandshakeHeader and its codec pair live with the other message codecs
# (messages.py); re-exported here for the fragment layer's callers.


def handshake_header_bytes(header: HandshakeHeader) -> bytes:
    """The header as 12 bytes."""
    buf = Buffer(capacity=HANDSHAKE_HEADER_LENGTH)
    push_handshake_header(buf, header)
    return buf.data


def tls_handshake_header(msg_type: int, length: int) -> bytes:
    """The TLS-style 4-byte header the transcript is computed over (RFC 9147 §5.2)."""
    return transcript_header(msg_type, length)


# -- outgoing ----------------------------------------------------------------


class OutgoingFragment(NamedTuple):
    """One fragment to send: its 12-byte header and the body range it carries."""

    header: bytes
    offset: int
    length: int

    @property
    def size(self) -> int:
        """Bytes on the wire: header plus fragment body."""
        return HANDSHAKE_HEADER_LENGTH + self.length


def push_fragment(
    buf: Buffer, fragment: OutgoingFragment, body: bytes | bytearray | memoryview
) -> None:
    """Write `fragment` (header, then its range of `body`) into `buf`."""
    buf.push_bytes(fragment.header)
    with memoryview(body) as view:
        buf.push_bytes(view[fragment.offset : fragment.offset + fragment.length])


def fragment_message(
    msg_type: int,
    message_seq: int,
    body: bytes | bytearray | memoryview | int,
    max_fragment_body: int,
    *,
    start: int = 0,
    end: int | None = None,
) -> list[OutgoingFragment]:
    """Split a message into fragments of at most `max_fragment_body` body bytes.

    `body` is the message body or just its length. `start`/`end` limit the
    split to a byte range (to resend only unacknowledged parts); by default
    the whole body. Fragments are contiguous and never overlap; a zero-length
    range gives one empty fragment (§5.5: "An unfragmented message is a
    degenerate case with fragment_offset=0 and fragment_length=length").
    """
    length = body if isinstance(body, int) else len(body)
    if not 0 <= length <= MAX_UINT24:
        raise ValueError(f"handshake message length {length} does not fit 24 bits")
    if not 0 <= message_seq <= MAX_MESSAGE_SEQ:
        raise ValueError(f"message_seq {message_seq} does not fit 16 bits")
    if not 0 <= msg_type <= 0xFF:
        raise ValueError(f"msg_type {msg_type} does not fit 8 bits")
    if max_fragment_body < 1:
        raise ValueError("max_fragment_body must be at least 1")
    stop = length if end is None else end
    if not 0 <= start <= stop <= length:
        raise ValueError(f"range [{start}, {stop}) outside a message of {length} bytes")
    fragments = []
    prefix = bytes((msg_type,)) + length.to_bytes(3, "big") + message_seq.to_bytes(2, "big")
    offset = start
    while True:
        n = min(max_fragment_body, stop - offset)
        # The bytes of push_handshake_header(), built directly: this runs per fragment.
        header = prefix + offset.to_bytes(3, "big") + n.to_bytes(3, "big")
        fragments.append(OutgoingFragment(header, offset, n))
        offset += n
        if offset >= stop:
            return fragments


# -- incoming ----------------------------------------------------------------


def pull_handshake_fragments_untrusted(
    data: bytes | bytearray | memoryview,
) -> list[tuple[HandshakeHeader, memoryview]]:
    """Split a handshake record's plaintext into (header, fragment body view) pairs.

    Views point into `data` (no copy). Raises DecodeErrorAlert when a header or
    a body is cut short or a fragment reaches past its message (RFC 9147 §5.2).
    """
    out = []
    buf = Buffer(data)
    try:
        while not buf.eof():
            header = pull_handshake_header(buf)
            out.append((header, buf.pull_view(header.fragment_length)))
    except DecodeError as err:
        raise DecodeErrorAlert(f"malformed handshake fragment: {err}") from None
    finally:
        buf.close()
    return out


class _Partial:
    """A message being reassembled (or complete and waiting to be delivered)."""

    __slots__ = ("lease", "length", "msg_type", "store", "view")

    def __init__(self, msg_type: int, length: int) -> None:
        self.msg_type = msg_type
        self.length = length
        self.store: FragmentStore | None = None
        self.lease: Lease | None = None
        # A complete message's body: a view of `lease` or of the caller's fragment.
        self.view: memoryview | None = None

    @property
    def complete(self) -> bool:
        return self.view is not None or (self.store is not None and self.store.complete)

    def discard(self) -> None:
        if self.view is not None:
            _release_view(self.view)
            self.view = None
        if self.lease is not None:
            self.lease.release()
            self.lease = None
        if self.store is not None:
            self.store.release()
            self.store = None


COUNTER_NAMES = (
    "fragments",  # fragments offered
    "messages",  # messages completed
    "in_place",  # messages used straight from the caller's fragment
    "reassembled",  # messages assembled in a pooled lease
    "duplicates",  # fragments adding no new byte to a buffered message
    "old",  # fragments of messages already complete (message_seq < next expected)
    "too_far_ahead",  # message_seq beyond the messages-ahead bound
    "over_budget",  # MemoryBudgetExceeded when taking a lease
    "too_scattered",  # fragment would split a message into too many ranges
    "conflicts",  # unauthenticated partial messages dropped for a conflicting fragment
)


class Reassembler:
    """Reassembles incoming handshake fragments into messages in message_seq order.

    `add_fragment_untrusted()` raises only `Alert` subclasses:
    `DecodeErrorAlert` for fields that contradict each other (a fragment
    past the message's length, a length or msg_type that differs from
    earlier fragments of the same message_seq) and `IllegalParameter` for
    overlapping fragments whose bytes differ (RFC 9147 §5.5 says SHOULD abort
    with illegal_parameter) or for a message longer than `max_message_size`
    (OpenSSL answers an excessive message size with illegal_parameter too; a
    silent drop would leave the peer retransmitting until the handshake
    times out). Everything else is dropped and counted in `counters`: old
    message_seq (§5.2: "MUST be discarded"), too far ahead (§5.2: "MAY
    discard"), duplicates, budget refusals and over-scattered messages.

    Fragments from unauthenticated records (epoch 0: anyone who knows the
    addresses can forge them) are held to less: only the message expected next
    is buffered, and a conflict with what is buffered drops the partial message
    (counted in "conflicts") instead of ending the handshake; see
    `add_fragment_untrusted`.

    Memory: a message in reassembly is held in `FragmentStore` chunks charged to
    a child owner of `owner` whose limit is `max_bytes_buffered` (counted in slot
    bytes), so it grows with the bytes received. A fragmented message is copied
    into one lease charged to `owner` when `next_message()` hands it out.
    A message that arrives whole as the next expected one is not copied:
    its body is a view of `fragment_bytes`, which therefore must stay
    unchanged until the message is released (the connection drains
    `next_message()` after each record; a view keeps a pooled datagram
    slot out of its pool until then, so reuse is impossible anyway).
    """

    def __init__(
        self,
        pools: PoolSet,
        owner: Owner | None,
        *,
        max_message_size: int = 65536,
        max_messages_ahead: int = 8,
        max_bytes_buffered: int = 256 * 1024,
        max_fragment_ranges: int = 256,
        first_message_seq: int = 0,
    ) -> None:
        if max_message_size < 1 or max_message_size > MAX_UINT24:
            raise ValueError("max_message_size must be in 1..2^24-1")
        if max_messages_ahead < 0:
            raise ValueError("max_messages_ahead must not be negative")
        if max_bytes_buffered < 0:
            raise ValueError("max_bytes_buffered must not be negative")
        if max_fragment_ranges < 1:
            raise ValueError("max_fragment_ranges must be at least 1")
        if not 0 <= first_message_seq <= MAX_MESSAGE_SEQ:
            raise ValueError("first_message_seq must fit 16 bits")
        self._pools = pools
        self._parent = owner
        self._owner = pools.owner("reassembly", id(self), max_bytes_buffered, owner)
        self.max_message_size = max_message_size
        self.max_messages_ahead = max_messages_ahead
        self.max_fragment_ranges = max_fragment_ranges
        # Every message_seq below _next_expected is complete; those from
        # _deliver_seq up are waiting in _messages for next_message().
        self._next_expected = first_message_seq
        self._deliver_seq = first_message_seq
        self._messages: dict[int, _Partial] = {}
        self._handed_out: ReassembledMessage | None = None
        self._closed = False
        self.counters: dict[str, int] = dict.fromkeys(COUNTER_NAMES, 0)

    @property
    def next_expected_seq(self) -> int:
        """The lowest message_seq not yet completely received (next_receive_seq)."""
        return self._next_expected

    @property
    def bytes_buffered(self) -> int:
        """Slot bytes currently held for buffered messages."""
        return self._owner.in_use

    @property
    def pending(self) -> int:
        """Messages buffered (partial, or complete and not yet delivered)."""
        return len(self._messages)

    def add_fragment_untrusted(
        self,
        msg_type: int,
        length: int,
        message_seq: int,
        frag_offset: int,
        frag_length: int,
        fragment_bytes: bytes | bytearray | memoryview,
        *,
        authenticated: bool = True,
    ) -> None:
        """Take one fragment from the network (header fields already parsed).

        `authenticated` is False for fragments of plaintext records (epoch 0).
        """
        if self._closed:
            return
        self.counters["fragments"] += 1
        if frag_offset + frag_length > length:
            raise DecodeErrorAlert(
                f"handshake fragment [{frag_offset}, {frag_offset + frag_length}) "
                f"past the message length {length}"
            )
        if len(fragment_bytes) != frag_length:
            raise DecodeErrorAlert(
                f"fragment_length {frag_length} but {len(fragment_bytes)} bytes present"
            )
        if message_seq < self._next_expected:
            self.counters["old"] += 1
            return
        # Plaintext carries only hellos, each the message expected next when it is
        # genuine: buffering ahead would let a forger hold memory for messages to come.
        ahead = self.max_messages_ahead if authenticated else 0
        if message_seq > self._next_expected + ahead:
            self.counters["too_far_ahead"] += 1
            return
        if length > self.max_message_size:
            raise IllegalParameter(
                f"handshake message of {length} bytes exceeds the limit of "
                f"{self.max_message_size} bytes"
            )
        partial = self._messages.get(message_seq)
        if (
            partial is not None
            and (partial.msg_type != msg_type or partial.length != length)
            and not self._conflict(message_seq, partial, authenticated)
        ):
            raise DecodeErrorAlert(
                f"fragments of message_seq {message_seq} disagree: type "
                f"{partial.msg_type}/{msg_type}, length {partial.length}/{length}"
            )
        partial = self._messages.get(message_seq)
        if partial is None:
            if message_seq == self._next_expected and frag_length == length:
                # §5.5: "An unfragmented message is a degenerate case with
                # fragment_offset=0 and fragment_length=length": use it in place.
                partial = _Partial(msg_type, length)
                partial.view = memoryview(fragment_bytes).cast("B")
                self._messages[message_seq] = partial
                self.counters["in_place"] += 1
                self._completed(message_seq)
                return
            partial = _Partial(msg_type, length)
            if frag_length == length and length:
                # Whole but ahead of the next expected: one lease, all of it received.
                try:
                    partial.lease = self._pools.acquire(length, self._owner)
                except MemoryBudgetExceeded:
                    self.counters["over_budget"] += 1
                    return
                partial.lease.write(0, fragment_bytes)
                partial.view = partial.lease.view(0, length)
                self._messages[message_seq] = partial
                self.counters["reassembled"] += 1
                self._completed(message_seq)
                return
            partial.store = FragmentStore(
                self._pools, self._owner, length, self.max_fragment_ranges
            )
            self._messages[message_seq] = partial
        elif partial.complete:
            self._compare_complete(message_seq, partial, frag_offset, fragment_bytes)
            return
        self._merge(message_seq, partial, frag_offset, fragment_bytes, authenticated)

    def _conflict(self, message_seq: int, partial: _Partial, authenticated: bool) -> bool:
        """A fragment contradicts the message buffered for its message_seq: from an
        unauthenticated record, drop the partial message (True) so that the genuine one
        can still be assembled; from an authenticated peer it is a protocol error (False).

        Either side of a plaintext conflict may be the forgery, and keeping the first
        would let one forged fragment sent ahead of the genuine message block it for
        good; the newest wins. A forger who keeps sending conflicts only delays the
        message, which the peer retransmits whole (its records are not acknowledged
        until the message is complete).
        """
        if authenticated or partial.complete:
            return False
        partial.discard()
        del self._messages[message_seq]
        self.counters["conflicts"] += 1
        return True

    def add_record_untrusted(self, data: bytes | bytearray | memoryview) -> int:
        """Feed every fragment of a handshake record's plaintext; returns how many.

        Bodies are views of `data` (see the class note on in-place messages).
        """
        fragments = pull_handshake_fragments_untrusted(data)
        for h, body in fragments:
            self.add_fragment_untrusted(
                h.msg_type, h.length, h.message_seq, h.fragment_offset, h.fragment_length, body
            )
        return len(fragments)

    def _merge(
        self,
        message_seq: int,
        partial: _Partial,
        frag_offset: int,
        fragment_bytes: bytes | bytearray | memoryview,
        authenticated: bool,
    ) -> None:
        store = partial.store
        assert store is not None
        try:
            fresh = store.write_untrusted(frag_offset, fragment_bytes)
        except MemoryBudgetExceeded:
            self.counters["over_budget"] += 1
            if store.coverage.covered == 0:
                partial.discard()
                del self._messages[message_seq]
            return
        if fresh == FRAGMENT_MISMATCH:
            if self._conflict(message_seq, partial, authenticated):
                # Start over from this fragment (it fits: it reaches past nothing).
                self.add_fragment_untrusted(
                    partial.msg_type,
                    partial.length,
                    message_seq,
                    frag_offset,
                    len(fragment_bytes),
                    fragment_bytes,
                    authenticated=authenticated,
                )
                self.counters["fragments"] -= 1  # one fragment, offered once
                return
            raise IllegalParameter(f"retransmitted bytes of message_seq {message_seq} changed")
        if fresh == FRAGMENT_TOO_SCATTERED:
            self.counters["too_scattered"] += 1
            if store.coverage.covered == 0:
                partial.discard()
                del self._messages[message_seq]
            return
        if fresh == 0 and len(fragment_bytes):
            self.counters["duplicates"] += 1
        if store.complete:
            self.counters["reassembled"] += 1
            self._completed(message_seq)

    def _compare_complete(
        self,
        message_seq: int,
        partial: _Partial,
        frag_offset: int,
        fragment_bytes: bytes | bytearray | memoryview,
    ) -> None:
        """A fragment of a message already complete (buffered ahead): it must repeat it."""
        if partial.store is not None:
            fresh = partial.store.write_untrusted(frag_offset, fragment_bytes)
        else:
            assert partial.view is not None
            same = partial.view[frag_offset : frag_offset + len(fragment_bytes)] == memoryview(
                fragment_bytes
            ).cast("B")
            fresh = 0 if same else FRAGMENT_MISMATCH
        if fresh == FRAGMENT_MISMATCH:
            raise IllegalParameter(f"retransmitted bytes of message_seq {message_seq} changed")
        self.counters["duplicates"] += 1

    def _completed(self, message_seq: int) -> None:
        self.counters["messages"] += 1
        if message_seq == self._next_expected:
            seq = message_seq + 1
            while (p := self._messages.get(seq)) is not None and p.complete:
                seq += 1
            self._next_expected = seq

    def next_message(self) -> ReassembledMessage | None:
        """The next complete message in message_seq order, or None.

        Releases the message handed out by the previous call.
        """
        if self._handed_out is not None:
            self._handed_out.release()
            self._handed_out = None
        partial = self._messages.get(self._deliver_seq)
        if partial is None or not partial.complete:
            return None
        if partial.view is None:
            assert partial.store is not None
            try:
                partial.lease, partial.view = partial.store.assemble(self._parent)
            except MemoryBudgetExceeded:
                self.counters["over_budget"] += 1  # tried again on the next call
                return None
            partial.store = None
        del self._messages[self._deliver_seq]
        msg = ReassembledMessage(partial.msg_type, self._deliver_seq, partial.view, partial.lease)
        self._deliver_seq += 1
        self._handed_out = msg
        return msg

    def close(self) -> None:
        """Release every buffered message and the last one handed out."""
        if self._closed:
            return
        self._closed = True
        if self._handed_out is not None:
            self._handed_out.release()
            self._handed_out = None
        for partial in self._messages.values():
            partial.discard()
        self._messages.clear()
        self._pools.release_owner(self._owner)

    def __repr__(self) -> str:
        return (
            f"<Reassembler next={self._next_expected} pending={len(self._messages)} "
            f"buffered={self.bytes_buffered} B>"
        )
