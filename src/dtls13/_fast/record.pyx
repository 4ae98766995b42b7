# cython: language_level=3, boundscheck=False, wraparound=False
# cython: cdivision=True, initializedcheck=False
"""Record-layer codecs: headers, record numbers, the replay window, mask and nonce helpers.

RFC 9147 §4: DTLSPlaintext and unified-header (DTLSCiphertext) codecs, record
number reconstruction (§4.2.2), record-number masks (§4.2.3), per-record nonces
(RFC 8446 §5.3) and the anti-replay window (§4.5.1). Functions reading network
bytes end in `_untrusted` and raise only DecodeError.
"""

cimport cython
from cpython.buffer cimport PyBuffer_Release
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from libc.stdint cimport uint8_t, uint64_t
from libc.string cimport memcpy, memset

from ._common cimport (
    _CT_ACK,
    _CT_ALERT,
    _CT_HANDSHAKE,
    _MAX_CIPHERTEXT,
    _MAX_PLAINTEXT,
    _PLAINTEXT_HEADER,
    _SEQ_LIMIT,
    _get_read,
    _get_write,
    dtls13_chacha20_block,
)

from .errors import DecodeError, EncodeError


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


cpdef uint64_t reconstruct_sequence(
        uint64_t expected, uint64_t low, int bits) except? 0xFFFFFFFFFFFFFFFF:
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


# Records a window tracks at most (a 2 MiB bitmap): far beyond any reordering, and its
# size fits a C int.
cdef enum:
    _MAX_WINDOW = 1 << 24


@cython.final
cdef class ReplayWindow:
    """Anti-replay sliding window of RFC 9147 §4.5.1 (RFC 4303 §3.4.3 bitmap).

    `size` (rounded up to a multiple of 64) records below the highest one
    accepted are tracked in a ring bitmap. `check()` never changes state;
    `update()` is called only after a record deprotected successfully.
    """

    def __cinit__(self, Py_ssize_t size=256):
        if size < 1:
            raise ValueError("replay window size must be positive")
        if size > _MAX_WINDOW:
            raise ValueError(f"replay window size must be at most {_MAX_WINDOW}")
        self._words = <int>((size + 63) // 64)
        self.size = self._words * 64
        # From Python's allocator (its object arenas, for up to 512 B), not malloc: a window
        # lives as long as its epoch, and one among the OpenSSL contexts a handshake
        # allocates would keep their pages from going back once they are freed.
        self._bits = <uint64_t *>PyMem_Malloc(sizeof(uint64_t) * self._words)
        if self._bits == NULL:
            raise MemoryError()
        memset(self._bits, 0, sizeof(uint64_t) * self._words)
        self._top = 0

    def __dealloc__(self):
        if self._bits != NULL:
            PyMem_Free(self._bits)
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


@cython.final
@cython.freelist(256)
cdef class RecordNumber:
    """RFC 9147 §4: the unpacked (epoch, sequence_number) of a record.

    An immutable value (like a frozen dataclass: equality, ordering, hash),
    compiled because one is made for every record sent and received.
    """

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
