"""Raw public keys (RFC 7250) in (D)TLS 1.3: certificate types, our key, the peer's key.

RFC 7250 §3-4 and RFC 8446 §4.2, §4.4.2: the client lists in ClientHello the certificate
types it can process from the server (server_certificate_type, 20) and can send itself
(client_certificate_type, 19), most preferred first:

    CertificateType client_certificate_types<1..2^8-1>;   (ClientHello)
    CertificateType client_certificate_type;              (EncryptedExtensions)

The server answers each in EncryptedExtensions with the one type it chose (the client
type only when it sends a CertificateRequest); "If the server ... does not have any
certificate type in common with the client ... a fatal alert of type
unsupported_certificate" (RFC 7250 §4.2). With RawPublicKey, the Certificate message holds
one CertificateEntry whose data is the DER SubjectPublicKeyInfo (RFC 8446 §4.4.2); the
receiver accepts it when it is one of the keys pinned in its configuration, and checks the
CertificateVerify signature against it as usual.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from .._fast import Buffer, DecodeError
from ..alerts import BadCertificate, CertificateUnknown, DecodeErrorAlert, UnsupportedCertificate
from . import extensions as ext
from .constants import ExtensionType
from .signatures import PublicKey, schemes_for_key

if TYPE_CHECKING:
    from .tickets import TicketState


class CertificateType(enum.IntEnum):
    """The IANA "TLS Certificate Types" registry (the values TLS 1.3 uses)."""

    X509 = 0
    RawPublicKey = 2


class RawKeySettings(Protocol):
    """What the server's choices here read from ``ServerConfig`` (a layer above)."""

    @property
    def own_types(self) -> tuple[CertificateType, ...]: ...
    @property
    def peer_types(self) -> tuple[CertificateType, ...]: ...
    @property
    def pinned(self) -> frozenset[bytes]: ...
    @property
    def client_auth(self) -> str: ...
    @property
    def trust(self) -> Any: ...


PinnedKeySource: TypeAlias = "str | os.PathLike[str] | bytes | PublicKey | x509.Certificate"


# -- codecs --------------------------------------------------------------------------


def pull_certificate_types(buf: Buffer) -> tuple[int, ...]:
    """ClientHello form: ``CertificateType types<1..2^8-1>``."""
    data = buf.pull_vector(1)
    if not data:
        raise DecodeError("empty certificate type list")
    return tuple(data)


def push_certificate_types(buf: Buffer, types: Sequence[int]) -> None:
    buf.push_vector(1, bytes(types))


def pull_certificate_type(buf: Buffer) -> int:
    """EncryptedExtensions form: one ``CertificateType``."""
    return buf.pull_uint8()


def push_certificate_type(buf: Buffer, cert_type: int) -> None:
    buf.push_uint8(cert_type)


def choose(offered: Iterable[int], supported: Sequence[CertificateType]) -> int | None:
    """The first type in the peer's preference order we support (None: none in common)."""
    return next((t for t in offered if t in supported), None)


def client_type_choice(
    cfg: RawKeySettings, client_types: bytes | None
) -> tuple[CertificateType, tuple[ext.Extension, ...]]:
    """A server's choice of the client's certificate type for a ClientHello's
    client_certificate_type (RFC 7250 §4.2), and the EncryptedExtensions answer.

    The extension is processed only when a raw public key is among the types we accept
    from clients; else it is ignored, as by a server without RFC 7250, and X.509 applies.
    It is answered only with a CertificateRequest: call this for full handshakes only.
    (Our own type goes with the credential chosen: `selection.choose_server_credential`.)
    """
    CT = CertificateType
    if client_types is None or cfg.client_auth == "none" or CT.RawPublicKey not in cfg.peer_types:
        return CT.X509, ()
    chosen = choose(_decode_types(client_types), cfg.peer_types)
    if chosen is None:
        raise UnsupportedCertificate("no client certificate type in common")
    return CT(chosen), (_answer(ExtensionType.client_certificate_type, chosen),)


def _decode_types(data: bytes) -> tuple[int, ...]:
    try:
        return ext.decode(data, pull_certificate_types)
    except DecodeError as exc:
        raise DecodeErrorAlert(f"malformed certificate type list: {exc}") from None


def _answer(ext_type: ExtensionType, chosen: int) -> ext.Extension:
    return ext.make_extension(ext_type, push_certificate_type, chosen)


def ticket_identity_acceptable(cfg: RawKeySettings, state: TicketState) -> bool:
    """Whether a server configuration accepts the client identity a ticket carries: a raw
    public key it still pins, a certificate while it verifies X.509 clients (or asks for no
    client authentication), or none unless client authentication is required."""
    if state.client_public_key:
        return state.client_public_key in cfg.pinned
    if state.client_chain:
        return cfg.client_auth == "none" or cfg.trust is not None
    return cfg.client_auth != "required"


# -- keys (programmer input: raise at once) ----------------------------------------------


def spki(public_key: object) -> bytes:
    """The DER SubjectPublicKeyInfo of a public key."""
    public_bytes = getattr(public_key, "public_bytes", None)
    if public_bytes is None:
        raise TypeError(f"{type(public_key).__name__} is not a public key")
    der: bytes = public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return der


def _keys_from_bytes(data: bytes, label: str) -> list[object]:
    try:
        if b"-----BEGIN" not in data:
            return [serialization.load_der_public_key(data)]
        keys: list[object] = []
        for part in data.split(b"-----BEGIN")[1:]:
            block = b"-----BEGIN" + part
            if block.startswith(b"-----BEGIN PUBLIC KEY-----"):
                keys.append(serialization.load_pem_public_key(block))
            elif block.startswith(b"-----BEGIN CERTIFICATE-----"):
                keys.append(x509.load_pem_x509_certificate(block).public_key())
    except (ValueError, UnsupportedAlgorithm) as err:
        raise ValueError(f"{label}: not a PEM or DER public key ({err})") from None
    if not keys:
        raise ValueError(f"{label}: no PEM PUBLIC KEY (or CERTIFICATE) block")
    return keys


def load_pinned_keys(sources: Sequence[PinnedKeySource]) -> frozenset[bytes]:
    """The DER SubjectPublicKeyInfos of the configured peer keys.

    Each source is a public key object, a certificate (its key), PEM bytes (PUBLIC KEY or
    CERTIFICATE blocks, several allowed), DER SubjectPublicKeyInfo bytes, or a path to a
    file holding either. Raises ValueError / FileNotFoundError / TypeError at once.
    """
    if isinstance(sources, str | bytes | os.PathLike):
        raise TypeError("pinned_public_keys is a sequence of keys, not one key or path")
    pinned: set[bytes] = set()
    for i, source in enumerate(sources):
        label = f"pinned public key #{i}"
        if isinstance(source, x509.Certificate):
            keys: list[object] = [source.public_key()]
        elif isinstance(source, bytes | bytearray):
            keys = _keys_from_bytes(bytes(source), label)
        elif isinstance(source, str | os.PathLike):
            path = Path(source)
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                raise FileNotFoundError(f"{label}: file not found: {path}") from None
            except OSError as err:
                raise ValueError(f"{label}: cannot read {path}: {err}") from None
            keys = _keys_from_bytes(data, f"{label} ({path})")
        elif hasattr(source, "public_bytes") and not hasattr(source, "sign"):
            keys = [source]
        else:
            raise TypeError(
                f"{label} must be a public key, a certificate, PEM/DER bytes or a path, "
                f"not {type(source).__name__}"
            )
        for key in keys:
            if not schemes_for_key(key):
                raise ValueError(f"{label}: a {type(key).__name__} cannot sign in TLS 1.3")
            pinned.add(spki(key))
    if not pinned:
        raise ValueError("pinned_public_keys is empty")
    return frozenset(pinned)


# -- the peer's key (network input: raises only Alert subclasses) -------------------------


def peer_key_untrusted(entries: Sequence[bytes], pinned: frozenset[bytes]) -> bytes:
    """The peer's SubjectPublicKeyInfo from a RawPublicKey Certificate message's entries,
    if it is one of the `pinned` keys.

    Malformed or several entries: bad_certificate (RFC 8446 §6.2: "A certificate was
    corrupt"); a well-formed key that is not pinned: certificate_unknown ("Some other
    (unspecified) issue arose in processing the certificate, rendering it unacceptable",
    also what OpenSSL sends for an untrusted raw key).
    """
    if len(entries) != 1:
        # RFC 8446 §4.4.2: "the certificate_list MUST contain no more than one
        # CertificateEntry".
        raise BadCertificate(f"{len(entries)} entries in a RawPublicKey Certificate")
    der = bytes(entries[0])
    try:
        key = serialization.load_der_public_key(der)
        canonical = spki(key)
    except (ValueError, TypeError, UnsupportedAlgorithm) as err:
        raise BadCertificate(f"malformed raw public key: {err}") from None
    if canonical != der or not schemes_for_key(key):
        raise BadCertificate("raw public key not in canonical DER, or of an unusable type")
    if der not in pinned:
        raise _not_pinned()
    return der


def _not_pinned() -> CertificateUnknown:
    # Made here, not in the raising frame: a local holding the alert would tie it to its
    # own traceback, a cycle keeping the frame's views of pooled memory until the next GC.
    alert = CertificateUnknown("the peer's raw public key is not among the pinned keys")
    alert.certificate_error = "raw public key not pinned"
    return alert


def load_peer_key(der: bytes) -> PublicKey:
    """The key object of a SubjectPublicKeyInfo that `peer_key_untrusted` accepted."""
    key = serialization.load_der_public_key(der)
    return key  # type: ignore[return-value]


__all__ = [
    "CertificateType",
    "PinnedKeySource",
    "choose",
    "client_type_choice",
    "load_peer_key",
    "load_pinned_keys",
    "peer_key_untrusted",
    "pull_certificate_type",
    "pull_certificate_types",
    "push_certificate_type",
    "push_certificate_types",
    "spki",
    "ticket_identity_acceptable",
]
