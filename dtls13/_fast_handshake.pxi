# Handshake hot paths, included into _fast.pyx.

from libc.string cimport memcmp, memmove

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
        cdef Py_ssize_t i, j, k, shift, new_alloc
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

    def write_fragment(self, dest, Py_ssize_t offset, data):
        """Merge a fragment into `dest` (the message buffer, at least `length` bytes).

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
                if dst.len < self.length:
                    raise ValueError(
                        f"destination of {dst.len} bytes is shorter than the message"
                    )
                d = <char *>dst.buf
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
