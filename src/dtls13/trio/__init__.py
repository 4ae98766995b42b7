"""The trio transport: `DTLSEndpoint` and `DTLSChannel`, shaped like trio's own DTLS classes."""

from __future__ import annotations

from ._stats import DTLSEndpointStatistics
from .channel import DTLSChannel, DTLSChannelStatistics
from .convenience import open_dtls_client, serve_dtls
from .endpoint import DTLSEndpoint

__all__ = [
    "DTLSChannel",
    "DTLSChannelStatistics",
    "DTLSEndpoint",
    "DTLSEndpointStatistics",
    "open_dtls_client",
    "serve_dtls",
]
