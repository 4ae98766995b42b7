"""Imported external PSKs (RFC 9258) end to end: both roles, both target KDFs, several
PSKs, resumption after a PSK handshake, and what happens when they do not match."""

from __future__ import annotations

import dataclasses

import pytest

from dtls13 import ImportedPsk
from dtls13.config import ClientConfig, ServerConfig
from dtls13.crypto.suites import CipherSuite
from dtls13.events import HandshakeCompleted, NewSessionTicketReceived
from dtls13.handshake import client_offer
from dtls13.handshake import extensions as ext
from dtls13.handshake import messages as msgs
from dtls13.handshake.client import ClientHandshake
from dtls13.handshake.constants import ExtensionType
from dtls13.handshake.extensions import encode
from dtls13.handshake.psk_import import PskOffer, imported_identity
from tests.support.dtls_pair import SERVER_ADDR, Pair, configs, make_pair

PSK_A = ImportedPsk(b"sensor-17", b"A" * 32, b"plant-3")
PSK_B = ImportedPsk(b"sensor-18", b"B" * 48, b"plant-3", "sha384")


def _completed(pair: Pair, side: str) -> HandshakeCompleted:
    pair.drain()
    events = pair.client_events if side == "client" else pair.server_events
    return next(e for e in events if isinstance(e, HandshakeCompleted))


def _failed(pair: Pair, side: str) -> str:
    pair.client.connect(SERVER_ADDR, 0.0)
    pair.net.run(lambda: pair.terminated(side) is not None)
    end = pair.terminated(side)
    pair.close()
    assert end is not None and end.alert is not None
    return end.alert.name


@pytest.mark.parametrize("psk", [PSK_A, PSK_B])
@pytest.mark.parametrize(
    "suite", [CipherSuite.TLS_AES_128_GCM_SHA256, CipherSuite.TLS_AES_256_GCM_SHA384]
)
def test_imported_psk_authenticates_both_sides(psk: ImportedPsk, suite: CipherSuite) -> None:
    client = ClientConfig(imported_psks=[psk], cipher_suites=[suite], debug=True)
    server = ServerConfig(imported_psks=[psk], debug=True)
    pair = make_pair(1, cfgs=(client, server))
    assert pair.handshake()
    done = _completed(pair, "client")
    assert done.cipher_suite == suite and done.peer_certificates == ()
    assert done.psk_identity == psk.identity and done.group is not None
    assert _completed(pair, "server").psk_identity == psk.identity
    assert pair.exchange(b"reading 21.5", b"ok")
    pair.close()
    assert pair.pools.in_use == 0


def test_client_offers_each_psk_for_each_hash_and_the_server_picks_in_its_order() -> None:
    client = ClientConfig(imported_psks=[PSK_A, PSK_B], debug=True)
    server = ServerConfig(imported_psks=[PSK_B, PSK_A], debug=True)
    pair = make_pair(2, cfgs=(client, server))
    pair.client.connect(SERVER_ADDR, pair.net.now)
    hello = pair.client.handshake.client_hello
    assert hello is not None
    data = hello.extension(ExtensionType.pre_shared_key)
    assert data is not None
    offered = ext.decode(data, ext.pull_pre_shared_key_client)
    assert [i.identity for i in offered.identities] == [
        imported_identity(PSK_A, "sha256"),
        imported_identity(PSK_A, "sha384"),
        imported_identity(PSK_B, "sha256"),
        imported_identity(PSK_B, "sha384"),
    ]
    assert [len(b) for b in offered.binders] == [32, 48, 32, 48]
    assert pair.net.run(pair.completed)
    assert _completed(pair, "client").psk_identity == PSK_B.identity
    pair.close()


def test_ticket_from_a_psk_handshake_resumes_before_the_psk() -> None:
    client = ClientConfig(imported_psks=[PSK_A], debug=True)
    server = ServerConfig(imported_psks=[PSK_A], debug=True)
    pair = make_pair(3, cfgs=(client, server))
    assert pair.handshake()
    assert pair.net.run(lambda: any(isinstance(e, NewSessionTicketReceived) for e in _events(pair)))
    session = next(e for e in pair.client_events if isinstance(e, NewSessionTicketReceived))
    pair.close()
    again = make_pair(4, cfgs=(dataclasses.replace(client, session=session.session), server))
    assert again.handshake()
    done = _completed(again, "client")
    assert done.resumed and done.psk_identity is None and done.peer_certificates == ()
    again.close()


def _events(pair: Pair) -> list[object]:
    pair.drain()
    return list(pair.client_events)


@pytest.mark.parametrize(
    "server_psk",
    [
        ImportedPsk(PSK_A.identity, PSK_A.key, b"plant-4"),  # another context
        ImportedPsk(b"sensor-99", PSK_A.key, PSK_A.context),
    ],
)
def test_no_common_imported_psk_is_a_handshake_failure(server_psk: ImportedPsk) -> None:
    client = ClientConfig(imported_psks=[PSK_A], debug=True)
    server = ServerConfig(imported_psks=[server_psk], debug=True)
    assert _failed(make_pair(5, cfgs=(client, server)), "server") == "handshake_failure"


@pytest.mark.parametrize(
    "server_psk",
    [
        dataclasses.replace(PSK_A, key=b"C" * 32),
        # The EPSK's hash is not in the identity (RFC 9258 §5.1), only in the key.
        dataclasses.replace(PSK_A, hash="sha384"),
    ],
)
def test_same_identity_with_another_key_fails_the_binder(server_psk: ImportedPsk) -> None:
    client = ClientConfig(imported_psks=[PSK_A], debug=True)
    server = ServerConfig(imported_psks=[server_psk], debug=True)
    assert _failed(make_pair(6, cfgs=(client, server)), "server") == "decrypt_error"


def test_imported_and_plain_external_psks_are_not_interchangeable() -> None:
    """A plain PSK's binder is "ext binder" over the key itself: a server that has the same
    identity and key only as an imported PSK does not know the plain one."""
    client = ClientConfig(psk=(PSK_A.identity, PSK_A.key), debug=True)
    server = ServerConfig(imported_psks=[PSK_A], debug=True)
    assert _failed(make_pair(7, cfgs=(client, server)), "server") == "handshake_failure"


def test_client_that_requires_a_psk_refuses_a_certificate() -> None:
    cfg_server = configs()[1]
    client = ClientConfig(imported_psks=[PSK_A], debug=True)
    pair = make_pair(8, cfgs=(client, cfg_server))
    assert _failed(pair, "client") == "missing_extension"


def test_client_may_accept_a_certificate_instead_of_its_psk() -> None:
    cfg_client, cfg_server = configs()
    client = dataclasses.replace(cfg_client, imported_psks=[PSK_A], require_psk=False)
    pair = make_pair(9, cfgs=(client, cfg_server))
    assert pair.handshake()
    done = _completed(pair, "client")
    assert not done.resumed and done.psk_identity is None and done.peer_certificates != ()
    pair.close()


def test_server_with_certificate_and_psk_prefers_the_psk_the_client_offers() -> None:
    server = dataclasses.replace(configs()[1], imported_psks=[PSK_A])
    client = ClientConfig(imported_psks=[PSK_A], debug=True)
    pair = make_pair(10, cfgs=(client, server))
    assert pair.handshake()
    assert _completed(pair, "server").psk_identity == PSK_A.identity
    pair.close()


def test_imported_psks_must_be_imported_psk_objects() -> None:
    with pytest.raises(TypeError):
        ClientConfig(imported_psks=[(b"id", b"k" * 32)])  # type: ignore[list-item]
    with pytest.raises(TypeError):
        ServerConfig(imported_psks=PSK_A)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kept", "alert"), [((), "missing_extension"), ((PSK_B,), "illegal_parameter")]
)
def test_second_client_hello_must_keep_the_psk_the_suite_allows(
    kept: tuple[ImportedPsk, ...], alert: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RFC 8446 §4.1.2: after a HelloRetryRequest the client may drop only PSKs the chosen
    suite cannot use."""
    client = ClientConfig(
        imported_psks=[PSK_A, PSK_B],
        groups=["secp256r1", "x25519"],
        key_share_groups=["secp256r1"],
        debug=True,
    )
    server = ServerConfig(imported_psks=[PSK_A], groups=["x25519"], debug=True)
    pair = make_pair(11, cfgs=(client, server))
    pair.client.connect(SERVER_ADDR, pair.net.now)
    # From the second ClientHello on, only the `kept` PSKs are offered.
    original = client_offer.psk_offers
    identities = {p.identity for p in kept}

    def kept_offers(hs: ClientHandshake) -> list[PskOffer]:
        return [o for o in original(hs) if o.external in identities]

    monkeypatch.setattr(client_offer, "psk_offers", kept_offers)
    pair.net.run(lambda: pair.terminated("server") is not None)
    end = pair.terminated("server")
    pair.close()
    assert pair.server.statistics().hello_retry_requests_sent == 1
    assert end is not None and end.alert is not None and end.alert.name == alert


def test_second_client_hello_may_drop_psks_of_another_hash() -> None:
    client = ClientConfig(
        imported_psks=[PSK_A], groups=["secp256r1", "x25519"], key_share_groups=["secp256r1"]
    )
    server = ServerConfig(imported_psks=[PSK_A], groups=["x25519"], debug=True)
    pair = make_pair(12, cfgs=(client, server))
    assert pair.handshake()
    assert pair.client.statistics().hello_retry_requests_received == 1
    assert _completed(pair, "server").psk_identity == PSK_A.identity
    pair.close()


def test_binder_count_is_the_servers_to_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """An OfferedPsks with an extra binder decodes (it is well formed); the server ends a
    second ClientHello that carries one with illegal_parameter, as BoringSSL does (a
    decode error there would be dropped as a damaged hello)."""
    offered = ext.OfferedPsks((ext.PskIdentity(b"id", 0),), (b"b" * 32, b"c" * 32))
    assert (
        ext.decode(encode(ext.push_pre_shared_key_client, offered), ext.pull_pre_shared_key_client)
        == offered
    )
    client = ClientConfig(
        imported_psks=[PSK_A], groups=["secp256r1", "x25519"], key_share_groups=["secp256r1"]
    )
    server = ServerConfig(imported_psks=[PSK_A], groups=["x25519"], debug=True)
    pair = make_pair(13, cfgs=(client, server))
    real = msgs.replace_binders

    def extra_binder(hello: msgs.ClientHello, binders: tuple[bytes, ...]) -> msgs.ClientHello:
        out = real(hello, binders)
        if not pair.client.handshake.retried:
            return out
        psks = ext.decode(out.extensions[-1].data, ext.pull_pre_shared_key_client)
        more = ext.OfferedPsks(psks.identities, (*psks.binders, psks.binders[0]))
        data = encode(ext.push_pre_shared_key_client, more)
        last = ext.Extension(ExtensionType.pre_shared_key, data)
        return dataclasses.replace(out, extensions=(*out.extensions[:-1], last))

    monkeypatch.setattr(msgs, "replace_binders", extra_binder)
    pair.client.connect(SERVER_ADDR, pair.net.now)
    pair.net.run(lambda: pair.terminated("server") is not None)
    end = pair.terminated("server")
    pair.close()
    assert end is not None and end.alert is not None and end.alert.name == "illegal_parameter"
