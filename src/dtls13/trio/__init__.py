"""The trio transport: `DTLSEndpoint` and `DTLSChannel`, shaped like trio's own DTLS classes."""

from __future__ import annotations

from .channel import DTLSChannel, DTLSChannelStatistics
from .endpoint import DTLSEndpoint, DTLSEndpointStatistics, open_dtls_client, serve_dtls

__all__ = [
    "DTLSChannel",
    "DTLSChannelStatistics",
    "DTLSEndpoint",
    "DTLSEndpointStatistics",
    "open_dtls_client",
    "serve_dtls",
]
