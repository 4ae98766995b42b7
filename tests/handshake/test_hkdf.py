"""HKDF-Expand-Label and Derive-Secret against the RFC 8448 simple 1-RTT trace (§3)."""

from __future__ import annotations

from dtls13.crypto.hkdf import (
    DTLS13_PREFIX,
    TLS13_PREFIX,
    derive_secret,
    hkdf_expand_label,
    hkdf_extract,
    hkdf_label,
)


def h(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", "").replace("\n", ""))


EARLY = h(
    "33 ad 0a 1c 60 7e c0 3b 09 e6 cd 98 93 68 0c e2"
    " 10 ad f3 00 aa 1f 26 60 e1 b2 2e 10 f1 70 f9 2a"
)
EMPTY_HASH = h(
    "e3 b0 c4 42 98 fc 1c 14 9a fb f4 c8 99 6f b9 24"
    " 27 ae 41 e4 64 9b 93 4c a4 95 99 1b 78 52 b8 55"
)
DERIVED = h(
    "6f 26 15 a1 08 c7 02 c5 67 8f 54 fc 9d ba b6 97"
    " 16 c0 76 18 9c 48 25 0c eb ea c3 57 6c 36 11 ba"
)
ECDHE = h(
    "8b d4 05 4f b5 5b 9d 63 fd fb ac f9 f0 4b 9f 0d"
    " 35 e6 d6 3f 53 75 63 ef d4 62 72 90 0f 89 49 2d"
)
HANDSHAKE = h(
    "1d c8 26 e9 36 06 aa 6f dc 0a ad c1 2f 74 1b 01"
    " 04 6a a6 b9 9f 69 1e d2 21 a9 f0 ca 04 3f be ac"
)


def test_early_secret_from_zeros() -> None:
    assert hkdf_extract("sha256", b"", bytes(32)) == EARLY


def test_derived_secret_and_its_info_bytes() -> None:
    info = h(
        "00 20 0d 74 6c 73 31 33 20 64 65 72 69 76 65 64 20 e3 b0 c4 42 98 fc 1c 14 9a fb f4"
        " c8 99 6f b9 24 27 ae 41 e4 64 9b 93 4c a4 95 99 1b 78 52 b8 55"
    )
    assert hkdf_label(b"derived", EMPTY_HASH, 32, TLS13_PREFIX) == info
    assert derive_secret("sha256", EARLY, b"derived", EMPTY_HASH, TLS13_PREFIX) == DERIVED


def test_handshake_secret_and_client_handshake_traffic_secret() -> None:
    assert hkdf_extract("sha256", DERIVED, ECDHE) == HANDSHAKE
    transcript = h(
        "86 0c 06 ed c0 78 58 ee 8e 78 f0 e7 42 8c 58 ed d6 b4 3f 2c a3 e6 e9 5f 02 ed 06 3c"
        " f0 e1 ca d8"
    )
    expected = h(
        "b3 ed db 12 6e 06 7f 35 a7 80 b3 ab f4 5e 2d 8f 3b 1a 95 07 38 f5 2e 96 00 74 6a 0e"
        " 27 a5 5a 21"
    )
    assert derive_secret("sha256", HANDSHAKE, b"c hs traffic", transcript, TLS13_PREFIX) == expected


def test_server_handshake_write_key_and_iv() -> None:
    secret = h(
        "b6 7b 7d 69 0c c1 6c 4e 75 e5 42 13 cb 2d 37 b4 e9 c9 12 bc de d9 10 5d 42 be fd 59"
        " d3 91 ad 38"
    )
    key = hkdf_expand_label("sha256", secret, b"key", b"", 16, TLS13_PREFIX)
    iv = hkdf_expand_label("sha256", secret, b"iv", b"", 12, TLS13_PREFIX)
    assert key == h("3f ce 51 60 09 c2 17 27 d0 f2 e4 e8 6e e4 03 bc")
    assert iv == h("5d 31 3e b2 67 12 76 ee 13 00 0b 30")


def test_dtls_prefix_changes_the_output() -> None:
    assert DTLS13_PREFIX == b"dtls13"
    a = hkdf_expand_label("sha256", EARLY, b"key", b"", 16)
    b = hkdf_expand_label("sha256", EARLY, b"key", b"", 16, TLS13_PREFIX)
    assert a != b and len(a) == 16


def test_compiled_hmac_digest_is_hmac() -> None:
    import hmac as std_hmac

    from dtls13._fast import hmac_digest as fast_hmac

    for name, size in (("sha256", 32), ("sha384", 48)):
        for key in (b"", b"k" * size, b"x" * 200):
            for msg in (b"", b"m" * 45, bytes(300)):
                want = std_hmac.digest(key, msg, name)
                assert fast_hmac(key, msg, name) == want
                assert fast_hmac(memoryview(key), bytearray(msg), name) == want
