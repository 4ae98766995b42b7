"""The library's connection exceptions as the asyncio adapter raises them.

asyncio code expects a broken connection to raise a ``ConnectionError`` (as its transports
and streams do) and the end of a stream to be an ``EOFError`` (as ``IncompleteReadError``):

- every ``dtls13.ConnectionEnded`` the adapter raises is also a ``ConnectionError``,
  except ``PeerClosed`` (the peer's close_notify, a clean end), which is an ``EOFError``;
- `ClosedResourceError`: the channel or endpoint was closed by us (trio's name);
- `NeedHandshakeError`: ``get_cleartext_mtu()`` before the handshake (trio's name).

Catch the ``dtls13`` names (``dtls13.HandshakeFailed``, ...): the classes here are their
subclasses, so the same ``except`` clauses work on both adapters.
"""

from __future__ import annotations

from .. import errors


class ClosedResourceError(errors.DTLSError):
    """This channel or endpoint was closed by our own ``close()``/``aclose()``."""


class NeedHandshakeError(errors.LocalProtocolError):
    """The call needs a completed handshake (``get_cleartext_mtu``)."""


def _with_asyncio(cls: type[errors.ConnectionEnded]) -> type[errors.ConnectionEnded]:
    base: type[Exception] = EOFError if cls is errors.PeerClosed else ConnectionError
    return type(
        cls.__name__,
        (cls, base),
        {"__module__": __name__, "__qualname__": cls.__qualname__, "__doc__": cls.__doc__},
    )


ASYNCIO_CLASSES: dict[type[errors.ConnectionEnded], type[errors.ConnectionEnded]] = {
    cls: _with_asyncio(cls)
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
