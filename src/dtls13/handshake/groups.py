"""Key-exchange groups for key_share (RFC 8446 §4.2.8, §7.4): elliptic curves, the RFC 7919
finite-field group ffdhe2048 and the hybrid ML-KEM groups (draft-ietf-tls-ecdhe-mlkem).

``generate(group)`` makes a client's private state; its ``public_bytes`` goes in the
ClientHello and ``shared_secret(server_share)`` finishes the exchange. A server answers a
client share with ``encapsulate(group, client_share) -> (server_share, shared_secret)``,
for Diffie-Hellman groups as well as KEMs. Every invalid peer share raises
``IllegalParameter``.
"""

from __future__ import annotations

import warnings
from typing import Protocol

from cryptography.hazmat.primitives import serialization as _serialization
from cryptography.hazmat.primitives.asymmetric import ec, mlkem, x448, x25519
from cryptography.utils import CryptographyDeprecationWarning

from dtls13.alerts import IllegalParameter, InternalError

from .constants import NamedGroup

with warnings.catch_warnings():
    # cryptography 50 deprecates finite-field DH and warns when these names are looked up
    # on its module (not when they are used): look them up once, here. Should a future
    # cryptography drop them, ffdhe2048 is left out of SUPPORTED_GROUPS (and a config
    # naming it is refused) instead of breaking the import of the whole library.
    warnings.simplefilter("ignore", CryptographyDeprecationWarning)
    try:
        from cryptography.hazmat.primitives.asymmetric.dh import (
            DHParameterNumbers as _DHParameterNumbers,
        )
        from cryptography.hazmat.primitives.asymmetric.dh import (
            DHParameters as _DHParameters,
        )
        from cryptography.hazmat.primitives.asymmetric.dh import (
            DHPrivateNumbers as _DHPrivateNumbers,
        )
        from cryptography.hazmat.primitives.asymmetric.dh import (
            DHPublicNumbers as _DHPublicNumbers,
        )

        HAVE_FFDHE = True
    except ImportError:  # pragma: no cover - every release so far has them
        HAVE_FFDHE = False


class KeyExchange(Protocol):
    """One side's private key-exchange state for one group."""

    @property
    def group(self) -> NamedGroup: ...

    @property
    def public_bytes(self) -> bytes:
        """This side's key_exchange value (the client share for KEM groups)."""
        ...

    def shared_secret(self, peer_share: bytes) -> bytes:
        """The shared secret given the peer's key_exchange value."""
        ...


# -- Diffie-Hellman parts ------------------------------------------------------------------------


class _X25519:
    __slots__ = ("_key", "public_bytes")
    length = 32
    group = NamedGroup.x25519

    def __init__(self, seed: bytes | None = None) -> None:
        self._key = (
            x25519.X25519PrivateKey.from_private_bytes(seed)
            if seed is not None
            else x25519.X25519PrivateKey.generate()
        )
        self.public_bytes = self._key.public_key().public_bytes_raw()

    def shared_secret(self, peer_share: bytes) -> bytes:
        if len(peer_share) != self.length:
            raise IllegalParameter("x25519 share has the wrong length")
        # RFC 8446 §7.4.2: "MUST check whether the computed Diffie-Hellman shared secret
        # is the all-zero value and abort if so"; cryptography refuses it with ValueError.
        try:
            secret = self._key.exchange(x25519.X25519PublicKey.from_public_bytes(peer_share))
        except ValueError:
            raise IllegalParameter("x25519 shared secret is zero") from None
        if not any(secret):
            raise IllegalParameter("x25519 shared secret is zero")
        return secret


class _X448:
    __slots__ = ("_key", "public_bytes")
    length = 56
    group = NamedGroup.x448

    def __init__(self, seed: bytes | None = None) -> None:
        self._key = (
            x448.X448PrivateKey.from_private_bytes(seed)
            if seed is not None
            else x448.X448PrivateKey.generate()
        )
        self.public_bytes = self._key.public_key().public_bytes_raw()

    def shared_secret(self, peer_share: bytes) -> bytes:
        if len(peer_share) != self.length:
            raise IllegalParameter("x448 share has the wrong length")
        try:
            secret = self._key.exchange(x448.X448PublicKey.from_public_bytes(peer_share))
        except ValueError:
            raise IllegalParameter("x448 shared secret is zero") from None
        if not any(secret):
            raise IllegalParameter("x448 shared secret is zero")
        return secret


_CURVES: dict[NamedGroup, tuple[type[ec.EllipticCurve], int]] = {
    NamedGroup.secp256r1: (ec.SECP256R1, 32),
    NamedGroup.secp384r1: (ec.SECP384R1, 48),
    # RFC 8446 §4.2.8.2: "For P-521, they take 66 octets each."
    NamedGroup.secp521r1: (ec.SECP521R1, 66),
}


class _ECDH:
    __slots__ = ("_curve", "_key", "group", "length", "public_bytes")

    def __init__(self, group: NamedGroup, seed: bytes | None = None) -> None:
        curve_type, size = _CURVES[group]
        self.group = group
        self._curve = curve_type()
        self.length = 1 + 2 * size  # uncompressed point (RFC 8446 §4.2.8.2)
        self._key = (
            ec.derive_private_key(int.from_bytes(seed, "big"), self._curve)
            if seed is not None
            else ec.generate_private_key(self._curve)
        )
        self.public_bytes = self._key.public_key().public_bytes(
            _serialization.Encoding.X962, _serialization.PublicFormat.UncompressedPoint
        )

    def shared_secret(self, peer_share: bytes) -> bytes:
        # RFC 8446 §4.2.8.2: only the uncompressed form (legacy_form = 4), and the point
        # must be validated: from_encoded_point checks it is on the curve.
        if len(peer_share) != self.length or peer_share[0] != 4:
            raise IllegalParameter(f"{self.group.name} share is not an uncompressed point")
        try:
            peer = ec.EllipticCurvePublicKey.from_encoded_point(self._curve, peer_share)
            return self._key.exchange(ec.ECDH(), peer)
        except ValueError:
            raise IllegalParameter(f"invalid {self.group.name} point") from None


# RFC 7919 Appendix A.1: p = 2^2048 - 2^1984 + (floor(2^1918 * e) + 560316) * 2^64 - 1, a
# safe prime; the generator is 2. tests/handshake/test_groups.py recomputes p from that formula.
_FFDHE2048_P = int(
    "FFFFFFFFFFFFFFFFADF85458A2BB4A9AAFDC5620273D3CF1D8B9C583CE2D3695"
    "A9E13641146433FBCC939DCE249B3EF97D2FE363630C75D8F681B202AEC4617A"
    "D3DF1ED5D5FD65612433F51F5F066ED0856365553DED1AF3B557135E7F57C935"
    "984F0C70E0E68B77E2A689DAF3EFE8721DF158A136ADE73530ACCA4F483A797A"
    "BC0AB182B324FB61D108A94BB2C8E3FBB96ADAB760D7F4681D4F42A3DE394DF4"
    "AE56EDE76372BB190B07A7C8EE0A6D709E02FCE1CDF7E2ECC03404CD28342F61"
    "9172FE9CE98583FF8E4F1232EEF28183C3FE3B1B4C6FAD733BB5FCBC2EC22005"
    "C58EF1837D1683B2C6F34A26C1B2EFFA886B423861285C97FFFFFFFFFFFFFFFF",
    16,
)
_FFDHE_GENERATOR = 2
# group -> prime; the share and the shared secret are as long as the prime in bytes.
_FFDHE_PRIMES: dict[NamedGroup, int] = {NamedGroup.ffdhe2048: _FFDHE2048_P}
_FFDHE_PARAMETERS: dict[NamedGroup, tuple[_DHParameterNumbers, _DHParameters]] = {}


def _ffdhe_parameters(group: NamedGroup) -> tuple[_DHParameterNumbers, _DHParameters]:
    """The group's parameters, made once. OpenSSL recognises the RFC 7919 primes and
    draws private exponents below 2^225 for ffdhe2048, the short-exponent size RFC 7919
    §5.2 and Appendix A.1 give for it: a key pair costs well under a millisecond."""
    params = _FFDHE_PARAMETERS.get(group)
    if params is None:
        numbers = _DHParameterNumbers(_FFDHE_PRIMES[group], _FFDHE_GENERATOR)
        params = _FFDHE_PARAMETERS[group] = (numbers, numbers.parameters())
    return params


def ffdhe_encode(value: int, prime: int = _FFDHE2048_P) -> bytes:
    """A public value or shared secret as TLS 1.3 carries it: big-endian, left-padded
    with zeros to the length of the prime (RFC 8446 §4.2.8.1, §7.4.1)."""
    return value.to_bytes((prime.bit_length() + 7) // 8, "big")


class _FFDHE:
    """Finite-field Diffie-Hellman over an RFC 7919 group (RFC 8446 §4.2.8.1, §7.4.1)."""

    __slots__ = ("_key", "_numbers", "_prime", "group", "length", "public_bytes")

    def __init__(self, group: NamedGroup, seed: bytes | None = None) -> None:
        self.group = group
        self._prime = _FFDHE_PRIMES[group]
        self.length = (self._prime.bit_length() + 7) // 8
        self._numbers, params = _ffdhe_parameters(group)
        if seed is None:
            self._key = params.generate_private_key()
        else:  # tests: `seed` is the private exponent
            x = int.from_bytes(seed, "big")
            public = _DHPublicNumbers(pow(_FFDHE_GENERATOR, x, self._prime), self._numbers)
            self._key = _DHPrivateNumbers(x, public).private_key()
        y = self._key.public_key().public_numbers().y
        self.public_bytes = ffdhe_encode(y, self._prime)

    def shared_secret(self, peer_share: bytes) -> bytes:
        # RFC 8446 §4.2.8.1: the value is "padded to the left with zeros to the size of p
        # in bytes", so every valid share has exactly that length.
        if len(peer_share) != self.length:
            raise IllegalParameter(f"{self.group.name} share has the wrong length")
        y = int.from_bytes(peer_share, "big")
        # §4.2.8.1: "Peers MUST validate each other's public key Y by ensuring that
        # 1 < Y < p-1." (With a safe prime that leaves no small subgroup to force us into.)
        if not 1 < y < self._prime - 1:
            raise IllegalParameter(f"{self.group.name} public value out of range")
        try:
            secret = self._key.exchange(_DHPublicNumbers(y, self._numbers).public_key())
        except ValueError:
            raise IllegalParameter(f"invalid {self.group.name} public value") from None
        # §7.4.1: "The negotiated key (Z) is converted to a byte string by encoding in
        # big-endian form and left-padded with zeros up to the size of the prime."
        return ffdhe_encode(int.from_bytes(secret, "big"), self._prime)


# -- hybrid ML-KEM groups -----------------------------------------------------------------------

_DHPart = _X25519 | _ECDH


def _dh_part(group: NamedGroup, seed: bytes | None = None) -> _DHPart:
    if group == NamedGroup.x25519:
        return _X25519(seed)
    return _ECDH(group, seed)


# group -> (ECDH part, ML-KEM size (768 / 1024), ML-KEM share first?)
_HYBRIDS: dict[NamedGroup, tuple[NamedGroup, int, bool]] = {
    # draft-ietf-tls-ecdhe-mlkem §4.1: X25519MLKEM768 puts the ML-KEM part first "for
    # historical reasons"; the other two put the ECDH part first.
    NamedGroup.X25519MLKEM768: (NamedGroup.x25519, 768, True),
    NamedGroup.SecP256r1MLKEM768: (NamedGroup.secp256r1, 768, False),
    NamedGroup.SecP384r1MLKEM1024: (NamedGroup.secp384r1, 1024, False),
}

_MLKEM_SIZES = {768: (1184, 1088), 1024: (1568, 1568)}  # (encapsulation key, ciphertext)


def _mlkem_private(
    size: int, seed: bytes | None
) -> mlkem.MLKEM768PrivateKey | mlkem.MLKEM1024PrivateKey:
    cls = mlkem.MLKEM768PrivateKey if size == 768 else mlkem.MLKEM1024PrivateKey
    return cls.from_seed_bytes(seed) if seed is not None else cls.generate()


def _mlkem_public(size: int, data: bytes) -> mlkem.MLKEM768PublicKey | mlkem.MLKEM1024PublicKey:
    cls = mlkem.MLKEM768PublicKey if size == 768 else mlkem.MLKEM1024PublicKey
    try:
        # Includes FIPS 203 §7.2's encapsulation key (modulus) check, which the draft
        # requires of servers (§4.2).
        return cls.from_public_bytes(data)
    except ValueError:
        raise IllegalParameter("invalid ML-KEM encapsulation key") from None


class _Hybrid:
    """Client state of a hybrid group: an ML-KEM decapsulation key and an ECDH key."""

    __slots__ = ("_dh", "_kem", "_kem_first", "_sizes", "group", "public_bytes")

    def __init__(self, group: NamedGroup, seed: bytes | None = None) -> None:
        dh_group, size, kem_first = _HYBRIDS[group]
        self.group = group
        self._kem_first = kem_first
        self._sizes = _MLKEM_SIZES[size]
        # `seed` for tests: 64 bytes of ML-KEM seed followed by the ECDH private key.
        self._kem = _mlkem_private(size, seed[:64] if seed is not None else None)
        self._dh = _dh_part(dh_group, seed[64:] if seed is not None else None)
        ek = self._kem.public_key().public_bytes_raw()
        self.public_bytes = ek + self._dh.public_bytes if kem_first else self._dh.public_bytes + ek

    def shared_secret(self, peer_share: bytes) -> bytes:
        ct_len = self._sizes[1]
        # §4.2: "the client MUST check if the ciphertext length matches the selected
        # group, and abort with an illegal_parameter alert if it fails."
        if len(peer_share) != ct_len + self._dh.length:
            raise IllegalParameter(f"{self.group.name} server share has the wrong length")
        if self._kem_first:
            ct, dh_share = peer_share[:ct_len], peer_share[ct_len:]
        else:
            dh_share, ct = peer_share[: self._dh.length], peer_share[self._dh.length :]
        dh_secret = self._dh.shared_secret(dh_share)
        try:
            kem_secret = self._kem.decapsulate(ct)
        except ValueError:
            raise InternalError("ML-KEM decapsulation failed") from None
        # §4.3: ML-KEM secret first for X25519MLKEM768, ECDH secret first otherwise.
        return kem_secret + dh_secret if self._kem_first else dh_secret + kem_secret


# -- public API ---------------------------------------------------------------------------------

SUPPORTED_GROUPS: tuple[NamedGroup, ...] = (
    NamedGroup.X25519MLKEM768,
    NamedGroup.x25519,
    NamedGroup.secp256r1,
    NamedGroup.secp384r1,
    NamedGroup.x448,
    NamedGroup.SecP256r1MLKEM768,
    NamedGroup.SecP384r1MLKEM1024,
    NamedGroup.secp521r1,
) + ((NamedGroup.ffdhe2048,) if HAVE_FFDHE else ())

# What a client offers by default, in preference order, and the groups it sends shares for.
DEFAULT_GROUPS: tuple[NamedGroup, ...] = (
    NamedGroup.X25519MLKEM768,
    NamedGroup.x25519,
    NamedGroup.secp256r1,
    NamedGroup.secp384r1,
    NamedGroup.x448,
)


def is_kem(group: int) -> bool:
    return group in _HYBRIDS


def generate(group: int, *, seed: bytes | None = None) -> KeyExchange:
    """Fresh private state for `group` (`seed` makes it deterministic, for tests)."""
    try:
        named = group if type(group) is NamedGroup else NamedGroup(group)
    except ValueError:
        raise ValueError(f"unsupported group {group:#06x}") from None
    if named == NamedGroup.x25519:
        return _X25519(seed)
    if named == NamedGroup.x448:
        return _X448(seed)
    if named in _CURVES:
        return _ECDH(named, seed)
    if named in _FFDHE_PRIMES and HAVE_FFDHE:
        return _FFDHE(named, seed)
    if named in _HYBRIDS:
        return _Hybrid(named, seed)
    raise ValueError(f"unsupported group {named.name}")


def client_share_length(group: int) -> int:
    """The length a valid client key_exchange of `group` has."""
    if group in _HYBRIDS:
        dh_group, size, _ = _HYBRIDS[NamedGroup(group)]
        return _MLKEM_SIZES[size][0] + _dh_length(dh_group)
    return _dh_length(NamedGroup(group))


def server_share_length(group: int) -> int:
    """The length of the server's key_exchange for `group` (a KEM's is its ciphertext)."""
    if group in _HYBRIDS:
        dh_group, size, _ = _HYBRIDS[NamedGroup(group)]
        return _MLKEM_SIZES[size][1] + _dh_length(dh_group)
    return _dh_length(NamedGroup(group))


def _dh_length(group: NamedGroup) -> int:
    if group == NamedGroup.x25519:
        return 32
    if group == NamedGroup.x448:
        return 56
    if group in _FFDHE_PRIMES:
        return (_FFDHE_PRIMES[group].bit_length() + 7) // 8
    return 1 + 2 * _CURVES[group][1]


def encapsulate(group: int, client_share: bytes) -> tuple[bytes, bytes]:
    """Server side: ``(server_share, shared_secret)`` for the client's share of `group`.

    Raises ``IllegalParameter`` for an invalid share.
    """
    if group not in _HYBRIDS:
        state = generate(group)
        return state.public_bytes, state.shared_secret(client_share)
    named = NamedGroup(group)
    dh_group, size, kem_first = _HYBRIDS[named]
    ek_len = _MLKEM_SIZES[size][0]
    dh_len = _dh_length(dh_group)
    if len(client_share) != ek_len + dh_len:
        raise IllegalParameter(f"{named.name} client share has the wrong length")
    if kem_first:
        ek, dh_share = client_share[:ek_len], client_share[ek_len:]
    else:
        dh_share, ek = client_share[:dh_len], client_share[dh_len:]
    kem_secret, ciphertext = _mlkem_public(size, ek).encapsulate()
    dh = _dh_part(dh_group)
    dh_secret = dh.shared_secret(dh_share)
    if kem_first:
        return ciphertext + dh.public_bytes, kem_secret + dh_secret
    return dh.public_bytes + ciphertext, dh_secret + kem_secret
