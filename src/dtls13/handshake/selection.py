"""A server's credentials and which one a ClientHello gets.

A server may hold several credentials (X.509 chains or raw public keys, each with its
private key) and picks one per handshake: of a certificate type the client accepts (RFC
7250 §4.2), whose key signs with a scheme the client offered (RFC 8446 §4.4.2.2, §4.4.3)
and, for one that must, whose issuer the client named (§4.2.4: handshake.identity); among
those, one issued for the client's server_name (RFC 6066 §3) comes first, then one whose
wildcard covers it, then the first configured. Loading is programmer input: it raises at
once.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.x509.oid import NameOID

from .._fast import DecodeError
from ..alerts import (
    DecodeErrorAlert,
    HandshakeFailure,
    InternalError,
    NoApplicationProtocol,
    UnsupportedCertificate,
)
from . import delegated, identity, stapling
from . import extensions as ext
from .constants import ExtensionType, SignatureScheme
from .identity import Credential
from .raw_keys import CertificateType, pull_certificate_types, push_certificate_type


def _check_name(name: object) -> str:
    """A DNS name or a ``*.`` wildcard, lower case; anything else raises ValueError."""
    if not isinstance(name, str):
        raise TypeError(f"server names are str, not {type(name).__name__}")
    lowered = name.strip().lower()
    if not lowered.isascii():
        lowered = lowered.encode("idna").decode("ascii")
    labels = lowered.split(".")
    body = labels[1:] if labels[0] == "*" else labels
    if not body or any(not label or "*" in label for label in body) or len(lowered) > 253:
        raise ValueError(
            f"server name {name!r} is not a DNS name or a wildcard like '*.example.com' "
            "(the '*' alone as the leftmost label)"
        )
    if labels[0] == "*" and len(body) < 2:
        raise ValueError(f"wildcard {name!r} covers a whole top-level domain")
    return lowered


def certificate_names(cert: x509.Certificate) -> tuple[str, ...]:
    """The DNS names (and wildcards) `cert` is issued for: its subjectAltName DNS entries,
    else its common name (RFC 6125 §6.4.4). Entries that are no usable name are skipped."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        raw: list[str] = list(san.value.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        raw = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    names = []
    for name in raw:
        try:
            names.append(_check_name(name))
        except (ValueError, UnicodeError):
            continue
    return tuple(dict.fromkeys(names))


@dataclass(frozen=True, eq=False)
class ServerCertificate(Credential):
    """A server's credential: a chain (or, with `raw_public_key=True`, a bare key) and its
    private key, loaded and checked at construction (see `Credential`).

    `names`: the server names (SNI) it is for; None: the DNS names in the certificate.
    `ocsp_response` (DER OCSPResponse) and `signed_certificate_timestamps` (serialized
    SCTs): stapled to the leaf for a client that asks (handshake.stapling); not checked.
    """

    names: Sequence[str] | None = None
    ocsp_response: bytes | None = field(default=None, repr=False)
    signed_certificate_timestamps: Sequence[bytes] = field(default=(), repr=False)
    server_names: tuple[str, ...] = field(init=False)
    # Bodies with stapled data (handshake.stapling), made on first use.
    stapled_bodies: dict[Any, bytes] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.names is None:
            names = certificate_names(self.chain[0]) if self.chain else ()
        elif isinstance(self.names, str | bytes) or not isinstance(self.names, Sequence):
            raise TypeError("names is a sequence of server names, not one string")
        else:
            names = tuple(dict.fromkeys(_check_name(n) for n in self.names))
        set_ = object.__setattr__
        set_(self, "server_names", names)
        set_(self, "ocsp_response", stapling.check_ocsp_response(self.ocsp_response))
        timestamps = stapling.check_timestamps(self.signed_certificate_timestamps)
        set_(self, "signed_certificate_timestamps", timestamps)
        stapling.check_fits(self.ocsp_response, timestamps)
        if not self.chain and (self.ocsp_response is not None or timestamps):
            raise ValueError("a raw public key has no certificate to staple OCSP or SCTs to")
        set_(self, "stapled_bodies", {})

    @classmethod
    def of(cls, item: object) -> ServerCertificate:
        """`item` as a ServerCertificate: one already, or a (chain, key[, password]) tuple."""
        if isinstance(item, ServerCertificate):
            return item
        if isinstance(item, tuple) and len(item) in (2, 3):
            return cls(*item)
        raise TypeError(
            "certificates holds ServerCertificate objects or (chain, key) tuples, "
            f"not {type(item).__name__}"
        )


class CertificateSet:
    """A server's chains in configuration order, indexed by the names they are for."""

    __slots__ = ("_exact", "_wildcard", "certificates")

    def __init__(self, certificates: Iterable[ServerCertificate]) -> None:
        self.certificates = tuple(certificates)
        self._exact: dict[str, list[ServerCertificate]] = {}
        self._wildcard: dict[str, list[ServerCertificate]] = {}
        for cert in self.certificates:
            for name in cert.server_names:
                if name.startswith("*."):
                    self._wildcard.setdefault(name[2:], []).append(cert)
                else:
                    self._exact.setdefault(name, []).append(cert)

    def __len__(self) -> int:
        return len(self.certificates)

    def select(
        self,
        server_name: str | None,
        offered: Sequence[int],
        cert_type: CertificateType = CertificateType.X509,
        preference: Sequence[int] | None = None,
        authorities: frozenset[bytes] | None = None,
        anchors: frozenset[bytes] | None = None,
        dc_offered: Sequence[int] | None = None,
    ) -> tuple[ServerCertificate, int] | None:
        """The credential of `cert_type` for this client and the scheme its key signs with,
        or None when none fits (see `identity.choose`)."""
        tiers: list[Iterable[ServerCertificate]] = []
        if server_name:
            tiers.append(self._exact.get(server_name, ()))
            # A wildcard stands for exactly one leftmost label (RFC 6125 §6.4.3).
            _, dot, parent = server_name.partition(".")
            if dot:
                tiers.append(self._wildcard.get(parent, ()))
        tiers.append(self.certificates)
        for tier in tiers:
            found = identity.choose(
                tier, cert_type, offered, preference, authorities, anchors, dc_offered
            )
            if found is not None:
                return found
        return None


def load_server_certificates(
    primary: tuple[Any, ...] | None,
    extra: Sequence[Any],
    raw_key: Any = None,
) -> CertificateSet:
    """The configured credentials: the single-chain fields' first, then the bare key of
    `raw_public_key` (`raw_key`), then `certificates`."""
    if isinstance(extra, str | bytes | os.PathLike) or not isinstance(extra, Sequence):
        raise TypeError("certificates is a sequence of ServerCertificate or (chain, key) tuples")
    loaded = [ServerCertificate(*primary)] if primary is not None else []
    if raw_key is not None:
        loaded.append(ServerCertificate(private_key=raw_key, raw_public_key=True))
    loaded += [ServerCertificate.of(item) for item in extra]
    return CertificateSet(loaded)


# -- per handshake (the client's input: raise only Alert subclasses) -------------------


def choose_server_credential(
    config: Any,
    server_name: str | None,
    offered: Sequence[int],
    count: Any,
    server_types: bytes | None,
    authorities: bytes | None,
    anchors: frozenset[bytes] | None = None,
    delegated_offer: bytes | None = None,
) -> tuple[ServerCertificate, int, ext.Extension | None]:
    """The credential a full handshake sends, the scheme its CertificateVerify uses and
    the server_certificate_type answer for EncryptedExtensions (None: none to send).

    The certificate types are tried in the client's order (RFC 7250 §4.2; without its
    server_certificate_type, or when we hold no raw key, X.509 only: the extension is
    then ignored, as by a server without RFC 7250).
    """
    CT = CertificateType
    own = config.own_types
    if server_types is not None and CT.RawPublicKey in own:
        offered_types = _decode(server_types, pull_certificate_types)
        types = [CT(t) for t in dict.fromkeys(offered_types) if t in own]
    else:
        types = [CT.X509] if CT.X509 in own else []
    if not types and CT.RawPublicKey in own:
        raise UnsupportedCertificate("no server certificate type in common")
    names = None
    if authorities is not None:
        names = _decode(authorities, identity.pull_certificate_authorities)
    dc_offered = delegated.offered_schemes_untrusted(delegated_offer)
    cert, scheme = choose_certificate(
        config, server_name, offered, count, types, names, anchors, dc_offered
    )
    answer = None
    if server_types is not None and CT.RawPublicKey in own:
        answer = ext.make_extension(
            ExtensionType.server_certificate_type, push_certificate_type, cert.certificate_type
        )
    return cert, scheme, answer


def choose_certificate(
    config: Any,
    server_name: str | None,
    offered: Sequence[int],
    count: Any,
    types: Sequence[CertificateType] = (CertificateType.X509,),
    authorities: frozenset[bytes] | None = None,
    anchors: frozenset[bytes] | None = None,
    dc_offered: Sequence[int] | None = None,
) -> tuple[ServerCertificate, int]:
    """The credential a full handshake sends and the scheme its CertificateVerify uses:
    for each type in `types`, the first credential that fits (SNI tiers first for X.509).

    `config.certificate_callback` is asked first; None from it means the built-in choice.
    Something other than a ServerCertificate from it, or an exception, is the programmer's
    bug: counted (`server_callback_errors`) and answered with internal_error; the endpoint
    goes on.
    """
    preference = config.schemes
    callback = config.certificate_callback
    if callback is not None:
        known = tuple(_known_scheme(s) for s in offered)
        chosen = _call(callback, count, server_name, known)
        if chosen is not None:
            if not isinstance(chosen, ServerCertificate):
                count("server_callback_errors", 1)
                raise InternalError(
                    f"certificate_callback returned a {type(chosen).__name__}, "
                    "not a ServerCertificate or None"
                )
            if chosen.certificate_type not in types:
                raise HandshakeFailure("the callback's credential is of a type the client refuses")
            scheme = delegated.scheme_for(chosen, offered, preference, dc_offered)
            if scheme is None:
                raise HandshakeFailure(identity.no_match_reason((chosen,), offered, None))
            return chosen, scheme
    certificates: CertificateSet = config.server_certificates
    if not certificates.certificates:
        raise HandshakeFailure("no certificate, and no PSK the client knows")
    for cert_type in types:
        found = certificates.select(
            server_name, offered, cert_type, preference, authorities, anchors, dc_offered
        )
        if found is not None:
            return found
    # RFC 8446 §4.4.2.2, §4.4.3: CertificateVerify uses a scheme the client offered;
    # with no key able to, the handshake fails (§4.1.1: handshake_failure).
    usable = [c for c in certificates.certificates if c.certificate_type in types]
    raise HandshakeFailure(
        delegated.unusable_reason(usable, dc_offered)
        or identity.no_match_reason(usable, offered, authorities, anchors)
    )


def _decode(data: bytes, pull: Any) -> Any:
    try:
        return ext.decode(data, pull)
    except DecodeError as exc:
        raise DecodeErrorAlert(f"malformed extension: {exc}") from None


def choose_alpn(config: Any, offered: Sequence[str], count: Any) -> str:
    """The ALPN protocol for a client that offered `offered` (RFC 7301 §3.2).

    With `config.alpn_callback`, its answer (None: no_application_protocol); an answer
    the client did not offer is the programmer's bug: counted and internal_error. Without
    one, our first of `config.alpn_protocols` the client offered.
    """
    callback = config.alpn_callback
    if callback is not None:
        chosen = _call(callback, count, tuple(offered))
        if chosen is None:
            raise NoApplicationProtocol("alpn_callback accepted none of the client's protocols")
        if not isinstance(chosen, str) or chosen not in offered:
            count("server_callback_errors", 1)
            raise InternalError(
                f"alpn_callback returned {chosen!r}, which the client did not offer"
            )
        return chosen
    for proto in config.alpn_protocols:
        if proto in offered:
            return str(proto)
    raise NoApplicationProtocol("no ALPN protocol in common")


def _call(callback: Any, count: Any, *args: Any) -> Any:
    """The application's callback, its exceptions counted; they go on up to the connection,
    which answers internal_error (or re-raises them with `debug`)."""
    try:
        return callback(*args)
    except Exception:
        count("server_callback_errors", 1)
        raise


def _known_scheme(value: int) -> int:
    try:
        return SignatureScheme(value)
    except ValueError:
        return value
