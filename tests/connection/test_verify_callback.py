"""verify_callback: the application's last word on the peer's certificate, both roles.

It sees the peer's chain (or raw key), the server name and the library's verdict; True
accepts, False or an AlertDescription rejects (RFC 8446 §6.2 alerts on the wire). A client
with verify=False records a rejection and goes on (soft fail). A callback that raises ends
the handshake with internal_error and a counter, never out of receive_datagram. Whatever it
says, the peer's CertificateVerify is checked (RFC 8446 §4.4.3).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from dtls13 import PeerVerification
from dtls13.alerts import AlertDescription
from dtls13.config import ClientConfig, ServerConfig
from dtls13.events import HandshakeCompleted
from dtls13.handshake.raw_keys import spki
from dtls13.handshake.tickets import Session
from tests.support.dtls_pair import Pair, configs, first_session, make_pair, pki
from tests.support.pki import TestPKI, cached_key

A = AlertDescription


class Recorder:
    """A verify_callback that records what it was asked and answers `answer`."""

    def __init__(self, answer: Any = True) -> None:
        self.answer = answer
        self.calls: list[PeerVerification] = []

    def __call__(self, peer: PeerVerification) -> Any:
        self.calls.append(peer)
        if isinstance(self.answer, type) and issubclass(self.answer, BaseException):
            raise self.answer("from the callback")
        return self.answer


def _client_cert(issuer: TestPKI | None = None) -> dict[str, Any]:
    issued = (issuer or pki()).leaf("ec256", cn="dtls13 test client")
    return {"certificate_chain": issued.chain_pem, "private_key": issued.key_pem}


def _fails_with(pair: Pair, detector: str, alert: AlertDescription) -> str:
    """`detector` sent `alert` and the other side received it; the pools are back to zero.
    Returns the detector's reason."""
    assert not pair.handshake(max_time=10)
    mine = pair.ends_with_alert(detector, alert)
    pair.close()
    assert pair.pools.in_use == 0
    return mine.reason


def _stranger() -> TestPKI:
    return TestPKI.create("ec256", slot=96)


def _pair_trusting(trust: bytes, **client: Any) -> Pair:
    """A pair whose client trusts only `trust` (a root PEM)."""
    ccfg, scfg = configs(client=client)
    return make_pair(cfgs=(dataclasses.replace(ccfg, cafile=trust), scfg))


# -- client ------------------------------------------------------------------------------


def test_client_callback_sees_the_chain_name_and_verdict_and_accepts() -> None:
    cb = Recorder(True)
    pair = make_pair(client={"verify_callback": cb})
    assert pair.handshake()
    [peer] = cb.calls
    assert len(peer.chain) == 2 and peer.chain == pair.client.peer_certificates
    assert peer.public_key is None and peer.server_name == "localhost"
    assert peer.verified is True and peer.error is None
    assert peer.accepted and peer.alert is None and not peer.by_callback and not peer.resumed
    outcome = pair.client.peer_verification
    assert outcome is not None and outcome.accepted and outcome.by_callback
    pair.close()


def test_client_callback_accepts_a_chain_the_trust_store_rejects() -> None:
    cb = Recorder(True)
    pair = _pair_trusting(_stranger().root_pem, verify_callback=cb)
    assert pair.handshake()
    [peer] = cb.calls
    assert peer.verified is False and not peer.accepted and peer.alert is A.unknown_ca
    assert peer.error
    outcome = pair.client.peer_verification
    assert outcome is not None and outcome.accepted and outcome.verified is False
    pair.close()


def test_client_callback_rejecting_a_verified_chain_sends_certificate_unknown() -> None:
    pair = make_pair(client={"verify_callback": Recorder(False)})
    reason = _fails_with(pair, "client", A.certificate_unknown)
    assert "verify_callback rejected" in reason


def test_client_callback_rejecting_an_untrusted_chain_keeps_the_library_alert() -> None:
    pair = _pair_trusting(_stranger().root_pem, verify_callback=Recorder(False))
    _fails_with(pair, "client", A.unknown_ca)


def test_client_callback_chooses_its_alert() -> None:
    pair = make_pair(client={"verify_callback": Recorder(A.handshake_failure)})
    _fails_with(pair, "client", A.handshake_failure)


def test_client_without_server_name_lets_the_callback_decide() -> None:
    cb = Recorder(True)
    ccfg, scfg = configs(client={"verify_callback": cb})
    ccfg = dataclasses.replace(ccfg, server_name=None)
    pair = make_pair(cfgs=(ccfg, scfg))
    assert pair.handshake()
    assert cb.calls[0].verified is None and "server_name" in (cb.calls[0].error or "")
    pair.close()
    with pytest.raises(ValueError, match="server_name is required"):
        dataclasses.replace(ccfg, verify_callback=None)


@pytest.mark.parametrize("answer", [RuntimeError, None, "yes", A.decode_error], ids=str)
def test_client_callback_that_raises_or_answers_wrongly_is_internal_error(answer: Any) -> None:
    # The configs have debug=True: an exception escaping receive_datagram fails the test.
    pair = make_pair(client={"verify_callback": Recorder(answer)})
    reason = _fails_with(pair, "client", A.internal_error)
    assert "verify_callback" in reason
    assert pair.client.statistics().verify_callback_errors == 1


def test_callback_cannot_accept_a_certificate_verify_that_does_not_verify() -> None:
    """The chain is accepted, but the server signs with a key that is not its certificate's:
    decrypt_error (RFC 8446 §4.4.3), whatever the callback said."""
    cb = Recorder(True)
    ccfg, scfg = configs(client={"verify_callback": cb})
    # Another key of the same type, set after the constructors' key/certificate checks.
    other = cached_key("ec256", 77)
    scfg.key = other
    for cert in scfg.server_certificates.certificates:
        object.__setattr__(cert, "key", other)
    pair = make_pair(cfgs=(ccfg, scfg))
    _fails_with(pair, "client", A.decrypt_error)
    assert len(cb.calls) == 1


# -- soft fail ---------------------------------------------------------------------------


def test_soft_fail_client_records_the_rejection_and_completes() -> None:
    pair = make_pair(client={"verify": False, "verify_callback": Recorder(False)})
    assert pair.handshake()
    outcome = pair.client.peer_verification
    assert outcome is not None and outcome.verified is True
    assert not outcome.accepted and outcome.alert is A.certificate_unknown
    assert pair.exchange(b"ping", b"pong")
    pair.close()


def test_soft_fail_client_without_callback_records_the_trust_store_verdict() -> None:
    pair = _pair_trusting(_stranger().root_pem, verify=False)
    assert pair.handshake()
    outcome = pair.client.peer_verification
    assert outcome is not None and outcome.verified is False
    assert not outcome.accepted and outcome.alert is A.unknown_ca and not outcome.by_callback
    pair.close()


def test_unverified_client_without_trust_store_records_not_checked() -> None:
    ccfg, scfg = configs(client={"verify": False})
    ccfg = dataclasses.replace(ccfg, cafile=None)
    pair = make_pair(cfgs=(ccfg, scfg))
    assert pair.handshake()
    outcome = pair.client.peer_verification
    assert outcome is not None and outcome.verified is None and not outcome.accepted
    pair.close()


# -- server ------------------------------------------------------------------------------


def test_server_callback_sees_the_client_chain_and_sni_and_rejects() -> None:
    cb = Recorder(False)
    pair = make_pair(
        client=_client_cert(),
        server={"client_auth": "required", "cafile": pki().root_pem, "verify_callback": cb},
    )
    reason = _fails_with(pair, "server", A.certificate_unknown)
    assert "verify_callback rejected" in reason
    [peer] = cb.calls
    assert len(peer.chain) == 2 and peer.server_name == "localhost" and peer.verified is True


def test_server_callback_accepts_an_untrusted_client_certificate() -> None:
    cb = Recorder(True)
    pair = make_pair(
        client=_client_cert(_stranger()),
        server={"client_auth": "optional", "cafile": pki().root_pem, "verify_callback": cb},
    )
    assert pair.handshake()
    outcome = pair.server.peer_verification
    assert outcome is not None and outcome.accepted and outcome.verified is False
    pair.close()


def test_server_callback_is_not_called_without_a_client_certificate() -> None:
    cb = Recorder(False)
    pair = make_pair(server={"client_auth": "optional", "verify_callback": cb})
    assert pair.handshake()
    assert cb.calls == [] and pair.server.peer_verification is None
    pair.close()


def test_server_callback_that_raises_is_internal_error_and_counted() -> None:
    pair = make_pair(
        client=_client_cert(),
        server={"client_auth": "required", "verify_callback": Recorder(ValueError)},
    )
    _fails_with(pair, "server", A.internal_error)
    assert pair.server.statistics().verify_callback_errors == 1


def test_verify_callback_must_be_callable() -> None:
    with pytest.raises(TypeError, match="verify_callback"):
        configs(client={"verify_callback": "yes"})


# -- raw public keys -----------------------------------------------------------------------


def test_raw_public_key_reaches_the_callback_as_a_key_without_chain() -> None:
    key = cached_key("ec256", 40)
    cb = Recorder(A.access_denied)
    server = ServerConfig(private_key=key, raw_public_key=True, debug=True)
    client = ClientConfig(pinned_public_keys=[key.public_key()], verify_callback=cb, debug=True)
    pair = make_pair(cfgs=(client, server))
    _fails_with(pair, "client", A.access_denied)
    [peer] = cb.calls
    assert peer.chain == () and peer.public_key == spki(key.public_key())
    assert peer.verified is True and peer.accepted


# -- resumption ----------------------------------------------------------------------------


def _session(ccfg: ClientConfig, scfg: ServerConfig) -> Session:
    return first_session((ccfg, scfg))


def _resumed(pair: Pair) -> bool:
    pair.drain()
    done = [e for e in pair.client_events if isinstance(e, HandshakeCompleted)]
    return bool(done) and done[0].resumed


def test_resumption_reports_the_full_handshake_verdict_without_calling_again() -> None:
    cb = Recorder(False)
    ccfg, scfg = configs(client={"verify": False, "verify_callback": cb})
    session = _session(ccfg, scfg)
    assert session.peer_verification is not None and not session.peer_verification.accepted
    pair = make_pair(cfgs=(dataclasses.replace(ccfg, session=session), scfg))
    assert pair.handshake() and _resumed(pair)
    assert len(cb.calls) == 1  # the first connection's only
    outcome = pair.client.peer_verification
    assert outcome is not None and outcome.resumed and not outcome.accepted
    pair.close()


def test_verifying_client_does_not_resume_a_soft_failed_session() -> None:
    ccfg, scfg = configs(client={"verify": False, "verify_callback": Recorder(False)})
    session = _session(ccfg, scfg)
    strict = dataclasses.replace(ccfg, verify=True, verify_callback=None, session=session)
    pair = make_pair(cfgs=(strict, scfg))
    assert pair.handshake() and not _resumed(pair)
    outcome = pair.client.peer_verification
    assert outcome is not None and outcome.accepted and not outcome.resumed
    pair.close()


def test_reverify_on_resume_asks_again_and_a_rejection_ends_the_resumption() -> None:
    ccfg, scfg = configs(client={"verify_callback": Recorder(True), "reverify_on_resume": True})
    session = _session(ccfg, scfg)
    cb = Recorder(False)
    again = dataclasses.replace(ccfg, session=session, verify_callback=cb)
    pair = make_pair(cfgs=(again, scfg))
    reason = _fails_with(pair, "client", A.certificate_unknown)
    assert "verify_callback rejected" in reason
    [peer] = cb.calls
    assert peer.resumed and peer.chain == session.peer_certificates


def test_reverify_on_resume_accepting_resumes() -> None:
    cb = Recorder(True)
    ccfg, scfg = configs(client={"verify_callback": cb, "reverify_on_resume": True})
    session = _session(ccfg, scfg)
    pair = make_pair(cfgs=(dataclasses.replace(ccfg, session=session), scfg))
    assert pair.handshake() and _resumed(pair)
    assert [p.resumed for p in cb.calls] == [False, True]
    pair.close()


def test_resumed_server_reports_the_accepted_client_certificate() -> None:
    cb = Recorder(True)
    ccfg, scfg = configs(
        client=_client_cert(),
        server={
            "client_auth": "required",
            "cafile": pki().root_pem,
            "verify_callback": cb,
            "ticket_secret": b"v" * 32,
        },
    )
    session = _session(ccfg, scfg)
    pair = make_pair(cfgs=(dataclasses.replace(ccfg, session=session), scfg))
    assert pair.handshake() and _resumed(pair)
    assert len(cb.calls) == 1
    outcome = pair.server.peer_verification
    assert outcome is not None and outcome.accepted and outcome.resumed
    assert outcome.chain == pair.server.peer_certificates
    pair.close()
