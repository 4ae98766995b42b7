"""Credentials: what a peer can authenticate with, and which one a handshake uses.

A credential is one identity with its private key: an X.509 chain, or a bare public key
(RFC 7250). An endpoint holding several picks, per handshake, the first in its order that
the peer can take: of a certificate type the peer accepts (RFC 7250 §4.2), whose key signs
with a scheme the peer offered (RFC 8446 §4.4.2.2, §4.4.3), and, when the credential asks
for it (`must_match_issuer`), whose chain has an issuer among the peer's
certificate_authorities (RFC 8446 §4.2.4). The scheme is our first preference the peer
offered: the credential's `signature_schemes`, else in the configured order.

Constructing a Credential is programmer input (raises at once); the codec of
certificate_authorities reads network bytes and raises only DecodeError.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import KW_ONLY, dataclass, field
from typing import TypeVar

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from .._fast import Buffer
from . import delegated, trust_anchors
from . import extensions as ext
from . import messages as msgs
from .constants import SignatureScheme
from .credentials import (
    CertificateSource,
    KeySource,
    check_key_matches_certificate,
    load_certificate_chain,
    load_private_key,
)
from .raw_keys import CertificateType, spki
from .signatures import PrivateKey, _scheme_name, schemes_for_certificate, schemes_for_key


@dataclass(frozen=True, eq=False)
class Credential:
    """One identity and its private key, loaded and checked at construction.

    An X.509 `certificate_chain` (leaf first) with its `private_key`, or, with
    `raw_public_key=True` and no chain, the key's bare SubjectPublicKeyInfo (RFC 7250).
    `signature_schemes`: the schemes this key signs with, in order of preference (None:
    every scheme the key can use, in the configured `signature_schemes` order).
    `must_match_issuer`: use this credential only for a peer whose certificate_authorities
    extension names an issuer of its chain (RFC 8446 §4.2.4), or whose trust_anchors
    extension names its `trust_anchor_id` (draft-ietf-tls-trust-anchor-ids: the ID of the
    trust anchor the chain leads to, 1 to 255 bytes).
    `delegated_credential`: a delegated credential (RFC 9345) for `private_key`, signed by
    the chain's leaf (`dtls13.delegated_credential`): the credential then serves only a
    peer that asks for delegated credentials (handshake.delegated).
    """

    certificate_chain: CertificateSource | None = None
    private_key: KeySource | None = None
    private_key_password: bytes | str | None = field(default=None, repr=False)
    _: KW_ONLY
    raw_public_key: bool = False
    signature_schemes: Sequence[SignatureScheme | str | int] | None = None
    must_match_issuer: bool = False
    trust_anchor_id: bytes | None = None
    delegated_credential: bytes | None = field(default=None, repr=False)
    # Filled in by __post_init__.
    delegation: delegated.DelegatedCredential | None = field(init=False, repr=False)
    chain: tuple[x509.Certificate, ...] = field(init=False, repr=False)
    key: PrivateKey = field(init=False, repr=False)
    certificate_type: CertificateType = field(init=False)
    # What the key signs with: `signature_schemes` (ordered), else every scheme it can.
    schemes: tuple[SignatureScheme, ...] = field(init=False, repr=False)
    # The DER names of the issuers of the chain's certificates (must_match_issuer).
    issuers: frozenset[bytes] = field(init=False, repr=False)
    # The Certificate message's body (empty request context): encoded once, sent as is.
    body: bytes = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.private_key is None:
            raise ValueError("a credential needs private_key")
        if not isinstance(self.raw_public_key, bool):
            raise TypeError("raw_public_key must be True or False")
        if not isinstance(self.must_match_issuer, bool):
            raise TypeError("must_match_issuer must be True or False")
        if self.trust_anchor_id is not None:
            trust_anchors.check_id(self.trust_anchor_id)
        key = load_private_key(self.private_key, self.private_key_password)
        dc: delegated.DelegatedCredential | None = None
        if self.raw_public_key:
            if self.certificate_chain is not None:
                raise ValueError("a raw public key credential has no certificate_chain")
            if self.must_match_issuer:
                raise ValueError("must_match_issuer needs a certificate chain (it has issuers)")
            if self.trust_anchor_id is not None:
                raise ValueError("trust_anchor_id needs a certificate chain (to a trust anchor)")
            if self.delegated_credential is not None:
                raise ValueError("a delegated credential needs the certificate chain it is for")
            chain: tuple[x509.Certificate, ...] = ()
            entries: tuple[msgs.CertificateEntry, ...] = (
                msgs.CertificateEntry(spki(key.public_key())),
            )
            cert_type = CertificateType.RawPublicKey
        else:
            if self.certificate_chain is None:
                raise ValueError("certificate_chain is needed (or raw_public_key=True)")
            chain = tuple(load_certificate_chain(self.certificate_chain))
            entries = tuple(msgs.CertificateEntry(c.public_bytes(Encoding.DER)) for c in chain)
            if self.delegated_credential is None:
                check_key_matches_certificate(key, chain[0])
            else:
                dc = delegated.own(self.delegated_credential, chain[0], key)
                entries = (delegated.leaf_entry(chain, dc), *entries[1:])
            cert_type = CertificateType.X509
        if dc:
            usable = [SignatureScheme(dc.dc_cert_verify_algorithm)]
        elif chain:
            # RFC 8446 §4.2.3: a key under the RSASSA-PSS OID signs with rsa_pss_pss_* only.
            usable = schemes_for_certificate(chain[0])
        else:
            usable = schemes_for_key(key)
        if self.signature_schemes is None:
            schemes = tuple(usable)
        else:
            if isinstance(self.signature_schemes, str | bytes):
                raise TypeError("signature_schemes is a sequence of schemes, not one string")
            wanted = [_scheme(v) for v in self.signature_schemes]
            schemes = tuple(s for s in wanted if s in usable)
            if not schemes:
                raise ValueError(
                    f"this key signs with none of signature_schemes {[s.name for s in wanted]} "
                    f"(it can use {[s.name for s in usable]})"
                )
        _, body = msgs.push_message(msgs.Certificate(b"", entries))
        set_ = object.__setattr__
        set_(self, "chain", chain)
        set_(self, "key", key)
        set_(self, "delegation", dc)
        set_(self, "certificate_type", cert_type)
        set_(self, "schemes", schemes)
        set_(self, "issuers", frozenset(c.issuer.public_bytes() for c in chain))
        set_(self, "body", body)

    @classmethod
    def of(cls, item: object) -> Credential:
        """`item` as a Credential: one already, or a (chain, key[, password]) tuple."""
        if isinstance(item, Credential):
            return item
        if isinstance(item, tuple) and len(item) in (2, 3):
            return cls(*item)
        raise TypeError(
            "certificates holds Credential objects or (chain, key) tuples, "
            f"not {type(item).__name__}"
        )

    def scheme_for(
        self, offered: Iterable[int], preference: Sequence[int] | None = None
    ) -> int | None:
        """Our first scheme the peer offered (None: none). The credential's own
        `signature_schemes` order and limit them; without, `preference` (the configured
        schemes) orders them, the key's others coming after (a default list that leaves
        out a key type, ML-DSA, does not lock that key out)."""
        offered_set = set(offered)
        schemes = self.schemes
        if self.signature_schemes is None and preference is not None:
            for s in preference:
                if s in offered_set and s in schemes:
                    return s
        # The key's schemes in their own order (after `preference`: those it left out).
        for s in schemes:
            if s in offered_set:
                return s
        return None

    def matches_issuers(
        self, authorities: frozenset[bytes] | None, anchors: frozenset[bytes] | None = None
    ) -> bool:
        """Whether the peer's certificate_authorities or trust anchor IDs allow this
        credential."""
        if not self.must_match_issuer:
            return True
        if anchors is not None and self.trust_anchor_id in anchors:
            return True
        return authorities is not None and not self.issuers.isdisjoint(authorities)


def _scheme(value: object) -> SignatureScheme:
    """A SignatureScheme from a member, its number or its IANA name (programmer input)."""
    if isinstance(value, SignatureScheme):
        return value
    if isinstance(value, int):
        try:
            return SignatureScheme(value)
        except ValueError:
            raise ValueError(f"unknown signature scheme 0x{value:04x}") from None
    if isinstance(value, str):
        match = {m.name.lower(): m for m in SignatureScheme}.get(value.lower())
        if match is None:
            raise ValueError(f"unknown signature scheme {value!r}")
        return match
    raise TypeError(f"a signature scheme is a name, a number or a member, not {value!r}")


C = TypeVar("C", bound="Credential")


def choose(
    credentials: Iterable[C],
    cert_type: CertificateType,
    offered: Sequence[int],
    preference: Sequence[int] | None,
    authorities: frozenset[bytes] | None,
    anchors: frozenset[bytes] | None = None,
    dc_offered: Sequence[int] | None = None,
) -> tuple[C, int] | None:
    """The first credential of `cert_type` the peer can take, and the scheme it signs with
    (one with a delegated credential only when `dc_offered` allows it: handshake.delegated)."""
    for cred in credentials:
        if cred.certificate_type != cert_type or not cred.matches_issuers(authorities, anchors):
            continue
        scheme = delegated.scheme_for(cred, offered, preference, dc_offered)
        if scheme is not None:
            return cred, scheme
    return None


def no_match_reason(
    credentials: Sequence[Credential],
    offered: Sequence[int],
    authorities: frozenset[bytes] | None,
    anchors: frozenset[bytes] | None = None,
) -> str:
    """Why no credential fits, for the alert's text."""
    if credentials and all(not c.matches_issuers(authorities, anchors) for c in credentials):
        return "no credential's issuer is among the peer's certificate_authorities or trust anchors"
    ours = sorted({_scheme_name(s) for c in credentials for s in c.schemes})
    return (
        f"no credential can sign with a scheme the peer offers: ours {ours}, "
        f"offered {[_scheme_name(s) for s in offered]}"
    )


# -- certificate_authorities (RFC 8446 §4.2.4) -------------------------------------------
#
#     opaque DistinguishedName<1..2^16-1>;
#     struct { DistinguishedName authorities<3..2^16-1>; } CertificateAuthoritiesExtension;


def pull_certificate_authorities(buf: Buffer) -> frozenset[bytes]:
    """The DER DistinguishedNames of a certificate_authorities extension, as a set."""
    return frozenset(ext.pull_certificate_authorities(buf))


push_certificate_authorities = ext.push_certificate_authorities


__all__ = [
    "Credential",
    "choose",
    "no_match_reason",
    "pull_certificate_authorities",
    "push_certificate_authorities",
]
