"""ClientHello extension order shuffled per connection (permute_extensions), a first
ClientHello padded to fill its datagram (pad_client_hello, RFC 7685), and a server that does
not acknowledge server_name (acknowledge_server_name=False, RFC 6066 §3)."""

from __future__ import annotations

from typing import Any

import pytest

from dtls13 import ImportedPsk
from dtls13.config import ClientConfig, ServerConfig
from dtls13.connection import Connection
from dtls13.events import HandshakeCompleted
from dtls13.handshake import messages as msgs
from dtls13.handshake.client import ClientHandshake
from dtls13.handshake.constants import ExtensionType
from dtls13.handshake.extensions import Extension
from dtls13.handshake.permutation import permuted
from dtls13.handshake.server import ServerHandshake
from dtls13.memory import PoolSet
from tests.support.dtls_pair import SERVER_ADDR, make_pair, wall_clock

PSK = (b"client one", bytes(range(32)))
IMPORTED = ImportedPsk(b"sensor-17", b"A" * 32, b"plant-3")


def _hello(**kw: Any) -> msgs.ClientHello:
    cfg = ClientConfig(psk=PSK, alpn_protocols=["a"], server_name="example.com", **kw)
    hs = ClientHandshake(cfg, wall_clock=wall_clock, count=lambda name, n: None)
    hs.start()
    assert hs.client_hello is not None
    return hs.client_hello


def _order(hello: msgs.ClientHello) -> list[int]:
    return [e.type for e in hello.extensions]


def test_permuted_extensions_change_order_per_connection_psk_last() -> None:
    orders = [_order(_hello(permute_extensions=True)) for _ in range(6)]
    assert len({tuple(o) for o in orders}) > 1
    for order in orders:
        assert order[-1] == ExtensionType.pre_shared_key
        assert sorted(order) == sorted(orders[0])


def test_without_the_option_the_order_is_fixed() -> None:
    orders = {tuple(_order(_hello())) for _ in range(4)}
    assert len(orders) == 1


def test_the_order_depends_only_on_the_seed() -> None:
    exts = [Extension(t, b"") for t in (0, 10, 13, 16, 43, 51, 41, 45)]
    a, b = permuted(exts, b"\x01" * 32), permuted(exts[::-1], b"\x01" * 32)
    assert [e.type for e in a] == [e.type for e in b]  # the same order for the same seed
    assert a[-1].type == ExtensionType.pre_shared_key
    # Another seed (another connection's random) gives another order, for some seed.
    assert any(
        [e.type for e in permuted(exts, bytes([i]) * 32)] != [e.type for e in a]
        for i in range(2, 10)
    )


def test_a_permuting_client_completes_a_handshake_with_a_hello_retry() -> None:
    # The second ClientHello keeps the first one's order (the seed test above): both carry
    # the same random (RFC 8446 §4.1.2).
    pair = make_pair(
        client={"permute_extensions": True, "key_share_groups": ["secp256r1"]},
        server={"groups": ["x25519"]},
    )
    assert pair.handshake()
    pair.close()


@pytest.mark.parametrize("ack", [True, False])
def test_the_server_name_acknowledgement_can_be_switched_off(monkeypatch: Any, ack: bool) -> None:
    sent: list[Any] = []
    real = ServerHandshake._send

    def spy(self: Any, msg: Any, epoch: int | None, **kw: Any) -> None:
        sent.append(msg)
        real(self, msg, epoch, **kw)

    monkeypatch.setattr(ServerHandshake, "_send", spy)
    pair = make_pair(server={"acknowledge_server_name": ack})
    assert pair.handshake()
    ee = next(m for m in sent if isinstance(m, msgs.EncryptedExtensions))
    assert (ee.extension(ExtensionType.server_name) is not None) is ack
    pair.close()


def _first_flight(cfg: ClientConfig) -> tuple[list[bytes], msgs.ClientHello]:
    pools = PoolSet()
    conn = Connection(cfg, pools=pools, wall_clock=wall_clock)
    conn.connect(SERVER_ADDR, 0.0)
    out = conn.datagrams_to_send(0.0)
    data = [bytes(lease) for lease, _ in out]
    for lease, _ in out:
        lease.release()
    hello = conn._hs.client_hello  # type: ignore[union-attr]
    conn.abandon()
    pools.release_owner(conn.owner)
    assert hello is not None
    return data, hello


@pytest.mark.parametrize("mtu", [600, 1200])
def test_a_padded_client_hello_fills_the_datagram_before_pre_shared_key(mtu: int) -> None:
    cfg = ClientConfig(imported_psks=[IMPORTED], pad_client_hello=True, mtu=mtu)
    datagrams, hello = _first_flight(cfg)
    assert [len(d) for d in datagrams] == [mtu]
    types = _order(hello)
    assert types[-2:] == [ExtensionType.padding, ExtensionType.pre_shared_key]
    padding = hello.extension(ExtensionType.padding)
    assert padding is not None and padding == bytes(len(padding))


def test_without_the_option_the_client_hello_is_not_padded() -> None:
    datagrams, hello = _first_flight(ClientConfig(verify=False))
    assert len(datagrams) == 1 and len(datagrams[0]) < 300
    assert hello.extension(ExtensionType.padding) is None


def test_a_client_hello_larger_than_the_datagram_gets_no_padding() -> None:
    cfg = ClientConfig(
        verify=False, key_share_groups=["X25519MLKEM768"], pad_client_hello=True, mtu=1300
    )
    datagrams, hello = _first_flight(cfg)
    assert len(datagrams) == 2 and hello.extension(ExtensionType.padding) is None


def test_a_padded_psk_hello_resumes_and_the_retried_hello_is_not_padded() -> None:
    # The binders cover the padding (it comes before pre_shared_key); the ClientHello after
    # a HelloRetryRequest drops it (RFC 8446 §4.1.2 allows that; the cookie proved the
    # address).
    client = ClientConfig(
        imported_psks=[IMPORTED], pad_client_hello=True, key_share_groups=["secp256r1"]
    )
    server = ServerConfig(imported_psks=[IMPORTED], groups=["x25519"], debug=True)
    pair = make_pair(cfgs=(client, server))
    hellos: list[msgs.ClientHello] = []
    real = ClientHandshake._send

    def spy(self: Any, msg: Any, epoch: int | None, **kw: Any) -> None:
        if isinstance(msg, msgs.ClientHello):
            hellos.append(msg)
        real(self, msg, epoch, **kw)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ClientHandshake, "_send", spy)
        assert pair.handshake()
    done = next(e for e in pair.client_events if isinstance(e, HandshakeCompleted))
    assert done.psk_identity is not None
    assert [h.extension(ExtensionType.padding) is not None for h in hellos] == [True, False]
    pair.close()


def test_pad_client_hello_must_be_a_bool() -> None:
    with pytest.raises(TypeError, match="pad_client_hello"):
        ClientConfig(verify=False, pad_client_hello=1)  # type: ignore[arg-type]
