# Shared declarations of protection.pyx: the datagram module seals and opens records
# through RecordCipher at C level.

cimport cython
from libc.stdint cimport uint64_t

from .memory cimport Lease
from .record cimport ReplayWindow

# open_untrusted() outcomes besides success (a content-type index >= 0).
cpdef enum:
    OPEN_AUTH_FAILED = -1
    OPEN_REPLAY = -2
    OPEN_BAD_CONTENT_TYPE = -3


@cython.final
cdef class _CbcMask:
    cdef object _ctx
    cdef unsigned char _chain[16]

    cdef int encrypt_block(self, const unsigned char *block, unsigned char *out) except -1


@cython.final
cdef class RecordCipher:
    cdef object _build
    cdef object _aead       # None while released
    cdef _CbcMask _mask      # None for ChaCha20 and while released
    # The bytes objects the built objects were made from: zeroed once let go.
    cdef object _key_obj
    cdef object _sn_obj
    # C ints, not Py_ssize_t: one cipher per epoch and direction lives as long as the
    # connection, and these fit in far less.
    cdef readonly int tag_length
    cdef readonly bint chacha
    cdef readonly unsigned int builds
    cdef int _key_len
    cdef int _sn_len
    cdef unsigned char _iv[12]
    cdef unsigned char _key[32]
    cdef unsigned char _sn_key[32]

    cdef void _drop(self) noexcept
    cdef int _ensure(self) except -1
    cdef void _make_nonce(self, uint64_t seq, unsigned char *p) noexcept
    cdef int _compute_mask(self, const unsigned char *sample, unsigned char *out) except -1
    cpdef Py_ssize_t inner_length(self, Py_ssize_t payload_length, Py_ssize_t padding)
    cpdef Py_ssize_t seal_into(self, buf, Py_ssize_t pos, uint64_t epoch, uint64_t seq,
                               int seq_bits, cid, bint with_length, int content_type, payload,
                               Py_ssize_t padding) except -2
    cdef Py_ssize_t _open(self, const unsigned char *p, Py_ssize_t header_length,
                          Py_ssize_t length, ReplayWindow window, Lease lease,
                          uint64_t *seq_out, int *ctype_out) except -100
