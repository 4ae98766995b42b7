"""What was concluded about the peer's certificate: ``Connection.peer_verification``, and
what ``verify_callback`` is asked about (``dtls13.handshake.verification`` decides)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from cryptography import x509

from .alerts import AlertDescription

AD = AlertDescription

# What a callback may reject with: the certificate alerts of RFC 8446 §6.2, access_denied
# and handshake_failure (OpenSSL's and BoringSSL's answer to an application's rejection).
REJECTION_ALERTS = frozenset(
    {
        AD.bad_certificate,
        AD.unsupported_certificate,
        AD.certificate_revoked,
        AD.certificate_expired,
        AD.certificate_unknown,
        AD.unknown_ca,
        AD.access_denied,
        AD.handshake_failure,
        AD.insufficient_security,
    }
)

# The reason a callback's rejection ends the handshake with (tests/bogo's ErrorMap names it).
CALLBACK_REJECTED = "certificate verification failed: verify_callback rejected the peer's"


@dataclass(frozen=True, slots=True)
class PeerVerification:
    """The peer's certificate (or raw public key) and what was concluded about it.

    ``verify_callback`` gets one with the library's proposal in ``accepted`` / ``alert``;
    ``Connection.peer_verification`` holds the outcome.
    """

    chain: tuple[x509.Certificate, ...]  # leaf first; () for a raw public key
    public_key: bytes | None  # the raw public key (RFC 7250, DER SubjectPublicKeyInfo), if any
    # A client's: the name it checks the server's certificate against (None: none given).
    # A server's: the name the client asked for (server_name extension).
    server_name: str | None
    # The library's own checks: True passed; False failed (``error`` says why); None not
    # made (a client with verify=False and no cafile/cadir, or no server_name to check).
    verified: bool | None
    error: str | None
    accepted: bool  # the verdict: the library's (verified is True), or the callback's
    alert: AlertDescription | None  # the alert a rejection sends (soft fail: would send)
    resumed: bool = False  # about a resumption: the chain the session authenticated
    by_callback: bool = False  # verify_callback gave the verdict
    # A client whose Encrypted Client Hello the server rejected: the ECH config's
    # public_name, which server_name then holds (RFC 9849 §6.1.7); None otherwise.
    ech_name_override: str | None = None


VerifyCallback = Callable[[PeerVerification], "bool | AlertDescription"]
