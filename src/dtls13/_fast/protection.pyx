# cython: language_level=3, boundscheck=False, wraparound=False
# cython: cdivision=True, initializedcheck=False
"""Record protection of one epoch in one direction: AEAD, nonces, record-number masks.

RFC 9147 §4 (the header as AAD), §4.2.3 (record-number encryption) and RFC 8446
§5.3 (per-record nonces); the AEAD and AES objects come from `cryptography`.
"""

cimport cython
from cpython.buffer cimport PyBUF_READ, PyBUF_WRITE, PyBuffer_Release
from cpython.bytes cimport (
    PyBytes_AS_STRING,
    PyBytes_CheckExact,
    PyBytes_FromStringAndSize,
    PyBytes_GET_SIZE,
)
from cpython.memoryview cimport PyMemoryView_FromMemory
from cpython.ref cimport Py_REFCNT, PyObject
from libc.stdint cimport uint64_t
from libc.string cimport memcpy, memmove, memset

from ._common cimport (
    _MASK_SAMPLE,
    _MAX_HEADER,
    _MAX_PLAINTEXT,
    _SEQ_LIMIT,
    _get_read,
    _get_write,
    dtls13_chacha20_block,
    dtls13_secure_zero,
)
from .memory cimport Lease
from .record cimport ReplayWindow, reconstruct_sequence, unified_header_length

from cryptography.exceptions import InvalidTag as _InvalidTag

from .errors import EncodeError


cdef Py_ssize_t _copy_secret(obj, unsigned char *dst, Py_ssize_t lo, Py_ssize_t hi,
                             str what) except -1:
    cdef Py_buffer v
    cdef Py_ssize_t n
    _get_read(obj, &v)
    try:
        n = v.len
        if not lo <= n <= hi:
            raise ValueError(f"the {what} must be {lo}..{hi} bytes, not {n}")
        memcpy(dst, v.buf, n)
    finally:
        PyBuffer_Release(&v)
    return n


cdef void _zero_bytes(PyObject *obj, Py_ssize_t refs) noexcept:
    # A bytes object of key material we made, about to be freed (`refs`: the references
    # the caller holds): wipe it first (bytes are immutable to Python code, not to their
    # last owner). One someone else still holds is left alone.
    if obj != NULL and (<object>obj) is not None and Py_REFCNT(<object>obj) == refs:
        dtls13_secure_zero(PyBytes_AS_STRING(<object>obj), <size_t>PyBytes_GET_SIZE(<object>obj))


@cython.final
@cython.no_gc  # holds an OpenSSL-backed object: never in a cycle
cdef class _CbcMask:
    """AES-ECB blocks (record-number masks) from an AES-CBC encryptor with a zero IV:
    each block is fed XOR the previous output block, the chaining value, which CBC's
    chaining cancels. `cryptography` makes a CBC context with fewer of its Python-level
    checks than an ECB one; the extra XOR costs nothing next to them."""

    def __cinit__(self, ctx):
        self._ctx = ctx
        memset(self._chain, 0, _MASK_SAMPLE)  # the IV

    def __dealloc__(self):
        dtls13_secure_zero(self._chain, _MASK_SAMPLE)

    cdef int encrypt_block(self, const unsigned char *block, unsigned char *out) except -1:
        cdef unsigned char fed[_MASK_SAMPLE]
        cdef int k
        for k in range(_MASK_SAMPLE):
            fed[k] = block[k] ^ self._chain[k]
        # update() returning 16 new bytes costs one allocation; update_into a view of
        # `out` would cost two.
        got = self._ctx.update(PyMemoryView_FromMemory(<char *>fed, _MASK_SAMPLE, PyBUF_READ))
        if not PyBytes_CheckExact(got) or PyBytes_GET_SIZE(got) != _MASK_SAMPLE:
            raise ValueError("AES-CBC gave no 16-byte block")
        memcpy(self._chain, PyBytes_AS_STRING(got), _MASK_SAMPLE)
        memcpy(out, PyBytes_AS_STRING(got), _MASK_SAMPLE)
        return 0


@cython.final
@cython.no_gc  # holds a builder, OpenSSL-backed objects and bytes: never in a cycle
cdef class RecordCipher:
    """One epoch's record protection in one direction: AEAD, nonce, record-number mask.

    Holds the key bytes (key, IV, sn_key) inline and builds the OpenSSL-backed
    objects from them on first use: ``build(key, sn_key)`` (one shared callable
    per suite) returns ``(aead, mask_ctx)``, a cryptography AEAD object (its
    encrypt_into/decrypt_into are called with views straight into the datagram
    and the plaintext lease) and an AES-CBC encryptor under sn_key with a zero
    IV, or None for ChaCha20 masks, computed here from sn_key (RFC 9147 §4.2.3).
    Each AES mask is AES-ECB(sn_key, sample): the encryptor is fed the sample
    XOR its previous output block, which CBC's chaining cancels (a CBC context
    is cheaper to make than an ECB one). `release()` lets an idle epoch's objects
    go (a few KiB of OpenSSL contexts); the next record builds them again. The
    key bytes are zeroed when the cipher goes.
    """

    def __cinit__(self, build, key, iv, sn_key, Py_ssize_t tag_length, bint chacha):
        if not 1 <= tag_length <= 16:
            raise ValueError("tag length must be 1..16")
        self._key_len = <int>_copy_secret(key, self._key, 16, 32, "key")
        _copy_secret(iv, self._iv, 12, 12, "record IV")
        self._sn_len = <int>_copy_secret(sn_key, self._sn_key, 32 if chacha else 16, 32,
                                         "sn_key")
        self._build = build
        self.tag_length = <int>tag_length
        self.chacha = chacha

    def __dealloc__(self):
        self._drop()
        dtls13_secure_zero(self._key, 32)
        dtls13_secure_zero(self._sn_key, 32)
        dtls13_secure_zero(self._iv, 12)

    @property
    def built(self):
        """Whether the AEAD (and AES mask) objects exist now."""
        return self._aead is not None

    def release(self):
        """Let the AEAD and mask objects go; the next record builds them again."""
        self._drop()

    cdef void _drop(self) noexcept:
        self._aead = None
        self._mask = None
        key, self._key_obj = self._key_obj, None
        sn, self._sn_obj = self._sn_obj, None
        _zero_bytes(<PyObject *>key, 1)
        _zero_bytes(<PyObject *>sn, 1)

    cdef int _ensure(self) except -1:
        if self._aead is not None:
            return 0
        key = PyBytes_FromStringAndSize(<char *>self._key, self._key_len)
        sn = None if self.chacha else PyBytes_FromStringAndSize(<char *>self._sn_key,
                                                                self._sn_len)
        try:
            aead, mask_ctx = self._build(key, sn)
        except BaseException:
            _zero_bytes(<PyObject *>key, 1)
            _zero_bytes(<PyObject *>sn, 1)
            raise
        if aead is None or (mask_ctx is None) != self.chacha:
            raise ValueError("build() must return (aead, mask encryptor or None for ChaCha20)")
        self._key_obj = key
        self._sn_obj = sn
        self._aead = aead
        self._mask = None if mask_ctx is None else _CbcMask(mask_ctx)
        self.builds += 1
        return 0

    cdef inline void _make_nonce(self, uint64_t seq, unsigned char *p) noexcept:
        # RFC 8446 §5.3: the 64-bit record sequence number, left-padded, XOR the IV
        # (RFC 9147 §4: "unlike DTLS 1.2, the epoch is not included").
        cdef int k
        memcpy(p, self._iv, 12)
        for k in range(8):
            p[11 - k] ^= <unsigned char>(seq >> (8 * k))

    cdef int _compute_mask(self, const unsigned char *sample, unsigned char *out) except -1:
        # `out` holds 64 bytes: a whole ChaCha20 block.
        if self.chacha:
            # "Mask = ChaCha20(sn_key, Ciphertext[0..3], Ciphertext[4..15])"
            dtls13_chacha20_block(self._sn_key, sample, out)
            return 0
        # "Mask = AES-ECB(sn_key, Ciphertext[0..15])"
        try:
            self._mask.encrypt_block(sample, out)
        except BaseException:
            self._drop()  # the context's chaining value is unknown now: build it anew
            raise
        return 0

    def nonce(self, uint64_t seq):
        """The per-record nonce."""
        cdef unsigned char n[12]
        self._make_nonce(seq, n)
        return bytearray(PyBytes_FromStringAndSize(<char *>n, 12))

    def mask(self, data, Py_ssize_t offset):
        """The mask (64 bytes; the first 16 count) for the ciphertext at data[offset:]."""
        cdef Py_buffer v
        cdef unsigned char m[64]
        self._ensure()
        _get_read(data, &v)
        try:
            if offset < 0 or v.len - offset < _MASK_SAMPLE:
                raise ValueError("fewer than 16 ciphertext bytes for the mask")
            self._compute_mask(<const unsigned char *>v.buf + offset, m)
        finally:
            PyBuffer_Release(&v)
        return bytearray(PyBytes_FromStringAndSize(<char *>m, 64))

    cpdef Py_ssize_t inner_length(self, Py_ssize_t payload_length, Py_ssize_t padding):
        """TLSInnerPlaintext length for a payload: content, type, padding to a
        multiple of `padding` (if > 1) and at least up to the mask sample."""
        cdef Py_ssize_t inner = payload_length + 1
        if padding > 1 and inner % padding:
            inner += padding - inner % padding
        if inner + self.tag_length < _MASK_SAMPLE:
            # §4.2.3: "Senders MUST pad short plaintexts out".
            inner = _MASK_SAMPLE - self.tag_length
        return inner

    cpdef Py_ssize_t seal_into(self, buf, Py_ssize_t pos, uint64_t epoch, uint64_t seq,
                               int seq_bits, cid, bint with_length, int content_type, payload,
                               Py_ssize_t padding) except -2:
        """Write one protected DTLSCiphertext record at buf[pos:].

        Header (AAD before record-number encryption, RFC 9147 §4), inner plaintext
        encrypted in place, then the sequence number masked. Returns the record's
        length, or -1 (nothing written) when it does not fit.
        """
        cdef Py_buffer b, pl, c
        cdef unsigned char *p
        cdef unsigned char *body
        cdef unsigned char mask[64]
        cdef unsigned char nonce[12]
        cdef Py_ssize_t cl = 0, plen, inner, hl, total, i, seq_pos
        cdef unsigned char first = 0x20 | <unsigned char>(epoch & 3)
        if seq_bits != 8 and seq_bits != 16:
            raise EncodeError("seq_bits must be 8 or 16")
        if seq >= _SEQ_LIMIT:
            raise EncodeError("sequence number beyond 2^48-1")
        if not 0 <= content_type <= 255:
            raise EncodeError("content type out of range")
        if cid is not None:
            cl = len(cid)
            if cl > 255:
                raise EncodeError("connection ID longer than 255 bytes")
        _get_read(payload, &pl)
        try:
            plen = pl.len
            if plen > _MAX_PLAINTEXT:
                raise EncodeError("payload longer than 2^14")
            inner = self.inner_length(plen, padding)
            hl = unified_header_length(cl, seq_bits, with_length)
            total = hl + inner + self.tag_length
            _get_write(buf, &b)
            try:
                if pos < 0 or pos + total > b.len:
                    return -1
                p = <unsigned char *>b.buf + pos
                if cl > 0:
                    first |= 0x10
                    _get_read(cid, &c)
                    memcpy(p + 1, c.buf, cl)
                    PyBuffer_Release(&c)
                if seq_bits == 16:
                    first |= 0x08
                if with_length:
                    first |= 0x04
                p[0] = first
                i = 1 + cl
                seq_pos = i
                if seq_bits == 16:
                    p[i] = <unsigned char>(seq >> 8)
                    i += 1
                p[i] = <unsigned char>seq
                i += 1
                if with_length:
                    p[i] = <unsigned char>((inner + self.tag_length) >> 8)
                    p[i + 1] = <unsigned char>(inner + self.tag_length)
                body = p + hl
                memmove(body, pl.buf, plen)
                body[plen] = <unsigned char>content_type
                memset(body + plen + 1, 0, inner - plen - 1)
                self._ensure()
                self._make_nonce(seq, nonce)
                # In place: the ciphertext overwrites the inner plaintext it came from.
                self._aead.encrypt_into(
                    PyBytes_FromStringAndSize(<char *>nonce, 12),
                    PyMemoryView_FromMemory(<char *>body, inner, PyBUF_READ),
                    PyMemoryView_FromMemory(<char *>p, hl, PyBUF_READ),
                    PyMemoryView_FromMemory(<char *>body, inner + self.tag_length, PyBUF_WRITE))
                self._compute_mask(body, mask)
                p[seq_pos] ^= mask[0]
                if seq_bits == 16:
                    p[seq_pos + 1] ^= mask[1]
            finally:
                PyBuffer_Release(&b)
        finally:
            PyBuffer_Release(&pl)
        return total

    def open_untrusted(self, data, Py_ssize_t offset, Py_ssize_t header_length,
                       Py_ssize_t length, ReplayWindow window, Lease lease):
        """Deprotect the DTLSCiphertext record at data[offset:] into `lease`.

        `header_length`/`length` come from parse_header_untrusted; `lease` holds
        exactly length - tag_length bytes. Returns ``(seq, index, content_type)``:
        `index` >= 0 is the content type's position (the payload is lease[:index]);
        OPEN_AUTH_FAILED, OPEN_REPLAY or OPEN_BAD_CONTENT_TYPE otherwise. The
        replay window is checked after deprotection and updated only on success
        (RFC 9147 §4.5.1).
        """
        cdef Py_buffer d
        cdef uint64_t seq = 0
        cdef int ctype = 0
        cdef Py_ssize_t index
        _get_read(data, &d)
        try:
            if offset < 0 or header_length < 0 or length < 0 or (
                    offset + header_length + length > d.len):
                raise ValueError("record outside the datagram")
            index = self._open(<const unsigned char *>d.buf + offset, header_length, length,
                               window, lease, &seq, &ctype)
        finally:
            PyBuffer_Release(&d)
        return (seq, index, ctype)

    cdef Py_ssize_t _open(self, const unsigned char *p, Py_ssize_t header_length,
                          Py_ssize_t length, ReplayWindow window, Lease lease,
                          uint64_t *seq_out, int *ctype_out) except -100:
        cdef unsigned char aad[_MAX_HEADER]
        cdef unsigned char mask[64]
        cdef unsigned char nonce[12]
        cdef const unsigned char *q
        cdef Py_ssize_t seq_len, seq_pos, i
        cdef uint64_t low = 0, seq
        cdef int first = p[0], ctype
        if (header_length < 2 or header_length > _MAX_HEADER or length < _MASK_SAMPLE
                or length < self.tag_length or (first & 0xE0) != 0x20):
            raise ValueError("not a DTLSCiphertext record this cipher can open")
        if lease is None or lease._released or lease._length != length - self.tag_length:
            raise ValueError("the lease must hold exactly length - tag_length bytes")
        seq_len = 2 if first & 0x08 else 1
        seq_pos = header_length - seq_len - (2 if first & 0x04 else 0)
        if seq_pos < 1:
            raise ValueError("header too short for its flags")
        self._ensure()
        self._compute_mask(p + header_length, mask)
        # The AAD is the header "prior to record number encryption" (§4).
        memcpy(aad, p, header_length)
        for i in range(seq_len):
            aad[seq_pos + i] ^= mask[i]
            low = (low << 8) | aad[seq_pos + i]
        seq = reconstruct_sequence(window._top, low, <int>(8 * seq_len))
        seq_out[0] = seq
        self._make_nonce(seq, nonce)
        try:
            self._aead.decrypt_into(
                PyBytes_FromStringAndSize(<char *>nonce, 12),
                PyMemoryView_FromMemory(<char *>p + header_length, length, PyBUF_READ),
                PyMemoryView_FromMemory(<char *>aad, header_length, PyBUF_READ),
                lease)
        except _InvalidTag:
            return OPEN_AUTH_FAILED
        if not window.check(seq):
            return OPEN_REPLAY
        q = <const unsigned char *>lease._ptr
        i = lease._length - 1
        while i >= 0 and q[i] == 0:
            i -= 1
        ctype = q[i] if i >= 0 else 0
        ctype_out[0] = ctype
        # RFC 9147 Figure 5: alert, handshake, application data, ACK (no heartbeat).
        if ctype != 21 and ctype != 22 and ctype != 23 and ctype != 26:
            return OPEN_BAD_CONTENT_TYPE
        window.update(seq)
        return i


# -- secrets held as bytes ------------------------------------------------------------------

def secret_refcount(object obj):
    """The reference count of `obj` as this call sees it (for calibrating `wipe_secret`)."""
    return Py_REFCNT(obj)


def wipe_secret(object secret, Py_ssize_t sole):
    """Zero a bytes object of key material in place if no one but the caller holds it.

    `sole` is the count `secret_refcount` showed for a local variable passed the same way
    (dtls13.crypto.secrets measures it at import). A bytes object anyone else still holds
    (a cache, an AEAD object, the application) is left alone. Returns whether it zeroed."""
    if type(secret) is not bytes or PyBytes_GET_SIZE(secret) == 0:
        return False
    if Py_REFCNT(secret) != sole:
        return False
    dtls13_secure_zero(PyBytes_AS_STRING(secret), <size_t>PyBytes_GET_SIZE(secret))
    return True
