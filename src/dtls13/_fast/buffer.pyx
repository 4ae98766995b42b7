# cython: language_level=3, boundscheck=False, wraparound=False
# cython: cdivision=True, initializedcheck=False
"""Buffer: the wire-format reader/writer (network byte order) over bytes, views and leases.

Every malformed or truncated read raises DecodeError and nothing else.
"""

cimport cython
from cpython.buffer cimport (
    PyBUF_SIMPLE,
    PyBUF_WRITABLE,
    PyBuffer_Release,
    PyObject_GetBuffer,
)
from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport free, realloc
from libc.string cimport memcpy

from .errors import DecodeError, EncodeError


@cython.final
cdef class _Block:
    cdef Buffer _buf
    cdef int _size
    cdef bint _push
    cdef Py_ssize_t _saved_end
    cdef Py_ssize_t _start

    def __enter__(self):
        cdef Buffer b = self._buf
        cdef Py_ssize_t length
        if self._push:
            b._reserve(self._size)
            self._start = b._pos
            b._pos += self._size
            return None
        length = <Py_ssize_t>b._pull_uint(self._size)
        if length > b._end - b._pos:
            raise DecodeError(f"vector of {length} bytes overruns its container")
        self._saved_end = b._end
        b._end = b._pos + length
        return length

    def __exit__(self, exc_type, exc, tb):
        cdef Buffer b = self._buf
        cdef Py_ssize_t length
        cdef int i
        if self._push:
            if exc_type is None:
                length = b._pos - self._start - self._size
                if length >> (8 * self._size):
                    raise EncodeError(f"vector of {length} bytes too long "
                                      f"for a {self._size}-byte length")
                for i in range(self._size):
                    b._base[self._start + i] = <uint8_t>(length >> (8 * (self._size - 1 - i)))
            return False
        if exc_type is None and b._pos != b._end:
            b._end = self._saved_end
            raise DecodeError(f"{b._end - b._pos} bytes left over inside a vector")
        b._end = self._saved_end
        return False


@cython.final
cdef class Buffer:
    """Reader/writer for network byte order over bytes, memoryviews and leases.

    Reading: `Buffer(data)`. Writing: `Buffer(capacity=n)` (grows as needed)
    or `Buffer(writable)` over a bytearray or a Lease (fixed capacity).
    Every malformed or truncated read raises DecodeError and nothing else.
    """

    cdef Py_buffer _view
    cdef bint _has_view
    cdef bint _growable
    cdef bint _writable
    cdef unsigned char *_base
    cdef Py_ssize_t _pos
    cdef Py_ssize_t _end
    cdef Py_ssize_t _cap
    cdef object _obj
    cdef object _mv

    def __cinit__(self, data=None, *, Py_ssize_t capacity=-1):
        if data is None:
            if capacity < 0:
                capacity = 256
            self._growable = True
            self._writable = True
            self._cap = capacity if capacity > 0 else 16
            self._base = <unsigned char *>realloc(NULL, <size_t>self._cap)
            if self._base == NULL:
                raise MemoryError()
            self._end = self._cap
            return
        if isinstance(data, bytes):
            PyObject_GetBuffer(data, &self._view, PyBUF_SIMPLE)
        else:
            try:
                PyObject_GetBuffer(data, &self._view, PyBUF_SIMPLE | PyBUF_WRITABLE)
                self._writable = True
            except BufferError:
                PyObject_GetBuffer(data, &self._view, PyBUF_SIMPLE)
        self._has_view = True
        self._obj = data
        self._base = <unsigned char *>self._view.buf
        self._cap = self._view.len
        self._end = self._cap

    def __dealloc__(self):
        if self._has_view:
            PyBuffer_Release(&self._view)
            self._has_view = False
        elif self._growable and self._base != NULL:
            free(self._base)
        self._base = NULL

    def close(self):
        """Let go of the underlying object's buffer (a lease can then resize or release)."""
        if self._has_view:
            self._mv = None
            PyBuffer_Release(&self._view)
            self._has_view = False
            self._base = NULL
            self._cap = self._end = self._pos = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    # -- position -----------------------------------------------------------

    @property
    def capacity(self):
        return self._cap

    @property
    def data(self):
        """The bytes from the start up to the current position."""
        return PyBytes_FromStringAndSize(<char *>self._base, self._pos)

    def data_slice(self, Py_ssize_t start, Py_ssize_t end):
        if start < 0 or end > self._cap or start > end:
            raise DecodeError("slice out of bounds")
        return PyBytes_FromStringAndSize(<char *>self._base + start, end - start)

    def view_slice(self, Py_ssize_t start, Py_ssize_t end):
        """A zero-copy memoryview of [start:end] of the underlying object."""
        if start < 0 or end > self._cap or start > end:
            raise DecodeError("slice out of bounds")
        return self._memoryview()[start:end]

    cdef object _memoryview(self):
        if self._mv is None:
            if self._has_view:
                self._mv = memoryview(self._obj).cast("B")
            else:
                raise EncodeError("a growable Buffer has no view; use .data")
        return self._mv

    cpdef bint eof(self):
        return self._pos >= self._end

    @property
    def remaining(self):
        return self._end - self._pos

    cpdef Py_ssize_t tell(self):
        return self._pos

    def seek(self, Py_ssize_t pos):
        if pos < 0 or pos > self._end:
            raise DecodeError("seek out of bounds")
        self._pos = pos

    def expect_end(self):
        """Raise DecodeError unless everything was consumed."""
        if self._pos != self._end:
            raise DecodeError(f"{self._end - self._pos} trailing bytes")

    # -- reading ------------------------------------------------------------

    cdef inline uint64_t _pull_uint(self, int n) except? 0xFFFFFFFFFFFFFFFF:
        cdef uint64_t v = 0
        cdef int i
        if self._end - self._pos < n:
            raise DecodeError(f"need {n} bytes, {self._end - self._pos} left")
        for i in range(n):
            v = (v << 8) | self._base[self._pos + i]
        self._pos += n
        return v

    cpdef uint8_t pull_uint8(self) except? 0xFF:
        if self._pos >= self._end:
            raise DecodeError("need 1 byte, 0 left")
        self._pos += 1
        return self._base[self._pos - 1]

    cpdef uint16_t pull_uint16(self) except? 0xFFFF:
        return <uint16_t>self._pull_uint(2)

    cpdef uint32_t pull_uint24(self) except? 0xFFFFFFFF:
        return <uint32_t>self._pull_uint(3)

    cpdef uint32_t pull_uint32(self) except? 0xFFFFFFFF:
        return <uint32_t>self._pull_uint(4)

    cpdef uint64_t pull_uint48(self) except? 0xFFFFFFFFFFFFFFFF:
        return self._pull_uint(6)

    cpdef uint64_t pull_uint64(self) except? 0xFFFFFFFFFFFFFFFF:
        return self._pull_uint(8)

    cpdef bytes pull_bytes(self, Py_ssize_t length):
        if length < 0 or self._end - self._pos < length:
            raise DecodeError(f"need {length} bytes, {self._end - self._pos} left")
        self._pos += length
        return PyBytes_FromStringAndSize(<char *>self._base + self._pos - length, length)

    def pull_view(self, Py_ssize_t length):
        """The next `length` bytes as a zero-copy memoryview."""
        if length < 0 or self._end - self._pos < length:
            raise DecodeError(f"need {length} bytes, {self._end - self._pos} left")
        self._pos += length
        return self._memoryview()[self._pos - length:self._pos]

    cpdef bytes pull_vector(self, int length_size):
        """A byte string behind a 1-, 2- or 3-byte length."""
        cdef Py_ssize_t length = <Py_ssize_t>self._pull_uint(length_size)
        return self.pull_bytes(length)

    def pull_block(self, int length_size):
        """Context manager over a length-prefixed vector; checks exact consumption."""
        if length_size not in (1, 2, 3, 4):
            raise ValueError("length_size must be 1, 2, 3 or 4")
        cdef _Block b = _Block.__new__(_Block)
        b._buf = self
        b._size = length_size
        b._push = False
        return b

    def pull_uint16_list(self, int length_size, Py_ssize_t minimum=0):
        """``uint16 values<minimum..>`` behind a `length_size`-byte length, as a tuple
        (an odd length or one below `minimum` is a DecodeError)."""
        cdef Py_ssize_t length, i, at
        if length_size not in (1, 2):
            raise ValueError("length_size must be 1 or 2")
        length = <Py_ssize_t>self._pull_uint(length_size)
        if self._end - self._pos < length:
            self._pos -= length_size
            raise DecodeError(f"block of {length} bytes, {self._end - self._pos} left")
        if length % 2 or length < minimum:
            raise DecodeError(f"bad uint16 list length {length}")
        at = self._pos
        self._pos += length
        return tuple([(self._base[at + 2 * i] << 8) | self._base[at + 2 * i + 1]
                      for i in range(length // 2)])

    def pull_list(self, int length_size, func):
        """Items read by `func(buf)` until a length-prefixed vector is used up."""
        items = []
        with self.pull_block(length_size):
            while self._pos < self._end:
                items.append(func(self))
        return items

    # -- writing ------------------------------------------------------------

    cdef int _reserve(self, Py_ssize_t n) except -1:
        cdef Py_ssize_t need = self._pos + n
        cdef Py_ssize_t newcap
        cdef unsigned char *nb
        if need <= self._end:
            return 0
        if not self._writable:
            raise EncodeError("buffer is read-only")
        if not self._growable:
            raise EncodeError(f"writing {n} bytes overflows a {self._cap}-byte buffer")
        newcap = self._cap * 2
        if newcap < need:
            newcap = need
        nb = <unsigned char *>realloc(self._base, <size_t>newcap)
        if nb == NULL:
            raise MemoryError()
        self._base = nb
        self._cap = self._end = newcap
        return 0

    cdef inline int _push_uint(self, uint64_t v, int n) except -1:
        cdef int i
        if not self._writable:
            raise EncodeError("buffer is read-only")
        if n < 8 and (v >> (8 * n)):
            raise EncodeError(f"{v} does not fit in {n} bytes")
        self._reserve(n)
        for i in range(n):
            self._base[self._pos + i] = <uint8_t>(v >> (8 * (n - 1 - i)))
        self._pos += n
        return 0

    def push_uint8(self, uint64_t v):
        self._push_uint(v, 1)

    def push_uint16(self, uint64_t v):
        self._push_uint(v, 2)

    def push_uint24(self, uint64_t v):
        self._push_uint(v, 3)

    def push_uint32(self, uint64_t v):
        self._push_uint(v, 4)

    def push_uint48(self, uint64_t v):
        self._push_uint(v, 6)

    def push_uint64(self, uint64_t v):
        self._push_uint(v, 8)

    cpdef push_bytes(self, data):
        cdef Py_buffer src
        if not self._writable:
            raise EncodeError("buffer is read-only")
        PyObject_GetBuffer(data, &src, PyBUF_SIMPLE)
        try:
            self._reserve(src.len)
            memcpy(self._base + self._pos, src.buf, src.len)
            self._pos += src.len
        finally:
            PyBuffer_Release(&src)

    def push_vector(self, int length_size, data):
        """`data` behind a 1-, 2- or 3-byte length."""
        self._push_uint(len(data), length_size)
        self.push_bytes(data)

    def push_block(self, int length_size):
        """Context manager: bytes pushed inside get a length prefix."""
        if length_size not in (1, 2, 3, 4):
            raise ValueError("length_size must be 1, 2, 3 or 4")
        if not self._writable:
            raise EncodeError("buffer is read-only")
        cdef _Block b = _Block.__new__(_Block)
        b._buf = self
        b._size = length_size
        b._push = True
        return b

    def push_list(self, int length_size, func, items):
        """Write each item with `func(buf, item)` inside a length-prefixed vector."""
        with self.push_block(length_size):
            for item in items:
                func(self, item)
