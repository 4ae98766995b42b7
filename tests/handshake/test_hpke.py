"""HPKE base mode (RFC 9180) against the known-answer vectors of its Appendix A."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from dtls13.handshake.hpke import (
    AeadId,
    HpkeError,
    KdfId,
    KemId,
    setup_base_receiver,
    setup_base_sender,
)

INFO = bytes.fromhex("4f6465206f6e2061204772656369616e2055726e")  # "Ode on a Grecian Urn"
PT = bytes.fromhex("4265617574792069732074727574682c20747275746820626561757479")

# (aead, skRm, skEm, enc, key, base_nonce, [(seq, aad, ct)]) for DHKEM(X25519, HKDF-SHA256),
# HKDF-SHA256, mode_base: RFC 9180 A.1.1 (AES-128-GCM) and A.2.1 (ChaCha20-Poly1305).
VECTORS = [
    (
        AeadId.AES_128_GCM,
        "4612c550263fc8ad58375df3f557aac531d26850903e55a9f23f21d8534e8ac8",
        "52c4a758a802cd8b936eceea314432798d5baf2d7e9235dc084ab1b9cfa2f736",
        "37fda3567bdbd628e88668c3c8d7e97d1d1253b6d4ea6d44c150f741f1bf4431",
        "4531685d41d65f03dc48f6b8302c05b0",
        "56d890e5accaaf011cff4b7d",
        [
            (
                0,
                "436f756e742d30",
                "f938558b5d72f1a23810b4be2ab4f84331acc02fc97babc53a52ae8218a355a9"
                "6d8770ac83d07bea87e13c512a",
            ),
            (
                1,
                "436f756e742d31",
                "af2d7e9ac9ae7e270f46ba1f975be53c09f8d875bdc8535458c2494e8a6eab25"
                "1c03d0c22a56b8ca42c2063b84",
            ),
        ],
    ),
    (
        AeadId.CHACHA20_POLY1305,
        "8057991eef8f1f1af18f4a9491d16a1ce333f695d4db8e38da75975c4478e0fb",
        "f4ec9b33b792c372c1d2c2063507b684ef925b8c75a42dbcbf57d63ccd381600",
        "1afa08d3dec047a643885163f1180476fa7ddb54c6a8029ea33f95796bf2ac4a",
        "ad2744de8e17f4ebba575b3f5f5a8fa1f69c2a07f6e7500bc60ca6e3e3ec1c91",
        "5c4d98150661b848853b547f",
        [
            (
                0,
                "436f756e742d30",
                "1c5250d8034ec2b784ba2cfd69dbdb8af406cfe3ff938e131f0def8c8b60b4db"
                "21993c62ce81883d2dd1b51a28",
            ),
            (
                1,
                "436f756e742d31",
                "6b53c051e4199c518de79594e1c4ab18b96f081549d45ce015be002090bb119e"
                "85285337cc95ba5f59992dc98c",
            ),
        ],
    ),
]
KEM = KemId.DHKEM_X25519_HKDF_SHA256
KDF = KdfId.HKDF_SHA256


def _key(hex_bytes: str) -> X25519PrivateKey:
    return X25519PrivateKey.from_private_bytes(bytes.fromhex(hex_bytes))


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v[0].name)
def test_sender_matches_the_rfc_9180_vectors(vector: tuple) -> None:
    aead, sk_r, sk_e, enc_hex, key, nonce, encryptions = vector
    pk_r = _key(sk_r).public_key().public_bytes_raw()
    enc, context = setup_base_sender(KEM, KDF, aead, pk_r, INFO, ephemeral=_key(sk_e))
    assert enc.hex() == enc_hex
    assert context._key.hex() == key
    assert context._base_nonce.hex() == nonce
    for seq, aad, ct in encryptions:
        assert context.sequence == seq
        assert context.seal(bytes.fromhex(aad), PT).hex() == ct


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v[0].name)
def test_receiver_opens_the_rfc_9180_ciphertexts_in_sequence(vector: tuple) -> None:
    aead, sk_r, _sk_e, enc_hex, _key_hex, _nonce, encryptions = vector
    context = setup_base_receiver(KEM, KDF, aead, bytes.fromhex(enc_hex), _key(sk_r), INFO)
    for _seq, aad, ct in encryptions:
        assert context.open(bytes.fromhex(aad), bytes.fromhex(ct)) == PT


def test_open_with_the_wrong_aad_raises_and_keeps_the_sequence() -> None:
    aead, sk_r, _sk_e, enc_hex, _k, _n, encryptions = VECTORS[0]
    context = setup_base_receiver(KEM, KDF, aead, bytes.fromhex(enc_hex), _key(sk_r), INFO)
    _seq, aad, ct = encryptions[0]
    with pytest.raises(HpkeError):
        context.open(b"other", bytes.fromhex(ct))
    assert context.sequence == 0
    assert context.open(bytes.fromhex(aad), bytes.fromhex(ct)) == PT


@pytest.mark.parametrize("enc", [b"", bytes(31), bytes(32)], ids=["empty", "short", "zero"])
def test_a_bad_encapsulated_key_raises_hpke_error(enc: bytes) -> None:
    with pytest.raises(HpkeError):
        setup_base_receiver(KEM, KDF, AeadId.AES_128_GCM, enc, X25519PrivateKey.generate(), b"")


@pytest.mark.parametrize("kdf", list(KdfId))
@pytest.mark.parametrize("aead", list(AeadId))
def test_every_suite_round_trips(kdf: KdfId, aead: AeadId) -> None:
    sk_r = X25519PrivateKey.generate()
    enc, sender = setup_base_sender(KEM, kdf, aead, sk_r.public_key().public_bytes_raw(), b"i")
    receiver = setup_base_receiver(KEM, kdf, aead, enc, sk_r, b"i")
    for n in range(3):
        assert receiver.open(b"a", sender.seal(b"a", bytes([n]) * 5)) == bytes([n]) * 5


def test_an_unsupported_suite_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        setup_base_sender(0x0010, KDF, AeadId.AES_128_GCM, bytes(32), b"")
    with pytest.raises(ValueError):
        setup_base_sender(KEM, KDF, 0xFFFF, bytes(32), b"")
