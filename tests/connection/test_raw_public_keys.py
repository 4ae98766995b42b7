"""Raw public keys (RFC 7250) in DTLS 1.3: negotiation, pinning, alerts and resumption.

A side configured with ``raw_public_key=True`` presents its bare SubjectPublicKeyInfo to a
peer that offers RawPublicKey; the peer accepts it only when it is among its
``pinned_public_keys`` and still checks the CertificateVerify signature against it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

import dtls13.handshake.client_offer as client_offer
from dtls13.alerts import AlertDescription
from dtls13.config import ClientConfig, ServerConfig
from dtls13.events import HandshakeCompleted, NewSessionTicketReceived
from dtls13.handshake import extensions as ext
from dtls13.handshake import raw_keys, selection
from dtls13.handshake.authentication import raw_key_certificate_body
from dtls13.handshake.constants import ExtensionType
from dtls13.handshake.raw_keys import CertificateType, push_certificate_type, spki
from dtls13.handshake.tickets import Session
from tests.support.dtls_pair import Pair, make_pair, pki
from tests.support.pki import cached_key

SECRET = b"r" * 32
COMMON: dict[str, Any] = {"debug": True, "idle_release_after": None}


def _key(slot: int) -> Any:
    return cached_key("ec256", 40 + slot)


def _spki(slot: int) -> bytes:
    return spki(_key(slot).public_key())


SERVER, CLIENT, STRANGER = 0, 1, 2


def rpk_server(**more: Any) -> ServerConfig:
    """A server with only a raw key (no certificate)."""
    return ServerConfig(private_key=_key(SERVER), raw_public_key=True, **{**COMMON, **more})


def rpk_client(pinned: int = SERVER, **more: Any) -> ClientConfig:
    """A client that accepts only the server key in slot `pinned` (no CA, no server name)."""
    return ClientConfig(pinned_public_keys=[_key(pinned).public_key()], **{**COMMON, **more})


def mutual_server(pinned: int = CLIENT, **more: Any) -> ServerConfig:
    return rpk_server(
        client_auth="required", pinned_public_keys=[_key(pinned).public_key()], **more
    )


def mutual_client(**more: Any) -> ClientConfig:
    return rpk_client(private_key=_key(CLIENT), raw_public_key=True, **more)


def x509_server(**more: Any) -> ServerConfig:
    leaf = pki().leaf("ec256")
    return ServerConfig(
        certificate_chain=leaf.chain_pem, private_key=leaf.key_pem, **{**COMMON, **more}
    )


def x509_client(**more: Any) -> ClientConfig:
    return ClientConfig(server_name="localhost", cafile=pki().root_pem, **{**COMMON, **more})


def _pair(client: ClientConfig, server: ServerConfig, seed: int = 0) -> Pair:
    return make_pair(seed, cfgs=(client, server))


def _completed(pair: Pair, side: str) -> HandshakeCompleted | None:
    pair.drain()
    events = pair.client_events if side == "client" else pair.server_events
    return next((e for e in events if isinstance(e, HandshakeCompleted)), None)


def _failed(pair: Pair, sender: str) -> AlertDescription | None:
    """The alert `sender` ended the handshake with (checked on both sides)."""
    pair.handshake(max_time=10)
    receiver = "server" if sender == "client" else "client"
    sent, received = pair.terminated(sender), pair.terminated(receiver)
    assert sent is not None and not sent.by_peer, sent
    assert received is not None and received.by_peer and received.alert is sent.alert
    assert _completed(pair, sender) is None
    return sent.alert


# -- successful handshakes -----------------------------------------------------------------


def test_server_authenticates_with_a_pinned_raw_public_key() -> None:
    pair = _pair(rpk_client(), rpk_server())
    assert pair.handshake()
    done = _completed(pair, "client")
    assert done is not None and done.peer_public_key == _spki(SERVER)
    assert done.peer_certificates == () and not done.resumed
    assert pair.client.peer_public_key == _spki(SERVER)
    assert pair.client.handshake.peer_type is CertificateType.RawPublicKey
    assert pair.server.peer_public_key is None
    assert pair.exchange(b"ping", b"pong")
    pair.close()


def test_mutual_raw_public_keys() -> None:
    pair = _pair(mutual_client(), mutual_server())
    assert pair.handshake()
    assert pair.server.peer_public_key == _spki(CLIENT)
    assert pair.client.peer_public_key == _spki(SERVER)
    server_done = _completed(pair, "server")
    assert server_done is not None and server_done.peer_public_key == _spki(CLIENT)
    assert pair.server.peer_certificates == ()
    assert pair.exchange(b"up", b"down")
    pair.close()


def test_mutual_raw_keys_after_a_hello_retry_request() -> None:
    """The types are chosen from the second ClientHello, which repeats the offers."""
    pair = _pair(mutual_client(), mutual_server(require_cookie=True))
    assert pair.handshake()
    assert pair.server.statistics().hello_retry_requests_sent == 1
    assert pair.server.peer_public_key == _spki(CLIENT)
    assert pair.client.peer_public_key == _spki(SERVER)
    pair.close()


def test_server_with_certificate_and_raw_key_serves_both_kinds_of_client() -> None:
    leaf = pki().leaf("ec256")
    both = ServerConfig(
        certificate_chain=leaf.chain_pem,
        private_key=leaf.key_pem,
        raw_public_key=True,
        **COMMON,
    )
    pair = _pair(x509_client(), both)
    assert pair.handshake()
    assert pair.client.peer_certificates and pair.client.peer_public_key is None
    pair.close()
    pair = _pair(ClientConfig(pinned_public_keys=[leaf.key.public_key()], **COMMON), both, 1)
    assert pair.handshake()
    assert pair.client.peer_public_key == spki(leaf.key.public_key())
    assert pair.client.peer_certificates == ()
    pair.close()


def test_client_offering_both_falls_back_to_x509_when_the_server_has_no_raw_key() -> None:
    client = rpk_client(server_name="localhost", cafile=pki().root_pem)
    assert client.peer_types == (CertificateType.RawPublicKey, CertificateType.X509)
    pair = _pair(client, x509_server())
    assert pair.handshake()
    assert pair.client.peer_certificates and pair.client.peer_public_key is None
    assert pair.client.handshake.peer_type is CertificateType.X509
    pair.close()


def test_client_with_raw_key_sends_a_certificate_to_a_server_without_raw_keys() -> None:
    leaf = pki().leaf("ec256", cn="client")
    client = x509_client(
        certificate_chain=leaf.chain_pem, private_key=leaf.key_pem, raw_public_key=True
    )
    server = x509_server(client_auth="required", cafile=pki().root_pem)
    pair = _pair(client, server)
    assert pair.handshake()
    assert pair.server.peer_certificates and pair.server.peer_public_key is None
    pair.close()


# -- rejections ------------------------------------------------------------------------------


def test_client_rejects_an_unpinned_server_key_with_certificate_unknown() -> None:
    pair = _pair(rpk_client(pinned=STRANGER), rpk_server())
    assert _failed(pair, "client") is AlertDescription.certificate_unknown
    end = pair.terminated("client")
    assert end is not None and end.certificate_error == "raw public key not pinned"
    pair.close()


def test_server_rejects_an_unpinned_client_key_with_certificate_unknown() -> None:
    pair = _pair(mutual_client(), mutual_server(pinned=STRANGER))
    assert _failed(pair, "server") is AlertDescription.certificate_unknown
    pair.close()


def test_certificate_verify_is_checked_against_the_raw_key() -> None:
    """A server presenting a pinned key it does not hold fails on its signature."""
    server = rpk_server()
    # Claims the stranger's key, signs with its own.
    (raw_key,) = server.server_certificates.certificates
    object.__setattr__(raw_key, "body", raw_key_certificate_body(_spki(STRANGER)))
    pair = _pair(rpk_client(pinned=STRANGER), server)
    assert _failed(pair, "client") is AlertDescription.decrypt_error
    pair.close()


def test_client_accepting_only_raw_keys_refuses_a_server_without_one() -> None:
    """The server ignores the offer (no raw key): it would send X.509, never offered."""
    pair = _pair(rpk_client(), x509_server())
    assert _failed(pair, "client") is AlertDescription.unsupported_certificate
    pair.close()


def test_server_with_only_a_raw_key_refuses_a_client_without_the_extension() -> None:
    pair = _pair(x509_client(), rpk_server())
    assert _failed(pair, "server") is AlertDescription.unsupported_certificate
    pair.close()


def test_no_server_certificate_type_in_common_is_unsupported_certificate(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """RFC 7250 §4.2 outcome 2: the extension is there, no type in it is ours."""

    def only_x509(cfg: ClientConfig) -> list[ext.Extension]:
        body = bytes([1, CertificateType.X509])
        return [ext.Extension(ExtensionType.server_certificate_type, body)]

    monkeypatch.setattr(client_offer, "certificate_type_offers", only_x509)
    pair = _pair(x509_client(), rpk_server())
    assert _failed(pair, "server") is AlertDescription.unsupported_certificate
    pair.close()


def test_no_client_certificate_type_in_common_is_unsupported_certificate(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    original = client_offer.certificate_type_offers

    def client_offers_x509(cfg: ClientConfig) -> list[ext.Extension]:
        offers = [e for e in original(cfg) if e.type != ExtensionType.client_certificate_type]
        return [*offers, ext.Extension(ExtensionType.client_certificate_type, b"\x01\x00")]

    monkeypatch.setattr(client_offer, "certificate_type_offers", client_offers_x509)
    pair = _pair(mutual_client(), mutual_server())  # the server accepts raw keys only
    assert _failed(pair, "server") is AlertDescription.unsupported_certificate
    pair.close()


def test_x509_client_certificate_refused_where_only_raw_keys_are_accepted() -> None:
    leaf = pki().leaf("ec256", cn="client")
    client = rpk_client(certificate_chain=leaf.chain_pem, private_key=leaf.key_pem)
    pair = _pair(client, mutual_server())
    assert _failed(pair, "server") is AlertDescription.unsupported_certificate
    pair.close()


@pytest.mark.parametrize("which", ["server_certificate_type", "client_certificate_type"])
def test_unsolicited_certificate_type_in_encrypted_extensions(
    which: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RFC 8446 §4.2: a response to an extension the client did not send."""
    ext_type = ExtensionType[which]

    def unsolicited(cfg: Any, client_types: Any) -> tuple[Any, tuple[ext.Extension, ...]]:
        answer = ext.make_extension(ext_type, push_certificate_type, CertificateType.X509)
        return CertificateType.X509, (answer,)

    monkeypatch.setattr(raw_keys, "client_type_choice", unsolicited)
    pair = _pair(x509_client(), x509_server())
    assert _failed(pair, "client") is AlertDescription.unsupported_extension
    pair.close()


def test_server_choosing_a_type_the_client_did_not_offer_is_illegal_parameter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    original = selection.choose_server_credential

    def x509_anyway(*args: Any) -> Any:
        cert, scheme, _ = original(*args)
        answer = ext.make_extension(
            ExtensionType.server_certificate_type, push_certificate_type, CertificateType.X509
        )
        return cert, scheme, answer

    monkeypatch.setattr(selection, "choose_server_credential", x509_anyway)
    pair = _pair(rpk_client(), rpk_server())
    assert _failed(pair, "client") is AlertDescription.illegal_parameter
    pair.close()


# -- resumption --------------------------------------------------------------------------------


def _session(pair: Pair) -> Session:
    assert pair.handshake()

    def got_ticket() -> bool:
        pair.drain()
        return any(isinstance(e, NewSessionTicketReceived) for e in pair.client_events)

    assert pair.net.run(got_ticket)
    event = next(e for e in pair.client_events if isinstance(e, NewSessionTicketReceived))
    pair.close()
    return event.session


def test_resumption_keeps_both_raw_key_identities() -> None:
    client, server = mutual_client(), mutual_server(ticket_secret=SECRET)
    session = _session(_pair(client, server))
    assert session.peer_public_key == _spki(SERVER) and session.peer_certificates == ()
    pair = _pair(dataclasses.replace(client, session=session), server, 1)
    assert pair.handshake()
    for side in ("client", "server"):
        done = _completed(pair, side)
        assert done is not None and done.resumed
    assert pair.server.peer_public_key == _spki(CLIENT)
    assert pair.client.peer_public_key == _spki(SERVER)
    pair.close()


def test_raw_key_ticket_does_not_resume_where_the_key_is_not_pinned() -> None:
    client = mutual_client()
    session = _session(_pair(client, mutual_server(ticket_secret=SECRET)))
    # The same ticket secret, a configuration that pins another client key.
    other = mutual_server(pinned=STRANGER, ticket_secret=SECRET)
    pair = _pair(dataclasses.replace(client, session=session), other, 2)
    pair.handshake(max_time=10)
    assert pair.server.rare_stat("psk_refused_identity") == 1
    assert pair.terminated("server") is not None  # full handshake: the key is refused
    assert _completed(pair, "server") is None
    pair.close()


def test_raw_key_ticket_does_not_resume_into_a_server_requiring_certificates() -> None:
    """A ticket whose client identity is a raw key, offered (by a client that kept the
    session anyway) to a server sharing the ticket secret that authenticates clients by
    X.509 only: refused, and the client authenticates by its certificate."""
    client = mutual_client(server_name="localhost")
    session = _session(_pair(client, mutual_server(ticket_secret=SECRET)))
    leaf = pki().leaf("ec256", cn="client")
    x509_only = x509_server(client_auth="required", cafile=pki().root_pem, ticket_secret=SECRET)
    lenient = x509_client(certificate_chain=leaf.chain_pem, private_key=leaf.key_pem)
    forced = dataclasses.replace(session, peer_public_key=None)
    pair = _pair(dataclasses.replace(lenient, session=forced), x509_only, 4)
    pair.client.connect(("10.0.0.2", 4433), pair.net.now)
    hello = pair.client.handshake.client_hello
    assert hello is not None and hello.extension(ExtensionType.pre_shared_key) is not None
    assert pair.net.run(pair.completed)
    done = _completed(pair, "server")
    assert done is not None and not done.resumed
    assert pair.server.rare_stat("psk_refused_identity") == 1
    assert pair.server.peer_certificates and pair.server.peer_public_key is None
    pair.close()


def test_client_does_not_offer_a_session_from_a_server_key_no_longer_pinned() -> None:
    server = rpk_server(ticket_secret=SECRET)
    session = _session(_pair(rpk_client(), server))
    client = dataclasses.replace(rpk_client(pinned=STRANGER), session=session)
    pair = _pair(client, server, 5)
    pair.client.connect(("10.0.0.2", 4433), pair.net.now)
    hello = pair.client.handshake.client_hello
    assert hello is not None and hello.extension(ExtensionType.pre_shared_key) is None
    pair.close()
    pair = _pair(dataclasses.replace(rpk_client(), session=session), server, 6)
    pair.client.connect(("10.0.0.2", 4433), pair.net.now)
    hello = pair.client.handshake.client_hello
    assert hello is not None and hello.extension(ExtensionType.pre_shared_key) is not None
    pair.close()
