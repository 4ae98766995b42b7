"""GREASE in the client's ClientHello (RFC 8701): what it offers, that it keeps the values
across a HelloRetryRequest, and that a server selecting a GREASE value is refused."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from dtls13._fast import Buffer
from dtls13.alerts import AlertDescription as A
from dtls13.connection import Connection
from dtls13.endpoint import ServerEndpoint
from dtls13.handshake import extensions as ext
from dtls13.handshake import messages as msgs
from dtls13.handshake.constants import DTLS13_VERSION, ExtensionType
from dtls13.handshake.grease import GREASE_VALUES, grease_values, is_grease
from dtls13.memory import PoolSet
from tests.support.conn_helpers import split_records
from tests.support.dtls_pair import (
    SERVER_ADDR,
    Pair,
    configs,
    first_session,
    make_pair,
    shutdown_world,
    wall_clock,
)
from tests.support.netsim import SimNetwork

ET = ExtensionType


def _hellos(data: bytes) -> list[msgs.ClientHello]:
    """The ClientHellos (whole, unfragmented) in a datagram as sent."""
    out = []
    for record in split_records(data):
        if record[0] != 22 or record[13] != 1:  # plaintext ClientHello records only
            continue
        message = record[13:]
        assert int.from_bytes(message[1:4], "big") == int.from_bytes(message[9:12], "big")
        hello = msgs.pull_message(message[0], message[12:])
        assert isinstance(hello, msgs.ClientHello)
        out.append(hello)
    return out


def _decode(hello: msgs.ClientHello, ext_type: ET, pull: Any) -> Any:
    data = hello.extension(ext_type)
    assert data is not None, ext_type
    return pull(Buffer(data=data))


def _sent_hello(**client: Any) -> msgs.ClientHello:
    ccfg, _ = configs(client=client)
    conn = Connection(ccfg, pools=PoolSet(), wall_clock=wall_clock)
    conn.connect(SERVER_ADDR, 0.0)
    ((lease, _),) = conn.datagrams_to_send(0.0)
    (hello,) = _hellos(lease.tobytes())
    lease.release()
    conn.abandon()
    return hello


def test_a_greasing_client_offers_one_grease_value_in_each_list() -> None:
    hello = _sent_hello(grease=True)
    values = grease_values(hello.random)
    assert hello.cipher_suites[0] == values.cipher_suite and is_grease(values.cipher_suite)
    versions = _decode(hello, ET.supported_versions, ext.pull_supported_versions_client)
    assert versions == (values.version, DTLS13_VERSION)
    offered_groups = _decode(hello, ET.supported_groups, ext.pull_supported_groups)
    assert offered_groups[0] == values.group and not any(map(is_grease, offered_groups[1:]))
    shares = _decode(hello, ET.key_share, ext.pull_key_share_client)
    assert shares[0] == ext.KeyShareEntry(values.group, b"\x00")
    assert not any(is_grease(s.group) for s in shares[1:])
    schemes = _decode(hello, ET.signature_algorithms, ext.pull_signature_algorithms)
    assert schemes[0] == values.signature_algorithm
    first, last = hello.extensions[0], hello.extensions[-1]
    assert (first.type, first.data) == (values.first_extension, b"")
    assert (last.type, last.data) == (values.last_extension, b"\x00")
    assert first.type != last.type and is_grease(first.type) and is_grease(last.type)
    grease_types = [e.type for e in hello.extensions if is_grease(e.type)]
    assert grease_types == [first.type, last.type]


def test_without_grease_nothing_reserved_is_offered() -> None:
    hello = _sent_hello()
    assert not any(map(is_grease, hello.cipher_suites))
    assert not any(is_grease(e.type) for e in hello.extensions)
    for ext_type, pull in (
        (ET.supported_versions, ext.pull_supported_versions_client),
        (ET.supported_groups, ext.pull_supported_groups),
        (ET.signature_algorithms, ext.pull_signature_algorithms),
    ):
        assert not any(map(is_grease, _decode(hello, ext_type, pull)))


def test_grease_values_vary_between_connections_and_are_all_reserved() -> None:
    seen = set()
    for _ in range(40):
        values = grease_values(_sent_hello(grease=True).random)
        assert all(v in GREASE_VALUES for v in (values.cipher_suite, values.last_extension))
        seen.add(values.cipher_suite)
    assert len(seen) > 4


def test_is_grease_knows_exactly_the_sixteen_reserved_values() -> None:
    assert [v for v in range(0x10000) if is_grease(v)] == list(GREASE_VALUES)


def test_the_last_grease_extension_precedes_padding_and_pre_shared_key() -> None:
    session = first_session(configs(client={"grease": True}))
    hello = _sent_hello(grease=True, session=session, pad_client_hello=True)
    types = [e.type for e in hello.extensions]
    assert types[-1] == ET.pre_shared_key
    assert is_grease(types[-3]) and types[-2] == ET.padding and is_grease(types[0])
    _, body = msgs.push_message(hello)
    assert 13 + 12 + len(body) == 1200  # the configs' mtu, filled


@pytest.mark.parametrize("hrr", ["cookie", "group"])
def test_the_second_client_hello_repeats_the_grease_values(hrr: str) -> None:
    """RFC 8446 §4.1.2: the ClientHello after a HelloRetryRequest is the first one, but
    for what the HelloRetryRequest asked (here a cookie, or a share for another group,
    which then goes alone); the GREASE values stay."""
    client: dict[str, Any] = {"grease": True}
    server: dict[str, Any] = {}
    if hrr == "group":
        client.update(groups=["x25519", "secp256r1"], key_share_groups=["x25519"])
        server.update(groups=["secp256r1"])
    ccfg, scfg = configs(client=client, server=server)
    pools = PoolSet()
    net = SimNetwork(2)
    policy = "always" if hrr == "cookie" else "never"
    ep = ServerEndpoint(scfg, pools=pools, cookie_policy=policy, wall_clock=wall_clock)
    conn = Connection(ccfg, pools=pools, wall_clock=wall_clock)
    sent: list[msgs.ClientHello] = []
    net.tamper = lambda src, dst, data: (sent.extend(_hellos(data)), data)[1]
    net.add(SERVER_ADDR, ep)
    net.add(("10.0.0.9", 4000), conn)
    conn.connect(SERVER_ADDR, 0.0)
    assert net.run(lambda: conn.handshake_complete)
    first, second = sent
    assert conn.stats["hello_retry_requests_received"] == 1
    assert first.random == second.random
    assert first.cipher_suites == second.cipher_suites
    assert [e for e in first.extensions if is_grease(e.type)] == [
        e for e in second.extensions if is_grease(e.type)
    ]
    for ext_type, pull in (
        (ET.supported_groups, ext.pull_supported_groups),
        (ET.signature_algorithms, ext.pull_signature_algorithms),
    ):
        assert _decode(first, ext_type, pull) == _decode(second, ext_type, pull)
    shares = [_decode(h, ET.key_share, ext.pull_key_share_client) for h in (first, second)]
    if hrr == "cookie":
        assert shares[0] == shares[1] and is_grease(shares[1][0].group)
    else:
        assert [s.group for s in shares[1]] == [0x0017]  # secp256r1 alone
    shutdown_world(net, ep, [conn])
    assert pools.in_use == 0


def _refused(pair: Pair, alert: A | None = None) -> None:
    """The client refused the server's hello: with `alert`, at once; without, every copy of
    it was dropped as damaged (unauthenticated, a hello that makes no sense most likely
    came damaged) until the handshake timed out. No handshake completed."""
    pair.net.run(lambda: pair.terminated("client") is not None, max_time=pair.net.now + 300)
    end = pair.terminated("client")
    assert end is not None, end
    if alert is None:
        assert end.timed_out and pair.client.stats["dropped_damaged_hello"] >= 2, end
    else:
        assert end.alert is alert and not end.by_peer, end
    assert not pair.client.handshake_complete
    pair.close()
    assert pair.pools.in_use == 0


def _server_sends(pair: Pair, change: Any) -> None:
    """Each message the server sends passes through `change(msg, grease values)` first."""
    original = pair.server.handshake._send

    def send(msg: Any, epoch: int | None, *, transcript: bool = True) -> None:
        hello = pair.client.handshake.client_hello
        assert hello is not None
        original(change(msg, grease_values(hello.random)), epoch, transcript=transcript)

    pair.server.handshake._send = send  # type: ignore[method-assign]


def _server_hello(msg: Any, **fields: Any) -> Any:
    if not isinstance(msg, msgs.ServerHello):
        return msg
    return msgs.ServerHello(
        random=fields.get("random", msg.random),
        cipher_suite=fields.get("cipher_suite", msg.cipher_suite),
        extensions=fields.get("extensions", msg.extensions),
    )


def _replaced(msg: Any, extension: ext.Extension) -> tuple[ext.Extension, ...]:
    return tuple(extension if e.type == extension.type else e for e in msg.extensions)


def test_a_server_hello_selecting_the_grease_cipher_suite_is_refused() -> None:
    pair = make_pair(client={"grease": True})
    _server_sends(pair, lambda m, g: _server_hello(m, cipher_suite=g.cipher_suite))
    pair.client.connect(SERVER_ADDR, 0.0)
    _refused(pair)


def test_a_server_hello_selecting_the_grease_version_is_refused() -> None:
    def change(msg: Any, g: Any) -> Any:
        if not isinstance(msg, msgs.ServerHello):
            return msg
        version = ext.Extension(ET.supported_versions, g.version.to_bytes(2, "big"))
        return _server_hello(msg, extensions=_replaced(msg, version))

    pair = make_pair(client={"grease": True})
    _server_sends(pair, change)
    pair.client.connect(SERVER_ADDR, 0.0)
    _refused(pair)


def test_a_server_key_share_for_the_grease_group_is_refused() -> None:
    def change(msg: Any, g: Any) -> Any:
        if not isinstance(msg, msgs.ServerHello):
            return msg
        share = ext.make_extension(
            ET.key_share, ext.push_key_share_server, ext.KeyShareEntry(g.group, bytes(32))
        )
        return _server_hello(msg, extensions=_replaced(msg, share))

    pair = make_pair(client={"grease": True})
    _server_sends(pair, change)
    pair.client.connect(SERVER_ADDR, 0.0)
    _refused(pair)


def test_a_hello_retry_request_asking_for_the_grease_group_is_refused() -> None:
    pair = make_pair(
        client={"grease": True, "groups": ["x25519", "secp256r1"], "key_share_groups": ["x25519"]},
        server={"groups": ["secp256r1"]},
    )

    def change(msg: Any, g: Any) -> Any:
        if not (isinstance(msg, msgs.ServerHello) and msg.is_hello_retry_request):
            return msg
        group = ext.Extension(ET.key_share, g.group.to_bytes(2, "big"))
        return _server_hello(msg, extensions=_replaced(msg, group))

    _server_sends(pair, change)
    pair.client.connect(SERVER_ADDR, 0.0)
    _refused(pair)


@pytest.mark.parametrize("which", ["first_extension", "last_extension"])
def test_a_server_hello_answering_a_grease_extension_is_refused(which: str) -> None:
    def change(msg: Any, g: Any) -> Any:
        if not isinstance(msg, msgs.ServerHello):
            return msg
        extension = ext.Extension(getattr(g, which), b"")
        return _server_hello(msg, extensions=(*msg.extensions, extension))

    pair = make_pair(client={"grease": True})
    _server_sends(pair, change)
    pair.client.connect(SERVER_ADDR, 0.0)
    _refused(pair, A.unsupported_extension)


def test_encrypted_extensions_answering_a_grease_extension_are_refused() -> None:
    def change(msg: Any, g: Any) -> Any:
        if not isinstance(msg, msgs.EncryptedExtensions):
            return msg
        return msgs.EncryptedExtensions((*msg.extensions, ext.Extension(g.first_extension, b"")))

    pair = make_pair(client={"grease": True})
    _server_sends(pair, change)
    pair.client.connect(SERVER_ADDR, 0.0)
    pair.net.run(lambda: pair.terminated("client") is not None, max_time=10)
    end = pair.terminated("client")
    assert end is not None and end.alert is A.unsupported_extension and not end.by_peer, end
    pair.close()
    assert pair.pools.in_use == 0


def test_a_greasing_client_completes_a_handshake_and_resumes() -> None:
    cfgs = configs(client={"grease": True})
    session = first_session(cfgs)
    pair = make_pair(1, cfgs=(replace(cfgs[0], session=session), cfgs[1]))
    assert pair.handshake()
    assert pair.client.handshake.resumed and pair.exchange(b"ping", b"pong")
    pair.close()
    assert pair.pools.in_use == 0
