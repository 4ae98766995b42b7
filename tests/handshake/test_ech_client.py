"""Encrypted Client Hello, the client (RFC 9849 §6): the hellos it sends, and handshakes with
a dtls13 server behind a test ECH front that decrypts ClientHelloOuter and signals
acceptance the way RFC 9849 §7 says (the client-facing server of a shared-mode deployment).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from dtls13._fast import Buffer
from dtls13.alerts import (
    Alert,
    AlertDescription,
    DecodeErrorAlert,
    EchRequired,
    IllegalParameter,
    UnsupportedExtension,
)
from dtls13.config import ClientConfig, ServerConfig
from dtls13.events import EchStatus
from dtls13.handshake import ech, ech_client, hpke
from dtls13.handshake import extensions as ext
from dtls13.handshake import messages as msgs
from dtls13.handshake.client import ClientHandshake
from dtls13.handshake.constants import ExtensionType, HandshakeType, NamedGroup
from dtls13.handshake.server import ServerHandshake
from dtls13.handshake.work import HandshakeOutput
from tests.support.dtls_pair import pki, wall_clock

ET = ExtensionType
HT = HandshakeType
SECRET, PUBLIC = "secret.example", "public.example"
SUITE = ech.EchCipherSuite(hpke.KdfId.HKDF_SHA256, hpke.AeadId.AES_128_GCM)
KEY = X25519PrivateKey.from_private_bytes(bytes(range(32)))


def make_config(
    public_name: bytes = PUBLIC.encode(),
    *,
    key: X25519PrivateKey = KEY,
    suites: tuple[ech.EchCipherSuite, ...] = (SUITE,),
    kem_id: int = hpke.KemId.DHKEM_X25519_HKDF_SHA256,
    config_id: int = 7,
    extensions: tuple[tuple[int, bytes], ...] = (),
) -> ech.EchConfig:
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return ech.encode_ech_config(
        config_id,
        kem_id,
        public,
        suites,
        public_name,
        maximum_name_length=32,
        extensions=extensions,
    )


CONFIG = make_config()
CONFIG_LIST = ech.push_ech_config_list([CONFIG])
RETRY_LIST = ech.push_ech_config_list([make_config(config_id=8)])


def _count(name: str, n: int) -> None:
    pass


def client(counts: dict[str, int] | None = None, **options: Any) -> ClientHandshake:
    settings: dict[str, Any] = {
        "server_name": SECRET,
        "cafile": pki().root_pem,
        "ech_config_list": CONFIG_LIST,
        "debug": True,
        **options,
    }
    tally = counts if counts is not None else {}

    def count(name: str, n: int) -> None:
        tally[name] = tally.get(name, 0) + n

    return ClientHandshake(ClientConfig(**settings), wall_clock=wall_clock, count=count)


@functools.cache
def _leaf(*names: str) -> Any:
    return pki().leaf("ec256", dns_names=names)


def server_config(name: str, **options: Any) -> ServerConfig:
    leaf = _leaf(name)
    return ServerConfig(
        certificate_chain=leaf.chain_pem,
        private_key=leaf.key_pem,
        session_tickets=0,
        debug=True,
        **options,
    )


class Front:
    """The client-facing server: opens ClientHelloOuter with the ECH key (§7.1) and hands
    ClientHelloInner to the server; keeps the HPKE context for a second ClientHello."""

    def __init__(self, key: X25519PrivateKey = KEY) -> None:
        self.key = key
        self.context: hpke.HpkeContext | None = None
        self.outers: list[msgs.ClientHello] = []
        self.encoded: list[bytes] = []

    def open(self, body: bytes) -> tuple[bytes, msgs.ClientHello]:
        outer = msgs.pull_message(HT.client_hello, body)
        assert isinstance(outer, msgs.ClientHello)
        self.outers.append(outer)
        data = outer.extension(ET.encrypted_client_hello)
        assert data is not None
        offer = ech.pull_ech_client_hello(data)
        assert offer is not None
        if self.context is None:
            self.context = hpke.setup_base_receiver(
                CONFIG.kem_id, offer.suite.kdf, offer.suite.aead, offer.enc, self.key,
                CONFIG.hpke_info,
            )  # fmt: skip
        else:
            assert offer.enc == b""  # §6.1.5: the second ClientHello reuses the context
        encoded = self.context.open(ech.client_hello_outer_aad(outer, offer), offer.payload)
        self.encoded.append(encoded)
        inner = ech.decode_client_hello_inner(encoded, outer)
        _, inner_body = msgs.push_message(inner)
        return inner_body, inner


class EchServer(ServerHandshake):
    """A dtls13 server that signals ECH acceptance (§7.2, §7.2.1) when `accept` says so and
    sends `retry_configs` in EncryptedExtensions when given."""

    accept = True
    accept_server_hello = True
    retry_configs: bytes | None = None
    inner_random = b""

    def _send(self, msg: Any, epoch: int | None, *, transcript: bool = True) -> None:
        if isinstance(msg, msgs.ServerHello) and self.accept:
            msg = self._signal(msg)
        if isinstance(msg, msgs.EncryptedExtensions) and self.retry_configs is not None:
            extension = ext.Extension(ET.encrypted_client_hello, self.retry_configs)
            msg = dataclasses.replace(msg, extensions=(*msg.extensions, extension))
        super()._send(msg, epoch, transcript=transcript)

    def _signal(self, sh: msgs.ServerHello) -> msgs.ServerHello:
        hash_name = self._work.transcript.hash_name
        assert hash_name is not None
        if sh.is_hello_retry_request:
            # (A server that knows ECH may have added its own; this one is computed here.)
            others = tuple(e for e in sh.extensions if e.type != ET.encrypted_client_hello)
            zero = ext.Extension(ET.encrypted_client_hello, bytes(8))
            _, body = msgs.push_message(dataclasses.replace(sh, extensions=(*others, zero)))
            digest = self._work.transcript.digest_with(_header(body) + body)
            signal = ech.hrr_accept_confirmation(hash_name, self.inner_random, digest)
            extension = ext.Extension(ET.encrypted_client_hello, signal)
            return dataclasses.replace(sh, extensions=(*others, extension))
        if not self.accept_server_hello:  # (overwriting what a server that knows ECH put)
            return dataclasses.replace(sh, random=sh.random[:24] + bytes(8))
        zeroed = dataclasses.replace(sh, random=sh.random[:24] + bytes(8))
        _, body = msgs.push_message(zeroed)
        digest = self._work.transcript.digest_with(_header(body) + body)
        signal = ech.accept_confirmation(hash_name, self.inner_random, digest)
        return dataclasses.replace(sh, random=sh.random[:24] + signal)


def _header(body: bytes) -> bytes:
    return bytes([HT.server_hello]) + len(body).to_bytes(3, "big")


def server(config: ServerConfig, cls: type[ServerHandshake] = EchServer) -> ServerHandshake:
    return cls(config, wall_clock=wall_clock, count=_count)


@dataclasses.dataclass
class Run:
    client_outputs: list[HandshakeOutput]
    server_outputs: list[HandshakeOutput]

    @property
    def client_completed(self) -> Any:
        return next((o.completed for o in self.client_outputs if o.completed), None)

    @property
    def abort(self) -> Any:
        return next((o.abort for o in self.client_outputs if o.abort), None)


def run(c: ClientHandshake, s: ServerHandshake, front: Front | None) -> Run:
    """Pass handshake messages both ways until neither side has more to say."""
    result = Run([], [])
    pending = list(c.start().messages)
    while pending:
        answers: list[Any] = []
        for m in pending:
            body = m.body
            if m.msg_type == HT.client_hello and front is not None:
                body, inner = front.open(body)
                assert isinstance(s, EchServer)
                s.inner_random = inner.random
            out = s.handle_message(m.msg_type, body, 0.0)
            result.server_outputs.append(out)
            answers += out.messages
        pending = []
        for m in answers:
            out = c.handle_message(m.msg_type, m.body, 0.0)
            result.client_outputs.append(out)
            pending += out.messages
            if out.abort is not None:
                return result
    return result


def first_hello(c: ClientHandshake) -> bytes:
    out = c.start()
    (message,) = out.messages
    assert message.msg_type == HT.client_hello
    return message.body


def _sni(hello: msgs.ClientHello) -> str | None:
    data = hello.extension(ET.server_name)
    return None if data is None else ext.decode(data, ext.pull_server_name)


# -- what goes on the wire ---------------------------------------------------------------------


def test_observer_sees_only_the_public_name_and_the_server_the_real_hello() -> None:
    c = client(alpn_protocols=["h3"])
    body = first_hello(c)
    assert SECRET.encode() not in body and b"h3" in body  # ALPN is shared, not secret
    inner_body, inner = Front().open(body)
    outer = msgs.pull_message(HT.client_hello, body)
    assert isinstance(outer, msgs.ClientHello)
    assert _sni(outer) == PUBLIC and _sni(inner) == SECRET
    assert inner.extension(ET.encrypted_client_hello) == ech.ECH_INNER_MARKER
    assert outer.random != inner.random  # §6.1: a fresh random for ClientHelloOuter
    # The client's transcript holds the inner hello until the server answers.
    assert c._work.transcript.digest("sha256") == _hash(inner_body)


def _hash(body: bytes) -> bytes:
    import hashlib

    return hashlib.sha256(bytes([HT.client_hello]) + len(body).to_bytes(3, "big") + body).digest()


def test_shared_extensions_are_compressed_but_never_the_server_name() -> None:
    front = Front()
    front.open(first_hello(client(server_name=PUBLIC)))
    (encoded,) = front.encoded
    with Buffer(encoded) as buf:  # EncodedClientHelloInner, its padding left unread
        hello = msgs.pull_client_hello(buf)
    types = [e.type for e in hello.extensions]
    assert ET.server_name in types  # §5.1: its name matches the public one, still not copied
    outer_list = hello.extension(ET.ech_outer_extensions)
    assert outer_list is not None
    copied = {int.from_bytes(outer_list[i : i + 2], "big") for i in range(1, len(outer_list), 2)}
    assert {ET.key_share, ET.supported_versions, ET.signature_algorithms} <= copied
    assert ET.server_name not in copied


@pytest.mark.parametrize("name", [SECRET, "a" * 40 + ".example", None])
def test_encoded_inner_hello_is_padded_to_hide_the_name_length(name: str | None) -> None:
    front = Front()
    front.open(first_hello(client(server_name=name, verify=name is not None)))
    (encoded,) = front.encoded
    assert len(encoded) % 32 == 0  # §6.1.3


def test_padding_makes_names_up_to_the_maximum_length_look_alike() -> None:
    sizes = set()
    for name in ("a.example", "much-longer-name.example"):  # both within maximum_name_length
        front = Front()
        front.open(first_hello(client(server_name=name)))
        sizes.add(len(front.encoded[0]))
    assert len(sizes) == 1


def test_unusable_configs_are_skipped_for_the_first_usable_one() -> None:
    unknown_kem = make_config(kem_id=0x6666, config_id=1)
    unknown_suite = make_config(suites=(ech.EchCipherSuite(0x1111, 0x2222),), config_id=2)
    mandatory = make_config(extensions=((0xFA00, b""),), config_id=3)
    bad_name = make_config(public_name=b"192.168.0.1", config_id=4)
    good = make_config(config_id=5)
    chosen = ech_client.choose([unknown_kem, unknown_suite, mandatory, bad_name, good, CONFIG])
    assert chosen is not None and chosen[0] is good


def test_no_usable_config_sends_no_ech_and_grease_only_when_asked() -> None:
    unusable = ech.push_ech_config_list([make_config(kem_id=0x6666)])
    for grease, status in ((False, EchStatus.NOT_OFFERED), (True, EchStatus.GREASE)):
        c = client(ech_config_list=unusable, ech_grease=grease)
        hello = msgs.pull_message(HT.client_hello, first_hello(c))
        assert isinstance(hello, msgs.ClientHello)
        assert (hello.extension(ET.encrypted_client_hello) is not None) == grease
        assert _sni(hello) == SECRET and c.ech_status() is status


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        (b"public.example", True),
        (b"a-b.c0", True),
        (b"", False),
        (b".example", False),
        (b"example.", False),
        (b"-a.example", False),
        (b"a..example", False),
        (b"x" * 64 + b".example", False),
        (b"under_score.example", False),
        (b"10.0.0.1", False),  # the last label a number: an IPv4 literal (§6.1.7)
        (b"example.0x1f", False),
        (b"example.0x", False),
        (b"example.0xg", True),
    ],
)
def test_public_name_validity(name: bytes, valid: bool) -> None:
    assert ech_client.valid_public_name(name) is valid


def test_malformed_config_list_is_refused_at_once() -> None:
    with pytest.raises(ValueError, match="ech_config_list"):
        client(ech_config_list=CONFIG_LIST[1:])
    with pytest.raises(TypeError):
        client(ech_config_list="not bytes")


def test_grease_extension_looks_like_a_real_one() -> None:
    c = client(ech_config_list=None, ech_grease=True)
    hello = msgs.pull_message(HT.client_hello, first_hello(c))
    assert isinstance(hello, msgs.ClientHello)
    data = hello.extension(ET.encrypted_client_hello)
    assert data is not None
    offer = ech.pull_ech_client_hello(data)
    assert offer is not None and len(offer.enc) == 32
    assert (len(offer.payload) - 16) % 32 == 0 and offer.suite.supported


# -- handshakes ----------------------------------------------------------------------------


def test_accepted_ech_handshakes_with_the_inner_hello() -> None:
    c = client(alpn_protocols=["h3"])
    s = server(server_config(SECRET, alpn_protocols=["h3"]))
    result = run(c, s, Front())
    completed = result.client_completed
    assert completed is not None and completed.ech_status is EchStatus.ACCEPTED
    assert completed.alpn_protocol == "h3"
    assert isinstance(s, ServerHandshake) and s.server_name == SECRET
    assert c.peer_verification is not None and c.peer_verification.server_name == SECRET
    assert c.peer_verification.ech_name_override is None


def test_accepted_ech_after_hello_retry_request_reuses_the_hpke_context() -> None:
    counts: dict[str, int] = {}
    c = client(counts)
    s = server(server_config(SECRET, groups=["secp256r1"]))
    front = Front()
    result = run(c, s, front)
    assert len(front.outers) == 2  # the second outer opened with the same context, no enc
    assert counts["hello_retry_requests_received"] == 1
    completed = result.client_completed
    assert completed is not None and completed.ech_status is EchStatus.ACCEPTED
    assert completed.group is NamedGroup.secp256r1


def test_a_server_hello_dropped_as_damaged_leaves_no_ech_verdict_behind() -> None:
    """The connection drops a ServerHello that fails as illegal_parameter and restores the
    hello state (save_hello / restore_hello): the ECH verdict it reached goes too."""
    c = client()
    s = server(server_config(SECRET))
    assert isinstance(s, EchServer)
    body, inner = Front().open(first_hello(c))
    s.inner_random = inner.random
    flight = s.handle_message(HT.client_hello, body, 0.0).messages
    sh = msgs.pull_message(HT.server_hello, flight[0].body)
    assert isinstance(sh, msgs.ServerHello)
    # No confirmation (a changed random), and a key share for a group we did not offer.
    share = ext.make_extension(
        ET.key_share, ext.push_key_share_entry, ext.KeyShareEntry(NamedGroup.secp384r1, b"\x04")
    )
    others = tuple(e for e in sh.extensions if e.type != ET.key_share)
    damaged = dataclasses.replace(sh, random=bytes(32), extensions=(*others, share))
    saved = c.save_hello()
    with pytest.raises(IllegalParameter):
        c.handle_message(HT.server_hello, msgs.push_message(damaged)[1], 0.0)
    c.restore_hello(saved)
    answers = [c.handle_message(m.msg_type, m.body, 0.0) for m in flight]
    assert c.ech_status() is EchStatus.ACCEPTED
    for m in answers[-1].messages:
        s.handle_message(m.msg_type, m.body, 0.0)
    completed = next(o.completed for o in answers if o.completed)
    assert completed.ech_status is EchStatus.ACCEPTED and s.server_name == SECRET


def test_server_hello_must_confirm_the_ech_its_hello_retry_request_accepted() -> None:
    c = client()
    s = server(server_config(SECRET, groups=["secp256r1"]))
    assert isinstance(s, EchServer)
    s.accept_server_hello = False
    with pytest.raises(IllegalParameter, match="HelloRetryRequest accepted"):
        run(c, s, Front())


def test_retry_configs_after_accepted_ech_are_an_unsupported_extension() -> None:
    c = client()
    s = server(server_config(SECRET))
    assert isinstance(s, EchServer)
    s.retry_configs = RETRY_LIST
    with pytest.raises(UnsupportedExtension):
        run(c, s, Front())


def _rejecting(name: str = PUBLIC, **options: Any) -> EchServer:
    s = server(server_config(name, **options))
    assert isinstance(s, EchServer)
    s.accept = False
    return s


def test_rejected_ech_authenticates_the_public_name_then_ends_with_ech_required() -> None:
    leaf = _leaf("client.example")
    c = client(certificate_chain=leaf.chain_pem, private_key=leaf.key_pem)
    s = _rejecting(client_auth="optional")
    s.retry_configs = RETRY_LIST
    result = run(c, s, None)
    abort = result.abort
    assert isinstance(abort, EchRequired) and abort.description is AlertDescription.ech_required
    assert abort.retry_configs == RETRY_LIST
    assert result.client_completed is None and c.ech_status() is EchStatus.REJECTED
    assert s.server_name == PUBLIC
    verdict = c.peer_verification
    assert verdict is not None and verdict.accepted
    assert verdict.server_name == PUBLIC and verdict.ech_name_override == PUBLIC
    # §6.1.7: asked for a certificate, the client sends an empty one, then its Finished.
    final = result.client_outputs[-1]
    sent = [(m.msg_type, m.body) for m in final.messages]
    assert sent[0] == msgs.push_message(msgs.Certificate(b"", ()))
    assert [t for t, _ in sent] == [HT.certificate, HT.finished]


def test_rejected_ech_does_not_accept_a_certificate_for_the_secret_name_only() -> None:
    c = client()
    with pytest.raises(Alert):  # the certificate names SECRET: not the public name
        run(c, _rejecting(SECRET), None)


def test_rejected_ech_after_hello_retry_request_sends_the_outer_hello_again() -> None:
    counts: dict[str, int] = {}
    c = client(counts)
    s = _rejecting(groups=["secp256r1"])
    result = run(c, s, None)
    assert isinstance(result.abort, EchRequired) and result.abort.retry_configs is None
    assert counts["hello_retry_requests_received"] == 1 and s.server_name == PUBLIC


def test_hello_retry_request_with_a_malformed_ech_extension_is_a_decode_error() -> None:
    class Bad(EchServer):
        def _signal(self, sh: msgs.ServerHello) -> msgs.ServerHello:
            bad = ext.Extension(ET.encrypted_client_hello, bytes(7))
            return dataclasses.replace(sh, extensions=(*sh.extensions, bad))

    c = client(ech_config_list=None, ech_grease=True)
    s = server(server_config(SECRET, groups=["secp256r1"]), Bad)
    with pytest.raises(DecodeErrorAlert):
        run(c, s, None)


def test_grease_completes_with_a_server_that_ignores_it_and_its_retry_configs() -> None:
    c = client(ech_config_list=None, ech_grease=True)
    s = _rejecting(SECRET, groups=["secp256r1"])
    s.retry_configs = RETRY_LIST
    result = run(c, s, None)
    completed = result.client_completed
    assert completed is not None and completed.ech_status is EchStatus.GREASE
    assert c.ech_retry_configs is None  # §6.2.1: never kept


def test_grease_sends_the_same_extension_in_the_second_hello() -> None:
    seen: list[bytes | None] = []

    class Recording(EchServer):
        def _on_client_hello(self, ch: msgs.ClientHello, *args: Any) -> None:
            seen.append(ch.extension(ET.encrypted_client_hello))
            super()._on_client_hello(ch, *args)

    c = client(ech_config_list=None, ech_grease=True)
    s = server(server_config(SECRET, groups=["secp256r1"]), Recording)
    assert isinstance(s, EchServer)
    s.accept = False
    run(c, s, None)
    assert len(seen) == 2 and seen[0] is not None and seen[0] == seen[1]


@pytest.mark.parametrize("grease", [False, True])
def test_ech_extension_in_server_hello_is_an_unsupported_extension(grease: bool) -> None:
    class Echoing(EchServer):
        def _signal(self, sh: msgs.ServerHello) -> msgs.ServerHello:
            stray = ext.Extension(ET.encrypted_client_hello, bytes(8))
            return dataclasses.replace(sh, extensions=(*sh.extensions, stray))

    c = client(ech_config_list=None, ech_grease=True) if grease else client()
    with pytest.raises(UnsupportedExtension, match="in ServerHello"):
        run(c, server(server_config(SECRET), Echoing), None)


def test_grease_checks_retry_configs_syntax() -> None:
    c = client(ech_config_list=None, ech_grease=True)
    s = _rejecting(SECRET)
    s.retry_configs = b"\xba\xdd\xec\xcc"
    with pytest.raises(DecodeErrorAlert):
        run(c, s, None)


def test_no_offer_means_an_ech_extension_from_the_server_is_unsupported() -> None:
    c = client(ech_config_list=None)
    s = _rejecting(SECRET)
    s.retry_configs = RETRY_LIST
    with pytest.raises(UnsupportedExtension):
        run(c, s, None)
