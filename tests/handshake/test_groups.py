"""Key-exchange groups: agreement, share sizes, peer validation, RFC 8448 secrets."""

from __future__ import annotations

import pytest

from dtls13.alerts import IllegalParameter
from dtls13.handshake import groups
from dtls13.handshake.constants import NamedGroup
from tests.handshake.test_key_schedule import trace

# group -> (client share, server share, shared secret) lengths
SIZES = {
    NamedGroup.x25519: (32, 32, 32),
    NamedGroup.x448: (56, 56, 56),
    NamedGroup.secp256r1: (65, 65, 32),
    NamedGroup.secp384r1: (97, 97, 48),
    NamedGroup.secp521r1: (133, 133, 66),
    NamedGroup.ffdhe2048: (256, 256, 256),
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
    for group in groups.SUPPORTED_GROUPS:
        if groups.is_kem(group):
            continue
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


@pytest.mark.parametrize(
    "group", [NamedGroup.secp256r1, NamedGroup.secp384r1, NamedGroup.secp521r1]
)
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


def test_p521_coordinates_beyond_the_field_rejected() -> None:
    # P-521's coordinates take 66 bytes, of which only 521 bits can be set: an x of all
    # ones is larger than the field prime 2^521 - 1 and so no coordinate at all.
    good = groups.generate(NamedGroup.secp521r1).public_bytes
    client = groups.generate(NamedGroup.secp521r1)
    for bad in (b"\x04" + b"\xff" * 66 + good[67:], good[:67] + b"\xff" * 66):
        with pytest.raises(IllegalParameter):
            client.shared_secret(bad)
        with pytest.raises(IllegalParameter):
            groups.encapsulate(NamedGroup.secp521r1, bad)


def _ffdhe2048_from_its_definition() -> int:
    """RFC 7919 Appendix A.1: p = 2^2048 - 2^1984 + (floor(2^1918 * e) + 560316) * 2^64 - 1,
    with floor(2^1918 * e) summed exactly as 2^1918 * (1/0! + 1/1! + ...) in integers."""
    guard = 64  # each term's truncation costs under one unit; far fewer terms than 2^64
    term, total, k = 1 << (1918 + guard), 0, 0
    while term:
        total += term
        k += 1
        term //= k
    floor_e = total >> guard
    assert (total + k) >> guard == floor_e  # the truncation cannot have crossed an integer
    return 2**2048 - 2**1984 + (floor_e + 560316) * 2**64 - 1


def test_ffdhe2048_prime_is_rfc7919s() -> None:
    p = groups._FFDHE2048_P
    assert p == _ffdhe2048_from_its_definition()
    assert p.bit_length() == 2048 and p >> 1984 == 2**64 - 1 and p & (2**64 - 1) == 2**64 - 1
    # A safe prime: p and (p - 1) / 2 pass Miller-Rabin with fixed bases.
    for n in (p, (p - 1) // 2):
        d, s = n - 1, 0
        while d % 2 == 0:
            d, s = d // 2, s + 1
        for a in (2, 3, 5, 7, 11, 13, 17, 19):
            x = pow(a, d, n)
            if x in (1, n - 1):
                continue
            for _ in range(s - 1):
                x = x * x % n
                if x == n - 1:
                    break
            else:
                raise AssertionError(f"{a} witnesses that {n:#x} is composite")
    # g = 2 generates the subgroup of order q = (p - 1) / 2.
    assert pow(2, (p - 1) // 2, p) == 1


P = groups._FFDHE2048_P


@pytest.mark.parametrize(
    "share",
    [
        bytes(256),  # Y = 0
        (1).to_bytes(256, "big"),  # Y = 1
        (P - 1).to_bytes(256, "big"),  # Y = p - 1: order 2
        P.to_bytes(256, "big"),  # Y = p
        (P + 1).to_bytes(256, "big"),  # Y = p + 1 (= 1 mod p)
        b"\xff" * 256,  # larger than p
        (2).to_bytes(255, "big"),  # a valid Y, not padded to the prime's length
        (2).to_bytes(257, "big"),  # padded one byte too far
        b"",
    ],
    ids=["0", "1", "p-1", "p", "p+1", "all-ones", "255-bytes", "257-bytes", "empty"],
)
def test_ffdhe2048_invalid_public_values_rejected(share: bytes) -> None:
    """RFC 8446 §4.2.8.1: 1 < Y < p-1, padded to exactly the size of p."""
    client = groups.generate(NamedGroup.ffdhe2048)
    with pytest.raises(IllegalParameter):
        client.shared_secret(share)
    with pytest.raises(IllegalParameter):
        groups.encapsulate(NamedGroup.ffdhe2048, share)


def test_ffdhe2048_extreme_valid_public_values_accepted() -> None:
    client = groups.generate(NamedGroup.ffdhe2048)
    for y in (2, P - 2):
        assert len(client.shared_secret(y.to_bytes(256, "big"))) == 256


def test_ffdhe_encoding_pads_to_the_prime() -> None:
    """A value whose top bytes are zero still takes 256 bytes (RFC 8446 §4.2.8.1, §7.4.1;
    TLS 1.2 stripped leading zeros of the secret, TLS 1.3 does not)."""
    assert groups.ffdhe_encode(0x20) == bytes(255) + b"\x20"
    assert groups.ffdhe_encode(P - 2) == (P - 2).to_bytes(256, "big")
    assert groups.ffdhe_encode(1 << 2039)[:1] == b"\x00"
    # Private exponents 5 and 7: the public values are 2^5 and 2^7 and the shared secret
    # is 2^35, each with 251 or more leading zero bytes.
    a = groups.generate(NamedGroup.ffdhe2048, seed=b"\x05")
    b = groups.generate(NamedGroup.ffdhe2048, seed=b"\x07")
    assert a.public_bytes == bytes(255) + b"\x20"
    assert b.public_bytes == bytes(255) + b"\x80"
    secret = (2**35).to_bytes(256, "big")
    assert a.shared_secret(b.public_bytes) == secret == b.shared_secret(a.public_bytes)
    # The server side answers such a share with a padded secret too.
    server_share, server_secret = groups.encapsulate(NamedGroup.ffdhe2048, a.public_bytes)
    assert len(server_share) == 256 and len(server_secret) == 256
    assert a.shared_secret(server_share) == server_secret


def test_ffdhe2048_private_keys_are_fresh_and_full_size() -> None:
    keys = [groups.generate(NamedGroup.ffdhe2048) for _ in range(4)]
    assert len({k.public_bytes for k in keys}) == 4
    # Public values are spread over the whole group, not small powers of two.
    assert all(int.from_bytes(k.public_bytes, "big").bit_length() > 2000 for k in keys)


def test_unsupported_group() -> None:
    with pytest.raises(ValueError):
        groups.generate(0x4242)
    with pytest.raises(ValueError):
        groups.generate(0x0101)  # ffdhe3072: registered, not implemented


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
