"""message_callback: every handshake message, ACK and alert sent or read, once each."""

from __future__ import annotations

import pytest

from dtls13.alerts import AlertDescription
from dtls13.config import ClientConfig
from dtls13.handshake.constants import HandshakeType as HT
from dtls13.record import ContentType
from dtls13.record.message_trace import TracedMessage
from tests.support.dtls_pair import SERVER_ADDR, make_pair
from tests.support.netsim import Impairments


def _line(m: TracedMessage) -> str:
    what = "write" if m.sent else "read"
    if m.content_type == ContentType.handshake:
        return f"{what} hs {m.message_type}"
    if m.content_type == ContentType.alert:
        return f"{what} alert {m.data[0]} {m.data[1]}"
    return f"{what} ack"


def test_a_handshake_and_its_close_are_traced_in_order() -> None:
    client_log: list[TracedMessage] = []
    server_log: list[TracedMessage] = []
    pair = make_pair(
        # No certificate compression: a plain Certificate message.
        client={"message_callback": client_log.append, "certificate_compression": ()},
        server={"message_callback": server_log.append, "session_tickets": 1},
    )
    assert pair.handshake()
    pair.net.run(lambda: False, max_time=pair.net.now + 5)  # the ACKs settle
    pair.client.close()
    pair.net.run(lambda: pair.terminated("server") is not None, max_time=pair.net.now + 5)
    assert [_line(m) for m in client_log] == [
        f"write hs {HT.client_hello}",
        f"read hs {HT.server_hello}",
        f"read hs {HT.encrypted_extensions}",
        f"read hs {HT.certificate}",
        f"read hs {HT.certificate_verify}",
        f"read hs {HT.finished}",
        f"write hs {HT.finished}",
        "read ack",
        f"read hs {HT.new_session_ticket}",
        "write ack",
        "write alert 1 0",
    ]
    assert [_line(m) for m in server_log] == [
        f"read hs {HT.client_hello}",
        f"write hs {HT.server_hello}",
        f"write hs {HT.encrypted_extensions}",
        f"write hs {HT.certificate}",
        f"write hs {HT.certificate_verify}",
        f"write hs {HT.finished}",
        f"read hs {HT.finished}",
        "write ack",  # ahead of the ticket in their datagram
        f"write hs {HT.new_session_ticket}",
        "read ack",
        "read alert 1 0",
    ]
    # The message itself, without the DTLS handshake header.
    finished = [m for m in client_log if m.message_type == HT.finished]
    assert [len(m.data) for m in finished] == [32, 32]  # SHA-256 verify_data
    pair.server.close()
    pair.close()


def test_a_retransmitted_or_repeated_message_is_traced_once() -> None:
    client_log: list[TracedMessage] = []
    server_log: list[TracedMessage] = []
    pair = make_pair(
        seed=3,
        impairments=Impairments(loss=0.3, duplicate=0.3),
        client={"message_callback": client_log.append},
        server={"message_callback": server_log.append, "session_tickets": 0},
    )
    assert pair.handshake()
    assert pair.client.statistics().retransmissions + pair.server.statistics().retransmissions
    for log in (client_log, server_log):
        handshake = [(m.sent, m.message_type) for m in log if m.message_type is not None]
        assert len(handshake) == len(set(handshake)) == 7
    pair.close()


def test_a_fatal_alert_we_send_is_traced() -> None:
    log: list[TracedMessage] = []
    pair = make_pair(client={"message_callback": log.append})
    pair.client.connect(SERVER_ADDR, pair.net.now)
    pair.client.close(AlertDescription.internal_error)
    assert [_line(m) for m in log] == [f"write hs {HT.client_hello}", "write alert 2 80"]
    pair.close()


def test_message_callback_must_be_callable() -> None:
    with pytest.raises(TypeError, match="message_callback"):
        ClientConfig(server_name="localhost", message_callback=3)  # type: ignore[arg-type]
