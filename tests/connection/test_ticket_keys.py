"""Application-supplied session ticket keys: TicketKeyCallback, TicketKeyRing, TicketSealer."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from dtls13 import TicketDecision, TicketKey, TicketKeyRing
from dtls13.alerts import AlertDescription as A
from dtls13.config import ClientConfig, ServerConfig
from dtls13.events import HandshakeCompleted, NewSessionTicketReceived
from dtls13.handshake.tickets import Session
from tests.support.dtls_pair import SERVER_ADDR, Pair, configs, make_pair

KEY_A = TicketKey(b"A" * 16, b"a" * 32)
KEY_B = TicketKey(b"B" * 16, b"b" * 32)


def _handshake(
    cfgs: tuple[ClientConfig, ServerConfig], session: Session | None = None, seed: int = 0
) -> tuple[Pair, HandshakeCompleted, list[Session]]:
    """One handshake (resuming `session`), its client's HandshakeCompleted and the sessions
    of the tickets it got within two seconds."""
    client = dataclasses.replace(cfgs[0], session=session)
    pair = make_pair(seed, cfgs=(client, cfgs[1]))
    assert pair.handshake(max_time=10)
    pair.net.run(lambda: False, max_time=pair.net.now + 2)
    pair.drain()
    done = next(e for e in pair.client_events if isinstance(e, HandshakeCompleted))
    tickets = [e.session for e in pair.client_events if isinstance(e, NewSessionTicketReceived)]
    pair.close()
    assert pair.pools.in_use == 0
    return pair, done, tickets


class Keys:
    """A TicketKeyCallback that records its calls."""

    def __init__(self, key: TicketKey | None, decision: TicketDecision | None) -> None:
        self.key, self.decision = key, decision
        self.looked_up: list[bytes] = []

    def encryption_key(self) -> TicketKey | None:
        return self.key

    def decryption_key(self, name: bytes) -> tuple[TicketKey, TicketDecision] | None:
        self.looked_up.append(name)
        known = {k.name: k for k in (KEY_A, KEY_B)}
        if self.decision is None or name not in known:
            return None
        return known[name], self.decision


def test_tickets_are_sealed_under_the_callbacks_key_and_resume() -> None:
    keys = Keys(KEY_A, TicketDecision.RENEW)
    cfgs = configs(server={"ticket_keys": keys})
    _, first, tickets = _handshake(cfgs)
    assert not first.resumed and len(tickets) == 1
    assert tickets[0].ticket[:16] == KEY_A.name  # the key's name, in the clear
    _, again, renewed = _handshake(cfgs, tickets[0], seed=1)
    assert again.resumed and keys.looked_up == [KEY_A.name]
    assert len(renewed) == 1 and renewed[0].ticket != tickets[0].ticket


def test_accept_resumes_without_new_tickets_and_renew_issues_them_under_the_current_key() -> None:
    keys = Keys(KEY_A, TicketDecision.ACCEPT)
    cfgs = configs(server={"ticket_keys": keys})
    ticket = _handshake(cfgs)[2][0]
    keys.key = KEY_B  # rotated: new tickets under B; A's still open
    _, done, issued = _handshake(cfgs, ticket, seed=1)
    assert done.resumed and issued == []
    keys.decision = TicketDecision.RENEW
    _, done, issued = _handshake(cfgs, ticket, seed=2)
    assert done.resumed and [s.ticket[:16] for s in issued] == [KEY_B.name]


def test_a_ticket_the_callback_refuses_falls_back_to_a_full_handshake() -> None:
    keys = Keys(KEY_A, TicketDecision.RENEW)
    cfgs = configs(server={"ticket_keys": keys})
    ticket = _handshake(cfgs)[2][0]
    keys.decision = None
    _, done, issued = _handshake(cfgs, ticket, seed=1)
    assert not done.resumed and done.peer_certificates
    assert len(issued) == 1 and keys.looked_up == [KEY_A.name]


def test_a_tampered_ticket_is_refused_and_a_full_handshake_follows() -> None:
    cfgs = configs(server={"ticket_keys": Keys(KEY_A, TicketDecision.RENEW)})
    ticket = _handshake(cfgs)[2][0]
    bad = dataclasses.replace(ticket, ticket=ticket.ticket[:-1] + bytes([ticket.ticket[-1] ^ 1]))
    assert not _handshake(cfgs, bad, seed=1)[1].resumed


def test_no_encryption_key_means_no_ticket() -> None:
    cfgs = configs(server={"ticket_keys": Keys(None, TicketDecision.RENEW)})
    _, done, tickets = _handshake(cfgs)
    assert not done.resumed and tickets == []


def test_a_key_ring_rotates_old_tickets_renew_until_their_key_is_dropped() -> None:
    ring = TicketKeyRing([KEY_A], keep=2)
    cfgs = configs(server={"ticket_keys": ring})
    under_a = _handshake(cfgs)[2][0]
    assert ring.rotate(KEY_B) is KEY_B and ring.keys == (KEY_B, KEY_A)
    _, done, issued = _handshake(cfgs, under_a, seed=1)
    assert done.resumed and issued[0].ticket[:16] == KEY_B.name
    fresh = ring.rotate()  # random; A is dropped (keep=2)
    assert ring.keys == (fresh, KEY_B) and len(fresh.name) == 16
    assert not _handshake(cfgs, under_a, seed=2)[1].resumed
    assert _handshake(cfgs, issued[0], seed=3)[1].resumed


class Sealer:
    """A TicketSealer with one AES-GCM key of its own."""

    def __init__(self) -> None:
        self.aead = AESGCM(b"s" * 16)
        self.issue = True

    def seal(self, plaintext: bytes) -> bytes | None:
        return b"N" * 12 + self.aead.encrypt(b"N" * 12, plaintext, None) if self.issue else None

    def open(self, ticket: bytes) -> bytes | None:
        try:
            return self.aead.decrypt(ticket[:12], ticket[12:], None)
        except Exception:
            return None


def test_a_ticket_sealer_seals_and_opens_the_tickets_itself() -> None:
    sealer = Sealer()
    cfgs = configs(server={"ticket_sealer": sealer})
    ticket = _handshake(cfgs)[2][0]
    assert sealer.open(ticket.ticket) is not None
    assert _handshake(cfgs, ticket, seed=1)[1].resumed
    bad = dataclasses.replace(ticket, ticket=ticket.ticket[:-1] + bytes([ticket.ticket[-1] ^ 1]))
    assert not _handshake(cfgs, bad, seed=2)[1].resumed
    sealer.issue = False
    assert _handshake(cfgs)[2] == []


def _broken(where: str, answer: Any) -> Any:
    """A TicketKeyCallback that raises (answer None) or answers `answer` at `where`."""

    class Broken(Keys):
        def encryption_key(self) -> Any:
            if where == "encryption_key":
                if answer is None:
                    raise RuntimeError("key service down")
                return answer
            return KEY_A

        def decryption_key(self, name: bytes) -> Any:
            if answer is None:
                raise RuntimeError("key service down")
            return answer

    return Broken(KEY_A, TicketDecision.RENEW)


@pytest.mark.parametrize(
    "answer", [None, KEY_A, (KEY_B, TicketDecision.RENEW), ("k", "accept")], ids=repr
)
def test_a_decryption_callback_that_raises_or_answers_wrongly_is_a_clean_internal_error(
    answer: Any,
) -> None:
    cfgs = configs(server={"ticket_keys": Keys(KEY_A, TicketDecision.RENEW)})
    ticket = _handshake(cfgs)[2][0]
    scfg = dataclasses.replace(cfgs[1], ticket_keys=_broken("decryption_key", answer), debug=False)
    pair = make_pair(1, cfgs=(dataclasses.replace(cfgs[0], session=ticket), scfg))
    # Connection.receive_datagram never raises: the handshake ends with internal_error.
    assert not pair.handshake(max_time=10)
    ended = pair.terminated("server")
    assert ended is not None and ended.alert is A.internal_error and not ended.by_peer
    client_ended = pair.terminated("client")
    assert client_ended is not None and client_ended.alert is A.internal_error
    assert pair.server.statistics().server_callback_errors == 1
    pair.close()


@pytest.mark.parametrize("answer", [None, b"A" * 16, ("k", "v")], ids=repr)
def test_an_encryption_callback_that_raises_or_answers_wrongly_is_a_clean_internal_error(
    answer: Any,
) -> None:
    ccfg, scfg = configs()
    scfg = dataclasses.replace(scfg, ticket_keys=_broken("encryption_key", answer), debug=False)
    pair = make_pair(0, cfgs=(ccfg, scfg))
    pair.client.connect(SERVER_ADDR, pair.net.now)
    pair.net.run(lambda: pair.terminated("server") is not None, max_time=10)
    ended = pair.terminated("server")
    assert ended is not None and ended.alert is A.internal_error
    assert pair.server.statistics().server_callback_errors == 1
    pair.close()


def test_ticket_keys_are_checked_when_configured() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        TicketKey(b"short", b"k" * 32)
    with pytest.raises(ValueError, match="32 bytes"):
        TicketKey(b"n" * 16, b"k" * 16)
    assert "k" * 32 not in repr(KEY_A) and "kkk" not in repr(TicketKey(b"n" * 16, b"k" * 32))
    with pytest.raises(TypeError, match="ticket_keys"):
        configs(server={"ticket_keys": lambda name: None})
    with pytest.raises(TypeError, match="ticket_sealer"):
        configs(server={"ticket_sealer": object()})
    with pytest.raises(ValueError, match="ticket_secret"):
        configs(server={"ticket_keys": TicketKeyRing(), "ticket_secret": b"x" * 32})
    with pytest.raises(ValueError, match="not both"):
        configs(server={"ticket_keys": TicketKeyRing(), "ticket_sealer": Sealer()})
    with pytest.raises(ValueError, match="keep"):
        TicketKeyRing(keep=0)
