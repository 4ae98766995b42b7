"""Datagrams of other protocols on a DTLS-SRTP port (RFC 7983 §7): the sans-IO server
endpoint hands STUN, ZRTP, TURN channel and RTP/RTCP datagrams to the application and
keeps nothing for them; without a handler they are dropped and counted as before."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from dtls_pair import SERVER_ADDR, configs, shutdown_world, wall_clock
from netsim import SimNetwork

from dtls13.connection import Connection
from dtls13.demux import DatagramKind, classify, is_other_protocol
from dtls13.endpoint import ServerEndpoint
from dtls13.memory import PoolSet

STUN = bytes.fromhex("0001 0000 2112a442") + bytes(12)  # a STUN binding request header
RTP = bytes([0x80, 0x60]) + bytes(30)
OTHERS = [b"\x00", b"\x03", b"\x10", b"\x13", b"\x40", b"\x4f", b"\x80", b"\xbf"]
NOT_OTHERS = [b"", b"\x04", b"\x0f", b"\x14", b"\x16", b"\x2f", b"\x3f", b"\x50", b"\x7f", b"\xc0"]


def test_first_byte_ranges_of_rfc7983() -> None:
    expected = {
        **dict.fromkeys(range(0, 4), DatagramKind.STUN),
        **dict.fromkeys(range(16, 20), DatagramKind.ZRTP),
        **dict.fromkeys(range(20, 64), DatagramKind.DTLS),
        **dict.fromkeys(range(64, 80), DatagramKind.TURN_CHANNEL),
        **dict.fromkeys(range(128, 192), DatagramKind.RTP_RTCP),
    }
    for byte in range(256):
        kind = expected.get(byte, DatagramKind.UNKNOWN)
        assert classify(bytes([byte, 0])) is kind
        assert is_other_protocol(bytes([byte])) == (
            kind not in (DatagramKind.DTLS, DatagramKind.UNKNOWN)
        )
    assert classify(b"") is DatagramKind.UNKNOWN and not is_other_protocol(b"")
    # Every DTLS 1.3 record starts in 20..63: plaintext content types and unified headers.
    assert classify(b"\x16") is classify(b"\x2f") is classify(b"\x3f") is DatagramKind.DTLS


def _world(handler: Any, debug: bool = True) -> tuple[SimNetwork, Connection, ServerEndpoint]:
    ccfg, scfg = configs()
    scfg = dataclasses.replace(scfg, debug=debug)
    pools = PoolSet()
    net = SimNetwork(7)
    ep = ServerEndpoint(scfg, pools=pools, wall_clock=wall_clock, on_non_dtls_datagram=handler)
    net.add(SERVER_ADDR, ep)
    client = Connection(ccfg, pools=pools, wall_clock=wall_clock)
    net.add(("10.0.0.1", 40000), client)
    return net, client, ep


def test_server_endpoint_hands_other_protocols_to_the_handler_beside_a_handshake() -> None:
    got: list[tuple[bytes, Any]] = []
    net, client, ep = _world(lambda data, addr: got.append((data, addr)))
    client.connect(SERVER_ADDR, 0.0)
    peer = ("10.0.0.1", 40000)
    for data in [STUN, RTP, *OTHERS]:
        assert ep.receive_datagram(data, peer, 0.0) is None
    assert net.run(lambda: client.handshake_complete)
    for data in NOT_OTHERS:
        ep.receive_datagram(data, ("10.9.9.9", 1), net.now)
    assert got == [(d, peer) for d in [STUN, RTP, *OTHERS]]
    assert all(type(d) is bytes for d, _ in got)
    s = ep.statistics()
    assert s.non_dtls_datagrams == 2 + len(OTHERS) and s.non_dtls_handler_errors == 0
    assert s.gate_dropped >= len(NOT_OTHERS) - 1  # the DTLS-looking ones went to the gate
    shutdown_world(net, ep, [client])
    assert ep.pools.in_use == 0


def test_a_flood_of_media_costs_no_state_and_no_memory() -> None:
    seen = [0]

    def count(data: bytes, addr: Any) -> None:
        seen[0] += 1

    net, client, ep = _world(count)
    for i in range(5000):
        ep.receive_datagram(RTP, (f"10.{i % 250}.0.1", 1000 + i), 0.0)
    s = ep.statistics()
    assert seen[0] == s.non_dtls_datagrams == 5000
    # Nothing was admitted, parsed or kept: no token bucket, no connection, no memory.
    assert s.tracked_sources == 0 and s.connections == 0 and s.half_open == 0
    assert s.memory_high_water == 0 and s.gate == ep.statistics().gate
    assert s.gate_dropped == s.rate_limited == 0
    assert ep.pools.in_use == 0
    shutdown_world(net, ep, [client])


def test_without_a_handler_other_protocols_are_dropped_and_counted_as_before() -> None:
    net, client, ep = _world(None)
    for data in (STUN, RTP):
        assert ep.receive_datagram(data, ("10.0.0.9", 9), 0.0) is None
    s = ep.statistics()
    assert s.non_dtls_datagrams == 0 and s.gate_dropped == 2
    shutdown_world(net, ep, [client])


def test_a_handler_that_raises_is_counted_and_raised_only_in_debug_mode() -> None:
    def broken(data: bytes, addr: Any) -> None:
        raise RuntimeError("application bug")

    net, client, ep = _world(broken, debug=False)
    assert ep.receive_datagram(STUN, ("10.0.0.9", 9), 0.0) is None
    assert ep.statistics().non_dtls_handler_errors == 1
    shutdown_world(net, ep, [client])
    net, client, ep = _world(broken, debug=True)
    with pytest.raises(RuntimeError, match="application bug"):
        ep.receive_datagram(STUN, ("10.0.0.9", 9), 0.0)
    shutdown_world(net, ep, [client])
