"""The server's choice among the PSKs a ClientHello offers (RFC 8446 §4.2.11): a session
ticket of ours, else an imported external PSK (RFC 9258) in the server's order of
preference, else a plain external PSK; then the binder of the one chosen."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..alerts import (
    DecryptError,
    HandshakeFailure,
    IllegalParameter,
    MissingExtension,
    UnsupportedCertificate,
)
from ..crypto.suites import SUITES, CipherSuite
from . import extensions as ext
from . import messages as msgs
from . import raw_keys
from .constants import ExtensionType, HandshakeType
from .context import decode
from .key_schedule import KeySchedule
from .psk_import import imported_identity, server_match
from .tickets import TicketState

if TYPE_CHECKING:
    from .server import ServerHandshake

# (index offered, schedule, the ticket's state (None: external PSK), the identity offered,
# the external identity (None: a ticket)).
Accepted = tuple[int, KeySchedule, TicketState | None, ext.PskIdentity, bytes | None]


def psk_after_certificates(
    hs: ServerHandshake, ch: msgs.ClientHello, body: bytes, suite: int
) -> tuple[Accepted | None, bool]:
    """`psks_before_certificates=False`: a session ticket of ours, else a certificate
    credential if one fits the ClientHello (hs.choose_certificate), else an external PSK.
    (The PSK, if any; whether a certificate was chosen.)"""
    accepted = choose_psk(hs, ch, body, suite, external=False)
    if accepted is not None:
        return accepted, False
    try:
        hs.choose_certificate(ch)
        return None, True
    except (HandshakeFailure, MissingExtension, UnsupportedCertificate):
        # No certificate credential fits (RFC 8446 §4.2.3: a client that offers only a
        # PSK may send no signature_algorithms): an external PSK, if the client has one.
        hs._work.credential, hs._work.type_answers = None, ()
        hs.peer_type = raw_keys.CertificateType.X509
        accepted = choose_psk(hs, ch, body, suite, tickets=False)
        if accepted is None:
            raise
        return accepted, False


def choose_psk(
    hs: ServerHandshake,
    ch: msgs.ClientHello,
    body: bytes,
    suite: int,
    *,
    tickets: bool = True,
    external: bool = True,
) -> Accepted | None:
    """The PSK this handshake uses, its binder verified; None: none we know. `tickets`,
    `external`: whether session tickets, imported and external PSKs are candidates."""
    cfg = hs.config
    data = ch.extension(ExtensionType.pre_shared_key)
    assert data is not None
    offered = decode(data, ext.pull_pre_shared_key_client)
    if len(offered.identities) != len(offered.binders):
        raise IllegalParameter("pre_shared_key: identities and binders differ in number")
    hash_name = SUITES[CipherSuite(suite)].hash_name
    chosen = _ticket(hs, offered, hash_name) if tickets else None
    binder_label = "res"
    if chosen is None and external and cfg.imported_psks:
        wire = [i.identity for i in offered.identities]
        match = server_match(cfg.imported_psks, wire, hash_name)
        if match is not None:
            index, psk, ipskx = match
            ks = KeySchedule(hash_name, psk=ipskx)
            chosen, binder_label = (index, ks, None, offered.identities[index], psk.identity), "imp"
    if chosen is None and external and hash_name == "sha256":  # external PSKs: SHA-256
        for index, identity in enumerate(offered.identities):
            key = cfg.external_psks.get(identity.identity)
            if key is not None:
                ks = KeySchedule(hash_name, psk=key)
                chosen, binder_label = (index, ks, None, identity, identity.identity), "ext"
                break
    if chosen is None:
        return None
    index, ks = chosen[0], chosen[1]
    binder_key = ks.binder_key(binder_label == "ext", imported=binder_label == "imp")
    # The binder covers the ClientHello up to the binders (RFC 8446 §4.2.11.2).
    cut = ext.binders_length(len(b) for b in offered.binders)
    prefix = (msgs.transcript_header(HandshakeType.client_hello, len(body)) + body)[:-cut]
    partial_hash = hs._work.transcript.digest_with(prefix)
    if not ks.check_verify_data(binder_key, partial_hash, offered.binders[index]):
        raise DecryptError("PSK binder does not verify")
    return chosen


def _ticket(hs: ServerHandshake, offered: ext.OfferedPsks, hash_name: str) -> Accepted | None:
    """The first offered identity that is a ticket of ours this handshake may resume."""
    cfg = hs.config
    wall = hs._wall_clock().timestamp()
    for index, identity in enumerate(offered.identities):
        if identity.identity in cfg.external_psks:
            continue
        opened = open_ticket(hs, identity.identity, wall)
        if opened is None:
            continue
        state, renew = opened
        if state.server_name != hs.server_name:
            # RFC 8446 §4.2.11 lets the server check the ticket against the SNI.
            hs._count("psk_refused_identity", 1)
            continue
        if not raw_keys.ticket_identity_acceptable(cfg, state):
            # A resumption inherits the original's authentication (RFC 8446 §2.2): none
            # we accept here, so the full handshake must ask for one.
            hs._count("psk_refused_identity", 1)
            continue
        if SUITES[state.suite].hash_name != hash_name:
            continue
        hs._work.renew_tickets = renew
        return index, KeySchedule(hash_name, psk=state.psk), state, identity, None
    return None


def open_ticket(hs: ServerHandshake, ticket: bytes, wall: float) -> tuple[TicketState, bool] | None:
    """The ticket's state and whether to issue new tickets. The application's ticket keys
    or sealer raising, or answering with the wrong type, is its bug: counted
    (`server_callback_errors`) and, as any exception, internal_error."""
    try:
        return hs.config.tickets.open_ticket(ticket, wall)  # type: ignore[no-any-return]
    except Exception:
        hs._count("server_callback_errors", 1)
        raise


def check_kept_psks(
    hs: ServerHandshake, first: msgs.ClientHello, second: msgs.ClientHello, suite: int
) -> None:
    """RFC 8446 §4.1.2: the second ClientHello may drop only the PSKs "incompatible with
    the server's indicated cipher suite". An external PSK of ours that the first offered
    for this suite's hash must still be there (as BoringSSL, which has chosen it by then:
    missing_extension without any PSK, else illegal_parameter)."""
    cfg = hs.config
    data = first.extension(ExtensionType.pre_shared_key)
    if data is None or not (cfg.imported_psks or cfg.external_psks):
        return
    hash_name = SUITES[CipherSuite(suite)].hash_name
    ours = {imported_identity(p, hash_name) for p in cfg.imported_psks}
    if hash_name == "sha256":
        ours.update(cfg.external_psks)
    offered = decode(data, ext.pull_pre_shared_key_client).identities
    usable = [i.identity for i in offered if i.identity in ours]
    if not usable:
        return
    again = second.extension(ExtensionType.pre_shared_key)
    if again is None:
        raise MissingExtension("second ClientHello without the PSK the first offered")
    kept = {i.identity for i in decode(again, ext.pull_pre_shared_key_client).identities}
    if not set(usable) <= kept:
        raise IllegalParameter("second ClientHello drops a PSK the cipher suite allows")
