"""ClientHello extension order shuffled per connection (permute_extensions), and a server
that does not acknowledge server_name (acknowledge_server_name=False, RFC 6066 §3)."""

from __future__ import annotations

from typing import Any

import pytest

from dtls13.config import ClientConfig
from dtls13.handshake import messages as msgs
from dtls13.handshake.client import ClientHandshake
from dtls13.handshake.constants import ExtensionType
from dtls13.handshake.extensions import Extension
from dtls13.handshake.permutation import permuted
from dtls13.handshake.server import ServerHandshake
from tests.support.dtls_pair import make_pair, wall_clock

PSK = (b"client one", bytes(range(32)))


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
