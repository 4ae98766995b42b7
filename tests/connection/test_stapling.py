"""OCSP stapling and signed certificate timestamps end to end (RFC 8446 §4.4.2.1): asked for
by the client, sent by the server only then, reported to the application, resumed."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from dtls13.alerts import AlertDescription
from dtls13.events import HandshakeCompleted, NewSessionTicketReceived
from dtls13.handshake import stapling
from dtls13.handshake.constants import HandshakeType
from dtls13.handshake.selection import ServerCertificate
from tests.support.dtls_pair import Pair, configs, make_pair, pki

RESPONSE = b"\x30\x82\x01\x00" + bytes(range(200))  # not parsed by the library
SCTS = (b"\x00" + bytes(range(47)), b"\x00" + bytes(range(20)))
ASK = {"request_ocsp": True, "request_signed_certificate_timestamps": True}
STAPLE = {"ocsp_response": RESPONSE, "signed_certificate_timestamps": SCTS}


def _completed(pair: Pair, side: str = "client") -> HandshakeCompleted:
    events = pair.client_events if side == "client" else pair.server_events
    return next(e for e in events if isinstance(e, HandshakeCompleted))


def _pair(seed: int, client: dict[str, Any], server: dict[str, Any], **kw: Any) -> Pair:
    return make_pair(seed, client=client, server=server, **kw)


def _server_certificate_extensions(pair: Pair) -> list[Any]:
    """The extensions of each entry of the Certificate messages the server sent."""
    from dtls13.handshake import messages as msgs

    sent = []
    original = type(pair.server._hs)._send_encoded

    def spy(self: Any, msg_type: int, body: bytes, *args: Any, **kw: Any) -> None:
        if msg_type == HandshakeType.certificate:
            cert = msgs.pull_message(msg_type, body)
            sent.append([e.extensions for e in cert.certificate_list])
        original(self, msg_type, body, *args, **kw)

    pair.server._hs._send_encoded = spy.__get__(pair.server._hs)  # type: ignore[method-assign]
    return sent


def test_a_client_that_asks_gets_the_response_and_timestamps() -> None:
    pair = _pair(1, ASK, STAPLE)
    assert pair.handshake()
    done = _completed(pair)
    assert done.peer_ocsp_response == RESPONSE
    assert done.peer_signed_certificate_timestamps == SCTS
    assert pair.client.peer_ocsp_response == RESPONSE
    assert pair.client.peer_signed_certificate_timestamps == SCTS
    server_done = _completed(pair, "server")
    assert server_done.peer_ocsp_response is None
    pair.close()


@pytest.mark.parametrize(
    "client", [{}, {"request_ocsp": True}, {"request_signed_certificate_timestamps": True}]
)
def test_the_server_sends_only_what_was_asked_for(client: dict[str, Any]) -> None:
    pair = _pair(2, client, {**STAPLE, "certificate_compression": ()})  # readable on the wire
    sent = _server_certificate_extensions(pair)
    assert pair.handshake()
    done = _completed(pair)
    want_ocsp = client.get("request_ocsp", False)
    want_sct = client.get("request_signed_certificate_timestamps", False)
    assert done.peer_ocsp_response == (RESPONSE if want_ocsp else None)
    assert done.peer_signed_certificate_timestamps == (SCTS if want_sct else ())
    (entries,) = sent
    assert len(entries[0]) == want_ocsp + want_sct
    assert not any(entries[1:])
    pair.close()


def test_a_server_with_nothing_to_staple_sends_nothing_and_the_handshake_goes_on() -> None:
    pair = _pair(3, ASK, {})
    assert pair.handshake()
    done = _completed(pair)
    assert done.peer_ocsp_response is None and done.peer_signed_certificate_timestamps == ()
    pair.close()


def test_an_unsolicited_staple_is_unsupported_extension(monkeypatch: Any) -> None:
    # A server that staples although the client did not ask.
    monkeypatch.setattr(stapling, "requested_untrusted", lambda ch: (True, True))
    pair = _pair(4, {}, STAPLE)
    pair.handshake(max_time=30)
    ended = pair.terminated("client")
    assert ended is not None and ended.alert is AlertDescription.unsupported_extension
    assert not ended.by_peer
    pair.close()


def test_an_empty_ocsp_response_from_the_server_is_decode_error(monkeypatch: Any) -> None:
    monkeypatch.setattr(stapling, "encode_certificate_status", lambda r: b"\x01\x00\x00\x00")
    pair = _pair(5, ASK, STAPLE)
    pair.handshake(max_time=30)
    ended = pair.terminated("client")
    assert ended is not None and ended.alert is AlertDescription.decode_error
    pair.close()


def test_a_resumption_reports_what_the_original_handshake_stapled() -> None:
    ccfg, scfg = configs(client=ASK, server=STAPLE)
    first = make_pair(6, cfgs=(ccfg, scfg))
    assert first.handshake()
    first.net.run(lambda: False, max_time=first.net.now + 1)
    first.drain()
    session = next(
        e.session for e in first.client_events if isinstance(e, NewSessionTicketReceived)
    )
    assert session.peer_ocsp_response == RESPONSE
    assert session.peer_signed_certificate_timestamps == SCTS
    first.close()
    again = make_pair(7, cfgs=(dataclasses.replace(ccfg, session=session), scfg))
    assert again.handshake()
    done = _completed(again)
    assert done.resumed
    assert done.peer_ocsp_response == RESPONSE
    assert done.peer_signed_certificate_timestamps == SCTS
    again.close()


def test_the_client_callback_sees_the_response_and_the_chain() -> None:
    seen: list[Any] = []

    def check(response: bytes | None, chain: tuple[Any, ...]) -> bool:
        seen.append((response, chain))
        return True

    pair = _pair(8, {**ASK, "ocsp_callback": check}, STAPLE)
    assert pair.handshake()
    ((response, chain),) = seen
    assert response == RESPONSE and chain == _completed(pair).peer_certificates
    pair.close()


@pytest.mark.parametrize("server", [STAPLE, {}])
def test_a_client_callback_saying_no_is_bad_certificate_status_response(
    server: dict[str, Any],
) -> None:
    seen: list[bytes | None] = []

    def refuse(response: bytes | None, chain: tuple[Any, ...]) -> bool:
        seen.append(response)
        return False

    pair = _pair(9, {"request_ocsp": True, "ocsp_callback": refuse}, server)
    pair.handshake(max_time=30)
    ended = pair.terminated("client")
    assert ended is not None and ended.alert is AlertDescription.bad_certificate_status_response
    # It runs when nothing was stapled too: the absence is for it to judge.
    assert seen == [RESPONSE if server else None]
    peer = pair.terminated("server")
    assert peer is not None and peer.alert is AlertDescription.bad_certificate_status_response
    pair.close()


def test_the_client_callback_is_not_called_unless_ocsp_was_asked_for() -> None:
    def boom(response: bytes | None, chain: tuple[Any, ...]) -> bool:
        raise AssertionError("called")

    pair = _pair(10, {"ocsp_callback": boom}, STAPLE)
    assert pair.handshake()
    pair.close()


@pytest.mark.parametrize(("answer", "want"), [(b"fresh response", b"fresh response"), (None, None)])
def test_the_server_callback_chooses_what_is_stapled(answer: bytes | None, want: Any) -> None:
    asked: list[ServerCertificate] = []

    def choose(certificate: ServerCertificate) -> bytes | None:
        asked.append(certificate)
        return answer

    pair = _pair(11, ASK, {**STAPLE, "ocsp_callback": choose})
    assert pair.handshake()
    assert _completed(pair).peer_ocsp_response == want
    assert _completed(pair).peer_signed_certificate_timestamps == SCTS
    assert asked == [pair.server.config.server_certificates.certificates[0]]
    pair.close()


def test_the_server_callback_is_not_called_for_a_client_that_did_not_ask() -> None:
    def boom(certificate: ServerCertificate) -> bytes | None:
        raise AssertionError("called")

    pair = _pair(12, {}, {**STAPLE, "ocsp_callback": boom})
    assert pair.handshake()
    pair.close()


@pytest.mark.parametrize("answer", ["raise", "not bytes"])
def test_a_failing_server_callback_is_internal_error_and_counted(answer: str) -> None:
    def fail(certificate: ServerCertificate) -> Any:
        if answer == "raise":
            raise RuntimeError("no OCSP today")
        return answer

    _, scfg = configs(server={**STAPLE, "ocsp_callback": fail})
    pair = _pair(13, ASK, {}, cfgs=(configs(client=ASK)[0], dataclasses.replace(scfg, debug=False)))
    pair.handshake(max_time=30)
    ended = pair.terminated("server")
    assert ended is not None and ended.alert is AlertDescription.internal_error
    assert pair.server.statistics().server_callback_errors == 1
    pair.close()


def test_each_chain_staples_its_own_response() -> None:
    p = pki()
    other = p.leaf("ec256", dns_names=("other.example",), cn="other")
    chains = [
        ServerCertificate(other.chain_pem, other.key_pem, ocsp_response=b"other's response"),
    ]
    for name, want in (("localhost", RESPONSE), ("other.example", b"other's response")):
        ccfg, scfg = configs(
            client={**ASK, "verify": False}, server={**STAPLE, "certificates": chains}
        )
        pair = make_pair(14, cfgs=(dataclasses.replace(ccfg, server_name=name), scfg))
        assert pair.handshake()
        assert _completed(pair).peer_ocsp_response == want
        pair.close()


def test_a_compressed_certificate_carries_the_staple_only_to_a_client_that_asked() -> None:
    # One server, one chain, two bodies (with and without the staple): the compression
    # cache must tell them apart.
    zlib = {"certificate_compression": ["zlib"]}
    asking, scfg = configs(client={**ASK, **zlib}, server={**STAPLE, **zlib})
    plain = dataclasses.replace(asking, request_ocsp=False)
    plain = dataclasses.replace(plain, request_signed_certificate_timestamps=False)
    for seed, ccfg in enumerate((asking, plain, asking, plain)):
        pair = make_pair(15 + seed, cfgs=(ccfg, scfg))
        assert pair.handshake()
        done = _completed(pair)
        assert done.certificate_compression_received == "zlib"
        assert done.peer_ocsp_response == (RESPONSE if ccfg.request_ocsp else None)
        pair.close()


def test_a_client_certificate_with_an_extension_is_unsupported_extension() -> None:
    from cryptography.hazmat.primitives.serialization import Encoding

    from dtls13.handshake import messages as msgs
    from dtls13.handshake.extensions import Extension

    leaf = pki().leaf("ec256", dns_names=("client",), cn="client")
    client = {"certificate_chain": leaf.chain_pem, "private_key": leaf.key_pem}
    server = {"client_auth": "required", "cafile": pki().root_pem}
    ccfg, scfg = configs(client=client, server=server)
    # The client's credential sends its encoded Certificate body as is: give its leaf entry
    # an extension (status_request), which no CertificateRequest of ours asks for.
    credential = ccfg.credentials[0]
    entries = [msgs.CertificateEntry(c.public_bytes(Encoding.DER)) for c in credential.chain]
    entries[0] = msgs.CertificateEntry(entries[0].cert_data, (Extension(5, b"\x01"),))
    body = msgs.push_message(msgs.Certificate(b"", tuple(entries)))[1]
    object.__setattr__(credential, "body", body)
    pair = make_pair(16, cfgs=(ccfg, scfg))
    pair.handshake(max_time=30)
    ended = pair.terminated("server")
    assert ended is not None and ended.alert is AlertDescription.unsupported_extension
    pair.close()


def test_a_staple_is_held_within_max_handshake_message() -> None:
    # The staple is part of the Certificate message: a response that would take it over
    # the client's cap is refused with the message, never buffered whole.
    server = {"ocsp_response": b"\x30" * 60000, "certificate_compression": ()}
    pair = _pair(17, {"request_ocsp": True, "max_handshake_message": 16384}, server)
    pair.handshake(max_time=30)
    ended = pair.terminated("client")
    assert ended is not None and not ended.by_peer
    assert ended.alert is AlertDescription.illegal_parameter and "exceeds" in ended.reason
    assert pair.client.statistics().memory_high_water < 2 * 16384
    pair.close()


def test_a_client_callback_that_raises_ends_the_handshake_with_internal_error() -> None:
    def broken(response: bytes | None, chain: tuple[Any, ...]) -> bool:
        raise RuntimeError("the application's bug")

    ccfg, scfg = configs(client={"request_ocsp": True, "ocsp_callback": broken}, server=STAPLE)
    pair = make_pair(18, cfgs=(dataclasses.replace(ccfg, debug=False), scfg))
    pair.handshake(max_time=30)
    ended = pair.terminated("client")
    assert ended is not None and ended.alert is AlertDescription.internal_error
    assert not ended.by_peer
    pair.close()
