"""Per-epoch record protection (RFC 9147 §4.2.3, §4.5.3; RFC 8446 §5.2-§5.3).

`EpochKeys` holds one direction's AEAD, IV and record-number mask state for
one epoch, all derived from the traffic secret with HKDF-Expand-Label and the
"dtls13" prefix (RFC 9147 §5.9).
"""

from __future__ import annotations

from collections.abc import Callable

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from typing_extensions import Buffer as BufferLike

from .._fast import RecordCipher
from ..crypto.hkdf import expand_label_info, hmac_digest
from ..crypto.suites import AEAD, SUITES, CipherSuite, SuiteParams
from ..crypto.zeroize import zeroize

# RFC 9147 §4.2.3: the mask is computed over the first 16 ciphertext bytes.
MASK_SAMPLE = 16

# Records protected per key before a KeyUpdate is due: RFC 8446 §5.5 (AES-GCM
# 2^24.5; for ChaCha20-Poly1305 the sequence number runs out first) and RFC 9147
# §4.5.3 / Appendix B.1 (AES-CCM and CCM-8: 2^23).
CONFIDENTIALITY_LIMITS: dict[CipherSuite, int] = {
    CipherSuite.TLS_AES_128_GCM_SHA256: int(2**24.5),
    CipherSuite.TLS_AES_256_GCM_SHA384: int(2**24.5),
    CipherSuite.TLS_CHACHA20_POLY1305_SHA256: 1 << 48,
    CipherSuite.TLS_AES_128_CCM_SHA256: 1 << 23,
    CipherSuite.TLS_AES_128_CCM_8_SHA256: 1 << 23,
}

# Records failing authentication per key before the connection must close:
# RFC 9147 §4.5.3 (2^36 for GCM and ChaCha20-Poly1305, 2^23.5 for CCM) and
# Appendix B.3 (2^7 for CCM-8).
INTEGRITY_LIMITS: dict[CipherSuite, int] = {
    CipherSuite.TLS_AES_128_GCM_SHA256: 1 << 36,
    CipherSuite.TLS_AES_256_GCM_SHA384: 1 << 36,
    CipherSuite.TLS_CHACHA20_POLY1305_SHA256: 1 << 36,
    CipherSuite.TLS_AES_128_CCM_SHA256: int(2**23.5),
    CipherSuite.TLS_AES_128_CCM_8_SHA256: 1 << 7,
}


# Per suite, what deriving one epoch's keys needs: the hash, the three HMAC inputs of
# HKDF-Expand-Label(secret, "key" / "iv" / "sn", "", length) with their lengths, and what
# RecordCipher builds its objects with (made once per suite, not per epoch).
_Build = Callable[[bytes, bytes | None], tuple[AEAD, object]]
_KeySpec = tuple[str, bytes, int, bytes, int, bytes, _Build]
_KEY_SPECS: dict[int, _KeySpec] = {}
_ECB = modes.ECB()


def _builder(params: SuiteParams) -> _Build:
    """RecordCipher's build(key, sn_key): the AEAD and, for AES suites, one AES-ECB
    encryptor reused for every record mask of the epoch (ECB keeps no state between
    blocks); ChaCha20 masks are computed in _fast."""
    make_aead = params.aead

    def build(key: bytes, sn_key: bytes | None) -> tuple[AEAD, object]:
        if sn_key is None:
            return make_aead(key), None
        return make_aead(key), Cipher(algorithms.AES(sn_key), _ECB).encryptor()

    return build


def _key_spec(suite: CipherSuite) -> _KeySpec:
    spec = _KEY_SPECS.get(suite)
    if spec is None:
        params = SUITES[suite]
        n, n_iv = params.key_length, params.iv_length
        spec = (
            params.hash_name,
            expand_label_info(b"key", n),
            n,
            expand_label_info(b"iv", n_iv),
            n_iv,
            expand_label_info(b"sn", n),
            _builder(params),
        )
        _KEY_SPECS[suite] = spec
    return spec


def derive_record_keys(suite: CipherSuite, secret: bytes) -> tuple[bytes, bytes, bytes]:
    """(key, iv, sn_key) for a traffic secret (RFC 8446 §7.3, RFC 9147 §4.2.3)."""
    h, key_info, n, iv_info, n_iv, sn_info, _ = _key_spec(suite)
    # HKDF-Expand-Label with an empty context: one HMAC each (the outputs fit one block).
    key = hmac_digest(secret, key_info, h)[:n]
    iv = hmac_digest(secret, iv_info, h)[:n_iv]
    sn_key = hmac_digest(secret, sn_info, h)[:n]
    return key, iv, sn_key


class EpochKeys:
    """AEAD, per-record nonce and record-number mask for one epoch and direction.

    `cipher` (compiled) does the per-record work: `seal_into` and `open_untrusted`; it
    builds its OpenSSL-backed objects on first use and again after `release()`.
    """

    __slots__ = ("cipher", "epoch", "params", "suite", "tag_length")

    def __init__(self, epoch: int, suite: CipherSuite, secret: bytes) -> None:
        params: SuiteParams = SUITES[suite]
        h, key_info, n, iv_info, n_iv, sn_info, build = _key_spec(suite)
        self.epoch = epoch
        self.suite = suite
        self.params = params
        self.tag_length = params.tag_length
        # HKDF-Expand-Label's one block, cut to size (RFC 8446 §7.3): the cipher copies the
        # keys inline, so both the blocks and the cuts are zeroed here.
        key_block = hmac_digest(secret, key_info, h)
        iv_block = hmac_digest(secret, iv_info, h)
        sn_block = hmac_digest(secret, sn_info, h)
        # Copies, never the block itself (a slice of the whole is the same object).
        key = bytes(memoryview(key_block)[:n])
        iv = bytes(memoryview(iv_block)[:n_iv])
        sn_key = bytes(memoryview(sn_block)[:n])
        try:
            self.cipher = RecordCipher(build, key, iv, sn_key, params.tag_length, params.chacha)
        finally:
            zeroize(key_block)
            zeroize(iv_block)
            zeroize(sn_block)
            zeroize(key)
            zeroize(iv)
            zeroize(sn_key)

    def nonce(self, sequence_number: int) -> bytearray:
        """IV xor the 64-bit sequence number (RFC 8446 §5.3; RFC 9147 §4: not the epoch)."""
        return self.cipher.nonce(sequence_number)

    def mask(self, data: BufferLike, offset: int) -> bytearray:
        """The record-number mask for the 16 ciphertext bytes at data[offset:] (§4.2.3)."""
        return self.cipher.mask(data, offset)
