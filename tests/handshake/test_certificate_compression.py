"""Certificate compression codecs and bounded decompression (RFC 8879 §3-§5)."""

from __future__ import annotations

import os
import tracemalloc
import zlib
from typing import Any

import brotli
import pytest
import zstandard

from dtls13._fast import Buffer, DecodeError
from dtls13.alerts import BadCertificate, DecodeErrorAlert, IllegalParameter
from dtls13.config import ClientConfig, ServerConfig
from dtls13.handshake import compression
from dtls13.handshake import messages as msgs
from dtls13.handshake.authentication import certificate_body
from dtls13.handshake.compression import Algorithm
from dtls13.handshake.constants import HandshakeType
from tests.support.dtls_pair import pki

ALL = list(Algorithm)


def _certificate() -> bytes:
    return certificate_body(tuple(pki().leaf("ec256").chain))


def _raw(algorithm: Algorithm, data: bytes) -> bytes:
    """`data` compressed by the algorithm's library directly (not through our code)."""
    if algorithm is Algorithm.zlib:
        return zlib.compress(data)
    if algorithm is Algorithm.brotli:
        return bytes(brotli.compress(data, quality=5))
    return bytes(zstandard.ZstdCompressor().compress(data))


def _message(algorithm: int, length: int, data: bytes) -> bytes:
    return compression.encode_compressed_certificate(
        compression.CompressedCertificate(algorithm, length, data)
    )


def _open(body: bytes, offered: Any = tuple(ALL), max_length: int = 65536) -> tuple[Any, Any]:
    return compression.open_untrusted(
        body, offered, max_length, None, lambda v: msgs.pull_message(HandshakeType.certificate, v)
    )


@pytest.mark.parametrize("algorithm", ALL, ids=lambda a: a.name)
def test_each_algorithm_round_trips_a_certificate_message(algorithm: Algorithm) -> None:
    body = _certificate()
    chain = tuple(pki().leaf("ec256").chain)
    compressed = compression.compressed_certificate_body(chain, body, algorithm)
    assert compressed is not None and len(compressed) < len(body)
    got, cert = _open(compressed)
    assert got is algorithm
    assert msgs.push_message(cert) == (HandshakeType.certificate, body)


@pytest.mark.parametrize("algorithm", ALL, ids=lambda a: a.name)
def test_what_the_library_itself_compressed_decompresses(algorithm: Algorithm) -> None:
    body = _certificate()
    _, cert = _open(_message(algorithm, len(body), _raw(algorithm, body)))
    assert msgs.push_message(cert)[1] == body


def test_our_certificate_is_compressed_once_per_chain_and_algorithm(monkeypatch: Any) -> None:
    chain = tuple(pki().leaf("ec256", cn="cached").chain)
    body = certificate_body(chain)
    calls: list[Algorithm] = []
    real = compression.compress

    def counting(algorithm: Algorithm, data: bytes) -> bytes:
        calls.append(algorithm)
        return real(algorithm, data)

    monkeypatch.setattr(compression, "compress", counting)
    # An empty cache: one that other tests left nearly full would be cleared midway.
    monkeypatch.setattr(compression, "_COMPRESSED", {})
    for _ in range(3):
        for algorithm in ALL:
            compression.compressed_certificate_body(chain, body, algorithm)
    assert calls == ALL


def test_a_certificate_that_does_not_shrink_goes_uncompressed() -> None:
    chain = tuple(pki().leaf("ec256", cn="random").chain)
    random_body = os.urandom(300)  # incompressible: the compressed form would be longer
    assert compression.compressed_certificate_body(chain, random_body, Algorithm.zlib) is None


@pytest.mark.parametrize("algorithm", ALL, ids=lambda a: a.name)
@pytest.mark.parametrize("delta", [-1, 1])
def test_a_length_other_than_the_one_announced_is_bad_certificate(
    algorithm: Algorithm, delta: int
) -> None:
    body = _certificate()
    with pytest.raises(BadCertificate, match="announced"):
        _open(_message(algorithm, len(body) + delta, _raw(algorithm, body)))


@pytest.mark.parametrize("algorithm", ALL, ids=lambda a: a.name)
@pytest.mark.parametrize("damage", ["garbage", "truncated", "trailing"])
def test_data_that_does_not_decompress_is_bad_certificate(
    algorithm: Algorithm, damage: str
) -> None:
    body = _certificate()
    data = _raw(algorithm, body)
    if damage == "garbage":
        data = b"\x07" * len(data)
    elif damage == "truncated":
        data = data[: len(data) // 2]
    else:
        data += b"\x01\x02\x03"
    with pytest.raises(BadCertificate):
        _open(_message(algorithm, len(body), data))


@pytest.mark.parametrize("algorithm", ALL, ids=lambda a: a.name)
def test_a_decompression_bomb_allocates_no_more_than_the_announced_length(
    algorithm: Algorithm,
) -> None:
    """RFC 8879 §5: output is limited to the announced length; 64 MiB of zeros compressed
    to a few KiB must fail without ever holding more than a step of output."""
    if algorithm is Algorithm.zstd:  # a window we accept (a larger one is refused at once)
        params = zstandard.ZstdCompressionParameters(window_log=16, write_content_size=False)
        bomb = zstandard.ZstdCompressor(compression_params=params).compress(bytes(64 << 20))
    else:
        bomb = _raw(algorithm, bytes(64 << 20))
    message = _message(algorithm, 60000, bomb)
    assert len(message) < 65536  # it fits in one handshake message
    tracemalloc.start()
    try:
        with pytest.raises(BadCertificate, match="more than the 60000 bytes announced"):
            _open(message)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # A copy of the input, the 60000-byte buffer, one step of output (brotli's grows in
    # 32 KiB blocks) and the decoder's state (zlib: a 32 KiB window): never the 64 MiB.
    assert peak < len(message) + 60000 + 128 * 1024, peak


def test_an_announced_length_above_the_message_limit_is_refused_before_decompressing(
    monkeypatch: Any,
) -> None:
    monkeypatch.setattr(compression, "decompress_into_untrusted", pytest.fail)
    with pytest.raises(BadCertificate, match="exceeds the limit of 65536"):
        _open(_message(Algorithm.zlib, 65537, zlib.compress(b"x")))


def test_a_zstd_frame_asking_for_a_huge_window_is_refused() -> None:
    """Its decoder would allocate the window before producing a byte: a window larger
    than the largest message we accept is refused."""
    data = zstandard.ZstdCompressor().compress(bytes(1 << 20))  # a window of 1 MiB
    with pytest.raises(BadCertificate, match="memory"):
        _open(_message(Algorithm.zstd, 60000, data))


@pytest.mark.parametrize("code", [4, 0x4000])
def test_an_algorithm_we_did_not_offer_is_illegal_parameter(code: int) -> None:
    with pytest.raises(IllegalParameter, match="did not offer"):
        _open(_message(code, 10, b"\x00"))
    with pytest.raises(IllegalParameter, match="did not offer"):
        _open(_message(Algorithm.brotli, 10, b"\x00"), offered=(Algorithm.zlib,))


def test_a_decompressed_certificate_that_does_not_decode_is_decode_error() -> None:
    def parse(view: memoryview) -> Any:
        try:
            return msgs.pull_message(HandshakeType.certificate, view)
        except DecodeError as exc:
            raise DecodeErrorAlert(str(exc)) from None

    garbage = b"\x00\x00\x00\x09" + b"\xff" * 10
    with pytest.raises(DecodeErrorAlert):
        compression.open_untrusted(
            _message(Algorithm.zlib, len(garbage), zlib.compress(garbage)),
            ALL,
            65536,
            None,
            parse,
        )


def test_compressed_certificate_codec_whole_truncated_and_trailing() -> None:
    whole = _message(Algorithm.zstd, 1234, b"abc")
    msg = compression.decode_compressed_certificate_untrusted(whole)
    assert msg == compression.CompressedCertificate(3, 1234, b"abc")
    for cut in range(len(whole)):
        with pytest.raises(DecodeError):
            compression.decode_compressed_certificate_untrusted(whole[:cut])
    with pytest.raises(DecodeError):
        compression.decode_compressed_certificate_untrusted(whole + b"\x00")
    with pytest.raises(DecodeError, match="empty"):
        compression.decode_compressed_certificate_untrusted(bytes.fromhex("0001000010000000"))


def test_compress_certificate_extension_codec() -> None:
    data = compression.extension_data([2, 3, 1])
    assert data == bytes.fromhex("06000200030001")
    assert compression.decode_offer_untrusted(data) == (2, 3, 1)
    for bad in (b"", b"\x00", b"\x01\x00", b"\x03\x00\x01\x00", data + b"\x00", data[:-1]):
        with pytest.raises(DecodeErrorAlert):
            compression.decode_offer_untrusted(bad)


def test_the_algorithm_is_chosen_in_the_peers_order_among_ours() -> None:
    ours = (Algorithm.brotli, Algorithm.zlib)
    assert compression.choose((3, 1, 2), ours) is Algorithm.zlib
    assert compression.choose((0x4000, 2), ours) is Algorithm.brotli
    assert compression.choose((3,), ours) is None
    assert compression.choose((), ours) is None


def test_the_default_offers_every_installed_algorithm_best_first() -> None:
    assert compression.available() == (Algorithm.brotli, Algorithm.zstd, Algorithm.zlib)
    cfg = ServerConfig(
        certificate_chain=pki().leaf("ec256").chain_pem, private_key=pki().leaf("ec256").key_pem
    )
    assert cfg.compression == compression.available()
    off = ClientConfig(server_name="x", cafile=pki().root_pem, certificate_compression=())
    assert off.compression == ()


def test_algorithms_are_given_by_name_or_number_in_order() -> None:
    cfg = ClientConfig(
        server_name="x",
        cafile=pki().root_pem,
        certificate_compression=("ZSTD", 1, Algorithm.brotli),
    )
    assert cfg.compression == (Algorithm.zstd, Algorithm.zlib, Algorithm.brotli)


@pytest.mark.parametrize(
    ("value", "error", "match"),
    [
        (("lzma",), ValueError, "unknown certificate compression algorithm 'lzma'"),
        ((9,), ValueError, "unknown certificate compression algorithm 9"),
        (("zlib", "zlib"), ValueError, "duplicate"),
        ("zlib", TypeError, "not one string"),
        ((1.5,), TypeError, "names"),
    ],
)
def test_bad_algorithms_are_refused_at_construction(value: Any, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        ClientConfig(server_name="x", cafile=pki().root_pem, certificate_compression=value)


def _without(monkeypatch: Any, *packages: str) -> None:
    real = compression.importlib.import_module

    def import_module(name: str, package: str | None = None) -> Any:
        if name in packages:
            raise ImportError(f"No module named {name!r}")
        return real(name, package)

    monkeypatch.setattr(compression.importlib, "import_module", import_module)


def test_a_missing_optional_package_drops_its_algorithm_from_the_default(monkeypatch: Any) -> None:
    _without(monkeypatch, "brotli", "zstandard")
    assert compression.available() == (Algorithm.zlib,)
    cfg = ClientConfig(server_name="x", cafile=pki().root_pem)
    assert cfg.compression == (Algorithm.zlib,)


@pytest.mark.parametrize(("name", "package"), [("brotli", "brotli"), ("zstd", "zstandard")])
def test_asking_for_an_algorithm_whose_package_is_missing_fails_at_construction(
    monkeypatch: Any, name: str, package: str
) -> None:
    _without(monkeypatch, package)
    with pytest.raises(ValueError, match=f"needs the package '{package}', which is not installed"):
        ClientConfig(server_name="x", cafile=pki().root_pem, certificate_compression=(name,))


def test_extension_codec_push_pull_agree() -> None:
    buf = Buffer(capacity=16)
    try:
        compression.push_compress_certificate(buf, [1, 2])
        data = buf.data
    finally:
        buf.close()
    buf = Buffer(data)
    try:
        assert compression.pull_compress_certificate(buf) == (1, 2)
    finally:
        buf.close()


def test_a_brotli_that_cannot_bound_its_output_counts_as_missing(monkeypatch: Any) -> None:
    """brotli before 1.2 has no output_buffer_limit: decompression could not be bounded."""

    class OldDecompressor:
        def process(self, data: bytes) -> bytes:
            return b""

    monkeypatch.setattr(brotli, "Decompressor", OldDecompressor)
    assert Algorithm.brotli not in compression.available()
    with pytest.raises(ValueError, match="needs the package 'brotli'"):
        ClientConfig(server_name="x", cafile=pki().root_pem, certificate_compression=("brotli",))


def test_a_pool_refusal_falls_back_to_a_buffer_that_lives_only_during_the_call() -> None:
    """Once its record is ACKed the message cannot come back: decompression must not fail
    for want of pooled memory (the buffer is freed before open_untrusted returns)."""
    from dtls13._fast import MemoryBudgetExceeded

    def refuse(size: int) -> Any:
        raise MemoryBudgetExceeded("connection", size, 0, 0)

    body = _certificate()
    message = _message(Algorithm.zlib, len(body), zlib.compress(body))
    _, cert = compression.open_untrusted(
        message, ALL, 65536, refuse, lambda v: msgs.pull_message(HandshakeType.certificate, v)
    )
    assert msgs.push_message(cert)[1] == body
