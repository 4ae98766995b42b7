"""The verdict on the peer's certificate, and the application's ``verify_callback``.

Once the peer's Certificate message is in, the library checks the chain (against the trust
store, and the server name on a client) and hands its verdict to ``verify_callback``, which
has the last word: True accepts, False or an alert description rejects. A rejection is fatal
on a server and on a client with ``verify=True``; a client with ``verify=False`` records it
(``Connection.peer_verification``) and goes on ("soft fail"). Whatever the verdict, the
peer's CertificateVerify signature is checked afterwards as always (RFC 8446 §4.4.3): the
callback decides whom to trust, never whether the peer holds the key.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from cryptography import x509

from ..alerts import Alert, AlertDescription, InternalError, alert_for
from ..peer_verification import (
    CALLBACK_REJECTED,
    REJECTION_ALERTS,
    PeerVerification,
    VerifyCallback,
)

AD = AlertDescription
__all__ = ["PeerVerification", "VerifyCallback", "check_callback", "on_resumption", "verify_peer"]


def _library_verdict(
    hs: Any, chain: tuple[x509.Certificate, ...], server_name: str | None
) -> tuple[bool | None, Alert | None, str | None]:
    """(verified, the alert a failure raises, why not checked)."""
    cfg = hs.config
    if cfg.trust is None:
        return None, None, "not checked: no trust store (verify=False without cafile/cadir)"
    from . import certificates as certs  # not for the unchecked case above

    now = hs._wall_clock()
    try:
        if hs.is_client:
            if server_name is None:
                return None, None, "not checked: no server_name to check the certificate against"
            certs.verify_server_chain(list(chain), cfg.trust, server_name, now)
        else:
            certs.verify_client_chain(list(chain), cfg.trust, now)
    except Alert as alert:
        # Kept past this frame: without its traceback, which would hold the receive path's
        # frames (and their pooled buffers) in a reference cycle until gc.
        alert.__context__ = None  # the verifier's exception, and its traceback too
        return False, alert.with_traceback(None), None
    return True, None, None


def verify_peer(
    hs: Any,
    chain: tuple[x509.Certificate, ...],
    public_key: bytes | None,
    resumed: bool = False,
) -> PeerVerification:
    """The verdict on the peer's credential for handshake context `hs`, the callback asked;
    raises the alert when it is a rejection and verification is required.

    A raw public key reaches here only once it matched a pinned key (raw_keys), so the
    library's verdict on it is True."""
    cfg = hs.config
    override = getattr(hs, "ech_name_override", None) if hs.is_client else None
    if hs.is_client:
        # Once the server rejected ECH, it authenticates for the public name (RFC 9849 §6.1.7).
        server_name = override if override is not None else cfg.server_name
    else:
        server_name = getattr(hs, "server_name", None)
    library_alert: Alert | None = None
    if public_key is not None:
        verified: bool | None = True
        error: str | None = None
    else:
        verified, library_alert, error = _library_verdict(hs, chain, server_name)
        if library_alert is not None:
            error = library_alert.certificate_error or library_alert.reason
    outcome = PeerVerification(
        chain=chain,
        public_key=public_key,
        server_name=server_name,
        verified=verified,
        error=error,
        accepted=verified is True,
        alert=None if library_alert is None else library_alert.description,
        resumed=resumed,
        ech_name_override=override,
    )
    if cfg.verify_callback is not None:
        outcome = _ask(cfg.verify_callback, outcome, hs._count)
    required = cfg.verify if hs.is_client else True
    if not outcome.accepted and required:
        alert, library_alert = _rejection(outcome, library_alert), None
        try:
            raise alert
        finally:
            # No frame of this raise may keep the alert (its traceback would hold this
            # frame: a cycle that keeps the receive path's pooled buffers alive until gc).
            del alert
    return outcome


def _ask(callback: Any, proposal: PeerVerification, count: Any) -> PeerVerification:
    """The callback's verdict on `proposal`; its exception, or an answer that is neither a
    bool nor a rejection alert, is the application's bug: counted, internal_error."""
    failure = None
    try:
        answer = callback(proposal)
    except Exception as exc:
        failure = f"verify_callback raised {type(exc).__name__}: {exc}"
    if failure is not None:
        # Raised outside the except clause: the alert carries no reference to the
        # application's exception and the frames its traceback holds.
        count("verify_callback_errors", 1)
        raise InternalError(failure)
    if answer is True:
        return dataclasses.replace(proposal, accepted=True, alert=None, by_callback=True)
    if answer is False:
        alert = proposal.alert or AD.certificate_unknown  # RFC 8446 §6.2: "some other issue"
        return dataclasses.replace(proposal, accepted=False, alert=alert, by_callback=True)
    if isinstance(answer, AlertDescription) and answer in REJECTION_ALERTS:
        return dataclasses.replace(proposal, accepted=False, alert=answer, by_callback=True)
    count("verify_callback_errors", 1)
    raise InternalError(
        f"verify_callback returned {answer!r}: return True to accept, False or a certificate "
        "alert (AlertDescription) to reject"
    )


def _rejection(outcome: PeerVerification, library_alert: Alert | None) -> Alert:
    if library_alert is not None and not outcome.by_callback:
        return library_alert  # the verifier's own alert and words, as without a callback
    description = outcome.alert or AD.certificate_unknown
    what = "raw public key" if outcome.public_key is not None else "certificate chain"
    if not outcome.by_callback:
        # Nothing was checked and no callback decided (verify=True cannot get here without
        # a trust store, but a client without server_name with a callback can).
        alert = alert_for(description, f"certificate verification failed: {outcome.error}")
    else:
        alert = alert_for(description, f"{CALLBACK_REJECTED} {what}")
        if outcome.error:
            alert.reason += f" ({outcome.error})"
    alert.certificate_error = alert.reason
    return alert


def on_resumption(hs: Any, previous: PeerVerification | None) -> PeerVerification | None:
    """A resumption's verdict: the session's (marked resumed), or with ``reverify_on_resume``
    on a client the chain the session authenticated verified again, the callback asked."""
    cfg = hs.config
    if not (hs.peer_chain or hs.peer_public_key is not None):
        return None  # an external PSK: no certificate
    if hs.is_client and cfg.reverify_on_resume:
        return verify_peer(hs, hs.peer_chain, hs.peer_public_key, resumed=True)
    if previous is None:
        # A server's ticket holds the client's credential, accepted when it was issued.
        previous = PeerVerification(
            chain=hs.peer_chain,
            public_key=hs.peer_public_key,
            server_name=getattr(hs, "server_name", None),
            verified=None,
            error="not checked again: accepted when the ticket was issued",
            accepted=True,
            alert=None,
        )
    return dataclasses.replace(previous, resumed=True)


def check_callback(value: object) -> None:
    """Configuration: verify_callback must be callable or None (raised at once)."""
    if value is not None and not callable(value):
        raise TypeError("verify_callback must be callable (or None)")
