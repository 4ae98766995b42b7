"""record_size_limit (RFC 8449): advertised in ClientHello/EncryptedExtensions and honoured."""

from __future__ import annotations

from typing import Any

import pytest

from dtls13.alerts import AlertDescription
from dtls13.config import ClientConfig, ServerConfig
from dtls13.handshake.flights import Flight
from dtls13.memory import PoolSet
from dtls13.record.header import parse_header_untrusted
from tests.support.dtls_pair import CLIENT_ADDR, SERVER_ADDR, make_pair
from tests.support.netsim import Impairments

TAG = 16  # AES-GCM


def _protected_sizes(data: bytes) -> list[int]:
    """Inner plaintext sizes (content + type + padding) of a datagram's protected records."""
    sizes, offset = [], 0
    while offset < len(data):
        first, _, _, header_length, length = parse_header_untrusted(data, offset, 0)
        if first & 0xE0 == 0x20:
            sizes.append(length - TAG)
        offset += header_length + length
    return sizes


def _watch(pair: Any) -> dict[Any, list[int]]:
    seen: dict[Any, list[int]] = {CLIENT_ADDR: [], SERVER_ADDR: []}

    def tamper(src: Any, dst: Any, data: bytes) -> bytes:
        seen[src] += _protected_sizes(data)
        return data

    pair.net.tamper = tamper
    return seen


def test_limits_advertised_both_ways_cap_handshake_fragments_and_application_data() -> None:
    pair = make_pair(
        client={"record_size_limit": 200}, server={"record_size_limit": 100}, kind="rsa2048"
    )
    seen = _watch(pair)
    assert pair.handshake()
    # The server's certificate flight went out in records the client's limit allows.
    assert max(seen[SERVER_ADDR]) <= 200 and len(seen[SERVER_ADDR]) > 8
    assert max(seen[CLIENT_ADDR]) <= 100
    assert pair.client.get_cleartext_mtu() == 99
    assert pair.server.get_cleartext_mtu() == 199
    with pytest.raises(ValueError, match="record_size_limit"):
        pair.client.send(b"x" * 100)
    with pytest.raises(ValueError, match="record_size_limit"):
        pair.server.send(b"y" * 200)
    assert pair.exchange(b"c" * 99, b"s" * 199)
    assert max(seen[CLIENT_ADDR]) <= 100 and max(seen[SERVER_ADDR]) <= 200
    assert pair.terminated("client") is None and pair.terminated("server") is None
    pair.close()
    assert pair.pools.in_use == 0


def test_limit_counts_padding() -> None:
    pair = make_pair(
        client={"record_padding": 64, "record_size_limit": 16385},
        server={"record_size_limit": 150},
    )
    assert pair.handshake()
    # 150 // 64 * 64 = 128 bytes of inner plaintext: 127 of content.
    assert pair.client.get_cleartext_mtu() == 127
    seen = _watch(pair)
    assert pair.exchange(b"c" * 127, b"s")
    assert max(seen[CLIENT_ADDR]) == 128
    pair.close()
    assert pair.pools.in_use == 0


def test_server_without_a_limit_still_honours_the_clients() -> None:
    pair = make_pair(client={"record_size_limit": 64}, kind="ec384")
    seen = _watch(pair)
    assert pair.handshake()
    assert max(seen[SERVER_ADDR]) <= 64
    assert pair.server.get_cleartext_mtu() == 63
    assert pair.client.get_cleartext_mtu() > 1000  # no limit came back in EncryptedExtensions
    assert pair.exchange(b"c" * 500, b"s" * 63)
    pair.close()
    assert pair.pools.in_use == 0


def test_limit_over_a_lossy_network() -> None:
    imp = Impairments(loss=0.2, reorder=0.2, duplicate=0.1)
    pair = make_pair(7, imp, client={"record_size_limit": 64}, server={"record_size_limit": 64})
    seen = _watch(pair)
    assert pair.handshake()
    assert pair.exchange(b"c" * 63, b"s" * 63)
    assert max(seen[CLIENT_ADDR] + seen[SERVER_ADDR]) <= 64
    pair.close()
    assert pair.pools.in_use == 0


@pytest.mark.parametrize("offender", ["client", "server"])
def test_oversized_record_gets_record_overflow(offender: str) -> None:
    pair = make_pair(client={"record_size_limit": 100}, server={"record_size_limit": 100})
    assert pair.handshake()
    sender = pair.client if offender == "client" else pair.server
    sender._peer_record_limit = None  # a peer that ignores our limit
    sender.send(b"z" * 100)  # 101 bytes with the content type
    victim = "server" if offender == "client" else "client"
    assert pair.net.run(lambda: pair.terminated(victim) is not None, max_time=10)
    ended = pair.terminated(victim)
    assert ended is not None and ended.alert == AlertDescription.record_overflow
    assert not ended.by_peer
    assert pair.received(victim) == []
    pair.close()
    assert pair.pools.in_use == 0


def test_limit_below_64_in_client_hello_is_refused() -> None:
    pair = make_pair(client={"record_size_limit": 100})

    def tamper(src: Any, dst: Any, data: bytes) -> bytes:
        # extension_type 28, length 2, value 100 -> 63
        return data.replace(b"\x00\x1c\x00\x02\x00\x64", b"\x00\x1c\x00\x02\x00\x3f")

    pair.net.tamper = tamper
    pair.client.connect(SERVER_ADDR, 0.0)
    pair.net.run(lambda: False, max_time=3)
    # illegal_parameter (RFC 8449 §4), but an unauthenticated hello only gets dropped.
    assert pair.server.stats["dropped_damaged_hello"] >= 1
    assert not pair.server.handshake_complete and not pair.client.handshake_complete
    pair.close()
    assert pair.pools.in_use == 0


def test_limit_below_64_is_illegal_parameter() -> None:
    from dtls13.alerts import IllegalParameter
    from dtls13.handshake.context import record_size_limit as _record_size_limit

    assert _record_size_limit(b"\x00\x40") == 64
    assert _record_size_limit(b"\xff\xff") == 16385
    with pytest.raises(IllegalParameter):
        _record_size_limit(b"\x00\x3f")


@pytest.mark.parametrize("value", [0, 63, 16386])
def test_config_refuses_limits_out_of_range(value: int) -> None:
    with pytest.raises(ValueError, match="record_size_limit"):
        ClientConfig(verify=False, record_size_limit=value)
    with pytest.raises(ValueError, match="record_size_limit"):
        ServerConfig(external_psks={b"id": bytes(16)}, record_size_limit=value)


class _Writer:
    """A datagram writer stand-in that records payload sizes."""

    def __init__(self) -> None:
        self.payloads: list[tuple[int, int]] = []
        self.seq = 0

    def space(self, epoch: int, *, last: bool = False) -> int:
        return 1000

    def add(self, epoch: int, content_type: int, payload: Any, *, last: bool = False) -> Any:
        from dtls13.record import RecordNumber

        self.payloads.append((epoch, len(payload)))
        self.seq += 1
        return RecordNumber(epoch, self.seq)

    def new_datagram(self) -> None:
        pass


def test_flight_emit_caps_only_protected_fragments() -> None:
    pools = PoolSet()
    flight = Flight(pools, None)
    flight.add(0, 1, 0, bytes(300))
    flight.add(2, 11, 1, bytes(300))
    writer = _Writer()
    assert flight.emit(writer, max_payload=76) == 1 + 5
    assert writer.payloads[0] == (0, 312)
    assert [n for e, n in writer.payloads[1:]] == [76, 76, 76, 76, 12 + 44]
    with pytest.raises(ValueError, match="record size limit"):
        flight.emit(writer, max_payload=12)
    flight.release()
    assert pools.in_use == 0
