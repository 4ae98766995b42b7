"""Encrypted Client Hello through the sans-IO Connection: a server that does not know ECH
(or cannot decrypt it) answers ClientHelloOuter; the client authenticates it for the
public name, then ends the handshake with ech_required and reports EchRejected
(RFC 9849 §6.1.6, §6.1.7)."""

from __future__ import annotations

import functools
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from dtls13 import EchRejected, ech_config_list, generate_ech_key
from dtls13.alerts import AlertDescription
from dtls13.config import ClientConfig, ServerConfig
from dtls13.errors import error_for
from dtls13.events import EchStatus, HandshakeCompleted
from dtls13.handshake import ech, hpke
from dtls13.handshake import messages as msgs
from dtls13.handshake.grease import grease_values, is_grease
from tests.support.dtls_pair import SERVER_ADDR, configs, make_pair, pki

# The test server's certificate names "localhost": here, the config's public name.
_PUBLIC = X25519PrivateKey.from_private_bytes(bytes(32)).public_key()
CONFIG_LIST = ech.push_ech_config_list(
    [
        ech.encode_ech_config(
            1,
            hpke.KemId.DHKEM_X25519_HKDF_SHA256,
            _PUBLIC.public_bytes(Encoding.Raw, PublicFormat.Raw),
            [ech.EchCipherSuite(hpke.KdfId.HKDF_SHA256, hpke.AeadId.AES_128_GCM)],
            b"localhost",
        )
    ]
)


def test_rejected_ech_fails_with_ech_required_and_never_completes() -> None:
    _, server = configs()
    client = ClientConfig(
        server_name="secret.example",
        cafile=pki().root_pem,
        ech_config_list=CONFIG_LIST,
        idle_release_after=None,
        debug=True,
    )
    pair = make_pair(cfgs=(client, server))
    assert not pair.handshake(max_time=30.0)
    ended = pair.terminated("client")
    assert ended is not None and ended.alert is AlertDescription.ech_required
    assert not ended.by_peer and ended.ech_rejected and ended.ech_retry_configs is None
    assert not any(isinstance(e, HandshakeCompleted) for e in pair.client_events)
    # The server read our Finished, then our alert.
    got = pair.terminated("server")
    assert got is not None and got.by_peer and got.alert is AlertDescription.ech_required
    assert pair.client.peer_verification is not None
    assert pair.client.peer_verification.ech_name_override == "localhost"
    error = error_for(
        reason=ended.reason,
        alert=ended.alert,
        by_peer=ended.by_peer,
        handshake_complete=False,
        ech_rejected=ended.ech_rejected,
        ech_retry_configs=ended.ech_retry_configs,
    )
    assert isinstance(error, EchRejected) and error.retry_configs is None
    pair.close()


def test_grease_handshake_completes_with_a_server_that_ignores_it() -> None:
    pair = make_pair(client={"ech_grease": True})
    assert pair.handshake()
    completed = next(e for e in pair.client_events if isinstance(e, HandshakeCompleted))
    assert completed.ech_status is EchStatus.GREASE
    pair.close()


def test_adapters_raise_ech_rejected_as_their_broken_resource_error() -> None:
    import trio

    from dtls13.trio.errors import TRIO_CLASSES

    error = error_for(
        reason="r",
        alert=AlertDescription.ech_required,
        by_peer=False,
        handshake_complete=False,
        ech_rejected=True,
        ech_retry_configs=CONFIG_LIST,
        classes=TRIO_CLASSES,
    )
    assert isinstance(error, EchRejected) and isinstance(error, trio.BrokenResourceError)
    assert error.retry_configs == CONFIG_LIST


# -- a dtls13 client against a dtls13 server with ECH keys ------------------------------------


@functools.cache
def _leaf() -> Any:
    return pki().leaf("ec256", dns_names=("secret.example", "public.example"))


def _ech_pair(
    client_list: bytes | None, *, grease: bool = False, client: Any = None, **server: Any
) -> Any:
    leaf = _leaf()
    keys = [generate_ech_key(7, "public.example")]
    scfg = ServerConfig(
        certificate_chain=leaf.chain_pem,
        private_key=leaf.key_pem,
        ech_keys=keys,
        idle_release_after=None,
        debug=True,
        **server,
    )
    published = ech_config_list(keys)
    ccfg = ClientConfig(
        server_name="secret.example",
        cafile=pki().root_pem,
        ech_config_list=published if client_list is None else client_list,
        ech_grease=grease,
        alpn_protocols=["h3"],
        idle_release_after=None,
        debug=True,
        **(client or {}),
    )
    return make_pair(cfgs=(ccfg, scfg)), published


def _completed(events: list[Any]) -> HandshakeCompleted:
    return next(e for e in events if isinstance(e, HandshakeCompleted))


def _hellos(pair: Any) -> list[bytes]:
    """The ClientHellos the client sent, as an observer on the path sees them."""
    sent: list[bytes] = []
    original = pair.client.datagrams_to_send

    def spy(now: float) -> Any:
        out = original(now)
        sent.extend(bytes(lease) for lease, _ in out)
        return out

    pair.client.datagrams_to_send = spy
    return sent


def test_accepted_ech_between_dtls13_peers_hides_the_name_from_the_path() -> None:
    pair, _ = _ech_pair(None, alpn_protocols=["h3"])
    wire = _hellos(pair)
    assert pair.handshake()
    client_done, server_done = _completed(pair.client_events), _completed(pair.server_events)
    assert client_done.ech_status is server_done.ech_status is EchStatus.ACCEPTED
    assert client_done.alpn_protocol == "h3"
    assert pair.server._hs.server_name == "secret.example"  # the inner hello's name
    assert any(b"public.example" in d for d in wire)
    assert not any(b"secret.example" in d for d in wire)
    assert pair.exchange(b"ping", b"pong")
    pair.close()


def test_accepted_ech_between_dtls13_peers_after_a_hello_retry_request() -> None:
    pair, _ = _ech_pair(None, alpn_protocols=["h3"], groups=["secp256r1"])
    assert pair.handshake()
    client_done, server_done = _completed(pair.client_events), _completed(pair.server_events)
    assert client_done.ech_status is server_done.ech_status is EchStatus.ACCEPTED
    assert pair.client.statistics().hello_retry_requests_received == 1
    assert pair.server._hs.server_name == "secret.example"
    pair.close()


@pytest.mark.parametrize("groups", [["x25519"], ["secp256r1"]], ids=["direct", "after_retry"])
def test_accepted_ech_carries_grease_in_both_hellos(groups: list[str]) -> None:
    """RFC 8701 with RFC 9849: ClientHelloOuter (on the wire) and ClientHelloInner (in
    it) both carry an empty GREASE extension and a one-byte one (the outer starts with the
    empty one), and the server, which ignores them, accepts ECH."""
    pair, _ = _ech_pair(None, client={"grease": True}, groups=groups)
    wire = _hellos(pair)
    pair.client.connect(SERVER_ADDR, 0.0)
    inner = pair.client.handshake.client_hello
    assert inner is not None
    assert pair.net.run(pair.completed)
    assert _completed(pair.client_events).ech_status is EchStatus.ACCEPTED
    outers = [msgs.pull_message(d[13], d[25:]) for d in wire if d[0] == 22 and d[13] == 1]
    assert len(outers) == (2 if groups == ["secp256r1"] else 1)
    for hello in (inner, *outers):
        assert isinstance(hello, msgs.ClientHello)
        assert is_grease(hello.cipher_suites[0])
        greased = [(e.type, e.data) for e in hello.extensions if is_grease(e.type)]
        assert [data for _, data in greased] == [b"", b"\x00"]
        assert greased[0][0] != greased[1][0]
    for hello in outers:  # the inner's order is compression's (copied ones together)
        assert is_grease(hello.extensions[0].type)
    # Drawn from ClientHelloOuter's random, which the path sees, not from the inner one.
    first = outers[0]
    assert isinstance(first, msgs.ClientHello)
    values = grease_values(first.random)
    for hello in (inner, *outers):
        assert isinstance(hello, msgs.ClientHello)
        assert hello.cipher_suites[0] == values.cipher_suite
        types = [e.type for e in hello.extensions if is_grease(e.type)]
        assert types == [values.first_extension, values.last_extension]
    pair.close()


def test_a_stale_config_gets_rejected_with_the_servers_retry_configs() -> None:
    stale = ech_config_list([generate_ech_key(7, "public.example")])  # another key, same id
    pair, published = _ech_pair(stale)
    assert not pair.handshake(max_time=30.0)
    ended = pair.terminated("client")
    assert ended is not None and ended.ech_rejected
    assert ended.alert is AlertDescription.ech_required
    assert ended.ech_retry_configs == published
    assert pair.server._hs.server_name == "public.example"
    got = pair.terminated("server")
    assert got is not None and got.by_peer and got.alert is AlertDescription.ech_required
    pair.close()


def test_grease_against_an_ech_server_completes_without_ech() -> None:
    pair, _ = _ech_pair(_unusable(), grease=True)
    assert pair.handshake()
    assert _completed(pair.client_events).ech_status is EchStatus.GREASE
    assert pair.server._hs.server_name == "secret.example"
    pair.close()


def _unusable() -> bytes:
    """A config list with no config this client can use (an unknown KEM)."""
    config = ech.encode_ech_config(
        1, 0x6666, b"\x01\x02", [ech.EchCipherSuite(1, 1)], b"public.example"
    )
    return ech.push_ech_config_list([config])
