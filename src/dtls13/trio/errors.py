"""The library's connection exceptions as the trio adapter raises them: each is also a
``trio.BrokenResourceError``, so code written for ``trio.DTLSChannel`` keeps catching them.

Catch the ``dtls13`` names (``dtls13.HandshakeFailed``, ...): the classes here are their
subclasses.
"""

from __future__ import annotations

import trio

from .. import errors


def _with_trio(cls: type[errors.ConnectionEnded]) -> type[errors.ConnectionEnded]:
    return type(
        cls.__name__,
        (cls, trio.BrokenResourceError),
        {"__module__": __name__, "__qualname__": cls.__qualname__, "__doc__": cls.__doc__},
    )


TRIO_CLASSES: dict[type[errors.ConnectionEnded], type[errors.ConnectionEnded]] = {
    cls: _with_trio(cls)
    for cls in (
        errors.PeerClosed,
        errors.ConnectionFailed,
        errors.HandshakeFailed,
        errors.CertificateVerificationFailed,
        errors.EchRejected,
        errors.HandshakeTimeout,
        errors.PeerUnreachable,
    )
}
