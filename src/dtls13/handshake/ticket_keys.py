"""Application-supplied session ticket keys (the server's side of RFC 8446 §4.6.1).

Two hooks, as OpenSSL and BoringSSL offer them:

- `TicketKeyCallback` (OpenSSL's `SSL_CTX_set_tlsext_ticket_key_cb`): the application
  names the key each new ticket is sealed under and, for each ticket a client offers, finds
  the key by the name the ticket carries in the clear and decides: resume with new tickets
  (`RENEW`), resume and let the client keep its ticket (`ACCEPT`), or refuse (None: a full
  handshake). `TicketKeyRing` is a ready-made one with `rotate()`.
- `TicketSealer` (BoringSSL's `SSL_TICKET_AEAD_METHOD`): the application seals and opens
  the ticket bytes itself (a key held in an HSM or a key service, say).

The library still chooses what goes inside a ticket and checks its expiry.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

KEY_NAME_LENGTH = 16
KEY_LENGTH = 32  # AES-256-GCM


@dataclass(frozen=True, slots=True, repr=False)
class TicketKey:
    """A ticket key: a 16-byte name, sent in the clear at the start of each ticket sealed
    under it, and a 32-byte AES-256-GCM key."""

    name: bytes
    key: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.name, bytes) or len(self.name) != KEY_NAME_LENGTH:
            raise ValueError(f"a ticket key name is {KEY_NAME_LENGTH} bytes")
        if not isinstance(self.key, bytes) or len(self.key) != KEY_LENGTH:
            raise ValueError(f"a ticket key is {KEY_LENGTH} bytes (AES-256-GCM)")

    def __repr__(self) -> str:  # never the key itself
        return f"TicketKey(name={self.name.hex()})"


class TicketDecision(enum.Enum):
    """What a server does with a ticket whose key the callback found."""

    ACCEPT = "accept"  # resume; no new tickets: the client keeps the one it has
    RENEW = "renew"  # resume, and issue new tickets under the current key


@runtime_checkable
class TicketKeyCallback(Protocol):
    """Supplies ticket keys (`ServerConfig.ticket_keys`)."""

    def encryption_key(self) -> TicketKey | None:
        """The key to seal a new ticket under; None: issue no ticket."""

    def decryption_key(self, name: bytes) -> tuple[TicketKey, TicketDecision] | None:
        """The key named `name` (from a ticket a client offers) and what to do with the
        ticket; None: refuse it (a full handshake, or another PSK the client offers)."""


@runtime_checkable
class TicketSealer(Protocol):
    """Seals and opens tickets itself (`ServerConfig.ticket_sealer`)."""

    def seal(self, plaintext: bytes) -> bytes | None:
        """The ticket for `plaintext` (confidential and authenticated); None: issue none."""

    def open(self, ticket: bytes) -> bytes | None:
        """The plaintext a ticket of ours carries; None: not ours, or tampered with.

        `ticket` is network input: refuse it rather than raise."""


class TicketKeyRing:
    """A `TicketKeyCallback` holding a current key and the few before it.

    New tickets are sealed under the current key; a ticket under any key the ring holds
    resumes and gets new tickets under the current key (`RENEW`). `rotate()` makes a new
    current key and forgets keys beyond `keep`, so their tickets no longer resume. Give
    several servers the same keys (`rotate(key)`) so that each resumes the others' tickets.
    """

    def __init__(
        self,
        keys: Sequence[TicketKey] = (),
        *,
        keep: int = 2,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        if keep < 1:
            raise ValueError("keep must be at least 1 (the current key)")
        if any(not isinstance(k, TicketKey) for k in keys):
            raise TypeError("keys must be TicketKey objects")
        self.keep = keep
        self._random = random_bytes
        self._keys: list[TicketKey] = list(keys)[:keep]  # current first
        if not self._keys:
            self.rotate()

    @property
    def keys(self) -> tuple[TicketKey, ...]:
        """The keys held, current first."""
        return tuple(self._keys)

    def rotate(self, key: TicketKey | None = None) -> TicketKey:
        """Make `key` (default: a new random one) the current key; returns it."""
        if key is None:
            key = TicketKey(self._random(KEY_NAME_LENGTH), self._random(KEY_LENGTH))
        elif not isinstance(key, TicketKey):
            raise TypeError("rotate() takes a TicketKey or None")
        others = [k for k in self._keys if k.name != key.name]
        self._keys = [key, *others][: self.keep]
        return key

    def encryption_key(self) -> TicketKey | None:
        return self._keys[0]

    def decryption_key(self, name: bytes) -> tuple[TicketKey, TicketDecision] | None:
        for key in self._keys:
            if key.name == name:
                return key, TicketDecision.RENEW
        return None
