"""The client's side of a resumable session (RFC 8446 §4.6.1), as the public API hands it out.

``NewSessionTicketReceived.session`` carries one; ``ClientConfig(session=...)`` resumes it.
The ticket machinery is in ``dtls13.handshake.tickets``, which re-exports this class.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509

from .crypto.suites import CipherSuite
from .peer_verification import PeerVerification


@dataclass(frozen=True, slots=True)
class Session:
    """What a client keeps to resume: the ticket and the PSK it stands for."""

    ticket: bytes
    psk: bytes
    suite: CipherSuite
    received_at: float  # wall-clock seconds
    lifetime: int
    age_add: int
    max_early_data: int = 0
    alpn: str | None = None
    # The name the session was issued for (ClientConfig.server_name): it is offered only
    # to that name again (RFC 8446 §4.6.1).
    server_name: str | None = None
    # The server's chain authenticated in the full handshake: what a resumption reports.
    peer_certificates: tuple[x509.Certificate, ...] = ()
    # Or the server's raw public key (RFC 7250, DER SubjectPublicKeyInfo) it authenticated by.
    peer_public_key: bytes | None = None
    # The verdict on them in the full handshake (a soft fail's rejection included).
    peer_verification: PeerVerification | None = None
    # What the server stapled to that chain (OCSP response, SCTs), reported again on resumption.
    peer_ocsp_response: bytes | None = None
    peer_signed_certificate_timestamps: tuple[bytes, ...] = ()

    def expired(self, now: float) -> bool:
        return now - self.received_at >= self.lifetime

    def obfuscated_age(self, now: float) -> int:
        """The ticket's age in milliseconds plus age_add, modulo 2^32 (§4.2.11.1)."""
        age_ms = max(0, int((now - self.received_at) * 1000))
        return (age_ms + self.age_add) & 0xFFFFFFFF
