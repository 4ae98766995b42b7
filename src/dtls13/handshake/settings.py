"""What the handshake layer reads from a server's configuration, as a protocol.

``dtls13.config.ServerConfig`` (a layer above, built from handshake pieces) satisfies it;
the handshake modules name this protocol instead of importing the config module.
"""

from __future__ import annotations

from typing import Any, Protocol

from cryptography import x509

from ..crypto.registry import NamedGroup
from ..crypto.suites import CipherSuite
from .compression import CertificateCompressionAlgorithm


class ServerSettings(Protocol):
    """The fields of ``ServerConfig`` the HelloRetryRequest gate uses."""

    @property
    def suites(self) -> tuple[CipherSuite, ...]: ...
    @property
    def group_order(self) -> tuple[NamedGroup, ...]: ...
    @property
    def chain(self) -> tuple[x509.Certificate, ...]: ...
    @property
    def key(self) -> Any: ...
    @property
    def server_certificates(self) -> Any: ...  # a selection.CertificateSet
    @property
    def compression(self) -> tuple[CertificateCompressionAlgorithm, ...]: ...
    @property
    def cookie_jar(self) -> Any: ...
    @property
    def mtu(self) -> int: ...
    @property
    def require_cookie(self) -> bool: ...
    @property
    def ech_keys(self) -> Any: ...  # tuple of ech_keys.EchKey
