"""A trace of the messages a connection sends and reads, for debugging: the DTLS 1.3 form of
OpenSSL's and BoringSSL's message callback (``SSL_CTX_set_msg_callback``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .header import ContentType

__all__ = ["MessageCallback", "TracedMessage", "check_message_callback"]


@dataclass(frozen=True, slots=True)
class TracedMessage:
    """One message a connection sent or read.

    A handshake message is traced once, when it is made or when the whole of it is read
    (not per fragment, record or retransmission); an ACK or an alert once per record.
    """

    sent: bool  # True: we sent it; False: we read it
    content_type: ContentType  # handshake, ack or alert
    message_type: int | None  # the HandshakeType of a handshake message, else None
    data: bytes  # the handshake message's body, the ACK's content or the alert's two bytes
    # Encrypted Client Hello (RFC 9849): the ClientHelloInner, traced where the client
    # seals it (before the ClientHelloOuter that carries it) and where the server opens it
    # (after that ClientHelloOuter); never on the wire as a message of its own.
    ech_inner: bool = False


MessageCallback = Callable[[TracedMessage], None]


def check_message_callback(value: object) -> None:
    """Configuration: message_callback must be callable or None (raised at once)."""
    if value is not None and not callable(value):
        raise TypeError("message_callback must be callable (or None)")
