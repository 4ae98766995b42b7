"""0-RTT early data in epoch 1 (RFC 8446 §2.3, §4.2.10, §8; RFC 9147 §5.6)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from dtls13.alerts import LocalProtocolError
from dtls13.config import ClientConfig, ServerConfig
from dtls13.connection import Connection
from dtls13.events import DataReceived, HandshakeCompleted, NewSessionTicketReceived
from dtls13.handshake.tickets import Session
from tests.support.dtls_pair import (
    CLIENT_ADDR,
    SERVER_ADDR,
    Pair,
    configs,
    first_session,
    make_pair,
    wall_clock,
)
from tests.support.netsim import Impairments


def _early(pair: Pair) -> list[bytes]:
    pair.drain()
    return [e.data for e in pair.server_events if isinstance(e, DataReceived) and e.early]


def _done(pair: Pair) -> HandshakeCompleted:
    pair.drain()
    return next(e for e in pair.client_events if isinstance(e, HandshakeCompleted))


def _resumed_pair(
    seed: int, cfgs: tuple[ClientConfig, ServerConfig], session: Session, **kw: Any
) -> Pair:
    return make_pair(seed, cfgs=(dataclasses.replace(cfgs[0], session=session), cfgs[1]), **kw)


def test_early_data_is_delivered_before_the_handshake_completes() -> None:
    cfgs = configs(server={"max_early_data": 4096})
    session = first_session(cfgs)
    assert session.max_early_data == 4096
    pair = _resumed_pair(1, cfgs, session)
    pair.client.connect(SERVER_ADDR, 0.0)
    assert pair.client.early_data_possible
    pair.client.send_early_data(b"GET /sensor")
    assert pair.net.run(pair.completed)
    assert _early(pair) == [b"GET /sensor"]
    assert _done(pair).early_data_accepted is True and _done(pair).resumed
    assert pair.exchange(b"after", b"ok")
    pair.close()
    assert pair.pools.in_use == 0


def test_replayed_zero_rtt_flight_is_not_delivered_twice() -> None:
    cfgs = configs(server={"max_early_data": 4096})
    session = first_session(cfgs)
    pair = _resumed_pair(2, cfgs, session)
    pair.client.connect(SERVER_ADDR, 0.0)
    pair.client.send_early_data(b"transfer 100")
    captured = []
    for lease, _ in pair.client.datagrams_to_send(0.0):
        captured.append(lease.tobytes())
        lease.release()
    # Deliver the original, then replay the same datagrams to a second server instance.
    for data in captured:
        pair.net.inject(CLIENT_ADDR, SERVER_ADDR, data)
    assert pair.net.run(pair.completed)
    assert _early(pair) == [b"transfer 100"]
    replay_target = Connection(
        cfgs[1], pools=pair.pools, peer_address=CLIENT_ADDR, wall_clock=wall_clock
    )
    for data in captured:
        replay_target.receive_datagram(data, CLIENT_ADDR, 1.0)
    events = []
    while (ev := replay_target.next_event()) is not None:
        events.append(ev)
    assert not [e for e in events if isinstance(e, DataReceived)]
    assert replay_target.stats["early_data_replays"] == 1
    replay_target.close()
    for lease, _ in replay_target.datagrams_to_send(1.0):
        lease.release()
    pair.close()


def test_server_without_zero_rtt_rejects_and_the_client_learns_it() -> None:
    cfgs = configs(server={"max_early_data": 4096})
    session = first_session(cfgs)
    strict = dataclasses.replace(cfgs[1], max_early_data=0)
    # Same ticket key, so the ticket still resumes; only 0-RTT is refused.
    object.__setattr__(strict, "tickets", cfgs[1].tickets)
    pair = make_pair(3, cfgs=(dataclasses.replace(cfgs[0], session=session), strict))
    pair.client.connect(SERVER_ADDR, 0.0)
    pair.client.send_early_data(b"maybe")
    assert pair.net.run(pair.completed)
    assert _early(pair) == []
    done = _done(pair)
    assert done.resumed and done.early_data_accepted is False
    pair.close()


def test_hello_retry_request_rejects_early_data() -> None:
    cfgs = configs(server={"max_early_data": 4096})
    session = first_session(cfgs)
    cookie_server = dataclasses.replace(cfgs[1], require_cookie=True)
    object.__setattr__(cookie_server, "tickets", cfgs[1].tickets)
    pair = make_pair(4, cfgs=(dataclasses.replace(cfgs[0], session=session), cookie_server))
    pair.client.connect(SERVER_ADDR, 0.0)
    pair.client.send_early_data(b"lost to the HRR")
    assert pair.net.run(pair.completed)
    assert _early(pair) == [] and _done(pair).early_data_accepted is False
    pair.close()


def test_early_data_limits_and_misuse() -> None:
    cfgs = configs(server={"max_early_data": 16})
    session = first_session(cfgs)
    pair = _resumed_pair(5, cfgs, session)
    with pytest.raises(LocalProtocolError):
        pair.client.send_early_data(b"before connect")
    pair.client.connect(SERVER_ADDR, 0.0)
    with pytest.raises(ValueError, match="limit"):
        pair.client.send_early_data(b"x" * 17)
    pair.client.send_early_data(b"y" * 16)
    assert pair.net.run(pair.completed)
    assert _early(pair) == [b"y" * 16]
    with pytest.raises(LocalProtocolError):
        pair.client.send_early_data(b"too late")
    pair.close()


def test_zero_rtt_resumption_over_a_lossy_network() -> None:
    cfgs = configs(server={"max_early_data": 4096})
    session = first_session(cfgs)
    accepted = 0
    for seed in range(30):
        # A fresh ticket each time: a ticket gives 0-RTT only once.
        pair = _resumed_pair(10 + seed, cfgs, session, impairments=Impairments(loss=0.3))
        pair.client.connect(SERVER_ADDR, 0.0)
        pair.client.send_early_data(b"early %d" % seed)
        assert pair.net.run(pair.completed, max_time=600), seed
        done = _done(pair)
        assert done.resumed
        if done.early_data_accepted:
            accepted += 1
            assert _early(pair) in ([], [b"early %d" % seed])  # early data may be lost
        else:
            assert _early(pair) == []
        assert pair.exchange(b"c", b"s")
        pair.drain()
        session = (
            next(e for e in pair.client_events if isinstance(e, NewSessionTicketReceived)).session
            if any(isinstance(e, NewSessionTicketReceived) for e in pair.client_events)
            else session
        )
        pair.close()
        assert pair.pools.in_use == 0
    assert accepted >= 10


def _nss_like_client(monkeypatch: pytest.MonkeyPatch, copies: int = 1) -> None:
    """Clients that, as NSS's does, send EndOfEarlyData (empty, in the transcript) in
    epoch 1 after the server accepted their 0-RTT, ahead of their final flight."""
    from dtls13.handshake.client import ClientHandshake
    from dtls13.handshake.constants import HandshakeType

    derive = ClientHandshake._derive_application_secrets

    def derive_then_end_early_data(self: ClientHandshake) -> None:
        derive(self)
        if self._work.early_result:
            for _ in range(copies):
                self._send_encoded(HandshakeType.end_of_early_data, b"", 1)

    monkeypatch.setattr(ClientHandshake, "_derive_application_secrets", derive_then_end_early_data)


def _nss_like_pair(monkeypatch: pytest.MonkeyPatch, copies: int = 1) -> Pair:
    """A resumed pair whose NSS-like client (_nss_like_client) has sent 0-RTT data."""
    cfgs = configs(server={"max_early_data": 4096})
    session = first_session(cfgs)
    _nss_like_client(monkeypatch, copies)
    pair = _resumed_pair(1, cfgs, session)
    pair.client.connect(SERVER_ADDR, 0.0)
    pair.client.send_early_data(b"GET /sensor")
    return pair


def test_a_server_takes_the_end_of_early_data_a_client_sends_as_in_tls13(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # RFC 9147 §5.6 omits EndOfEarlyData; NSS's client sends it anyway and hashes it into
    # its Finished. Dropped, the client's Finished never came (it has the next number);
    # taken as TLS 1.3 takes it, the handshake completes.
    pair = _nss_like_pair(monkeypatch)
    assert pair.net.run(pair.completed, max_time=10)
    assert _early(pair) == [b"GET /sensor"]
    assert _done(pair).early_data_accepted is True
    server_done = next(e for e in pair.server_events if isinstance(e, HandshakeCompleted))
    assert server_done.early_data_accepted is True and server_done.resumed
    assert pair.server.statistics().retransmissions == 0
    assert pair.exchange(b"after", b"ok")
    pair.close()
    assert pair.pools.in_use == 0


def test_a_second_end_of_early_data_is_an_unexpected_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pair = _nss_like_pair(monkeypatch, copies=2)
    pair.net.run(lambda: pair.server.closed, max_time=10)
    ended = pair.terminated("server")
    assert ended is not None and "EndOfEarlyData" in ended.reason, ended
    pair.close()
    assert pair.pools.in_use == 0


def test_end_of_early_data_without_zero_rtt_is_an_unexpected_message() -> None:
    # A client whose 0-RTT the server refused has no early keys on the server's side:
    # its EndOfEarlyData cannot even be read (dropped), and the server's handler refuses
    # one in any case. Here: the handler, in the state it is in.
    from dtls13.alerts import UnexpectedMessage
    from dtls13.handshake.constants import HandshakeType
    from dtls13.handshake.state import ServerState

    pair = make_pair(0, cfgs=configs())
    pair.client.connect(SERVER_ADDR, 0.0)
    assert pair.net.run(lambda: pair.server.state is ServerState.WAIT_CLIENT_FINISHED)
    with pytest.raises(UnexpectedMessage, match="EndOfEarlyData"):
        pair.server.handshake.handle_message(HandshakeType.end_of_early_data, b"", 0.0)
    pair.close()
    assert pair.pools.in_use == 0


def test_end_of_early_data_after_the_handshake_is_an_unexpected_message() -> None:
    # Only epoch 1 carries it (and there only before the client's Finished): under the
    # application keys it meets a connected state machine, which refuses it.
    from dtls13.handshake.constants import HandshakeType

    pair = make_pair(0, cfgs=configs())
    assert pair.handshake()
    client = pair.client
    client._start_flight()
    client._add_encoded(HandshakeType.end_of_early_data, b"", client._records.write_epoch)
    client._emit_flight(pair.net.now)
    pair.net.run(lambda: pair.server.closed, max_time=10)
    ended = pair.terminated("server")
    assert ended is not None and "end_of_early_data" in ended.reason, ended
    pair.close()
    assert pair.pools.in_use == 0
