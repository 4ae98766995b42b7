"""What one ClientConfig keeps across its connections (handshake.client_caches): the
ClientHello's fixed extensions encoded once, servers' compressed certificates decompressed
and parsed once. The wire and every per-handshake check stay as without the caches."""

from __future__ import annotations

import hashlib
import itertools
from typing import Any

import pytest

from dtls13 import ImportedPsk
from dtls13.alerts import AlertDescription
from dtls13.config import ClientConfig, ServerConfig
from dtls13.events import HandshakeCompleted
from dtls13.handshake import authentication, compression, groups
from dtls13.handshake import messages as msgs
from dtls13.handshake.client import ClientHandshake
from dtls13.handshake.client_caches import ENTRIES, BoundedCache
from dtls13.handshake.constants import ExtensionType
from dtls13.peer_verification import PeerVerification
from tests.support.dtls_pair import Pair, make_pair, pki, wall_clock


class _CountedRandom:
    """Deterministic random_bytes: the n-th call's bytes depend on n only."""

    def __init__(self, start: int = 0) -> None:
        self.calls = itertools.count(start)
        self.made = start

    def __call__(self, n: int) -> bytes:
        self.made = next(self.calls) + 1
        return hashlib.shake_256(str(self.made).encode()).digest(n)


def _fixed_key_shares(monkeypatch: pytest.MonkeyPatch) -> None:
    real = groups.generate

    def generate(group: int, *, seed: bytes | None = None) -> Any:
        return real(group, seed=hashlib.sha256(group.to_bytes(2, "big")).digest())

    monkeypatch.setattr(groups, "generate", generate)


def _hellos(cfg: ClientConfig, cid: bytes | None) -> tuple[bytes, bytes]:
    """The encoded first ClientHello and the one answering a HelloRetryRequest's cookie."""
    hs = ClientHandshake(cfg, wall_clock=wall_clock, count=lambda name, n: None)
    hs._work.local_cid = cid
    hs.start(pad_to=cfg.mtu if cfg.pad_client_hello else 0)
    assert hs.client_hello is not None
    first = msgs.push_message(hs.client_hello)[1]
    hs._work.hrr_cookie = b"a cookie"
    hs._send_client_hello()
    return first, msgs.push_message(hs.client_hello)[1]


VARIANTS: list[dict[str, Any]] = [
    {"verify": False},
    {
        "server_name": "10.0.0.9",
        "verify": False,
        "alpn_protocols": ["h2", "x"],
        "record_size_limit": 1000,
        "connection_id": True,
        "srtp_profiles": ["SRTP_AES128_CM_SHA1_80"],
        "srtp_mki": b"ab",
        "request_ocsp": True,
        "request_signed_certificate_timestamps": True,
        "trust_anchor_ids": [b"\x01\x02"],
        "delegated_credential_schemes": ["ecdsa_secp256r1_sha256"],
        "certificate_compression": ("zlib",),
        "psk_modes": ("psk_ke", "psk_dhe_ke"),
    },
    {"psk": (b"id", bytes(32)), "server_name": "a.example", "alpn_protocols": ["a"]},
    {"imported_psks": [ImportedPsk(b"sensor", b"A" * 32, b"plant")], "server_name": "a.example"},
    {"verify": False, "permute_extensions": True, "alpn_protocols": ["a"]},
    {"psk": (b"id", bytes(32)), "pad_client_hello": True, "permute_extensions": True},
    {"pinned_public_keys": [pki().leaf(cn="pinned").cert_pem], "server_name": "s.example"},
    {
        "verify": False,
        "groups": ["secp256r1", "x25519"],
        "key_share_groups": ["secp256r1", "x25519"],
        "cipher_suites": ["TLS_AES_256_GCM_SHA384", "TLS_AES_128_GCM_SHA256"],
        "signature_schemes": ["ecdsa_secp256r1_sha256", "rsa_pkcs1_sha256"],
        "certificate_compression": (),
    },
]


@pytest.mark.parametrize("options", VARIANTS)
def test_a_reused_config_sends_the_client_hellos_a_fresh_config_sends(
    monkeypatch: pytest.MonkeyPatch, options: dict[str, Any]
) -> None:
    """Byte for byte, first and second ClientHello, binders included: the extensions kept
    from an earlier connection change neither content nor order (permuted or padded)."""
    _fixed_key_shares(monkeypatch)
    cid = b"\x07" * 8 if options.get("connection_id") else None
    random = _CountedRandom()
    reused = ClientConfig(random_bytes=random, **options)
    _hellos(reused, cid)  # an earlier connection: the config's template is made
    template = reused.caches.hello
    assert template is not None
    # A fresh config whose random sequence starts where the reused one's now is.
    fresh = ClientConfig(random_bytes=_CountedRandom(random.made), **options)
    again = _hellos(reused, cid)
    assert reused.caches.hello is template  # made once
    assert fresh.caches.hello is None
    assert _hellos(fresh, cid) == again


def _completed(pair: Pair) -> HandshakeCompleted:
    pair.drain()
    return next(e for e in pair.client_events if isinstance(e, HandshakeCompleted))


def _server(cn: str, slot: int) -> ServerConfig:
    leaf = pki().leaf(cn=cn, slot=slot)
    return ServerConfig(
        certificate_chain=leaf.chain_pem, private_key=leaf.key_pem, idle_release_after=None
    )


@pytest.mark.parametrize("compressed", [True, False], ids=["compressed", "uncompressed"])
def test_two_servers_through_one_config_each_present_their_own_chain(compressed: bool) -> None:
    """The caches are keyed by the exact bytes each server sent: never another's chain."""
    client = ClientConfig(
        server_name="localhost",
        cafile=pki().root_pem,
        certificate_compression=None if compressed else (),
    )
    servers = {"a": _server("server a", 41), "b": _server("server b", 42)}
    expected = {name: cfg.chain for name, cfg in servers.items()}
    assert expected["a"][0] != expected["b"][0]
    seen: dict[str, HandshakeCompleted] = {}
    for name in "abab":
        pair = make_pair(cfgs=(client, servers[name]))
        assert pair.handshake()
        done = _completed(pair)
        assert done.peer_certificates == expected[name]
        assert done.certificate_compression_received == ("brotli" if compressed else None)
        assert pair.client.statistics().certificates_decompressed == int(compressed)
        if name in seen:  # from the caches: the same event as the first time
            assert done == seen[name]
        seen[name] = done
        pair.close()
    assert len(client.caches.certificates) == (2 if compressed else 0)
    assert len(client.caches.chains) == 2


def test_a_cached_certificate_skips_decompression_not_its_checks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The second handshake decompresses nothing; the chain is still verified (the
    verify_callback hears of it) and so is CertificateVerify."""
    verdicts: list[PeerVerification] = []

    def callback(verdict: PeerVerification) -> bool:
        verdicts.append(verdict)
        return True

    client = ClientConfig(
        server_name="localhost",
        cafile=pki().root_pem,
        verify_callback=callback,
        certificate_compression=("zlib",),
    )
    server = _server("server c", 43)
    pair = make_pair(cfgs=(client, server))
    assert pair.handshake()
    pair.close()
    monkeypatch.setattr(compression, "decompress_into_untrusted", pytest.fail)
    pair = make_pair(cfgs=(client, server))
    assert pair.handshake()
    assert _completed(pair).certificate_compression_received == "zlib"
    pair.close()
    assert [v.verified for v in verdicts] == [True, True]
    assert verdicts[0].chain == verdicts[1].chain == server.chain

    # The same certificate, signed for by another key: the cached path still refuses it.
    real = authentication.certs.sign_certificate_verify

    def wrong_key(key: Any, *args: Any, **kwargs: Any) -> Any:
        return real(pki().leaf(slot=44).key, *args, **kwargs)

    monkeypatch.setattr(authentication.certs, "sign_certificate_verify", wrong_key)
    pair = make_pair(cfgs=(client, server))
    assert not pair.handshake(max_time=10)
    ended = pair.terminated("client")
    assert ended is not None and ended.alert == AlertDescription.decrypt_error
    assert len(verdicts) == 3
    pair.close()


def test_the_caches_keep_only_the_most_recently_used_entries() -> None:
    cache: BoundedCache[int, str] = BoundedCache(3)
    for key in range(3):
        cache.put(key, str(key))
    assert cache.get(0) == "0"  # now the most recently used
    cache.put(3, "3")
    assert len(cache) == 3
    assert cache.get(1) is None  # the least recently used went
    assert [cache.get(k) for k in (0, 2, 3)] == ["0", "2", "3"]
    many: BoundedCache[int, int] = BoundedCache()
    for key in range(100):
        many.put(key, key)
    assert len(many) == ENTRIES


def test_configs_do_not_share_caches() -> None:
    a = ClientConfig(verify=False)
    b = ClientConfig(verify=False)
    assert a.caches is not b.caches
    assert a == b  # the caches take no part in comparisons


ORDER_WITH_EVERY_REQUEST = [
    "supported_versions",
    "cookie",
    "supported_groups",
    "key_share",
    "signature_algorithms",
    "signature_algorithms_cert",
    "application_layer_protocol_negotiation",
    "record_size_limit",
    "connection_id",
    "use_srtp",
    "status_request",
    "signed_certificate_timestamp",
    "trust_anchors",
    "delegated_credential",
    "compress_certificate",
    "psk_key_exchange_modes",
]
ORDER_WITH_RAW_KEYS_AND_A_PSK = [
    "supported_versions",
    "cookie",
    "supported_groups",
    "key_share",
    "signature_algorithms",
    "signature_algorithms_cert",
    "server_name",
    "application_layer_protocol_negotiation",
    "server_certificate_type",
    "client_certificate_type",
    "compress_certificate",
    "psk_key_exchange_modes",
    "pre_shared_key",
]


def _names(hello: msgs.ClientHello) -> list[str]:
    known = {int(t): t.name for t in ExtensionType}
    return [
        known.get(e.type, "trust_anchors" if e.type == 0xCA34 else "?") for e in hello.extensions
    ]


@pytest.mark.parametrize(
    ("options", "order"),
    [
        (VARIANTS[1], ORDER_WITH_EVERY_REQUEST),
        (
            {
                "server_name": "s.example",
                "pinned_public_keys": [pki().leaf(cn="pinned").cert_pem],
                "raw_public_key": True,
                "private_key": pki().leaf(cn="own").key_pem,
                "psk": (b"id", bytes(32)),
                "require_psk": False,
                "alpn_protocols": ["a"],
            },
            ORDER_WITH_RAW_KEYS_AND_A_PSK,
        ),
    ],
)
def test_the_client_hello_keeps_its_extension_order_connection_after_connection(
    options: dict[str, Any], order: list[str]
) -> None:
    """The order the extensions had before any were kept per configuration, on the first
    and the second ClientHello of a first and a later connection."""
    cfg = ClientConfig(**options)
    for _ in range(2):
        hs = ClientHandshake(cfg, wall_clock=wall_clock, count=lambda name, n: None)
        hs._work.local_cid = b"\x07" * 8 if options.get("connection_id") else None
        hs.start()
        assert hs.client_hello is not None
        assert _names(hs.client_hello) == [n for n in order if n != "cookie"]
        hs._work.hrr_cookie = b"a cookie"
        hs._send_client_hello()
        assert _names(hs.client_hello) == order
