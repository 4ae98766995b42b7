"""Handshake fragmentation and reassembly (RFC 9147 §5.2, §5.5)."""

from __future__ import annotations

import contextlib
import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dtls13._fast import (
    FRAGMENT_MISMATCH,
    FRAGMENT_TOO_SCATTERED,
    Buffer,
    DecodeError,
    FragmentCoverage,
)
from dtls13.alerts import Alert, DecodeErrorAlert, IllegalParameter
from dtls13.handshake.fragments import (
    HandshakeHeader,
    OutgoingFragment,
    Reassembler,
    fragment_message,
    handshake_header_bytes,
    pull_handshake_fragments_untrusted,
    pull_handshake_header,
    push_fragment,
    push_handshake_header,
    tls_handshake_header,
)
from dtls13.memory import PoolSet

# -- FragmentCoverage ---------------------------------------------------------


def test_coverage_merges_ranges() -> None:
    c = FragmentCoverage(10)
    assert not c.complete
    assert c.add(2, 3) == 3
    assert c.add(0, 2) == 2  # adjacent: merged
    assert c.add(8, 2) == 2
    assert c.ranges() == [(0, 5), (8, 10)]
    assert c.range_count == 2
    assert c.covers(0, 5) and not c.covers(4, 2)
    assert c.overlaps(4, 2) and not c.overlaps(5, 3)
    assert c.add(3, 4) == 2  # 5..7 new
    assert c.ranges() == [(0, 7), (8, 10)]
    assert c.add(0, 10) == 1
    assert c.complete and c.covered == 10 and c.ranges() == [(0, 10)]
    assert c.add(4, 3) == 0


def test_coverage_zero_length_message_is_complete() -> None:
    c = FragmentCoverage(0)
    assert c.complete
    assert c.add(0, 0) == 0


def test_coverage_rejects_out_of_range() -> None:
    c = FragmentCoverage(10)
    for off, n in ((8, 3), (-1, 2), (0, -1), (11, 0)):
        with pytest.raises(ValueError, match="outside"):
            c.add(off, n)
    with pytest.raises(ValueError):
        FragmentCoverage(-1)
    with pytest.raises(ValueError):
        FragmentCoverage(10, 0)


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 300).flatmap(
        lambda n: st.tuples(
            st.just(n),
            st.lists(
                st.integers(0, n - 1).flatmap(
                    lambda o: st.tuples(st.just(o), st.integers(0, n - o))
                ),
                max_size=40,
            ),
        )
    )
)
def test_coverage_matches_a_set_model(case: tuple[int, list[tuple[int, int]]]) -> None:
    n, adds = case
    c = FragmentCoverage(n)
    model: set[int] = set()
    for off, length in adds:
        span = set(range(off, off + length))
        assert c.covers(off, length) == (span <= model)
        assert c.overlaps(off, length) == bool(span & model)
        assert c.add(off, length) == len(span - model)
        model |= span
        assert c.covered == len(model)
        ranges = c.ranges()
        assert {i for a, b in ranges for i in range(a, b)} == model
        # Sorted, disjoint, non-adjacent (merged).
        assert all(b1 < a2 for (_, b1), (a2, _) in itertools.pairwise(ranges))
        assert all(a < b for a, b in ranges)
    assert c.complete == (len(model) == n)


def test_write_fragment_writes_gaps_and_compares_overlaps() -> None:
    msg = bytes(range(20))
    dest = bytearray(20)
    c = FragmentCoverage(20)
    assert c.write_fragment(dest, 5, msg[5:10]) == 5
    assert c.write_fragment(dest, 12, msg[12:15]) == 3
    # Overlaps both ranges: only the gaps 0..5, 10..12 and 15..18 are new.
    assert c.write_fragment(dest, 0, msg[0:18]) == 5 + 2 + 3
    assert bytes(dest[:18]) == msg[:18]
    assert c.write_fragment(dest, 2, msg[2:16]) == 0
    snapshot = bytes(dest)
    # A changed byte inside an already covered range: refused, nothing written.
    bad = bytearray(msg[10:20])
    bad[3] ^= 1
    assert c.write_fragment(dest, 10, bad) == FRAGMENT_MISMATCH
    assert bytes(dest) == snapshot and c.covered == 18
    assert c.write_fragment(dest, 10, msg[10:20]) == 2
    assert c.complete and bytes(dest) == msg


def test_write_fragment_bytes_already_covered_are_not_rewritten() -> None:
    # Bytes in the destination inside a covered range are compared, not copied:
    # a matching fragment leaves the destination object untouched.
    dest = bytearray(b"abcdef")
    c = FragmentCoverage(6)
    c.add(0, 3)  # mark without writing: dest already holds "abc"
    assert c.write_fragment(dest, 0, b"abcXYZ") == 3
    assert dest == b"abcXYZ"
    assert c.write_fragment(dest, 0, b"abd") == FRAGMENT_MISMATCH


def test_write_fragment_limits_scattering() -> None:
    c = FragmentCoverage(100, 3)
    dest = bytearray(100)
    for off in (0, 20, 40):
        assert c.write_fragment(dest, off, b"x" * 5) == 5
    assert c.write_fragment(dest, 60, b"x" * 5) == FRAGMENT_TOO_SCATTERED
    assert c.range_count == 3 and c.covered == 15
    # Filling a gap merges ranges and is always allowed.
    assert c.write_fragment(dest, 5, b"x" * 15) == 15
    assert c.range_count == 2
    assert c.write_fragment(dest, 60, b"x" * 5) == 5


def test_write_fragment_rejects_short_destination_and_out_of_range() -> None:
    c = FragmentCoverage(10)
    with pytest.raises(ValueError, match="shorter"):
        c.write_fragment(bytearray(5), 0, b"ab")
    with pytest.raises(ValueError, match="outside"):
        c.write_fragment(bytearray(10), 9, b"ab")


# -- header and outgoing fragments ------------------------------------------------


def test_handshake_header_round_trip() -> None:
    h = HandshakeHeader(11, 0x123456, 0xBEEF, 0x010203, 0x040506)
    raw = handshake_header_bytes(h)
    assert raw == bytes.fromhex("0b 123456 beef 010203 040506")
    assert pull_handshake_header(Buffer(raw)) == h
    buf = Buffer(capacity=12)
    push_handshake_header(buf, h)
    assert buf.data == raw
    for cut in range(12):
        with pytest.raises(DecodeError):
            pull_handshake_header(Buffer(raw[:cut]))


def test_tls_handshake_header() -> None:
    assert tls_handshake_header(1, 0x010203) == b"\x01\x01\x02\x03"
    with pytest.raises(ValueError):
        tls_handshake_header(1, 1 << 24)


def test_fragment_message_splits_contiguously() -> None:
    body = bytes(range(256)) * 4
    frags = fragment_message(11, 3, body, 300)
    assert [(f.offset, f.length) for f in frags] == [(0, 300), (300, 300), (600, 300), (900, 124)]
    for f in frags:
        h = pull_handshake_header(Buffer(f.header))
        assert h == HandshakeHeader(11, 1024, 3, f.offset, f.length)
    # Deterministic: a retransmission is byte-identical.
    assert fragment_message(11, 3, body, 300) == frags
    assert fragment_message(11, 3, len(body), 300) == frags


def test_fragment_message_edges() -> None:
    assert fragment_message(20, 0, b"", 100) == [
        OutgoingFragment(handshake_header_bytes(HandshakeHeader(20, 0, 0, 0, 0)), 0, 0)
    ]
    assert [(f.offset, f.length) for f in fragment_message(1, 0, b"abc", 3)] == [(0, 3)]
    assert [(f.offset, f.length) for f in fragment_message(1, 0, b"abc", 1)] == [
        (0, 1),
        (1, 1),
        (2, 1),
    ]
    # Resending only a range (after a partial ACK).
    frags = fragment_message(1, 0, 1000, 300, start=250, end=700)
    assert [(f.offset, f.length) for f in frags] == [(250, 300), (550, 150)]
    with pytest.raises(ValueError):
        fragment_message(1, 0, b"abc", 0)
    with pytest.raises(ValueError):
        fragment_message(1, 0x10000, b"abc", 10)
    with pytest.raises(ValueError):
        fragment_message(1, 0, 1 << 24, 10)
    with pytest.raises(ValueError):
        fragment_message(1, 0, b"abc", 10, start=2, end=4)


@given(st.integers(0, 3000), st.integers(1, 1500))
def test_fragment_message_covers_exactly(length: int, size: int) -> None:
    frags = fragment_message(2, 1, length, size)
    pos = 0
    for f in frags:
        assert f.offset == pos and 0 <= f.length <= size
        pos += f.length
    assert pos == length
    assert all(f.length > 0 for f in frags) or length == 0


# -- Reassembler -------------------------------------------------------------------


def _feed(r: Reassembler, msg_type: int, seq: int, body: bytes, frags: list[OutgoingFragment]):
    for f in frags:
        r.add_fragment_untrusted(
            msg_type, len(body), seq, f.offset, f.length, body[f.offset : f.offset + f.length]
        )


def _drain(r: Reassembler) -> list[tuple[int, int, bytes]]:
    out = []
    while (m := r.next_message()) is not None:
        msg_type, seq, body = m
        assert isinstance(body, memoryview)
        out.append((msg_type, seq, bytes(body)))
    return out


@pytest.fixture
def pools() -> PoolSet:
    return PoolSet()


def _messages(n: int, seed: int = 1) -> list[tuple[int, bytes]]:
    rnd = random.Random(seed)
    return [
        (rnd.choice((2, 8, 11, 15, 20)), rnd.randbytes(rnd.randrange(0, 5000))) for _ in range(n)
    ]


def test_in_order(pools: PoolSet) -> None:
    owner = pools.owner("connection", "c")
    r = Reassembler(pools, owner)
    msgs = _messages(6)
    for seq, (t, body) in enumerate(msgs):
        _feed(r, t, seq, body, fragment_message(t, seq, body, 500))
    assert r.next_expected_seq == 6
    assert _drain(r) == [(t, seq, body) for seq, (t, body) in enumerate(msgs)]
    assert pools.in_use == 0
    r.close()
    assert pools.in_use == 0 and owner.in_use == 0


def test_reversed(pools: PoolSet) -> None:
    r = Reassembler(pools, None)
    msgs = _messages(5, seed=2)
    for seq, (t, body) in reversed(list(enumerate(msgs))):
        _feed(r, t, seq, body, list(reversed(fragment_message(t, seq, body, 333))))
        if seq:
            assert r.next_message() is None
            assert r.next_expected_seq == 0
    assert r.next_expected_seq == 5
    assert _drain(r) == [(t, seq, body) for seq, (t, body) in enumerate(msgs)]
    r.close()
    assert pools.in_use == 0


def test_whole_next_message_is_used_in_place(pools: PoolSet) -> None:
    r = Reassembler(pools, None)
    datagram = bytearray(b"\x00" * 7 + b"finished-body")
    view = memoryview(datagram)[7:]
    r.add_fragment_untrusted(20, 13, 0, 0, 13, view)
    assert pools.in_use == 0  # no copy made
    m = r.next_message()
    assert m is not None and m.in_place and bytes(m.body) == b"finished-body"
    assert m.transcript_header == b"\x14\x00\x00\x0d"
    assert m.body.obj is datagram  # a view of the caller's bytes
    m.release()
    view.release()
    datagram.extend(b"!")  # no export left behind
    r.close()


def test_whole_message_ahead_is_copied(pools: PoolSet) -> None:
    r = Reassembler(pools, None)
    r.add_fragment_untrusted(8, 4, 1, 0, 4, bytearray(b"ahead"[:4]))
    assert pools.in_use == 1 and r.bytes_buffered > 0
    r.add_fragment_untrusted(2, 3, 0, 0, 3, b"now")
    assert _drain(r) == [(2, 0, b"now"), (8, 1, b"ahea")]
    assert r.counters["in_place"] == 1 and r.counters["reassembled"] == 1
    assert pools.in_use == 0
    r.close()


def test_next_message_releases_the_previous_one(pools: PoolSet) -> None:
    r = Reassembler(pools, None)
    _feed(r, 11, 0, b"x" * 1000, fragment_message(11, 0, b"x" * 1000, 400))
    _feed(r, 15, 1, b"y" * 1000, fragment_message(15, 1, b"y" * 1000, 400))
    first = r.next_message()
    # The first message in one lease; the second still in its four 256-byte chunks.
    assert first is not None and pools.in_use == 1 + 4
    with r.next_message() as second:  # type: ignore[union-attr]
        assert pools.in_use == 1
        assert bytes(second.body) == b"y" * 1000
        with pytest.raises(ValueError):
            bytes(first.body)  # released
    assert pools.in_use == 0
    assert r.next_message() is None
    r.close()


def test_close_releases_everything(pools: PoolSet) -> None:
    owner = pools.owner("connection", "c")
    r = Reassembler(pools, owner)
    _feed(r, 11, 0, b"a" * 3000, fragment_message(11, 0, b"a" * 3000, 1000)[:2])
    _feed(r, 11, 2, b"b" * 3000, fragment_message(11, 2, b"b" * 3000, 1000))
    _feed(r, 11, 1, b"c" * 20, fragment_message(11, 1, b"c" * 20, 10)[1:])
    # Chunks of 256 bytes for what arrived (2000 + 3000 bytes), and the 20-byte message's
    # only chunk (a 64-byte slot).
    assert pools.in_use == 8 + 12 + 1 and owner.in_use == 20 * 256 + 64
    r.close()
    r.close()
    assert pools.in_use == 0 and owner.in_use == 0
    # Fragments after close are ignored.
    r.add_fragment_untrusted(11, 3, 0, 0, 3, b"abc")
    assert r.next_message() is None


def test_zero_length_messages(pools: PoolSet) -> None:
    r = Reassembler(pools, None)
    r.add_fragment_untrusted(5, 0, 1, 0, 0, b"")  # ahead
    r.add_fragment_untrusted(5, 0, 1, 0, 0, b"")  # duplicate
    r.add_fragment_untrusted(5, 0, 0, 0, 0, b"")  # in place
    assert _drain(r) == [(5, 0, b""), (5, 1, b"")]
    assert r.counters["duplicates"] == 1
    r.close()
    assert pools.in_use == 0


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    count=st.integers(1, 6),
    sizes=st.lists(st.integers(64, 1200), min_size=1, max_size=3),
    dup_rate=st.floats(0, 0.5),
)
def test_random_shuffles_with_duplicates(
    seed: int, count: int, sizes: list[int], dup_rate: float
) -> None:
    """Fragments of several messages at several MTUs, shuffled and duplicated."""
    rnd = random.Random(seed)
    pools = PoolSet()
    owner = pools.owner("connection", "c")
    r = Reassembler(pools, owner, max_messages_ahead=count)
    msgs = _messages(count, seed)
    pieces = []
    for seq, (t, body) in enumerate(msgs):
        # Retransmissions at a different fragment size overlap the first ones.
        for size in sizes:
            for f in fragment_message(t, seq, body, size):
                pieces.append(
                    (t, len(body), seq, f.offset, f.length, body[f.offset : f.offset + f.length])
                )
    pieces += [p for p in pieces if rnd.random() < dup_rate]
    rnd.shuffle(pieces)
    got = []
    for p in pieces:
        r.add_fragment_untrusted(*p)
        got += _drain(r)
    assert got == [(t, seq, body) for seq, (t, body) in enumerate(msgs)]
    assert r.next_expected_seq == count
    assert r.counters["messages"] == count
    r.close()
    assert pools.in_use == 0 and owner.in_use == 0


def test_overlapping_identical_bytes_are_fine(pools: PoolSet) -> None:
    r = Reassembler(pools, None)
    body = bytes(range(200))
    r.add_fragment_untrusted(11, 200, 0, 0, 120, body[:120])
    r.add_fragment_untrusted(11, 200, 0, 100, 100, body[100:])
    assert _drain(r) == [(11, 0, body)]
    r.close()


def test_overlapping_different_bytes_is_illegal_parameter(pools: PoolSet) -> None:
    r = Reassembler(pools, None)
    body = bytes(range(200))
    r.add_fragment_untrusted(11, 200, 0, 0, 120, body[:120])
    changed = bytearray(body[100:])
    changed[5] ^= 0xFF
    with pytest.raises(IllegalParameter, match="changed"):
        r.add_fragment_untrusted(11, 200, 0, 100, 100, changed)
    r.close()
    assert pools.in_use == 0


def test_changed_bytes_of_a_complete_message_ahead(pools: PoolSet) -> None:
    r = Reassembler(pools, None)
    r.add_fragment_untrusted(11, 4, 1, 0, 4, b"abcd")
    r.add_fragment_untrusted(11, 4, 1, 2, 2, b"cd")
    assert r.counters["duplicates"] == 1
    with pytest.raises(IllegalParameter):
        r.add_fragment_untrusted(11, 4, 1, 2, 2, b"cx")
    r.close()


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ((11, 100, 0, 90, 20), "past the message length"),
        ((11, 100, 0, 0, 50), "bytes present"),  # fragment_length vs data
        ((11, 101, 0, 50, 10), "disagree"),  # length changed
        ((12, 100, 0, 50, 10), "disagree"),  # msg_type changed
    ],
)
def test_inconsistent_fields_are_decode_error(
    pools: PoolSet, fields: tuple[int, int, int, int, int], match: str
) -> None:
    r = Reassembler(pools, None)
    r.add_fragment_untrusted(11, 100, 0, 0, 10, b"x" * 10)
    t, length, seq, off, n = fields
    data = b"x" * (10 if match == "bytes present" else n)
    with pytest.raises(DecodeErrorAlert, match=match):
        r.add_fragment_untrusted(t, length, seq, off, n, data)
    r.close()


def test_huge_length_is_illegal_parameter(pools: PoolSet) -> None:
    r = Reassembler(pools, None, max_message_size=20000)
    with pytest.raises(IllegalParameter, match="exceeds the limit"):
        r.add_fragment_untrusted(11, 0xFFFFFF, 0, 0, 10, b"x" * 10)
    assert pools.in_use == 0
    r.close()


def test_old_and_far_ahead_are_dropped(pools: PoolSet) -> None:
    r = Reassembler(pools, None, max_messages_ahead=2, first_message_seq=1)
    assert r.next_expected_seq == 1
    r.add_fragment_untrusted(1, 3, 0, 0, 3, b"old")
    r.add_fragment_untrusted(11, 3, 4, 0, 3, b"far")
    r.add_fragment_untrusted(11, 3, 3, 0, 3, b"ok!")
    assert r.counters["old"] == 1 and r.counters["too_far_ahead"] == 1
    assert r.pending == 1
    r.add_fragment_untrusted(2, 2, 1, 0, 2, b"sh")
    r.add_fragment_untrusted(2, 2, 1, 0, 2, b"sh")  # now old
    assert r.counters["old"] == 2
    r.add_fragment_untrusted(8, 2, 2, 0, 2, b"ee")
    assert _drain(r) == [(2, 1, b"sh"), (8, 2, b"ee"), (11, 3, b"ok!")]
    # Even a huge length is only dropped when the message_seq is old.
    r.add_fragment_untrusted(11, 0xFFFFFF, 0, 0, 1, b"x")
    assert r.counters["old"] == 3
    r.close()
    assert pools.in_use == 0


def test_budget_exhaustion_is_dropped_and_counted(pools: PoolSet) -> None:
    owner = pools.owner("connection", "c")
    r = Reassembler(pools, owner, max_bytes_buffered=2 * 4096, max_messages_ahead=10)
    for seq in range(1, 5):
        r.add_fragment_untrusted(11, 3000, seq, 0, 2900, b"z" * 2900)
    assert r.counters["over_budget"] == 2 and r.pending == 2
    assert r.bytes_buffered == 2 * 12 * 256 == owner.in_use
    # The connection's own budget applies too.
    r.close()
    small = pools.owner("connection", "small", limit=4096)
    r2 = Reassembler(pools, small)
    r2.add_fragment_untrusted(11, 5000, 1, 0, 4500, b"z" * 4500)
    assert r2.counters["over_budget"] == 1 and small.refusals == 1
    r2.close()
    assert pools.in_use == 0


def test_global_budget_is_respected() -> None:
    pools = PoolSet(max_total_memory=4096)
    r = Reassembler(pools, None)
    r.add_fragment_untrusted(11, 3000, 1, 0, 2900, b"z" * 2900)
    r.add_fragment_untrusted(11, 3000, 2, 0, 2900, b"z" * 2900)
    assert r.counters["over_budget"] == 1
    r.close()
    assert pools.in_use == 0


def test_too_scattered_is_dropped(pools: PoolSet) -> None:
    r = Reassembler(pools, None, max_fragment_ranges=2)
    r.add_fragment_untrusted(11, 100, 0, 0, 10, b"a" * 10)
    r.add_fragment_untrusted(11, 100, 0, 20, 10, b"a" * 10)
    r.add_fragment_untrusted(11, 100, 0, 40, 10, b"a" * 10)
    assert r.counters["too_scattered"] == 1
    r.add_fragment_untrusted(11, 100, 0, 0, 100, b"a" * 100)
    assert _drain(r) == [(11, 0, b"a" * 100)]
    r.close()


def test_bad_configuration() -> None:
    pools = PoolSet()
    for kwargs in (
        {"max_message_size": 0},
        {"max_messages_ahead": -1},
        {"max_bytes_buffered": -1},
        {"max_fragment_ranges": 0},
        {"first_message_seq": 1 << 16},
    ):
        with pytest.raises(ValueError):
            Reassembler(pools, None, **kwargs)  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 255),
            st.integers(0, 70000),
            st.integers(0, 12),
            st.integers(0, 70000),
            st.integers(0, 70000),
            st.binary(max_size=64),
        ),
        max_size=30,
    )
)
def test_garbage_raises_only_alerts(
    frags: list[tuple[int, int, int, int, int, bytes]],
) -> None:
    pools = PoolSet()
    r = Reassembler(pools, None, max_message_size=40000, max_bytes_buffered=20000)
    for t, length, seq, off, n, data in frags:
        # Keep fragment_length honest half the time so deeper paths are reached.
        if n % 2:
            n = len(data)
            off = min(off, max(0, length - n))
        with contextlib.suppress(Alert):
            r.add_fragment_untrusted(t, length, seq, off, n, data)
        _drain(r)
    r.close()
    assert pools.in_use == 0


def test_release_while_a_buffer_still_reads_the_body(pools: PoolSet) -> None:
    r = Reassembler(pools, None)
    _feed(r, 11, 0, b"q" * 600, fragment_message(11, 0, b"q" * 600, 250))
    m = r.next_message()
    assert m is not None
    reader = Buffer(m.body)  # exports the body view
    assert reader.pull_bytes(3) == b"qqq"
    assert r.next_message() is None  # releases m: must not raise
    assert pools.in_use == 1  # the slot waits for the reader
    reader.close()
    m.release()  # idempotent; now the view can go too
    assert pools.in_use == 0
    r.close()


def test_records_of_fragments_round_trip(pools: PoolSet) -> None:
    """push_fragment() output, packed several per record, parsed back and reassembled."""
    msgs = _messages(4, seed=9)
    records = []
    for seq, (t, body) in enumerate(msgs):
        frags = fragment_message(t, seq, body, 700)
        for i in range(0, len(frags), 2):  # two fragments per record
            buf = Buffer(capacity=2000)
            for f in frags[i : i + 2]:
                push_fragment(buf, f, body)
                assert f.size == 12 + f.length
            records.append(buf.data)
    parsed = pull_handshake_fragments_untrusted(records[0])
    assert [h.message_seq for h, _ in parsed] == [0] * len(parsed)
    assert bytes(parsed[0][1]) == msgs[0][1][: parsed[0][0].fragment_length]
    r = Reassembler(pools, None)
    random.Random(3).shuffle(records)
    for rec in records:
        assert r.add_record_untrusted(rec) in (1, 2)
    assert _drain(r) == [(t, seq, body) for seq, (t, body) in enumerate(msgs)]
    r.close()
    assert pools.in_use == 0


def test_truncated_record_is_decode_error(pools: PoolSet) -> None:
    body = b"abcdefgh" * 10
    buf = Buffer(capacity=200)
    for f in fragment_message(11, 0, body, 50):
        push_fragment(buf, f, body)
    record = buf.data
    assert pull_handshake_fragments_untrusted(b"") == []
    ends = {0, 12 + 50, len(record)}
    for cut in range(len(record) + 1):
        if cut in ends:
            pull_handshake_fragments_untrusted(record[:cut])
            continue
        with pytest.raises(DecodeErrorAlert, match="malformed"):
            pull_handshake_fragments_untrusted(record[:cut])
    r = Reassembler(pools, None)
    with pytest.raises(DecodeErrorAlert):
        r.add_record_untrusted(record[:-1])
    r.close()
    assert pools.in_use == 0


def test_fragment_past_its_message_in_a_record_is_decode_error() -> None:
    header = HandshakeHeader(11, 10, 0, 8, 4)
    record = handshake_header_bytes(header) + b"abcd"
    with pytest.raises(DecodeErrorAlert, match="malformed"):
        pull_handshake_fragments_untrusted(record)
