"""ClientHello extension order, shuffled per connection (ClientConfig.permute_extensions).

A server that depends on one extension order breaks when clients change it (the
ossification RFC 8701 guards against with GREASE values); a client that sends a new
order on each connection keeps servers honest. RFC 8446 §4.2 fixes one place only:
pre_shared_key is last (§4.2.11). The order comes from the ClientHello's random, so it is
the same in the ClientHello that answers a HelloRetryRequest (the same random, §4.1.2).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from .constants import ExtensionType
from .extensions import Extension


def permuted(extensions: Sequence[Extension], seed: bytes) -> list[Extension]:
    """`extensions` in the order `seed` picks, pre_shared_key kept last."""

    def key(e: Extension) -> bytes:
        return hashlib.blake2b(e.type.to_bytes(2, "big"), key=seed[:64], digest_size=8).digest()

    last = [e for e in extensions if e.type == ExtensionType.pre_shared_key]
    return sorted((e for e in extensions if e.type != ExtensionType.pre_shared_key), key=key) + last
