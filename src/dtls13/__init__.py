"""dtls13: DTLS 1.3 (RFC 9147) for Python on trio.

The sans-IO core (configs, errors, events, ``dtls13.connection``, ``dtls13.endpoint``,
statistics) imports without trio; the trio adapter's names below are imported from
``dtls13.trio`` on first use (PEP 562).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Submodules `import dtls13` has always loaded (the sans-IO core), so `dtls13.connection`,
# `dtls13.events`, ... keep working as attributes without importing trio.
from . import connection as connection
from . import events as events
from . import statistics as statistics
from .alerts import Alert, AlertDescription
from .config import ClientConfig, ServerConfig
from .errors import (
    CertificateVerificationFailed,
    ConnectionEnded,
    ConnectionFailed,
    DTLSError,
    EchRejected,
    HandshakeFailed,
    HandshakeTimeout,
    LocalProtocolError,
    PeerClosed,
    PeerUnreachable,
)
from .events import EchStatus
from .handshake.compression import CertificateCompressionAlgorithm
from .handshake.delegated import delegated_credential
from .handshake.ech_keys import EchKey, ech_config_list, generate_ech_key
from .handshake.identity import Credential
from .handshake.psk_import import ImportedPsk
from .handshake.selection import ServerCertificate
from .handshake.srtp import SrtpKeyingMaterial, SrtpProtectionProfile
from .handshake.ticket_keys import (
    TicketDecision,
    TicketKey,
    TicketKeyCallback,
    TicketKeyRing,
    TicketSealer,
)
from .peer_verification import PeerVerification

if TYPE_CHECKING:
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
    "CertificateCompressionAlgorithm",
    "CertificateVerificationFailed",
    "ClientConfig",
    "ConnectionEnded",
    "ConnectionFailed",
    "Credential",
    "DTLSChannel",
    "DTLSChannelStatistics",
    "DTLSEndpoint",
    "DTLSEndpointStatistics",
    "DTLSError",
    "EchKey",
    "EchRejected",
    "EchStatus",
    "HandshakeFailed",
    "HandshakeTimeout",
    "ImportedPsk",
    "LocalProtocolError",
    "PeerClosed",
    "PeerUnreachable",
    "PeerVerification",
    "ServerCertificate",
    "ServerConfig",
    "SrtpKeyingMaterial",
    "SrtpProtectionProfile",
    "TicketDecision",
    "TicketKey",
    "TicketKeyCallback",
    "TicketKeyRing",
    "TicketSealer",
    "__version__",
    "delegated_credential",
    "ech_config_list",
    "generate_ech_key",
    "open_dtls_client",
    "serve_dtls",
]

# The names `dtls13.trio` provides, imported when first asked for.
_TRIO_NAMES = frozenset(
    {
        "DTLSChannel",
        "DTLSChannelStatistics",
        "DTLSEndpoint",
        "DTLSEndpointStatistics",
        "open_dtls_client",
        "serve_dtls",
    }
)


def __getattr__(name: str) -> Any:
    if name not in _TRIO_NAMES and name != "trio":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        adapter = importlib.import_module(".trio", __name__)
    except ImportError as exc:
        if exc.name != "trio" and not (exc.name or "").startswith("trio."):
            raise
        raise ImportError(
            f"dtls13.{name} is part of the trio adapter, which needs trio (pip install trio); "
            "the sans-IO core (dtls13.connection, dtls13.endpoint) works without it",
            name="trio",
        ) from exc
    value = adapter if name == "trio" else getattr(adapter, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | _TRIO_NAMES)
