"""A resumed session claims only the identities authenticated when its ticket was issued.

RFC 8446 §2.2 / §4.6.1: a resumption inherits the original connection's authentication; a
client resumes only for the server name it was issued for (§4.6.1), and a server may check
it (§4.2.11). RFC 8446 §8: early data is accepted once per ticket, in the whole process.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from cryptography.hazmat.primitives.serialization import Encoding
from dtls_pair import CLIENT_ADDR, SERVER_ADDR, Pair, configs, make_pair, pki, wall_clock

from dtls13.alerts import AlertDescription
from dtls13.config import ClientConfig, ServerConfig
from dtls13.connection import Connection
from dtls13.crypto.suites import CipherSuite
from dtls13.events import DataReceived, HandshakeCompleted, NewSessionTicketReceived
from dtls13.handshake.antireplay import PROCESS_REPLAY_GUARD, ReplayGuard
from dtls13.handshake.constants import ExtensionType
from dtls13.handshake.tickets import (
    MAX_TICKET_CHAIN,
    Session,
    TicketProtector,
    TicketState,
    chain_size,
)

SECRET = b"s" * 32


def _client_cert(**leaf: Any) -> dict[str, Any]:
    issued = pki().leaf("ec256", cn="dtls13 test client", **leaf)
    return {"certificate_chain": issued.chain_pem, "private_key": issued.key_pem}


def _auth_server(auth: str, **more: Any) -> dict[str, Any]:
    return {"client_auth": auth, "cafile": pki().root_pem, "ticket_secret": SECRET, **more}


def _completed(pair: Pair, side: str) -> HandshakeCompleted | None:
    pair.drain()
    events = pair.client_events if side == "client" else pair.server_events
    return next((e for e in events if isinstance(e, HandshakeCompleted)), None)


def _first_session(cfgs: tuple[ClientConfig, ServerConfig], seed: int = 0) -> Session:
    pair = make_pair(seed, cfgs=cfgs)
    assert pair.handshake()

    def got_ticket() -> bool:
        pair.drain()
        return any(isinstance(e, NewSessionTicketReceived) for e in pair.client_events)

    assert pair.net.run(got_ticket)
    event = next(e for e in pair.client_events if isinstance(e, NewSessionTicketReceived))
    pair.close()
    return event.session


# -- client certificates -------------------------------------------------------------------


def test_resumed_server_reports_the_client_certificates_authenticated_at_issue() -> None:
    cfgs = configs(client=_client_cert(), server=_auth_server("required"))
    first = make_pair(0, cfgs=cfgs)
    assert first.handshake()
    original = first.server.peer_certificates
    assert len(original) == 2
    first.close()
    session = _first_session(cfgs)
    pair = make_pair(1, cfgs=(dataclasses.replace(cfgs[0], session=session), cfgs[1]))
    assert pair.handshake()
    done = _completed(pair, "server")
    assert done is not None and done.resumed
    assert done.peer_certificates == original
    assert pair.server.peer_certificates == original
    # A ticket issued on the resumed connection carries the same identity on.
    assert pair.exchange(b"again", b"ok")
    pair.close()


def test_resumed_client_reports_the_server_certificates() -> None:
    cfgs = configs()
    first = make_pair(0, cfgs=cfgs)
    assert first.handshake()
    server_chain = first.client.peer_certificates
    first.close()
    session = _first_session(cfgs)
    assert session.peer_certificates == server_chain
    pair = make_pair(1, cfgs=(dataclasses.replace(cfgs[0], session=session), cfgs[1]))
    assert pair.handshake()
    done = _completed(pair, "client")
    assert done is not None and done.resumed
    assert done.peer_certificates == server_chain and len(server_chain) == 2
    pair.close()


def test_anonymous_ticket_does_not_resume_into_a_server_requiring_a_certificate() -> None:
    """A ticket issued where no certificate was asked for (a server sharing the ticket
    secret with client_auth="none") must not let a client without one into a server that
    requires one: the PSK is refused, the full handshake demands the certificate."""
    anonymous = configs(server=_auth_server("none"))
    session = _first_session(anonymous)
    _, strict = configs(server=_auth_server("required"))
    pair = make_pair(2, cfgs=(dataclasses.replace(anonymous[0], session=session), strict))
    pair.handshake(max_time=10)
    assert _completed(pair, "server") is None, "resumed without a client certificate"
    end = pair.terminated("server")
    assert end is not None and end.alert is AlertDescription.certificate_required
    assert pair.server.rare_stat("psk_refused_identity") == 1
    pair.close()


def test_ticket_without_a_certificate_under_optional_does_not_resume_into_required() -> None:
    optional = configs(server=_auth_server("optional"))
    session = _first_session(optional)
    _, strict = configs(server=_auth_server("required"))
    # A client that has a certificate does a full handshake and is authenticated.
    with_cert = configs(client=_client_cert())[0]
    pair = make_pair(3, cfgs=(dataclasses.replace(with_cert, session=session), strict))
    assert pair.handshake()
    done = _completed(pair, "server")
    assert done is not None and not done.resumed
    assert len(done.peer_certificates) == 2
    assert pair.server.rare_stat("psk_refused_identity") == 1
    pair.close()
    # One without: refused.
    pair = make_pair(4, cfgs=(dataclasses.replace(optional[0], session=session), strict))
    pair.handshake(max_time=10)
    assert _completed(pair, "server") is None, "resumed without a client certificate"
    end = pair.terminated("server")
    assert end is not None and end.alert is AlertDescription.certificate_required
    pair.close()


def test_authenticated_ticket_resumes_into_optional_with_its_certificates() -> None:
    cfgs = configs(client=_client_cert(), server=_auth_server("required"))
    session = _first_session(cfgs)
    _, optional = configs(server=_auth_server("optional"))
    pair = make_pair(5, cfgs=(dataclasses.replace(cfgs[0], session=session), optional))
    assert pair.handshake()
    done = _completed(pair, "server")
    assert done is not None and done.resumed and len(done.peer_certificates) == 2
    pair.close()


def test_client_chain_too_large_for_a_ticket_gets_no_ticket() -> None:
    names = [f"host{i:04d}.sensors.example" for i in range(250)]
    cfgs = configs(client=_client_cert(dns_names=names), server=_auth_server("required"))
    pair = make_pair(6, cfgs=cfgs)
    assert pair.handshake()
    chain = pair.server.peer_certificates
    assert sum(len(c.public_bytes(Encoding.DER)) for c in chain) > MAX_TICKET_CHAIN
    assert pair.exchange(b"big", b"fine")
    pair.drain()
    assert not any(isinstance(e, NewSessionTicketReceived) for e in pair.client_events)
    assert pair.server.rare_stat("tickets_withheld") == 1
    assert pair.server.statistics().tickets_withheld == 1
    pair.close()


def test_ticket_carries_the_client_chain_and_server_name() -> None:
    chain = tuple(pki().leaf("ec256").chain)
    protector = TicketProtector(b"r" * 32, rotation_interval=100)
    state = TicketState(
        CipherSuite.TLS_AES_128_GCM_SHA256,
        b"p" * 32,
        1000.0,
        7200,
        7,
        0,
        "h2",
        server_name="sensors.example",
        client_chain=chain,
    )
    ticket = protector.seal(state, 1000.0)
    assert protector.open(ticket, 1010.0) == state
    # Compressed: a P-256 leaf and intermediate (~1 KB) fit in a ticket under 1 KB.
    assert len(ticket) < 900 < chain_size(chain)
    for cut in range(0, len(ticket), 7):
        assert protector.open(ticket[:cut], 1010.0) is None


# -- server names --------------------------------------------------------------------------


def _two_name_configs() -> tuple[ClientConfig, ServerConfig]:
    leaf = pki().leaf("ec256", dns_names=("localhost", "other.example"))
    client, server = configs()
    return client, dataclasses.replace(
        server, certificate_chain=leaf.chain_pem, private_key=leaf.key_pem
    )


def test_session_is_not_offered_to_another_server_name() -> None:
    cfgs = _two_name_configs()
    session = _first_session(cfgs)
    assert session.server_name == "localhost"
    other = dataclasses.replace(cfgs[0], server_name="other.example", session=session)
    pair = make_pair(7, cfgs=(other, cfgs[1]))
    pair.client.connect(SERVER_ADDR, pair.net.now)
    hello = pair.client._client_hello
    assert hello is not None and hello.extension(ExtensionType.pre_shared_key) is None
    assert pair.net.run(pair.completed)
    done = _completed(pair, "client")
    assert done is not None and not done.resumed
    assert pair.client.rare_stat("session_server_name_mismatch") == 1
    pair.close()
    # The same session still resumes with the name it was issued for (case aside).
    same = dataclasses.replace(cfgs[0], server_name="LocalHost", session=session)
    pair = make_pair(8, cfgs=(same, cfgs[1]))
    assert pair.handshake()
    done = _completed(pair, "client")
    assert done is not None and done.resumed
    pair.close()


def test_server_refuses_a_ticket_issued_for_another_server_name() -> None:
    """A client that offers the ticket anyway (another implementation, or a session whose
    recorded name was changed) gets a full handshake: the ticket names the SNI it was
    issued under."""
    cfgs = _two_name_configs()
    session = _first_session(cfgs)
    relabelled = dataclasses.replace(session, server_name="other.example")
    client = dataclasses.replace(cfgs[0], server_name="other.example", session=relabelled)
    pair = make_pair(9, cfgs=(client, cfgs[1]))
    pair.client.connect(SERVER_ADDR, pair.net.now)
    hello = pair.client._client_hello
    assert hello is not None and hello.extension(ExtensionType.pre_shared_key) is not None
    assert pair.net.run(pair.completed)
    done = _completed(pair, "server")
    assert done is not None and not done.resumed, "ticket resumed under another server name"
    assert pair.server.rare_stat("psk_refused_identity") == 1
    pair.close()


# -- 0-RTT replay across configurations ------------------------------------------------------


def test_zero_rtt_replay_is_refused_by_another_server_config_in_the_process() -> None:
    cfgs = configs(server={"max_early_data": 4096, "ticket_secret": SECRET})
    _, sibling = configs(server={"max_early_data": 4096, "ticket_secret": SECRET})
    assert sibling is not cfgs[1]
    session = _first_session(cfgs)
    pair = make_pair(10, cfgs=(dataclasses.replace(cfgs[0], session=session), cfgs[1]))
    pair.client.connect(SERVER_ADDR, 0.0)
    pair.client.send_early_data(b"open the valve")
    captured = []
    for lease, _ in pair.client.datagrams_to_send(0.0):
        captured.append(lease.tobytes())
        lease.release()
    for data in captured:
        pair.net.inject(CLIENT_ADDR, SERVER_ADDR, data)
    assert pair.net.run(pair.completed)
    pair.drain()
    assert [e.data for e in pair.server_events if isinstance(e, DataReceived) and e.early] == [
        b"open the valve"
    ]
    # The same flight replayed (within the window) to a server built from another
    # ServerConfig object that shares the ticket secret.
    replay_target = Connection(
        sibling, pools=pair.pools, peer_address=CLIENT_ADDR, wall_clock=wall_clock
    )
    for data in captured:
        replay_target.receive_datagram(data, CLIENT_ADDR, 1.0)
    events = []
    while (ev := replay_target.next_event()) is not None:
        events.append(ev)
    assert not [e for e in events if isinstance(e, DataReceived)], "early data replayed"
    assert replay_target.stats["early_data_replays"] == 1
    replay_target.close()
    for lease, _ in replay_target.datagrams_to_send(1.0):
        lease.release()
    pair.close()


def test_every_server_config_shares_one_bounded_replay_guard() -> None:
    first, second = configs()[1], configs()[1]
    assert first.replay_guard is second.replay_guard is PROCESS_REPLAY_GUARD
    guard = ReplayGuard(capacity=2)
    assert guard.first_use(b"t1", expires=100.0, now=0.0)
    assert not guard.first_use(b"t1", expires=100.0, now=1.0)  # a replay
    assert guard.first_use(b"t2", expires=50.0, now=1.0)
    # Full: refused rather than accepted twice, until an entry expires.
    assert not guard.first_use(b"t3", expires=100.0, now=2.0)
    assert guard.first_use(b"t3", expires=100.0, now=60.0) and len(guard) == 2
    assert not guard.first_use(b"t1", expires=100.0, now=61.0)
