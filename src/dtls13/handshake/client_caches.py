"""What a ClientConfig keeps from one connection to the next: results that depend only on
the configuration, or only on the exact bytes a server sent, computed once.

- The ClientHello's extensions that the configuration alone decides (handshake.client_hello).
- A CompressedCertificate body -> the Certificate message it carries: decompression and
  decoding are functions of those bytes (RFC 8879 §4), so a client reconnecting to the same
  server does them once.
- A Certificate's DER entries -> the parsed chain (cryptography's x509.Certificate objects
  are immutable).

Only public data: nothing secret, no verdict. Every check a handshake makes (the chain's
verification, CertificateVerify, Finished) still runs on each one; the caches only save
re-deriving the same values from the same bytes.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

_K = TypeVar("_K")
_V = TypeVar("_V")

# A client talks to few servers; each entry is bounded by max_handshake_message.
ENTRIES = 8
# Larger certificate messages are not kept: a chain of a few certificates is 2-6 KB.
LARGEST_KEPT = 16 * 1024


class BoundedCache(Generic[_K, _V]):
    """A least-recently-used map of at most `size` entries."""

    __slots__ = ("_entries", "_size")

    def __init__(self, size: int = ENTRIES) -> None:
        self._entries: dict[_K, _V] = {}
        self._size = size

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: _K) -> _V | None:
        entries = self._entries
        value = entries.pop(key, None)
        if value is not None:
            entries[key] = value  # now the most recently used (dicts keep insertion order)
        return value

    def put(self, key: _K, value: _V) -> None:
        entries = self._entries
        entries.pop(key, None)
        entries[key] = value
        while len(entries) > self._size:
            try:
                del entries[next(iter(entries))]
            except (KeyError, RuntimeError, StopIteration):  # another thread got there first
                break


class ClientCaches:
    """One ClientConfig's caches (see the module docstring)."""

    __slots__ = ("certificates", "chains", "hello")

    def __init__(self) -> None:
        # A handshake.client_hello.HelloTemplate, made by the first ClientHello.
        self.hello: Any = None
        # CompressedCertificate body -> (algorithm, uncompressed length, Certificate).
        self.certificates: BoundedCache[bytes, tuple[Any, int, Any]] = BoundedCache()
        # The DER of each certificate in a Certificate message -> the parsed chain.
        self.chains: BoundedCache[tuple[bytes, ...], tuple[Any, ...]] = BoundedCache()

    def __repr__(self) -> str:
        return f"<ClientCaches certificates={len(self.certificates)} chains={len(self.chains)}>"
