"""Key-exchange groups for key_share (RFC 8446 §4.2.8, §7.4) and the hybrid ML-KEM groups
(draft-ietf-tls-ecdhe-mlkem).

``generate(group)`` makes a client's private state; its ``public_bytes`` goes in the
ClientHello and ``shared_secret(server_share)`` finishes the exchange. A server answers a
client share with ``encapsulate(group, client_share) -> (server_share, shared_secret)``,
for Diffie-Hellman groups as well as KEMs. Every invalid peer share raises
``IllegalParameter``.
"""

from __future__ import annotations

from typing import Protocol

from cryptography.hazmat.primitives import serialization as _serialization
from cryptography.hazmat.primitives.asymmetric import ec, mlkem, x448, x25519

from dtls13.alerts import IllegalParameter, InternalError

from .constants import NamedGroup


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
)

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
        named = NamedGroup(group)
    except ValueError:
        raise ValueError(f"unsupported group {group:#06x}") from None
    if named == NamedGroup.x25519:
        return _X25519(seed)
    if named == NamedGroup.x448:
        return _X448(seed)
    if named in _CURVES:
        return _ECDH(named, seed)
    if named in _HYBRIDS:
        return _Hybrid(named, seed)
    raise ValueError(f"unsupported group {named.name}")


def client_share_length(group: int) -> int:
    """The length a valid client key_exchange of `group` has."""
    if group in _HYBRIDS:
        dh_group, size, _ = _HYBRIDS[NamedGroup(group)]
        return _MLKEM_SIZES[size][0] + _dh_length(dh_group)
    return _dh_length(NamedGroup(group))


def _dh_length(group: NamedGroup) -> int:
    if group == NamedGroup.x25519:
        return 32
    if group == NamedGroup.x448:
        return 56
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
