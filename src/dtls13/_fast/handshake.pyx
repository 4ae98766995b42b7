# cython: language_level=3, boundscheck=False, wraparound=False
# cython: cdivision=True, initializedcheck=False
"""Handshake hot paths: fragment coverage for reassembly, the stateless scan of a first
ClientHello, HMAC for the key schedule, the transcript hash."""

cimport cython
from cpython.buffer cimport (
    PyBUF_SIMPLE,
    PyBUF_WRITABLE,
    PyBuffer_Release,
    PyObject_GetBuffer,
)
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.stdint cimport uint8_t
from libc.stdlib cimport free, realloc
from libc.string cimport memcmp, memcpy, memmove

from ._common cimport _CT_HANDSHAKE, _get_read
from .record cimport _Header, _parse_header

from .errors import EncodeError

# Return codes of FragmentCoverage.write_fragment (never exceptions: the
# bytes are untrusted and the caller turns these into an alert or a drop).
FRAGMENT_MISMATCH = -1
FRAGMENT_TOO_SCATTERED = -2


@cython.final
cdef class FragmentCoverage:
    """Which byte ranges of a handshake message of `length` bytes have arrived.

    Ranges are kept sorted, disjoint and merged (adjacent ranges join), so
    every operation is O(ranges); `max_ranges` (-1: unbounded) caps how
    scattered a message may become before fragments are refused.
    """

    cdef Py_ssize_t *_starts
    cdef Py_ssize_t *_ends
    cdef Py_ssize_t _count
    cdef Py_ssize_t _alloc
    cdef readonly Py_ssize_t length
    cdef readonly Py_ssize_t covered
    cdef readonly Py_ssize_t max_ranges

    def __cinit__(self, Py_ssize_t length, Py_ssize_t max_ranges=-1):
        if length < 0:
            raise ValueError("negative message length")
        if max_ranges == 0 or max_ranges < -1:
            raise ValueError("max_ranges must be positive or -1")
        self.length = length
        self.max_ranges = max_ranges
        self._alloc = 4
        self._starts = <Py_ssize_t *>realloc(NULL, self._alloc * sizeof(Py_ssize_t))
        self._ends = <Py_ssize_t *>realloc(NULL, self._alloc * sizeof(Py_ssize_t))
        if self._starts == NULL or self._ends == NULL:
            raise MemoryError()

    def __dealloc__(self):
        free(self._starts)
        free(self._ends)

    @property
    def complete(self):
        """Every byte of the message has arrived (a 0-byte message is complete)."""
        return self.covered == self.length

    @property
    def range_count(self):
        return self._count

    def ranges(self):
        """The covered ranges as sorted (start, end) pairs, end exclusive."""
        return [(self._starts[i], self._ends[i]) for i in range(self._count)]

    cdef int _check(self, Py_ssize_t offset, Py_ssize_t length) except -1:
        if offset < 0 or length < 0 or offset + length > self.length:
            raise ValueError(
                f"range [{offset}, {offset + length}) outside the message of {self.length} bytes"
            )
        return 0

    cdef Py_ssize_t _first_touching(self, Py_ssize_t start):
        """Index of the first range whose end is >= start (touching counts)."""
        cdef Py_ssize_t lo = 0, hi = self._count, mid
        while lo < hi:
            mid = (lo + hi) >> 1
            if self._ends[mid] < start:
                lo = mid + 1
            else:
                hi = mid
        return lo

    cdef Py_ssize_t _overlap(self, Py_ssize_t start, Py_ssize_t end):
        """Bytes of [start, end) already covered."""
        cdef Py_ssize_t i = self._first_touching(start), total = 0, a, b
        while i < self._count and self._starts[i] < end:
            a = self._starts[i] if self._starts[i] > start else start
            b = self._ends[i] if self._ends[i] < end else end
            if b > a:
                total += b - a
            i += 1
        return total

    cdef Py_ssize_t _ranges_after(self, Py_ssize_t start, Py_ssize_t end):
        """How many ranges there would be after adding [start, end)."""
        cdef Py_ssize_t i = self._first_touching(start), j
        j = i
        while j < self._count and self._starts[j] <= end:
            j += 1
        return self._count - (j - i) + 1

    cdef Py_ssize_t _add(self, Py_ssize_t start, Py_ssize_t end) except -1:
        cdef Py_ssize_t i, j, shift, new_alloc
        cdef Py_ssize_t *p
        if end <= start:
            return 0
        cdef Py_ssize_t fresh = (end - start) - self._overlap(start, end)
        i = self._first_touching(start)
        j = i
        while j < self._count and self._starts[j] <= end:
            j += 1
        # Ranges i..j-1 touch [start, end): merge them into one at index i.
        if j > i:
            if self._starts[i] < start:
                start = self._starts[i]
            if self._ends[j - 1] > end:
                end = self._ends[j - 1]
        shift = 1 - (j - i)
        if shift > 0 and self._count + 1 > self._alloc:
            new_alloc = self._alloc * 2
            p = <Py_ssize_t *>realloc(self._starts, new_alloc * sizeof(Py_ssize_t))
            if p == NULL:
                raise MemoryError()
            self._starts = p
            p = <Py_ssize_t *>realloc(self._ends, new_alloc * sizeof(Py_ssize_t))
            if p == NULL:
                raise MemoryError()
            self._ends = p
            self._alloc = new_alloc
        if shift != 0:
            memmove(self._starts + j + shift, self._starts + j,
                    (self._count - j) * sizeof(Py_ssize_t))
            memmove(self._ends + j + shift, self._ends + j,
                    (self._count - j) * sizeof(Py_ssize_t))
            self._count += shift
        self._starts[i] = start
        self._ends[i] = end
        self.covered += fresh
        return fresh

    def add(self, Py_ssize_t offset, Py_ssize_t length):
        """Mark [offset, offset+length) as arrived; returns the newly covered bytes."""
        self._check(offset, length)
        return self._add(offset, offset + length)

    def covers(self, Py_ssize_t offset, Py_ssize_t length):
        """True when every byte of [offset, offset+length) has already arrived."""
        self._check(offset, length)
        return self._overlap(offset, offset + length) == length

    def overlaps(self, Py_ssize_t offset, Py_ssize_t length):
        """True when some byte of [offset, offset+length) has already arrived."""
        self._check(offset, length)
        return self._overlap(offset, offset + length) > 0

    def write_fragment(self, dest, Py_ssize_t offset, data, Py_ssize_t base=-1):
        """Merge a fragment into `dest` (the message buffer, at least `length` bytes).

        With `base` >= 0, `dest` holds only the message bytes from `base` on (one
        chunk of a message stored in pieces) and the fragment must lie inside it.
        Bytes already covered are compared, not rewritten; only the gaps are
        copied, so each byte is written once. Returns the newly covered byte
        count, FRAGMENT_MISMATCH (-1) when an already received byte differs
        (nothing is written then), or FRAGMENT_TOO_SCATTERED (-2) when the
        fragment would leave more than `max_ranges` disjoint ranges.
        """
        cdef Py_buffer dst, src
        cdef Py_ssize_t start, end, i, a, b, cur
        cdef char *d
        cdef const char *s
        PyObject_GetBuffer(data, &src, PyBUF_SIMPLE)
        try:
            self._check(offset, src.len)
            start = offset
            end = offset + src.len
            if start == end:
                return 0
            if self.max_ranges > 0 and self._ranges_after(start, end) > self.max_ranges:
                return FRAGMENT_TOO_SCATTERED
            PyObject_GetBuffer(dest, &dst, PyBUF_WRITABLE)
            try:
                if base < 0:
                    if dst.len < self.length:
                        raise ValueError(
                            f"destination of {dst.len} bytes is shorter than the message"
                        )
                    base = 0
                elif start < base or end - base > dst.len:
                    raise ValueError(
                        f"range [{start}, {end}) outside the destination's "
                        f"[{base}, {base + dst.len})"
                    )
                # d + x addresses message byte x (only bytes inside [base, end) are touched).
                d = <char *>dst.buf - base
                s = <const char *>src.buf
                # RFC 9147 §5.5: receivers "SHOULD abort the handshake with an
                # illegal_parameter alert if the value of a byte changes".
                i = self._first_touching(start)
                while i < self._count and self._starts[i] < end:
                    a = self._starts[i] if self._starts[i] > start else start
                    b = self._ends[i] if self._ends[i] < end else end
                    if b > a and memcmp(d + a, s + (a - start), b - a) != 0:
                        return FRAGMENT_MISMATCH
                    i += 1
                # Copy only the gaps between covered ranges.
                cur = start
                i = self._first_touching(start)
                while i < self._count and self._starts[i] < end and cur < end:
                    if self._starts[i] > cur:
                        memcpy(d + cur, s + (cur - start), self._starts[i] - cur)
                    if self._ends[i] > cur:
                        cur = self._ends[i]
                    i += 1
                if cur < end:
                    memcpy(d + cur, s + (cur - start), end - cur)
            finally:
                PyBuffer_Release(&dst)
            return self._add(start, end)
        finally:
            PyBuffer_Release(&src)

    def __repr__(self):
        return f"<FragmentCoverage {self.covered}/{self.length} B in {self._count} ranges>"


# -- the first ClientHello of a stranger, scanned without decoding it ---------------------

cdef enum:
    _SCAN_MAX_EXTENSIONS = 64


cdef inline Py_ssize_t _u16(const uint8_t *p, Py_ssize_t o) noexcept nogil:
    return (p[o] << 8) | p[o + 1]


cdef tuple _u16_list(const uint8_t *p, Py_ssize_t o, Py_ssize_t n):
    return tuple([_u16(p, o + 2 * i) for i in range(n // 2)])


def scan_client_hello(data, Py_ssize_t max_hello):
    """The parts of a lone first ClientHello that a stateless HelloRetryRequest needs.

    `data` must be one DTLSPlaintext handshake record in epoch 0 holding exactly one
    whole ClientHello fragment (message_seq 0, at most `max_hello` bytes) whose body is
    well formed as ``pull_client_hello`` reads it (no duplicate extension, nothing after
    the extensions) and whose supported_versions, supported_groups and key_share decode
    as the extension codecs decode them, with no cookie extension and an empty legacy
    cookie. Then returns ``(body_offset, body_length, cipher_suites, versions, groups,
    share_groups, record_seq, offers_psk)`` (tuples of ints, None for an absent extension; the
    record's sequence number, which a stateless reply repeats); anything else, well
    formed or not, gives None and is the caller's slow path. Never raises on the bytes.
    """
    cdef Py_buffer v
    cdef _Header h
    cdef const uint8_t *p
    cdef Py_ssize_t n, o, end, body, length, k, ext_end, t, el, i, count = 0
    cdef bint offers_psk = False
    cdef Py_ssize_t suites_at = 0, suites_len = 0
    cdef Py_ssize_t versions_at = -1, groups_at = -1, shares_at = -1
    cdef Py_ssize_t versions_len = 0, groups_len = 0, shares_len = 0
    cdef int seen[_SCAN_MAX_EXTENSIONS]
    _get_read(data, &v)
    try:
        p = <const uint8_t *>v.buf
        n = v.len
        if _parse_header(p, n, 0, 0, &h) or h.first != _CT_HANDSHAKE or h.epoch != 0:
            return None
        if h.header_length + h.length != n or h.length < 12:
            return None
        o = h.header_length
        length = (p[o + 1] << 16) | (p[o + 2] << 8) | p[o + 3]
        if (p[o] != 1 or length > max_hello or _u16(p, o + 4) != 0
                or p[o + 6] | p[o + 7] | p[o + 8]
                or ((p[o + 9] << 16) | (p[o + 10] << 8) | p[o + 11]) != length
                or o + 12 + length != n):
            return None
        body = o + 12
        end = n
        o = body + 2 + 32
        if o + 1 > end or p[o] > 32:  # legacy_session_id<0..32>
            return None
        o += 1 + p[o]
        if o + 1 > end or p[o] != 0:  # legacy_cookie: empty in DTLS 1.3
            return None
        o += 1
        if o + 2 > end:
            return None
        suites_len = _u16(p, o)
        suites_at = o + 2
        if suites_len < 2 or suites_len % 2 or suites_at + suites_len > end:
            return None
        o = suites_at + suites_len
        if o + 1 > end or p[o] == 0 or o + 1 + p[o] > end:  # legacy_compression_methods
            return None
        o += 1 + p[o]
        if o + 2 > end or o + 2 + _u16(p, o) != end:
            return None
        o += 2
        while o < end:
            if o + 4 > end or count == _SCAN_MAX_EXTENSIONS:
                return None
            t = _u16(p, o)
            el = _u16(p, o + 4 - 2)
            o += 4
            if o + el > end:
                return None
            for i in range(count):
                if seen[i] == t:
                    return None
            seen[count] = t
            count += 1
            if t == 44:  # cookie: a second ClientHello, not for this path
                return None
            elif t == 43:
                versions_at, versions_len = o, el
            elif t == 10:
                groups_at, groups_len = o, el
            elif t == 51:
                shares_at, shares_len = o, el
            elif t == 41:
                offers_psk = True
            o += el
        # supported_versions: ProtocolVersion versions<2..254> filling the extension.
        if versions_at >= 0:
            k = p[versions_at] if versions_len else -1
            if k < 2 or k % 2 or 1 + k != versions_len:
                return None
        # supported_groups: NamedGroup named_group_list<2..2^16-1> filling the extension.
        if groups_at >= 0:
            k = _u16(p, groups_at) if groups_len >= 2 else -1
            if k < 2 or k % 2 or 2 + k != groups_len:
                return None
        # key_share: KeyShareEntry client_shares<0..2^16-1>, each key_exchange<1..>, one
        # entry per group.
        share_groups = None
        if shares_at >= 0:
            if shares_len < 2 or 2 + _u16(p, shares_at) != shares_len:
                return None
            share_list = []
            i = shares_at + 2
            ext_end = shares_at + shares_len
            while i < ext_end:
                if i + 4 > ext_end:
                    return None
                k = _u16(p, i + 2)
                if k == 0 or i + 4 + k > ext_end:
                    return None
                t = _u16(p, i)
                if t in share_list:
                    return None
                share_list.append(t)
                i += 4 + k
            share_groups = tuple(share_list)
        return (
            body,
            length,
            _u16_list(p, suites_at, suites_len),
            _u16_list(p, versions_at + 1, versions_len - 1) if versions_at >= 0 else None,
            _u16_list(p, groups_at + 2, groups_len - 2) if groups_at >= 0 else None,
            share_groups,
            h.seq,
            offers_psk,
        )
    finally:
        PyBuffer_Release(&v)


# -- HMAC for the key schedule ----------------------------------------------------------------

try:
    from _hashlib import hmac_new as _hmac_new
except ImportError:  # CPython without OpenSSL's _hashlib
    from hmac import new as _hmac_new


def hmac_digest(key, msg, str digestmod):
    """HMAC(key, msg) with the named hash, through an HMAC object: with OpenSSL 3 this is
    about a third faster than its one-shot HMAC() (``_hashlib.hmac_digest``)."""
    return _hmac_new(key, msg, digestmod).digest()


# -- the transcript hash ------------------------------------------------------------------------


def transcript_add(dict hashes, int msg_type, body):
    """Hash one handshake message into every running hash of `hashes` (name -> hash
    object) behind its TLS-style 4-byte header, not the 12-byte DTLS one (RFC 9147 §5.2)."""
    cdef Py_ssize_t n = len(body)
    if not 0 <= n < (1 << 24):
        raise ValueError("handshake message too long")
    if not 0 <= msg_type < 256:
        raise ValueError("handshake type out of range")
    cdef unsigned char h[4]
    h[0] = <unsigned char>msg_type
    h[1] = <unsigned char>(n >> 16)
    h[2] = <unsigned char>(n >> 8)
    h[3] = <unsigned char>n
    header = (<char *>h)[:4]
    for running in hashes.values():
        running.update(header)
        running.update(body)


def hash_copy_digest(running):
    """The digest of what `running` has hashed so far; `running` goes on unchanged."""
    return running.copy().digest()


# -- outgoing handshake fragments ---------------------------------------------------------------


def handshake_fragment(int msg_type, Py_ssize_t length, int message_seq, Py_ssize_t offset,
                       body, Py_ssize_t start=0, Py_ssize_t end=-1):
    """One DTLSHandshake fragment (RFC 9147 §5.2): the 12-byte header and ``body[start:end]``
    (all of `body` by default; `end` -1: its end), which sits at `offset` of a message of
    `length` bytes."""
    cdef Py_buffer v
    cdef Py_ssize_t n
    cdef unsigned char *p
    _get_read(body, &v)
    try:
        if end < 0:
            end = v.len
        if not 0 <= start <= end <= v.len:
            raise EncodeError("handshake fragment outside its body")
        n = end - start
        if not (0 <= msg_type < 256 and 0 <= message_seq < (1 << 16) and n < (1 << 24)):
            raise EncodeError("handshake header field out of range")
        if not 0 <= offset <= length - n or length >= (1 << 24):
            raise EncodeError("handshake fragment beyond the message length")
        out = PyBytes_FromStringAndSize(NULL, 12 + n)
        p = <unsigned char *>PyBytes_AS_STRING(out)
        p[0] = <unsigned char>msg_type
        p[1] = <unsigned char>(length >> 16)
        p[2] = <unsigned char>(length >> 8)
        p[3] = <unsigned char>length
        p[4] = <unsigned char>(message_seq >> 8)
        p[5] = <unsigned char>message_seq
        p[6] = <unsigned char>(offset >> 16)
        p[7] = <unsigned char>(offset >> 8)
        p[8] = <unsigned char>offset
        p[9] = <unsigned char>(n >> 16)
        p[10] = <unsigned char>(n >> 8)
        p[11] = <unsigned char>n
        memcpy(p + 12, <unsigned char *>v.buf + start, n)
        return out
    finally:
        PyBuffer_Release(&v)
