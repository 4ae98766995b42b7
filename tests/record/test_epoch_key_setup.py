"""Per-epoch key set-up in one compiled call (`_fast.EpochKeyMaker`): the AEAD and the
AES-ECB record-number masks it builds are the ones the public `cryptography` API and the
reference derivation give, for every suite. The masks come from an AES-CBC context with a
zero IV fed each sample XOR the previous output block: every block must be the ECB one."""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms, modes

from dtls13._fast import keys as fast_keys
from dtls13.crypto.suites import CipherSuite
from dtls13.record.protection import _key_maker, record_cipher
from tests.record import test_record_reference as ref


def _public_aes_ecb(key: bytes) -> CipherContext:
    return Cipher(algorithms.AES(key), modes.ECB()).encryptor()


def test_the_direct_mask_context_is_used_and_gives_the_public_aes_ecb_blocks() -> None:
    # The installed cryptography passes the import-time check: no per-epoch Cipher(...).
    assert fast_keys.DIRECT_MASK_CTX
    maker = _key_maker(CipherSuite.TLS_AES_128_GCM_SHA256)
    for n in (16, 32):
        key = os.urandom(n)
        _, ctx = maker(os.urandom(16), key)
        assert ctx is not None
        ecb = _public_aes_ecb(key)
        previous = bytes(16)
        for _ in range(20):
            sample = os.urandom(16)
            previous = ctx.update(bytes(a ^ b for a, b in zip(sample, previous, strict=True)))
            assert previous == ecb.update(sample)


@pytest.mark.parametrize(
    "suite",
    [s for s in CipherSuite if s != CipherSuite.TLS_CHACHA20_POLY1305_SHA256],
    ids=lambda s: s.name,
)
def test_consecutive_masks_are_the_public_aes_ecb_blocks(suite: CipherSuite) -> None:
    secret = os.urandom(ref.secret_length(suite))
    _, _, sn_key = ref.keys(suite, secret)
    ecb = _public_aes_ecb(sn_key)
    cipher = record_cipher(suite, secret)
    for _ in range(2):  # again after release(): a new context, chained from its IV
        for _ in range(20):
            sample = os.urandom(16)
            assert bytes(cipher.mask(sample, 0)[:16]) == ecb.update(sample)
        cipher.release()
        assert not cipher.built


@pytest.mark.parametrize("suite", list(CipherSuite), ids=lambda s: s.name)
def test_the_built_aead_and_mask_are_the_suites_own(suite: CipherSuite) -> None:
    secret = os.urandom(ref.secret_length(suite))
    key, iv, sn_key = ref.keys(suite, secret)
    aead, ecb = _key_maker(suite)(key, None if suite == 0x1303 else sn_key)
    nonce, data, aad = os.urandom(12), os.urandom(100), os.urandom(13)
    sealed = aead.encrypt(nonce, data, aad)
    assert sealed == ref.aead(suite, key).encrypt(nonce, data, aad)
    assert (ecb is None) == (suite == CipherSuite.TLS_CHACHA20_POLY1305_SHA256)
    if ecb is not None:
        sample = os.urandom(16)
        assert ecb.update(sample) == ref.mask(suite, sn_key, sample)
    cipher = record_cipher(suite, secret)
    assert bytes(cipher.nonce(7)) == ref.nonce(iv, 7)
    sample = os.urandom(16)
    assert bytes(cipher.mask(sample, 0)[:16]) == ref.mask(suite, sn_key, sample)
    assert cipher.tag_length == (8 if suite == CipherSuite.TLS_AES_128_CCM_8_SHA256 else 16)


def test_a_maker_refuses_key_lengths_no_suite_has() -> None:
    with pytest.raises(ValueError):
        fast_keys.EpochKeyMaker("sha256", b"k", 24, b"i", 12, b"s", object, 16, False)
