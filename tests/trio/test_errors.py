"""The exceptions a user catches: one base class, one class per way a connection ends, each
raised by the trio API where the docs say, and each also a trio.BrokenResourceError."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio

import dtls13
from dtls13 import (
    AlertDescription,
    CertificateVerificationFailed,
    ClientConfig,
    ConnectionEnded,
    ConnectionFailed,
    DTLSChannel,
    DTLSEndpoint,
    DTLSError,
    HandshakeFailed,
    HandshakeTimeout,
    LocalProtocolError,
    PeerClosed,
    PeerUnreachable,
    open_dtls_client,
)
from dtls13.errors import error_for
from dtls13.memory import PoolSet
from tests.support.dtls_pair import pki
from tests.support.trio_helpers import GENEROUS, configs, echo, udp_socket


def test_every_exception_is_a_dtls_error_and_exported() -> None:
    for name in (
        "LocalProtocolError", "ConnectionEnded", "PeerClosed", "ConnectionFailed",
        "HandshakeFailed", "CertificateVerificationFailed", "HandshakeTimeout",
        "PeerUnreachable",
    ):  # fmt: skip
        cls = getattr(dtls13, name)
        assert issubclass(cls, DTLSError) and name in dtls13.__all__
    assert issubclass(CertificateVerificationFailed, HandshakeFailed)
    assert issubclass(HandshakeTimeout, HandshakeFailed)
    assert issubclass(PeerUnreachable, HandshakeFailed)
    assert not issubclass(PeerClosed, HandshakeFailed)
    # The alert module's name for API misuse is the same class.
    from dtls13.alerts import LocalProtocolError as from_alerts

    assert from_alerts is LocalProtocolError


def ended(**kw: Any) -> ConnectionEnded:
    base: dict[str, Any] = {"reason": "why", "alert": None, "by_peer": False}
    return error_for(**{**base, **kw})


def test_error_for_picks_the_class_of_each_ending() -> None:
    closed = ended(alert=AlertDescription.close_notify, by_peer=True, handshake_complete=True)
    assert type(closed) is PeerClosed
    alert = ended(alert=AlertDescription.decrypt_error, handshake_complete=True)
    assert type(alert) is ConnectionFailed and "we sent decrypt_error" in str(alert)
    failure = AlertDescription.handshake_failure
    refused = ended(alert=failure, by_peer=True, handshake_complete=False)
    assert type(refused) is HandshakeFailed
    assert refused.alert is AlertDescription.handshake_failure and refused.by_peer
    assert "the peer sent handshake_failure" in str(refused)
    timeout = ended(timed_out=True, handshake_complete=False)
    assert type(timeout) is HandshakeTimeout
    cert = ended(
        alert=AlertDescription.unknown_ca,
        handshake_complete=False,
        certificate_error="validation failed: candidates exhausted",
    )
    assert type(cert) is CertificateVerificationFailed
    assert isinstance(cert, CertificateVerificationFailed)
    assert cert.verification_error == "validation failed: candidates exhausted"
    assert type(ended(unreachable=True, handshake_complete=False)) is PeerUnreachable


@pytest.fixture
def pools() -> PoolSet:
    return PoolSet()


@asynccontextmanager
async def server(pools: PoolSet, handler: Any = echo) -> AsyncIterator[tuple[str, int]]:
    """A server's address while the block runs."""
    sock = await udp_socket()
    _, server_config = configs()
    endpoint = DTLSEndpoint(sock, pools=pools, dos=GENEROUS)
    async with endpoint, trio.open_nursery() as nursery:
        await nursery.start(endpoint.serve, server_config, handler)
        yield sock.getsockname()[:2]
        nursery.cancel_scope.cancel()


async def test_untrusted_server_certificate_raises_certificate_verification_failed(
    pools: PoolSet,
) -> None:
    client_config, _ = configs(cafile=pki("ec384").root_pem)  # trusts another CA
    async with server(pools) as addr:
        with trio.fail_after(5), pytest.raises(CertificateVerificationFailed) as info:
            await open_dtls_client(*addr, client_config, pools=pools)
        exc = info.value
        assert isinstance(exc, trio.BrokenResourceError)  # as trio.DTLSChannel raises
        assert exc.alert is AlertDescription.unknown_ca and not exc.by_peer
        assert "candidates exhausted" in exc.verification_error
        assert "no chain leads from the certificate to a trusted CA" in str(exc)


async def test_alert_from_the_server_raises_handshake_failed_with_that_alert(
    pools: PoolSet,
) -> None:
    # CCM-8 is off by default on the server: no cipher suite in common.
    client_config, _ = configs(cipher_suites=["TLS_AES_128_CCM_8_SHA256"])
    async with server(pools) as addr:
        with trio.fail_after(5), pytest.raises(HandshakeFailed) as info:
            await open_dtls_client(*addr, client_config, pools=pools)
        assert type(info.value).__mro__[1] is HandshakeFailed
        assert info.value.by_peer and info.value.alert is AlertDescription.handshake_failure


async def test_nothing_listening_raises_peer_unreachable_at_once(pools: PoolSet) -> None:
    with trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM) as sock:
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client_config, _ = configs()
    started = time.monotonic()
    with trio.fail_after(5), pytest.raises(PeerUnreachable) as info:
        await open_dtls_client("127.0.0.1", port, client_config, pools=pools)
    # The port stayed closed for the first flight and its retransmissions at 1 and 3 s:
    # given up then, not after the handshake timeout (120 s).
    assert 2.5 < time.monotonic() - started < 5
    assert f"no answer from 127.0.0.1:{port}" in str(info.value)
    assert isinstance(info.value, trio.BrokenResourceError)


async def test_a_server_that_starts_a_moment_late_is_still_reached(pools: PoolSet) -> None:
    sock = await udp_socket()
    addr = sock.getsockname()[:2]
    sock.close()  # nothing listens there for the first half second
    client_config, server_config = configs()

    async def start_late(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        await trio.sleep(0.5)
        late = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
        await late.bind(addr)
        async with DTLSEndpoint(late, pools=pools, dos=GENEROUS) as endpoint:
            await endpoint.serve(server_config, echo)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(start_late)
        with trio.fail_after(5):
            channel = await open_dtls_client(*addr, client_config, pools=pools)
        assert channel.endpoint.statistics().port_unreachable >= 1
        await channel.aclose()
        nursery.cancel_scope.cancel()


async def test_port_unreachable_does_not_end_a_handshake_once_the_peer_answered(
    pools: PoolSet,
) -> None:
    client_config, _ = configs()
    async with server(pools) as addr:
        channel = await open_dtls_client(*addr, client_config, pools=pools)
        channel.endpoint._port_unreachable()  # a forged ICMP report arrives now
        await channel.send(b"still here")
        with trio.fail_after(5):
            assert await channel.receive() == b"still here"
        assert channel.endpoint.statistics().port_unreachable == 1
        await channel.aclose()


async def test_silent_server_raises_handshake_timeout(pools: PoolSet) -> None:
    client_config, _ = configs(handshake_timeout=1.5)
    with await udp_socket() as silent:
        addr = silent.getsockname()[:2]
        async with DTLSEndpoint(await udp_socket(), pools=pools) as endpoint:
            channel = endpoint.connect(addr, client_config)
            with trio.fail_after(5), pytest.raises(HandshakeTimeout) as info:
                await channel.do_handshake()
            assert "timed out after 1.5 s" in str(info.value)


async def test_send_after_the_peer_closed_raises_peer_closed(pools: PoolSet) -> None:
    async def one_echo_then_close(channel: DTLSChannel) -> None:
        await channel.send(await channel.receive())

    client_config, _ = configs()
    async with server(pools, one_echo_then_close) as addr:
        channel = await open_dtls_client(*addr, client_config, pools=pools)
        await channel.send(b"once")
        with trio.fail_after(5):
            assert await channel.receive() == b"once"
            with pytest.raises(trio.EndOfChannel):
                await channel.receive()
        with pytest.raises(PeerClosed) as info:
            await channel.send(b"twice")
        assert info.value.by_peer and info.value.alert is AlertDescription.close_notify
        # Still answered after the end: how big a message could have been.
        assert channel.get_cleartext_mtu() == 1178
        await channel.aclose()


async def test_misuse_raises_local_protocol_error(pools: PoolSet) -> None:
    client_config = ClientConfig(server_name="localhost", verify=False)
    async with DTLSEndpoint(await udp_socket(), pools=pools) as endpoint:
        channel = endpoint.connect(("127.0.0.1", 9), client_config)
        with pytest.raises(LocalProtocolError):
            channel.send_early_data(b"no session to resume")
        channel.close()
