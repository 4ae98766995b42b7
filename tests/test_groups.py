"""Key-exchange groups: agreement, share sizes, peer validation, RFC 8448 secrets."""

from __future__ import annotations

import pytest
from test_key_schedule import trace

from dtls13.alerts import IllegalParameter
from dtls13.handshake import groups
from dtls13.handshake.constants import NamedGroup

# group -> (client share, server share, shared secret) lengths
SIZES = {
    NamedGroup.x25519: (32, 32, 32),
    NamedGroup.x448: (56, 56, 56),
    NamedGroup.secp256r1: (65, 65, 32),
    NamedGroup.secp384r1: (97, 97, 48),
    NamedGroup.X25519MLKEM768: (1216, 1120, 64),
    NamedGroup.SecP256r1MLKEM768: (1249, 1153, 64),
    NamedGroup.SecP384r1MLKEM1024: (1665, 1665, 80),
}


@pytest.mark.parametrize("group", groups.SUPPORTED_GROUPS)
def test_both_sides_agree(group: NamedGroup) -> None:
    client = groups.generate(group)
    assert client.group == group
    server_share, server_secret = groups.encapsulate(group, client.public_bytes)
    assert client.shared_secret(server_share) == server_secret
    assert (len(client.public_bytes), len(server_share), len(server_secret)) == SIZES[group]
    assert groups.client_share_length(group) == SIZES[group][0]
    assert groups.is_kem(group) == (group >= 0x11EB)
    # Fresh keys every time.
    assert groups.generate(group).public_bytes != client.public_bytes


@pytest.mark.parametrize("group", groups.SUPPORTED_GROUPS)
def test_wrong_lengths_rejected(group: NamedGroup) -> None:
    client = groups.generate(group)
    share = client.public_bytes
    for bad in (share[:-1], share + b"\x00", b""):
        with pytest.raises(IllegalParameter):
            groups.encapsulate(group, bad)
    server_share, _ = groups.encapsulate(group, share)
    for bad in (server_share[:-1], server_share + b"\x00", b""):
        with pytest.raises(IllegalParameter):
            client.shared_secret(bad)


def test_dh_groups_are_symmetric() -> None:
    for group in (NamedGroup.x25519, NamedGroup.x448, NamedGroup.secp256r1, NamedGroup.secp384r1):
        a, b = groups.generate(group), groups.generate(group)
        assert a.shared_secret(b.public_bytes) == b.shared_secret(a.public_bytes)


@pytest.mark.parametrize(
    "share",
    [
        bytes(32),  # zero point
        b"\x01" + bytes(31),  # low-order point u=1
        bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
    ],
)
def test_x25519_all_zero_secret_rejected(share: bytes) -> None:
    client = groups.generate(NamedGroup.x25519)
    with pytest.raises(IllegalParameter):
        client.shared_secret(share)
    with pytest.raises(IllegalParameter):
        groups.encapsulate(NamedGroup.x25519, share)


def test_x448_low_order_rejected() -> None:
    with pytest.raises(IllegalParameter):
        groups.generate(NamedGroup.x448).shared_secret(bytes(56))


@pytest.mark.parametrize("group", [NamedGroup.secp256r1, NamedGroup.secp384r1])
def test_ec_points_validated(group: NamedGroup) -> None:
    client = groups.generate(group)
    good = groups.generate(group).public_bytes
    off_curve = good[:-1] + bytes([good[-1] ^ 1])
    compressed_len = bytes([2 + (good[-1] & 1)]) + good[1 : 1 + (len(good) - 1) // 2]
    for bad in (
        off_curve,
        b"\x04" + bytes(len(good) - 1),
        b"\x05" + good[1:],  # wrong form byte
        compressed_len,
    ):
        with pytest.raises(IllegalParameter):
            client.shared_secret(bad)
        with pytest.raises(IllegalParameter):
            groups.encapsulate(group, bad)
    # A share that is valid once the form byte is right still works.
    assert len(client.shared_secret(good)) == SIZES[group][2]


def test_hybrid_ecdh_part_validated_and_kem_key_checked() -> None:
    client = groups.generate(NamedGroup.X25519MLKEM768)
    share = client.public_bytes
    # ML-KEM part first: a zero X25519 part at the end is refused.
    with pytest.raises(IllegalParameter):
        groups.encapsulate(NamedGroup.X25519MLKEM768, share[:1184] + bytes(32))
    # FIPS 203 §7.2 modulus check: coefficients of 0xfff are out of range.
    with pytest.raises(IllegalParameter):
        groups.encapsulate(NamedGroup.X25519MLKEM768, b"\xff" * 1184 + share[1184:])
    server_share, secret = groups.encapsulate(NamedGroup.X25519MLKEM768, share)
    with pytest.raises(IllegalParameter):
        client.shared_secret(server_share[:1088] + bytes(32))
    # A corrupted ciphertext decapsulates to a different secret (implicit rejection).
    bad_ct = bytes([server_share[0] ^ 1]) + server_share[1:]
    assert client.shared_secret(bad_ct) != secret

    p256 = groups.generate(NamedGroup.SecP256r1MLKEM768)
    # ECDH part first: a bad point at the start is refused.
    with pytest.raises(IllegalParameter):
        groups.encapsulate(
            NamedGroup.SecP256r1MLKEM768, b"\x04" + bytes(64) + p256.public_bytes[65:]
        )


def test_hybrid_layout_x25519mlkem768() -> None:
    seed = bytes(range(64)) + bytes(range(100, 132))
    client = groups.generate(NamedGroup.X25519MLKEM768, seed=seed)
    x = groups.generate(NamedGroup.x25519, seed=seed[64:])
    assert client.public_bytes[1184:] == x.public_bytes
    server_share, secret = groups.encapsulate(NamedGroup.X25519MLKEM768, client.public_bytes)
    # The last 32 bytes of the server share are its X25519 key; the secret ends with X25519's.
    assert secret[32:] == x.shared_secret(server_share[1088:])

    p = groups.generate(NamedGroup.SecP256r1MLKEM768, seed=seed)
    ec_part = groups.generate(NamedGroup.secp256r1, seed=seed[64:])
    assert p.public_bytes[:65] == ec_part.public_bytes
    server_share, secret = groups.encapsulate(NamedGroup.SecP256r1MLKEM768, p.public_bytes)
    assert secret[:32] == ec_part.shared_secret(server_share[:65])


def test_unsupported_group() -> None:
    with pytest.raises(ValueError):
        groups.generate(NamedGroup.ffdhe2048)
    with pytest.raises(ValueError):
        groups.generate(0x4242)


def test_rfc8448_shared_secrets() -> None:
    client = groups.generate(
        NamedGroup.x25519, seed=trace(3, "client", "create an ephemeral x25519", "private key")
    )
    assert client.public_bytes == trace(3, "client", "create an ephemeral x25519", "public key")
    server_pub = trace(3, "server", "create an ephemeral x25519", "public key")
    ikm = trace(3, "server", 'extract secret "handshake"', "IKM")
    assert client.shared_secret(server_pub) == ikm

    p256 = groups.generate(
        NamedGroup.secp256r1, seed=trace(5, "client", "create an ephemeral P-256", "private key")
    )
    assert p256.public_bytes == trace(5, "client", "create an ephemeral P-256", "public key")
    server_pub = trace(5, "server", "create an ephemeral P-256", "public key")
    assert p256.shared_secret(server_pub) == trace(5, "server", 'extract secret "handshake"', "IKM")
