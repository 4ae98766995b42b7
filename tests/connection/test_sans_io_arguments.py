"""The sans-IO calls check what the program hands them: a datagram that is not bytes-like
or a time that is not a number raises at once, instead of being taken for network input
(and dropped as malformed, or compared with a deadline somewhere later)."""

from __future__ import annotations

import math
from array import array
from typing import Any

import pytest

from dtls13.connection import Connection
from dtls13.endpoint import ServerEndpoint
from dtls13.memory import PoolSet
from tests.support.dtls_pair import SERVER_ADDR, configs, wall_clock

PEER = ("10.0.0.1", 5000)


def _client(pools: PoolSet) -> Connection:
    ccfg, _ = configs()
    return Connection(ccfg, pools=pools, wall_clock=wall_clock)


def _endpoint(pools: PoolSet) -> ServerEndpoint:
    _, scfg = configs()
    return ServerEndpoint(scfg, pools=pools, wall_clock=wall_clock)


@pytest.mark.parametrize("data", ["\x16\xfe\xfd", 22, None, [22, 254, 253]])
def test_a_datagram_that_is_not_bytes_like_raises_type_error(data: Any) -> None:
    pools = PoolSet()
    client = _client(pools)
    client.connect(SERVER_ADDR, 0.0)
    endpoint = _endpoint(pools)
    with pytest.raises(TypeError, match="datagram must be bytes-like"):
        client.receive_datagram(data, SERVER_ADDR, 0.1)
    with pytest.raises(TypeError, match="datagram must be bytes-like"):
        endpoint.receive_datagram(data, PEER, 0.1)
    assert endpoint.statistics().datagrams == 0
    client.close()
    endpoint.close()
    endpoint.release()
    pools.release_owner(client.owner)


@pytest.mark.parametrize(
    "data", [b"\x16", bytearray(b"\x16"), memoryview(b"\x16"), array("B", [22])]
)
def test_any_bytes_like_datagram_is_network_input(data: Any) -> None:
    # Too short to be a record: dropped and counted, never raised.
    pools = PoolSet()
    endpoint = _endpoint(pools)
    assert endpoint.receive_datagram(data, PEER, 0.1) is None
    assert endpoint.statistics().datagrams == 1
    endpoint.close()
    endpoint.release()


@pytest.mark.parametrize("now", ["1.0", None, True])
def test_a_time_that_is_not_a_number_raises_type_error(now: Any) -> None:
    pools = PoolSet()
    client = _client(pools)
    with pytest.raises(TypeError, match="now must be a time"):
        client.connect(SERVER_ADDR, now)
    client.connect(SERVER_ADDR, 0.0)
    with pytest.raises(TypeError, match="now must be a time"):
        client.handle_timer(now)
    with pytest.raises(TypeError, match="now must be a time"):
        client.receive_datagram(b"\x16", SERVER_ADDR, now)
    with pytest.raises(TypeError, match="now must be a time"):
        client.datagrams_to_send(now)
    endpoint = _endpoint(pools)
    with pytest.raises(TypeError, match="now must be a time"):
        endpoint.receive_datagram(b"\x16", PEER, now)
    with pytest.raises(TypeError, match="now must be a time"):
        endpoint.handle_timer(now)
    with pytest.raises(TypeError, match="now must be a time"):
        endpoint.datagrams_to_send(now)
    client.close()
    endpoint.close()
    endpoint.release()
    pools.release_owner(client.owner)


def test_a_nan_time_raises_value_error() -> None:
    pools = PoolSet()
    client = _client(pools)
    with pytest.raises(ValueError, match="NaN"):
        client.connect(SERVER_ADDR, math.nan)
    client.connect(SERVER_ADDR, 0)  # an int is a time
    with pytest.raises(ValueError, match="NaN"):
        client.handle_timer(math.nan)
    with pytest.raises(ValueError, match="NaN"):
        client.datagrams_to_send(math.nan)
    client.close()
    pools.release_owner(client.owner)


def test_set_ciphertext_mtu_takes_an_int() -> None:
    pools = PoolSet()
    client = _client(pools)
    with pytest.raises(TypeError, match="MTU must be an int"):
        client.set_ciphertext_mtu("1400")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="MTU must be an int"):
        client.set_ciphertext_mtu(1400.0)  # type: ignore[arg-type]
    client.set_ciphertext_mtu(1400)
    assert client.mtu == 1400
    pools.release_owner(client.owner)


def test_a_server_endpoint_needs_a_server_config_and_dos_limits() -> None:
    ccfg, scfg = configs()
    with pytest.raises(TypeError, match="ServerConfig"):
        ServerEndpoint(ccfg)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="DoSProtectionConfig"):
        ServerEndpoint(scfg, dos={"max_half_open": 10})  # type: ignore[arg-type]
