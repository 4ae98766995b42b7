"""Details of single extensions: the server_name acknowledgement (RFC 6066 §3) and
certificate_authorities (RFC 8446 §4.2.4), whose malformed forms must end the handshake."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest

from dtls13._fast import DecodeError
from dtls13.alerts import AlertDescription
from dtls13.connection import Connection
from dtls13.events import HandshakeCompleted, NewSessionTicketReceived
from dtls13.handshake import extensions as ext
from dtls13.handshake import messages as msgs
from dtls13.handshake.constants import ExtensionType
from tests.support.dtls_pair import Pair, configs, make_pair, pki

A = AlertDescription
CA = ExtensionType.certificate_authorities


def _rewrite(conn: Connection, kind: type, change: Callable[[Any], Any]) -> list[Any]:
    """Make `conn` send its messages of `kind` changed by `change`; returns what it sent."""
    original = conn.handshake._send
    sent: list[Any] = []

    def send(msg: Any, epoch: int | None, *, transcript: bool = True) -> None:
        if isinstance(msg, kind):
            msg = change(msg)
            sent.append(msg)
        original(msg, epoch, transcript=transcript)

    conn.handshake._send = send  # type: ignore[method-assign]
    return sent


def _with_extension(msg: Any, extension: ext.Extension) -> Any:
    """`msg` with `extension` first (pre_shared_key, if any, stays last)."""
    return type(msg)(
        **{
            **{name: getattr(msg, name) for name in msg.__dataclass_fields__},
            "extensions": (extension, *msg.extensions),
        }
    )


def _fails_with(pair: Pair, detector: str, alert: AlertDescription) -> None:
    other = "server" if detector == "client" else "client"
    pair.net.run(
        lambda: pair.terminated(detector) is not None and pair.terminated(other) is not None,
        max_time=pair.net.now + 10,
    )
    mine = pair.terminated(detector)
    assert mine is not None and mine.alert is alert and not mine.by_peer, mine
    pair.close()


def _client_auth_pair() -> Pair:
    leaf = pki().leaf("ec256", cn="client")
    return make_pair(
        client={"certificate_chain": leaf.chain_pem, "private_key": leaf.key_pem},
        server={"client_auth": "required", "cafile": pki().root_pem},
    )


# -- codecs -------------------------------------------------------------------------------


def _decode(data: bytes, pull: Any) -> Any:
    return ext.decode(data, pull)


@pytest.mark.parametrize(
    "data",
    [
        b"\x00\x00",  # authorities<3..2^16-1>: at least one name
        b"\x00\x02\x00\x00",  # DistinguishedName<1..2^16-1>: not empty
        b"\x00\x03\x00\x01\x30\x00",  # trailing data after the list
        b"\x00\x04\x00\x03\x30",  # a name reaching past the list
    ],
)
def test_certificate_authorities_rejects_malformed(data: bytes) -> None:
    with pytest.raises(DecodeError):
        _decode(data, ext.pull_certificate_authorities)


def test_certificate_authorities_round_trip() -> None:
    names = (b"\x30\x00", b"\x30\x03\x31\x01\x00")
    data = ext.encode(ext.push_certificate_authorities, names)
    assert _decode(data, ext.pull_certificate_authorities) == names


def test_server_name_acknowledgement_must_be_empty() -> None:
    assert _decode(b"", ext.pull_server_name_ack) is None
    with pytest.raises(DecodeError):
        _decode(b"\x00", ext.pull_server_name_ack)


# -- server_name acknowledgement ---------------------------------------------------------------


def test_server_acknowledges_the_server_name_it_received() -> None:
    pair = make_pair()
    sent = _rewrite(pair.server, msgs.EncryptedExtensions, lambda m: m)
    assert pair.handshake()
    assert sent[0].extension(ExtensionType.server_name) == b""
    pair.close()


def test_server_does_not_acknowledge_a_server_name_never_sent() -> None:
    ccfg, scfg = configs()
    # An IP address is not a host_name (RFC 6066 §3): the client sends no server_name.
    pair = make_pair(cfgs=(dataclasses.replace(ccfg, server_name="127.0.0.1", verify=False), scfg))
    sent = _rewrite(pair.server, msgs.EncryptedExtensions, lambda m: m)
    assert pair.handshake()
    assert sent[0].extension(ExtensionType.server_name) is None
    pair.close()


def test_server_does_not_acknowledge_the_server_name_when_resuming() -> None:
    cfgs = configs()
    first = make_pair(cfgs=cfgs)
    assert first.handshake()

    def ticket_seen() -> bool:
        first.drain()
        return any(isinstance(e, NewSessionTicketReceived) for e in first.client_events)

    assert first.net.run(ticket_seen)
    ticket = next(e for e in first.client_events if isinstance(e, NewSessionTicketReceived))
    first.close()
    pair = make_pair(1, cfgs=(dataclasses.replace(cfgs[0], session=ticket.session), cfgs[1]))
    sent = _rewrite(pair.server, msgs.EncryptedExtensions, lambda m: m)
    assert pair.handshake()
    done = next(e for e in pair.client_events if isinstance(e, HandshakeCompleted))
    assert done.resumed
    # RFC 6066 §3: "When resuming a session, the server MUST NOT include a server_name
    # extension in the server hello."
    assert sent[0].extension(ExtensionType.server_name) is None
    pair.close()


def test_client_rejects_a_server_name_acknowledgement_with_data() -> None:
    pair = make_pair()
    _rewrite(
        pair.server,
        msgs.EncryptedExtensions,
        lambda m: msgs.EncryptedExtensions(
            (
                *(e for e in m.extensions if e.type != ExtensionType.server_name),
                ext.Extension(ExtensionType.server_name, b"\x00"),
            )
        ),
    )
    assert not pair.handshake(max_time=10)
    _fails_with(pair, "client", A.decode_error)


# -- certificate_authorities ---------------------------------------------------------------------


@pytest.mark.parametrize("data", [b"\x00\x00", b"\x00\x03\x00\x01\x30\x00"])
def test_client_rejects_malformed_certificate_authorities(data: bytes) -> None:
    pair = _client_auth_pair()
    _rewrite(
        pair.server, msgs.CertificateRequest, lambda m: _with_extension(m, ext.Extension(CA, data))
    )
    assert not pair.handshake(max_time=10)
    _fails_with(pair, "client", A.decode_error)


def test_client_accepts_well_formed_certificate_authorities() -> None:
    pair = _client_auth_pair()
    data = ext.encode(ext.push_certificate_authorities, [b"\x30\x00"])
    _rewrite(
        pair.server, msgs.CertificateRequest, lambda m: _with_extension(m, ext.Extension(CA, data))
    )
    assert pair.handshake()
    pair.close()


def test_server_drops_a_first_client_hello_with_empty_certificate_authorities() -> None:
    # Unauthenticated and malformed: dropped as damaged (never fatal), as any first hello
    # that does not decode.
    pair = make_pair()
    _rewrite(pair.client, msgs.ClientHello, lambda m: _with_extension(m, ext.Extension(CA, b"")))
    assert not pair.handshake(max_time=5)
    assert pair.server.statistics().dropped_damaged_hello >= 1
    assert not any(isinstance(e, HandshakeCompleted) for e in pair.server_events)
    pair.close()
