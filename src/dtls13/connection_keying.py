"""What the handshake established, for the application: the peer's credentials, keying
material exported from the master secret (RFC 8446 §7.5, RFC 5705) and the SRTP keys of
use_srtp (RFC 5764).

Methods and property getters of `Connection` (connection.py binds them; it holds the
state they use). `bound_property` is `property`, typed: mypy gives ``property(f)`` the
type Any, and a getter defined here cannot be decorated in the class body.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, Never, Self, TypeVar, overload

from .alerts import LocalProtocolError
from .handshake import srtp

if TYPE_CHECKING:
    from cryptography import x509

    from .connection import Connection
    from .peer_verification import PeerVerification

T = TypeVar("T")

if TYPE_CHECKING:

    class bound_property(Generic[T]):
        def __init__(self, fget: Callable[[Any], T], /) -> None: ...
        @overload
        def __get__(self, obj: None, owner: type | None = None) -> Self: ...
        @overload
        def __get__(self, obj: object, owner: type | None = None) -> T: ...
        def __get__(self, obj: object, owner: type | None = None) -> T | Self: ...
        def __set__(self, obj: object, value: Never) -> None: ...  # read-only

else:
    bound_property = property


# -- the peer's credentials (properties) ------------------------------------------------


def peer_certificates(self: Connection) -> tuple[x509.Certificate, ...]:
    return self._hs.peer_chain


def peer_verification(self: Connection) -> PeerVerification | None:
    """The verdict on the peer's certificate or raw public key (None: none seen yet, or
    an external PSK): with verify=False, a rejection the handshake went on after."""
    return self._hs.peer_verification


def peer_ocsp_response(self: Connection) -> bytes | None:
    """The OCSP response the server stapled (ClientConfig.request_ocsp); not checked by
    the library. None: none (or we are the server)."""
    return self._hs.peer_stapled.ocsp_response


def peer_signed_certificate_timestamps(self: Connection) -> tuple[bytes, ...]:
    """The serialized SCTs the server stapled (RFC 6962 §3.3); not checked."""
    return self._hs.peer_stapled.signed_certificate_timestamps


def peer_public_key(self: Connection) -> bytes | None:
    """The peer's raw public key (RFC 7250), DER SubjectPublicKeyInfo; None: none."""
    return self._hs.peer_public_key


# -- exporters --------------------------------------------------------------------------


def export_keying_material(
    self: Connection, label: str | bytes, context: bytes | None, length: int
) -> bytes:
    """`length` bytes of keying material for `label` and `context` (RFC 8446 §7.5), the
    same on both sides; only once the handshake has completed. `context=None` and
    `context=b""` give the same value in (D)TLS 1.3."""
    exporter = self._hs.exporter
    if exporter is None or self.handshake_completed_at is None:
        raise LocalProtocolError("keying material can be exported once the handshake is done")
    return exporter.export(label, context, length)


def export_early_keying_material(
    self: Connection, label: str | bytes, context: bytes | None, length: int
) -> bytes:
    """Keying material from the early_exporter_master_secret, for use with 0-RTT data
    (RFC 8446 §7.5): a client once it offered 0-RTT, a server once it accepted it."""
    exporter = self._hs.early_exporter
    if exporter is None:
        raise LocalProtocolError(
            "no early exporter: 0-RTT was not offered (client) or accepted (server)"
        )
    return exporter.export(label, context, length)


# -- SRTP (RFC 5764) --------------------------------------------------------------------


def srtp_profile(self: Connection) -> srtp.SrtpProtectionProfile | None:
    """The SRTP protection profile use_srtp agreed on (RFC 5764), or None."""
    agreed = self._hs.srtp
    return agreed.profile if agreed is not None else None


def srtp_mki(self: Connection) -> bytes:
    """The SRTP MKI both sides use (empty: none)."""
    agreed = self._hs.srtp
    return agreed.mki if agreed is not None else b""


def srtp_keying_material(self: Connection) -> srtp.SrtpKeyingMaterial:
    """SRTP master keys and salts for both directions (RFC 5764 §4.2), once the
    handshake is done; LocalProtocolError when no SRTP profile was agreed."""
    agreed = self._hs.srtp
    if agreed is None:
        raise LocalProtocolError("no SRTP protection profile was negotiated")
    return srtp.keying_material(agreed.profile, self.export_keying_material)
