"""The client side of the handshake (RFC 8446 §A.1, RFC 9147), as a `HandshakeContext`."""

from __future__ import annotations

import ipaddress
from typing import Any

from cryptography import x509

from ..alerts import (
    DecryptError,
    EchRequired,
    IllegalParameter,
    MissingExtension,
    ProtocolVersion,
    UnexpectedMessage,
    UnsupportedCertificate,
    UnsupportedExtension,
)
from ..config import ClientConfig
from ..crypto.zeroize import zeroize
from ..events import NewSessionTicketReceived
from . import (
    client_answer,
    client_caches,
    client_offer,
    compression,
    ech,
    ech_client,
    groups,
    identity,
    raw_keys,
    srtp,
    trust_anchors,
    verification,
)
from . import extensions as ext
from . import messages as msgs
from .constants import ExtensionType, HandshakeType, SignatureScheme
from .context import HandshakeContext, decode, extension_name, record_size_limit
from .grease import is_grease
from .key_schedule import resumption_psk
from .psk_import import PskOffer
from .state import HELLO_STATES, HELLO_VERIFY_REQUEST, ClientState, Transition
from .tickets import Session
from .work import (
    NO_OUTPUT,
    SPENT_TRANSCRIPT,
    FlightKind,
    HandshakeOutput,
    HandshakeWork,
    ReadOnlyWork,
    spent_work,
)

HT = HandshakeType
S = ClientState


class ClientWork(HandshakeWork):
    """The client's working state of a handshake in progress (see `HandshakeWork`)."""

    __slots__ = ("client_hello", "ech", "ech_extension", "key_shares", "psk_offers")

    def __init__(
        self, random: bytes, scratch: compression.Acquire | None, local_cid: bytes | None
    ) -> None:
        super().__init__(random, scratch, local_cid)
        self.key_shares: dict[int, groups.KeyExchange] = {}
        self.psk_offers: list[PskOffer] = []
        self.client_hello: msgs.ClientHello | None = None  # what the server answers
        # Encrypted Client Hello (RFC 9849): the offer while the server has not answered
        # it; the GREASE or copied extension ClientHelloOuter carries without an offer.
        self.ech: ech_client.EchOffer | None = None
        self.ech_extension: ext.Extension | None = None


class _SpentClientWork(ReadOnlyWork, ClientWork):
    __slots__ = ()


# Every finished client handshake's working state: no hello, key shares or PSK offers.
_SPENT_CLIENT_WORK = ClientWork(b"", None, None)
_SPENT_CLIENT_WORK.transcript = SPENT_TRANSCRIPT
_SPENT_CLIENT_WORK = spent_work(_SPENT_CLIENT_WORK, _SpentClientWork)


class ClientHandshake(HandshakeContext):
    """The client's handshake: `start()` makes the ClientHello, `handle_message()` the rest."""

    is_client = True
    CONNECTED = S.CONNECTED
    CLOSED = S.CLOSED
    HELLO_STATES = HELLO_STATES
    _after_certificate_verify = S.WAIT_FINISHED
    SPENT_WORK = _SPENT_CLIENT_WORK

    __slots__ = (
        "_ech_state",
        "ech_name_override",
        "ech_retry_configs",
        "resumption_secret",
        "trust_anchor_matched",
        "trust_anchors_available",
    )

    config: ClientConfig
    _work: ClientWork

    def __init__(self, config: ClientConfig, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.resumption_secret = b""  # for the PSKs of the server's tickets
        # Trust anchor IDs: the server's leaf chains to one we named; the IDs it has.
        self.trust_anchor_matched = False
        self.trust_anchors_available: tuple[bytes, ...] = ()
        # Encrypted Client Hello (RFC 9849): what became of it.
        self._ech_state = ech.EchStatus.NOT_OFFERED
        self.ech_retry_configs: bytes | None = None
        # The name the server's certificate is checked against once ECH was rejected:
        # the config's public_name (§6.1.7), not server_name.
        self.ech_name_override: str | None = None
        chosen = ech_client.choose(config.ech_configs)
        if chosen is not None:
            self._work.ech = ech_client.EchOffer(*chosen, config.random_bytes)
        elif config.ech_grease:
            self._work.ech_extension = ech_client.grease_extension(config.random_bytes)
            self._ech_state = ech.EchStatus.GREASE
        self._set_state(S.START)

    def _new_work(
        self, random: bytes, scratch: compression.Acquire | None, local_cid: bytes | None
    ) -> ClientWork:
        return ClientWork(random, scratch, local_cid)

    @property
    def client_hello(self) -> msgs.ClientHello | None:
        """The ClientHello the server answers (None before start() and once it is over)."""
        return self._work.client_hello

    @property
    def retried(self) -> bool:
        """Whether the server answered with a HelloRetryRequest."""
        return self.state is S.WAIT_SERVER_HELLO_AFTER_RETRY

    def start(self, pad_to: int = 0) -> HandshakeOutput:
        """The first flight: ClientHello (and the 0-RTT write keys when offering early data),
        padded to fill a datagram of `pad_to` bytes (0: not padded)."""
        if self.state is not S.START:
            raise AssertionError("start() called twice")
        out = self._out = HandshakeOutput()
        try:
            self._send_client_hello(pad_to)
            self._set_state(S.WAIT_SERVER_HELLO)
        finally:
            self._out = NO_OUTPUT
        return out

    # The ClientHello and what it offers (client_offer.py).
    _send_client_hello = client_offer.send_client_hello

    def save_hello(self) -> tuple[Any, ...]:
        # A ServerHello dropped as damaged must not leave its ECH verdict behind either:
        # an off-path sender's hello would otherwise decide which ClientHello counts.
        offer = self._work.ech
        outer = offer.outer_transcript.copy() if offer is not None else None
        ech_state = (
            self._ech_state,
            offer,
            outer,
            self._work.client_hello,
            self._work.random,
            self._work.client_random,
            self._work.ech_extension,
            self.ech_name_override,
            self._work.psk_offers,
        )
        return (super().save_hello(), ech_state)

    def restore_hello(self, saved: tuple[Any, ...]) -> None:
        base, ech_state = saved
        super().restore_hello(base)
        (
            self._ech_state,
            self._work.ech,
            outer,
            self._work.client_hello,
            self._work.random,
            self._work.client_random,
            self._work.ech_extension,
            self.ech_name_override,
            self._work.psk_offers,
        ) = ech_state
        if self._work.ech is not None:
            self._work.ech.outer_transcript = outer

    def ech_status(self) -> ech.EchStatus:
        return self._ech_state

    def _hello_server_name(self) -> str | None:
        """The server_name to send: ours, or the ECH config's public_name once the server
        rejected ECH at a HelloRetryRequest (ClientHelloOuter's name, RFC 9849 §6.1)."""
        if self.ech_name_override is not None:
            return self.ech_name_override
        name = self.config.server_name
        return name if name and not _is_ip(name) else None

    def _on_hello_verify_request(self, msg: Any, body: bytes, now: float, *_: Any) -> None:
        # A DTLS 1.0/1.2 server's cookie exchange: it cannot speak DTLS 1.3.
        raise ProtocolVersion("the server speaks only DTLS 1.2 or older")

    # The server's answer: ServerHello or HelloRetryRequest (client_answer.py).
    _on_server_hello = client_answer.on_server_hello
    _ech_answer = client_answer.ech_answer
    _on_hello_retry = client_answer.on_hello_retry

    def _check_solicited(
        self, extensions: tuple[ext.Extension, ...], where: str, retry: bool = False
    ) -> None:
        """RFC 8446 §4.2: "Implementations MUST NOT send extension responses if the remote
        endpoint did not send the corresponding extension requests, with the exception of
        the "cookie" extension in the HelloRetryRequest" (else unsupported_extension)."""
        hello = self._work.client_hello
        assert hello is not None
        # RFC 8701 §3.1: a GREASE extension we sent is never one the server may answer.
        offered = {e.type for e in hello.extensions if not is_grease(e.type)}
        for e in extensions:
            if e.type not in offered and not (retry and e.type == ExtensionType.cookie):
                raise UnsupportedExtension(f"{extension_name(e.type)} in {where}, not offered")

    def _on_encrypted_extensions(self, ee: msgs.EncryptedExtensions, body: bytes, *_: Any) -> None:
        cfg = self.config
        self._check_solicited(ee.extensions, "EncryptedExtensions")
        sni_ack = ee.extension(ExtensionType.server_name)
        if sni_ack is not None:
            decode(sni_ack, ext.pull_server_name_ack)  # RFC 6066 §3
        alpn = ee.extension(ExtensionType.application_layer_protocol_negotiation)
        if alpn is not None:
            names = decode(alpn, ext.pull_alpn)
            if len(names) != 1 or names[0].decode("latin-1") not in cfg.alpn_protocols:
                raise IllegalParameter("server selected an ALPN protocol we did not offer")
            self.alpn = names[0].decode("latin-1")
        use_srtp = ee.extension(ExtensionType.use_srtp)
        if use_srtp is not None:
            self.srtp = srtp.client_check(cfg.srtp, cfg.srtp_mki, use_srtp)
        limit = ee.extension(ExtensionType.record_size_limit)
        if limit is not None:
            if cfg.record_size_limit is None:
                raise UnsupportedExtension("record_size_limit in EncryptedExtensions, not sent")
            self._out.peer_record_limit = record_size_limit(limit)
            self._out.enforce_record_limit = True
        self._certificate_types(ee)
        self.trust_anchors_available = trust_anchors.available_untrusted(ee)
        self._ech_retry_configs(ee)
        accepted_early = ee.extension(ExtensionType.early_data) is not None
        if accepted_early and not self._work.early_offered:
            raise UnsupportedExtension("early_data accepted but not offered")
        if self._work.early_offered:
            self._work.early_result = accepted_early
        self._work.transcript.add(HandshakeType.encrypted_extensions, body)
        if self.resumed and cfg.session is not None:
            # Where BoringSSL re-verifies too (after EncryptedExtensions, under handshake keys).
            self.peer_verification = verification.on_resumption(self, cfg.session.peer_verification)
        # A PSK handshake authenticates by the PSK: no certificates (RFC 8446 §2.2).
        self._set_state(S.WAIT_FINISHED if self.resumed else S.WAIT_CERTIFICATE_OR_REQUEST)

    def _ech_retry_configs(self, ee: msgs.EncryptedExtensions) -> None:
        """The server's retry_configs (RFC 9849 §7.1): after an ECH it accepted, the
        extension is unsupported_extension (§7.2); otherwise it must parse (else
        decode_error, §6.1.6, §6.2.1); only a rejection keeps it."""
        data = ee.extension(ech_client.ECH_TYPE)
        if data is None:
            return
        if self._ech_state is ech.EchStatus.ACCEPTED:
            raise UnsupportedExtension("encrypted_client_hello in EncryptedExtensions after ECH")
        ech_client.check_retry_configs(data)
        if self._ech_state is ech.EchStatus.REJECTED:
            self.ech_retry_configs = bytes(data)

    def _certificate_types(self, ee: msgs.EncryptedExtensions) -> None:
        """The certificate types the server chose (RFC 7250 §4.2): one each, among ours."""
        cfg = self.config
        CT = raw_keys.CertificateType
        server_type = ee.extension(ExtensionType.server_certificate_type)
        if server_type is not None:
            chosen = decode(server_type, raw_keys.pull_certificate_type)
            if chosen not in cfg.peer_types:
                raise IllegalParameter(f"server certificate type {chosen} was not offered")
            self.peer_type = CT(chosen)
        elif CT.X509 not in cfg.peer_types and not self.resumed:
            # Absent, the server sends X.509, which we did not offer to accept.
            raise UnsupportedCertificate("the server does not send a raw public key")
        client_type = ee.extension(ExtensionType.client_certificate_type)
        if client_type is not None:
            chosen = decode(client_type, raw_keys.pull_certificate_type)
            if chosen not in cfg.own_types:
                raise IllegalParameter(f"client certificate type {chosen} was not offered")
            self._work.own_type = CT(chosen)

    def _on_certificate_request(self, cr: msgs.CertificateRequest, body: bytes, *_: Any) -> None:
        if cr.certificate_request_context != b"":
            raise IllegalParameter("non-empty certificate_request_context in the handshake")
        if cr.extension(ExtensionType.signature_algorithms) is None:
            raise MissingExtension("CertificateRequest without signature_algorithms")
        cas = cr.extension(ExtensionType.certificate_authorities)
        if cas is not None:  # checked on arrival (RFC 8446 §4.2.4: authorities<3..2^16-1>)
            decode(cas, identity.pull_certificate_authorities)
        self._work.cert_request = cr
        self._work.transcript.add(HandshakeType.certificate_request, body)
        self._set_state(S.WAIT_CERTIFICATE)

    def _on_server_certificate(self, msg: msgs.Certificate, body: bytes, *_: Any) -> None:
        self._on_certificate(msg, body)
        self._set_state(S.WAIT_CERTIFICATE_VERIFY)

    def _on_server_compressed_certificate(self, _: Any, body: bytes, *__: Any) -> None:
        msg = self._decompress_server_certificate(body)
        self._on_certificate(msg, body, HT.compressed_certificate)
        self._set_state(S.WAIT_CERTIFICATE_VERIFY)

    def _decompress_server_certificate(self, body: bytes) -> msgs.Certificate:
        """The Certificate the server's CompressedCertificate carries: decompressed and
        decoded once per ClientConfig for the same bytes (a server we connect to again);
        what it says is checked on every handshake, as for a Certificate."""
        cfg = self.config
        cache = cfg.caches.certificates
        entry = cache.get(body)
        if entry is not None:
            algorithm, length, msg = entry
            # The limits the configuration sets held when it was cached; they still do.
            if algorithm in cfg.compression and length <= cfg.max_handshake_message:
                self._work.certificate_compression_received = algorithm
                self._count("certificates_decompressed", 1)
                cached: msgs.Certificate = msg
                return cached
        msg = self._decompress_certificate(body, offered=True)  # offered in ClientHello
        # RFC 8879 §4: uint16 algorithm, uint24 uncompressed_length (decoded just now).
        length = int.from_bytes(body[2:5], "big")
        if length <= client_caches.LARGEST_KEPT:
            cache.put(body, (self._work.certificate_compression_received, length, msg))
        return msg

    def _parse_peer_chain_untrusted(
        self, entries: tuple[msgs.CertificateEntry, ...]
    ) -> tuple[x509.Certificate, ...]:
        """The server's certificates, parsed once per ClientConfig for the same DER bytes
        (x509.Certificate objects are immutable); verified on every handshake all the same."""
        ders = tuple(e.cert_data for e in entries)
        cache = self.config.caches.chains
        chain = cache.get(ders)
        if chain is None:
            chain = super()._parse_peer_chain_untrusted(entries)
            if sum(map(len, ders)) <= client_caches.LARGEST_KEPT:
                cache.put(ders, chain)
        return chain

    def _on_finished(self, fin: msgs.Finished, body: bytes, now: float, *_: Any) -> None:
        ks = self._work.schedule
        assert ks is not None and self.suite is not None
        authenticated = self.peer_chain or self.peer_public_key is not None or self.resumed
        if self._work.cert_request is None and not authenticated:
            raise UnexpectedMessage("Finished before the server authenticated")
        if not ks.check_verify_data(
            self._work.s_hs, self._work.transcript.digest(), fin.verify_data
        ):
            raise DecryptError("server Finished does not verify")
        self._work.transcript.add(HandshakeType.finished, body)
        self._work.peer_finished = True
        self._derive_application_secrets()
        self._install(3, write=False, secret=self.read_secret)
        # The client's final flight: [Certificate, CertificateVerify], Finished (epoch 2).
        self._out.flight = FlightKind.FINAL
        rejected = self._ech_state is ech.EchStatus.REJECTED
        if self._work.cert_request is not None:
            if rejected:
                # RFC 9849 §6.1.7: "If the server requests a client certificate, the client
                # MUST respond with an empty Certificate message".
                self._send(msgs.Certificate(b"", ()), 2)
            else:
                self._send_own_certificate(self._work.cert_request)
        self._send(
            msgs.Finished(ks.verify_data(self._work.c_hs, self._work.transcript.digest())), 2
        )
        self._install(3, write=True, secret=self.write_secret)
        if rejected:
            # §6.1.6: the server authenticated for the public name, which is no success:
            # end with ech_required (in epoch 3, as the peer now reads), once our flight
            # is out, never with application data.
            self._out.abort = EchRequired(
                "the server rejected Encrypted Client Hello", self.ech_retry_configs
            )
            return
        self.resumption_secret = ks.resumption_master_secret(self._work.transcript.digest())
        self._complete()

    def _send_own_certificate(self, request: msgs.CertificateRequest) -> None:
        """Our first credential of the agreed type that signs with a scheme the request
        lists and, if it must, has an issuer among its certificate_authorities."""
        cfg = self.config
        sig = request.extension(ExtensionType.signature_algorithms)
        schemes = decode(sig, ext.pull_signature_algorithms) if sig is not None else ()
        cas = request.extension(ExtensionType.certificate_authorities)
        names = decode(cas, identity.pull_certificate_authorities) if cas is not None else None
        found = identity.choose(cfg.credentials, self._work.own_type, schemes, cfg.schemes, names)
        if found is None:
            # RFC 8446 §4.4.2: "If the server requests client authentication but no
            # suitable certificate is available, the client MUST send a Certificate
            # message containing no certificates."
            self._send(msgs.Certificate(b"", ()), 2)
            return
        offer = request.extension(ExtensionType.compress_certificate)
        if offer is not None:
            self._work.peer_compression = compression.decode_offer_untrusted(offer)
        self._work.credential, scheme = found
        chain = self._work.credential.chain or None
        self._send_certificate_and_verify(
            SignatureScheme(scheme), self._work.credential.body, self._work.credential.key, chain
        )

    def _on_new_session_ticket(self, msg: msgs.NewSessionTicket, body: bytes, *_: Any) -> None:
        cfg = self.config
        assert self.params is not None and self.suite is not None
        if msg.ticket_lifetime > 7 * 24 * 3600:
            raise IllegalParameter("ticket lifetime over seven days")  # RFC 8446 §4.6.1
        early = msg.extension(ExtensionType.early_data)
        session = Session(
            max_early_data=decode(early, ext.pull_early_data_ticket) if early else 0,
            ticket=msg.ticket,
            psk=resumption_psk(self.params.hash_name, self.resumption_secret, msg.ticket_nonce),
            suite=self.suite,
            received_at=self._wall_clock().timestamp(),
            lifetime=msg.ticket_lifetime,
            age_add=msg.ticket_age_add,
            alpn=self.alpn,
            server_name=cfg.server_name,
            peer_certificates=self.peer_chain,
            peer_public_key=self.peer_public_key,
            peer_verification=self.peer_verification,
            peer_ocsp_response=self.peer_stapled.ocsp_response,
            peer_signed_certificate_timestamps=self.peer_stapled.signed_certificate_timestamps,
        )
        self._out.ticket = NewSessionTicketReceived(
            msg.ticket, msg.ticket_lifetime, msg.ticket_age_add, msg.ticket_nonce, session
        )

    def zeroize_secrets(self) -> None:
        super().zeroize_secrets()
        resumption, self.resumption_secret = self.resumption_secret, b""
        zeroize(resumption)


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


_HELLO = (S.WAIT_SERVER_HELLO, S.WAIT_SERVER_HELLO_AFTER_RETRY)
_AFTER_HELLO = (S.WAIT_SERVER_HELLO_AFTER_RETRY, S.WAIT_ENCRYPTED_EXTENSIONS)

# (state, message type) -> handler and the states it may lead to (RFC 8446 §A.1).
CLIENT_TRANSITIONS: dict[tuple[Any, int], Transition] = {
    **{
        (s, HELLO_VERIFY_REQUEST): Transition("_on_hello_verify_request", (), parse=False)
        for s in _HELLO
    },
    (S.WAIT_SERVER_HELLO, HT.server_hello): Transition("_on_server_hello", _AFTER_HELLO),
    (S.WAIT_SERVER_HELLO_AFTER_RETRY, HT.server_hello): Transition(
        "_on_server_hello", (S.WAIT_ENCRYPTED_EXTENSIONS,)
    ),
    (S.WAIT_ENCRYPTED_EXTENSIONS, HT.encrypted_extensions): Transition(
        "_on_encrypted_extensions", (S.WAIT_CERTIFICATE_OR_REQUEST, S.WAIT_FINISHED)
    ),
    (S.WAIT_CERTIFICATE_OR_REQUEST, HT.certificate_request): Transition(
        "_on_certificate_request", (S.WAIT_CERTIFICATE,)
    ),
    (S.WAIT_CERTIFICATE_OR_REQUEST, HT.certificate): Transition(
        "_on_server_certificate", (S.WAIT_CERTIFICATE_VERIFY,)
    ),
    (S.WAIT_CERTIFICATE, HT.certificate): Transition(
        "_on_server_certificate", (S.WAIT_CERTIFICATE_VERIFY,)
    ),
    **{
        (s, HT.compressed_certificate): Transition(
            "_on_server_compressed_certificate", (S.WAIT_CERTIFICATE_VERIFY,), parse=False
        )
        for s in (S.WAIT_CERTIFICATE_OR_REQUEST, S.WAIT_CERTIFICATE)
    },
    (S.WAIT_CERTIFICATE_VERIFY, HT.certificate_verify): Transition(
        "_on_certificate_verify", (S.WAIT_FINISHED,)
    ),
    (S.WAIT_FINISHED, HT.finished): Transition("_on_finished", (S.CONNECTED,)),
    (S.CONNECTED, HT.new_session_ticket): Transition("_on_new_session_ticket", (S.CONNECTED,)),
    (S.CONNECTED, HT.key_update): Transition("_to_connection", (S.CONNECTED,)),
    (S.CONNECTED, HT.request_connection_id): Transition("_to_connection", (S.CONNECTED,)),
    (S.CONNECTED, HT.new_connection_id): Transition("_to_connection", (S.CONNECTED,)),
}
ClientHandshake.TRANSITIONS = CLIENT_TRANSITIONS
