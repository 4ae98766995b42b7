# Record-layer hot paths, included into _fast.pyx.
#
# RFC 9147 §4: DTLSPlaintext and unified-header (DTLSCiphertext) codecs, record
# number reconstruction (§4.2.2), the ChaCha20 block function for record-number
# masks (§4.2.3), per-record nonces (RFC 8446 §5.3) and the anti-replay window
# (§4.5.1). Functions reading network bytes end in `_untrusted` and raise only
# DecodeError.

cdef extern from *:
    """
    #include <stdint.h>
    #define DTLS13_ROTL(v, c) (((v) << (c)) | ((v) >> (32 - (c))))
    #define DTLS13_QR(a, b, c, d) \
        a += b; d ^= a; d = DTLS13_ROTL(d, 16); \
        c += d; b ^= c; b = DTLS13_ROTL(b, 12); \
        a += b; d ^= a; d = DTLS13_ROTL(d, 8);  \
        c += d; b ^= c; b = DTLS13_ROTL(b, 7);
    static uint32_t dtls13_le32(const unsigned char *p) {
        return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16)
               | ((uint32_t)p[3] << 24);
    }
    /* One ChaCha20 block (RFC 8439 §2.3): key 32 bytes, in16 = 32-bit
       little-endian block counter followed by the 96-bit nonce; out 64 bytes. */
    static void dtls13_chacha20_block(const unsigned char *key, const unsigned char *in16,
                                      unsigned char *out) {
        uint32_t s[16], x[16];
        int i;
        s[0] = 0x61707865u; s[1] = 0x3320646eu; s[2] = 0x79622d32u; s[3] = 0x6b206574u;
        for (i = 0; i < 8; i++) s[4 + i] = dtls13_le32(key + 4 * i);
        for (i = 0; i < 4; i++) s[12 + i] = dtls13_le32(in16 + 4 * i);
        for (i = 0; i < 16; i++) x[i] = s[i];
        for (i = 0; i < 10; i++) {
            DTLS13_QR(x[0], x[4], x[8], x[12]) DTLS13_QR(x[1], x[5], x[9], x[13])
            DTLS13_QR(x[2], x[6], x[10], x[14]) DTLS13_QR(x[3], x[7], x[11], x[15])
            DTLS13_QR(x[0], x[5], x[10], x[15]) DTLS13_QR(x[1], x[6], x[11], x[12])
            DTLS13_QR(x[2], x[7], x[8], x[13]) DTLS13_QR(x[3], x[4], x[9], x[14])
        }
        for (i = 0; i < 16; i++) {
            uint32_t v = x[i] + s[i];
            out[4 * i] = (unsigned char)v; out[4 * i + 1] = (unsigned char)(v >> 8);
            out[4 * i + 2] = (unsigned char)(v >> 16); out[4 * i + 3] = (unsigned char)(v >> 24);
        }
    }
    """
    void dtls13_chacha20_block(const unsigned char *key, const unsigned char *in16,
                               unsigned char *out) nogil


# Content types that mark a DTLSPlaintext record (RFC 9147 §4.1).
cdef enum:
    _CT_ALERT = 21
    _CT_HANDSHAKE = 22
    _CT_ACK = 26
    _PLAINTEXT_HEADER = 13
    _MAX_PLAINTEXT = 16384
    _MAX_CIPHERTEXT = 16384 + 256

cdef uint64_t _SEQ_LIMIT = (<uint64_t>1) << 48


cdef inline void _get_read(object obj, Py_buffer *view) except *:
    PyObject_GetBuffer(obj, view, PyBUF_SIMPLE)


cdef inline void _get_write(object obj, Py_buffer *view) except *:
    PyObject_GetBuffer(obj, view, PyBUF_SIMPLE | PyBUF_WRITABLE)


cdef struct _Header:
    int first              # content type (DTLSPlaintext) or the 0b001CSLEE byte
    uint64_t epoch         # full 16-bit epoch, or the two low bits
    uint64_t seq           # full 48-bit number, or the 8/16 bits on the wire (masked)
    Py_ssize_t header_length
    Py_ssize_t length      # fragment bytes after the header


# _parse_header error codes and their messages.
cdef tuple _HEADER_ERRORS = (
    "",
    "no record at this offset",
    "truncated DTLSPlaintext header",
    "DTLSPlaintext record overruns the datagram",
    "DTLSPlaintext record longer than 2^14",
    "first byte is neither DTLSPlaintext nor 0b001CSLEE",
    "connection ID present but none was issued",
    "connection ID missing",
    "truncated unified header",
    "DTLSCiphertext record overruns the datagram",
    "DTLSCiphertext record longer than 2^14 + 256",
)


cdef int _parse_header(const uint8_t *p, Py_ssize_t n, Py_ssize_t o, Py_ssize_t cid_length,
                       _Header *h) noexcept nogil:
    """Parse the header at p[o:n]; 0 or an index into _HEADER_ERRORS."""
    cdef Py_ssize_t hl, length
    cdef int first
    if o < 0 or o >= n:
        return 1
    first = p[o]
    h.first = first
    if first == _CT_ALERT or first == _CT_HANDSHAKE or first == _CT_ACK:
        if n - o < _PLAINTEXT_HEADER:
            return 2
        # legacy_record_version (p[o+1..o+2]) "MUST be ignored for all purposes".
        h.epoch = (p[o + 3] << 8) | p[o + 4]
        h.seq = ((<uint64_t>p[o + 5] << 40) | (<uint64_t>p[o + 6] << 32)
                 | (<uint64_t>p[o + 7] << 24) | (<uint64_t>p[o + 8] << 16)
                 | (<uint64_t>p[o + 9] << 8) | <uint64_t>p[o + 10])
        length = (p[o + 11] << 8) | p[o + 12]
        if length > n - o - _PLAINTEXT_HEADER:
            return 3
        if length > _MAX_PLAINTEXT:
            return 4
        h.header_length = _PLAINTEXT_HEADER
        h.length = length
        return 0
    if (first & 0xE0) != 0x20:
        return 5
    hl = 1
    if first & 0x10:
        if cid_length <= 0:
            return 6
        hl += cid_length
    elif cid_length > 0:
        return 7
    if first & 0x08:
        if n - o < hl + 2:
            return 8
        h.seq = (p[o + hl] << 8) | p[o + hl + 1]
        hl += 2
    else:
        if n - o < hl + 1:
            return 8
        h.seq = p[o + hl]
        hl += 1
    if first & 0x04:
        if n - o < hl + 2:
            return 8
        length = (p[o + hl] << 8) | p[o + hl + 1]
        hl += 2
        if length > n - o - hl:
            return 9
    else:
        length = n - o - hl
    if length > _MAX_CIPHERTEXT:
        return 10
    h.epoch = first & 3
    h.header_length = hl
    h.length = length
    return 0


def parse_header_untrusted(data, Py_ssize_t offset, Py_ssize_t cid_length=0):
    """Parse the record header at `offset` of a datagram.

    Returns ``(first, epoch, seq, header_length, fragment_length)``:
    for a DTLSPlaintext record `first` is its content type and `epoch`/`seq`
    are the full 16/48-bit fields; for a unified header `first` is the
    0b001CSLEE byte, `epoch` its two low epoch bits and `seq` the 8 or 16
    sequence-number bits as on the wire (still encrypted). A missing length
    means the record runs to the end of the datagram. `cid_length` > 0 is
    the length of the connection ID this receiver issued; 0 means none.
    Raises DecodeError (and nothing else) on anything malformed.
    """
    cdef Py_buffer v
    cdef _Header h
    cdef int err
    try:
        _get_read(data, &v)
    except (TypeError, BufferError) as exc:
        raise DecodeError(f"not a byte buffer: {exc}") from None
    try:
        err = _parse_header(<const uint8_t *>v.buf, v.len, offset, cid_length, &h)
    finally:
        PyBuffer_Release(&v)
    if err:
        raise DecodeError(_HEADER_ERRORS[err])
    return (h.first, h.epoch, h.seq, h.header_length, h.length)


def encode_plaintext_header(buf, Py_ssize_t offset, int content_type, int epoch,
                            uint64_t seq, Py_ssize_t length):
    """Write a 13-byte DTLSPlaintext header (legacy version 0xfefd); returns 13."""
    cdef Py_buffer v
    cdef uint8_t *p
    if seq >= _SEQ_LIMIT or not 0 <= epoch <= 0xFFFF or not 0 <= length <= 0xFFFF:
        raise EncodeError("DTLSPlaintext field out of range")
    if not 0 <= content_type <= 255:
        raise EncodeError("content type out of range")
    _get_write(buf, &v)
    try:
        if offset < 0 or v.len - offset < _PLAINTEXT_HEADER:
            raise EncodeError("no room for a DTLSPlaintext header")
        p = <uint8_t *>v.buf + offset
        p[0] = <uint8_t>content_type
        p[1] = 0xFE
        p[2] = 0xFD
        p[3] = <uint8_t>(epoch >> 8)
        p[4] = <uint8_t>epoch
        p[5] = <uint8_t>(seq >> 40)
        p[6] = <uint8_t>(seq >> 32)
        p[7] = <uint8_t>(seq >> 24)
        p[8] = <uint8_t>(seq >> 16)
        p[9] = <uint8_t>(seq >> 8)
        p[10] = <uint8_t>seq
        p[11] = <uint8_t>(length >> 8)
        p[12] = <uint8_t>length
    finally:
        PyBuffer_Release(&v)
    return _PLAINTEXT_HEADER


cpdef Py_ssize_t unified_header_length(Py_ssize_t cid_length, int seq_bits, bint with_length):
    """Bytes of a unified header with these options."""
    return 1 + (cid_length if cid_length > 0 else 0) + (2 if seq_bits == 16 else 1) + (
        2 if with_length else 0)


def encode_unified_header(buf, Py_ssize_t offset, uint64_t epoch, uint64_t seq, int seq_bits,
                          cid, Py_ssize_t length):
    """Write a unified header (sequence number not yet encrypted); returns its length.

    `seq_bits` is 8 or 16; `cid` is None or the peer's connection ID (bytes);
    `length` < 0 omits the length field (the record then ends the datagram).
    """
    cdef Py_buffer v, c
    cdef uint8_t *p
    cdef Py_ssize_t cl = 0, hl, i
    cdef uint8_t first = 0x20 | <uint8_t>(epoch & 3)
    cdef const uint8_t *cp = NULL
    if seq_bits != 8 and seq_bits != 16:
        raise EncodeError("seq_bits must be 8 or 16")
    if seq >= _SEQ_LIMIT or length > 0xFFFF:
        raise EncodeError("unified header field out of range")
    if cid is not None:
        _get_read(cid, &c)
        cl = c.len
        cp = <const uint8_t *>c.buf
    try:
        if cl > 255:
            raise EncodeError("connection ID longer than 255 bytes")
        if cl > 0:
            first |= 0x10
        if seq_bits == 16:
            first |= 0x08
        if length >= 0:
            first |= 0x04
        hl = unified_header_length(cl, seq_bits, length >= 0)
        _get_write(buf, &v)
        try:
            if offset < 0 or v.len - offset < hl:
                raise EncodeError("no room for a unified header")
            p = <uint8_t *>v.buf + offset
            p[0] = first
            i = 1
            if cl > 0:
                memcpy(p + 1, cp, cl)
                i += cl
            if seq_bits == 16:
                p[i] = <uint8_t>(seq >> 8)
                i += 1
            p[i] = <uint8_t>seq
            i += 1
            if length >= 0:
                p[i] = <uint8_t>(length >> 8)
                p[i + 1] = <uint8_t>length
        finally:
            PyBuffer_Release(&v)
    finally:
        if cid is not None:
            PyBuffer_Release(&c)
    return hl


cpdef uint64_t reconstruct_sequence(uint64_t expected, uint64_t low, int bits) except? 0xFFFFFFFFFFFFFFFF:
    """The full sequence number with these `bits` low bits closest to `expected`.

    RFC 9147 §4.2.2: "the full sequence number which is numerically closest to
    one plus the sequence number of the highest successfully deprotected record"
    (`expected` is that value). Ties go to the lower candidate; the result
    never exceeds 2^48 - 1.
    """
    if bits <= 0 or bits > 48:
        raise ValueError("bits must be 1..48")
    cdef uint64_t span = (<uint64_t>1) << bits
    cdef uint64_t mask = span - 1
    cdef uint64_t cand = (expected & ~mask) | (low & mask)
    cdef uint64_t best = cand
    cdef uint64_t dist = cand - expected if cand >= expected else expected - cand
    cdef uint64_t alt, d
    if cand >= span:
        alt = cand - span
        d = expected - alt  # alt < expected whenever cand - span is considered
        if alt <= expected and d <= dist:
            best = alt
            dist = d
    alt = cand + span
    if alt < _SEQ_LIMIT and alt > expected:
        d = alt - expected
        if d < dist:
            best = alt
            dist = d
    if best >= _SEQ_LIMIT:
        best = _SEQ_LIMIT - 1
    return best


def xor_into(buf, Py_ssize_t offset, mask, Py_ssize_t count):
    """buf[offset:offset+count] ^= mask[:count] (record-number encryption, §4.2.3)."""
    cdef Py_buffer v, m
    cdef Py_ssize_t i
    cdef uint8_t *p
    cdef const uint8_t *q
    _get_write(buf, &v)
    try:
        _get_read(mask, &m)
        try:
            if offset < 0 or count < 0 or offset + count > v.len or count > m.len:
                raise ValueError("xor outside the buffers")
            p = <uint8_t *>v.buf + offset
            q = <const uint8_t *>m.buf
            for i in range(count):
                p[i] ^= q[i]
        finally:
            PyBuffer_Release(&m)
    finally:
        PyBuffer_Release(&v)


def make_nonce_into(out, iv, uint64_t seq):
    """out = iv XOR the 64-bit sequence number, left-padded (RFC 8446 §5.3)."""
    cdef Py_buffer o, i
    cdef Py_ssize_t k, n
    cdef uint8_t *p
    _get_write(out, &o)
    try:
        _get_read(iv, &i)
        try:
            n = i.len
            if n < 8 or o.len != n:
                raise ValueError("nonce and IV must have the same length, at least 8 bytes")
            p = <uint8_t *>o.buf
            memcpy(p, i.buf, n)
            for k in range(8):
                p[n - 1 - k] ^= <uint8_t>(seq >> (8 * k))
        finally:
            PyBuffer_Release(&i)
    finally:
        PyBuffer_Release(&o)


def chacha20_mask_into(key, sample, Py_ssize_t offset, out):
    """out[:64] = ChaCha20 block(key, counter = LE32 sample[offset:+4], nonce = next 12).

    RFC 9147 §4.2.3: "Mask = ChaCha20(sn_key, Ciphertext[0..3], Ciphertext[4..15])".
    """
    cdef Py_buffer k, s, o
    _get_read(key, &k)
    try:
        _get_read(sample, &s)
        try:
            _get_write(out, &o)
            try:
                if k.len != 32 or offset < 0 or s.len - offset < 16 or o.len < 64:
                    raise ValueError("ChaCha20 mask needs a 32-byte key, 16 sample bytes, 64 out")
                dtls13_chacha20_block(<const unsigned char *>k.buf,
                                      <const unsigned char *>s.buf + offset,
                                      <unsigned char *>o.buf)
            finally:
                PyBuffer_Release(&o)
        finally:
            PyBuffer_Release(&s)
    finally:
        PyBuffer_Release(&k)


def inner_content_type(buf, Py_ssize_t length):
    """(index, value) of the content type in a TLSInnerPlaintext of `length` bytes.

    RFC 8446 §5.4: the content type is the last non-zero byte; all zeros
    (no content type) gives (-1, 0), which the caller turns into a drop.
    """
    cdef Py_buffer v
    cdef const uint8_t *p
    cdef Py_ssize_t i
    _get_read(buf, &v)
    try:
        if length < 0 or length > v.len:
            raise ValueError("length outside the buffer")
        p = <const uint8_t *>v.buf
        i = length - 1
        while i >= 0 and p[i] == 0:
            i -= 1
        return (i, p[i] if i >= 0 else 0)
    finally:
        PyBuffer_Release(&v)


@cython.final
cdef class ReplayWindow:
    """Anti-replay sliding window of RFC 9147 §4.5.1 (RFC 4303 §3.4.3 bitmap).

    `size` (rounded up to a multiple of 64) records below the highest one
    accepted are tracked in a ring bitmap. `check()` never changes state;
    `update()` is called only after a record deprotected successfully.
    """

    cdef uint64_t *_bits
    cdef Py_ssize_t _words
    cdef readonly Py_ssize_t size
    cdef uint64_t _top  # highest accepted + 1; 0 before the first record

    def __cinit__(self, Py_ssize_t size=256):
        if size < 1:
            raise ValueError("replay window size must be positive")
        self._words = (size + 63) // 64
        self.size = self._words * 64
        self._bits = <uint64_t *>realloc(NULL, sizeof(uint64_t) * self._words)
        if self._bits == NULL:
            raise MemoryError()
        memset(self._bits, 0, sizeof(uint64_t) * self._words)
        self._top = 0

    def __dealloc__(self):
        if self._bits != NULL:
            free(self._bits)
            self._bits = NULL

    @property
    def highest(self):
        """The highest sequence number accepted, or -1 before the first."""
        return <long long>self._top - 1

    @property
    def expected(self):
        """One plus the highest accepted (the reconstruction target of §4.2.2)."""
        return self._top

    cpdef bint check(self, uint64_t seq):
        """True if `seq` is new: right of the window, or inside it and unseen."""
        cdef uint64_t pos
        if seq >= self._top:
            return True
        if self._top - seq > <uint64_t>self.size:
            return False
        pos = seq % <uint64_t>self.size
        return not (self._bits[pos >> 6] >> (pos & 63)) & 1

    cpdef void update(self, uint64_t seq):
        """Mark `seq` received, sliding the window right if it is the newest."""
        cdef uint64_t s, pos, size = <uint64_t>self.size
        if seq >= self._top:
            if seq - self._top >= size:
                memset(self._bits, 0, sizeof(uint64_t) * self._words)
            else:
                s = self._top
                while s <= seq:
                    pos = s % size
                    self._bits[pos >> 6] &= ~((<uint64_t>1) << (pos & 63))
                    s += 1
            self._top = seq + 1
        elif self._top - seq > size:
            return
        pos = seq % size
        self._bits[pos >> 6] |= (<uint64_t>1) << (pos & 63)

    def __repr__(self):
        return f"<ReplayWindow size={self.size} highest={self.highest}>"


def unmask_header_into(out, data, Py_ssize_t offset, Py_ssize_t header_length,
                       Py_ssize_t seq_pos, int seq_len, mask):
    """Copy a unified header into `out` with its sequence number decrypted.

    The copy is the AEAD additional data (RFC 9147 §4: the header "prior to
    record number encryption"); returns the decrypted low sequence bits.
    """
    cdef Py_buffer o, d, m
    cdef uint8_t *p
    cdef uint64_t low = 0
    cdef int i
    _get_write(out, &o)
    try:
        _get_read(data, &d)
        try:
            _get_read(mask, &m)
            try:
                if (offset < 0 or header_length < 0 or offset + header_length > d.len
                        or header_length > o.len or seq_len < 1 or seq_len > 2
                        or seq_pos < 1 or seq_pos + seq_len > header_length or m.len < seq_len):
                    raise ValueError("header outside the buffers")
                p = <uint8_t *>o.buf
                memcpy(p, <const uint8_t *>d.buf + offset, header_length)
                for i in range(seq_len):
                    p[seq_pos + i] ^= (<const uint8_t *>m.buf)[i]
                    low = (low << 8) | p[seq_pos + i]
            finally:
                PyBuffer_Release(&m)
        finally:
            PyBuffer_Release(&d)
    finally:
        PyBuffer_Release(&o)
    return low


def zero_fill(buf, Py_ssize_t offset, Py_ssize_t count):
    """buf[offset:offset+count] = zeros (record padding)."""
    cdef Py_buffer v
    _get_write(buf, &v)
    try:
        if offset < 0 or count < 0 or offset + count > v.len:
            raise ValueError("fill outside the buffer")
        memset(<uint8_t *>v.buf + offset, 0, count)
    finally:
        PyBuffer_Release(&v)


from cpython.memoryview cimport PyMemoryView_FromMemory
from cpython.buffer cimport PyBUF_READ, PyBUF_WRITE
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_CheckExact, PyBytes_GET_SIZE
from cpython.ref cimport Py_REFCNT
from libc.string cimport memcmp, memmove
from cpython.memoryview cimport PyMemoryView_FromObject

from cryptography.exceptions import InvalidTag as _InvalidTag

cdef enum:
    _MASK_SAMPLE = 16
    _MAX_HEADER = 1 + 255 + 2 + 2

# open_untrusted() outcomes besides success (a content-type index >= 0).
cpdef enum:
    OPEN_AUTH_FAILED = -1
    OPEN_REPLAY = -2
    OPEN_BAD_CONTENT_TYPE = -3


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
cdef class RecordCipher:
    """One epoch's record protection in one direction: AEAD, nonce, record-number mask.

    Holds the key bytes (key, IV, sn_key) inline and builds the OpenSSL-backed
    objects from them on first use: ``build(key, sn_key)`` (one shared callable
    per suite) returns ``(aead, ecb)``, a cryptography AEAD object (its
    encrypt_into/decrypt_into are called with views straight into the datagram
    and the plaintext lease) and an AES-ECB encryptor under sn_key, or None for
    ChaCha20 masks, computed here from sn_key (RFC 9147 §4.2.3). `release()`
    lets an idle epoch's objects go (a few KiB of OpenSSL contexts); the next
    record builds them again. The key bytes are zeroed when the cipher goes.
    """

    cdef object _build
    cdef object _aead       # None while released
    cdef object _ecb
    # The bytes objects the built objects were made from: zeroed once let go.
    cdef object _key_obj
    cdef object _sn_obj
    cdef readonly Py_ssize_t tag_length
    cdef readonly bint chacha
    cdef readonly unsigned int builds
    cdef Py_ssize_t _key_len
    cdef Py_ssize_t _sn_len
    cdef unsigned char _iv[12]
    cdef unsigned char _key[32]
    cdef unsigned char _sn_key[32]

    def __cinit__(self, build, key, iv, sn_key, Py_ssize_t tag_length, bint chacha):
        if not 1 <= tag_length <= 16:
            raise ValueError("tag length must be 1..16")
        self._key_len = _copy_secret(key, self._key, 16, 32, "key")
        _copy_secret(iv, self._iv, 12, 12, "record IV")
        self._sn_len = _copy_secret(sn_key, self._sn_key, 32 if chacha else 16, 32, "sn_key")
        self._build = build
        self.tag_length = tag_length
        self.chacha = chacha

    def __dealloc__(self):
        self._drop()
        dtls13_secure_zero(self._key, 32)
        dtls13_secure_zero(self._sn_key, 32)
        dtls13_secure_zero(self._iv, 12)

    @property
    def built(self):
        """Whether the AEAD (and AES-ECB mask) objects exist now."""
        return self._aead is not None

    def release(self):
        """Let the AEAD and mask objects go; the next record builds them again."""
        self._drop()

    cdef void _drop(self) noexcept:
        self._aead = None
        self._ecb = None
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
            aead, ecb = self._build(key, sn)
        except BaseException:
            _zero_bytes(<PyObject *>key, 1)
            _zero_bytes(<PyObject *>sn, 1)
            raise
        if aead is None or (ecb is None) != self.chacha:
            raise ValueError("build() must return (aead, ecb or None for ChaCha20)")
        self._key_obj = key
        self._sn_obj = sn
        self._aead = aead
        self._ecb = ecb
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
        # `out` holds 64 bytes: a whole ChaCha20 block, and more than AES-ECB
        # update_into's 31-byte minimum.
        if self.chacha:
            # "Mask = ChaCha20(sn_key, Ciphertext[0..3], Ciphertext[4..15])"
            dtls13_chacha20_block(self._sn_key, sample, out)
        else:
            # "Mask = AES-ECB(sn_key, Ciphertext[0..15])" (update() returning 16 new bytes
            # costs one allocation; update_into a view of `out` would cost two)
            block = self._ecb.update(
                PyMemoryView_FromMemory(<char *>sample, _MASK_SAMPLE, PyBUF_READ))
            if not PyBytes_CheckExact(block) or PyBytes_GET_SIZE(block) != _MASK_SAMPLE:
                raise ValueError("AES-ECB gave no 16-byte block")
            memcpy(out, PyBytes_AS_STRING(block), _MASK_SAMPLE)
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


@cython.final
@cython.freelist(256)
cdef class RecordNumber:
    """RFC 9147 §4: the unpacked (epoch, sequence_number) of a record.

    An immutable value (like a frozen dataclass: equality, ordering, hash),
    compiled because one is made for every record sent and received.
    """

    cdef readonly uint64_t epoch
    cdef readonly uint64_t sequence_number

    def __cinit__(self, uint64_t epoch, uint64_t sequence_number):
        self.epoch = epoch
        self.sequence_number = sequence_number

    def __richcmp__(self, other, int op):
        if not isinstance(other, RecordNumber):
            return NotImplemented
        cdef RecordNumber o = <RecordNumber>other
        a = (self.epoch, self.sequence_number)
        b = (o.epoch, o.sequence_number)
        if op == 0:
            return a < b
        if op == 1:
            return a <= b
        if op == 2:
            return a == b
        if op == 3:
            return a != b
        if op == 4:
            return a > b
        return a >= b

    def __hash__(self):
        return hash((self.epoch, self.sequence_number))

    def __repr__(self):
        return f"RecordNumber(epoch={self.epoch}, sequence_number={self.sequence_number})"

    def __reduce__(self):
        return (RecordNumber, (self.epoch, self.sequence_number))

    __match_args__ = ("epoch", "sequence_number")


@cython.final
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
    sending options. `add()` returns the record's RecordNumber, or None when
    the record does not fit the current datagram (call `new_datagram()` and
    retry). `finish()` hands the datagrams over: the caller sends `len(lease)`
    bytes of each and releases it. `abort()` (or leaving a `with` block)
    releases whatever was not handed over.
    """

    cdef dict _epochs
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

    def __cinit__(self, dict epochs, acquire, owner, Py_ssize_t mtu, int seq_bits, cid,
                  bint omit_last_length, Py_ssize_t padding, error):
        if seq_bits != 8 and seq_bits != 16:
            raise error("seq_bits must be 8 or 16")
        if not _PLAINTEXT_HEADER + 1 <= mtu <= 65535:
            raise error(f"MTU {mtu} is outside {_PLAINTEXT_HEADER + 1}..65535")
        self._epochs = epochs
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
        cdef object st = self._epochs.get(epoch)
        if st is None:
            raise self._error(f"no write keys for epoch {epoch}")
        return <WriteEpoch>st

    def space(self, epoch, *, bint last=False):
        """The largest payload one record of `epoch` can carry in this datagram.

        -1 when not even an empty record fits (0: only an empty one does).
        """
        cdef WriteEpoch st = self._state(epoch)
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
        cdef WriteEpoch st = self._state(epoch)
        cdef uint64_t seq = st.next_seq
        cdef Py_ssize_t total
        if seq >= _SEQ_LIMIT:
            raise self._error(f"sequence numbers of epoch {epoch} are exhausted")
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


cdef inline void _count(dict drops, str reason):
    drops[reason] = drops.get(reason, 0) + 1


def read_datagram_untrusted(data, Py_ssize_t cid_length, dict by_bits, int retired_bits,
                            ReplayWindow plaintext, acquire, owner, dict drops,
                            dict content_types, list pending=None, Py_ssize_t max_pending=0):
    """Every valid record of a datagram; invalid ones are counted in `drops` by reason.

    `plaintext` is epoch 0's replay window while DTLSPlaintext records are read (checked
    here, updated by the caller for records it took), None once epoch 0 retired (its records then count as "retired_epoch"). `by_bits` maps
    two epoch bits to the live ReadEpoch; `retired_bits` has bit (1 << b) set for the
    epoch bits b of retired epochs (their records count as "retired_epoch");
    `content_types` maps a content type value to the object put in the record. Records of an epoch neither live nor retired (its keys may come
    next) are copied whole into leases appended to `pending`, up to
    `max_pending` of them (RFC 9147 §4.2.1 allows buffering them). Returns
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
    try:
        _get_read(data, &v)
    except (TypeError, BufferError):
        _count(drops, "bad_header")
        return (out, newest)
    try:
        p = <const uint8_t *>v.buf
        n = v.len
        if n == 0:
            _count(drops, "bad_header")
        while o < n:
            if _parse_header(p, n, o, cid_length, &h):
                # Later records cannot be located: the rest goes too.
                _count(drops, "bad_header")
                break
            start = o + h.header_length
            if h.first < 0x20:
                o = start + h.length
                if h.epoch != 0:
                    _count(drops, "unknown_epoch")
                    continue
                if plaintext is None:
                    _count(drops, "retired_epoch")
                    continue
                # §4.5.1: "a separate sliding window is needed for each epoch", epoch 0
                # included: a copy of a record already taken is a replay. Nothing
                # authenticates plaintext, so only the connection marks a record taken
                # (RecordLayer.plaintext_taken, for a hello it used): a forged record
                # numbered far ahead and dropped must not push genuine ones out.
                if not plaintext.check(h.seq):
                    _count(drops, "replay")
                    continue
                try:
                    lease = acquire(h.length, owner)
                except MemoryBudgetExceeded:
                    _count(drops, "budget")
                    continue
                memcpy(lease._ptr, p + start, h.length)
                out.append(_inbound(0, h.seq, content_types[h.first], lease))
                continue
            if cid_length > 0:
                if first_cid < 0:
                    first_cid = o
                elif memcmp(p + o + 1, p + first_cid + 1, cid_length) != 0:
                    # §4: "the rest of the datagram MUST be discarded".
                    _count(drops, "bad_cid")
                    break
            obj = by_bits.get(<int>h.epoch)
            if obj is None:
                if (pending is not None and len(pending) < max_pending
                        and h.length >= _MASK_SAMPLE and not (retired_bits >> h.epoch) & 1):
                    try:
                        lease = acquire(h.header_length + h.length, owner)
                    except MemoryBudgetExceeded:
                        _count(drops, "budget")
                    else:
                        memcpy(lease._ptr, p + o, h.header_length + h.length)
                        pending.append(lease)
                else:
                    _count(drops, "retired_epoch" if (retired_bits >> h.epoch) & 1
                           else "unknown_epoch")
                o = start + h.length
                continue
            st = <ReadEpoch>obj
            # §4.2.3: "Receivers MUST reject shorter records as if they had failed
            # deprotection" (this also leaves room for the tag).
            if h.length < _MASK_SAMPLE:
                _count(drops, "too_short")
                o = start + h.length
                continue
            if st.failures >= st.limit:
                _count(drops, "integrity_limit")
                o = start + h.length
                continue
            try:
                lease = acquire(h.length - st.cipher.tag_length, owner)
            except MemoryBudgetExceeded:
                _count(drops, "budget")
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
                    _count(drops, "auth_failed")
                elif index == OPEN_REPLAY:
                    _count(drops, "replay")
                else:
                    _count(drops, "bad_content_type")
                continue
            lease._length = index
            out.append(_inbound(st.epoch, seq, content_types[ctype], lease))
            if <long long>st.epoch > newest:
                newest = <long long>st.epoch
    finally:
        PyBuffer_Release(&v)
    return (out, newest)
