"""Processes that share a port share cookie and ticket secrets: any of them checks any
cookie and opens any ticket, and their key rotation agrees without talking."""

from __future__ import annotations

import hashlib

import pytest

from dtls13.connection import Connection
from dtls13.crypto.suites import CipherSuite
from dtls13.handshake.cookie import CookieJar
from dtls13.handshake.tickets import TicketProtector, TicketState
from tests.support.dtls_pair import SERVER_ADDR, configs, make_pair, wall_clock

COOKIE_SECRET = b"c" * 32
ADDR = ("192.0.2.7", 40000)
CH1 = hashlib.sha256(b"client hello 1").digest()


@pytest.mark.parametrize("same_secret", [True, False])
def test_cookie_made_under_one_config_is_checked_by_another(same_secret: bool) -> None:
    """ClientHello1 reaches one server process, ClientHello2 another that has only its own
    ServerConfig (built from the same options) and kept nothing."""
    server_opts = {"require_cookie": True, "cookie_secret": COOKIE_SECRET}
    pair = make_pair(server=server_opts)
    pair.client.connect(SERVER_ADDR, pair.net.now)
    assert pair.net.run(lambda: pair.client.stats["hello_retry_requests_received"] == 1)
    other_opts = dict(server_opts, cookie_secret=COOKIE_SECRET if same_secret else b"d" * 32)
    _, other = configs(server=other_opts)
    assert other is not pair.server.config
    fresh = Connection(other, pools=pair.pools, wall_clock=wall_clock, first_message_seq=1)
    pair.server.close()
    pair.net.flush()
    pair.server = fresh
    pair.net.add(SERVER_ADDR, fresh)
    if same_secret:
        assert pair.net.run(pair.completed)
        assert pair.exchange(b"from one", b"to another")
    else:
        pair.net.run(lambda: pair.terminated("server") is not None)
        ended = pair.terminated("server")
        assert ended is not None and ended.alert is not None
        assert ended.alert.name == "illegal_parameter"
    pair.close()
    assert pair.pools.in_use == 0


def test_cookie_rotation_agrees_between_jars_sharing_a_secret() -> None:
    """The period keys come from the secret and the time, not from each jar's history: a
    jar that has been running for hours and one just started agree at every period."""
    interval = 300.0
    old = CookieJar(COOKIE_SECRET, rotation_interval=interval, lifetime=60.0)
    for t in range(0, 36_000, 97):  # hours of use before the other process starts
        old.check(old.make(float(t), ADDR, CH1), float(t) + 1, ADDR)
    now = 36_000.0 + interval - 10  # ten seconds before a period boundary
    new = CookieJar(COOKIE_SECRET, rotation_interval=interval, lifetime=60.0)
    for maker, checker in ((old, new), (new, old)):
        cookie = maker.make(now, ADDR, CH1, b"x")
        got = checker.check(cookie, now + 30, ADDR)  # checked in the next period
        assert got is not None and got.extra == b"x"
        assert checker.check(cookie, now + 61, ADDR) is None  # past its lifetime
    stranger = CookieJar(b"d" * 32, rotation_interval=interval)
    assert stranger.check(old.make(now, ADDR, CH1), now + 1, ADDR) is None


def test_cookie_period_keys_are_derived_not_the_secret() -> None:
    """With rotation, a cookie's MAC key changes each period; two periods later the
    cookie is refused even with a long lifetime."""
    jar = CookieJar(COOKIE_SECRET, rotation_interval=10.0, lifetime=1000.0)
    a = jar.make(100.0, ADDR, CH1)
    b = jar.make(110.0, ADDR, CH1)
    assert a[4:-32] == b[4:-32] and a[-32:] != b[-32:]
    assert jar.check(a, 119.0, ADDR) is not None  # previous period
    assert jar.check(a, 120.0, ADDR) is None  # two periods on


def test_ticket_sealed_by_one_protector_opens_at_another_across_a_rotation() -> None:
    secret = b"t" * 32
    one = TicketProtector(secret, rotation_interval=3600.0)
    now = 7200.0 + 3590.0  # just before a rotation
    state = TicketState(CipherSuite.TLS_AES_128_GCM_SHA256, b"p" * 32, now, 7200, 12345)
    ticket = one.seal(state, now)
    other = TicketProtector(secret, rotation_interval=3600.0)
    assert other.open(ticket, now + 20) == state  # the next period: previous key
    assert other.open(ticket, now + 3600 + 20) is None  # two periods on
    assert TicketProtector(b"u" * 32).open(ticket, now + 1) is None
