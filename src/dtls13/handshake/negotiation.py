"""What the server chooses from a ClientHello: one place for the cipher suite, the key
exchange group and the HelloRetryRequest, used by the stateless gate (handshake/gate.py),
a connection answering a ClientHello it cannot act on, and the server handshake alike."""

from __future__ import annotations

from collections.abc import Collection, Iterable

from ..crypto.suites import CipherSuite
from . import extensions as ext
from . import messages as msgs
from .constants import DTLS13_VERSION, ExtensionType
from .settings import ServerSettings


def choose_suite(config: ServerSettings, offered: Collection[int]) -> CipherSuite | None:
    """Our most preferred cipher suite the client offers (None: none in common)."""
    for suite in config.suites:
        if suite in offered:
            return suite
    return None


def choose_share_group(config: ServerSettings, shares: Collection[int]) -> int | None:
    """Our most preferred group the client sent a key share for (None: none)."""
    for group in config.group_order:
        if group in shares:
            return group
    return None


def choose_retry_group(config: ServerSettings, supported: Iterable[int]) -> int | None:
    """The group a HelloRetryRequest asks for: our most preferred the client supports."""
    offered = set(supported)
    for group in config.group_order:
        if group in offered:
            return group
    return None


def retry_group(
    config: ServerSettings, shares: Collection[int] | None, supported: Iterable[int] | None
) -> tuple[bool, int | None]:
    """For a HelloRetryRequest: (usable, group to ask for). A share we can use needs no
    group (None); else the group to ask for, and (False, None) when there is none."""
    if shares is not None and choose_share_group(config, shares) is not None:
        return True, None
    group = choose_retry_group(config, supported or ())
    return group is not None, group


def hello_retry_request(suite: int, group: int | None, cookie: bytes | None) -> msgs.ServerHello:
    """The HelloRetryRequest for these choices; the same inputs give the same bytes
    (a stateless server rebuilds it from its cookie, RFC 9147 §5.1)."""
    extensions = [
        ext.make_extension(
            ExtensionType.supported_versions, ext.push_supported_versions_server, DTLS13_VERSION
        )
    ]
    if group is not None:
        extensions.append(
            ext.make_extension(ExtensionType.key_share, ext.push_key_share_hrr, group)
        )
    if cookie is not None:
        extensions.append(ext.make_extension(ExtensionType.cookie, ext.push_cookie, cookie))
    return msgs.ServerHello(
        random=msgs.HELLO_RETRY_REQUEST_RANDOM, cipher_suite=suite, extensions=tuple(extensions)
    )


# HelloRetryRequest bodies up to their cookie, by (suite, group, cookie length): the cookie
# extension comes last, so everything before the cookie's bytes depends on these only.
_HRR_PREFIXES: dict[tuple[int, int | None, int], bytes] = {}


def hello_retry_request_body(suite: int, group: int | None, cookie: bytes) -> bytes:
    """The encoded body of ``hello_retry_request(suite, group, cookie)``, byte for byte."""
    key = (suite, group, len(cookie))
    prefix = _HRR_PREFIXES.get(key)
    if prefix is None:
        stand_in = bytes(len(cookie))  # the codec builds it once per key
        _, whole = msgs.push_message(hello_retry_request(suite, group, stand_in))
        if not whole.endswith(stand_in):
            raise AssertionError("the cookie is not the end of the HelloRetryRequest")
        prefix = whole[: len(whole) - len(stand_in)]
        if len(_HRR_PREFIXES) >= 64:
            _HRR_PREFIXES.clear()
        _HRR_PREFIXES[key] = prefix
    return prefix + cookie
