"""The asyncio transport (uvloop works too): `DTLSEndpoint` and `DTLSChannel`, with the
trio adapter's semantics. Imports nothing of trio."""

from __future__ import annotations

from .channel import DTLSChannel, DTLSChannelStatistics
from .endpoint import DTLSEndpoint, DTLSEndpointStatistics
from .errors import ClosedResourceError, NeedHandshakeError
from .helpers import open_dtls_client, serve_dtls

__all__ = [
    "ClosedResourceError",
    "DTLSChannel",
    "DTLSChannelStatistics",
    "DTLSEndpoint",
    "DTLSEndpointStatistics",
    "NeedHandshakeError",
    "open_dtls_client",
    "serve_dtls",
]
