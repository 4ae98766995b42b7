"""Stateless HelloRetryRequest cookies (RFC 9147 §5.1, RFC 8446 §4.2.2).

The server keeps nothing between the two ClientHellos: the cookie carries what it needs to
rebuild the transcript (the hash of ClientHello1, and in ``extra`` whatever it chose in the
HelloRetryRequest, e.g. suite and group), protected by an HMAC over a time tick and the
client's address. The current and the previous secret are accepted, so cookies survive one
rotation ("the server can have a limited window during which it accepts both secrets").

With a `rotation_interval`, the MAC key of a cookie is derived from the configured secret
and the rotation period of its tick (``HMAC-SHA256(secret, label || period)``), not drawn at
random: processes (or machines) given the same secret agree on every period's key without
talking to each other, so any of them checks a cookie another made, as long as their `now`
values come from a clock they share. A cookie from the current or the previous period is
accepted. ``rotate()`` replaces the secret itself (by hand, in this process only).

Layout: ``tick(4) || hash_len(1) || ch1_hash || extra_len(2) || extra || mac(32)``, where
``mac = HMAC-SHA256(secret, label || everything before the mac || address)``.
"""

from __future__ import annotations

import hmac
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass

from ..crypto.hkdf import hmac_digest

_LABEL = b"dtls13 hrr cookie"
_PERIOD_LABEL = b"dtls13 hrr cookie period"
_MAC_LENGTH = 32
_TICK_MASK = 0xFFFFFFFF
_MIN_LENGTH = 4 + 1 + 2 + _MAC_LENGTH


@dataclass(frozen=True, slots=True)
class CookieContents:
    """What a valid cookie tells the server."""

    tick: int
    ch1_hash: bytes
    extra: bytes


def _address_bytes(address: object) -> bytes:
    # (host, port[, flowinfo, scope_id]): host and port identify the return path.
    if isinstance(address, tuple) and len(address) >= 2:
        return repr((address[0], address[1])).encode()
    return repr(address).encode()


class CookieJar:
    """Makes and checks cookies; ``rotate`` changes the secret, keeping the previous one."""

    __slots__ = (
        "_current",
        "_last_valid",
        "_period_keys",
        "_previous",
        "_random",
        "lifetime",
        "rotation_interval",
    )

    def __init__(
        self,
        secret: bytes | None = None,
        *,
        lifetime: float = 60.0,
        rotation_interval: float | None = None,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        """`lifetime`: seconds a cookie stays valid. `rotation_interval`: when set, the MAC
        key changes every that many seconds, derived from the secret and the period."""
        if secret is not None and len(secret) < 16:
            raise ValueError("cookie secret must be at least 16 bytes")
        if lifetime <= 0:
            raise ValueError("cookie lifetime must be positive")
        if rotation_interval is not None and rotation_interval <= 0:
            raise ValueError("cookie rotation interval must be positive")
        self._random = random_bytes
        self._current = secret if secret is not None else random_bytes(32)
        self._previous: bytes | None = None
        self._period_keys: dict[tuple[bytes, int], bytes] = {}
        # The last cookie found valid, its address, the time and the contents: the gate and
        # then the connection it admits check the same cookie at the same time.
        self._last_valid: tuple[bytes, object, float, CookieContents] | None = None
        self.lifetime = lifetime
        self.rotation_interval = rotation_interval

    def rotate(self, now: float | None = None) -> None:
        """New current secret; the old one stays valid until the next rotation."""
        self._previous = self._current
        self._current = self._random(32)
        self._period_keys.clear()
        self._last_valid = None

    def _period(self, tick: int) -> int | None:
        if self.rotation_interval is None:
            return None
        return int(tick // self.rotation_interval)

    def _key(self, secret: bytes, period: int | None) -> bytes:
        if period is None:
            return secret
        key = self._period_keys.get((secret, period))
        if key is None:
            if len(self._period_keys) >= 8:
                self._period_keys.clear()
            key = hmac_digest(secret, _PERIOD_LABEL + struct.pack("!Q", period), "sha256")
            self._period_keys[(secret, period)] = key
        return key

    @staticmethod
    def _mac(secret: bytes, body: bytes, address: bytes) -> bytes:
        return hmac_digest(secret, _LABEL + body + address, "sha256")

    def make(
        self, now: float, client_address: object, ch1_hash: bytes, extra: bytes = b""
    ) -> bytes:
        """A cookie for this client binding the ClientHello1 hash and `extra`."""
        if len(ch1_hash) > 255 or len(extra) > 0xFFFF - 300:
            raise ValueError("cookie contents too long")
        tick = int(now) & _TICK_MASK
        body = (
            struct.pack("!IB", tick, len(ch1_hash))
            + ch1_hash
            + struct.pack("!H", len(extra))
            + extra
        )
        key = self._key(self._current, self._period(tick))
        return body + self._mac(key, body, _address_bytes(client_address))

    def check(self, cookie: bytes, now: float, client_address: object) -> CookieContents | None:
        """The contents of a valid, unexpired cookie from this address, else None.

        Never raises on malformed input: whatever the network sent gives None.
        """
        last = self._last_valid
        if last is not None and last[2] == now and last[0] == cookie and last[1] == client_address:
            return last[3]  # the same answer as a second full check, without its MACs
        if len(cookie) < _MIN_LENGTH:
            return None
        tick, hash_len = struct.unpack_from("!IB", cookie, 0)
        extra_at = 5 + hash_len
        if extra_at + 2 + _MAC_LENGTH > len(cookie):
            return None
        (extra_len,) = struct.unpack_from("!H", cookie, extra_at)
        body_len = extra_at + 2 + extra_len
        if body_len + _MAC_LENGTH != len(cookie):
            return None
        body, mac = cookie[:body_len], cookie[body_len:]
        address = _address_bytes(client_address)
        period = self._period(tick)
        current = self._period(int(now) & _TICK_MASK)
        if period is not None and current is not None and not 0 <= current - period <= 1:
            return None  # only the current and the previous period's keys are accepted
        # Compute both MACs whatever the outcome so timing says nothing about which secret.
        ok = hmac.compare_digest(self._mac(self._key(self._current, period), body, address), mac)
        if self._previous is not None:
            key = self._key(self._previous, period)
            ok |= hmac.compare_digest(self._mac(key, body, address), mac)
        if not ok:
            return None
        age = (int(now) - tick) & _TICK_MASK  # a tick from the future wraps to a huge age
        if age > self.lifetime:
            return None
        contents = CookieContents(
            tick, bytes(cookie[5:extra_at]), bytes(cookie[extra_at + 2 : body_len])
        )
        if type(cookie) is bytes:
            self._last_valid = (cookie, client_address, now, contents)
        return contents


# The cookie's `extra` for a HelloRetryRequest: the suite and the group it chose (0: none),
# all a stateless server needs to rebuild that HelloRetryRequest byte for byte.
_RETRY_EXTRA = struct.Struct("!HH")


def pack_cookie_extra(suite: int, group: int | None, ech: bytes = b"") -> bytes:
    """The cookie's `extra` naming the HelloRetryRequest's suite and group, then what it
    keeps of Encrypted Client Hello (ServerEch.retry_state)."""
    return _RETRY_EXTRA.pack(suite, group or 0) + ech


def unpack_cookie_extra(extra: bytes) -> tuple[int, int | None] | None:
    """(suite, group or None) from a cookie's `extra`; None if it is not one of ours."""
    ech = extra[_RETRY_EXTRA.size :]
    if len(extra) < _RETRY_EXTRA.size or not (
        ech in (b"", b"\x01") or (len(ech) > 6 and ech[0] == 2)
    ):
        return None
    suite, group = _RETRY_EXTRA.unpack_from(extra)
    return int(suite), int(group) or None


def cookie_ech_state(extra: bytes) -> bytes:
    """The Encrypted Client Hello state a cookie's `extra` carries (b"": none)."""
    return extra[_RETRY_EXTRA.size :]
