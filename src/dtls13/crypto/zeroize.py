"""Zeroing key material held as Python bytes once the library lets it go.

Secrets come out of HMAC as bytes, and bytes are immutable to Python code, not to their
last owner: `zeroize(secret)` zeroes one in place when the only reference left is the
caller's, and leaves alone one that anyone else still holds (a constant cached for reuse,
an AEAD object, the application's copy). Call it on a local variable after clearing every
attribute that held the secret:

    secret, self.secret = self.secret, b""
    zeroize(secret)

Record keys are zeroed by `RecordCipher`; this covers the traffic, handshake, master,
exporter and resumption secrets and PSKs between their derivation and their release.
"""

from __future__ import annotations

import os

from .._fast import secret_refcount, wipe_secret


def _count(secret: bytes) -> int:
    return int(secret_refcount(secret))  # called exactly as `zeroize` calls `wipe_secret`


def _sole_reference_count() -> int:
    probe = os.urandom(16)
    return _count(probe)


# What a local variable passed to `zeroize` counts when it is the only reference (it depends
# on the interpreter's calling convention, so it is measured rather than assumed).
_SOLE = _sole_reference_count()


def zeroize(secret: bytes | None) -> bool:
    """Zero `secret` in place if the caller's local variable is its only reference."""
    return secret is not None and bool(wipe_secret(secret, _SOLE))
