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


def _ech_lines(log: list[TracedMessage]) -> list[str]:
    return ["clienthelloinner" if m.ech_inner else _line(m) for m in log]


@pytest.mark.parametrize("retry", [False, True], ids=["direct", "after_retry"])
def test_encrypted_client_hello_traces_the_inner_hello_where_it_is_sealed_and_opened(
    retry: bool,
) -> None:
    """RFC 9849: the client traces ClientHelloInner (sent) just before the ClientHelloOuter
    that carries it, the server (read) just after; the data is the inner hello's body."""
    from dtls13 import ech_config_list, generate_ech_key
    from dtls13.config import ServerConfig
    from tests.support.dtls_pair import pki

    leaf = pki().leaf("ec256", dns_names=("secret.example", "public.example"))
    keys = [generate_ech_key(7, "public.example")]
    client_log: list[TracedMessage] = []
    server_log: list[TracedMessage] = []
    scfg = ServerConfig(
        certificate_chain=leaf.chain_pem,
        private_key=leaf.key_pem,
        ech_keys=keys,
        session_tickets=0,
        message_callback=server_log.append,
        groups=["secp256r1"] if retry else ["x25519", "secp256r1"],
        debug=True,
    )
    ccfg = ClientConfig(
        server_name="secret.example",
        cafile=pki().root_pem,
        ech_config_list=ech_config_list(keys),
        message_callback=client_log.append,
        debug=True,
    )
    pair = make_pair(cfgs=(ccfg, scfg))
    assert pair.handshake()
    hello = [f"write hs {HT.client_hello}", f"read hs {HT.server_hello}"]
    once = ["clienthelloinner", *hello]
    assert _ech_lines(client_log)[: 6 if retry else 3] == (once * 2 if retry else once)
    read = [f"read hs {HT.client_hello}", "clienthelloinner", f"write hs {HT.server_hello}"]
    assert _ech_lines(server_log)[: 6 if retry else 3] == (read * 2 if retry else read)
    inner_sent = [m for m in client_log if m.ech_inner]
    inner_read = [m for m in server_log if m.ech_inner]
    assert all(m.sent for m in inner_sent) and not any(m.sent for m in inner_read)
    assert [m.data for m in inner_sent] == [m.data for m in inner_read]
    assert all(m.message_type == HT.client_hello for m in inner_sent + inner_read)
    assert b"secret.example" in inner_sent[0].data
    outer = next(m for m in client_log if m.message_type == HT.client_hello and not m.ech_inner)
    assert b"secret.example" not in outer.data
    pair.close()


def test_ech_grease_sends_no_inner_hello_to_trace() -> None:
    client_log: list[TracedMessage] = []
    server_log: list[TracedMessage] = []
    pair = make_pair(
        client={"message_callback": client_log.append, "ech_grease": True},
        server={"message_callback": server_log.append},
    )
    assert pair.handshake()
    assert not any(m.ech_inner for m in client_log + server_log)
    pair.close()


def test_a_server_that_cannot_open_the_inner_hello_traces_none() -> None:
    """Rejected ECH (the server has no key for the config): the client sealed an inner
    hello, and traced it; the server answered the outer one and traces no inner."""
    from dtls13 import ech_config_list, generate_ech_key

    client_log: list[TracedMessage] = []
    server_log: list[TracedMessage] = []
    pair = make_pair(
        client={
            "message_callback": client_log.append,
            "ech_config_list": ech_config_list([generate_ech_key(7, "localhost")]),
        },
        server={"message_callback": server_log.append},
    )
    assert not pair.handshake(max_time=30)  # ech_required, by design
    assert [m.sent for m in client_log if m.ech_inner] == [True]
    assert not any(m.ech_inner for m in server_log)
    pair.close()
