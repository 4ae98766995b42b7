"""dtls13: DTLS 1.3 (RFC 9147) for Python on trio."""

from __future__ import annotations

from .alerts import Alert
from .config import ClientConfig, ServerConfig
from .trio import DTLSChannel, DTLSChannelStatistics, DTLSEndpoint, open_dtls_client, serve_dtls

__version__ = "0.1.0"

__all__ = [
    "Alert",
    "ClientConfig",
    "DTLSChannel",
    "DTLSChannelStatistics",
    "DTLSEndpoint",
    "ServerConfig",
    "__version__",
    "open_dtls_client",
    "serve_dtls",
]
