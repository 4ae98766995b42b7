"""TLS certificate compression (RFC 8879): the compress_certificate extension (27), the
CompressedCertificate message (25) and the algorithms zlib, brotli and zstd.

zlib comes with Python; brotli and zstd need the optional packages ``brotli`` and
``zstandard`` (``pip install dtls13[compression]``). Decompression is bounded: output
is produced in steps of at most `STEP` bytes (brotli: 32 KiB) into a buffer of the
declared length, which the caller has checked against its largest handshake message,
and stops as soon as the output would pass that length (RFC 8879 §5: "Implementations
MUST limit the size of the resulting decompressed chain to the specified uncompressed
length").
"""

from __future__ import annotations

import enum
import importlib
import sys
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from .._fast import Buffer, DecodeError, MemoryBudgetExceeded
from ..alerts import BadCertificate, DecodeErrorAlert, IllegalParameter
from . import messages as msgs

STEP = 16384  # the most output asked of a decompressor at once


class CertificateCompressionAlgorithm(enum.IntEnum):
    """IANA "Certificate Compression Algorithm IDs" (RFC 8879 §7.3)."""

    zlib = 1
    brotli = 2
    zstd = 3


Algorithm = CertificateCompressionAlgorithm

# The Python package each algorithm needs (zlib: the standard library).
PACKAGES: dict[Algorithm, str] = {
    Algorithm.zlib: "zlib",
    Algorithm.brotli: "brotli",
    Algorithm.zstd: "zstandard",
}
# Our order of preference when every algorithm is installed: brotli compresses
# certificates best (its built-in dictionary knows X.509's strings), zlib is everywhere.
PREFERENCE: tuple[Algorithm, ...] = (Algorithm.brotli, Algorithm.zstd, Algorithm.zlib)


def _module(algorithm: Algorithm) -> Any:
    """The algorithm's module, or None when its package is not installed (or, brotli,
    too old to bound its output: output_buffer_limit came with brotli 1.2)."""
    try:
        module = importlib.import_module(PACKAGES[algorithm])
    except ImportError:
        return None
    if algorithm is Algorithm.brotli:
        try:
            module.Decompressor().process(b"", output_buffer_limit=1)
        except TypeError:
            return None
    return module


def available() -> tuple[Algorithm, ...]:
    """The algorithms whose packages are installed, in our order of preference."""
    return tuple(a for a in PREFERENCE if _module(a) is not None)


def normalise(values: Sequence[Algorithm | str | int] | None) -> tuple[Algorithm, ...]:
    """A config's `certificate_compression`: None means every installed algorithm; an
    explicit algorithm whose package is missing is an error now, not a surprise later."""
    if values is None:
        return available()
    if isinstance(values, str | bytes):
        raise TypeError("certificate_compression is a sequence of algorithms, not one string")
    out: list[Algorithm] = []
    for v in values:
        if isinstance(v, str):
            try:
                algorithm = CertificateCompressionAlgorithm[v.lower()]
            except KeyError:
                known = ", ".join(a.name for a in Algorithm)
                raise ValueError(
                    f"unknown certificate compression algorithm {v!r}; known: {known}"
                ) from None
        elif isinstance(v, int):
            try:
                algorithm = Algorithm(v)
            except ValueError:
                raise ValueError(f"unknown certificate compression algorithm {v}") from None
        else:
            raise TypeError(f"certificate compression algorithms are names, not {v!r}")
        if algorithm in out:
            raise ValueError(f"duplicate certificate compression algorithm {algorithm.name}")
        if _module(algorithm) is None:
            raise ValueError(
                f"certificate compression {algorithm.name!r} needs the package "
                f"{PACKAGES[algorithm]!r}, which is not installed (or too old) "
                "(pip install 'dtls13[compression]')"
            )
        out.append(algorithm)
    return tuple(out)


# -- codecs -----------------------------------------------------------------------------


def push_compress_certificate(buf: Buffer, algorithms: Sequence[int]) -> None:
    """CertificateCompressionAlgorithms: algorithms<2..2^8-2> (RFC 8879 §3)."""
    buf.push_uint8(2 * len(algorithms))
    for a in algorithms:
        buf.push_uint16(a)


def pull_compress_certificate(buf: Buffer) -> tuple[int, ...]:
    length = buf.pull_uint8()
    if length < 2 or length % 2:
        raise DecodeError("compress_certificate: algorithms<2..2^8-2> of uint16")
    return tuple([buf.pull_uint16() for _ in range(length // 2)])  # no generator to resume


@dataclass(frozen=True, slots=True)
class CompressedCertificate:
    """RFC 8879 §4."""

    algorithm: int
    uncompressed_length: int
    compressed_certificate_message: bytes


def pull_compressed_certificate(buf: Buffer) -> CompressedCertificate:
    algorithm = buf.pull_uint16()
    length = buf.pull_uint24()
    data = buf.pull_vector(3)
    if not data:
        raise DecodeError("compressed_certificate_message<1..2^24-1> is empty")
    return CompressedCertificate(algorithm, length, data)


def push_compressed_certificate(buf: Buffer, msg: CompressedCertificate) -> None:
    buf.push_uint16(msg.algorithm)
    buf.push_uint24(msg.uncompressed_length)
    buf.push_vector(3, msg.compressed_certificate_message)


def encode_compressed_certificate(msg: CompressedCertificate) -> bytes:
    buf = Buffer(capacity=len(msg.compressed_certificate_message) + 8)
    try:
        push_compressed_certificate(buf, msg)
        return buf.data
    finally:
        buf.close()


def decode_compressed_certificate_untrusted(body: bytes | memoryview) -> CompressedCertificate:
    """The whole message body; raises DecodeError."""
    buf = Buffer(body)
    try:
        msg = pull_compressed_certificate(buf)
        buf.expect_end()
    finally:
        buf.close()
    return msg


def decode_offer_untrusted(data: bytes) -> tuple[int, ...]:
    """The peer's compress_certificate extension; malformed: decode_error."""
    buf = Buffer(data)
    try:
        algorithms = pull_compress_certificate(buf)
        buf.expect_end()
    except DecodeError as exc:
        raise DecodeErrorAlert(f"malformed compress_certificate: {exc}") from None
    finally:
        buf.close()
    return algorithms


def extension_data(algorithms: Sequence[int]) -> bytes:
    buf = Buffer(capacity=2 + 2 * len(algorithms))
    try:
        push_compress_certificate(buf, algorithms)
        return buf.data
    finally:
        buf.close()


# -- compression (our own Certificate message) ------------------------------------------


def compress(algorithm: Algorithm, data: bytes) -> bytes:
    """`data` compressed with `algorithm` (its package must be installed)."""
    module = _module(algorithm)
    if algorithm is Algorithm.zlib:
        return zlib.compress(data, 9)
    if algorithm is Algorithm.brotli:
        return bytes(module.compress(data, quality=11))
    return bytes(module.ZstdCompressor(level=19).compress(data))


# Compressed bodies by (chain, algorithm): our Certificate message is compressed once per
# chain and algorithm, not per handshake. None: compression does not make it smaller.
_COMPRESSED: dict[
    tuple[int, Algorithm, int], tuple[tuple[x509.Certificate, ...], bytes, bytes | None]
] = {}


def choose(peer: Sequence[int], ours: Sequence[Algorithm]) -> Algorithm | None:
    """The first algorithm of the peer's list (its preference) that we offer too."""
    for code in peer:
        for algorithm in ours:  # our member itself: no Enum call
            if algorithm == code:
                return algorithm
    return None


def compressed_certificate_body(
    chain: tuple[x509.Certificate, ...], body: bytes, algorithm: Algorithm
) -> bytes | None:
    """The CompressedCertificate body carrying the Certificate message `body` (of `chain`)
    compressed with `algorithm`, or None when that would not be smaller; cached."""
    # One chain has several bodies when something is stapled to its leaf (stapling.py).
    key = (id(chain), algorithm, len(body))
    entry = _COMPRESSED.get(key)
    if entry is not None and entry[0] is chain and entry[1] == body:
        return entry[2]
    encoded: bytes | None = encode_compressed_certificate(
        CompressedCertificate(int(algorithm), len(body), compress(algorithm, body))
    )
    if encoded is not None and len(encoded) >= len(body):
        encoded = None  # not worth it: send the Certificate message as it is
    if len(_COMPRESSED) >= 64:
        _COMPRESSED.clear()
    _COMPRESSED[key] = (chain, body, encoded)
    return encoded


def savings(chain: tuple[x509.Certificate, ...], ours: Sequence[Algorithm]) -> dict[Algorithm, int]:
    """The bytes compression saves on the Certificate message of `chain`, by algorithm
    in our order (0: not smaller, sent uncompressed): the HelloRetryRequest gate's
    estimate of our first flight."""
    entries = tuple(msgs.CertificateEntry(c.public_bytes(Encoding.DER)) for c in chain)
    _, body = msgs.push_message(msgs.Certificate(b"", entries))
    out = {}
    for algorithm in ours:
        packed = compressed_certificate_body(chain, body, algorithm)
        out[algorithm] = len(body) - len(packed) if packed is not None else 0
    return out


def saved(savings: dict[Algorithm, int], offered: Sequence[int] | None) -> int:
    """What `savings` says compression saves when the peer offers `offered` (None:
    unknown, the best case)."""
    if offered is None:
        return max(savings.values(), default=0)
    algorithm = choose(offered, tuple(savings))
    return savings[algorithm] if algorithm is not None else 0


def offered_in(data: bytes | None) -> tuple[int, ...]:
    """The algorithms of a compress_certificate extension (absent or malformed: ())."""
    if data is None:
        return ()
    try:
        return decode_offer_untrusted(data)
    except DecodeErrorAlert:
        return ()


# -- decompression (the peer's, untrusted) ----------------------------------------------


def _zlib_steps(data: bytes | memoryview, limit: int) -> Iterator[bytes]:
    d = zlib.decompressobj()
    view = memoryview(data)
    if not view:
        raise zlib.error("no zlib stream")
    # Input goes in by pieces: zlib copies what a bounded step leaves unconsumed.
    for start in range(0, len(view), STEP):
        pending: bytes | memoryview = view[start : start + STEP]
        while pending and not d.eof:
            yield d.decompress(pending, min(STEP, limit))
            pending = d.unconsumed_tail
        if d.eof:
            break
    if not d.eof:
        raise zlib.error("truncated zlib stream")
    if d.unused_data or start + STEP < len(view):
        raise zlib.error("data after the end of the zlib stream")


def _brotli_steps(module: Any, data: bytes | memoryview, limit: int) -> Iterator[bytes]:
    d = module.Decompressor()
    # output_buffer_limit bounds each step (its buffer grows in blocks of up to 32 KiB).
    yield d.process(data, output_buffer_limit=min(STEP, limit))
    while not d.is_finished():
        if d.can_accept_more_data():
            raise module.error("truncated brotli stream")
        yield d.process(b"", output_buffer_limit=min(STEP, limit))


def _zstd_steps(module: Any, data: bytes | memoryview, limit: int) -> Iterator[bytes]:
    # A window no larger than the largest message we accept: a frame asking for more
    # decoder memory fails at once ("Frame requires too much memory").
    window = max(1 << 10, 1 << (max(limit, 1) - 1).bit_length())
    decompressor = module.ZstdDecompressor(max_window_size=window)
    with decompressor.stream_reader(data, read_across_frames=True) as reader:
        while out := reader.read(min(STEP, limit)):
            yield out


def _steps(algorithm: Algorithm, data: bytes | memoryview, limit: int) -> Iterator[bytes]:
    if algorithm is Algorithm.zlib:
        return _zlib_steps(data, limit)
    # The configuration offering `algorithm` checked its package (normalise): imported.
    name = PACKAGES[algorithm]
    module = sys.modules.get(name) or importlib.import_module(name)
    if algorithm is Algorithm.brotli:
        return _brotli_steps(module, data, limit)
    return _zstd_steps(module, data, limit)


def decompress_into_untrusted(
    algorithm: Algorithm, data: bytes | memoryview, out: memoryview
) -> None:
    """Decompress `data` into `out`, which it must fill exactly.

    Never produces more than len(out) + one step. Raises BadCertificate when the data
    does not decompress or its length differs from len(out) (RFC 8879 §4).
    """
    length = len(out)
    filled = 0
    try:
        for chunk in _steps(algorithm, data, length + 1):
            end = filled + len(chunk)
            if end > length:
                raise BadCertificate(
                    f"certificate decompresses to more than the {length} bytes announced"
                )
            out[filled:end] = chunk
            filled = end
    except BadCertificate:
        raise
    except Exception as exc:  # each library has its own error types (zlib.error, ...)
        raise BadCertificate(f"{algorithm.name} certificate does not decompress: {exc}") from None
    if filled != length:
        raise BadCertificate(
            f"certificate decompresses to {filled} bytes, not the {length} announced"
        )


Acquire = Callable[[int], Any]  # a pooled Lease of at least n bytes (or a bytearray)


def open_untrusted(
    body: bytes | memoryview,
    offered: Sequence[Algorithm],
    max_length: int,
    acquire: Acquire | None,
    use: Callable[[memoryview], Any],
) -> tuple[Algorithm, Any]:
    """Decompress a CompressedCertificate body and return (algorithm, use(certificate
    body)); the decompressed bytes live only during `use` (in a pooled lease when
    `acquire` is given and the pools grant it).

    RFC 8879 §4: the algorithm "MUST be one of the algorithms listed in the peer's
    compress_certificate extension" (no alert named; illegal_parameter, RFC 8446 §6.2,
    as BoringSSL does); a length mismatch or data that does not decompress is
    bad_certificate. §5: the limit on the Certificate message is the one without
    compression (max_handshake_message), checked before anything is allocated.
    """
    try:
        msg = decode_compressed_certificate_untrusted(body)
    except DecodeError as exc:
        raise DecodeErrorAlert(f"CompressedCertificate: {exc}") from None
    if msg.algorithm not in offered:
        raise IllegalParameter(
            f"certificate compressed with algorithm {msg.algorithm}, which we did not offer"
        )
    algorithm = Algorithm(msg.algorithm)
    length = msg.uncompressed_length
    if length > max_length:
        raise BadCertificate(
            f"compressed certificate of {length} bytes exceeds the limit of {max_length} bytes"
        )
    lease = None
    if acquire is not None and length:
        try:
            lease = acquire(length)
        except MemoryBudgetExceeded:
            # The pools refused: a heap buffer instead, so that the handshake goes on
            # (a lost datagram could not bring this message back once it is ACKed). It
            # lives only during this call, so at most one exists at a time.
            lease = None
    try:
        view = lease.view(0, length) if lease is not None else memoryview(bytearray(length))
        try:
            decompress_into_untrusted(algorithm, msg.compressed_certificate_message, view)
            return algorithm, use(view)
        finally:
            view.release()
    finally:
        if lease is not None:
            lease.release()


__all__ = [
    "Algorithm",
    "CertificateCompressionAlgorithm",
    "CompressedCertificate",
    "available",
    "choose",
    "compressed_certificate_body",
    "decompress_into_untrusted",
    "normalise",
    "open_untrusted",
]
