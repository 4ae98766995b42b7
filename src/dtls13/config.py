"""Client and server configuration; bad values raise at once with a clear message."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from cryptography import x509

from ._fast import DecodeError
from .arguments import CLIENT, COMMON, SERVER, check_fields, server_name, simple_fields
from .crypto.suites import DEFAULT_SUITES, CipherSuite
from .handshake import compression, stapling
from .handshake.antireplay import ReplayStore
from .handshake.client_caches import ClientCaches
from .handshake.compression import CertificateCompressionAlgorithm
from .handshake.constants import NamedGroup, SignatureScheme
from .handshake.ech import EchConfig, pull_ech_config_list
from .handshake.ech_keys import EchKey
from .handshake.identity import Credential
from .handshake.psk_import import ImportedPsk
from .handshake.raw_keys import CertificateType, PinnedKeySource
from .handshake.selection import ServerCertificate, load_server_certificates
from .handshake.srtp import SrtpProtectionProfile, normalise_profiles
from .handshake.ticket_keys import TicketKeyCallback, TicketSealer
from .handshake.tickets import Session
from .handshake.trust_anchors import check_ids as check_trust_anchor_ids
from .handshake.verification import check_callback
from .peer_verification import VerifyCallback
from .record.message_trace import MessageCallback, check_message_callback

KeyLog = Callable[[str], None]
# (the client's server_name or None, its signature_algorithms) -> a chain, or None for
# the built-in choice among the configured ones.
CertificateCallback = Callable[[str | None, tuple[int, ...]], ServerCertificate | None]
# The client's ALPN protocols, in its order -> one of them, or None (no_application_protocol).
AlpnCallback = Callable[[tuple[str, ...]], str | None]
# A client's check of the stapled OCSP response (None: none stapled) for the server's chain:
# False rejects it (bad_certificate_status_response).
ClientOcspCallback = Callable[[bytes | None, tuple[x509.Certificate, ...]], bool]
# A server's OCSP response for the chosen chain, for a client that asks (None: none).
ServerOcspCallback = Callable[[ServerCertificate], bytes | None]
PathOrData = str | os.PathLike[str] | bytes

DEFAULT_GROUPS: tuple[NamedGroup, ...] = (
    NamedGroup.x25519,
    NamedGroup.secp256r1,
    NamedGroup.X25519MLKEM768,
    NamedGroup.secp384r1,
    NamedGroup.x448,
)
# The key share a client sends in its first ClientHello when it is configured with this group
# (the rest are offered for HRR); otherwise it sends one for the first configured group.
DEFAULT_KEY_SHARE = NamedGroup.x25519

DEFAULT_SIGNATURE_SCHEMES: tuple[SignatureScheme, ...] = (
    SignatureScheme.ecdsa_secp256r1_sha256,
    SignatureScheme.ecdsa_secp384r1_sha384,
    SignatureScheme.ed25519,
    SignatureScheme.rsa_pss_rsae_sha256,
    SignatureScheme.rsa_pss_rsae_sha384,
    SignatureScheme.rsa_pss_rsae_sha512,
    SignatureScheme.ed448,
    SignatureScheme.ecdsa_secp521r1_sha512,
    SignatureScheme.rsa_pss_pss_sha256,
    SignatureScheme.rsa_pss_pss_sha384,
    SignatureScheme.rsa_pss_pss_sha512,
    # Certificates signed with PKCS#1 v1.5 are still common; only for signatures in
    # certificates (signature_algorithms_cert), never for CertificateVerify.
    SignatureScheme.rsa_pkcs1_sha256,
    SignatureScheme.rsa_pkcs1_sha384,
    SignatureScheme.rsa_pkcs1_sha512,
)


def _imported(psks: Sequence[ImportedPsk]) -> tuple[ImportedPsk, ...]:
    """imported_psks as a tuple of ImportedPsk (TypeError for anything else)."""
    if isinstance(psks, (bytes, str, ImportedPsk)) or not all(
        isinstance(p, ImportedPsk) for p in psks
    ):
        raise TypeError("imported_psks must be a sequence of ImportedPsk")
    return tuple(psks)


def _names_to(enum_type: Any, values: Sequence[Any], what: str) -> tuple[Any, ...]:
    """Accept enum members, their numbers or their IANA names."""
    out = []
    for v in values:
        if isinstance(v, enum_type):
            out.append(v)
        elif isinstance(v, int):
            try:
                out.append(enum_type(v))
            except ValueError:
                raise ValueError(f"unknown {what} 0x{v:04x}") from None
        elif isinstance(v, str):
            match = {m.name.lower(): m for m in enum_type}.get(v.lower())
            if match is None:
                names = ", ".join(m.name for m in enum_type)
                raise ValueError(f"unknown {what} {v!r}; known: {names}")
            out.append(match)
        else:
            raise TypeError(f"{what} must be a name, a number or an enum member, not {v!r}")
    if not out:
        raise ValueError(f"at least one {what} is needed")
    if len(set(out)) != len(out):
        raise ValueError(f"duplicate {what} in {values!r}")
    return tuple(out)


@dataclass(kw_only=True)
class _Common:
    cipher_suites: Sequence[CipherSuite | str | int] = DEFAULT_SUITES
    groups: Sequence[NamedGroup | str | int] = DEFAULT_GROUPS
    signature_schemes: Sequence[SignatureScheme | str | int] = DEFAULT_SIGNATURE_SCHEMES
    alpn_protocols: Sequence[str] = ()
    certificate_chain: PathOrData | Sequence[x509.Certificate] | None = None
    private_key: Any = None
    private_key_password: bytes | None = None
    mtu: int = 1200
    retransmit_initial: float = 1.0
    retransmit_max: float = 60.0
    handshake_timeout: float = 120.0
    # Timeouts of one flight, each followed by a retransmission, before the connection
    # ends (timed out) at the next; None: bounded by handshake_timeout, and after the
    # handshake a flight stops being retransmitted (connection_flights.py).
    max_retransmissions: int | None = None
    max_handshake_message: int = 65536
    max_messages_ahead: int = 8
    max_bytes_buffered: int = 256 * 1024
    record_padding: int = 0
    # Key exchange with a PSK (RFC 8446 §4.2.9): "psk_dhe_ke" (forward secret), "psk_ke".
    psk_modes: Sequence[str] = ("psk_dhe_ke",)
    # Records per write key before an automatic KeyUpdate; None: the suite's limit (RFC 9147
    # §4.5.3). Lower it to rotate keys more often.
    confidentiality_limit: int | None = None
    # RFC 8449: the largest protected record we accept, counting the inner content type and
    # padding (64 .. 2^14+1); advertised to the peer, who must not send more. None: off.
    record_size_limit: int | None = None
    # Seconds without a record either way after which an established connection lets go
    # of its ciphers' OpenSSL objects (a few KiB), keeping only the key bytes; they are
    # made again for the next record. Released after 1x to 2x this long. None: never.
    idle_release_after: float | None = 10.0
    # RFC 9146/9147 §9: ask the peer to put a connection ID of this many bytes on the records
    # it sends us (True: 8 bytes; 0: use the peer's CID but issue none; False: no extension).
    connection_id: bool | int = False
    # DTLS-SRTP (RFC 5764): SRTP protection profiles, in order of preference (empty: no
    # use_srtp). A client offers them; a server picks the first of its own the client offered.
    srtp_profiles: Sequence[SrtpProtectionProfile | str | int] = ()
    # Raw public keys (RFC 7250): present private_key's bare public key (its
    # SubjectPublicKeyInfo) to a peer that accepts one; certificate_chain becomes optional
    # (with it, X.509 for peers that do not).
    raw_public_key: bool = False
    # The peer's public keys accepted as raw keys (public key objects, certificates, PEM or
    # DER bytes, or paths). With them the peer may authenticate by one of these keys; X.509
    # from the peer is then accepted only when cafile or cadir is given too.
    pinned_public_keys: Sequence[PinnedKeySource] = ()
    # RFC 8879 certificate compression: "brotli", "zstd", "zlib" in order of preference
    # (brotli needs the package `brotli`, zstd `zstandard`). Offered to the peer for its
    # Certificate, and used for ours when the peer offers it. None: every algorithm whose
    # package is installed; (): off.
    certificate_compression: Sequence[str | int] | None = None
    # Called with a PeerVerification once the peer's Certificate is in: True accepts the
    # peer, False or a certificate AlertDescription rejects it (handshake.verification).
    verify_callback: VerifyCallback | None = None
    keylog: str | os.PathLike[str] | KeyLog | None = None
    # Called with a TracedMessage for each handshake message, ACK and alert sent or read.
    message_callback: MessageCallback | None = None
    random_bytes: Callable[[int], bytes] = os.urandom
    debug: bool = False
    # Normalised and loaded forms, filled in by __post_init__.
    suites: tuple[CipherSuite, ...] = field(default=(), init=False)
    group_order: tuple[NamedGroup, ...] = field(default=(), init=False)
    schemes: tuple[SignatureScheme, ...] = field(default=(), init=False)
    srtp: tuple[SrtpProtectionProfile, ...] = field(default=(), init=False)
    compression: tuple[CertificateCompressionAlgorithm, ...] = field(default=(), init=False)
    chain: tuple[x509.Certificate, ...] = field(default=(), init=False)
    key: Any = field(default=None, init=False)
    pinned: frozenset[bytes] = field(default=frozenset(), init=False)
    own_spki: bytes = field(default=b"", init=False)
    # Certificate types we can send, and accept from the peer, in order of preference.
    own_types: tuple[CertificateType, ...] = field(default=(), init=False)
    peer_types: tuple[CertificateType, ...] = field(default=(), init=False)

    def __post_init__(self) -> None:
        check_fields(self, simple_fields(type(self)))
        check_fields(self, COMMON)
        self.suites = _names_to(CipherSuite, self.cipher_suites, "cipher suite")
        self.group_order = _names_to(NamedGroup, self.groups, "group")
        from .handshake.groups import SUPPORTED_GROUPS

        unsupported = [g.name for g in self.group_order if g not in SUPPORTED_GROUPS]
        if unsupported:
            # Offering (or asking for, in a HelloRetryRequest) a group we cannot compute
            # would only fail later, mid-handshake, with internal_error.
            names = ", ".join(g.name for g in SUPPORTED_GROUPS)
            raise ValueError(f"groups {unsupported} are not implemented; supported: {names}")
        self.schemes = _names_to(SignatureScheme, self.signature_schemes, "signature scheme")
        if isinstance(self.srtp_profiles, str | bytes):
            raise TypeError("srtp_profiles is a sequence of profiles, not one string")
        self.srtp = normalise_profiles(self.srtp_profiles)
        self.compression = compression.normalise(self.certificate_compression)
        for proto in self.alpn_protocols:
            if not 1 <= len(proto.encode()) <= 255:
                raise ValueError(f"ALPN protocol {proto!r} must be 1 to 255 bytes")
        if not 256 <= self.mtu <= 65535:
            raise ValueError(f"mtu must be between 256 and 65535, not {self.mtu}")
        if not 0 < self.retransmit_initial <= self.retransmit_max:
            raise ValueError("need 0 < retransmit_initial <= retransmit_max")
        if self.handshake_timeout <= 0:
            raise ValueError("handshake_timeout must be positive")
        if self.max_retransmissions is not None and self.max_retransmissions < 1:
            raise ValueError("max_retransmissions must be a positive integer (or None)")
        if not 1024 <= self.max_handshake_message <= 1 << 24:
            raise ValueError("max_handshake_message must be between 1024 and 2**24")
        if self.max_messages_ahead < 1 or self.max_bytes_buffered < self.max_handshake_message:
            raise ValueError(
                "max_messages_ahead must be >= 1 and max_bytes_buffered >= max_handshake_message"
            )
        if not 0 <= self.record_padding <= 16384:
            raise ValueError("record_padding must be between 0 and 16384")
        if not self.psk_modes or any(m not in ("psk_dhe_ke", "psk_ke") for m in self.psk_modes):
            raise ValueError("psk_modes must hold 'psk_dhe_ke' and/or 'psk_ke'")
        if self.confidentiality_limit is not None and self.confidentiality_limit < 1:
            raise ValueError("confidentiality_limit must be at least 1 record (or None)")
        if self.idle_release_after is not None and not self.idle_release_after > 0:
            raise ValueError("idle_release_after must be positive (or None)")
        if self.record_size_limit is not None and not 64 <= self.record_size_limit <= 16385:
            raise ValueError("record_size_limit must be between 64 and 2**14 + 1 (or None)")
        if not isinstance(self.connection_id, bool) and not 0 <= self.connection_id <= 32:
            raise ValueError("connection_id must be a bool or a length between 0 and 32")
        bare_key = self.raw_public_key and self.certificate_chain is None
        if (self.certificate_chain is None) != (self.private_key is None) and not bare_key:
            raise ValueError("certificate_chain and private_key go together: give both or neither")
        if self.certificate_chain is not None:
            from .handshake.certificates import (
                check_key_matches_certificate,
                load_certificate_chain,
                load_private_key,
            )

            self.chain = tuple(load_certificate_chain(self.certificate_chain))
            self.key = load_private_key(self.private_key, self.private_key_password)
            check_key_matches_certificate(self.key, self.chain[0])
        self._load_raw_keys()
        check_callback(self.verify_callback)
        check_message_callback(self.message_callback)

    def _load_raw_keys(self) -> None:
        """Our raw public key and the pinned peer keys (RFC 7250), checked at once."""
        from .handshake.raw_keys import load_pinned_keys, spki

        if self.raw_public_key:
            if self.private_key is None:
                raise ValueError("raw_public_key needs private_key")
            if self.key is None:
                from .handshake.certificates import load_private_key

                self.key = load_private_key(self.private_key, self.private_key_password)
            self.own_spki = spki(self.key.public_key())
        if self.pinned_public_keys:
            self.pinned = load_pinned_keys(self.pinned_public_keys)
        own = [CertificateType.RawPublicKey] if self.raw_public_key else []
        self.own_types = tuple(own + ([CertificateType.X509] if self.chain else []))
        peer = [CertificateType.RawPublicKey] if self.pinned else []
        trust_given = getattr(self, "cafile", None) is not None or getattr(self, "cadir", None)
        if not self.pinned or trust_given:
            peer.append(CertificateType.X509)
        self.peer_types = tuple(peer)

    @property
    def cid_length(self) -> int | None:
        """Bytes of the CIDs we issue; None when the connection_id extension is off."""
        if self.connection_id is False:
            return None
        return 8 if self.connection_id is True else int(self.connection_id)

    def keylog_callback(self) -> KeyLog | None:
        """A function that appends one NSS key log line, or None."""
        if self.keylog is None:
            return None
        if callable(self.keylog):
            return self.keylog
        path = Path(self.keylog)

        def write(line: str) -> None:
            with path.open("a", encoding="ascii") as f:
                f.write(line + "\n")

        return write


@dataclass(kw_only=True)
class ClientConfig(_Common):
    """What a client needs: whom to trust and which name to check."""

    server_name: str | None = None
    cafile: str | os.PathLike[str] | bytes | Sequence[x509.Certificate] | None = None
    cadir: str | os.PathLike[str] | None = None
    verify: bool = True
    # Ask verify_callback (and the trust store) again on a resumption, about the chain the
    # session authenticated; a rejection ends the resumed handshake.
    reverify_on_resume: bool = False
    key_share_groups: Sequence[NamedGroup | str | int] | None = None
    # Resume this session (from NewSessionTicketReceived.session), if still valid.
    session: Session | None = None
    # An external PSK (identity, key) shared with the server; SHA-256 (RFC 9258 §4).
    psk: tuple[bytes, bytes] | None = None
    # External PSKs offered imported (RFC 9258), each for every hash of cipher_suites.
    imported_psks: Sequence[ImportedPsk] = ()
    # With psk or imported_psks: the server must use one of them (else missing_extension);
    # False lets it authenticate with a certificate instead, checked as verify says.
    require_psk: bool = True
    # The SRTP MKI offered with srtp_profiles (RFC 5764 §4.1.3; empty: no MKI).
    srtp_mki: bytes = b""
    # Trust anchor IDs (draft-ietf-tls-trust-anchor-ids) to name in the ClientHello: the
    # trust anchors we have, so the server picks a chain to one (None: not sent).
    trust_anchor_ids: Sequence[bytes] | None = None
    # Ask the server to staple an OCSP response (status_request, RFC 6066 §8) and signed
    # certificate timestamps (RFC 6962 §3.3.1) to its certificate; the library does not
    # check them: HandshakeCompleted.peer_ocsp_response / peer_signed_certificate_timestamps.
    request_ocsp: bool = False
    request_signed_certificate_timestamps: bool = False
    # With request_ocsp: called after the chain is verified with the stapled response (None
    # when the server stapled none) and the chain; False ends the handshake.
    ocsp_callback: ClientOcspCallback | None = None
    # Accept a server's delegated credential (RFC 9345) whose key signs with one of these
    # schemes, in the delegated_credential extension (empty: none offered, none accepted).
    delegated_credential_schemes: Sequence[SignatureScheme | str | int] = ()
    # Send the ClientHello's extensions in a new random order on each connection
    # (pre_shared_key stays last), so servers cannot come to depend on one order.
    permute_extensions: bool = False
    # More client credentials besides certificate_chain/private_key and raw_public_key
    # (which come first): Credential objects or (chain, key) tuples, in order of preference.
    # A CertificateRequest gets the first that fits it (handshake.identity).
    certificates: Sequence[Credential | tuple[Any, ...]] = ()
    # Encrypted Client Hello (RFC 9849): the server's ECHConfigList (e.g. from its DNS HTTPS
    # record). The first config we support encrypts the real ClientHello; the observable one
    # names the config's public_name. A rejection raises EchRejected with retry_configs.
    ech_config_list: bytes | None = None
    # Without a usable ech_config_list, send a GREASE encrypted_client_hello (§6.2).
    ech_grease: bool = False
    # Pad the first ClientHello with a padding extension (RFC 7685) to fill one datagram of
    # `mtu` bytes, so a server that sends at most 3x what it received from an unverified
    # address (RFC 9147 §5.1) can answer with its whole flight instead of a cookie.
    pad_client_hello: bool = False
    # GREASE (RFC 8701): offer reserved values (a cipher suite, a version, a group with a
    # key share, a signature algorithm, two extensions) so servers keep ignoring unknowns.
    grease: bool = False
    share_groups: tuple[NamedGroup, ...] = field(default=(), init=False)
    dc_schemes: tuple[SignatureScheme, ...] = field(default=(), init=False)
    credentials: tuple[Credential, ...] = field(default=(), init=False)
    ech_configs: tuple[EchConfig, ...] = field(default=(), init=False)
    trust: Any = field(default=None, init=False)
    # Work its connections share: the ClientHello's fixed extensions, servers' certificates
    # decompressed and parsed (handshake.client_caches; public data, never a verdict).
    caches: ClientCaches = field(
        default_factory=ClientCaches, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        check_fields(self, CLIENT)
        if self.session is not None and not isinstance(self.session, Session):
            raise TypeError("session must be a Session (NewSessionTicketReceived.session) or None")
        super().__post_init__()
        if self.server_name is not None:
            self.server_name = server_name(self.server_name)
        if self.key_share_groups is None:
            default = DEFAULT_KEY_SHARE
            first = default if default in self.group_order else self.group_order[0]
            self.share_groups = (first,)
        else:
            self.share_groups = _names_to(NamedGroup, self.key_share_groups, "key share group")
        missing = [g.name for g in self.share_groups if g not in self.group_order]
        if missing:
            raise ValueError(f"key share groups {missing} are not among the configured groups")
        if self.psk is not None and (not self.psk[0] or len(self.psk[1]) < 16):
            raise ValueError("psk must be (a non-empty identity, a key of at least 16 bytes)")
        self.imported_psks = _imported(self.imported_psks)
        if len(self.srtp_mki) > 255:
            raise ValueError("srtp_mki must be bytes, at most 255 of them")
        if self.srtp_mki and not self.srtp:
            raise ValueError("srtp_mki needs srtp_profiles")
        stapling.check_callback(self.ocsp_callback)
        if isinstance(self.delegated_credential_schemes, str | bytes):
            raise TypeError("delegated_credential_schemes is a sequence of schemes, not one")
        if self.delegated_credential_schemes:
            self.dc_schemes = _names_to(
                SignatureScheme, self.delegated_credential_schemes, "signature scheme"
            )
        self._load_ech()
        if self.pinned and not self.verify:
            raise ValueError("pinned_public_keys verify the server: they contradict verify=False")
        self._load_credentials()
        if self.trust_anchor_ids is not None:
            self.trust_anchor_ids = check_trust_anchor_ids(self.trust_anchor_ids)
        psk_only = self.require_psk and (self.psk is not None or bool(self.imported_psks))
        # With verify=False, a cafile/cadir still gives a verdict (soft fail: recorded in
        # Connection.peer_verification, the handshake goes on).
        soft_trust = self.cafile is not None or self.cadir is not None
        if (self.verify or soft_trust) and not psk_only and CertificateType.X509 in self.peer_types:
            from .handshake.certificates import load_trust_store

            self.trust = load_trust_store(self.cafile, self.cadir)
            if self.verify and self.server_name is None and self.verify_callback is None:
                raise ValueError(
                    "server_name is required when verifying certificates "
                    "(or pass verify=False to skip verification, or a verify_callback)"
                )

    def _load_ech(self) -> None:
        if self.ech_config_list is None:
            return
        try:
            self.ech_configs = pull_ech_config_list(self.ech_config_list)
        except DecodeError as exc:
            raise ValueError(f"ech_config_list is not a valid ECHConfigList: {exc}") from None

    def _load_credentials(self) -> None:
        """Every credential, in order: the raw key, the chain, then `certificates`; our
        certificate types (client_certificate_type, RFC 7250 §4.1) in that order."""
        if isinstance(self.certificates, str | bytes | os.PathLike) or not isinstance(
            self.certificates, Sequence
        ):
            raise TypeError("certificates is a sequence of Credential or (chain, key) tuples")
        creds = []
        if self.raw_public_key:
            creds.append(Credential(private_key=self.key, raw_public_key=True))
        if self.chain:
            creds.append(Credential(self.chain, self.key))
        creds += [Credential.of(item) for item in self.certificates]
        self.credentials = tuple(creds)
        self.own_types = tuple(dict.fromkeys(c.certificate_type for c in creds))


@dataclass(kw_only=True)
class ServerConfig(_Common):
    """What a server needs: its certificate and key, and its client-auth policy."""

    client_auth: Literal["none", "optional", "required"] = "none"
    cafile: str | os.PathLike[str] | bytes | Sequence[x509.Certificate] | None = None
    cadir: str | os.PathLike[str] | None = None
    # HelloRetryRequest with a stateless cookie before any handshake (RFC 9147 §5.1).
    require_cookie: bool = False
    cookie_secret: bytes | None = None  # share it between processes that share a port
    cookie_lifetime: float = 60.0
    cookie_rotation: float | None = 300.0
    # Stateless session tickets sent after each handshake (0: none).
    session_tickets: int = 1
    ticket_secret: bytes | None = None  # share it so every process opens every ticket
    ticket_lifetime: int = 7200
    ticket_rotation: float = 3600.0
    # The application's ticket keys (a TicketKeyCallback, e.g. a TicketKeyRing) or its own
    # sealing (a TicketSealer) instead of keys derived from ticket_secret.
    ticket_keys: TicketKeyCallback | None = None
    ticket_sealer: TicketSealer | None = None
    # 0-RTT: the most early data a resumed client may send (0: refuse 0-RTT). Replay
    # protection: each ticket is accepted for 0-RTT once per process (whichever of its
    # ServerConfigs sees it) and only within `early_data_window` seconds of the age the
    # client reports (RFC 8446 §8).
    max_early_data: int = 0
    early_data_window: float = 10.0
    # Where used tickets are remembered (None: one guard for the whole process); share a
    # store between processes or machines that share a ticket secret (handshake.antireplay).
    replay_store: ReplayStore | None = None
    # External PSKs: identity -> key (SHA-256); a server with only these needs no certificate.
    external_psks: Mapping[bytes, bytes] = field(default_factory=dict)
    # External PSKs clients offer imported (RFC 9258), in our order of preference.
    imported_psks: Sequence[ImportedPsk] = ()
    # Whether an external or imported PSK the client offers wins over the certificates
    # (True), or is used only when no certificate credential fits the ClientHello.
    psks_before_certificates: bool = True
    # Answer a client's SRTP MKI with the same MKI (we will use it) rather than an empty one
    # (we will not), RFC 5764 §4.1.3.
    srtp_accept_mki: bool = False
    # More chains besides certificate_chain/private_key: ServerCertificate objects or
    # (chain, key) tuples; each handshake gets one by SNI and signature_algorithms.
    certificates: Sequence[ServerCertificate | tuple[Any, ...]] = ()
    certificate_callback: CertificateCallback | None = None
    alpn_callback: AlpnCallback | None = None
    # Stapled to certificate_chain's leaf for a client that asks (RFC 8446 §4.4.2.1): a DER
    # OCSPResponse and serialized SCTs (RFC 6962 §3.3), sent as given. For the chains in
    # `certificates`, ServerCertificate takes the same two.
    ocsp_response: bytes | None = None
    signed_certificate_timestamps: Sequence[bytes] = ()
    # Called for a client that asks for OCSP with the chosen ServerCertificate: the response
    # to staple (None: none), instead of its configured one.
    ocsp_callback: ServerOcspCallback | None = None
    # Encrypted Client Hello (RFC 9849): the keys whose configs this server publishes
    # (ech_config_list); a ClientHelloOuter none of them decrypts gets the retry=True ones.
    ech_keys: Sequence[EchKey] = ()
    # Answer a client's server_name with the empty acknowledgement in EncryptedExtensions
    # (RFC 6066 §3); False: never, for a server whose answer does not depend on the name.
    acknowledge_server_name: bool = True
    server_certificates: Any = field(default=None, init=False)  # a selection.CertificateSet
    trust: Any = field(default=None, init=False)
    cookie_jar: Any = field(default=None, init=False)
    tickets: Any = field(default=None, init=False)
    replay_guard: Any = field(default=None, init=False)

    def __post_init__(self) -> None:
        check_fields(self, SERVER)
        super().__post_init__()
        stapled = (self.ocsp_response, self.signed_certificate_timestamps)
        if not self.chain and (stapled[0] is not None or stapled[1]):
            raise ValueError(
                "ocsp_response and signed_certificate_timestamps go with certificate_chain "
                "(for the chains in certificates, give them to each ServerCertificate)"
            )
        self.server_certificates = load_server_certificates(
            (self.chain, self.key, None, None, *stapled) if self.chain else None,
            self.certificates,
            self.key if self.raw_public_key else None,
        )
        if not self.chain and self.key is None and self.server_certificates.certificates:
            first = self.server_certificates.certificates[0]
            self.chain, self.key = first.chain, first.key
        # Our certificate types: those of the credentials (raw keys among `certificates` too).
        held = {c.certificate_type for c in self.server_certificates.certificates}
        self.own_types = tuple(
            t for t in (CertificateType.RawPublicKey, CertificateType.X509) if t in held
        )
        self.imported_psks = _imported(self.imported_psks)
        if self.key is None and not self.external_psks and not self.imported_psks:
            raise ValueError(
                "a server needs certificate_chain and private_key, certificates, "
                "private_key with raw_public_key, external_psks or imported_psks"
            )
        if self.pinned and self.client_auth == "none":
            raise ValueError("pinned_public_keys authenticate clients: set client_auth too")
        for name in ("certificate_callback", "alpn_callback", "ocsp_callback"):
            if getattr(self, name) is not None and not callable(getattr(self, name)):
                raise TypeError(f"{name} must be callable (or None)")
        if any(not i or len(k) < 16 for i, k in self.external_psks.items()):
            raise ValueError("external_psks: non-empty identities, keys of at least 16 bytes")
        if not 0 <= self.max_early_data <= 0xFFFFFFFF or self.early_data_window <= 0:
            raise ValueError("max_early_data must be 0..2^32-1 and early_data_window positive")
        from .handshake.antireplay import PROCESS_REPLAY_GUARD

        if self.replay_store is None:
            self.replay_guard = PROCESS_REPLAY_GUARD
        elif callable(getattr(self.replay_store, "first_use", None)):
            self.replay_guard = self.replay_store
        else:
            raise TypeError("replay_store must have first_use(ticket, expires, now) -> bool")
        if not 0 <= self.session_tickets <= 8:
            raise ValueError("session_tickets must be between 0 and 8")
        if not 0 < self.ticket_lifetime <= 7 * 24 * 3600:
            raise ValueError("ticket_lifetime must be positive and at most seven days")
        self.ech_keys = tuple(self.ech_keys)
        if not all(isinstance(k, EchKey) for k in self.ech_keys):
            raise TypeError("ech_keys must hold EchKey objects (see generate_ech_key)")
        if self.client_auth not in ("none", "optional", "required"):
            raise ValueError("client_auth must be 'none', 'optional' or 'required'")
        from .handshake.cookie import CookieJar
        from .handshake.tickets import TicketProtector

        for name, kind in (("ticket_keys", TicketKeyCallback), ("ticket_sealer", TicketSealer)):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), kind):
                raise TypeError(f"{name} must be a {kind.__name__} (or None)")
        if (self.ticket_keys or self.ticket_sealer) and self.ticket_secret is not None:
            raise ValueError("ticket_secret is for the built-in ticket keys: give one or the other")
        self.tickets = TicketProtector(
            self.ticket_secret,
            rotation_interval=self.ticket_rotation,
            random_bytes=self.random_bytes,
            keys=self.ticket_keys,
            sealer=self.ticket_sealer,
        )

        self.cookie_jar = CookieJar(
            self.cookie_secret,
            lifetime=self.cookie_lifetime,
            rotation_interval=self.cookie_rotation,
            random_bytes=self.random_bytes,
        )
        if self.client_auth != "none" and CertificateType.X509 in self.peer_types:
            from .handshake.certificates import load_trust_store

            self.trust = load_trust_store(self.cafile, self.cadir)
