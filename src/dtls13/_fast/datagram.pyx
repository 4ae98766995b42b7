# cython: language_level=3, boundscheck=False, wraparound=False
# cython: cdivision=True, initializedcheck=False
"""Datagrams of records: the send and receive state of epochs, the datagram writer and the
receive path that deprotects every record of a datagram (RFC 9147 §4)."""

cimport cython
from cpython.buffer cimport PyBuffer_Release
from cpython.memoryview cimport PyMemoryView_FromObject
from libc.stdint cimport uint8_t, uint64_t
from libc.string cimport memcmp, memcpy, memmove

from ._common cimport (
    _MASK_SAMPLE,
    _MAX_PLAINTEXT,
    _PLAINTEXT_HEADER,
    _SEQ_LIMIT,
    _get_read,
    _get_write,
)
from .memory cimport Lease
from .protection cimport OPEN_AUTH_FAILED, OPEN_REPLAY, RecordCipher
from .record cimport (
    RecordNumber,
    ReplayWindow,
    _Header,
    _parse_header,
    unified_header_length,
)

from .errors import EncodeError, MemoryBudgetExceeded
from .record import encode_plaintext_header


@cython.final
@cython.no_gc  # holds only its cipher: never in a cycle (no GC header per epoch)
cdef class WriteEpoch:
    """Send state of one epoch: its cipher (None for plaintext epoch 0), the next
    sequence number, records protected so far and the confidentiality limit."""

    cdef readonly uint64_t epoch
    cdef readonly RecordCipher cipher
    cdef public uint64_t next_seq
    cdef public uint64_t protected
    cdef public uint64_t limit

    def __cinit__(self, uint64_t epoch, RecordCipher cipher, uint64_t limit):
        self.epoch = epoch
        self.cipher = cipher
        self.limit = limit

    def __repr__(self):
        return f"<WriteEpoch {self.epoch} next_seq={self.next_seq} protected={self.protected}>"


@cython.final
cdef class DatagramWriter:
    """Packs records into pooled datagram leases of at most `mtu` bytes.

    Made by RecordLayer.datagram_writer(mtu), which snapshots the layer's
    sending options; its write epochs are looked up in the layer on each record (its
    `_write_now`, the newest, and `_write_older`), so epochs installed or retired while
    the writer is open count. `add()` returns the record's RecordNumber, or None when
    the record does not fit the current datagram (call `new_datagram()` and
    retry). `finish()` hands the datagrams over: the caller sends `len(lease)`
    bytes of each and releases it. `abort()` (or leaving a `with` block)
    releases whatever was not handed over.
    """

    cdef object _layer
    cdef object _acquire
    cdef object _owner
    cdef object _error
    cdef readonly Py_ssize_t mtu
    cdef Py_ssize_t _pos
    cdef Lease _lease
    cdef list _datagrams
    cdef int _seq_bits
    cdef object _cid
    cdef Py_ssize_t _cid_length
    cdef bint _omit_last_length
    cdef Py_ssize_t _padding

    def __cinit__(self, layer, acquire, owner, Py_ssize_t mtu, int seq_bits, cid,
                  bint omit_last_length, Py_ssize_t padding, error):
        if seq_bits != 8 and seq_bits != 16:
            raise error("seq_bits must be 8 or 16")
        if not _PLAINTEXT_HEADER + 1 <= mtu <= 65535:
            raise error(f"MTU {mtu} is outside {_PLAINTEXT_HEADER + 1}..65535")
        self._layer = layer
        self._acquire = acquire
        self._owner = owner
        self._error = error
        self.mtu = mtu
        self._datagrams = []
        self._seq_bits = seq_bits
        self._cid = cid if cid else None
        self._cid_length = len(cid) if cid else 0
        self._omit_last_length = omit_last_length
        self._padding = padding

    @property
    def remaining(self):
        """Bytes left in the current datagram."""
        return self.mtu - self._pos

    @property
    def datagram_count(self):
        """Datagrams holding at least one record so far."""
        return len(self._datagrams) + (1 if self._pos else 0)

    cdef WriteEpoch _state(self, epoch):
        cdef WriteEpoch st = <WriteEpoch?>self._layer._write_now
        cdef uint64_t e
        try:
            e = epoch
        except (OverflowError, TypeError):
            raise self._error(f"no write keys for epoch {epoch}") from None
        if st.epoch == e:
            return st
        for obj in <tuple?>self._layer._write_older:
            if (<WriteEpoch>obj).epoch == e:
                return <WriteEpoch>obj
        raise self._error(f"no write keys for epoch {epoch}")

    def space(self, epoch, *, bint last=False):
        """The largest payload one record of `epoch` can carry in this datagram.

        -1 when not even an empty record fits (0: only an empty one does).
        """
        return self._space(self._state(epoch), last)

    cdef Py_ssize_t _space(self, WriteEpoch st, bint last):
        cdef Py_ssize_t remaining = self.mtu - self._pos, avail, tag
        if st.cipher is None:
            avail = remaining - _PLAINTEXT_HEADER
        else:
            tag = st.cipher.tag_length
            avail = remaining - unified_header_length(
                self._cid_length, self._seq_bits, not (last and self._omit_last_length)) - tag
            if avail < _MASK_SAMPLE - tag:
                return -1  # the padded minimum ciphertext does not fit
            if self._padding > 1:
                avail -= avail % self._padding
            avail -= 1  # the content type byte
        if avail < 0:
            return -1
        return avail if avail < _MAX_PLAINTEXT else _MAX_PLAINTEXT

    def add(self, epoch, int content_type, payload, *, bint last=False):
        """Append one record; None if it does not fit the current datagram.

        `last=True` ends the datagram after this record (and omits its length
        field when the layer's `omit_last_length` is set). Raises
        MemoryBudgetExceeded when no datagram lease can be had, and the layer's
        LocalProtocolError for an unknown epoch, an oversized payload or
        exhausted sequence numbers (RFC 9147 §4.2.1: rekey before they wrap).
        """
        return self._add(self._state(epoch), content_type, payload, last)

    cdef object _add(self, WriteEpoch st, int content_type, payload, bint last):
        cdef uint64_t seq = st.next_seq
        cdef Py_ssize_t total
        if seq >= _SEQ_LIMIT:
            raise self._error(f"sequence numbers of epoch {st.epoch} are exhausted")
        if self._lease is None:
            self._lease = self._acquire(self.mtu, self._owner)
        try:
            if st.cipher is None:
                total = _write_plaintext(self._lease, self._pos, content_type, seq, payload)
            else:
                total = st.cipher.seal_into(
                    self._lease, self._pos, st.epoch, seq, self._seq_bits, self._cid,
                    not (last and self._omit_last_length), content_type, payload,
                    self._padding)
        except EncodeError as exc:
            raise self._error(str(exc)) from None
        if total < 0:
            return None
        if st.cipher is not None:
            st.protected += 1
        st.next_seq = seq + 1
        self._pos += total
        if last:
            self.new_datagram()
        return RecordNumber(st.epoch, seq)

    def new_datagram(self):
        """Close the current datagram (if it holds anything); later records go to a new one."""
        cdef Lease lease = self._lease
        if lease is None:
            return
        self._lease = None
        if self._pos:
            lease.length = self._pos
            self._datagrams.append(lease)
            self._pos = 0
        else:
            lease.release()

    def finish(self):
        """The datagrams built so far (a list of leases); the caller sends and releases each."""
        self.new_datagram()
        out = self._datagrams
        self._datagrams = []
        return out

    def abort(self):
        """Release everything this writer holds without handing it over."""
        for lease in self.finish():
            lease.release()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.abort()
        return False


cdef Py_ssize_t _write_plaintext(Lease lease, Py_ssize_t pos, int content_type, uint64_t seq,
                                 payload) except -2:
    """A DTLSPlaintext record (epoch 0) at lease[pos:]; -1 if it does not fit."""
    cdef Py_buffer pl, b
    cdef Py_ssize_t total
    _get_read(payload, &pl)
    try:
        if pl.len > _MAX_PLAINTEXT:
            raise EncodeError(f"payload of {pl.len} bytes exceeds 2^14")
        total = _PLAINTEXT_HEADER + pl.len
        _get_write(lease, &b)
        try:
            if pos + total > b.len:
                return -1
        finally:
            PyBuffer_Release(&b)
        encode_plaintext_header(lease, pos, content_type, 0, seq, pl.len)
        _get_write(lease, &b)
        try:
            memmove(<unsigned char *>b.buf + pos + _PLAINTEXT_HEADER, pl.buf, pl.len)
        finally:
            PyBuffer_Release(&b)
    finally:
        PyBuffer_Release(&pl)
    return total


@cython.final
@cython.no_gc  # its cipher, its window and a float or None: never in a cycle
cdef class ReadEpoch:
    """Receive state of one protected epoch: cipher, replay window, failed
    authentications (RFC 9147 §4.5.3) and when it retires (None: not yet set)."""

    cdef readonly uint64_t epoch
    cdef readonly RecordCipher cipher
    cdef readonly ReplayWindow window
    cdef public uint64_t failures
    cdef public uint64_t limit
    cdef public object retire_at

    def __cinit__(self, uint64_t epoch, RecordCipher cipher not None, Py_ssize_t window,
                  uint64_t limit):
        self.epoch = epoch
        self.cipher = cipher
        self.window = ReplayWindow(window)
        self.limit = limit
        self.retire_at = None

    def __repr__(self):
        return f"<ReadEpoch {self.epoch} failures={self.failures} retire_at={self.retire_at}>"


@cython.final
@cython.freelist(64)
cdef class InboundRecord:
    """A record received and deprotected; `payload` is a view into a pooled lease.

    Call `release()` exactly once when done with the payload.
    """

    cdef readonly uint64_t epoch
    cdef readonly uint64_t sequence_number
    cdef readonly object content_type
    cdef readonly object payload
    cdef Lease _lease

    @property
    def record_number(self):
        return RecordNumber(self.epoch, self.sequence_number)

    def tobytes(self):
        return self.payload.tobytes()

    def release(self):
        """Give the payload's lease back to its pool (once)."""
        self.payload.release()
        self._lease.release()

    def __repr__(self):
        return (f"<InboundRecord {self.content_type!r} epoch={self.epoch} "
                f"seq={self.sequence_number} {len(self.payload)} B>")


cdef inline InboundRecord _inbound(uint64_t epoch, uint64_t seq, object ctype, Lease lease):
    cdef InboundRecord r = InboundRecord.__new__(InboundRecord)
    r.epoch = epoch
    r.sequence_number = seq
    r.content_type = ctype
    r._lease = lease
    r.payload = PyMemoryView_FromObject(lease)
    return r


cdef void _count(object layer, str reason, Py_ssize_t n=1) except *:
    """Count `n` records dropped for `reason` in the layer's `drops`: a dict of its own
    from the first drop on (until then it is a read-only mapping of zeros all share)."""
    cdef object drops = layer.drops
    if type(drops) is not dict:
        drops = layer.own_drops()
    (<dict>drops)[reason] = (<dict>drops).get(reason, 0) + n


cdef inline ReadEpoch _with_bits(ReadEpoch newest, tuple older, uint64_t bits):
    """The live read epoch whose two low bits are `bits` (at most one is), or None."""
    if newest is not None and (newest.epoch & 3) == bits:
        return newest
    for obj in older:
        if ((<ReadEpoch>obj).epoch & 3) == bits:
            return <ReadEpoch>obj
    return None


def read_datagram_untrusted(data, Py_ssize_t cid_length, ReadEpoch read_newest,
                            tuple read_older, int retired_bits, ReplayWindow plaintext,
                            acquire, owner, layer, dict content_types, list pending=None,
                            Py_ssize_t pending_budget=0):
    """Every valid record of a datagram; invalid ones are counted in `layer.drops` by
    reason (see _count).

    `plaintext` is epoch 0's replay window while DTLSPlaintext records are read (checked
    here, updated by the caller for records it took), None once epoch 0 retired (its
    records then count as "retired_epoch"). `read_newest` is the newest live ReadEpoch
    (None: none), `read_older` the other live ones (no two share their two low bits, which
    the header carries); `retired_bits` has bit (1 << b) set for the epoch bits b of
    retired epochs (their records count as "retired_epoch"); `content_types` maps a
    content type value to the object put in the record. Records of an epoch neither live
    nor retired (its keys may come next) are copied whole, in order, into one lease per
    datagram appended to `pending` as ``(lease, records in it)`` (RFC 9147 §4.2.1 allows
    buffering them), if that lease's slot fits in `pending_budget` bytes; those that do
    not count as "pending_full". Returns
    ``(records, newest epoch that deprotected a record or -1)``. Never raises
    for anything in `data`.
    """
    cdef Py_buffer v
    cdef list out = []
    cdef long long newest = -1
    cdef const uint8_t *p
    cdef Py_ssize_t n, o = 0, first_cid = -1, start, index
    cdef _Header h
    cdef ReadEpoch st
    cdef Lease lease
    cdef uint64_t seq = 0
    cdef int ctype = 0
    # Records ahead of their keys: (offset, size) pairs, `kept_bytes` in all.
    cdef list kept = None
    cdef Py_ssize_t kept_bytes = 0, size
    try:
        _get_read(data, &v)
    except (TypeError, BufferError):
        _count(layer, "bad_header")
        return (out, newest)
    try:
        p = <const uint8_t *>v.buf
        n = v.len
        if n == 0:
            _count(layer, "bad_header")
        while o < n:
            if _parse_header(p, n, o, cid_length, &h):
                # Later records cannot be located: the rest goes too.
                _count(layer, "bad_header")
                break
            start = o + h.header_length
            if h.first < 0x20:
                o = start + h.length
                if h.epoch != 0:
                    _count(layer, "unknown_epoch")
                    continue
                if plaintext is None:
                    _count(layer, "retired_epoch")
                    continue
                # §4.5.1: "a separate sliding window is needed for each epoch", epoch 0
                # included: a copy of a record already taken is a replay. Nothing
                # authenticates plaintext, so only the connection marks a record taken
                # (RecordLayer.plaintext_taken, for a hello it used): a forged record
                # numbered far ahead and dropped must not push genuine ones out.
                if not plaintext.check(h.seq):
                    _count(layer, "replay")
                    continue
                try:
                    lease = acquire(h.length, owner)
                except MemoryBudgetExceeded:
                    _count(layer, "budget")
                    continue
                memcpy(lease._ptr, p + start, h.length)
                out.append(_inbound(0, h.seq, content_types[h.first], lease))
                continue
            if cid_length > 0:
                if first_cid < 0:
                    first_cid = o
                elif memcmp(p + o + 1, p + first_cid + 1, cid_length) != 0:
                    # §4: "the rest of the datagram MUST be discarded".
                    _count(layer, "bad_cid")
                    break
            st = _with_bits(read_newest, read_older, h.epoch)
            if st is None:
                if (pending is not None and h.length >= _MASK_SAMPLE
                        and not (retired_bits >> h.epoch) & 1):
                    size = h.header_length + h.length
                    if kept_bytes + size <= pending_budget:
                        if kept is None:
                            kept = []
                        kept.append((o, size))
                        kept_bytes += size
                    else:
                        _count(layer, "pending_full")
                else:
                    _count(layer, "retired_epoch" if (retired_bits >> h.epoch) & 1
                           else "unknown_epoch")
                o = start + h.length
                continue
            # §4.2.3: "Receivers MUST reject shorter records as if they had failed
            # deprotection" (this also leaves room for the tag).
            if h.length < _MASK_SAMPLE:
                _count(layer, "too_short")
                o = start + h.length
                continue
            if st.failures >= st.limit:
                _count(layer, "integrity_limit")
                o = start + h.length
                continue
            try:
                lease = acquire(h.length - st.cipher.tag_length, owner)
            except MemoryBudgetExceeded:
                _count(layer, "budget")
                o = start + h.length
                continue
            try:
                index = st.cipher._open(p + o, h.header_length, h.length, st.window, lease,
                                        &seq, &ctype)
            except BaseException:
                lease.release()
                raise
            o = start + h.length
            if index < 0:
                lease.release()
                if index == OPEN_AUTH_FAILED:
                    # §4.5.3: "count the number of received packets that fail authentication".
                    st.failures += 1
                    _count(layer, "auth_failed")
                elif index == OPEN_REPLAY:
                    _count(layer, "replay")
                else:
                    _count(layer, "bad_content_type")
                continue
            lease._length = index
            out.append(_inbound(st.epoch, seq, content_types[ctype], lease))
            if <long long>st.epoch > newest:
                newest = <long long>st.epoch
        if kept is not None:
            _keep(p, kept, kept_bytes, pending, pending_budget, acquire, owner, layer)
    finally:
        PyBuffer_Release(&v)
    return (out, newest)


cdef void _keep(const uint8_t *p, list kept, Py_ssize_t total, list pending,
                Py_ssize_t budget, acquire, owner, layer) except *:
    """One lease for the records of a datagram that came ahead of their keys, back to
    back in their order (a record without a length field is the datagram's last): the
    memory a peer pins this way is what it sent, rounded up to one size class."""
    cdef Lease lease
    cdef Py_ssize_t at = 0, start, size
    try:
        lease = acquire(total, owner)
    except MemoryBudgetExceeded:
        _count(layer, "budget", len(kept))
        return
    if lease._capacity > budget:
        # Its slot would pass the cap even though the bytes fit.
        lease.release()
        _count(layer, "pending_full", len(kept))
        return
    for start, size in kept:
        memcpy(lease._ptr + at, p + start, size)
        at += size
    pending.append((lease, len(kept)))


include "established.pxi"
