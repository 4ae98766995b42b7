"""Handshakes that must fail, and input that must never raise out of the connection.

Every pair is built with ``debug=True``: an exception other than an Alert inside the
connection propagates out of ``receive_datagram`` and fails the test.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from dtls13.alerts import AlertDescription
from dtls13.config import ClientConfig, ServerConfig
from dtls13.connection import Connection
from dtls13.connection_handshake import KNOWN_TYPES
from dtls13.events import HandshakeCompleted
from dtls13.handshake import authentication
from dtls13.handshake import extensions as ext
from dtls13.handshake import messages as msgs
from dtls13.handshake.constants import ExtensionType, HandshakeType
from dtls13.handshake.diagram import accepts
from dtls13.handshake.state import (
    HELLO_STATES,
    MESSAGE_EPOCH,
    ServerState,
    State,
)
from dtls13.record import ContentType
from tests.support.conn_helpers import (
    CLIENT_STATES,
    SERVER_STATES,
    handshake_message,
    plaintext_record,
    protected_datagram,
    reach,
)
from tests.support.dtls_pair import CLIENT_ADDR, SERVER_ADDR, Pair, configs, make_pair, pki
from tests.support.pki import NOW, TestPKI, make_leaf

A = AlertDescription


def _fails_with(pair: Pair, detector: str, alert: AlertDescription) -> None:
    """`detector` sent `alert`; the other side got it (by_peer) and both are closed."""
    pair.ends_with_alert(detector, alert)
    assert not [e for e in pair.server_events if isinstance(e, HandshakeCompleted)]
    pair.close()
    assert pair.pools.in_use == 0


# -- Finished and CertificateVerify ----------------------------------------------------------


def _tamper_schedule(conn: Connection) -> None:
    """Make `conn` send a Finished whose verify_data is off by one bit (it still checks
    the peer's Finished correctly)."""
    original = conn.handshake._send

    def add(msg: Any, epoch: int | None, *, transcript: bool = True) -> None:
        if isinstance(msg, msgs.Finished):
            good = msg.verify_data
            msg = msgs.Finished(bytes([good[0] ^ 1]) + good[1:])
        original(msg, epoch, transcript=transcript)

    conn.handshake._send = add  # type: ignore[method-assign]


def test_wrong_server_finished_is_decrypt_error() -> None:
    pair = make_pair()
    _tamper_schedule(pair.server)
    assert not pair.handshake(max_time=10)
    _fails_with(pair, "client", A.decrypt_error)


def test_wrong_client_finished_is_decrypt_error() -> None:
    pair = make_pair()
    _tamper_schedule(pair.client)
    assert not pair.handshake(max_time=10)
    # The client believes it is done when it sends Finished; the server's alert ends it.
    _fails_with(pair, "server", A.decrypt_error)


def _bad_signatures(monkeypatch: pytest.MonkeyPatch, server: bool) -> None:
    real = authentication.certs.sign_certificate_verify

    def sign(key: Any, scheme: Any, transcript_hash: bytes, *, is_server: bool) -> bytes:
        sig = real(key, scheme, transcript_hash, is_server=is_server)
        if is_server == server:
            sig = sig[:-1] + bytes([sig[-1] ^ 0x40])
        return sig

    monkeypatch.setattr(authentication.certs, "sign_certificate_verify", sign)


@pytest.mark.parametrize("kind", ["ec256", "rsa2048", "ed25519"])
def test_bad_server_certificate_verify_is_decrypt_error(
    monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    _bad_signatures(monkeypatch, server=True)
    pair = make_pair(kind=kind)
    assert not pair.handshake(max_time=10)
    _fails_with(pair, "client", A.decrypt_error)


def test_bad_client_certificate_verify_is_decrypt_error(monkeypatch: pytest.MonkeyPatch) -> None:
    _bad_signatures(monkeypatch, server=False)
    leaf = pki().leaf("ec256", cn="client")
    pair = make_pair(
        client={"certificate_chain": leaf.chain_pem, "private_key": leaf.key_pem},
        server={"client_auth": "required", "cafile": pki().root_pem},
    )
    assert not pair.handshake(max_time=10)
    _fails_with(pair, "server", A.decrypt_error)


# -- certificates -----------------------------------------------------------------------------


def _pair_with_leaf(leaf: Any, trust: bytes, server_name: str = "localhost") -> Pair:
    scfg = ServerConfig(certificate_chain=leaf.chain_pem, private_key=leaf.key_pem, debug=True)
    ccfg = ClientConfig(server_name=server_name, cafile=trust, debug=True)
    return make_pair(cfgs=(ccfg, scfg))


def test_untrusted_server_certificate_is_unknown_ca() -> None:
    stranger = TestPKI.create("ec256", slot=90)
    pair = _pair_with_leaf(stranger.leaf("ec256"), pki().root_pem)
    assert not pair.handshake(max_time=10)
    _fails_with(pair, "client", A.unknown_ca)


def test_expired_server_certificate_is_certificate_expired() -> None:
    import datetime

    day = datetime.timedelta(days=1)
    leaf = make_leaf(pki().issuer, "ec256", not_before=NOW - 60 * day, not_after=NOW - day)
    pair = _pair_with_leaf(leaf, pki().root_pem)
    assert not pair.handshake(max_time=10)
    _fails_with(pair, "client", A.certificate_expired)


def test_wrong_server_name_is_bad_certificate() -> None:
    pair = _pair_with_leaf(pki().leaf("ec256"), pki().root_pem, server_name="other.example")
    assert not pair.handshake(max_time=10)
    _fails_with(pair, "client", A.bad_certificate)


def test_untrusted_client_certificate_is_unknown_ca() -> None:
    stranger = TestPKI.create("ec256", slot=94).leaf("ec256", cn="client")
    pair = make_pair(
        client={"certificate_chain": stranger.chain_pem, "private_key": stranger.key_pem},
        server={"client_auth": "optional", "cafile": pki().root_pem},
    )
    assert not pair.handshake(max_time=10)
    _fails_with(pair, "server", A.unknown_ca)


# -- ClientHellos the server must refuse ------------------------------------------------------


def _client_hello(pair: Pair) -> msgs.ClientHello:
    pair.client.connect(SERVER_ADDR, 0.0)
    for lease, _ in pair.client.datagrams_to_send(0.0):
        lease.release()
    hello = pair.client.handshake.client_hello
    assert hello is not None
    return hello


def _send_hello(pair: Pair, hello: msgs.ClientHello) -> None:
    msg_type, body = msgs.push_message(hello)
    record = plaintext_record(handshake_message(msg_type, body, 0))
    pair.server.receive_datagram(record, CLIENT_ADDR, 0.0)


def _without(hello: msgs.ClientHello, *drop: ExtensionType) -> msgs.ClientHello:
    kept = tuple(e for e in hello.extensions if e.type not in drop)
    return msgs.ClientHello(random=hello.random, cipher_suites=hello.cipher_suites, extensions=kept)


MANDATORY = [
    (ExtensionType.signature_algorithms,),
    (ExtensionType.key_share,),
    (ExtensionType.supported_groups,),
    (ExtensionType.key_share, ExtensionType.supported_groups),
]


def _ids(v: Any) -> str:
    return "+".join(e.name for e in v)


@pytest.mark.parametrize(
    ("drop", "alert"),
    [((ExtensionType.supported_versions,), A.protocol_version)]
    + [(d, A.missing_extension) for d in MANDATORY],
    ids=lambda v: _ids(v) if isinstance(v, tuple) else v.name,
)
def test_first_client_hello_missing_mandatory_extension(
    drop: tuple[ExtensionType, ...], alert: AlertDescription
) -> None:
    """RFC 8446 §9.2 / §4.2.1: missing_extension (protocol_version without
    supported_versions), one plaintext fatal alert, nothing kept."""
    pair = make_pair()
    _send_hello(pair, _without(_client_hello(pair), *drop))
    end = pair.terminated("server")
    assert end is not None and end.alert is alert and not end.by_peer
    out = pair.server.datagrams_to_send(0.0)
    assert [bytes(lease)[0] for lease, _ in out] == [0x15]  # one plaintext alert
    assert bytes(out[0][0])[-1] == alert
    for lease, _ in out:
        lease.release()
    assert pair.server.owner.in_use == 0
    pair.close()


def _second_client_hello(pair: Pair) -> msgs.ClientHello:
    """Drive ClientHello1 -> HelloRetryRequest (group) by hand; return ClientHello2."""
    pair.client.connect(SERVER_ADDR, 0.0)
    for lease, _ in pair.client.datagrams_to_send(0.0):
        pair.server.receive_datagram(bytes(lease), CLIENT_ADDR, 0.0)
        lease.release()
    for lease, _ in pair.server.datagrams_to_send(0.0):
        pair.client.receive_datagram(bytes(lease), SERVER_ADDR, 0.0)
        lease.release()
    for lease, _ in pair.client.datagrams_to_send(0.0):
        lease.release()
    assert pair.client.stats["hello_retry_requests_received"] == 1
    hello = pair.client.handshake.client_hello
    assert hello is not None
    return hello


@pytest.mark.parametrize("drop", MANDATORY, ids=_ids)
def test_second_client_hello_missing_mandatory_extension_is_missing_extension(
    drop: tuple[ExtensionType, ...],
) -> None:
    """After the HRR the server has committed to this client: RFC 8446 §9.2 applies."""
    pair = make_pair(
        client={"groups": ["x25519", "secp384r1"], "key_share_groups": ["x25519"]},
        server={"groups": ["secp384r1"]},
    )
    hello = _without(_second_client_hello(pair), *drop)
    msg_type, body = msgs.push_message(hello)
    pair.server.receive_datagram(
        plaintext_record(handshake_message(msg_type, body, 1), seq=1), CLIENT_ADDR, 0.1
    )
    end = pair.terminated("server")
    assert end is not None and end.alert is A.missing_extension and not end.by_peer
    pair.close()


def test_client_hello_offering_only_dtls12_is_protocol_version() -> None:
    pair = make_pair()
    hello = _client_hello(pair)
    versions = ext.make_extension(
        ExtensionType.supported_versions, ext.push_supported_versions_client, [0xFEFD]
    )
    rest = tuple(e for e in hello.extensions if e.type != ExtensionType.supported_versions)
    _send_hello(
        pair,
        msgs.ClientHello(
            random=hello.random, cipher_suites=hello.cipher_suites, extensions=(versions, *rest)
        ),
    )
    end = pair.terminated("server")
    assert end is not None and end.alert is A.protocol_version
    pair.close()


# -- unexpected messages in every state --------------------------------------------------------

STATES = [("client", s) for s in CLIENT_STATES] + [("server", s) for s in SERVER_STATES]
# Types the state machine knows plus a few it does not.
HELLO_VERIFY_REQUEST = 3  # DTLS 1.2 only (RFC 6347 §4.2.1)
MESSAGE_TYPES = sorted({int(t) for t in HandshakeType} | {0, 7, 99, 200, 254, 255})


def _natural_epoch(pair: Pair, side: str) -> int:
    conn = pair.client if side == "client" else pair.server
    peer = pair.server if side == "client" else pair.client
    if conn.state in HELLO_STATES:
        return 0
    if conn.handshake_complete:
        return peer._records.write_epoch
    return 2


def _inject(pair: Pair, side: str, epoch: int, payload: bytes) -> None:
    conn = pair.client if side == "client" else pair.server
    peer = pair.server if side == "client" else pair.client
    addr = SERVER_ADDR if side == "client" else CLIENT_ADDR
    if epoch == 0:
        data = plaintext_record(payload, seq=1000)
    else:
        data = protected_datagram(peer, epoch, payload, ContentType.handshake)
    conn.receive_datagram(data, addr, 10.0)


def _expected_drop(msg_type: int, epoch: int, state: State) -> bool:
    """Documented rule (connection._handle_handshake_record): a handshake message in an
    epoch it can never travel in (RFC 9147 §6.1), or a new unprotected one once the hellos
    are over (§5.11), is dropped quietly; in its epoch but not expected in this state, it
    is unexpected_message (RFC 8446 §A), and so is, under the handshake keys, a type that
    exists in no epoch."""
    if epoch == 0 and state not in HELLO_STATES:
        return True
    if epoch == 2 and msg_type not in KNOWN_TYPES:
        return False  # a type that exists in no epoch, authenticated: unexpected_message
    expected = MESSAGE_EPOCH.get(msg_type, 3)
    return (epoch >= 3) != (expected >= 3) or (expected < 3 and epoch != expected)


@settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    where=st.sampled_from(STATES),
    msg_type=st.sampled_from(MESSAGE_TYPES),
    body=st.binary(max_size=80),
    epoch_choice=st.sampled_from(["state", "message"]),
)
def test_unexpected_message_in_every_state(
    where: tuple[str, State], msg_type: int, body: bytes, epoch_choice: str
) -> None:
    side, state = where
    pair = reach(side, state)
    assert pair is not None, where
    try:
        conn = pair.client if side == "client" else pair.server
        peer = pair.server if side == "client" else pair.client
        if msg_type in accepts(state):
            return  # expected messages are covered by the handshakes themselves
        if epoch_choice == "state":
            epoch = _natural_epoch(pair, side)
        else:
            epoch = MESSAGE_EPOCH.get(msg_type, 3)
            if epoch >= 3:
                epoch = peer._records.write_epoch
        if epoch and epoch not in peer._records.write_epochs():
            return  # the peer never had keys for it: that is the garbage test's business
        seq = conn._next_receive_seq()
        for lease, _ in conn.datagrams_to_send(10.0):  # what the handshake left queued
            lease.release()
        readable = epoch in conn._records.read_epochs()
        before = dict(conn.stats)
        drops_before = sum(dict(conn._records.drops).values())
        _inject(pair, side, epoch, handshake_message(msg_type, body, seq))
        dropped = _expected_drop(msg_type, epoch, state)
        event("no read keys" if not readable else "dropped" if dropped else "alert")
        if not readable:
            # No read keys for that epoch (yet): the record layer holds or drops it.
            assert not conn.closed and conn.state is state
        elif dropped:
            assert not conn.closed, conn.terminated
            assert conn.state is state
            assert (
                conn.stats["dropped_handshake_fragments"] > before["dropped_handshake_fragments"]
                or conn.stats["dropped_malformed_plaintext"] > before["dropped_malformed_plaintext"]
                or sum(dict(conn._records.drops).values()) > drops_before
            )
        elif side == "client" and msg_type == HELLO_VERIFY_REQUEST:
            # A DTLS 1.2 server's cookie exchange (RFC 6347): protocol_version.
            assert conn.terminated is not None
            assert conn.terminated.alert is A.protocol_version
        else:
            assert conn.terminated is not None, (side, state, msg_type, epoch)
            assert conn.terminated.alert is A.unexpected_message, conn.terminated
            assert not conn.terminated.by_peer
            out = conn.datagrams_to_send(10.0)
            sizes = [len(lease) for lease, _ in out]
            for lease, _ in out:
                lease.release()
            assert len(sizes) == 1, sizes  # the fatal alert, sent once
    finally:
        pair.close()
        assert pair.pools.in_use == 0


def test_new_session_ticket_sent_to_a_server_is_unexpected() -> None:
    pair = reach("server", ServerState.CONNECTED)
    assert pair is not None
    nst = msgs.NewSessionTicket(3600, 1, b"n", b"ticket", ())
    msg_type, body = msgs.push_message(nst)
    seq = pair.server._next_receive_seq()
    _inject(
        pair, "server", pair.client._records.write_epoch, handshake_message(msg_type, body, seq)
    )
    end = pair.server.terminated
    assert end is not None and end.alert is A.unexpected_message
    pair.close()


# -- garbage ----------------------------------------------------------------------------------


@pytest.mark.parametrize("where", STATES, ids=lambda w: f"{w[0]}-{w[1].name}")
def test_random_garbage_at_every_state_never_raises(where: tuple[str, State]) -> None:
    side, state = where
    pair = reach(side, state)
    assert pair is not None
    conn = pair.client if side == "client" else pair.server
    addr = SERVER_ADDR if side == "client" else CLIENT_ADDR
    rng = random.Random(hash(where) & 0xFFFF)
    before = conn.stats["datagrams_in"]
    n = 300
    for i in range(n):
        size = rng.choice([0, 1, 2, 5, 13, 16, 30, 60, 200, 1200])
        data = bytearray(rng.randbytes(size))
        if data and i % 3 == 0:
            data[0] = rng.choice([0x16, 0x15, 0x17, 0x19, 0x2C, 0x2D, 0x2E, 0x2F, 0x3F])
        conn.receive_datagram(bytes(data), addr, 10.0 + i * 1e-3)
    assert conn.stats["datagrams_in"] == before + n
    # Garbage may at most end the connection with an alert; it never raises, and a
    # connection that survived still works.
    if not conn.closed:
        assert conn.state is state
    drops = dict(conn._records.drops)
    assert sum(drops.values()) > 0
    pair.close()
    assert pair.pools.in_use == 0


def test_garbage_before_and_during_a_handshake_leaves_it_intact() -> None:
    pair = make_pair()
    rng = random.Random(7)
    pair.client.connect(SERVER_ADDR, 0.0)
    for step in range(200):
        if step % 4 == 0:
            pair.net.inject(CLIENT_ADDR, SERVER_ADDR, rng.randbytes(rng.randrange(1, 300)))
            pair.net.inject(SERVER_ADDR, CLIENT_ADDR, rng.randbytes(rng.randrange(1, 300)))
        if not pair.net.step():
            break
        if pair.completed():
            break
    assert pair.net.run(pair.completed)
    assert pair.exchange(b"intact", b"too")
    pair.close()


def test_configs_helper_is_debug() -> None:
    ccfg, scfg = configs()
    assert ccfg.debug and scfg.debug


@pytest.mark.parametrize("side", ["client", "server"])
def test_forged_plaintext_hello_does_not_destroy_an_association(side: str) -> None:
    """RFC 9147 §5.11: an epoch-0 ClientHello (or any unprotected handshake message) must
    not end an established association: a blind attacker could forge it."""
    pair = make_pair()
    assert pair.handshake()
    conn = pair.client if side == "client" else pair.server
    other = make_pair(seed=5)
    forged = _client_hello(other)
    other.close()
    msg_type, body = (
        msgs.push_message(forged) if side == "server" else (HandshakeType.server_hello, b"x")
    )
    for seq in range(0, 8):  # message_seq is easy to guess
        _inject(pair, side, 0, handshake_message(msg_type, body, seq))
    assert not conn.closed and conn.handshake_complete
    assert pair.exchange(b"still", b"here")
    pair.close()


def test_server_certificate_with_an_invalid_x509_version_is_bad_certificate() -> None:
    pair = make_pair()
    # The server sends its chain's Certificate message as encoded once with its config.
    served = pair.server.config.server_certificates.certificates[0]
    # The leaf's version field, [0] EXPLICIT INTEGER 2 (v3), becomes 5: no such version.
    forged = served.body.replace(b"\xa0\x03\x02\x01\x02", b"\xa0\x03\x02\x01\x05", 1)
    assert forged != served.body
    object.__setattr__(served, "body", forged)
    assert not pair.handshake(max_time=10)
    _fails_with(pair, "client", A.bad_certificate)
    ended = pair.terminated("client")
    assert ended is not None and "not a valid X509 version" in (ended.certificate_error or "")


# -- record_overflow, unsolicited extensions, key shares, the second ClientHello ---------------


def _protected_with_content(sender: Connection, size: int, ahead: int) -> bytes:
    """An application data record of `size` content bytes under `sender`'s real keys, built
    by hand (our own writer refuses more than 2^14)."""
    from tests.record.test_record_reference import protect

    suite = sender.cipher_suite
    assert suite is not None
    epoch = sender._records.write_epoch
    seq = sender._records.next_sequence_number(epoch) + ahead
    return protect(suite, sender.handshake.write_secret, epoch, seq, 23, b"o" * size)


@pytest.mark.parametrize("side", ["client", "server"])
def test_protected_content_over_2_14_bytes_is_record_overflow(side: str) -> None:
    """RFC 8446 §5.2: TLSInnerPlaintext over 2^14 + 1 bytes (content and type) is a fatal
    record_overflow; exactly 2^14 bytes of content is fine."""
    pair = make_pair()
    assert pair.handshake()
    victim = pair.server if side == "server" else pair.client
    sender = pair.client if side == "server" else pair.server
    addr = CLIENT_ADDR if side == "server" else SERVER_ADDR
    victim.receive_datagram(_protected_with_content(sender, 16384, 50), addr, pair.net.now)
    assert not victim.closed
    assert pair.received(side) == [b"o" * 16384]
    victim.receive_datagram(_protected_with_content(sender, 16385, 51), addr, pair.net.now)
    end = victim.terminated
    assert end is not None and end.alert is A.record_overflow and not end.by_peer
    assert pair.received(side) == [b"o" * 16384]
    pair.close()


def _server_hello_with(pair: Pair, extension: ext.Extension) -> bytes:
    """The server's real first flight with `extension` added to its ServerHello."""
    original = pair.server.handshake._send

    def add(msg: Any, epoch: int | None, *, transcript: bool = True) -> None:
        if isinstance(msg, msgs.ServerHello) and not msg.is_hello_retry_request:
            msg = msgs.ServerHello(
                random=msg.random,
                cipher_suite=msg.cipher_suite,
                extensions=(*msg.extensions, extension),
            )
        original(msg, epoch, transcript=transcript)

    pair.server.handshake._send = add  # type: ignore[method-assign]
    return b""


UNSOLICITED = [
    ext.Extension(ExtensionType.application_layer_protocol_negotiation, b"\x00\x03\x02h2"),
    ext.Extension(ExtensionType.record_size_limit, b"\x01\x00"),
    ext.Extension(0xFF01, b"\x00"),  # renegotiation_info (TLS 1.2), never offered
]


def _ext_id(e: ext.Extension) -> str:
    try:
        return ExtensionType(e.type).name
    except ValueError:
        return f"type{e.type}"


def _client_refuses(pair: Pair, alert: AlertDescription) -> None:
    """The client sent `alert` (in plaintext when it has no keys yet, which the server,
    already reading with keys, rightly ignores) and no handshake completed."""
    pair.net.run(lambda: pair.terminated("client") is not None, max_time=pair.net.now + 10)
    end = pair.terminated("client")
    assert end is not None and end.alert is alert and not end.by_peer, end
    assert not [e for e in pair.server_events if isinstance(e, HandshakeCompleted)]
    pair.close()
    assert pair.pools.in_use == 0


@pytest.mark.parametrize("extension", UNSOLICITED, ids=_ext_id)
def test_unsolicited_extension_in_server_hello_is_unsupported_extension(
    extension: ext.Extension,
) -> None:
    """RFC 8446 §4.2: a response to an extension the client did not offer is fatal."""
    pair = make_pair()
    _server_hello_with(pair, extension)
    pair.client.connect(SERVER_ADDR, 0.0)
    _client_refuses(pair, A.unsupported_extension)


@pytest.mark.parametrize("extension", UNSOLICITED, ids=_ext_id)
def test_unsolicited_extension_in_encrypted_extensions_is_unsupported_extension(
    extension: ext.Extension,
) -> None:
    pair = make_pair()
    original = pair.server.handshake._send

    def add(msg: Any, epoch: int | None, *, transcript: bool = True) -> None:
        if isinstance(msg, msgs.EncryptedExtensions):
            msg = msgs.EncryptedExtensions((*msg.extensions, extension))
        original(msg, epoch, transcript=transcript)

    pair.server.handshake._send = add  # type: ignore[method-assign]
    assert not pair.handshake(max_time=10)
    _fails_with(pair, "client", A.unsupported_extension)


def _with_extension(hello: msgs.ClientHello, extension: ext.Extension) -> msgs.ClientHello:
    kept = tuple(e for e in hello.extensions if e.type != extension.type)
    # pre_shared_key must stay last; none here.
    return msgs.ClientHello(
        random=hello.random, cipher_suites=hello.cipher_suites, extensions=(*kept, extension)
    )


def _key_share(*groups_: int) -> ext.Extension:
    from dtls13.handshake import groups as kx

    entries = [ext.KeyShareEntry(g, kx.generate(g).public_bytes) for g in groups_]
    return ext.make_extension(ExtensionType.key_share, ext.push_key_share_client, entries)


def test_second_client_hello_key_share_outside_supported_groups_is_illegal_parameter() -> None:
    """RFC 8446 §4.2.8: each KeyShareEntry's group is in supported_groups."""
    pair = make_pair(
        client={"groups": ["x25519", "secp384r1"], "key_share_groups": ["x25519"]},
        server={"groups": ["secp384r1", "secp256r1"]},
    )
    hello = _second_client_hello(pair)
    hello = _with_extension(hello, _key_share(0x0017))  # secp256r1: not in supported_groups
    msg_type, body = msgs.push_message(hello)
    pair.server.receive_datagram(
        plaintext_record(handshake_message(msg_type, body, 1), seq=1), CLIENT_ADDR, 0.1
    )
    end = pair.terminated("server")
    assert end is not None and end.alert is A.illegal_parameter and not end.by_peer, end
    pair.close()


def test_first_client_hello_key_share_outside_supported_groups_is_refused() -> None:
    """The same in a first ClientHello: refused (dropped as a damaged hello, like every
    first hello that does not make sense), never answered with a ServerHello."""
    pair = make_pair()
    hello = _with_extension(_client_hello(pair), _key_share(0x0017, 0x001D))
    supported = ext.make_extension(
        ExtensionType.supported_groups, ext.push_supported_groups, [0x001D]
    )
    hello = _with_extension(hello, supported)
    _send_hello(pair, hello)
    assert pair.server.state is ServerState.WAIT_CLIENT_HELLO
    assert pair.server.stats["dropped_damaged_hello"] == 1
    for lease, _ in pair.server.datagrams_to_send(0.0):
        assert bytes(lease)[0] != 0x16  # no ServerHello
        lease.release()
    pair.close()


SECOND_HELLO_CHANGES = {
    "cipher_suites": lambda h: msgs.ClientHello(
        random=h.random, cipher_suites=h.cipher_suites[::-1], extensions=h.extensions
    ),
    "legacy_session_id": lambda h: msgs.ClientHello(
        random=h.random,
        cipher_suites=h.cipher_suites,
        extensions=h.extensions,
        legacy_session_id=b"\x01" * 8,
    ),
    "added_alpn": lambda h: _with_extension(
        h,
        ext.make_extension(
            ExtensionType.application_layer_protocol_negotiation, ext.push_alpn, [b"h2"]
        ),
    ),
    "signature_algorithms": lambda h: _with_extension(
        h,
        ext.make_extension(
            ExtensionType.signature_algorithms, ext.push_signature_algorithms, [0x0403]
        ),
    ),
}


@pytest.mark.parametrize("change", list(SECOND_HELLO_CHANGES))
def test_second_client_hello_changed_beyond_the_retry_is_illegal_parameter(change: str) -> None:
    """RFC 8446 §4.1.2: ClientHello2 is ClientHello1 except for the key_share the HRR asked
    for, the cookie, early_data removed, pre_shared_key updated and padding."""
    pair = make_pair(
        client={"groups": ["x25519", "secp384r1"], "key_share_groups": ["x25519"]},
        server={"groups": ["secp384r1"]},
    )
    hello = SECOND_HELLO_CHANGES[change](_second_client_hello(pair))
    msg_type, body = msgs.push_message(hello)
    pair.server.receive_datagram(
        plaintext_record(handshake_message(msg_type, body, 1), seq=1), CLIENT_ADDR, 0.1
    )
    end = pair.terminated("server")
    assert end is not None and end.alert is A.illegal_parameter and not end.by_peer, end
    pair.close()


def test_second_client_hello_as_our_client_sends_it_is_accepted() -> None:
    pair = make_pair(
        client={"groups": ["x25519", "secp384r1"], "key_share_groups": ["x25519"]},
        server={"groups": ["secp384r1"], "require_cookie": True},
    )
    assert pair.handshake()
    assert pair.client.stats["hello_retry_requests_received"] == 1
    pair.close()
