"""Our client against our server in-process: suites, groups, key kinds and features."""

from __future__ import annotations

from pathlib import Path

import pytest

from dtls13.alerts import AlertDescription
from dtls13.config import DEFAULT_SIGNATURE_SCHEMES
from dtls13.crypto.suites import SUITES, CipherSuite
from dtls13.events import ConnectionTerminated, HandshakeCompleted, KeyUpdated
from dtls13.handshake.constants import NamedGroup, SignatureScheme
from tests.support.dtls_pair import SERVER_ADDR, Pair, make_pair, pki
from tests.support.pki import HAVE_MLDSA

CS = CipherSuite
G = NamedGroup
S = SignatureScheme
ALL_SUITES = list(CipherSuite)  # CCM-8 included: it is off by default, so it is enabled here
ALL_GROUPS = [
    G.x25519,
    G.secp256r1,
    G.secp384r1,
    G.secp521r1,
    G.x448,
    G.ffdhe2048,
    G.X25519MLKEM768,
]
MLDSA_KIND = "mldsa65"
KIND_SCHEME = {
    "ec256": S.ecdsa_secp256r1_sha256,
    "ec384": S.ecdsa_secp384r1_sha384,
    "rsa2048": S.rsa_pss_rsae_sha256,
    "ed25519": S.ed25519,
    "ed448": S.ed448,
    MLDSA_KIND: S.mldsa65,
}

# A covering set: every suite, every group and every key kind at least once, each suite
# with more than one group and kind, and the heaviest combinations (ML-KEM with ML-DSA).
MATRIX = [
    (CS.TLS_AES_128_GCM_SHA256, G.x25519, "ec256"),
    (CS.TLS_AES_128_GCM_SHA256, G.secp384r1, "rsa2048"),
    (CS.TLS_AES_256_GCM_SHA384, G.secp256r1, "ec384"),
    (CS.TLS_AES_256_GCM_SHA384, G.X25519MLKEM768, MLDSA_KIND),
    (CS.TLS_CHACHA20_POLY1305_SHA256, G.x448, "ed25519"),
    (CS.TLS_CHACHA20_POLY1305_SHA256, G.X25519MLKEM768, "ec256"),
    (CS.TLS_AES_128_CCM_SHA256, G.x25519, "ed448"),
    (CS.TLS_AES_128_CCM_SHA256, G.secp256r1, MLDSA_KIND),
    (CS.TLS_AES_128_CCM_8_SHA256, G.secp384r1, "ec256"),
    (CS.TLS_AES_128_CCM_8_SHA256, G.X25519MLKEM768, "rsa2048"),
    (CS.TLS_AES_256_GCM_SHA384, G.x448, "ed448"),
    (CS.TLS_AES_128_GCM_SHA256, G.X25519MLKEM768, "ed25519"),
    (CS.TLS_AES_256_GCM_SHA384, G.secp521r1, "ec384"),
    (CS.TLS_CHACHA20_POLY1305_SHA256, G.secp521r1, "rsa2048"),
    (CS.TLS_AES_128_GCM_SHA256, G.ffdhe2048, "rsa2048"),
    (CS.TLS_AES_128_CCM_SHA256, G.ffdhe2048, "ec256"),
]


def _events(pair_events: list[object], kind: type) -> list[object]:
    return [e for e in pair_events if isinstance(e, kind)]


def test_matrix_covers_every_suite_group_and_kind() -> None:
    assert {m[0] for m in MATRIX} == set(ALL_SUITES)
    assert {m[1] for m in MATRIX} == set(ALL_GROUPS)
    assert {m[2] for m in MATRIX} == set(KIND_SCHEME)


@pytest.mark.parametrize(("suite", "group", "kind"), MATRIX, ids=lambda v: getattr(v, "name", v))
def test_handshake_matrix(suite: CipherSuite, group: NamedGroup, kind: str) -> None:
    if kind == MLDSA_KIND and not HAVE_MLDSA:
        pytest.skip("cryptography without ML-DSA")
    both = {"cipher_suites": [suite], "groups": [group]}
    schemes = [*DEFAULT_SIGNATURE_SCHEMES, S.mldsa65] if kind == MLDSA_KIND else None
    pair = make_pair(
        kind=kind,
        client={**both, "key_share_groups": [group], "signature_schemes": schemes}
        if schemes
        else {**both, "key_share_groups": [group]},
        server=both,
    )
    assert pair.handshake()
    for events in (pair.client_events, pair.server_events):
        (done,) = _events(events, HandshakeCompleted)
        assert isinstance(done, HandshakeCompleted)
        assert done.version == "DTLSv1.3"
        assert done.cipher_suite is suite
        assert done.group is group
        assert not done.resumed
    (client_done,) = _events(pair.client_events, HandshakeCompleted)
    assert isinstance(client_done, HandshakeCompleted)
    assert client_done.signature_scheme is KIND_SCHEME[kind]
    assert client_done.peer_certificates[0] == pki(kind).leaf(kind).cert or (
        client_done.peer_certificates[0].public_key() == pki(kind).leaf(kind).cert.public_key()
    )
    assert pair.client.cipher_suite is suite
    # Application data both ways, a record that fills the cleartext MTU included.
    big = bytes(range(256)) * (pair.client.get_cleartext_mtu() // 256) + b"!"
    big = big[: pair.client.get_cleartext_mtu()]
    assert pair.exchange(b"ping", b"pong")
    pair.client.send(big)
    assert pair.net.run(lambda: big in pair.received("server"))
    for conn in (pair.client, pair.server):
        drops = conn.statistics().record_drops
        assert isinstance(drops, dict) and not any(drops.values()), drops
    pair.close()
    assert pair.pools.in_use == 0


def test_client_hello_with_ml_kem_share_is_fragmented_and_accepted() -> None:
    pair = make_pair(
        client={"key_share_groups": [G.X25519MLKEM768, G.x25519]},
        server={"groups": [G.X25519MLKEM768, G.x25519]},
    )
    pair.client.connect(SERVER_ADDR, pair.net.now)
    first = pair.client.datagrams_to_send(pair.net.now)
    assert len(first) >= 2  # ~1.4 KB of ClientHello does not fit one 1200-byte datagram
    assert all(len(lease) <= 1200 for lease, _ in first)
    for lease, _ in first:
        pair.server.receive_datagram(bytes(lease), ("10.0.0.1", 40000), pair.net.now)
        lease.release()
    assert pair.net.run(pair.completed)
    (done,) = _events(pair.server_events, HandshakeCompleted)
    assert isinstance(done, HandshakeCompleted) and done.group is G.X25519MLKEM768
    pair.close()


def test_hello_retry_request_for_a_missing_group() -> None:
    pair = make_pair(
        client={"groups": [G.x25519, G.secp384r1], "key_share_groups": [G.x25519]},
        server={"groups": [G.secp384r1, G.secp256r1]},
    )
    assert pair.handshake()
    for events in (pair.client_events, pair.server_events):
        (done,) = _events(events, HandshakeCompleted)
        assert isinstance(done, HandshakeCompleted) and done.group is G.secp384r1
    # Two ClientHellos (message_seq 0 and 1), one HelloRetryRequest.
    assert pair.client._send_seq >= 2
    assert pair.client.statistics().hello_retry_requests_received == 1
    assert pair.server.statistics().hello_retry_requests_sent == 1
    assert pair.exchange(b"after hrr", b"ok")
    pair.close()


def test_no_group_in_common_is_handshake_failure() -> None:
    pair = make_pair(client={"groups": [G.x25519]}, server={"groups": [G.secp384r1]})
    assert not pair.handshake(max_time=5)
    server_end, client_end = pair.terminated("server"), pair.terminated("client")
    assert server_end is not None and server_end.alert is AlertDescription.handshake_failure
    assert client_end is not None and client_end.by_peer
    assert client_end.alert is AlertDescription.handshake_failure
    pair.close()


def test_alpn_match() -> None:
    pair = make_pair(client={"alpn_protocols": ["h2", "coap"]}, server={"alpn_protocols": ["coap"]})
    assert pair.handshake()
    for events in (pair.client_events, pair.server_events):
        (done,) = _events(events, HandshakeCompleted)
        assert isinstance(done, HandshakeCompleted) and done.alpn_protocol == "coap"
    assert pair.client.alpn_protocol == pair.server.alpn_protocol == "coap"
    pair.close()


def test_alpn_only_on_one_side_is_not_negotiated() -> None:
    pair = make_pair(client={"alpn_protocols": ["h2"]})
    assert pair.handshake()
    assert pair.client.alpn_protocol is None and pair.server.alpn_protocol is None
    pair.close()


def test_alpn_mismatch_is_no_application_protocol() -> None:
    pair = make_pair(client={"alpn_protocols": ["h2"]}, server={"alpn_protocols": ["coap"]})
    assert not pair.handshake(max_time=5)
    server_end, client_end = pair.terminated("server"), pair.terminated("client")
    assert server_end == ConnectionTerminated(
        AlertDescription.no_application_protocol, server_end.reason if server_end else "", False
    )
    assert client_end is not None and client_end.by_peer
    assert client_end.alert is AlertDescription.no_application_protocol
    pair.close()


def _client_cert(kind: str = "ec256") -> dict[str, object]:
    leaf = pki(kind).leaf(kind, cn="dtls13 test client")
    return {"certificate_chain": leaf.chain_pem, "private_key": leaf.key_pem}


def test_client_auth_none_sends_no_certificate_request() -> None:
    pair = make_pair(client=_client_cert())
    assert pair.handshake()
    (done,) = _events(pair.server_events, HandshakeCompleted)
    assert isinstance(done, HandshakeCompleted) and done.peer_certificates == ()
    pair.close()


def test_client_auth_optional_without_a_certificate() -> None:
    pair = make_pair(server={"client_auth": "optional", "cafile": pki().root_pem})
    assert pair.handshake()
    (done,) = _events(pair.server_events, HandshakeCompleted)
    assert isinstance(done, HandshakeCompleted) and done.peer_certificates == ()
    assert pair.exchange(b"anonymous", b"fine")
    pair.close()


@pytest.mark.parametrize("auth", ["optional", "required"])
@pytest.mark.parametrize("kind", ["ec256", "rsa2048", "ed25519"])
def test_client_auth_with_a_certificate(auth: str, kind: str) -> None:
    cert = _client_cert(kind)
    pair = make_pair(
        kind=kind, client=cert, server={"client_auth": auth, "cafile": pki(kind).root_pem}
    )
    assert pair.handshake()
    (done,) = _events(pair.server_events, HandshakeCompleted)
    assert isinstance(done, HandshakeCompleted)
    assert done.signature_scheme is not None
    assert len(done.peer_certificates) == 2  # leaf and intermediate
    assert done.peer_certificates[0].public_key() == pki(kind).leaf(kind).cert.public_key()
    assert pair.server.peer_certificates == done.peer_certificates
    assert pair.exchange(b"authenticated", b"welcome")
    pair.close()


def test_client_auth_required_without_a_certificate() -> None:
    pair = make_pair(server={"client_auth": "required", "cafile": pki().root_pem})
    assert not pair.handshake(max_time=5)
    server_end, client_end = pair.terminated("server"), pair.terminated("client")
    assert server_end is not None and not server_end.by_peer
    assert server_end.alert is AlertDescription.certificate_required
    assert client_end is not None and client_end.by_peer
    assert client_end.alert is AlertDescription.certificate_required
    assert not _events(pair.server_events, HandshakeCompleted)
    pair.close()


KEYLOG_LABELS = {
    "CLIENT_HANDSHAKE_TRAFFIC_SECRET",
    "SERVER_HANDSHAKE_TRAFFIC_SECRET",
    "CLIENT_TRAFFIC_SECRET_0",
    "SERVER_TRAFFIC_SECRET_0",
    "EXPORTER_SECRET",
}


@pytest.mark.parametrize("suite", [CS.TLS_AES_128_GCM_SHA256, CS.TLS_AES_256_GCM_SHA384])
def test_keylog_callback_nss_format(suite: CipherSuite) -> None:
    client_lines: list[str] = []
    server_lines: list[str] = []
    pair = make_pair(
        client={"keylog": client_lines.append, "cipher_suites": [suite]},
        server={"keylog": server_lines.append},
    )
    random_hex = pair.client.handshake._work.random.hex()  # the ClientHello's
    assert pair.handshake()
    assert len(client_lines) == 5
    assert sorted(client_lines) == sorted(server_lines)
    secret_len = SUITES[suite].hash_length * 2
    labels = set()
    for line in client_lines:
        label, client_random, secret = line.split(" ")
        labels.add(label)
        assert client_random == random_hex and len(client_random) == 64
        assert len(secret) == secret_len and int(secret, 16) >= 0
    assert labels == KEYLOG_LABELS
    # The logged traffic secret is the one protecting the records.
    secrets = dict(line.split(" ")[::2] for line in client_lines)
    assert bytes.fromhex(secrets["CLIENT_TRAFFIC_SECRET_0"]) == pair.client.handshake.write_secret
    pair.close()


def test_keylog_file(tmp_path: Path) -> None:
    path = tmp_path / "keys.log"
    pair = make_pair(client={"keylog": str(path)})
    assert pair.handshake()
    lines = path.read_text("ascii").splitlines()
    assert {line.split(" ")[0] for line in lines} == KEYLOG_LABELS
    pair.close()


@pytest.mark.parametrize("closer", ["client", "server"])
def test_close_notify(closer: str) -> None:
    pair = make_pair()
    assert pair.handshake()
    assert pair.exchange(b"a", b"b")
    local, remote = (pair.client, "server") if closer == "client" else (pair.server, "client")
    other = pair.server if closer == "client" else pair.client
    local.close()
    assert local.closed
    assert pair.net.run(lambda: pair.terminated(remote) is not None, max_time=pair.net.now + 5)
    end = pair.terminated(remote)
    assert end is not None
    assert end.alert is AlertDescription.close_notify and end.by_peer
    assert other.closed
    mine = pair.terminated(closer)
    assert mine is not None and mine.alert is AlertDescription.close_notify and not mine.by_peer
    # Everything both connections held went back to the pools.
    assert local.owner.in_use == 0 and other.owner.in_use == 0
    pair.close()
    assert pair.pools.in_use == 0


def test_handshake_timeout_when_the_server_never_answers() -> None:
    pair = make_pair(client={"handshake_timeout": 30.0})
    del pair.net.endpoints[SERVER_ADDR]
    assert not pair.handshake(max_time=100)
    end = pair.terminated("client")
    assert end is not None and end.alert is None and not end.by_peer
    assert "timed out" in end.reason
    assert 30.0 <= pair.net.now < 31.0
    # Retransmitted at 1, 3, 7, 15 s (doubling from 1 s) before giving up.
    assert pair.client.stats["retransmissions"] == 4
    assert pair.client.get_timer() is None and pair.client.closed
    assert pair.client.owner.in_use == 0
    pair.close()


def _key_updated(events: list[object]) -> list[tuple[bool, int]]:
    return [(e.sending, e.epoch) for e in events if isinstance(e, KeyUpdated)]


def _updates(pair: Pair, side: str) -> list[tuple[bool, int]]:
    pair.drain()
    return _key_updated(pair.client_events if side == "client" else pair.server_events)


@pytest.mark.parametrize("suite", [CS.TLS_AES_128_GCM_SHA256, CS.TLS_CHACHA20_POLY1305_SHA256])
def test_key_update_both_directions_with_data_across_epochs(suite: CipherSuite) -> None:
    pair = make_pair(client={"cipher_suites": [suite]})
    assert pair.handshake()
    assert pair.exchange(b"epoch 3 c", b"epoch 3 s")
    pair.client.key_update(request_peer=True)
    # Data sent while the KeyUpdate is in flight (still epoch 3) arrives too.
    pair.client.send(b"during c")
    pair.server.send(b"during s")
    assert pair.net.run(
        lambda: (True, 4) in _updates(pair, "client") and (True, 4) in _updates(pair, "server"),
        max_time=pair.net.now + 10,
    )
    assert (False, 4) in _updates(pair, "server")
    assert (False, 4) in _updates(pair, "client")
    assert pair.client._records.write_epoch == 4 and pair.server._records.write_epoch == 4
    assert pair.exchange(b"epoch 4 c", b"epoch 4 s")
    assert b"during c" in pair.received("server") and b"during s" in pair.received("client")
    # Now the server starts one, without asking the client to follow.
    pair.server.key_update(request_peer=False)
    assert pair.net.run(lambda: (True, 5) in _updates(pair, "server"), max_time=pair.net.now + 10)
    assert (False, 5) in _updates(pair, "client")
    assert pair.client._records.write_epoch == 4 and pair.server._records.write_epoch == 5
    assert pair.exchange(b"c4", b"s5")
    pair.client.key_update()
    assert pair.net.run(
        lambda: (True, 5) in _updates(pair, "client") and (True, 6) in _updates(pair, "server"),
        max_time=pair.net.now + 10,
    )
    assert pair.exchange(b"c5", b"s6")
    assert pair.client.stats["key_updates_sent"] == 2
    assert pair.server.stats["key_updates_received"] == 2
    pair.close()


def test_many_key_updates_keep_ack_records_small() -> None:
    pair = make_pair()
    assert pair.handshake()
    for i in range(100):
        pair.client.key_update(request_peer=True)
        assert pair.net.run(
            lambda i=i: (
                (True, 4 + i) in _updates(pair, "client")  # type: ignore[misc]
                and (True, 4 + i) in _updates(pair, "server")
            ),
            max_time=pair.net.now + 10,
        ), i
        assert pair.exchange(b"c%d" % i, b"s%d" % i)
        pair.client_events.clear()
        pair.server_events.clear()
        # Each ACK repeats the newest records received, at most 32 of them (the list once
        # grew with every post-handshake record, and the ACK with it).
        assert len(pair.client._ack_list) <= 32 and len(pair.server._ack_list) <= 32
    assert pair.client._records.write_epoch == pair.server._records.write_epoch == 103
    pair.close()


def test_automatic_key_update_at_the_confidentiality_limit() -> None:
    pair = make_pair(client={"confidentiality_limit": 5})
    assert pair.handshake()
    # The client's Finished used epoch 2; epoch 3 starts at 0 records protected.
    sent = []
    for i in range(12):
        msg = b"record %d" % i
        sent.append(msg)
        pair.client.send(msg)
        pair.net.run(lambda: False, max_time=pair.net.now + 1)  # the KeyUpdate's ACK too
    assert pair.received("server") == sent
    updates = _updates(pair, "client")
    assert (True, 4) in updates and (True, 5) in updates
    # Each write key protected at most `limit` records: the KeyUpdate is the last one.
    assert pair.client._records.records_protected(5) < 5
    assert pair.client.stats["key_updates_sent"] >= 2
    # The server was not configured with a low limit: it stays at epoch 3.
    assert pair.server._records.write_epoch == 3
    assert pair.exchange(b"still", b"working")
    pair.close()


def test_confidentiality_limit_must_be_positive() -> None:
    from dtls13.config import ClientConfig

    with pytest.raises(ValueError, match="confidentiality_limit"):
        ClientConfig(verify=False, confidentiality_limit=0)


def test_key_update_after_a_lost_new_session_ticket() -> None:
    """The server's KeyUpdate used to replace its unacknowledged NewSessionTicket flight:
    the ticket (message_seq n) was never resent, the client buffered the KeyUpdate
    (n + 1) behind the gap, ACKed it without processing it, and the server's epoch 4 was
    unreadable for good."""
    pair = make_pair()
    window = {"open": True}

    def tamper(src: object, dst: object, data: bytes) -> bytes | None:
        if src == SERVER_ADDR and pair.server.handshake_complete and window["open"]:
            return None  # the server's ACK and NewSessionTicket after its Finished
        return data

    pair.net.tamper = tamper
    assert pair.handshake()
    window["open"] = False
    pair.server.key_update(request_peer=False)
    assert pair.net.run(lambda: (False, 4) in _updates(pair, "client"), max_time=pair.net.now + 30)
    assert any(type(e).__name__ == "NewSessionTicketReceived" for e in pair.client_events)
    assert pair.exchange(b"epoch 3", b"epoch 4")
    pair.close()


def test_repeated_key_update_is_acked_again() -> None:
    """A lost ACK for a KeyUpdate: the repeated KeyUpdate must get its own ACK (not the
    old ACK of the client's final flight), or the sender never switches keys again."""
    pair = make_pair()
    assert pair.handshake()
    pair.net.run(lambda: False, max_time=pair.net.now + 2)  # ticket and ACKs settle
    dropped: list[bytes] = []

    def tamper(src: object, dst: object, data: bytes) -> bytes | None:
        if src == SERVER_ADDR and not dropped:
            dropped.append(data)  # the ACK of the client's KeyUpdate
            return None
        return data

    pair.net.tamper = tamper
    pair.client.key_update(request_peer=False)
    assert pair.net.run(lambda: (True, 4) in _updates(pair, "client"), max_time=pair.net.now + 30)
    assert dropped
    pair.client.key_update(request_peer=False)
    assert pair.net.run(lambda: (True, 5) in _updates(pair, "client"), max_time=pair.net.now + 30)
    assert pair.exchange(b"epoch 5", b"epoch 3")
    pair.close()
