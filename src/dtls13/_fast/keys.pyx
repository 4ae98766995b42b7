# cython: language_level=3, boundscheck=False, wraparound=False
# cython: cdivision=True, initializedcheck=False
"""Per-epoch key set-up in one call: a traffic secret to a ready `RecordCipher`.

HKDF-Expand-Label(secret, "key" / "iv" / "sn", "", length) is one HMAC each (RFC 8446
§7.3, RFC 9147 §4.2.3 and §5.9: every output fits one block); the blocks are cut by
pointer, copied inline by the cipher and zeroed here. The same object is the cipher's
`build(key, sn_key)`: the suite's AEAD and, for AES suites, the encryptor of the
record-number mask, made without `cryptography`'s per-object Python checks where its
compiled constructor is there to call (checked at import against the public API).

The mask is AES-ECB(sn_key, sample) (RFC 9147 §4.2.3). Its encryptor is AES-CBC with a
zero IV, which `RecordCipher` feeds each sample XOR the previous output block: CBC's
chaining then cancels out and every block is the ECB one. The CBC context costs fewer of
`cryptography`'s Python-level type checks to make than an ECB one (9 Python calls
against 14, four contexts per handshake).
"""

cimport cython
from cpython.buffer cimport PyBUF_READ
from cpython.bytes cimport (
    PyBytes_AS_STRING,
    PyBytes_CheckExact,
    PyBytes_FromStringAndSize,
    PyBytes_GET_SIZE,
)
from cpython.memoryview cimport PyMemoryView_FromMemory
from cpython.ref cimport Py_REFCNT

from ._common cimport dtls13_secure_zero
from .protection cimport RecordCipher

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

try:
    from _hashlib import hmac_new as _hmac_new
except ImportError:  # CPython without OpenSSL's _hashlib
    from hmac import new as _hmac_new

# One mode object for every mask context: a context copies the IV when it is made.
_MASK_MODE = modes.CBC(bytes(16))


def _public_ecb(key):
    """AES-ECB encryptor through the public API: the reference the masks must match."""
    return Cipher(algorithms.AES(key), modes.ECB()).encryptor()


def _public_mask_ctx(key):
    """The mask encryptor (AES-CBC, zero IV) through the public API: the fallback."""
    return Cipher(algorithms.AES(key), _MASK_MODE).encryptor()


cdef object _create_ctx = None   # cryptography's compiled context constructor, if usable
cdef object _AES128 = None
cdef object _AES256 = None


cdef object _direct_mask_ctx(object key):
    # What Cipher(AES(key), CBC(zeros)).encryptor() ends in, without the Python-level
    # checks on the way (the key length is fixed by the suite and checked by the caller).
    cls = _AES128 if PyBytes_GET_SIZE(key) == 16 else _AES256
    algorithm = cls.__new__(cls)
    algorithm.key = key
    return _create_ctx(algorithm, _MASK_MODE)


def _probe_direct_mask_ctx():
    """Use the direct path only if, fed as RecordCipher feeds it, it gives exactly the
    public AES-ECB blocks."""
    global _create_ctx, _AES128, _AES256
    cdef int i
    try:
        from cryptography.hazmat.bindings._rust import openssl as rust_openssl

        _create_ctx = rust_openssl.ciphers.create_encryption_ctx
        _AES128, _AES256 = algorithms.AES128, algorithms.AES256
        for n in (16, 32):
            key = bytes(range(n))
            ctx, ecb = _direct_mask_ctx(key), _public_ecb(key)
            previous = bytes(16)
            for i in range(3):
                block = bytes(range(100 + i, 116 + i))
                previous = ctx.update(bytes([a ^ b for a, b in zip(block, previous)]))
                if previous != ecb.update(block):
                    raise ValueError("direct AES-CBC masks differ from AES-ECB")
    except Exception:
        _create_ctx = None
    return _create_ctx is not None


DIRECT_MASK_CTX = _probe_direct_mask_ctx()

# Test hook: called with a copy of each key block wiped (None: off).
cdef object _wipe_hook = None


def set_wipe_hook(hook):
    """Have `hook(bytes)` told each HMAC block `EpochKeyMaker.cipher` zeroes (tests)."""
    global _wipe_hook
    _wipe_hook = hook


cdef inline void _wipe_block(object block):
    # Ours alone (the local variable's one reference): zero it before it is freed.
    if PyBytes_CheckExact(block) and Py_REFCNT(block) == 1:
        if _wipe_hook is not None:
            _wipe_hook(PyBytes_FromStringAndSize(PyBytes_AS_STRING(block),
                                                 PyBytes_GET_SIZE(block)))
        dtls13_secure_zero(PyBytes_AS_STRING(block), <size_t>PyBytes_GET_SIZE(block))


@cython.final
cdef class EpochKeyMaker:
    """One suite's epoch key set-up: `cipher(secret)` derives key, IV and sn_key and
    returns the `RecordCipher`; calling the maker itself is that cipher's
    ``build(key, sn_key) -> (aead, mask encryptor or None)``."""

    cdef readonly str hash_name
    cdef bytes _key_info
    cdef bytes _iv_info
    cdef bytes _sn_info
    cdef Py_ssize_t _key_len
    cdef Py_ssize_t _iv_len
    cdef object _make_aead
    cdef readonly Py_ssize_t tag_length
    cdef readonly bint chacha

    def __init__(self, str hash_name, bytes key_info, Py_ssize_t key_length, bytes iv_info,
                 Py_ssize_t iv_length, bytes sn_info, make_aead, Py_ssize_t tag_length,
                 bint chacha):
        if key_length not in (16, 32) or iv_length != 12:
            raise ValueError("key length must be 16 or 32 and the IV 12 bytes")
        self.hash_name = hash_name
        self._key_info = key_info
        self._iv_info = iv_info
        self._sn_info = sn_info
        self._key_len = key_length
        self._iv_len = iv_length
        self._make_aead = make_aead
        self.tag_length = tag_length
        self.chacha = chacha

    def __call__(self, key, sn_key):
        aead = self._make_aead(key)
        if sn_key is None:
            return aead, None
        if _create_ctx is not None and PyBytes_CheckExact(sn_key) and (
                PyBytes_GET_SIZE(sn_key) == 16 or PyBytes_GET_SIZE(sn_key) == 32):
            return aead, _direct_mask_ctx(sn_key)
        return aead, _public_mask_ctx(sn_key)

    def cipher(self, secret):
        """The RecordCipher of a traffic secret (HKDF-Expand-Label of key, iv, sn)."""
        h = self.hash_name
        key_block = _hmac_new(secret, self._key_info, h).digest()
        iv_block = _hmac_new(secret, self._iv_info, h).digest()
        sn_block = _hmac_new(secret, self._sn_info, h).digest()
        try:
            if (PyBytes_GET_SIZE(key_block) < self._key_len
                    or PyBytes_GET_SIZE(sn_block) < self._key_len):
                raise ValueError("the hash is shorter than the key")
            # Cuts of the blocks by pointer: no copies beyond the cipher's own.
            return RecordCipher(
                self,
                PyMemoryView_FromMemory(PyBytes_AS_STRING(key_block), self._key_len, PyBUF_READ),
                PyMemoryView_FromMemory(PyBytes_AS_STRING(iv_block), self._iv_len, PyBUF_READ),
                PyMemoryView_FromMemory(PyBytes_AS_STRING(sn_block), self._key_len, PyBUF_READ),
                self.tag_length,
                self.chacha,
            )
        finally:
            _wipe_block(key_block)
            _wipe_block(iv_block)
            _wipe_block(sn_block)
