# Shared declarations of record.pyx: the header parser, sequence-number reconstruction,
# the replay window and record numbers, used at C level by protection and datagram.

cimport cython
from libc.stdint cimport uint8_t, uint64_t


cdef struct _Header:
    int first              # content type (DTLSPlaintext) or the 0b001CSLEE byte
    uint64_t epoch         # full 16-bit epoch, or the two low bits
    uint64_t seq           # full 48-bit number, or the 8/16 bits on the wire (masked)
    Py_ssize_t header_length
    Py_ssize_t length      # fragment bytes after the header


cdef int _parse_header(const uint8_t *p, Py_ssize_t n, Py_ssize_t o, Py_ssize_t cid_length,
                       _Header *h) noexcept nogil

cpdef Py_ssize_t unified_header_length(Py_ssize_t cid_length, int seq_bits, bint with_length)

cpdef uint64_t reconstruct_sequence(
    uint64_t expected, uint64_t low, int bits) except? 0xFFFFFFFFFFFFFFFF


@cython.final
cdef class ReplayWindow:
    cdef uint64_t *_bits
    # C ints: one window per read epoch lives as long as the connection (48 B, not 56).
    cdef int _words
    cdef readonly int size
    cdef uint64_t _top  # highest accepted + 1; 0 before the first record

    cpdef bint check(self, uint64_t seq)
    cpdef void update(self, uint64_t seq)


@cython.final
cdef class RecordNumber:
    cdef readonly uint64_t epoch
    cdef readonly uint64_t sequence_number
