"""RecordLayer: protection round trips, independence from our encoder, drops, epochs, limits."""

from __future__ import annotations

import itertools
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dtls13.alerts import LocalProtocolError
from dtls13.crypto.suites import CipherSuite
from dtls13.memory import MemoryBudgetExceeded, PoolSet
from dtls13.record import DROP_REASONS, ContentType, InboundRecord, RecordLayer, RecordNumber
from tests.record import test_record_reference as ref

SUITES = list(CipherSuite)
EPOCHS = [1, 2, 3, 4, 7]
# (seq_bits, omit_length, cid)
FORMS = [
    (seq_bits, omit, cid)
    for seq_bits, omit, cid in itertools.product((8, 16), (False, True), (b"", b"\x0a\x0b\x0c\x0d"))
]


@pytest.fixture
def pools() -> PoolSet:
    return PoolSet()


def secret_for(suite: CipherSuite, tag: int = 0) -> bytes:
    return bytes((tag + i) % 256 for i in range(ref.secret_length(suite)))


def take(records: list[InboundRecord]) -> list[tuple[int, int, int, bytes]]:
    """(epoch, seq, content type, payload) of each record, releasing them."""
    out = []
    for r in records:
        out.append((r.epoch, r.sequence_number, int(r.content_type), r.tobytes()))
        r.release()
    return out


def send(layer: RecordLayer, items: list[tuple[int, int, bytes]], mtu: int = 1400) -> list[bytes]:
    """Records packed into datagrams as bytes (leases released)."""
    w = layer.datagram_writer(mtu)
    for epoch, ctype, payload in items:
        if w.add(epoch, ctype, payload) is None:
            w.new_datagram()
            assert w.add(epoch, ctype, payload) is not None
    out = []
    for lease in w.finish():
        out.append(lease.tobytes())
        lease.release()
    return out


def make_pair(
    pools: PoolSet, suite: CipherSuite, epoch: int, secret: bytes, **kw: object
) -> tuple[RecordLayer, RecordLayer]:
    read_cid = kw.pop("read_cid_length", 0)
    a = RecordLayer(pools, **kw)  # type: ignore[arg-type]
    b = RecordLayer(pools, read_cid_length=read_cid)  # type: ignore[arg-type]
    a.install_write_epoch(epoch, suite, secret)
    b.install_read_epoch(epoch, suite, secret, 0.0)
    return a, b


# -- round trips ---------------------------------------------------------------


@pytest.mark.parametrize("suite", SUITES, ids=lambda s: s.name)
@pytest.mark.parametrize("form", FORMS, ids=str)
@pytest.mark.parametrize("epoch", EPOCHS)
def test_round_trip_every_suite_form_epoch(
    pools: PoolSet, suite: CipherSuite, form: tuple[int, bool, bytes], epoch: int
) -> None:
    seq_bits, omit, cid = form
    secret = secret_for(suite, epoch)
    a, b = make_pair(
        pools,
        suite,
        epoch,
        secret,
        seq_bits=seq_bits,
        omit_last_length=omit,
        write_cid=cid or None,
        read_cid_length=len(cid),
    )
    payloads = [b"", b"x", os.urandom(100), os.urandom(1000)]
    for i, payload in enumerate(payloads):
        w = a.datagram_writer(1400)
        assert w.add(0, ContentType.handshake, b"hs") is not None if not cid else True
        number = w.add(epoch, ContentType.application_data, payload, last=True)
        assert number == RecordNumber(epoch, i)
        leases = w.finish()
        assert len(leases) == 1
        got = take(b.receive_datagram_untrusted(leases[0], 1.0))
        leases[0].release()
        app = [g for g in got if g[0] == epoch]
        assert app == [(epoch, i, 23, payload)]
    assert sum(b.drops.values()) == 0
    a.close()
    b.close()


@pytest.mark.parametrize("suite", SUITES, ids=lambda s: s.name)
def test_many_records_in_one_datagram(pools: PoolSet, suite: CipherSuite) -> None:
    a, b = make_pair(pools, suite, 3, secret_for(suite))
    items = [(3, 23, bytes([i]) * (i * 7)) for i in range(12)]
    (datagram,) = send(a, items, mtu=1400)
    got = take(b.receive_datagram_untrusted(datagram, 0.0))
    assert got == [(3, i, 23, bytes([i]) * (i * 7)) for i in range(12)]


def test_plaintext_records(pools: PoolSet) -> None:
    a = RecordLayer(pools)
    b = RecordLayer(pools)
    (d,) = send(a, [(0, 22, b"client hello"), (0, 21, b"\x02\x28"), (0, 26, b"\x00\x00")])
    assert d == (
        ref.plaintext(22, 0, b"client hello")
        + ref.plaintext(21, 1, b"\x02\x28")
        + ref.plaintext(26, 2, b"\x00\x00")
    )
    got = take(b.receive_datagram_untrusted(d, 0.0))
    assert got == [(0, 0, 22, b"client hello"), (0, 1, 21, b"\x02\x28"), (0, 2, 26, b"\x00\x00")]


# -- independence from our encoder -----------------------------------------------


@pytest.mark.parametrize("suite", SUITES, ids=lambda s: s.name)
@pytest.mark.parametrize("form", FORMS, ids=str)
def test_reads_records_built_from_the_rfc(
    pools: PoolSet, suite: CipherSuite, form: tuple[int, bool, bytes]
) -> None:
    seq_bits, omit, cid = form
    secret = secret_for(suite, 9)
    b = RecordLayer(pools, read_cid_length=len(cid))
    b.install_read_epoch(2, suite, secret, 0.0)
    # Padding to test the inner-plaintext stripping; sequence numbers crossing 2^8.
    for seq in (0, 2, 100, 200, 254, 256, 300):
        payload = os.urandom(seq % 50 + 8)  # CCM-8 needs 8 for the mask sample
        rec = ref.protect(
            suite,
            secret,
            2,
            seq,
            22,
            payload,
            seq_bits=seq_bits,
            with_length=not omit,
            cid=cid,
            padding=seq % 5,
        )
        extra = b"" if omit else ref.protect(suite, secret, 2, seq + 1, 23, b"next-rec", cid=cid)
        got = take(b.receive_datagram_untrusted(rec + extra, 0.0))
        assert got[0] == (2, seq, 22, payload)
        if extra:
            assert got[1] == (2, seq + 1, 23, b"next-rec")
    assert sum(b.drops.values()) == 0


@pytest.mark.parametrize("suite", SUITES, ids=lambda s: s.name)
@pytest.mark.parametrize("form", FORMS, ids=str)
def test_writes_records_the_rfc_reader_accepts(
    pools: PoolSet, suite: CipherSuite, form: tuple[int, bool, bytes]
) -> None:
    seq_bits, omit, cid = form
    secret = secret_for(suite, 5)
    a = RecordLayer(
        pools, seq_bits=seq_bits, omit_last_length=omit, write_cid=cid or None, padding=0
    )
    a.install_write_epoch(6, suite, secret)
    for seq in range(3):
        payload = os.urandom(seq * 20)
        w = a.datagram_writer(1400)
        w.add(6, 23, payload, last=True)
        (lease,) = w.finish()
        record = lease.tobytes()
        lease.release()
        first = record[0]
        assert first >> 5 == 1 and first & 3 == 6 & 3
        assert bool(first & 0x10) == bool(cid) and bool(first & 0x08) == (seq_bits == 16)
        assert bool(first & 0x04) == (not omit)
        bits, ctype, body, _pad = ref.unprotect(suite, secret, record, seq, len(cid))
        assert (bits, ctype, body) == (6 & 3, 23, payload)


@pytest.mark.parametrize("suite", SUITES, ids=lambda s: s.name)
def test_senders_pad_to_the_mask_sample(pools: PoolSet, suite: CipherSuite) -> None:
    secret = secret_for(suite)
    a = RecordLayer(pools)
    a.install_write_epoch(3, suite, secret)
    w = a.datagram_writer(200)
    w.add(3, 23, b"", last=True)
    (lease,) = w.finish()
    record = lease.tobytes()
    lease.release()
    assert len(record) - 5 >= 16  # header: first byte, 16-bit seq, length
    assert ref.unprotect(suite, secret, record, 0)[1:3] == (23, b"")


def test_padding_option(pools: PoolSet) -> None:
    suite = CipherSuite.TLS_AES_128_GCM_SHA256
    a, b = make_pair(pools, suite, 3, secret_for(suite), padding=64)
    w = a.datagram_writer(1400)
    w.add(3, 23, b"abc", last=True)
    (lease,) = w.finish()
    record = lease.tobytes()
    lease.release()
    assert len(record) == 5 + 64 + 16
    assert ref.unprotect(suite, secret_for(suite), record, 0)[1:] == (23, b"abc", 60)
    assert take(b.receive_datagram_untrusted(record, 0)) == [(3, 0, 23, b"abc")]


# -- invalid input: dropped and counted, never raised ---------------------------------


@pytest.mark.parametrize("suite", SUITES, ids=lambda s: s.name)
def test_every_byte_flip_is_dropped(pools: PoolSet, suite: CipherSuite) -> None:
    secret = secret_for(suite)
    b = RecordLayer(pools)
    b.install_read_epoch(3, suite, secret, 0.0)
    record = ref.protect(suite, secret, 3, 5, 23, b"hello world")
    for i in range(len(record)):
        for flip in (0x01, 0x80, 0xFF):
            bad = bytearray(record)
            bad[i] ^= flip
            assert b.receive_datagram_untrusted(bad, 0.0) == []
    drops = b.drops
    assert drops["auth_failed"] > 0
    # Flipped epoch bits name an epoch without keys yet: such records are kept
    # for keys that may come (and fail or expire then).
    assert sum(drops.values()) + b.pending_count == len(record) * 3
    assert b.pending_count > 0
    # The window was never touched: the genuine record still goes through.
    assert take(b.receive_datagram_untrusted(record, 0.0)) == [(3, 5, 23, b"hello world")]
    assert take(b.receive_pending(0.0)) == []
    assert sum(drops.values()) == len(record) * 3


@pytest.mark.parametrize("suite", SUITES, ids=lambda s: s.name)
def test_truncation_at_every_offset(pools: PoolSet, suite: CipherSuite) -> None:
    secret = secret_for(suite)
    b = RecordLayer(pools)
    b.install_read_epoch(3, suite, secret, 0.0)
    datagram = ref.protect(suite, secret, 3, 1, 23, b"a" * 40) + ref.protect(
        suite, secret, 3, 2, 23, b"b" * 40, with_length=False
    )
    first_len = len(ref.protect(suite, secret, 3, 1, 23, b"a" * 40))
    for cut in range(len(datagram)):
        got = take(b.receive_datagram_untrusted(datagram[:cut], 0.0))
        if cut >= first_len:
            assert got == [(3, 1, 23, b"a" * 40)]
            b.retire_read_epoch(3)  # start over with a fresh window
            b.install_read_epoch(3 + 4 * (cut + 1), suite, secret, 0.0)
            b = RecordLayer(pools)
            b.install_read_epoch(3, suite, secret, 0.0)
        else:
            assert got == []
    assert take(b.receive_datagram_untrusted(datagram, 0.0)) == [
        (3, 1, 23, b"a" * 40),
        (3, 2, 23, b"b" * 40),
    ]


def test_plaintext_truncation_and_flips(pools: PoolSet) -> None:
    b = RecordLayer(pools)
    record = ref.plaintext(22, 7, b"hello")
    for cut in range(len(record)):
        assert b.receive_datagram_untrusted(record[:cut], 0.0) == []
    for i in range(len(record)):
        bad = bytearray(record)
        bad[i] ^= 0xFF
        take(b.receive_datagram_untrusted(bad, 0.0))  # plaintext is unauthenticated
    assert b.drops["bad_header"] > 0


def test_trailing_garbage(pools: PoolSet) -> None:
    suite = CipherSuite.TLS_AES_128_GCM_SHA256
    secret = secret_for(suite)
    b = RecordLayer(pools)
    b.install_read_epoch(3, suite, secret, 0.0)
    record = ref.protect(suite, secret, 3, 0, 23, b"data")
    got = take(b.receive_datagram_untrusted(record + b"\x00\x01\x02", 0.0))
    assert got == [(3, 0, 23, b"data")]
    assert b.drops["bad_header"] == 1
    # Garbage that parses as a length-less record fails authentication instead.
    got = take(b.receive_datagram_untrusted(record[:-1] + b"\x2b" + os.urandom(40), 0.0))
    assert got == [] and b.drops["auth_failed"] >= 1


def test_non_buffer_and_odd_inputs(pools: PoolSet) -> None:
    b = RecordLayer(pools)
    assert b.receive_datagram_untrusted(b"", 0.0) == []
    assert b.receive_datagram_untrusted(memoryview(b"\x00" * 8).cast("B", (2, 4)), 0.0) == []
    assert b.receive_datagram_untrusted(b"\x17\xfe\xfd" + bytes(10), 0.0) == []
    assert b.receive_datagram_untrusted(12345, 0.0) == []  # type: ignore[arg-type]
    assert b.drops["bad_header"] == 4


def test_random_datagrams_never_raise(pools: PoolSet) -> None:
    suite = CipherSuite.TLS_CHACHA20_POLY1305_SHA256
    secret = secret_for(suite)
    b = RecordLayer(pools, read_cid_length=3)
    b.install_read_epoch(2, suite, secret, 0.0)
    b.install_read_epoch(3, suite, secret, 0.0)
    rng = __import__("random").Random(1)
    for _ in range(3000):
        first = rng.choice([0x21, 0x22, 0x2F, 0x3E, 0x3B, 22, 21, 26, 23, 0, 255])
        data = bytes([first]) + rng.randbytes(rng.randrange(0, 80))
        take(b.receive_datagram_untrusted(data, 0.0))


# -- replay ------------------------------------------------------------------------------


def test_replay_dropped_after_deprotection(pools: PoolSet) -> None:
    suite = CipherSuite.TLS_AES_128_GCM_SHA256
    secret = secret_for(suite)
    b = RecordLayer(pools, replay_window=64)
    b.install_read_epoch(3, suite, secret, 0.0)
    recs = {s: ref.protect(suite, secret, 3, s, 23, b"%d" % s) for s in (1, 36, 37, 63, 100)}
    assert take(b.receive_datagram_untrusted(recs[100], 0.0)) == [(3, 100, 23, b"100")]
    assert take(b.receive_datagram_untrusted(recs[100], 0.0)) == []
    assert b.drops["replay"] == 1
    # A 64-record window ending at 100 starts at 37; 36 and lower are outside.
    assert take(b.receive_datagram_untrusted(recs[37], 0.0)) == [(3, 37, 23, b"37")]
    assert take(b.receive_datagram_untrusted(recs[63], 0.0)) == [(3, 63, 23, b"63")]
    assert take(b.receive_datagram_untrusted(recs[36], 0.0)) == []
    assert take(b.receive_datagram_untrusted(recs[1], 0.0)) == []
    assert take(b.receive_datagram_untrusted(recs[37], 0.0)) == []
    assert b.drops["replay"] == 4
    # A forged copy of a replayed record counts as auth failure, not replay.
    bad = bytearray(recs[63])
    bad[-1] ^= 1
    b.receive_datagram_untrusted(bad, 0.0)
    assert b.drops == {**b.drops, "auth_failed": 1, "replay": 4}


def _take_plaintext(b: RecordLayer, data: bytes) -> list[tuple[int, int, int, bytes]]:
    """Receive `data` and mark every plaintext record taken, as the connection does for the
    hellos it uses."""
    got = take(b.receive_datagram_untrusted(data, 0.0))
    for epoch, seq, _, _ in got:
        if epoch == 0:
            b.plaintext_taken(seq)
    return got


def test_plaintext_replays_dropped_in_a_64_record_window(pools: PoolSet) -> None:
    """RFC 9147 §4.5.1: "a separate sliding window is needed for each epoch", epoch 0
    included; it is 64 records wide (PLAINTEXT_REPLAY_WINDOW), as OpenSSL's."""
    b = RecordLayer(pools, replay_window=256)
    recs = {s: ref.plaintext(22, s, b"%d" % s) for s in (0, 1, 36, 37, 100)}
    assert _take_plaintext(b, recs[0]) == [(0, 0, 22, b"0")]
    assert _take_plaintext(b, recs[0]) == []
    assert _take_plaintext(b, recs[100]) == [(0, 100, 22, b"100")]
    assert _take_plaintext(b, recs[37]) == [(0, 37, 22, b"37")]
    for seq in (100, 37, 36, 1):  # taken already, or left of the window (37..100)
        assert _take_plaintext(b, recs[seq]) == []
    assert b.drops["replay"] == 5 and b.records_received == 3
    b.retire_read_epoch(0)
    assert b.receive_datagram_untrusted(ref.plaintext(22, 102, b"y"), 0.0) == []
    assert b.drops["retired_epoch"] == 1


def test_plaintext_not_taken_moves_no_window(pools: PoolSet) -> None:
    """Nothing authenticates plaintext: a record the caller did not take (a forgery far
    ahead, dropped) leaves the window where it was, so genuine records still pass."""
    b = RecordLayer(pools)
    assert _take_plaintext(b, ref.plaintext(22, 0, b"hello")) == [(0, 0, 22, b"hello")]
    assert take(b.receive_datagram_untrusted(ref.plaintext(22, 1 << 40, b"x"), 0.0))
    assert _take_plaintext(b, ref.plaintext(22, 1, b"genuine")) == [(0, 1, 22, b"genuine")]
    assert b.drops["replay"] == 0


def test_continue_plaintext_after_moves_only_forward(pools: PoolSet) -> None:
    a = RecordLayer(pools)
    a.continue_plaintext_after(41)
    assert a.next_sequence_number(0) == 42
    a.continue_plaintext_after(7)  # never backwards
    assert a.next_sequence_number(0) == 42
    (d,) = send(a, [(0, 22, b"server hello")])
    assert d == ref.plaintext(22, 42, b"server hello")
    a.continue_plaintext_after((1 << 48) - 1)  # no room after it: ignored
    assert a.next_sequence_number(0) == 43
    a.close()


# -- sequence numbers and epochs ------------------------------------------------------------


@pytest.mark.parametrize("seq_bits", [8, 16])
def test_reconstruction_across_the_wrap(pools: PoolSet, seq_bits: int) -> None:
    suite = CipherSuite.TLS_AES_128_GCM_SHA256
    secret = secret_for(suite)
    a, b = make_pair(pools, suite, 3, secret, seq_bits=seq_bits)
    span = 1 << seq_bits
    total = 2 * span + 10 if seq_bits == 8 else span + 10
    # Skip most records (sent but lost) to reach the wrap quickly; keep gaps < span/2.
    for seq in range(total):
        (d,) = send(a, [(3, 23, b"%d" % seq)])
        if seq % 50 == 0 or seq % span in (span - 2, span - 1, 0, 1, 2):
            assert take(b.receive_datagram_untrusted(d, 0.0)) == [(3, seq, 23, b"%d" % seq)]
    # A reordered record from just before the wrap is still placed correctly.
    late = ref.protect(suite, secret, 3, total - 7, 23, b"late", seq_bits=seq_bits)
    assert take(b.receive_datagram_untrusted(late, 0.0)) == [(3, total - 7, 23, b"late")]
    assert sum(b.drops.values()) == 0


def test_epoch_bits_select_keys_and_retire(pools: PoolSet) -> None:
    suite = CipherSuite.TLS_AES_256_GCM_SHA384
    s = {e: secret_for(suite, e) for e in range(1, 9)}
    b = RecordLayer(pools, retire_after=10.0)
    b.install_read_epoch(2, suite, s[2], 0.0)
    b.install_read_epoch(3, suite, s[3], 0.0)
    # Epoch 2 used at t=0: plaintext stays readable until t=10.
    assert take(b.receive_datagram_untrusted(ref.protect(suite, s[2], 2, 0, 22, b"fin"), 0.0))
    assert take(b.receive_datagram_untrusted(ref.plaintext(22, 3, b"ch"), 9.0))
    # Epoch 3 used at t=5: epoch 2 stays readable until t=15.
    assert take(b.receive_datagram_untrusted(ref.protect(suite, s[3], 3, 0, 23, b"a"), 5.0))
    assert b.receive_datagram_untrusted(ref.plaintext(22, 4, b"ch"), 10.0) == []
    assert b.drops["retired_epoch"] == 1
    late2 = ref.protect(suite, s[2], 2, 1, 22, b"late")
    assert take(b.receive_datagram_untrusted(late2, 14.0)) == [(2, 1, 22, b"late")]
    assert b.read_epochs() == [2, 3]
    assert b.receive_datagram_untrusted(ref.protect(suite, s[2], 2, 2, 22, b"x"), 15.0) == []
    assert b.drops["retired_epoch"] == 2
    assert b.read_epochs() == [3]
    # Epochs 4..7 by KeyUpdate: installing 7 retires 3 (same two low bits).
    for e in (4, 5, 6):
        b.install_read_epoch(e, suite, s[e], 20.0)
    assert take(b.receive_datagram_untrusted(ref.protect(suite, s[6], 6, 0, 23, b"6"), 20.0))
    assert take(b.receive_datagram_untrusted(ref.protect(suite, s[3], 3, 1, 23, b"3"), 21.0))
    b.install_read_epoch(7, suite, s[7], 22.0)
    assert b.receive_datagram_untrusted(ref.protect(suite, s[3], 3, 2, 23, b"3"), 22.0) == []
    got = take(b.receive_datagram_untrusted(ref.protect(suite, s[7], 7, 0, 23, b"7"), 22.0))
    assert got == [(7, 0, 23, b"7")]
    assert b.receive_datagram_untrusted(ref.protect(suite, s[8], 8, 0, 23, b"?"), 22.0) == []
    # Epoch 3's bits now select epoch 7 and epoch 8's select the live epoch 4:
    # both fail authentication rather than reaching a wrong key's plaintext.
    assert b.drops["unknown_epoch"] == 0
    assert b.drops["auth_failed"] == 2
    with pytest.raises(LocalProtocolError):
        b.install_read_epoch(5, suite, s[5], 23.0)


def test_unknown_epoch_and_plaintext_epoch(pools: PoolSet) -> None:
    suite = CipherSuite.TLS_AES_128_GCM_SHA256
    b = RecordLayer(pools, max_pending_bytes=0)
    b.install_read_epoch(2, suite, secret_for(suite), 0.0)
    assert (
        b.receive_datagram_untrusted(ref.protect(suite, secret_for(suite), 1, 0, 22, b"e"), 0) == []
    )
    assert b.receive_datagram_untrusted(ref.plaintext(22, 0, b"x", epoch=2), 0) == []
    assert b.drops["unknown_epoch"] == 1 and b.drops["pending_full"] == 1


def test_records_ahead_of_their_keys_are_kept(pools: PoolSet) -> None:
    """ServerHello and the first encrypted handshake records in one datagram (§4.2.1)."""
    suite = CipherSuite.TLS_CHACHA20_POLY1305_SHA256
    s2, s3 = secret_for(suite, 2), secret_for(suite, 3)
    client = RecordLayer(pools, max_pending_bytes=256, pending_lifetime=5.0)
    datagram = (
        ref.plaintext(22, 0, b"server hello")
        + ref.protect(suite, s2, 2, 0, 22, b"encrypted extensions")
        + ref.protect(suite, s2, 2, 1, 22, b"certificate")
    )
    got = take(client.receive_datagram_untrusted(datagram, 0.0))
    assert got == [(0, 0, 22, b"server hello")] and client.pending_count == 1
    client.install_read_epoch(2, suite, s2, 1.0)
    got = take(client.receive_pending(1.0))
    assert got == [(2, 0, 22, b"encrypted extensions"), (2, 1, 22, b"certificate")]
    assert client.pending_count == 0
    # Bounded (four 64-byte slots): a fifth datagram is dropped; stale ones expire.
    for seq in range(5):
        client.receive_datagram_untrusted(ref.protect(suite, s3, 3, seq, 23, b"early"), 2.0)
    assert client.pending_count == 4 and client.drops["pending_full"] == 1
    client.receive_datagram_untrusted(ref.protect(suite, s3, 3, 9, 23, b"later"), 6.0)
    assert client.pending_count == 4 and client.drops["pending_full"] == 2
    client.expire(7.5)
    assert client.drops["pending_expired"] == 4 and client.pending_count == 0
    # Keys that never come: records still without keys are dropped on retry.
    client.receive_datagram_untrusted(ref.protect(suite, s3, 3, 11, 23, b"orphan"), 8.0)
    assert take(client.receive_pending(8.0)) == []
    assert client.drops["unknown_epoch"] == 1
    # close() releases what is still kept.
    client.receive_datagram_untrusted(ref.protect(suite, s3, 3, 10, 23, b"kept"), 9.0)
    assert client.pending_count == 1
    client.close()
    assert pools.in_use == 0


def test_sequence_numbers_never_wrap(pools: PoolSet) -> None:
    suite = CipherSuite.TLS_AES_128_GCM_SHA256
    a = RecordLayer(pools)
    a.install_write_epoch(3, suite, secret_for(suite))
    a._write_now.next_seq = (1 << 48) - 1
    w = a.datagram_writer(1400)
    assert w.add(3, 23, b"last") == RecordNumber(3, (1 << 48) - 1)
    with pytest.raises(LocalProtocolError):
        w.add(3, 23, b"one too many")
    (lease,) = w.finish()
    assert ref.unprotect(suite, secret_for(suite), lease.tobytes(), (1 << 48) - 1)[2] == b"last"
    lease.release()


# -- limits, budgets, CIDs, writer -------------------------------------------------------------


def test_confidentiality_limit(pools: PoolSet) -> None:
    suite = CipherSuite.TLS_AES_128_GCM_SHA256
    a = RecordLayer(pools, confidentiality_limit=3)
    assert not a.key_update_due
    a.install_write_epoch(3, suite, secret_for(suite))
    send(a, [(3, 23, b"x")] * 2)
    assert not a.key_update_due
    send(a, [(3, 23, b"x")])
    assert a.key_update_due and a.records_protected(3) == 3
    a.install_write_epoch(4, suite, secret_for(suite, 4))
    assert not a.key_update_due


def test_integrity_limit(pools: PoolSet) -> None:
    suite = CipherSuite.TLS_AES_128_CCM_8_SHA256
    secret = secret_for(suite)
    b = RecordLayer(pools, integrity_limit=3)
    b.install_read_epoch(3, suite, secret, 0.0)
    good = ref.protect(suite, secret, 3, 0, 23, b"ok, eight+")
    bad = bytearray(good)
    bad[-1] ^= 1
    for _ in range(3):
        assert not b.integrity_limit_reached
        b.receive_datagram_untrusted(bad, 0.0)
    assert b.integrity_limit_reached and b.auth_failures(3) == 3
    # The key is no longer tried.
    assert b.receive_datagram_untrusted(good, 0.0) == []
    assert b.drops["integrity_limit"] == 1
    b.retire_read_epoch(3)
    assert not b.integrity_limit_reached


def test_default_integrity_limits_by_suite() -> None:
    from dtls13.record import INTEGRITY_LIMITS

    assert INTEGRITY_LIMITS[CipherSuite.TLS_AES_128_GCM_SHA256] == 2**36
    assert INTEGRITY_LIMITS[CipherSuite.TLS_AES_128_CCM_8_SHA256] == 2**7


def test_budget_exhaustion_is_a_drop(pools: PoolSet) -> None:
    suite = CipherSuite.TLS_AES_128_GCM_SHA256
    secret = secret_for(suite)
    owner = pools.owner("connection", "test", limit=256)
    b = RecordLayer(pools, owner)
    b.install_read_epoch(3, suite, secret, 0.0)
    record = ref.protect(suite, secret, 3, 0, 23, b"z" * 500)
    assert b.receive_datagram_untrusted(record, 0.0) == []
    assert b.drops["budget"] == 1
    assert b.receive_datagram_untrusted(ref.plaintext(22, 0, b"z" * 500), 0.0) == []
    assert b.drops["budget"] == 2
    with pytest.raises(MemoryBudgetExceeded):
        b.datagram_writer(1400).add(0, 22, b"x")
    pools.release_owner(owner)


def test_cid_must_match_within_a_datagram(pools: PoolSet) -> None:
    suite = CipherSuite.TLS_AES_128_GCM_SHA256
    secret = secret_for(suite)
    b = RecordLayer(pools, read_cid_length=2)
    b.install_read_epoch(3, suite, secret, 0.0)
    r1 = ref.protect(suite, secret, 3, 0, 23, b"1", cid=b"ab")
    r2 = ref.protect(suite, secret, 3, 1, 23, b"2", cid=b"xy")
    assert take(b.receive_datagram_untrusted(r1 + r2, 0.0)) == [(3, 0, 23, b"1")]
    assert b.drops["bad_cid"] == 1
    # A record without the CID we issued is malformed for this receiver.
    assert b.receive_datagram_untrusted(ref.protect(suite, secret, 3, 2, 23, b"3"), 0.0) == []
    assert b.drops["bad_header"] == 1


def test_writer_space_is_exact(pools: PoolSet) -> None:
    for suite in SUITES:
        for cid, padding, seq_bits in itertools.product((None, b"cid"), (0, 16), (8, 16)):
            a = RecordLayer(pools, write_cid=cid, padding=padding, seq_bits=seq_bits)
            a.install_write_epoch(3, suite, secret_for(suite))
            w = a.datagram_writer(300)
            assert w.add(3, 23, b"q" * 50) is not None
            for epoch in (0, 3):
                space = w.space(epoch)
                assert space > 0
                assert w.add(epoch, 23, b"q" * (space + 1)) is None
                assert w.add(epoch, 23, b"q" * space) is not None
                assert w.remaining >= 0
                w.new_datagram()
            leases = w.finish()
            assert all(len(lease) <= 300 for lease in leases)
            assert len(leases) == 2
            for lease in leases:
                lease.release()


def test_writer_abort_and_close_release(pools: PoolSet) -> None:
    a = RecordLayer(pools)
    with a.datagram_writer(1000) as w:
        w.add(0, 22, b"x")
    w2 = a.datagram_writer(1000)
    w2.add(0, 22, b"y")
    w2.new_datagram()
    w2.add(0, 22, b"z")
    a.close()
    assert pools.in_use == 2
    w2.abort()
    with pytest.raises(LocalProtocolError):
        a.datagram_writer(1000)


def test_api_misuse(pools: PoolSet) -> None:
    suite = CipherSuite.TLS_AES_128_GCM_SHA256
    a = RecordLayer(pools)
    with pytest.raises(LocalProtocolError):
        a.datagram_writer(1000).add(3, 23, b"no keys")
    a.install_write_epoch(3, suite, secret_for(suite))
    with pytest.raises(LocalProtocolError):
        a.install_write_epoch(2, suite, secret_for(suite))
    with a.datagram_writer(30000) as w:
        with pytest.raises(LocalProtocolError):
            w.add(3, 23, bytes(20000))
        with pytest.raises(LocalProtocolError):
            w.add(0, 22, bytes(20000))
    with pytest.raises(LocalProtocolError):
        a.datagram_writer(100000)
    with pytest.raises(LocalProtocolError):
        RecordLayer(pools, seq_bits=12)
    assert a.write_epoch == 3 and a.write_epochs() == [0, 3]
    a.retire_write_epoch(0)
    assert a.write_epochs() == [3]


# -- fuzzing the network-facing entry point ------------------------------------------------


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_mutated_datagrams_never_raise(pools: PoolSet, data: st.DataObject) -> None:
    suite = data.draw(st.sampled_from(SUITES))
    secret = secret_for(suite)
    cid = data.draw(st.sampled_from([b"", b"\x01\x02"]))
    b = RecordLayer(pools, read_cid_length=len(cid), replay_window=64)
    b.install_read_epoch(2, suite, secret, 0.0)
    b.install_read_epoch(3, suite, secret, 0.0)
    parts = [
        ref.plaintext(22, 1, b"hello"),
        ref.protect(suite, secret, 2, 7, 22, b"handshake bytes", cid=cid),
        ref.protect(suite, secret, 3, 300, 23, b"app" * 5, seq_bits=8, cid=cid),
        ref.protect(suite, secret, 3, 301, 23, b"last" * 3, with_length=False, cid=cid),
    ]
    datagram = bytearray(b"".join(parts))
    for _ in range(data.draw(st.integers(0, 4))):
        kind = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        pos = data.draw(st.integers(0, max(0, len(datagram) - 1)))
        if kind == "flip" and datagram:
            datagram[pos] ^= data.draw(st.integers(1, 255))
        elif kind == "cut":
            del datagram[pos:]
        else:
            datagram[pos:pos] = data.draw(st.binary(min_size=1, max_size=8))
    got = take(b.receive_datagram_untrusted(bytes(datagram), 0.0))
    assert len(got) + sum(b.drops.values()) + b.pending_count >= 1
    b.close()


def test_statistics_and_counters(pools: PoolSet) -> None:
    suite = CipherSuite.TLS_AES_128_GCM_SHA256
    a, b = make_pair(pools, suite, 3, secret_for(suite))
    (d,) = send(a, [(0, 22, b"ch"), (3, 23, b"one"), (3, 23, b"two")])
    assert a.records_sent == 3 and a.next_sequence_number(3) == 2
    assert a.record_overhead(0) == 13 and a.record_overhead(3) == 5 + 1 + 16
    _take_plaintext(b, d)
    take(b.receive_datagram_untrusted(d, 0.0))
    stats = b.stats
    # Every record of the copy is a replay, the plaintext one taken included (§4.5.1).
    assert stats["records_received"] == 3 and stats["datagrams_received"] == 2
    assert stats["drops"] == {**dict.fromkeys(DROP_REASONS, 0), "replay": 3}
    assert stats["read_epochs"] == [0, 3]
    a.retire_write_epoch(0)
    assert a.records_sent == 3


def test_space_with_omitted_length(pools: PoolSet) -> None:
    suite = CipherSuite.TLS_AES_128_GCM_SHA256
    a, b = make_pair(pools, suite, 3, secret_for(suite), omit_last_length=True)
    with a.datagram_writer(200) as w:
        full = w.space(3)
        last = w.space(3, last=True)
        assert last == full + 2
        assert w.add(3, 23, bytes(last), last=True) is not None
        (lease,) = w.finish()
        assert len(lease) == 200
        got = take(b.receive_datagram_untrusted(lease, 0.0))
        lease.release()
    assert got == [(3, 0, 23, bytes(last))]


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    suite=st.sampled_from(SUITES),
    seq_bits=st.sampled_from([8, 16]),
    padding=st.sampled_from([0, 1, 7, 32]),
    cid=st.sampled_from([b"", b"\xaa", b"12345678"]),
    omit=st.booleans(),
    mtu=st.integers(100, 1500),
    payloads=st.lists(st.binary(max_size=300), min_size=1, max_size=8),
)
def test_packed_datagrams_round_trip(
    pools: PoolSet,
    suite: CipherSuite,
    seq_bits: int,
    padding: int,
    cid: bytes,
    omit: bool,
    mtu: int,
    payloads: list[bytes],
) -> None:
    secret = secret_for(suite, 1)
    a = RecordLayer(
        pools, seq_bits=seq_bits, padding=padding, write_cid=cid or None, omit_last_length=omit
    )
    b = RecordLayer(pools, read_cid_length=len(cid))
    a.install_write_epoch(3, suite, secret)
    b.install_read_epoch(3, suite, secret, 0.0)
    sent = []
    with a.datagram_writer(mtu) as w:
        for i, payload in enumerate(payloads):
            epoch = 0 if i % 3 == 2 else 3
            space = max(w.space(epoch), 0)
            part = payload[:space] if space < len(payload) else payload
            last = i == len(payloads) - 1
            if space < len(part) or w.add(epoch, 23 if epoch else 22, part, last=last) is None:
                w.new_datagram()
                part = part[: w.space(epoch, last=last)]
                assert w.add(epoch, 23 if epoch else 22, part, last=last) is not None
            sent.append((epoch, 23 if epoch else 22, part))
        leases = w.finish()
        got = []
        for lease in leases:
            assert len(lease) <= mtu
            got += [(e, t, p) for e, _s, t, p in take(b.receive_datagram_untrusted(lease, 0.0))]
            lease.release()
    assert got == sent
    assert sum(b.drops.values()) == 0


@pytest.mark.parametrize("suite", SUITES, ids=lambda s: s.name)
def test_bad_inner_content_types_and_minimal_forgeries(pools: PoolSet, suite: CipherSuite) -> None:
    secret = secret_for(suite)
    b = RecordLayer(pools)
    b.install_read_epoch(3, suite, secret, 0.0)
    # Heartbeat (24) is not processed; all-zero TLSInnerPlaintext has no type (RFC 8446 §5.4).
    assert b.receive_datagram_untrusted(ref.protect(suite, secret, 3, 0, 24, b"hb" * 8), 0) == []
    assert (
        b.receive_datagram_untrusted(ref.protect(suite, secret, 3, 1, 0, b"", padding=16), 0) == []
    )
    assert b.drops["bad_content_type"] == 2
    # Forgeries of exactly the mask sample size and around it fail authentication.
    for n in (16, 17, 24):
        assert b.receive_datagram_untrusted(bytes([0x2F, 0, 0, 0, n]) + bytes(n), 0) == []
    assert b.drops["auth_failed"] == 3
    assert b.receive_datagram_untrusted(bytes([0x2F, 0, 0, 0, 15]) + bytes(15), 0) == []
    assert b.drops["too_short"] == 1
    alert = ref.protect(suite, secret, 3, 0, 21, b"\x01\x00", padding=8)
    assert take(b.receive_datagram_untrusted(alert, 0)) == [(3, 0, 21, b"\x01\x00")]


def test_space_when_nothing_fits(pools: PoolSet) -> None:
    suite = CipherSuite.TLS_AES_128_GCM_SHA256
    a = RecordLayer(pools, padding=32, write_cid=b"12345678")
    a.install_write_epoch(3, suite, secret_for(suite))
    with a.datagram_writer(60) as w:
        assert w.space(3) == -1
        assert w.add(3, 23, b"") is None
        assert w.space(0) == 47
    with a.datagram_writer(61) as w:
        assert w.space(3) == 31  # one 32-byte padded inner plaintext
        assert w.add(3, 23, bytes(32)) is None
        assert w.add(3, 23, bytes(31)) is not None
        assert w.space(0) == -1 and w.space(3) == -1 and w.remaining == 0


def test_drops_are_shared_zeros_until_the_first_drop(pools: PoolSet) -> None:
    """Every place that counts a drop, each on a layer that has not dropped before: the
    count lands in a dict of that layer's own; the shared zeros stay zeros."""
    from dtls13.record.layer import NO_DROPS

    suite = CipherSuite.TLS_AES_128_GCM_SHA256
    s2, s3 = secret_for(suite, 2), secret_for(suite, 3)
    bad = bytearray(ref.protect(suite, s3, 3, 0, 23, b"established"))
    bad[-1] ^= 1
    two_ahead = ref.protect(suite, s2, 2, 0, 22, b"a" * 20) + ref.protect(
        suite, s2, 2, 1, 22, b"b" * 20
    )
    tiny = pools.owner("connection", "tiny", limit=1)

    def general(layer: RecordLayer) -> None:  # compiled general path
        assert layer.receive_datagram_untrusted(b"", 0.0) == []

    def established(layer: RecordLayer) -> None:  # compiled established path
        layer.install_read_epoch(3, suite, s3, 0.0)
        assert layer.receive_app_untrusted(bytes(bad), 0.0) == []

    def kept_without_memory(layer: RecordLayer) -> None:  # compiled: records ahead of keys
        assert layer.receive_datagram_untrusted(two_ahead, 0.0) == []
        assert layer.pending_count == 0

    def tentative(layer: RecordLayer) -> None:  # Python: a client's CID offer undecided
        layer.tentative_cid_length = 4
        assert layer.receive_datagram_untrusted(b"\x3f", 0.0) == []

    def expired(layer: RecordLayer) -> None:  # Python: kept records that got no keys
        take(layer.receive_datagram_untrusted(two_ahead, 0.0))
        assert layer.pending_count == 1
        layer.expire(60.0)

    cases = [
        (general, None, "bad_header", 1),
        (established, None, "auth_failed", 1),
        (kept_without_memory, tiny, "budget", 2),
        (tentative, None, "bad_header", 1),
        (expired, None, "pending_expired", 2),
    ]
    for run, owner, reason, count in cases:
        layer = RecordLayer(pools, owner)
        assert layer.drops is NO_DROPS
        run(layer)
        expected = {**dict.fromkeys(DROP_REASONS, 0), reason: count}
        assert type(layer.drops) is dict and layer.drops == expected, run.__name__
        assert layer.statistics()["drops"] == expected
        # A second drop goes to the same dict.
        own = layer.drops
        layer.own_drops()[reason] += 1
        assert layer.drops is own and own[reason] == count + 1
        assert dict(NO_DROPS) == dict.fromkeys(DROP_REASONS, 0)
        layer.close()
    with pytest.raises(TypeError):
        NO_DROPS["replay"] = 1  # type: ignore[index]
    pools.release_owner(tiny)
    assert pools.in_use == 0


def test_every_read_epoch_past_its_time_retires_at_once(pools: PoolSet) -> None:
    """Older epochs get their retire time when a newer one is used; once that newer one is
    retired early (its key exhausted, say), the others' time still ends them together."""
    suite = CipherSuite.TLS_AES_128_GCM_SHA256
    b = RecordLayer(pools, retire_after=10.0)
    for epoch in (2, 3, 4):
        b.install_read_epoch(epoch, suite, secret_for(suite, epoch), 0.0)
    got = b.receive_datagram_untrusted(
        ref.protect(suite, secret_for(suite, 4), 4, 0, 23, b"x"), 1.0
    )
    assert take(got) == [(4, 0, 23, b"x")]
    b.retire_read_epoch(4)
    assert b.read_epochs() == [0, 2, 3]
    b.expire(10.5)
    assert b.read_epochs() == [0, 2, 3]
    b.expire(11.0)
    assert b.read_epochs() == []
    assert (
        b.receive_datagram_untrusted(ref.protect(suite, secret_for(suite, 3), 3, 0, 23, b"y"), 12.0)
        == []
    )
    assert b.drops["retired_epoch"] == 1
    b.close()
    assert pools.in_use == 0
