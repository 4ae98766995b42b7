"""Stateless HRR cookies: round trip, tampering, expiry, address binding, rotation."""

from __future__ import annotations

import hashlib
import hmac
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dtls13.handshake.cookie as cookie_module
from dtls13.handshake.cookie import CookieContents, CookieJar

ADDR = ("192.0.2.7", 40000)
CH1 = hashlib.sha256(b"client hello 1").digest()
NOW = 1_000_000.5


def _jar(**kw: object) -> CookieJar:
    counter = itertools.count()
    return CookieJar(
        b"s" * 32,
        random_bytes=lambda n: bytes([next(counter) % 256]) * n,
        **kw,  # type: ignore[arg-type]
    )


def test_round_trip_carries_ch1_hash_and_extra() -> None:
    jar = _jar()
    cookie = jar.make(NOW, ADDR, CH1, b"\x13\x01\x00\x1d")
    assert cookie[:4] == int(NOW).to_bytes(4, "big")
    assert cookie[4] == 32 and cookie[5:37] == CH1
    assert len(cookie) == 4 + 1 + 32 + 2 + 4 + 32
    got = jar.check(cookie, NOW + 5, ADDR)
    assert got == CookieContents(int(NOW), CH1, b"\x13\x01\x00\x1d")
    # The MAC is HMAC-SHA256 under the secret: a jar with another secret refuses it.
    assert CookieJar(b"t" * 32).check(cookie, NOW, ADDR) is None
    sha384 = hashlib.sha384(b"x").digest()
    assert jar.check(jar.make(NOW, ADDR, sha384), NOW, ADDR) == CookieContents(
        int(NOW), sha384, b""
    )


def test_tampered_cookies_rejected() -> None:
    jar = _jar()
    cookie = jar.make(NOW, ADDR, CH1, b"extra")
    for i in range(len(cookie)):
        for flip in (0x01, 0x80):
            bad = cookie[:i] + bytes([cookie[i] ^ flip]) + cookie[i + 1 :]
            assert jar.check(bad, NOW, ADDR) is None
    for n in range(len(cookie)):
        assert jar.check(cookie[:n], NOW, ADDR) is None
    assert jar.check(cookie + b"\x00", NOW, ADDR) is None


def test_wrong_address_rejected() -> None:
    jar = _jar()
    cookie = jar.make(NOW, ADDR, CH1)
    assert jar.check(cookie, NOW, ("192.0.2.8", 40000)) is None
    assert jar.check(cookie, NOW, ("192.0.2.7", 40001)) is None
    assert jar.check(cookie, NOW, ADDR) is not None
    # IPv6 flowinfo/scope do not matter; host and port do.
    v6 = ("2001:db8::1", 443, 0, 0)
    assert jar.check(jar.make(NOW, v6, CH1), NOW, ("2001:db8::1", 443, 7, 0)) is not None


def test_a_cookie_checked_again_at_once_is_not_macd_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The gate and then the connection it admits check the same cookie at the same time:
    # the second answer is the first one's, for the same bytes, address and time only.
    jar = _jar()
    cookie = jar.make(NOW, ADDR, CH1, b"x")
    macs: list[bytes] = []
    real = cookie_module.hmac_digest

    def counted(key: bytes, msg: bytes, name: str) -> bytes:
        macs.append(msg)
        return real(key, msg, name)

    monkeypatch.setattr(cookie_module, "hmac_digest", counted)
    first = jar.check(cookie, NOW, ADDR)
    assert first is not None and len(macs) == 1
    assert jar.check(cookie, NOW, ADDR) == first and len(macs) == 1
    assert jar.check(cookie, NOW, ("192.0.2.8", 40000)) is None
    tampered = cookie[:-1] + bytes([cookie[-1] ^ 1])
    assert jar.check(tampered, NOW, ADDR) is None
    assert jar.check(cookie, NOW + 1, ADDR) == first and len(macs) == 4  # checked in full
    jar.rotate(NOW + 1)  # the previous secret still opens it, but only a full check says so
    assert jar.check(cookie, NOW + 1, ADDR) == first and len(macs) == 6


def test_expired_and_future_ticks_rejected() -> None:
    jar = _jar(lifetime=30.0)
    cookie = jar.make(NOW, ADDR, CH1)
    assert jar.check(cookie, NOW + 30, ADDR) is not None
    assert jar.check(cookie, NOW + 31, ADDR) is None
    assert jar.check(cookie, NOW - 2, ADDR) is None  # made "in the future"


def test_rotation_previous_secret_accepted_once() -> None:
    jar = _jar()
    cookie = jar.make(NOW, ADDR, CH1)
    jar.rotate(NOW + 1)
    assert jar.check(cookie, NOW + 2, ADDR) is not None
    fresh = jar.make(NOW + 2, ADDR, CH1)
    assert fresh[-32:] != cookie[-32:]
    jar.rotate(NOW + 3)
    assert jar.check(cookie, NOW + 4, ADDR) is None
    assert jar.check(fresh, NOW + 4, ADDR) is not None


def test_automatic_rotation() -> None:
    jar = _jar(rotation_interval=10.0, lifetime=60.0)
    cookie = jar.make(NOW, ADDR, CH1)
    assert jar.check(cookie, NOW + 9, ADDR) is not None
    assert jar.check(cookie, NOW + 11, ADDR) is not None  # rotated once: previous secret
    assert jar.check(cookie, NOW + 22, ADDR) is None  # rotated twice


def test_mac_covers_address_with_sha256() -> None:
    jar = CookieJar(b"k" * 32)
    cookie = jar.make(NOW, ADDR, CH1)
    body = cookie[:-32]
    expected = hmac.digest(b"k" * 32, b"dtls13 hrr cookie" + body + repr(ADDR).encode(), "sha256")
    assert cookie[-32:] == expected


def test_bad_configuration() -> None:
    with pytest.raises(ValueError):
        CookieJar(b"short")
    with pytest.raises(ValueError):
        CookieJar(lifetime=0)
    with pytest.raises(ValueError):
        CookieJar().make(NOW, ADDR, bytes(256))
    assert len(CookieJar().make(NOW, ADDR, CH1)) == 71


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_cookies_never_raise(data: bytes) -> None:
    assert _jar().check(data, NOW, ADDR) is None
