"""Session tickets, resumption and external PSKs (RFC 8446 §2.2, §4.2.11, §4.6.1)."""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any

import pytest

from dtls13._fast import Buffer
from dtls13.config import ClientConfig, ServerConfig
from dtls13.connection import Connection
from dtls13.crypto.suites import CipherSuite
from dtls13.events import HandshakeCompleted, NewSessionTicketReceived
from dtls13.handshake import extensions as ext
from dtls13.handshake.constants import ExtensionType
from dtls13.handshake.tickets import Session, TicketProtector, TicketState
from dtls13.memory import PoolSet
from tests.support.dtls_pair import CLIENT_ADDR, SERVER_ADDR, Pair, configs, make_pair
from tests.support.netsim import Impairments, SimNetwork
from tests.support.pki import NOW


def _first_session(cfgs: tuple[ClientConfig, ServerConfig], seed: int = 0) -> Session:
    pair = make_pair(seed, cfgs=cfgs)
    assert pair.handshake()
    assert pair.net.run(
        lambda: any(isinstance(e, NewSessionTicketReceived) for e in _drained(pair))
    )
    ticket = next(e for e in pair.client_events if isinstance(e, NewSessionTicketReceived))
    pair.close()
    return ticket.session


def _drained(pair: Pair) -> list[Any]:
    pair.drain()
    return pair.client_events


def _completed(pair: Pair, side: str = "client") -> HandshakeCompleted:
    pair.drain()
    events = pair.client_events if side == "client" else pair.server_events
    return next(e for e in events if isinstance(e, HandshakeCompleted))


def test_ticket_resumes_without_sending_certificates_and_data_flows() -> None:
    cfgs = configs()
    session = _first_session(cfgs)
    assert session.suite == CipherSuite.TLS_AES_128_GCM_SHA256 and session.lifetime == 7200
    client = dataclasses.replace(cfgs[0], session=session)
    pair = make_pair(1, cfgs=(client, cfgs[1]))
    assert pair.handshake()
    done = _completed(pair)
    # No Certificate message: the server's chain reported is the one the session recorded.
    assert done.resumed and done.signature_scheme is None
    assert done.peer_certificates == session.peer_certificates != ()
    assert _completed(pair, "server").resumed
    assert pair.exchange(b"resumed ping", b"resumed pong")
    pair.close()
    assert pair.pools.in_use == 0


def test_resumption_over_a_lossy_network() -> None:
    cfgs = configs()
    session = _first_session(cfgs)
    client = dataclasses.replace(cfgs[0], session=session)
    for seed in range(40):
        pair = make_pair(
            seed, Impairments(loss=0.3, reorder=0.2, duplicate=0.1), cfgs=(client, cfgs[1])
        )
        assert pair.handshake(max_time=600), seed
        assert _completed(pair).resumed
        assert pair.exchange(b"c%d" % seed, b"s%d" % seed), seed
        pair.close()
        assert pair.pools.in_use == 0


def test_another_server_sharing_the_ticket_secret_resumes() -> None:
    secret = b"k" * 32
    cfgs = configs(server={"ticket_secret": secret})
    session = _first_session(cfgs)
    _, other_server = configs(server={"ticket_secret": secret})
    pair = make_pair(2, cfgs=(dataclasses.replace(cfgs[0], session=session), other_server))
    assert pair.handshake() and _completed(pair).resumed
    pair.close()


def test_unknown_or_tampered_ticket_falls_back_to_a_full_handshake() -> None:
    cfgs = configs()
    session = _first_session(cfgs)
    tampered = dataclasses.replace(
        session, ticket=session.ticket[:-1] + bytes([session.ticket[-1] ^ 1])
    )
    _, stranger = configs()  # another ticket key
    for client, server in (
        (dataclasses.replace(cfgs[0], session=tampered), cfgs[1]),
        (dataclasses.replace(cfgs[0], session=session), stranger),
    ):
        pair = make_pair(3, cfgs=(client, server))
        assert pair.handshake()
        done = _completed(pair)
        assert not done.resumed and done.peer_certificates
        pair.close()


def test_expired_ticket_is_not_offered_and_not_accepted() -> None:
    cfgs = configs(server={"ticket_lifetime": 60})
    session = _first_session(cfgs)
    later = NOW + datetime.timedelta(seconds=61)
    client = dataclasses.replace(cfgs[0], session=session)
    assert session.expired(later.timestamp())
    pools = PoolSet()
    net = SimNetwork(4)
    c = Connection(client, pools=pools, wall_clock=lambda: later)
    s = Connection(cfgs[1], pools=pools, peer_address=CLIENT_ADDR, wall_clock=lambda: later)
    net.add(CLIENT_ADDR, c)
    net.add(SERVER_ADDR, s)
    pair = Pair(net, c, s, pools)
    assert pair.handshake()
    assert not _completed(pair).resumed
    pair.close()
    # The server refuses it too, even when a client offers it anyway.
    protector = cfgs[1].tickets
    state = protector.open(session.ticket, NOW.timestamp() + 30)
    assert state is not None
    assert protector.open(session.ticket, NOW.timestamp() + 61) is None


def test_wrong_binder_ends_with_decrypt_error() -> None:
    cfgs = configs()
    session = _first_session(cfgs)
    forged = dataclasses.replace(session, psk=bytes(len(session.psk)))
    pair = make_pair(5, cfgs=(dataclasses.replace(cfgs[0], session=forged), cfgs[1]))
    pair.client.connect(SERVER_ADDR, 0.0)
    pair.net.run(lambda: pair.terminated("server") is not None)
    end = pair.terminated("server")
    assert end is not None and end.alert is not None and end.alert.name == "decrypt_error"
    pair.close()


@pytest.mark.parametrize("modes", [("psk_dhe_ke",), ("psk_ke",)])
def test_external_psk_without_certificates(modes: tuple[str, ...]) -> None:
    identity, key = b"sensor-17", bytes(range(32))
    client = ClientConfig(psk=(identity, key), psk_modes=modes, debug=True)
    server = ServerConfig(external_psks={identity: key}, psk_modes=modes, debug=True)
    pair = make_pair(6, cfgs=(client, server))
    assert pair.handshake()
    done = _completed(pair)
    assert done.resumed and done.peer_certificates == ()
    assert (done.group is None) == (modes == ("psk_ke",))
    assert pair.exchange(b"reading 21.5", b"ok")
    pair.close()
    assert pair.pools.in_use == 0


def test_external_psk_with_the_wrong_key_fails() -> None:
    client = ClientConfig(psk=(b"sensor-17", b"a" * 32), debug=True)
    server = ServerConfig(external_psks={b"sensor-17": b"b" * 32}, debug=True)
    pair = make_pair(7, cfgs=(client, server))
    pair.client.connect(SERVER_ADDR, 0.0)
    pair.net.run(lambda: pair.terminated("server") is not None)
    end = pair.terminated("server")
    assert end is not None and end.alert is not None and end.alert.name == "decrypt_error"
    pair.close()


def test_ticket_keys_rotate_and_the_previous_period_still_opens() -> None:
    protector = TicketProtector(b"r" * 32, rotation_interval=100)
    state = TicketState(CipherSuite.TLS_AES_128_GCM_SHA256, b"p" * 32, 1000.0, 7200, 7, 0, "h2")
    ticket = protector.seal(state, 1000.0)
    assert protector.open(ticket, 1050.0) == state
    assert protector.open(ticket, 1150.0) == state  # one rotation later
    assert protector.open(ticket, 1250.0) is None  # two rotations later
    sibling = TicketProtector(b"r" * 32, rotation_interval=100)
    assert sibling.open(ticket, 1010.0) == state
    assert TicketProtector(b"x" * 32, rotation_interval=100).open(ticket, 1010.0) is None
    for cut in range(len(ticket)):
        assert protector.open(ticket[:cut], 1010.0) is None
    with pytest.raises(ValueError):
        TicketProtector(b"short")


def test_first_client_hello_lists_psk_modes_without_offering_a_psk() -> None:
    """Without psk_key_exchange_modes a server must not issue tickets (RFC 8446 §4.2.9):
    OpenSSL sent none to us until a first ClientHello carried the client's modes."""
    pair = make_pair(7, cfgs=configs(client={"psk_modes": ("psk_ke", "psk_dhe_ke")}))
    pair.client.connect(SERVER_ADDR, pair.net.now)
    hello = pair.client.handshake.client_hello  # dropped with the rest of the handshake state
    assert pair.net.run(pair.completed)
    resumed = _completed(pair).resumed
    pair.close()
    assert pair.pools.in_use == 0
    assert hello is not None and hello.extension(ExtensionType.pre_shared_key) is None
    modes = hello.extension(ExtensionType.psk_key_exchange_modes)
    assert modes is not None
    assert ext.pull_psk_key_exchange_modes(Buffer(modes)) == (0, 1)
    assert not resumed


def test_ticket_claiming_the_period_before_the_first_opens_to_nothing() -> None:
    """Found by fuzz/fuzz_codecs.py: in the first rotation period after the clock's zero (a
    device without a real-time clock boots at 1970-01-01), a ticket whose key_id is
    0xFFFFFFFF claims period -1, whose key could not be derived: open() raised struct.error
    instead of returning None."""
    protector = TicketProtector(b"r" * 32, rotation_interval=3600)
    forged = b"\xff\xff\xff\xff" + bytes(12) + bytes(40)
    assert protector.open(forged, 100.0) is None
    assert protector.open(forged, -100.0) is None  # a clock before 1970
    assert protector.open(bytes(56), -100.0) is None


def test_forged_ticket_at_an_early_wall_clock_falls_back_to_a_full_handshake() -> None:
    cfgs = configs()
    session = _first_session(cfgs)
    forged = dataclasses.replace(session, ticket=b"\xff\xff\xff\xff" + session.ticket[4:])
    epoch = datetime.datetime(1970, 1, 1, 0, 5, tzinfo=datetime.UTC)
    pair = make_pair(3, cfgs=(dataclasses.replace(cfgs[0], session=forged), cfgs[1]))
    pair.server._wall_clock = lambda: epoch  # the server's clock: five minutes after zero
    assert pair.handshake()
    done = _completed(pair)
    assert not done.resumed and done.peer_certificates
    pair.close()
