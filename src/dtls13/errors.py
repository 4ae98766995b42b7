"""The exceptions dtls13 raises to its user, under one base class.

::

    DTLSError
    ├── LocalProtocolError              the API was used wrongly (raised at once)
    └── ConnectionEnded                 the connection can carry no more data
        ├── PeerClosed                  the peer sent close_notify
        ├── ConnectionFailed            a fatal alert (sent or received) after the handshake
        └── HandshakeFailed             the handshake did not complete
            ├── CertificateVerificationFailed   the peer's certificate was rejected
            ├── EchRejected                     the server rejected Encrypted Client Hello
            ├── HandshakeTimeout                no answer within handshake_timeout
            └── PeerUnreachable                 ICMP: nothing listens at the peer's port

The sans-IO core reports how a connection ended as a ``ConnectionTerminated`` event;
`error_for` turns one into the matching exception. The trio adapter raises these classes
mixed with ``trio.BrokenResourceError`` (see ``dtls13.trio``), so code written for
``trio.DTLSChannel`` keeps working.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # alerts.py imports this module
    from .alerts import AlertDescription


class DTLSError(Exception):
    """Base class of every exception dtls13 raises on purpose."""


class LocalProtocolError(DTLSError):
    """The programmer used the API wrongly (raised at once, never sent)."""


class ConnectionEnded(DTLSError):
    """The connection is over; `alert` is the alert that ended it (None without one) and
    `by_peer` tells whether the peer sent it (True) or we did (False)."""

    def __init__(
        self, message: str, *, reason: str, alert: AlertDescription | None, by_peer: bool
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.alert = alert
        self.by_peer = by_peer


class PeerClosed(ConnectionEnded):
    """The peer closed the connection with close_notify (``send`` after it raises this;
    ``receive`` raises ``trio.EndOfChannel`` as trio's channels do)."""


class ConnectionFailed(ConnectionEnded):
    """An established connection ended with a fatal alert, sent or received."""


class HandshakeFailed(ConnectionEnded):
    """The handshake did not complete: a fatal alert was sent or received, or see the
    subclasses."""


class CertificateVerificationFailed(HandshakeFailed):
    """We rejected the peer's certificate chain; `verification_error` is why, in the words
    of ``cryptography``'s verifier (or of the check that refused it)."""

    def __init__(
        self,
        message: str,
        *,
        reason: str,
        alert: AlertDescription | None,
        by_peer: bool,
        verification_error: str,
    ) -> None:
        super().__init__(message, reason=reason, alert=alert, by_peer=by_peer)
        self.verification_error = verification_error


class EchRejected(HandshakeFailed):
    """The server rejected our Encrypted Client Hello (RFC 9849 §6.1.6): it authenticated for
    the ECH config's public name, and we ended the handshake with ech_required. Retry on a
    new connection with `retry_configs` (an ECHConfigList) as ``ech_config_list``; None: the
    server sent none, so ECH is disabled for it (retry without ECH)."""

    def __init__(
        self,
        message: str,
        *,
        reason: str,
        alert: AlertDescription | None,
        by_peer: bool,
        retry_configs: bytes | None,
    ) -> None:
        super().__init__(message, reason=reason, alert=alert, by_peer=by_peer)
        self.retry_configs = retry_configs


class HandshakeTimeout(HandshakeFailed):
    """No handshake within ``handshake_timeout`` (the peer is silent or the path loses
    everything)."""


class PeerUnreachable(HandshakeFailed):
    """The peer's host answered with ICMP port unreachable before any DTLS answer: nothing
    listens there."""


def describe_alert(alert: AlertDescription, by_peer: bool) -> str:
    """``"the peer sent handshake_failure"`` / ``"we sent bad_certificate"``."""
    return f"{'the peer' if by_peer else 'we'} sent {alert.name}"


def error_for(
    *,
    reason: str,
    alert: AlertDescription | None,
    by_peer: bool,
    handshake_complete: bool,
    timed_out: bool = False,
    certificate_error: str | None = None,
    unreachable: bool = False,
    ech_rejected: bool = False,
    ech_retry_configs: bytes | None = None,
    classes: Mapping[type[ConnectionEnded], type[ConnectionEnded]] | None = None,
) -> ConnectionEnded:
    """The exception for how a connection ended (the fields of ``ConnectionTerminated``).

    `classes` maps a class of this module to the subclass to raise instead (an adapter's
    flavour of it, e.g. one that is also a ``trio.BrokenResourceError``).
    """
    from .alerts import AlertDescription

    swap = classes or {}

    def make(cls: type[ConnectionEnded], message: str) -> ConnectionEnded:
        return swap.get(cls, cls)(message, reason=reason, alert=alert, by_peer=by_peer)

    if alert is AlertDescription.close_notify and by_peer:
        return make(PeerClosed, "the peer closed the connection (close_notify)")
    tail = f" ({describe_alert(alert, by_peer)})" if alert is not None else ""
    if handshake_complete:
        return make(ConnectionFailed, f"DTLS connection failed: {reason}{tail}")
    if unreachable:
        return make(PeerUnreachable, reason)
    if timed_out:
        return make(HandshakeTimeout, f"DTLS {reason}")
    if ech_rejected:
        ech_cls = swap.get(EchRejected, EchRejected)
        assert issubclass(ech_cls, EchRejected)
        return ech_cls(
            f"DTLS handshake failed: {reason}{tail}",
            reason=reason,
            alert=alert,
            by_peer=by_peer,
            retry_configs=ech_retry_configs,
        )
    if certificate_error is not None:
        cls = swap.get(CertificateVerificationFailed, CertificateVerificationFailed)
        assert issubclass(cls, CertificateVerificationFailed)
        return cls(
            f"DTLS handshake failed: {reason}{tail}",
            reason=reason,
            alert=alert,
            by_peer=by_peer,
            verification_error=certificate_error,
        )
    return make(HandshakeFailed, f"DTLS handshake failed: {reason}{tail}")
