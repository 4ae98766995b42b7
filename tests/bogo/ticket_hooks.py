"""test_config.cc's ticket hooks as the library's: `-use-ticket-callback` (TicketKeyCallback;
BoringSSL's TicketKeyCallback seals under an all-zero key named all zeros, `-renew-ticket`
renews) and `-use-ticket-aead-callback` (TicketSealer; AsyncTicketSeal/Open, an all-zero
AEAD key and a random nonce). `-skip-ticket`: no ticket is issued."""

from __future__ import annotations

import os
from typing import Any

from flags import Flags, Unimplemented


def ticket_hooks(f: Flags) -> dict[str, Any]:
    """ServerConfig options for the ticket flags (none without them)."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from dtls13 import TicketDecision, TicketKey

    skip, renew = f.has("-skip-ticket"), f.has("-renew-ticket")
    if f.has("-use-ticket-aead-callback"):
        if renew:
            raise Unimplemented("-renew-ticket with the ticket AEAD callback (BoringSSL: neither)")
        aead = AESGCM(bytes(16))

        class Sealer:
            def seal(self, plaintext: bytes) -> bytes | None:
                if skip:
                    return None
                nonce = os.urandom(12)
                return nonce + aead.encrypt(nonce, plaintext, None)

            def open(self, ticket: bytes) -> bytes | None:
                try:
                    return aead.decrypt(ticket[:12], ticket[12:], None)
                except (InvalidTag, ValueError):
                    return None

        return {"ticket_sealer": Sealer()}
    if f.has("-use-ticket-callback"):
        zeros = TicketKey(bytes(16), bytes(32))
        decision = TicketDecision.RENEW if renew else TicketDecision.ACCEPT

        class Keys:
            def encryption_key(self) -> TicketKey | None:
                return None if skip else zeros

            def decryption_key(self, name: bytes) -> tuple[TicketKey, TicketDecision] | None:
                return (zeros, decision) if name == zeros.name else None

        return {"ticket_keys": Keys()}
    if skip or renew:
        raise Unimplemented("-skip-ticket / -renew-ticket without a ticket callback")
    return {}
