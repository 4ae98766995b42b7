"""Handshake states, as data: one enum per role and the table of what each state accepts.

RFC 8446 §A.1 (client) and §A.2 (server), with HelloRetryRequest as states of its own.
The role modules (handshake/client.py, handshake/server.py) hold the transition tables:
(state, handshake message type) -> a handler and the states it may lead to. A message type
not in the table for the current state is unexpected_message.

``python -m dtls13.handshake.diagram`` prints the state diagram (Mermaid in Markdown)
drawn from the tables; docs/handshake-states.md is its committed output.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .constants import HandshakeType as HT


class _State(enum.Enum):
    # Members are singletons compared by identity: hashing by identity spares Enum's
    # Python-level __hash__ on every table and set lookup of a state.
    __hash__ = object.__hash__


class ClientState(_State):
    """Where the client side of the handshake stands."""

    START = "start"
    WAIT_SERVER_HELLO = "wait ServerHello"
    WAIT_SERVER_HELLO_AFTER_RETRY = "wait ServerHello after HelloRetryRequest"
    WAIT_ENCRYPTED_EXTENSIONS = "wait EncryptedExtensions"
    WAIT_CERTIFICATE_OR_REQUEST = "wait Certificate or CertificateRequest"
    WAIT_CERTIFICATE = "wait Certificate"
    WAIT_CERTIFICATE_VERIFY = "wait CertificateVerify"
    WAIT_FINISHED = "wait Finished"
    CONNECTED = "connected"
    CLOSED = "closed"


class ServerState(_State):
    """Where the server side of the handshake stands."""

    WAIT_CLIENT_HELLO = "wait ClientHello"
    WAIT_CLIENT_HELLO_AFTER_RETRY = "wait ClientHello after HelloRetryRequest"
    WAIT_CLIENT_CERTIFICATE = "wait client Certificate"
    WAIT_CLIENT_CERTIFICATE_VERIFY = "wait client CertificateVerify"
    WAIT_CLIENT_FINISHED = "wait client Finished"
    CONNECTED = "connected"
    CLOSED = "closed"


State = ClientState | ServerState

# States in which unprotected (epoch 0) handshake messages are still expected.
HELLO_STATES: frozenset[State] = frozenset(
    {
        ClientState.START,
        ClientState.WAIT_SERVER_HELLO,
        ClientState.WAIT_SERVER_HELLO_AFTER_RETRY,
        ServerState.WAIT_CLIENT_HELLO,
        ServerState.WAIT_CLIENT_HELLO_AFTER_RETRY,
    }
)

HELLO_VERIFY_REQUEST = 3  # DTLS 1.2 only (RFC 6347 §4.2.1); deprecated by RFC 9147 §5.2

# Post-handshake messages the connection handles itself (KeyUpdate, CIDs): the handshake
# context checks the state and decodes them, then hands them over.
POST_HANDSHAKE_FOR_CONNECTION = frozenset(
    {HT.key_update, HT.request_connection_id, HT.new_connection_id}
)


@dataclass(frozen=True, slots=True)
class Transition:
    """What a message does in a state: the handler's name and the states it may lead to
    (the state it leaves included when it may stay)."""

    handler: str
    targets: tuple[State, ...]
    parse: bool = True  # False: the handler refuses the message before decoding it


# Transitions not driven by a peer message: (from, label) -> to.
LOCAL_TRANSITIONS: dict[tuple[State, str], State] = {
    (ClientState.START, "connect()"): ClientState.WAIT_SERVER_HELLO,
}

# The epoch each handshake message travels in (RFC 9147 §6.1); post-handshake
# messages use the current application epoch (3 or later).
MESSAGE_EPOCH: dict[int, int] = {
    HT.client_hello: 0,
    HT.server_hello: 0,
    HT.encrypted_extensions: 2,
    HT.certificate_request: 2,
    HT.certificate: 2,
    HT.compressed_certificate: 2,
    HT.certificate_verify: 2,
    HT.finished: 2,
    HELLO_VERIFY_REQUEST: 0,  # only so a DTLS 1.2 server gets protocol_version
}


def type_name(msg_type: int) -> str:
    """The handshake type's name, or its number."""
    try:
        return HT(msg_type).name
    except ValueError:
        return f"handshake type {msg_type}"
