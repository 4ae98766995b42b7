"""GREASE (RFC 8701): reserved values a client puts in its ClientHello so that servers keep
ignoring what they do not know instead of coming to depend on today's lists.

RFC 8701 §2 reserves {0x0A,0x0A}, {0x1A,0x1A}, ..., {0xFA,0xFA} as cipher suites,
extensions, named groups, signature algorithms and versions. A client with
`ClientConfig.grease` offers one of each (§3.1): a cipher suite, a version, a group in
supported_groups with a one-byte key share, a signature algorithm, an empty extension first
and a one-byte extension last. The values come from the ClientHello's random (under
Encrypted Client Hello, ClientHelloOuter's), so the ClientHello that answers a
HelloRetryRequest (the same random, RFC 8446 §4.1.2) repeats them. A server that selects
one is refused as selecting anything not offered is (§3.1: "Clients MUST reject GREASE
values when negotiated by the server").
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from . import extensions as ext

GREASE_VALUES = tuple(0x0A0A + 0x1010 * i for i in range(16))


def is_grease(value: int) -> bool:
    """Whether `value` is one of the 16 reserved 16-bit GREASE values (RFC 8701 §2)."""
    return value & 0x0F0F == 0x0A0A and value >> 8 == value & 0xFF


@dataclass(frozen=True, slots=True)
class GreaseValues:
    """One ClientHello's GREASE values (the two extensions differ, as §3.1 requires of
    repeated extensions)."""

    cipher_suite: int
    version: int
    group: int
    signature_algorithm: int
    first_extension: int
    last_extension: int


def grease_values(random: bytes) -> GreaseValues:
    """The GREASE values of the ClientHello whose random is `random`."""
    seed = hashlib.blake2b(random, person=b"dtls13 grease", digest_size=6).digest()
    cipher, version, group, scheme, first, last = (GREASE_VALUES[b & 0x0F] for b in seed)
    if last == first:
        last ^= 0x1010  # another GREASE value
    return GreaseValues(cipher, version, group, scheme, first, last)


def first_extension(values: GreaseValues) -> ext.Extension:
    """The empty GREASE extension the ClientHello starts with."""
    return ext.Extension(values.first_extension, b"")


def last_extension(values: GreaseValues) -> ext.Extension:
    """The one-byte GREASE extension at the end (before padding and pre_shared_key): one
    byte, as BoringSSL sends it, since some servers refuse an empty last extension."""
    return ext.Extension(values.last_extension, b"\x00")


def key_share(values: GreaseValues) -> ext.KeyShareEntry:
    """The key share for the GREASE group: one byte, which no real group has."""
    return ext.KeyShareEntry(values.group, b"\x00")
