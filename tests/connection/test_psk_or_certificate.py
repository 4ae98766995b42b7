"""A server holding both certificates and external PSKs: which one a handshake uses
(ServerConfig.psks_before_certificates)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from dtls13 import ImportedPsk
from dtls13.alerts import AlertDescription as A
from dtls13.events import HandshakeCompleted, NewSessionTicketReceived
from tests.support.dtls_pair import SERVER_ADDR, configs, make_pair

PSK = (b"sensor-17", bytes(range(32)))
IMPORTED = ImportedPsk(b"fleet", bytes(range(32, 64)))


def _server_done(psk_first: bool, client: dict[str, Any], seed: int = 0) -> HandshakeCompleted:
    """The server's HandshakeCompleted of one handshake: server with a certificate and
    both kinds of external PSK, client with `client` (it may authenticate by either)."""
    ccfg, scfg = configs(
        client={"require_psk": False, **client},
        server={
            "external_psks": {PSK[0]: PSK[1]},
            "imported_psks": [IMPORTED],
            "psks_before_certificates": psk_first,
        },
    )
    pair = make_pair(seed, cfgs=(ccfg, scfg))
    assert pair.handshake(max_time=10)
    pair.drain()
    done = next(e for e in pair.server_events if isinstance(e, HandshakeCompleted))
    pair.close()
    assert pair.pools.in_use == 0
    return done


@pytest.mark.parametrize("offer", [{"psk": PSK}, {"imported_psks": [IMPORTED]}], ids=["ext", "imp"])
def test_by_default_an_offered_psk_wins_over_a_fitting_certificate(offer: dict[str, Any]) -> None:
    done = _server_done(True, offer)
    assert done.psk_identity is not None and done.credential is None


@pytest.mark.parametrize("offer", [{"psk": PSK}, {"imported_psks": [IMPORTED]}], ids=["ext", "imp"])
def test_psks_after_certificates_a_fitting_certificate_wins(offer: dict[str, Any]) -> None:
    done = _server_done(False, offer)
    assert done.psk_identity is None and done.credential is not None
    assert not done.resumed


@pytest.mark.parametrize("offer", [{"psk": PSK}, {"imported_psks": [IMPORTED]}], ids=["ext", "imp"])
def test_psks_after_certificates_the_psk_serves_a_client_no_certificate_fits(
    offer: dict[str, Any],
) -> None:
    # The server's key is P-256; this client takes only Ed25519 signatures.
    done = _server_done(False, {**offer, "signature_schemes": ["ed25519"]})
    assert done.psk_identity in (PSK[0], IMPORTED.identity) and done.credential is None


def test_psks_after_certificates_neither_fitting_is_handshake_failure() -> None:
    ccfg, scfg = configs(
        client={"signature_schemes": ["ed25519"], "psk": (b"other", bytes(32))},
        server={"external_psks": {PSK[0]: PSK[1]}, "psks_before_certificates": False},
    )
    pair = make_pair(0, cfgs=(dataclasses.replace(ccfg, require_psk=False), scfg))
    pair.client.connect(SERVER_ADDR, pair.net.now)
    pair.net.run(lambda: pair.terminated("server") is not None, max_time=10)
    ended = pair.terminated("server")
    assert ended is not None and ended.alert is A.handshake_failure
    pair.close()


def test_psks_after_certificates_a_session_ticket_still_resumes_first() -> None:
    ccfg, scfg = configs(
        client={"psk": PSK, "require_psk": False},
        server={"external_psks": {PSK[0]: PSK[1]}, "psks_before_certificates": False},
    )
    pair = make_pair(0, cfgs=(ccfg, scfg))
    assert pair.handshake(max_time=10)
    pair.net.run(lambda: False, max_time=pair.net.now + 2)
    pair.drain()
    ticket = next(e for e in pair.client_events if isinstance(e, NewSessionTicketReceived))
    pair.close()
    again = make_pair(1, cfgs=(dataclasses.replace(ccfg, session=ticket.session), scfg))
    assert again.handshake(max_time=10)
    again.drain()
    done = next(e for e in again.server_events if isinstance(e, HandshakeCompleted))
    assert done.resumed and done.psk_identity is None and done.credential is None
    again.close()


def test_psks_before_certificates_must_be_a_bool() -> None:
    with pytest.raises(TypeError, match="psks_before_certificates"):
        configs(server={"psks_before_certificates": "no"})
