"""Handshake states and which message each accepts (RFC 8446 §A.1, §A.2)."""

from __future__ import annotations

import enum

from .constants import HandshakeType as HT


class State(enum.Enum):
    """Where one side of the handshake stands."""

    START = "start"
    # client
    WAIT_SERVER_HELLO = "wait ServerHello"
    WAIT_ENCRYPTED_EXTENSIONS = "wait EncryptedExtensions"
    WAIT_CERTIFICATE_OR_REQUEST = "wait Certificate or CertificateRequest"
    WAIT_CERTIFICATE = "wait Certificate"
    WAIT_CERTIFICATE_VERIFY = "wait CertificateVerify"
    WAIT_FINISHED = "wait Finished"
    # server
    WAIT_CLIENT_HELLO = "wait ClientHello"
    WAIT_CLIENT_CERTIFICATE = "wait client Certificate"
    WAIT_CLIENT_CERTIFICATE_VERIFY = "wait client CertificateVerify"
    WAIT_CLIENT_FINISHED = "wait client Finished"
    # both
    CONNECTED = "connected"
    CLOSED = "closed"


# Handshake messages each state accepts; any other is unexpected_message.
ACCEPTS: dict[State, frozenset[int]] = {
    State.START: frozenset(),
    State.WAIT_SERVER_HELLO: frozenset({HT.server_hello}),
    State.WAIT_ENCRYPTED_EXTENSIONS: frozenset({HT.encrypted_extensions}),
    State.WAIT_CERTIFICATE_OR_REQUEST: frozenset({HT.certificate, HT.certificate_request}),
    State.WAIT_CERTIFICATE: frozenset({HT.certificate}),
    State.WAIT_CERTIFICATE_VERIFY: frozenset({HT.certificate_verify}),
    State.WAIT_FINISHED: frozenset({HT.finished}),
    State.WAIT_CLIENT_HELLO: frozenset({HT.client_hello}),
    State.WAIT_CLIENT_CERTIFICATE: frozenset({HT.certificate}),
    State.WAIT_CLIENT_CERTIFICATE_VERIFY: frozenset({HT.certificate_verify}),
    State.WAIT_CLIENT_FINISHED: frozenset({HT.finished}),
    State.CONNECTED: frozenset(
        {HT.new_session_ticket, HT.key_update, HT.request_connection_id, HT.new_connection_id}
    ),
    State.CLOSED: frozenset(),
}

# The epoch each handshake message travels in (RFC 9147 §6.1); post-handshake
# messages use the current application epoch (3 or later).
MESSAGE_EPOCH: dict[int, int] = {
    HT.client_hello: 0,
    HT.server_hello: 0,
    HT.encrypted_extensions: 2,
    HT.certificate_request: 2,
    HT.certificate: 2,
    HT.certificate_verify: 2,
    HT.finished: 2,
    3: 0,  # hello_verify_request: only so a DTLS 1.2 server gets protocol_version
}
