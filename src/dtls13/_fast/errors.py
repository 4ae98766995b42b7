"""The exceptions the compiled modules raise (plain Python classes, shared by all of them)."""

from __future__ import annotations


class DecodeError(ValueError):
    """Malformed or truncated wire data."""


class EncodeError(ValueError):
    """A value does not fit the wire format or the writer's capacity."""


class LeaseReleasedError(RuntimeError):
    """A lease was used after it was released."""


class MemoryBudgetExceeded(MemoryError):
    """An acquisition would exceed a byte budget or a pool's arena cap.

    Callers in the record and handshake layers turn this into a drop and a
    counter; it never escapes to the network-facing API.
    """

    def __init__(
        self, owner: str, requested: int, in_use: int, limit: int, reason: str = "budget"
    ) -> None:
        self.owner = owner
        self.requested = requested
        self.in_use = in_use
        self.limit = limit
        self.reason = reason
        super().__init__(
            f"memory {reason} of {owner} exceeded: {requested} B requested, "
            f"{in_use} B in use, limit {limit} B"
        )
