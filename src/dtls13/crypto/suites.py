"""The five TLS 1.3 cipher suites (RFC 8446 §B.4) and their AEAD parameters."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TypeAlias

from cryptography.hazmat.primitives.ciphers.aead import AESCCM, AESGCM, ChaCha20Poly1305

AEAD: TypeAlias = AESGCM | AESCCM | ChaCha20Poly1305


class CipherSuite(enum.IntEnum):
    """TLS Cipher Suites registry values for TLS 1.3."""

    TLS_AES_128_GCM_SHA256 = 0x1301
    TLS_AES_256_GCM_SHA384 = 0x1302
    TLS_CHACHA20_POLY1305_SHA256 = 0x1303
    TLS_AES_128_CCM_SHA256 = 0x1304
    TLS_AES_128_CCM_8_SHA256 = 0x1305


_CCM = frozenset({CipherSuite.TLS_AES_128_CCM_SHA256, CipherSuite.TLS_AES_128_CCM_8_SHA256})


@dataclass(frozen=True, slots=True)
class SuiteParams:
    """What the record layer and key schedule need to know about a suite."""

    suite: CipherSuite
    hash_name: str  # hashlib name
    key_length: int
    iv_length: int
    tag_length: int
    chacha: bool  # record numbers masked with ChaCha20 instead of AES-ECB

    def aead(self, key: bytes) -> AEAD:
        """A fresh AEAD object for `key`."""
        if self.chacha:
            return ChaCha20Poly1305(key)
        if self.suite in _CCM:
            return AESCCM(key, tag_length=self.tag_length)
        return AESGCM(key)

    def aead_factory(self) -> Callable[[bytes], AEAD]:
        """`aead` as a compiled callable (no Python frame per epoch)."""
        if self.chacha:
            return ChaCha20Poly1305
        if self.suite in _CCM:
            return partial(AESCCM, tag_length=self.tag_length)
        return AESGCM

    @property
    def hash_length(self) -> int:
        return 48 if self.hash_name == "sha384" else 32


SUITES: dict[CipherSuite, SuiteParams] = {
    CipherSuite.TLS_AES_128_GCM_SHA256: SuiteParams(
        CipherSuite.TLS_AES_128_GCM_SHA256, "sha256", 16, 12, 16, False
    ),
    CipherSuite.TLS_AES_256_GCM_SHA384: SuiteParams(
        CipherSuite.TLS_AES_256_GCM_SHA384, "sha384", 32, 12, 16, False
    ),
    CipherSuite.TLS_CHACHA20_POLY1305_SHA256: SuiteParams(
        CipherSuite.TLS_CHACHA20_POLY1305_SHA256, "sha256", 32, 12, 16, True
    ),
    CipherSuite.TLS_AES_128_CCM_SHA256: SuiteParams(
        CipherSuite.TLS_AES_128_CCM_SHA256, "sha256", 16, 12, 16, False
    ),
    CipherSuite.TLS_AES_128_CCM_8_SHA256: SuiteParams(
        CipherSuite.TLS_AES_128_CCM_8_SHA256, "sha256", 16, 12, 8, False
    ),
}

# CCM-8 is off by default: its 64-bit tag gives a much lower integrity limit
# (RFC 9147 §4.5.3 and RFC 8446 §B.4 note it is not for general use).
DEFAULT_SUITES: tuple[CipherSuite, ...] = (
    CipherSuite.TLS_AES_128_GCM_SHA256,
    CipherSuite.TLS_AES_256_GCM_SHA384,
    CipherSuite.TLS_CHACHA20_POLY1305_SHA256,
    CipherSuite.TLS_AES_128_CCM_SHA256,
)
