"""An independent DTLS 1.3 record protector written from the RFC text for the tests.

Uses only plain `cryptography` calls and the standard library: none of the
library's helpers, so a mistake made the same way on both sides cannot pass.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESCCM, AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

# suite -> (hash, key length, tag length, kind)
SUITE_INFO = {
    0x1301: (hashes.SHA256, 16, 16, "gcm"),
    0x1302: (hashes.SHA384, 32, 16, "gcm"),
    0x1303: (hashes.SHA256, 32, 16, "chacha"),
    0x1304: (hashes.SHA256, 16, 16, "ccm"),
    0x1305: (hashes.SHA256, 16, 8, "ccm"),
}


def secret_length(suite: int) -> int:
    return 48 if suite == 0x1302 else 32


def expand_label(suite: int, secret: bytes, label: bytes, length: int) -> bytes:
    """RFC 8446 §7.1 HKDF-Expand-Label with RFC 9147 §5.9's "dtls13" prefix."""
    full = b"dtls13" + label
    info = length.to_bytes(2, "big") + bytes([len(full)]) + full + b"\x00"
    return HKDFExpand(SUITE_INFO[suite][0](), length, info).derive(secret)


def keys(suite: int, secret: bytes) -> tuple[bytes, bytes, bytes]:
    key_len = SUITE_INFO[suite][1]
    return (
        expand_label(suite, secret, b"key", key_len),
        expand_label(suite, secret, b"iv", 12),
        expand_label(suite, secret, b"sn", key_len),
    )


def aead(suite: int, key: bytes) -> AESGCM | AESCCM | ChaCha20Poly1305:
    kind = SUITE_INFO[suite][3]
    if kind == "gcm":
        return AESGCM(key)
    if kind == "chacha":
        return ChaCha20Poly1305(key)
    return AESCCM(key, tag_length=SUITE_INFO[suite][2])


def mask(suite: int, sn_key: bytes, sample: bytes) -> bytes:
    """RFC 9147 §4.2.3 record-number mask over the first 16 ciphertext bytes."""
    assert len(sample) == 16
    if SUITE_INFO[suite][3] == "chacha":
        # cryptography's 16-byte ChaCha20 nonce is the 4-byte little-endian block
        # counter followed by the 12-byte nonce: exactly Ciphertext[0..15].
        enc = Cipher(algorithms.ChaCha20(sn_key, sample), mode=None).encryptor()
        return enc.update(bytes(16))
    enc = Cipher(algorithms.AES(sn_key), modes.ECB()).encryptor()
    return enc.update(sample) + enc.finalize()


def nonce(iv: bytes, seq: int) -> bytes:
    """RFC 8446 §5.3: IV xor the 64-bit sequence number padded to the IV length."""
    padded = seq.to_bytes(len(iv), "big")
    return bytes(a ^ b for a, b in zip(iv, padded, strict=True))


def protect(
    suite: int,
    secret: bytes,
    epoch: int,
    seq: int,
    content_type: int,
    payload: bytes,
    *,
    seq_bits: int = 16,
    with_length: bool = True,
    cid: bytes = b"",
    padding: int = 0,
) -> bytes:
    """One DTLSCiphertext record built straight from RFC 9147 §4."""
    key, iv, sn_key = keys(suite, secret)
    tag = SUITE_INFO[suite][2]
    inner = payload + bytes([content_type]) + bytes(padding)
    first = 0x20 | (epoch & 3)
    if cid:
        first |= 0x10
    if seq_bits == 16:
        first |= 0x08
    if with_length:
        first |= 0x04
    seq_field = (seq & ((1 << seq_bits) - 1)).to_bytes(seq_bits // 8, "big")
    length_field = (len(inner) + tag).to_bytes(2, "big") if with_length else b""
    header = bytes([first]) + cid + seq_field + length_field
    ciphertext = aead(suite, key).encrypt(nonce(iv, seq), inner, header)
    m = mask(suite, sn_key, ciphertext[:16])
    enc_seq = bytes(a ^ b for a, b in zip(seq_field, m[: len(seq_field)], strict=True))
    return bytes([first]) + cid + enc_seq + length_field + ciphertext


def plaintext(content_type: int, seq: int, payload: bytes, epoch: int = 0) -> bytes:
    """A DTLSPlaintext record (RFC 9147 §4)."""
    return (
        bytes([content_type, 0xFE, 0xFD])
        + epoch.to_bytes(2, "big")
        + seq.to_bytes(6, "big")
        + len(payload).to_bytes(2, "big")
        + payload
    )


def unprotect(
    suite: int, secret: bytes, record: bytes, full_seq: int, cid_length: int = 0
) -> tuple[int, int, bytes, int]:
    """Read one DTLSCiphertext record that fills `record`.

    Returns (epoch bits, content type, payload, padding length); checks that
    the low sequence bits on the wire (after unmasking) match `full_seq`.
    """
    key, iv, sn_key = keys(suite, secret)
    first = record[0]
    assert first >> 5 == 0b001
    pos = 1
    if first & 0x10:
        pos += cid_length
    seq_len = 2 if first & 0x08 else 1
    seq_at = pos
    pos += seq_len
    if first & 0x04:
        length = int.from_bytes(record[pos : pos + 2], "big")
        pos += 2
        assert len(record) == pos + length
    ciphertext = record[pos:]
    m = mask(suite, sn_key, ciphertext[:16])
    low = bytes(a ^ b for a, b in zip(record[seq_at : seq_at + seq_len], m, strict=False))
    assert int.from_bytes(low, "big") == full_seq & ((1 << (8 * seq_len)) - 1)
    header = record[:seq_at] + low + record[seq_at + seq_len : pos]
    inner = aead(suite, key).decrypt(nonce(iv, full_seq), ciphertext, header)
    stripped = inner.rstrip(b"\x00")
    return first & 3, stripped[-1], stripped[:-1], len(inner) - len(stripped)


def test_reference_round_trip_and_rfc8448_label() -> None:
    """The reference itself: its HKDF-Expand-Label matches RFC 8448 (with TLS 1.3's
    prefix swapped in) and its protect/unprotect agree."""
    # RFC 8448 §3, server handshake traffic key from its secret (prefix "tls13 ").
    secret = bytes.fromhex("b67b7d690cc16c4e75e54213cb2d37b4e9c912bcded9105d42befd59d391ad38")
    full = b"tls13 key"
    info = (16).to_bytes(2, "big") + bytes([len(full)]) + full + b"\x00"
    key = HKDFExpand(hashes.SHA256(), 16, info).derive(secret)
    assert key.hex() == "3fce516009c21727d0f2e4e86ee403bc"
    for suite in SUITE_INFO:
        s = bytes(secret_length(suite))
        rec = protect(suite, s, 5, 1000, 23, b"payload!", seq_bits=8, cid=b"c", padding=3)
        assert unprotect(suite, s, rec, 1000, cid_length=1) == (1, 23, b"payload!", 3)
