"""The server's NewSessionTickets after a handshake (RFC 8446 §4.6.1): one post-handshake
flight of stateless tickets, sealed by the configuration's TicketProtector."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..crypto.zeroize import zeroize
from . import extensions as ext
from . import messages as msgs
from .constants import ExtensionType
from .tickets import MAX_TICKET_CHAIN, TicketState, chain_size
from .work import FlightKind

if TYPE_CHECKING:
    from .server import ServerHandshake


def send_session_tickets(hs: ServerHandshake) -> None:
    """Stateless NewSessionTickets (RFC 8446 §4.6.1), one post-handshake flight."""
    cfg = hs.config
    ks = hs._work.schedule
    if not cfg.session_tickets or ks is None or hs.suite is None:
        return
    if hs.resumed and not hs._work.renew_tickets:
        return  # TicketDecision.ACCEPT: the client keeps the ticket it resumed with
    if chain_size(hs.peer_chain) > MAX_TICKET_CHAIN:
        hs._count("tickets_withheld", cfg.session_tickets)
        return
    secret = ks.resumption_master_secret(hs._work.transcript.digest())
    wall = hs._wall_clock().timestamp()
    try:
        for i in range(cfg.session_tickets):
            nonce = bytes([i])
            age_add = int.from_bytes(cfg.random_bytes(4), "big")
            psk = ks.resumption_psk(secret, nonce)
            state = TicketState(
                hs.suite,
                psk,
                wall,
                cfg.ticket_lifetime,
                age_add,
                cfg.max_early_data,
                hs.alpn,
                hs.server_name,
                hs.peer_chain,
                hs.peer_public_key or b"",
            )
            ticket = _seal(hs, state, wall)
            del state  # sealed: the PSK lives on only inside the ticket
            zeroize(psk)
            if ticket is None:
                break  # the application's keys or sealer issue no ticket now
            hs._out.flight = FlightKind.TICKETS
            extensions = (
                (
                    ext.make_extension(
                        ExtensionType.early_data, ext.push_early_data_ticket, cfg.max_early_data
                    ),
                )
                if cfg.max_early_data
                else ()
            )
            hs._send(
                msgs.NewSessionTicket(cfg.ticket_lifetime, age_add, nonce, ticket, extensions),
                None,
                transcript=False,
            )
    finally:
        zeroize(secret)


def _seal(hs: ServerHandshake, state: TicketState, wall: float) -> bytes | None:
    """The sealed ticket (None: none). The application's ticket keys or sealer raising,
    or answering with the wrong type, is counted and, as any exception, internal_error."""
    try:
        return hs.config.tickets.seal(state, wall)  # type: ignore[no-any-return]
    except Exception:
        if hs.config.tickets.callback or hs.config.tickets.sealer:
            hs._count("server_callback_errors", 1)
        raise
