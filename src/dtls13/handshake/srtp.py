"""DTLS-SRTP (RFC 5764) in DTLS 1.3, as WebRTC uses it: the use_srtp extension and the
SRTP master keys and salts from the exporter.

RFC 5764 §4.1.1 (use_srtp, extension 14):

    uint8 SRTPProtectionProfile[2];
    struct {
       SRTPProtectionProfiles SRTPProtectionProfiles;
       opaque srtp_mki<0..255>;
    } UseSRTPData;
    SRTPProtectionProfile SRTPProtectionProfiles<2..2^16-1>;

The client lists its profiles in ClientHello; in (D)TLS 1.3 the server answers in
EncryptedExtensions (RFC 8446 §4.2's table: use_srtp "CH, EE") with exactly one profile the
client offered and either the client's MKI or an empty one (RFC 5764 §4.1.1, §4.1.3).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from dtls13._fast import Buffer, DecodeError
from dtls13.alerts import DecodeErrorAlert, IllegalParameter

from . import extensions as ext
from .constants import ExtensionType

# RFC 5764 §4.2: TLS-Exporter with this label and no context.
SRTP_EXPORTER_LABEL = "EXTRACTOR-dtls_srtp"


class SrtpProtectionProfile(enum.IntEnum):
    """The IANA "DTLS-SRTP Protection Profiles" registry, under OpenSSL's names."""

    SRTP_AES128_CM_SHA1_80 = 0x0001  # RFC 5764
    SRTP_AES128_CM_SHA1_32 = 0x0002  # RFC 5764
    SRTP_AEAD_AES_128_GCM = 0x0007  # RFC 7714
    SRTP_AEAD_AES_256_GCM = 0x0008  # RFC 7714
    SRTP_DOUBLE_AEAD_AES_128_GCM_AEAD_AES_128_GCM = 0x0009  # RFC 8723
    SRTP_DOUBLE_AEAD_AES_256_GCM_AEAD_AES_256_GCM = 0x000A  # RFC 8723
    SRTP_ARIA_128_CTR_HMAC_SHA1_80 = 0x000B  # RFC 8269
    SRTP_ARIA_128_CTR_HMAC_SHA1_32 = 0x000C  # RFC 8269
    SRTP_ARIA_256_CTR_HMAC_SHA1_80 = 0x000D  # RFC 8269
    SRTP_ARIA_256_CTR_HMAC_SHA1_32 = 0x000E  # RFC 8269
    SRTP_AEAD_ARIA_128_GCM = 0x000F  # RFC 8269
    SRTP_AEAD_ARIA_256_GCM = 0x0010  # RFC 8269


P = SrtpProtectionProfile
# (master key, master salt) bytes of each profile: its cipher_key_length and
# cipher_salt_length (RFC 5764 §4.1.2, RFC 7714 §12, RFC 8723 §5.2, RFC 8269 §6).
# The NULL-cipher profiles (0x0005, 0x0006) are left out: they do not encrypt.
KEY_SALT_LENGTHS: dict[SrtpProtectionProfile, tuple[int, int]] = {
    P.SRTP_AES128_CM_SHA1_80: (16, 14),
    P.SRTP_AES128_CM_SHA1_32: (16, 14),
    P.SRTP_AEAD_AES_128_GCM: (16, 12),
    P.SRTP_AEAD_AES_256_GCM: (32, 12),
    P.SRTP_DOUBLE_AEAD_AES_128_GCM_AEAD_AES_128_GCM: (32, 24),
    P.SRTP_DOUBLE_AEAD_AES_256_GCM_AEAD_AES_256_GCM: (64, 24),
    P.SRTP_ARIA_128_CTR_HMAC_SHA1_80: (16, 14),
    P.SRTP_ARIA_128_CTR_HMAC_SHA1_32: (16, 14),
    P.SRTP_ARIA_256_CTR_HMAC_SHA1_80: (32, 14),
    P.SRTP_ARIA_256_CTR_HMAC_SHA1_32: (32, 14),
    P.SRTP_AEAD_ARIA_128_GCM: (16, 12),
    P.SRTP_AEAD_ARIA_256_GCM: (32, 12),
}


@dataclass(frozen=True, slots=True)
class UseSrtp:
    """UseSRTPData: protection profiles (wire values, unknown ones kept) and the MKI."""

    profiles: tuple[int, ...]
    mki: bytes = b""


def pull_use_srtp(buf: Buffer) -> UseSrtp:
    profiles = buf.pull_uint16_list(2, 2)  # <2..2^16-1>: odd or empty is a DecodeError
    return UseSrtp(profiles, buf.pull_vector(1))


def push_use_srtp(buf: Buffer, value: UseSrtp) -> None:
    with buf.push_block(2):
        for profile in value.profiles:
            buf.push_uint16(profile)
    buf.push_vector(1, value.mki)


@dataclass(frozen=True, slots=True)
class SrtpKeyingMaterial:
    """The four values RFC 5764 §4.2 splits the exporter's output into: the client
    protects what it sends with the client_write ones, the server with the server_write ones."""

    profile: SrtpProtectionProfile
    client_write_key: bytes
    server_write_key: bytes
    client_write_salt: bytes
    server_write_salt: bytes

    def local(self, is_client: bool) -> tuple[bytes, bytes]:
        """(key, salt) to protect what this side sends."""
        if is_client:
            return self.client_write_key, self.client_write_salt
        return self.server_write_key, self.server_write_salt

    def remote(self, is_client: bool) -> tuple[bytes, bytes]:
        """(key, salt) to check and decrypt what the peer sends."""
        return self.local(not is_client)


def keying_material(
    profile: SrtpProtectionProfile, export: Callable[[str, bytes | None, int], bytes]
) -> SrtpKeyingMaterial:
    """RFC 5764 §4.2: 2 * (key + salt) bytes from the exporter, in the order client key,
    server key, client salt, server salt."""
    key, salt = KEY_SALT_LENGTHS[profile]
    m = export(SRTP_EXPORTER_LABEL, None, 2 * (key + salt))
    return SrtpKeyingMaterial(
        profile, m[:key], m[key : 2 * key], m[2 * key : 2 * key + salt], m[2 * key + salt :]
    )


def normalise_profiles(values: Sequence[SrtpProtectionProfile | str | int]) -> tuple[P, ...]:
    """Profiles from members, wire values or names (case-insensitive); ValueError/TypeError."""
    out: list[SrtpProtectionProfile] = []
    for v in values:
        if isinstance(v, str):
            member = {m.name.lower(): m for m in P}.get(v.lower())
            if member is None:
                names = ", ".join(m.name for m in P)
                raise ValueError(f"unknown SRTP protection profile {v!r}; known: {names}")
        elif isinstance(v, int) and not isinstance(v, bool):
            try:
                member = P(v)
            except ValueError:
                raise ValueError(f"unknown SRTP protection profile 0x{v:04x}") from None
        else:
            raise TypeError(f"SRTP protection profiles are names or numbers, not {v!r}")
        if member in out:
            raise ValueError(f"duplicate SRTP protection profile {member.name}")
        out.append(member)
    return tuple(out)


# -- the handshake's side ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SrtpNegotiated:
    """What use_srtp settled: the profile and the MKI in use (empty: none)."""

    profile: SrtpProtectionProfile
    mki: bytes


def client_extension(profiles: Sequence[int], mki: bytes) -> ext.Extension:
    return ext.make_extension(ExtensionType.use_srtp, push_use_srtp, UseSrtp(tuple(profiles), mki))


def _decode(data: bytes) -> UseSrtp:
    try:
        return ext.decode(data, pull_use_srtp)
    except DecodeError as exc:
        raise DecodeErrorAlert(f"malformed use_srtp: {exc}") from None


def server_choose(
    ours: Sequence[SrtpProtectionProfile], accept_mki: bool, data: bytes | None
) -> SrtpNegotiated | None:
    """The server's answer to a ClientHello's use_srtp (None: not offered, or no profile in
    common, and then no use_srtp in EncryptedExtensions: RFC 5764 §4.1.1 "the server SHOULD
    NOT return the use_srtp extension", and DTLS goes on without SRTP)."""
    if data is None or not ours:
        return None  # a server without SRTP ignores the extension, as any unknown one
    offer = _decode(data)
    for profile in ours:
        if profile in offer.profiles:
            return SrtpNegotiated(profile, offer.mki if accept_mki else b"")
    return None


def server_extension(chosen: SrtpNegotiated) -> ext.Extension:
    return ext.make_extension(
        ExtensionType.use_srtp, push_use_srtp, UseSrtp((chosen.profile,), chosen.mki)
    )


def client_check(
    offered: Sequence[SrtpProtectionProfile], mki: bytes, data: bytes
) -> SrtpNegotiated:
    """The server's use_srtp in EncryptedExtensions (we offered it: unsolicited ones are
    refused before). RFC 5764 §4.1.1: one profile, one the client offered; an MKI that is
    empty or the client's (§4.1.3: else "abort the handshake ... illegal_parameter")."""
    answer = _decode(data)
    if len(answer.profiles) != 1:
        raise IllegalParameter(f"use_srtp from the server with {len(answer.profiles)} profiles")
    chosen = answer.profiles[0]
    if chosen not in offered:
        raise IllegalParameter(f"server chose SRTP profile 0x{chosen:04x}, not offered")
    if answer.mki and answer.mki != mki:
        raise IllegalParameter("server's srtp_mki differs from ours")
    return SrtpNegotiated(P(chosen), answer.mki)
