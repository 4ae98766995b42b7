"""Per-epoch record protection (RFC 9147 §4.2.3, §4.5.3; RFC 8446 §5.2-§5.3).

`EpochKeys` holds one direction's AEAD, IV and record-number mask state for
one epoch, all derived from the traffic secret with HKDF-Expand-Label and the
"dtls13" prefix (RFC 9147 §5.9).
"""

from __future__ import annotations

from typing_extensions import Buffer as BufferLike

from .._fast import EpochKeyMaker, RecordCipher
from ..crypto.hkdf import expand_label_info, hmac_digest
from ..crypto.suites import SUITES, CipherSuite, SuiteParams

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


# Per suite, the compiled epoch key set-up (made once per suite, not per epoch): the hash and
# the three HMAC inputs of HKDF-Expand-Label(secret, "key" / "iv" / "sn", "", length), and
# what RecordCipher builds its AEAD and record-number mask objects with.
_KEY_MAKERS: dict[int, EpochKeyMaker] = {}


def _key_maker(suite: CipherSuite) -> EpochKeyMaker:
    maker = _KEY_MAKERS.get(suite)
    if maker is None:
        params = SUITES[suite]
        n, n_iv = params.key_length, params.iv_length
        maker = EpochKeyMaker(
            params.hash_name,
            expand_label_info(b"key", n),
            n,
            expand_label_info(b"iv", n_iv),
            n_iv,
            expand_label_info(b"sn", n),
            params.aead_factory(),
            params.tag_length,
            params.chacha,
        )
        _KEY_MAKERS[suite] = maker
    return maker


def record_cipher(suite: CipherSuite, secret: bytes) -> RecordCipher:
    """One epoch's `RecordCipher` (one direction) from its traffic secret."""
    maker = _KEY_MAKERS.get(suite) or _key_maker(suite)
    return maker.cipher(secret)


def derive_record_keys(suite: CipherSuite, secret: bytes) -> tuple[bytes, bytes, bytes]:
    """(key, iv, sn_key) for a traffic secret (RFC 8446 §7.3, RFC 9147 §4.2.3)."""
    params = SUITES[suite]
    h, n, n_iv = params.hash_name, params.key_length, params.iv_length
    # HKDF-Expand-Label with an empty context: one HMAC each (the outputs fit one block).
    key = hmac_digest(secret, expand_label_info(b"key", n), h)[:n]
    iv = hmac_digest(secret, expand_label_info(b"iv", n_iv), h)[:n_iv]
    sn_key = hmac_digest(secret, expand_label_info(b"sn", n), h)[:n]
    return key, iv, sn_key


class EpochKeys:
    """AEAD, per-record nonce and record-number mask for one epoch and direction.

    `cipher` (compiled) does the per-record work: `seal_into` and `open_untrusted`; it
    builds its OpenSSL-backed objects on first use and again after `release()`.
    """

    __slots__ = ("cipher", "epoch", "params", "suite", "tag_length")

    def __init__(self, epoch: int, suite: CipherSuite, secret: bytes) -> None:
        params: SuiteParams = SUITES[suite]
        self.epoch = epoch
        self.suite = suite
        self.params = params
        self.tag_length = params.tag_length
        # The cipher copies the keys inline; the HMAC blocks they were cut from are zeroed.
        self.cipher = record_cipher(suite, secret)

    def nonce(self, sequence_number: int) -> bytearray:
        """IV xor the 64-bit sequence number (RFC 8446 §5.3; RFC 9147 §4: not the epoch)."""
        return self.cipher.nonce(sequence_number)

    def mask(self, data: BufferLike, offset: int) -> bytearray:
        """The record-number mask for the 16 ciphertext bytes at data[offset:] (§4.2.3)."""
        return self.cipher.mask(data, offset)
