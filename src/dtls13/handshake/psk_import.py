"""Imported external PSKs (RFC 9258): one external PSK, diversified per target protocol
and KDF, so the same key is never used with two hash functions or two protocols.

`ImportedPsk` is the configuration (``ClientConfig.imported_psks``,
``ServerConfig.imported_psks``); `client_offers` and `server_match` are what the two
handshake roles ask of it. Codecs and derivations only: nothing here knows a connection.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from .._fast import Buffer
from ..crypto.hkdf import DTLS13_PREFIX, digest_size, hkdf_expand_label, hkdf_extract
from .constants import DTLS13_VERSION
from .key_schedule import KeySchedule
from .tickets import Session

# RFC 9258 §10 (IANA "TLS KDF Identifiers"): the target_kdf of an ImportedIdentity.
KDF_IDS: dict[str, int] = {"sha256": 0x0001, "sha384": 0x0002}  # HKDF_SHA256, HKDF_SHA384


@dataclass(frozen=True, slots=True)
class ImportedPsk:
    """An external PSK to import (RFC 9258 §5.1): its identity, its key (the EPSK), the
    context both peers bind it to, and the hash the EPSK is associated with (which runs
    the import; the imported PSKs follow the cipher suites' hashes)."""

    identity: bytes
    key: bytes = field(repr=False)
    context: bytes = b""
    hash: str = "sha256"

    def __post_init__(self) -> None:
        for name in ("identity", "key", "context"):
            if not isinstance(getattr(self, name), bytes):
                raise TypeError(f"ImportedPsk.{name} must be bytes")
        # ImportedIdentity: external_identity<1..2^16-1>, context<0..2^16-1> (§5.1).
        if not 0 < len(self.identity) < 0x10000 or len(self.context) >= 0x10000:
            raise ValueError("ImportedPsk: identity of 1..65535 bytes, context under 65536")
        if len(self.key) < 16:
            raise ValueError("ImportedPsk.key must hold at least 16 bytes")
        if self.hash not in KDF_IDS:
            raise ValueError("ImportedPsk.hash must be 'sha256' or 'sha384'")


def imported_identity(
    psk: ImportedPsk, target_hash: str, target_protocol: int = DTLS13_VERSION
) -> bytes:
    """The ImportedIdentity structure (RFC 9258 §5.1), the identity offered on the wire."""
    buf = Buffer(capacity=len(psk.identity) + len(psk.context) + 8)
    buf.push_vector(2, psk.identity)
    buf.push_vector(2, psk.context)
    buf.push_uint16(target_protocol)
    buf.push_uint16(KDF_IDS[target_hash])
    return buf.data


def derive_ipskx(
    psk: ImportedPsk,
    target_hash: str,
    target_protocol: int = DTLS13_VERSION,
    prefix: bytes = DTLS13_PREFIX,
) -> bytes:
    """The imported PSK (RFC 9258 §5.1)::

        epskx = HKDF-Extract(0, epsk)
        ipskx = HKDF-Expand-Label(epskx, "derived psk", Hash(ImportedIdentity), L)

    with the EPSK's hash running HKDF and Hash, and L the target KDF's output length.
    HKDF-Expand-Label takes the target protocol's label prefix: "dtls13" for DTLS 1.3
    (RFC 9147 §5.9), as BoringSSL does.
    """
    identity = imported_identity(psk, target_hash, target_protocol)
    epskx = hkdf_extract(psk.hash, bytes(digest_size(psk.hash)), psk.key)
    context = hashlib.new(psk.hash, identity).digest()
    return hkdf_expand_label(
        psk.hash, epskx, b"derived psk", context, digest_size(target_hash), prefix
    )


@dataclass(frozen=True, slots=True)
class ImportedOffer:
    """One imported PSK as a client offers it: the source, the wire identity, the hash of
    the suites it serves and its key (the early secret's input)."""

    source: ImportedPsk
    identity: bytes
    hash_name: str
    ipskx: bytes = field(repr=False)


def client_offers(psks: Sequence[ImportedPsk], hash_names: Iterable[str]) -> list[ImportedOffer]:
    """Every configured PSK imported for every hash among `hash_names` (those of the
    suites offered, in order), as RFC 9258 §5.1 asks: "for each supported target protocol
    target_protocol and KDF target_kdf"."""
    wanted = list(dict.fromkeys(hash_names))
    return [
        ImportedOffer(psk, imported_identity(psk, h), h, derive_ipskx(psk, h))
        for psk in psks
        for h in wanted
    ]


def server_match(
    psks: Sequence[ImportedPsk], offered: Sequence[bytes], hash_name: str
) -> tuple[int, ImportedPsk, bytes] | None:
    """The first of our PSKs (in our order) the client offered imported for DTLS 1.3 and
    `hash_name` (the chosen suite's): (index among the offered identities, the PSK, ipskx).
    An identity matches only byte for byte: another context, protocol or KDF is another
    PSK."""
    positions = {identity: i for i, identity in reversed(list(enumerate(offered)))}
    for psk in psks:
        index = positions.get(imported_identity(psk, hash_name))
        if index is not None:
            return index, psk, derive_ipskx(psk, hash_name)
    return None


@dataclass(frozen=True, slots=True)
class PskOffer:
    """One PSK a ClientHello offers, whatever its kind: a session ticket (`session`), a
    plain external PSK or an imported one (`external`: the external identity)."""

    identity: bytes
    obfuscated_age: int
    schedule: KeySchedule
    session: Session | None = None
    external: bytes | None = None
    imported: bool = False

    def binder_key(self) -> bytes:
        """ "res binder", "ext binder" or "imp binder" (RFC 8446 §7.1, RFC 9258 §5.2)."""
        return self.schedule.binder_key(self.external is not None, imported=self.imported)


def imported_offers(psks: Sequence[ImportedPsk], hash_names: Iterable[str]) -> list[PskOffer]:
    """`client_offers` as PskOffers."""
    return [
        PskOffer(
            o.identity, 0, KeySchedule(o.hash_name, psk=o.ipskx), None, o.source.identity, True
        )
        for o in client_offers(psks, hash_names)
    ]
