"""Certificate chains from the peer: parsing and verification.

Chain verification uses `cryptography.x509.verification` (the CA/B web PKI
profile) and maps each failure to its alert; see `verify_server_chain()`. Functions
that take bytes from the peer raise only `Alert` subclasses.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Iterable, Sequence

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from ..alerts import (
    Alert,
    BadCertificate,
    CertificateExpired,
    CertificateRequired,
    DecodeErrorAlert,
    LocalProtocolError,
    UnknownCa,
    UnsupportedCertificate,
)
from .credentials import TrustStore, _lenient
from .signatures import MIN_RSA_BITS, _key_name, schemes_for_key


def parse_certificate_chain_untrusted(ders: Iterable[bytes | memoryview]) -> list[x509.Certificate]:
    """Certificates from a Certificate message's DER entries; BadCertificate if malformed."""
    certs = []
    for i, der in enumerate(ders):
        try:
            with _lenient():
                certs.append(x509.load_der_x509_certificate(bytes(der)))
        except Exception as err:  # ValueError, InvalidVersion, ...: the peer's bytes
            said = f"certificate #{i} is malformed: {err}"
            raise _rejected(BadCertificate, said, said) from None
    return certs


def _validation_time(now: datetime.datetime | float | None) -> datetime.datetime:
    if now is None:
        return datetime.datetime.now(datetime.UTC)
    if isinstance(now, datetime.datetime):
        if now.tzinfo is None:
            raise LocalProtocolError("validation time must be timezone-aware (UTC)")
        return now
    return datetime.datetime.fromtimestamp(now, datetime.UTC)


def server_name_subject(server_name: str) -> x509.DNSName | x509.IPAddress:
    """The verifier subject for a server name: an IP address or a DNS name."""
    name = server_name.strip()
    if not name:
        raise LocalProtocolError("server_name is empty")
    try:
        return x509.IPAddress(ipaddress.ip_address(name.strip("[]")))
    except ValueError:
        pass
    name = name.rstrip(".").lower()
    if not name.isascii():
        name = name.encode("idna").decode("ascii")
    return x509.DNSName(name)


# cryptography's VerificationError messages (checked against cryptography 48; the
# tests exercise every entry), with the alert and a sentence a user can act on. First
# match wins, so specific causes come first.
_VERIFICATION_ERRORS: tuple[tuple[str, type[Alert], str], ...] = (
    (
        "not valid at validation time",
        CertificateExpired,
        "a certificate in the chain is expired or not yet valid (check the clocks)",
    ),
    # OpenSSL maps X509_V_ERR_HOSTNAME_MISMATCH to bad_certificate too.
    (
        "no matching subjectaltname",
        BadCertificate,
        "the certificate is not issued for the expected name (check server_name)",
    ),
    (
        "has no subjectaltname",
        BadCertificate,
        "the certificate names no host (no subjectAltName), so it fits no server_name",
    ),
    (
        "forbidden public key algorithm",
        UnsupportedCertificate,
        "a certificate in the chain has a key type or size that is not allowed",
    ),
    (
        "forbidden signature algorithm",
        UnsupportedCertificate,
        "a certificate in the chain is signed with an algorithm that is not allowed",
    ),
    ("unsupported", UnsupportedCertificate, "the certificate uses something unsupported"),
    # OpenSSL: X509_V_ERR_INVALID_PURPOSE -> unsupported_certificate.
    ("eku", UnsupportedCertificate, "the certificate is not issued for this use (EKU)"),
    (
        "candidates exhausted",
        UnknownCa,
        "no chain leads from the certificate to a trusted CA (is the CA that issued it "
        "among the trusted ones: cafile?)",
    ),
    (
        "chain construction exceeds max depth",
        UnknownCa,
        "the certificate chain is longer than allowed",
    ),
)


_VALIDATOR_FAILED = "Python extension validator failed: ValueError: "


def _rejected(cls: type[Alert], sentence: str, verifier_said: str) -> Alert:
    """An alert for a rejected certificate chain: `sentence` for the user, the verifier's
    own words kept as ``certificate_error``."""
    alert = cls(f"certificate verification failed: {sentence}")
    alert.certificate_error = verifier_said
    return alert


def _alert_for_verification_error(err: Exception) -> Alert:
    message = str(err)
    lowered = message.lower()
    for needle, cls, sentence in _VERIFICATION_ERRORS:
        if needle in lowered:
            # A candidate refused by our own extension checks says why; a bare signature
            # mismatch or an empty search is the usual "not issued by a CA we trust".
            _, _, detail = message.partition(_VALIDATOR_FAILED)
            if detail:
                sentence = f"no chain leads from the certificate to a trusted CA: {detail}"
            return _rejected(cls, sentence, message)
    # Missing or malformed extensions, bad encodings: the certificate is unusable.
    return _rejected(BadCertificate, f"the certificate is unusable: {message}", message)


def _alert_for(
    err: Exception, chain: Sequence[x509.Certificate], store: TrustStore | Store
) -> Alert:
    alert = _alert_for_verification_error(err)
    if isinstance(alert, UnknownCa) and _leaf_signature_broken(chain, store):
        # cryptography reports "signature does not match" as an exhausted search;
        # a leaf whose named issuer is at hand but did not sign it is a bad
        # certificate ("contained signatures that did not verify", RFC 8446 §6.2).
        return _rejected(
            BadCertificate,
            "the certificate's signature does not verify with the key of the trusted CA "
            "of its issuer's name (a different CA of the same name?)",
            str(err),
        )
    return alert


def _leaf_signature_broken(chain: Sequence[x509.Certificate], store: TrustStore | Store) -> bool:
    leaf = chain[0]
    known = list(chain[1:]) + (list(store.certificates) if isinstance(store, TrustStore) else [])
    issuers = [c for c in known if c.subject == leaf.issuer]
    if not issuers:
        return False
    for issuer in issuers:
        try:
            leaf.verify_directly_issued_by(issuer)
        except InvalidSignature:
            continue
        except (ValueError, TypeError, UnsupportedAlgorithm):
            return False  # cannot tell: keep unknown_ca
        return False
    return True


def _precheck_leaf(leaf: x509.Certificate, when: datetime.datetime) -> None:
    try:
        public_key = leaf.public_key()
    except (ValueError, UnsupportedAlgorithm) as err:
        raise UnsupportedCertificate(f"unsupported certificate public key: {err}") from None
    if not schemes_for_key(public_key):
        raise UnsupportedCertificate(
            f"the certificate's {_key_name(public_key)} key cannot sign TLS 1.3 handshakes"
        )
    if isinstance(public_key, rsa.RSAPublicKey) and public_key.key_size < MIN_RSA_BITS:
        raise UnsupportedCertificate(
            f"RSA-{public_key.key_size} certificate key is shorter than {MIN_RSA_BITS} bits"
        )
    if when < leaf.not_valid_before_utc:
        raise CertificateExpired(f"certificate not valid before {leaf.not_valid_before_utc}")
    if when > leaf.not_valid_after_utc:
        raise CertificateExpired(f"certificate expired at {leaf.not_valid_after_utc}")


def _store_of(store: TrustStore | Store) -> Store:
    return store.store if isinstance(store, TrustStore) else store


def verify_server_chain(
    chain: Sequence[x509.Certificate],
    store: TrustStore | Store,
    server_name: str,
    now: datetime.datetime | float | None = None,
) -> list[x509.Certificate]:
    """Verify a server's chain for `server_name` (DNS name or IP address) at `now`.

    `now` is wall-clock time (a POSIX timestamp or an aware datetime; None:
    the current time), not the sans-IO monotonic clock. Returns the verified
    path (leaf to root). Raises: DecodeErrorAlert for an empty chain (RFC
    8446 §4.4.2.4), UnknownCa when no path leads to a trusted root,
    CertificateExpired when a certificate is expired or not yet valid,
    BadCertificate for a name mismatch (as OpenSSL does) or a malformed or
    policy-violating certificate, UnsupportedCertificate for a key type or
    extended key usage that does not fit.
    """
    if not chain:
        raise DecodeErrorAlert("the server sent an empty Certificate message")
    return _verify_chain(chain, store, _validation_time(now), server_name_subject(server_name))


def _verify_chain(
    chain: Sequence[x509.Certificate],
    store: TrustStore | Store,
    when: datetime.datetime,
    subject: x509.DNSName | x509.IPAddress | None,
) -> list[x509.Certificate]:
    """Server verification with `subject`, client verification without."""
    try:
        _precheck_leaf(chain[0], when)
        builder = _builder(store, when, client=subject is None)
        try:
            with _lenient():
                if subject is None:
                    verified = builder.build_client_verifier().verify(chain[0], list(chain[1:]))
                    return list(verified.chain)
                verifier = builder.build_server_verifier(subject)
                return list(verifier.verify(chain[0], list(chain[1:])))
        except VerificationError as err:
            raise _alert_for(err, chain, store) from None
    except Alert as alert:
        if alert.certificate_error is None:  # our own checks (_precheck_leaf)
            alert.certificate_error = alert.reason
        raise
    except Exception as err:
        # cryptography parses certificate fields lazily, and a malformed field
        # surfaces as whatever its parser raises (ValueError, KeyError for an
        # unknown string tag, InvalidVersion, ...): all of it is the peer's bytes.
        said = f"{type(err).__name__}: {err}"
        raise _rejected(BadCertificate, f"malformed certificate: {said}", said) from None


def _ee_policy(client: bool) -> ExtensionPolicy:
    """The web PKI end-entity profile, relaxed where TLS peers commonly differ.

    Self-signed test certificates (``openssl req -x509``) and wolfSSL's test
    certificates assert cA=TRUE in the leaf, and self-signed ones may lack an
    authorityKeyIdentifier; OpenSSL accepts both, so we do. Client
    certificates need no subjectAltName (RFC 8446 sets no such rule).
    """
    policy = (
        ExtensionPolicy.webpki_defaults_ee()
        .may_be_present(x509.BasicConstraints, Criticality.AGNOSTIC, None)
        .may_be_present(x509.AuthorityKeyIdentifier, Criticality.AGNOSTIC, None)
    )
    if client:
        policy = policy.may_be_present(x509.SubjectAlternativeName, Criticality.AGNOSTIC, None)
    return policy


def _ca_key_usage(policy: object, cert: x509.Certificate, ku: x509.KeyUsage | None) -> None:
    if ku is not None and not ku.key_cert_sign:
        raise ValueError("a CA certificate's keyUsage must allow keyCertSign")


def _ca_basic_constraints(
    policy: object, cert: x509.Certificate, bc: x509.BasicConstraints
) -> None:
    if not bc.ca:
        raise ValueError("an issuer must assert cA=TRUE in basicConstraints")


def _ca_policy() -> ExtensionPolicy:
    """The web PKI CA profile, but keyUsage may be absent (wolfSSL's test CA has none;
    OpenSSL does not require it; when present it must allow keyCertSign) and
    basicConstraints may be non-critical (wolfSSL's test CA; OpenSSL accepts it) though
    it must still say cA=TRUE."""
    return (
        ExtensionPolicy.webpki_defaults_ca()
        .may_be_present(x509.KeyUsage, Criticality.AGNOSTIC, _ca_key_usage)
        .require_present(x509.BasicConstraints, Criticality.AGNOSTIC, _ca_basic_constraints)
    )


def _builder(store: TrustStore | Store, when: datetime.datetime, client: bool) -> PolicyBuilder:
    return (
        PolicyBuilder()
        .store(_store_of(store))
        .time(when)
        .extension_policies(ca_policy=_ca_policy(), ee_policy=_ee_policy(client))
    )


def verify_client_chain(
    chain: Sequence[x509.Certificate],
    store: TrustStore | Store,
    now: datetime.datetime | float | None = None,
) -> list[x509.Certificate]:
    """Verify a client's chain at `now` (see `verify_server_chain`).

    An empty chain raises CertificateRequired (RFC 8446 §4.4.2.4: for a
    server that requires client certificates; one that does not should not
    call this).
    """
    if not chain:
        raise CertificateRequired("the client sent no certificate")
    return _verify_chain(chain, store, _validation_time(now), None)
