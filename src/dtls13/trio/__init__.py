"""The trio transport: `DTLSEndpoint` and `DTLSChannel`, shaped like trio's own DTLS classes."""

from __future__ import annotations

from .channel import DTLSChannel, DTLSChannelStatistics
from .convenience import open_dtls_client, serve_dtls
from .endpoint import DTLSEndpoint, DTLSEndpointStatistics

__all__ = [
    "DTLSChannel",
    "DTLSChannelStatistics",
    "DTLSEndpoint",
    "DTLSEndpointStatistics",
    "open_dtls_client",
    "serve_dtls",
]
