"""dtls13: DTLS 1.3 (RFC 9147) for Python on trio."""

from __future__ import annotations

from .alerts import Alert, AlertDescription
from .config import ClientConfig, ServerConfig
from .errors import (
    CertificateVerificationFailed,
    ConnectionEnded,
    ConnectionFailed,
    DTLSError,
    HandshakeFailed,
    HandshakeTimeout,
    LocalProtocolError,
    PeerClosed,
    PeerUnreachable,
)
from .handshake.srtp import SrtpKeyingMaterial, SrtpProtectionProfile
from .trio import (
    DTLSChannel,
    DTLSChannelStatistics,
    DTLSEndpoint,
    DTLSEndpointStatistics,
    open_dtls_client,
    serve_dtls,
)

__version__ = "0.1.0"  # the one place the version is written (pyproject reads it)

__all__ = [
    "Alert",
    "AlertDescription",
    "CertificateVerificationFailed",
    "ClientConfig",
    "ConnectionEnded",
    "ConnectionFailed",
    "DTLSChannel",
    "DTLSChannelStatistics",
    "DTLSEndpoint",
    "DTLSEndpointStatistics",
    "DTLSError",
    "HandshakeFailed",
    "HandshakeTimeout",
    "LocalProtocolError",
    "PeerClosed",
    "PeerUnreachable",
    "ServerConfig",
    "SrtpKeyingMaterial",
    "SrtpProtectionProfile",
    "__version__",
    "open_dtls_client",
    "serve_dtls",
]
