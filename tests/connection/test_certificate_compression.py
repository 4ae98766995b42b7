"""Certificate compression (RFC 8879) in whole handshakes: negotiation in both roles, the
transcript, the alerts for bad compressed certificates, and the smaller first flight."""

from __future__ import annotations

import zlib
from typing import Any

import pytest

from dtls13.alerts import AlertDescription
from dtls13.config import ServerConfig
from dtls13.connection import Connection
from dtls13.endpoint import ServerEndpoint
from dtls13.events import HandshakeCompleted
from dtls13.handshake import compression
from dtls13.handshake.compression import Algorithm
from dtls13.handshake.constants import HandshakeType
from dtls13.handshake.key_schedule import Transcript
from dtls13.memory import PoolSet
from tests.support.dtls_pair import (
    CLIENT_ADDR,
    SERVER_ADDR,
    Pair,
    configs,
    make_pair,
    pki,
    wall_clock,
)

HT = HandshakeType


def _completed(pair: Pair, side: str) -> HandshakeCompleted:
    pair.drain()
    events = pair.client_events if side == "client" else pair.server_events
    return next(e for e in events if isinstance(e, HandshakeCompleted))


def _client_auth(
    client: dict[str, Any] | None = None, server: dict[str, Any] | None = None
) -> Pair:
    leaf = pki().leaf("ec256", cn="dtls13 compressing client")
    return make_pair(
        client={"certificate_chain": leaf.chain_pem, "private_key": leaf.key_pem, **(client or {})},
        server={"client_auth": "required", "cafile": pki().root_pem, **(server or {})},
    )


@pytest.mark.parametrize("algorithm", list(Algorithm), ids=lambda a: a.name)
def test_the_server_certificate_arrives_compressed_with_each_algorithm(
    algorithm: Algorithm,
) -> None:
    pair = make_pair(client={"certificate_compression": (algorithm.name,)})
    assert pair.handshake()
    assert _completed(pair, "client").certificate_compression_received == algorithm.name
    assert _completed(pair, "server").certificate_compression_sent == algorithm.name
    assert pair.server.statistics().certificates_compressed == 1
    assert pair.client.statistics().certificates_decompressed == 1
    assert pair.exchange(b"ping", b"pong")
    pair.close()


@pytest.mark.parametrize("algorithm", list(Algorithm), ids=lambda a: a.name)
def test_a_client_certificate_goes_compressed_when_the_certificate_request_offers_it(
    algorithm: Algorithm,
) -> None:
    pair = _client_auth(server={"certificate_compression": (algorithm.name,)})
    assert pair.handshake()
    client, server = _completed(pair, "client"), _completed(pair, "server")
    assert client.certificate_compression_sent == algorithm.name
    assert server.certificate_compression_received == algorithm.name
    assert "CN=dtls13 compressing client" in server.peer_certificates[0].subject.rfc4514_string()
    assert pair.client.statistics().certificates_compressed == 1
    assert pair.server.statistics().certificates_decompressed == 1
    pair.close()


def test_the_peers_preference_order_chooses_the_algorithm() -> None:
    pair = make_pair(
        client={"certificate_compression": ("zstd", "zlib")},
        server={"certificate_compression": ("zlib", "brotli", "zstd")},
    )
    assert pair.handshake()
    assert _completed(pair, "server").certificate_compression_sent == "zstd"
    pair.close()


@pytest.mark.parametrize(
    ("client", "server"),
    [((), ("zlib",)), (("zlib",), ()), (("brotli",), ("zlib", "zstd"))],
    ids=["client-off", "server-off", "nothing-in-common"],
)
def test_without_an_algorithm_in_common_the_certificate_goes_uncompressed(
    client: tuple[str, ...], server: tuple[str, ...]
) -> None:
    pair = make_pair(
        client={"certificate_compression": client}, server={"certificate_compression": server}
    )
    assert pair.handshake()
    assert _completed(pair, "client").certificate_compression_received is None
    assert _completed(pair, "server").certificate_compression_sent is None
    assert pair.server.statistics().certificates_compressed == 0
    pair.close()


def test_compression_survives_a_hello_retry_request() -> None:
    pair = make_pair(server={"require_cookie": True})
    assert pair.handshake()
    assert pair.client.statistics().hello_retry_requests_received == 1
    assert _completed(pair, "client").certificate_compression_received == "brotli"
    pair.close()


def test_the_transcript_holds_the_compressed_certificate_as_sent(monkeypatch: Any) -> None:
    """RFC 8879 §4: CompressedCertificate replaces Certificate, in the transcript too:
    both sides hash the message as it went on the wire, never the decompressed one."""
    added: list[tuple[int, bytes]] = []
    real_add = Transcript.add

    def spy(self: Transcript, msg_type: int, body: bytes | memoryview) -> None:
        added.append((msg_type, bytes(body)))
        real_add(self, msg_type, body)

    monkeypatch.setattr(Transcript, "add", spy)
    pair = make_pair(client={"certificate_compression": ("zlib",)})
    assert pair.handshake()
    compressed = [body for t, body in added if t == HT.compressed_certificate]
    assert len(compressed) == 2  # the server's transcript and the client's
    assert compressed[0] == compressed[1]
    assert compressed[0][:2] == b"\x00\x01"  # algorithm zlib
    assert not [t for t, _ in added if t == HT.certificate]
    pair.close()


def test_a_receiver_hashing_the_decompressed_certificate_fails_the_handshake(
    monkeypatch: Any,
) -> None:
    """Both sides must hash the same message: a client that hashed the Certificate it
    decompressed would not verify the server's CertificateVerify."""
    from dtls13.handshake.client import ClientHandshake

    real = ClientHandshake._on_certificate

    def wrong(self: Any, msg: Any, body: bytes, msg_type: int = HT.certificate) -> None:
        if msg_type == HT.compressed_certificate:
            packed = compression.decode_compressed_certificate_untrusted(body)
            body = zlib.decompress(packed.compressed_certificate_message)
        real(self, msg, body, HT.certificate)

    monkeypatch.setattr(ClientHandshake, "_on_certificate", wrong)
    pair = make_pair(client={"certificate_compression": ("zlib",)})
    assert not pair.handshake(max_time=10)
    ended = pair.terminated("client")
    assert ended is not None and ended.alert == AlertDescription.decrypt_error


def _server_sends(monkeypatch: Any, body: bytes) -> None:
    """The CompressedCertificate body sent is `body`, whatever was compressed."""
    monkeypatch.setattr(compression, "compressed_certificate_body", lambda *_: body)


def _alert_at_client(pair: Pair) -> AlertDescription | None:
    assert not pair.handshake(max_time=10)
    ended = pair.terminated("client")
    assert ended is not None and not ended.by_peer
    return ended.alert


def test_an_algorithm_the_client_did_not_offer_is_illegal_parameter(monkeypatch: Any) -> None:
    monkeypatch.setattr(compression, "choose", lambda peer, ours: Algorithm.brotli)
    pair = make_pair(client={"certificate_compression": ("zlib",)})
    assert _alert_at_client(pair) == AlertDescription.illegal_parameter
    assert "did not offer" in (pair.terminated("client") or pytest.fail()).reason


def test_a_compressed_certificate_without_any_offer_is_unexpected_message(
    monkeypatch: Any,
) -> None:
    monkeypatch.setattr(compression, "choose", lambda peer, ours: Algorithm.zlib)
    pair = make_pair(client={"certificate_compression": ()})
    assert _alert_at_client(pair) == AlertDescription.unexpected_message


def test_a_length_other_than_the_announced_one_is_bad_certificate(monkeypatch: Any) -> None:
    chain = configs()[1].chain
    from dtls13.handshake.authentication import certificate_body

    body = certificate_body(chain)
    _server_sends(
        monkeypatch,
        compression.encode_compressed_certificate(
            compression.CompressedCertificate(1, len(body) + 1, zlib.compress(body))
        ),
    )
    pair = make_pair(client={"certificate_compression": ("zlib",)})
    assert _alert_at_client(pair) == AlertDescription.bad_certificate


def test_a_decompression_bomb_is_bad_certificate(monkeypatch: Any) -> None:
    bomb = zlib.compress(bytes(32 << 20), 9)
    _server_sends(
        monkeypatch,
        compression.encode_compressed_certificate(compression.CompressedCertificate(1, 4000, bomb)),
    )
    pair = make_pair(client={"certificate_compression": ("zlib",)})
    assert _alert_at_client(pair) == AlertDescription.bad_certificate
    assert (
        "more than the 4000 bytes announced" in (pair.terminated("client") or pytest.fail()).reason
    )
    assert pair.client.owner.high_water < 4000 + 64 * 1024  # never the 32 MiB


def test_an_announced_length_over_the_message_limit_is_bad_certificate(monkeypatch: Any) -> None:
    _server_sends(
        monkeypatch,
        compression.encode_compressed_certificate(
            compression.CompressedCertificate(1, 2048 + 1, zlib.compress(b"x"))
        ),
    )
    pair = make_pair(client={"certificate_compression": ("zlib",), "max_handshake_message": 2048})
    assert _alert_at_client(pair) == AlertDescription.bad_certificate


def test_a_client_certificate_that_does_not_decompress_is_bad_certificate(
    monkeypatch: Any,
) -> None:
    pair = _client_auth(server={"certificate_compression": ("zlib",)})
    bad = compression.encode_compressed_certificate(
        compression.CompressedCertificate(1, 100, b"not zlib")
    )
    real = compression.compressed_certificate_body
    client_chain = pair.client.config.credentials[0].chain  # the chain the client sends
    monkeypatch.setattr(
        compression,
        "compressed_certificate_body",
        lambda chain, *args: bad if chain is client_chain else real(chain, *args),
    )
    assert not pair.handshake(max_time=10)
    ended = pair.terminated("server")
    assert ended is not None and not ended.by_peer
    assert ended.alert == AlertDescription.bad_certificate


def test_the_decompressed_certificate_lives_in_the_connections_pooled_memory() -> None:
    pair = make_pair(client={"certificate_compression": ("zlib",)})
    hs = pair.client.handshake
    leases: list[Any] = []
    real = hs._work.scratch
    assert real is not None

    def spy(size: int) -> Any:
        lease = real(size)
        leases.append(lease)
        return lease

    hs._work.scratch = spy
    assert pair.handshake()
    assert len(leases) == 1
    assert leases[0].owner is pair.client.owner and leases[0].released
    pair.close()


def _first_flight(server_cfg: Any, client_cfg: Any) -> tuple[int, int]:
    """(datagrams, bytes) of the server's first flight answering one ClientHello."""
    pools = PoolSet()
    client = Connection(client_cfg, pools=pools, wall_clock=wall_clock)
    server = Connection(server_cfg, pools=pools, peer_address=CLIENT_ADDR, wall_clock=wall_clock)
    client.connect(SERVER_ADDR, 0.0)
    for lease, _ in client.datagrams_to_send(0.0):
        server.receive_datagram(bytes(lease), CLIENT_ADDR, 0.0)
        lease.release()
    out = server.datagrams_to_send(0.0)
    sizes = [len(lease) for lease, _ in out]
    for lease, _ in out:
        lease.release()
    for conn in (client, server):
        conn.abandon()
        pools.release_owner(conn.owner)
    return len(sizes), sum(sizes)


def _big_chain_server() -> ServerConfig:
    names = [f"service-{i}.region-{i % 7}.example.com" for i in range(120)]
    leaf = pki().leaf("ec256", dns_names=names, cn="dtls13 big chain")
    return ServerConfig(certificate_chain=leaf.chain_pem, private_key=leaf.key_pem, debug=True)


def test_a_big_chain_makes_a_smaller_first_flight() -> None:
    """What compression is for: fewer bytes before the client's address is proven (the
    server may send 3x what it received, RFC 9147 §5.1) and fewer datagrams to lose."""
    scfg = _big_chain_server()
    plain = _first_flight(scfg, configs(client={"certificate_compression": ()})[0])
    packed = _first_flight(scfg, configs()[0])
    assert packed[0] < plain[0], (packed, plain)
    assert packed[1] < plain[1] * 2 // 3, (packed, plain)


@pytest.mark.parametrize("compress", [True, False], ids=["compressed", "uncompressed"])
def test_a_compressed_big_chain_fits_the_anti_amplification_budget(compress: bool) -> None:
    """A post-quantum ClientHello (~1.3 KB) pays for a 3x flight (RFC 9147 §5.1): with the
    big chain compressed the whole flight goes at once; uncompressed it does not fit, so the
    endpoint's gate asks for a cookie first (a round trip more)."""
    client = {"key_share_groups": ["X25519MLKEM768"]}
    if not compress:
        client["certificate_compression"] = ()
    ccfg = configs(client=client)[0]
    pools = PoolSet()
    c = Connection(ccfg, pools=pools, wall_clock=wall_clock)
    c.connect(SERVER_ADDR, 0.0)
    out = c.datagrams_to_send(0.0)
    hello = [bytes(lease) for lease, _ in out]
    for lease, _ in out:
        lease.release()
    c.abandon()
    pools.release_owner(c.owner)
    ep = ServerEndpoint(_big_chain_server(), pools=pools, wall_clock=wall_clock)
    for datagram in hello:
        ep.receive_datagram(datagram, CLIENT_ADDR, 0.0)
    sent = []
    for lease, _ in ep.datagrams_to_send(0.0):
        sent.append(len(lease))
        lease.release()
    assert sum(sent) <= 3 * sum(map(len, hello))
    if compress:
        assert ep.gate.counters["hello_retry_sent"] == 0
        conn = ep.connections[CLIENT_ADDR]
        assert conn.rare_stat("amplification_limited") == 0
        assert conn.stats["certificates_compressed"] == 1 and len(sent) >= 2
    else:
        assert ep.gate.counters["hello_retry_sent"] == 1 and len(sent) == 1
        assert CLIENT_ADDR not in ep.connections
    ep.close()
    for lease, _ in ep.datagrams_to_send(0.0):
        lease.release()
    ep.release()


def _deliver(src: Connection, dst: Connection, addr: Any, now: float) -> list[bytes]:
    out = src.datagrams_to_send(now)
    data = [bytes(lease) for lease, _ in out]
    for lease, _ in out:
        lease.release()
    for datagram in data:
        dst.receive_datagram(datagram, addr, now)
    return data


def test_a_one_datagram_flight_corrupted_once_is_not_taken_for_damaged_hellos() -> None:
    """A compressed certificate puts the server's whole flight, ServerHello and one epoch-2
    record, in one datagram. With that record corrupted, the repeated flight's ServerHello
    used to be handled before the (good) epoch-2 record after it in the same datagram, so
    the client took "no epoch-2 record authenticates" for damaged hellos and restarted."""
    pools = PoolSet()
    ccfg, scfg = configs()
    client = Connection(ccfg, pools=pools, wall_clock=wall_clock)
    server = Connection(scfg, pools=pools, peer_address=CLIENT_ADDR, wall_clock=wall_clock)
    client.connect(SERVER_ADDR, 0.0)
    _deliver(client, server, CLIENT_ADDR, 0.0)
    out = server.datagrams_to_send(0.0)
    flight = [bytearray(lease) for lease, _ in out]
    for lease, _ in out:
        lease.release()
    assert len(flight) == 1
    flight[0][-1] ^= 1  # the epoch-2 record's tag
    client.receive_datagram(bytes(flight[0]), SERVER_ADDR, 0.0)
    assert client.statistics().record_drops["auth_failed"] == 1
    server.handle_timer(1.0)  # the server repeats its flight
    now = 1.0
    for _ in range(4):
        _deliver(server, client, SERVER_ADDR, now)
        _deliver(client, server, CLIENT_ADDR, now)
        now += 0.1
    assert client.handshake_complete and server.handshake_complete
    assert client.statistics().handshake_restarts == 0
    for conn in (client, server):
        conn.close()
        for lease, _ in conn.datagrams_to_send(now):
            lease.release()
