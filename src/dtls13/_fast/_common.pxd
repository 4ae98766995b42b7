# C helpers and wire constants shared by the _fast modules (cimported; no runtime module).

from cpython.buffer cimport PyBUF_SIMPLE, PyBUF_WRITABLE, PyObject_GetBuffer
from libc.stdint cimport uint64_t

cdef extern from *:
    """
    #include <stdint.h>
    #include <string.h>
    /* memset that the optimiser may not drop: the barrier makes the zeroed
       bytes observable. */
    static CYTHON_INLINE void dtls13_secure_zero(void *p, size_t n) {
        memset(p, 0, n);
    #if defined(__GNUC__) || defined(__clang__)
        __asm__ __volatile__("" : : "r"(p) : "memory");
    #endif
    }

    #define DTLS13_SEQ_LIMIT (((uint64_t)1) << 48)

    #define DTLS13_ROTL(v, c) (((v) << (c)) | ((v) >> (32 - (c))))
    #define DTLS13_QR(a, b, c, d) \
        a += b; d ^= a; d = DTLS13_ROTL(d, 16); \
        c += d; b ^= c; b = DTLS13_ROTL(b, 12); \
        a += b; d ^= a; d = DTLS13_ROTL(d, 8);  \
        c += d; b ^= c; b = DTLS13_ROTL(b, 7);
    static CYTHON_INLINE uint32_t dtls13_le32(const unsigned char *p) {
        return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16)
               | ((uint32_t)p[3] << 24);
    }
    /* One ChaCha20 block (RFC 8439 §2.3): key 32 bytes, in16 = 32-bit
       little-endian block counter followed by the 96-bit nonce; out 64 bytes. */
    static CYTHON_INLINE void dtls13_chacha20_block(const unsigned char *key,
                                                    const unsigned char *in16,
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
    void dtls13_secure_zero(void *p, size_t n) nogil
    void dtls13_chacha20_block(const unsigned char *key, const unsigned char *in16,
                               unsigned char *out) nogil
    # 2^48: record sequence numbers stay below it (RFC 9147 §4.2.1).
    const uint64_t _SEQ_LIMIT "DTLS13_SEQ_LIMIT"


# Content types that mark a DTLSPlaintext record (RFC 9147 §4.1), and record sizes.
cdef enum:
    _CT_ALERT = 21
    _CT_HANDSHAKE = 22
    _CT_ACK = 26
    _PLAINTEXT_HEADER = 13
    _MAX_PLAINTEXT = 16384
    _MAX_CIPHERTEXT = 16384 + 256
    _MASK_SAMPLE = 16
    _MAX_HEADER = 1 + 255 + 2 + 2


cdef inline void _get_read(object obj, Py_buffer *view) except *:
    PyObject_GetBuffer(obj, view, PyBUF_SIMPLE)


cdef inline void _get_write(object obj, Py_buffer *view) except *:
    PyObject_GetBuffer(obj, view, PyBUF_SIMPLE | PyBUF_WRITABLE)
