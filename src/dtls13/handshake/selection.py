"""A server's certificate chains and which one a ClientHello gets.

A server may hold several chains (each with its private key) and picks one per handshake
from the client's server_name (RFC 6066 §3) and signature_algorithms (RFC 8446 §4.2.3):
the chosen key must sign with a scheme the client offered (§4.4.2.2, §4.4.3); among the
chains that can, one issued for the exact name comes first, then one whose wildcard
covers it, then the first configured. Loading is programmer input: it raises at once.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from ..alerts import HandshakeFailure, InternalError, NoApplicationProtocol
from . import messages as msgs
from . import stapling
from .constants import SignatureScheme
from .credentials import (
    CertificateSource,
    KeySource,
    check_key_matches_certificate,
    load_certificate_chain,
    load_private_key,
)
from .signatures import PrivateKey, _scheme_name, schemes_for_key


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
class ServerCertificate:
    """One certificate chain with its private key, loaded and checked at construction.

    `names`: the server names (SNI) it is for; None: the DNS names in the certificate.
    `ocsp_response` (DER OCSPResponse) and `signed_certificate_timestamps` (serialized
    SCTs): stapled to the leaf for a client that asks (handshake.stapling); not checked.
    """

    certificate_chain: CertificateSource
    private_key: KeySource
    private_key_password: bytes | str | None = field(default=None, repr=False)
    names: Sequence[str] | None = None
    ocsp_response: bytes | None = field(default=None, repr=False)
    signed_certificate_timestamps: Sequence[bytes] = field(default=(), repr=False)
    # Filled in by __post_init__.
    chain: tuple[x509.Certificate, ...] = field(init=False, repr=False)
    key: PrivateKey = field(init=False, repr=False)
    server_names: tuple[str, ...] = field(init=False)
    schemes: frozenset[int] = field(init=False, repr=False)
    # The Certificate message's body (empty request context): encoded once, sent as is.
    body: bytes = field(init=False, repr=False)
    # Bodies with stapled data (handshake.stapling), made on first use.
    stapled_bodies: dict[Any, bytes] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        chain = tuple(load_certificate_chain(self.certificate_chain))
        key = load_private_key(self.private_key, self.private_key_password)
        check_key_matches_certificate(key, chain[0])
        if self.names is None:
            names = certificate_names(chain[0])
        elif isinstance(self.names, str | bytes) or not isinstance(self.names, Sequence):
            raise TypeError("names is a sequence of server names, not one string")
        else:
            names = tuple(dict.fromkeys(_check_name(n) for n in self.names))
        entries = tuple(msgs.CertificateEntry(c.public_bytes(Encoding.DER)) for c in chain)
        _, body = msgs.push_message(msgs.Certificate(b"", entries))
        set_ = object.__setattr__
        set_(self, "chain", chain)
        set_(self, "key", key)
        set_(self, "server_names", names)
        set_(self, "schemes", frozenset(schemes_for_key(key)))
        set_(self, "body", body)
        set_(self, "ocsp_response", stapling.check_ocsp_response(self.ocsp_response))
        timestamps = stapling.check_timestamps(self.signed_certificate_timestamps)
        set_(self, "signed_certificate_timestamps", timestamps)
        stapling.check_fits(self.ocsp_response, timestamps)
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

    def scheme_for(self, offered: Iterable[int]) -> int | None:
        """The first of the client's schemes this key can sign with (None: none)."""
        mine = self.schemes
        return next((s for s in offered if s in mine), None)


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
        self, server_name: str | None, offered: Sequence[int]
    ) -> tuple[ServerCertificate, int] | None:
        """The chain for this client and the scheme its key signs with, or None when no
        key can sign with any offered scheme (the caller sends handshake_failure)."""
        tiers: list[Iterable[ServerCertificate]] = []
        if server_name:
            tiers.append(self._exact.get(server_name, ()))
            # A wildcard stands for exactly one leftmost label (RFC 6125 §6.4.3).
            _, dot, parent = server_name.partition(".")
            if dot:
                tiers.append(self._wildcard.get(parent, ()))
        tiers.append(self.certificates)
        for tier in tiers:
            for cert in tier:
                scheme = cert.scheme_for(offered)
                if scheme is not None:
                    return cert, scheme
        return None


def load_server_certificates(
    primary: tuple[Any, ...] | None, extra: Sequence[Any]
) -> CertificateSet:
    """The configured chains: the single-chain fields' first, then `certificates`."""
    if isinstance(extra, str | bytes | os.PathLike) or not isinstance(extra, Sequence):
        raise TypeError("certificates is a sequence of ServerCertificate or (chain, key) tuples")
    loaded = [ServerCertificate(*primary)] if primary is not None else []
    loaded += [ServerCertificate.of(item) for item in extra]
    return CertificateSet(loaded)


# -- per handshake (the client's input: raise only Alert subclasses) -------------------


def choose_certificate(
    config: Any, server_name: str | None, offered: Sequence[int], count: Any
) -> tuple[ServerCertificate, int]:
    """The chain a full handshake sends and the scheme its CertificateVerify uses.

    `config.certificate_callback` is asked first; None from it means the built-in choice.
    Something other than a ServerCertificate from it, or an exception, is the programmer's
    bug: counted (`server_callback_errors`) and answered with internal_error; the endpoint
    goes on.
    """
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
            scheme = chosen.scheme_for(offered)
            if scheme is None:
                raise HandshakeFailure(_no_scheme(offered, (chosen,)))
            return chosen, scheme
    certificates: CertificateSet = config.server_certificates
    if not certificates.certificates:
        raise HandshakeFailure("no certificate, and no PSK the client knows")
    found = certificates.select(server_name, offered)
    if found is None:
        # RFC 8446 §4.4.2.2, §4.4.3: CertificateVerify uses a scheme the client offered;
        # with no key able to, the handshake fails (§4.1.1: handshake_failure).
        raise HandshakeFailure(_no_scheme(offered, certificates.certificates))
    return found


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


def _no_scheme(offered: Sequence[int], certificates: Sequence[ServerCertificate]) -> str:
    ours = sorted({_scheme_name(s) for c in certificates for s in c.schemes})
    return (
        f"no certificate can sign with a scheme the client offers: ours {ours}, "
        f"offered {[_scheme_name(s) for s in offered]}"
    )
