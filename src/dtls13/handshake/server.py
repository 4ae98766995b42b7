"""The server side of the handshake (RFC 8446 §A.2, RFC 9147), as a `HandshakeContext`."""

from __future__ import annotations

import hmac
import sys
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from ..alerts import (
    CertificateRequired,
    DecodeErrorAlert,
    DecryptError,
    HandshakeFailure,
    IllegalParameter,
    MissingExtension,
    ProtocolVersion,
    UnexpectedMessage,
)
from ..config import ServerConfig
from ..crypto.suites import SUITES, CipherSuite
from ..events import EchStatus
from . import (
    compression,
    groups,
    negotiation,
    raw_keys,
    selection,
    server_flight,
    srtp,
    trust_anchors,
    verification,
)
from . import extensions as ext
from . import messages as msgs
from .constants import DTLS13_VERSION, ExtensionType, HandshakeType, NamedGroup, SignatureScheme
from .context import HandshakeContext, decode
from .cookie import pack_cookie_extra, unpack_cookie_extra
from .ech_server import FINISHED, ServerEch
from .key_schedule import Transcript
from .psk_choice import Accepted, check_kept_psks, choose_psk, psk_after_certificates
from .state import HELLO_STATES, ServerState, Transition
from .ticket_issue import send_session_tickets
from .work import SPENT_TRANSCRIPT, FlightKind, HandshakeWork, ReadOnlyWork, spent_work

HT = HandshakeType
S = ServerState

# Enum members by value: a lookup instead of an Enum call (two Python calls); a value not
# listed still goes through the call, which raises as before.
_SUITE_OF = {int(m): m for m in CipherSuite}
_GROUP_OF = {int(m): m for m in NamedGroup}
_SCHEME_OF = {int(m): m for m in SignatureScheme}


# What a second ClientHello may change (RFC 8446 §4.1.2).
_CLIENT_HELLO2_MAY_CHANGE = frozenset(
    {
        ExtensionType.key_share,
        ExtensionType.early_data,
        ExtensionType.cookie,
        ExtensionType.pre_shared_key,
        ExtensionType.padding,
    }
)


class ServerWork(HandshakeWork):
    """The server's working state of a handshake in progress (see `HandshakeWork`)."""

    __slots__ = (
        "client_hello",
        "ech",
        "hello_bodies",
        "hrr_group",
        "peer_address",
        "renew_tickets",
        "type_answers",
    )

    def __init__(
        self,
        random: bytes,
        scratch: compression.Acquire | None,
        local_cid: bytes | None,
        ech: ServerEch,
    ) -> None:
        super().__init__(random, scratch, local_cid)
        self.hrr_group: int | None = None
        self.client_hello: msgs.ClientHello | None = None  # ClientHello1, after our HRR
        self.peer_address: Any = None
        self.type_answers: tuple[ext.Extension, ...] = ()  # RFC 7250, for EE
        # ClientHellos processed, by message_seq (a read-only empty one once spent).
        self.hello_bodies: dict[int, bytes] | Mapping[int, bytes] = {}
        self.ech = ech  # Encrypted Client Hello (RFC 9849)
        # False: a resumption whose ticket the application's keys accepted without renewal.
        self.renew_tickets = True


class _SpentServerWork(ReadOnlyWork, ServerWork):
    __slots__ = ()


_NO_HELLO_BODIES: Mapping[int, bytes] = MappingProxyType({})
# Every finished server handshake's working state: the shared ECH state FINISHED (its
# status is what ech_status says from then on), no ClientHellos, no transcript.
_SPENT_SERVER_WORK = ServerWork(b"", None, None, FINISHED)
_SPENT_SERVER_WORK.hello_bodies = _NO_HELLO_BODIES
_SPENT_SERVER_WORK.transcript = SPENT_TRANSCRIPT
_SPENT_SERVER_WORK = spent_work(_SPENT_SERVER_WORK, _SpentServerWork)


class ServerHandshake(HandshakeContext):
    """The server's handshake, from a ClientHello (or, `after_stateless_retry`, from a
    second ClientHello answering a stateless HelloRetryRequest, RFC 9147 §5.1)."""

    is_client = False
    CONNECTED = S.CONNECTED
    CLOSED = S.CLOSED
    HELLO_STATES = HELLO_STATES
    _after_certificate_verify = S.WAIT_CLIENT_FINISHED
    SPENT_WORK = _SPENT_SERVER_WORK

    __slots__ = ("server_name",)

    config: ServerConfig
    _work: ServerWork

    def __init__(
        self, config: ServerConfig, *, after_stateless_retry: bool = False, **kwargs: Any
    ) -> None:
        super().__init__(config, **kwargs)
        self.server_name: str | None = None  # the ClientHello's SNI, lower case
        first = S.WAIT_CLIENT_HELLO_AFTER_RETRY if after_stateless_retry else S.WAIT_CLIENT_HELLO
        self._set_state(first)

    def _new_work(
        self, random: bytes, scratch: compression.Acquire | None, local_cid: bytes | None
    ) -> ServerWork:
        return ServerWork(random, scratch, local_cid, ServerEch(self.config.ech_keys))

    @property
    def hello_bodies(self) -> Mapping[int, bytes]:
        """The ClientHellos processed, by message_seq (none once the handshake is over)."""
        return self._work.hello_bodies

    @property
    def retried(self) -> bool:
        """Whether this handshake went through a HelloRetryRequest (ours or a stateless one)."""
        return self.state is S.WAIT_CLIENT_HELLO_AFTER_RETRY

    def _on_client_hello(
        self, ch: msgs.ClientHello, body: bytes, now: float, seq: int, addr: Any
    ) -> None:
        cfg = self.config
        bodies = self._work.hello_bodies
        if not isinstance(bodies, dict):
            bodies = self._work.hello_bodies = {}
        bodies[seq] = body
        self._work.peer_address = addr
        retried = self.retried  # the state changes only once the ClientHello is answered
        if retried and self._work.client_hello is None:
            # After a stateless HRR: the ECH state ClientHelloOuter2's cookie kept (the
            # inner one's cookie is checked by _resume_from_cookie).
            self._work.ech.restore_from_cookie(ch, self.config.cookie_jar, now, addr, self._count)
        # From here on `ch` is the ClientHello the handshake answers: the inner one when
        # we accept Encrypted Client Hello (RFC 9849 §7.1).
        outer = ch
        ch, body = self._work.ech.open(ch, body, retried, self._count)
        if ch is not outer:
            self._out.ech_inner_hello = body
        versions = ch.extension(ExtensionType.supported_versions)
        if versions is None or DTLS13_VERSION not in decode(
            versions, ext.pull_supported_versions_client
        ):
            raise ProtocolVersion("the client does not offer DTLS 1.3 (DTLS 1.2 is not supported)")
        if ch.legacy_cookie:
            # RFC 9147 §5.3: a non-empty legacy_cookie in a DTLS 1.3 ClientHello.
            raise IllegalParameter("non-empty legacy_cookie")
        if ch.legacy_version != 0xFEFD:
            raise ProtocolVersion("legacy_version is not DTLS 1.2")
        if b"\x00" not in ch.legacy_compression_methods:
            raise IllegalParameter("null compression not offered")
        suite = negotiation.choose_suite(cfg, ch.cipher_suites)
        if suite is None:
            raise HandshakeFailure("no cipher suite in common")
        if retried and self._work.client_hello is None:
            # ClientHello2 after a stateless HRR; all we know is the cookie.
            suite = self._resume_from_cookie(ch, now)
        elif retried:
            self._check_second_client_hello(ch, suite)
        else:
            self._work.transcript.select(SUITES[suite].hash_name)
        sni = ch.extension(ExtensionType.server_name)
        host = decode(sni, ext.pull_server_name) if sni is not None else None
        # Interned: the connections to one name share one string (a string per connection
        # otherwise; it stays as long as the connection, for tickets).
        self.server_name = sys.intern(host.lower()) if host is not None else None
        authorities = ch.extension(ExtensionType.certificate_authorities)
        if authorities is not None:
            decode(authorities, ext.pull_certificate_authorities)  # well formed, not used
        trust_anchors.requested_untrusted(ch)  # well formed, whatever the handshake uses
        mode = self._psk_mode(ch)
        supported = ch.extension(ExtensionType.supported_groups)
        shares_data = ch.extension(ExtensionType.key_share)
        shares: dict[int, bytes] = {}
        group: int | None = None
        if mode != "psk_ke" or shares_data is not None:
            if supported is None or shares_data is None:
                raise MissingExtension("ClientHello without supported_groups or key_share")
            client_groups = decode(supported, ext.pull_supported_groups)
            entries = decode(shares_data, ext.pull_key_share_client)
            shares = {e.group: e.key_exchange for e in entries}
            if len(shares) != len(entries) or not set(shares) <= set(client_groups):
                # RFC 8446 §4.2.8: one share per group, each in supported_groups; "Servers
                # MAY check for violations of these rules and abort ... illegal_parameter".
                raise IllegalParameter("key_share repeats a group or has one not supported")
            group = negotiation.choose_share_group(cfg, shares)
            retry_group: int | None = None
            if group is None:
                retry_group = negotiation.choose_retry_group(cfg, client_groups)
                if retry_group is None or retried:
                    raise HandshakeFailure("no key-exchange group in common")
            if not retried and (retry_group is not None or cfg.require_cookie):
                self._work.hrr_group = retry_group
                self._send_hello_retry(ch, body, suite, retry_group, now)
                return
            assert group is not None
            if self._work.hrr_group is not None and (
                group != self._work.hrr_group or len(shares) != 1
            ):
                # RFC 8446 §4.1.2: the new key_share holds exactly the group the HRR selected.
                raise IllegalParameter("second ClientHello ignores the group the HRR selected")
        self._work.type_answers = ()
        certified = False
        if mode is None:
            accepted = None
        elif cfg.psks_before_certificates:
            accepted = choose_psk(self, ch, body, suite)
        else:
            accepted, certified = psk_after_certificates(self, ch, body, suite)
        self.alpn = self._choose_alpn(ch)  # before 0-RTT, which needs the same ALPN
        self._work.early_accepted = self._accept_early_data(ch, accepted, suite)
        if accepted is None or mode == "psk_dhe_ke":
            if group is None:
                raise MissingExtension("no key_share for a handshake without a PSK")
        else:
            group = None  # psk_ke: no (EC)DHE
        if accepted is None and not certified:
            self.choose_certificate(ch)
        if retried and self._work.client_hello is not None:
            self._check_same_client_hello(self._work.client_hello, ch)
        offer = ch.extension(ExtensionType.compress_certificate)
        if offer is not None:
            self._work.peer_compression = compression.decode_offer_untrusted(offer)
        self.srtp = srtp.server_choose(
            cfg.srtp, cfg.srtp_accept_mki, ch.extension(ExtensionType.use_srtp)
        )
        self.suite = _SUITE_OF[suite] if suite in _SUITE_OF else CipherSuite(suite)
        self.params = SUITES[suite]
        if group is None:
            self.group = None
        else:
            self.group = _GROUP_OF[group] if group in _GROUP_OF else NamedGroup(group)
        self.resumed = accepted is not None
        self._work.psk_identity = accepted[4] if accepted is not None else None
        if accepted is not None and accepted[2] is not None:
            # The client certificate authenticated when the ticket was issued (RFC 8446 §2.2).
            self.peer_chain = accepted[2].client_chain
            self.peer_public_key = accepted[2].client_public_key or None
            self.peer_verification = verification.on_resumption(self, None)
        self._work.client_random = ch.random
        self._work.transcript.add(HandshakeType.client_hello, body)
        if self._work.early_accepted and accepted is not None:
            early = accepted[1].client_early_traffic_secret(self._work.transcript.digest())
            self._install(1, write=False, secret=early)
            if self._work.keylog is not None:
                self._log_secret("CLIENT_EARLY_TRAFFIC_SECRET", early)
            self._keep_early_exporter(accepted[1])
        server_share, shared = (
            groups.encapsulate(group, shares[group]) if group is not None else (b"", None)
        )
        self._send_server_flight(ch, group, server_share, shared, accepted)

    # The first flight, ServerHello to Finished (server_flight.py).
    _send_server_flight = server_flight.send_server_flight

    def _accept_early_data(
        self, ch: msgs.ClientHello, accepted: Accepted | None, suite: int
    ) -> bool:
        """0-RTT is accepted for the first identity's ticket, same suite and ALPN, a fresh
        age and a first use (RFC 8446 §4.2.10, §8)."""
        cfg = self.config
        if ch.extension(ExtensionType.early_data) is None:
            return False
        self._count("early_data_offered", 1)
        self._work.early_offered = True
        if accepted is None or accepted[0] != 0 or self.retried or not cfg.max_early_data:
            return False
        _, _, state, identity, _ = accepted
        if state is None or not state.max_early_data or state.suite != suite:
            return False
        if state.alpn != self.alpn:
            return False
        wall = self._wall_clock().timestamp()
        reported = ((identity.obfuscated_ticket_age - state.age_add) & 0xFFFFFFFF) / 1000
        if abs(reported - (wall - state.issued_at)) > cfg.early_data_window:
            return False
        if not cfg.replay_guard.first_use(
            identity.identity, state.issued_at + state.lifetime, wall
        ):
            self._count("early_data_replays", 1)
            return False
        self._work.early_budget = state.max_early_data
        return True

    def _psk_mode(self, ch: msgs.ClientHello) -> str | None:
        """The PSK key-exchange mode both sides allow, or None (RFC 8446 §4.2.9-11)."""
        if ch.extension(ExtensionType.pre_shared_key) is None:
            return None
        if ch.extensions[-1].type != ExtensionType.pre_shared_key:
            raise IllegalParameter("pre_shared_key is not the last extension")
        data = ch.extension(ExtensionType.psk_key_exchange_modes)
        if data is None:
            raise MissingExtension("pre_shared_key without psk_key_exchange_modes")
        offered = decode(data, ext.pull_psk_key_exchange_modes)
        for name, code in (("psk_dhe_ke", 1), ("psk_ke", 0)):
            if code in offered and name in self.config.psk_modes:
                return name
        return None

    def _send_hello_retry(
        self, ch: msgs.ClientHello, body: bytes, suite: int, group: int | None, now: float
    ) -> None:
        """HelloRetryRequest for a group, a cookie or both (RFC 8446 §4.1.4, RFC 9147 §5.1)."""
        cfg = self.config
        self._work.transcript.add(HandshakeType.client_hello, body)
        ch1_hash = self._work.transcript.digest()
        self._work.transcript.restart_with_message_hash()
        self._set_state(S.WAIT_CLIENT_HELLO_AFTER_RETRY)
        self._count("hello_retry_requests_sent", 1)
        self._work.client_hello = ch
        self.suite = _SUITE_OF[suite] if suite in _SUITE_OF else CipherSuite(suite)
        if cfg.require_cookie:
            # The cookie carries what a stateless server needs to rebuild this HRR and the
            # transcript: ClientHello1's hash, the suite and the group (RFC 9147 §5.1).
            extra = pack_cookie_extra(suite, group, self._work.ech.retry_state())
            self._work.hrr_cookie = cfg.cookie_jar.make(
                now, self._work.peer_address, ch1_hash, extra
            )
        # The HRR implicitly acknowledges ClientHello1 and is never retransmitted on a
        # timer: a repeated ClientHello1 gets it again (RFC 9147 §5.8.1 case 3, §7.1).
        self._out.flight = FlightKind.RETRY
        hrr = negotiation.hello_retry_request(suite, group, self._work.hrr_cookie)
        self._send(self._work.ech.hello_retry_request(hrr, self._work.transcript, ch.random), 0)

    def _resume_from_cookie(self, ch: msgs.ClientHello, now: float) -> CipherSuite:
        """Rebuild the HRR state a stateless server left in its cookie; returns the suite.

        RFC 9147 §5.1: ClientHello1 enters the transcript as message_hash, so its hash
        is enough; the HRR is rebuilt byte for byte from the suite and group.
        """
        cfg = self.config
        data = ch.extension(ExtensionType.cookie)
        if data is None:
            raise MissingExtension("ClientHello with message_seq 1 but no cookie")
        cookie = decode(data, ext.pull_cookie)
        contents = cfg.cookie_jar.check(cookie, now, self._work.peer_address)
        unpacked = unpack_cookie_extra(contents.extra) if contents is not None else None
        if contents is None or unpacked is None:
            raise IllegalParameter("invalid or expired cookie")
        self._out.address_validated = True
        suite_code, group = unpacked
        if suite_code not in cfg.suites or suite_code not in ch.cipher_suites:
            raise IllegalParameter("cookie names a suite no longer offered")
        suite = _SUITE_OF[suite_code] if suite_code in _SUITE_OF else CipherSuite(suite_code)
        params = SUITES[suite]
        self._work.transcript = Transcript.from_message_hash(params.hash_name, contents.ch1_hash)
        if self._work.ech.inner:  # the HRR carried the ECH confirmation (RFC 9849 §7.2.1)
            hrr = negotiation.hello_retry_request(suite, group, cookie)
            hrr = self._work.ech.hello_retry_request(hrr, self._work.transcript, ch.random)
            hrr_body = msgs.push_message(hrr)[1]
        else:
            hrr_body = negotiation.hello_retry_request_body(suite, group, cookie)
        self._work.transcript.add(HT.server_hello, hrr_body)
        self._work.hrr_cookie = cookie
        self._work.hrr_group = group
        self.suite = suite
        return suite

    def ech_status(self) -> EchStatus:
        return self._work.ech.status  # then FINISHED's (HandshakeCompleted keeps this one)

    def _check_second_client_hello(self, ch: msgs.ClientHello, suite: int) -> None:
        first = self._work.client_hello
        if suite != self.suite or (first is not None and ch.random != first.random):
            raise IllegalParameter("second ClientHello differs from the first beyond the HRR")
        if first is not None:
            check_kept_psks(self, first, ch, suite)
        if self._work.hrr_cookie is not None:
            data = ch.extension(ExtensionType.cookie)
            if data is None:
                raise MissingExtension("second ClientHello without the cookie")
            cookie = decode(data, ext.pull_cookie)
            # The exact cookie we issued to this peer in this handshake is proof enough;
            # its age is bounded by the handshake timeout. Checking expiry here refused
            # the very cookie we had just re-sent with the HRR for a late ClientHello1
            # (RFC 9147 §5.8.1); expiry guards stateless servers (_resume_from_cookie).
            if not hmac.compare_digest(cookie, self._work.hrr_cookie):
                raise IllegalParameter("cookie does not match the one we sent")
            self._out.address_validated = True
        self._out.answered = True  # the HelloRetryRequest is done with

    def _check_same_client_hello(self, first: msgs.ClientHello, second: msgs.ClientHello) -> None:
        """RFC 8446 §4.1.2: the second ClientHello is the first "without modification,
        except" the key_share the HRR asked for, early_data removed, the cookie added,
        pre_shared_key updated and padding (a stateless server, without ClientHello1,
        cannot check this)."""
        may_change = set(_CLIENT_HELLO2_MAY_CHANGE)
        if self._work.hrr_group is None:
            may_change.discard(ExtensionType.key_share)  # the HRR asked for no new share

        def fixed(ch: msgs.ClientHello) -> tuple[Any, ...]:
            kept = {e.type: e.data for e in ch.extensions if e.type not in may_change}
            return (
                ch.legacy_version,
                ch.random,
                ch.legacy_session_id,
                ch.cipher_suites,
                ch.legacy_compression_methods,
                kept,
            )

        if fixed(first) != fixed(second):
            raise IllegalParameter("second ClientHello differs from the first beyond the HRR")

    def _choose_alpn(self, ch: msgs.ClientHello) -> str | None:
        cfg = self.config
        data = ch.extension(ExtensionType.application_layer_protocol_negotiation)
        if data is None or not (cfg.alpn_protocols or cfg.alpn_callback is not None):
            return None
        offered = [n.decode("latin-1") for n in decode(data, ext.pull_alpn)]
        return selection.choose_alpn(cfg, offered, self._count)

    def _on_client_certificate(
        self, msg: msgs.Certificate, body: bytes, *_: Any, msg_type: int = HT.certificate
    ) -> None:
        if not msg.certificate_list:
            if self.config.client_auth == "required":
                raise CertificateRequired("client sent no certificate")
            self._work.transcript.add(msg_type, body)
            self._set_state(S.WAIT_CLIENT_FINISHED)
            return
        self._on_certificate(msg, body, msg_type)
        self._set_state(S.WAIT_CLIENT_CERTIFICATE_VERIFY)

    def _on_client_compressed_certificate(self, _: Any, body: bytes, *__: Any) -> None:
        # Offered in our CertificateRequest when we have algorithms (RFC 8879 §3).
        msg = self._decompress_certificate(body, offered=self._work.cert_request is not None)
        self._on_client_certificate(msg, body, msg_type=HT.compressed_certificate)

    def _on_end_of_early_data(self, _: Any, body: bytes, *__: Any) -> None:
        """An EndOfEarlyData in epoch 1 (the connection drops it in epochs 0 and 2; in 3 and
        later, once connected, no state takes it).

        RFC 9147 §5.6: "the EndOfEarlyData message is omitted both from the wire and the
        handshake transcript"; NSS's client still sends it after its 0-RTT and hashes it,
        as TLS 1.3 does (RFC 8446 §4.5). Only the client holding the early keys can have
        sent it, so it is taken as TLS 1.3 takes it: the end of the early data, in the
        transcript its Finished covers. A client that sends none is unaffected.
        """
        work = self._work
        if not work.early_accepted:
            raise UnexpectedMessage("EndOfEarlyData without 0-RTT accepted")
        if work.early_ended:
            raise UnexpectedMessage("a second EndOfEarlyData")
        if body:
            raise DecodeErrorAlert("EndOfEarlyData with a body")
        work.early_ended = True
        work.transcript.add(HandshakeType.end_of_early_data, body)
        self._out.end_early_data = True

    def _on_finished(self, fin: msgs.Finished, body: bytes, *_: Any) -> None:
        ks = self._work.schedule
        assert ks is not None and self.suite is not None
        if not ks.check_verify_data(
            self._work.c_hs, self._work.transcript.digest(), fin.verify_data
        ):
            raise DecryptError("client Finished does not verify")
        self._work.transcript.add(HandshakeType.finished, body)
        self._work.peer_finished = True
        out = self._out
        self._install(3, write=False, secret=self.read_secret)
        # RFC 9147 §5.6: no EndOfEarlyData; epoch 1 ends with the client's Finished.
        out.end_early_data = self._work.early_accepted
        # Our flight is implicitly acknowledged; the client's final flight needs an ACK.
        out.answered = True
        self._complete()
        send_session_tickets(self)

    def choose_certificate(self, ch: msgs.ClientHello) -> None:
        """The credential and signature scheme of a full handshake (raises when none fits)."""
        cfg = self.config
        sig = ch.extension(ExtensionType.signature_algorithms)
        if sig is None:
            raise MissingExtension("ClientHello without signature_algorithms")
        offered = decode(sig, ext.pull_signature_algorithms)
        self.peer_type, self._work.type_answers = raw_keys.client_type_choice(
            cfg, ch.extension(ExtensionType.client_certificate_type)
        )
        self._work.credential, scheme, answer = selection.choose_server_credential(
            cfg,
            self.server_name,
            offered,
            self._count,
            ch.extension(ExtensionType.server_certificate_type),
            ch.extension(ExtensionType.certificate_authorities),
            trust_anchors.requested_untrusted(ch),
            ch.extension(ExtensionType.delegated_credential),
        )
        self._work.own_type = self._work.credential.certificate_type
        self.scheme = _SCHEME_OF[scheme] if scheme in _SCHEME_OF else SignatureScheme(scheme)
        if answer is not None:
            self._work.type_answers = (answer, *self._work.type_answers)


_HELLO = (S.WAIT_CLIENT_HELLO_AFTER_RETRY, S.WAIT_CLIENT_CERTIFICATE, S.WAIT_CLIENT_FINISHED)
_AFTER_CERT = (S.WAIT_CLIENT_CERTIFICATE_VERIFY, S.WAIT_CLIENT_FINISHED)

# (state, message type) -> handler and the states it may lead to (RFC 8446 §A.2).
SERVER_TRANSITIONS: dict[tuple[Any, int], Transition] = {
    (S.WAIT_CLIENT_HELLO, HT.client_hello): Transition("_on_client_hello", _HELLO),
    (S.WAIT_CLIENT_HELLO_AFTER_RETRY, HT.client_hello): Transition("_on_client_hello", _HELLO[1:]),
    (S.WAIT_CLIENT_CERTIFICATE, HT.certificate): Transition("_on_client_certificate", _AFTER_CERT),
    (S.WAIT_CLIENT_CERTIFICATE, HT.compressed_certificate): Transition(
        "_on_client_compressed_certificate", _AFTER_CERT, parse=False
    ),
    (S.WAIT_CLIENT_CERTIFICATE_VERIFY, HT.certificate_verify): Transition(
        "_on_certificate_verify", (S.WAIT_CLIENT_FINISHED,)
    ),
    (S.WAIT_CLIENT_FINISHED, HT.finished): Transition("_on_finished", (S.CONNECTED,)),
    # NSS's EndOfEarlyData (see _on_end_of_early_data): a client accepted for 0-RTT is
    # not asked for a certificate, so it comes only here.
    (S.WAIT_CLIENT_FINISHED, HT.end_of_early_data): Transition(
        "_on_end_of_early_data", (S.WAIT_CLIENT_FINISHED,), parse=False
    ),
    (S.CONNECTED, HT.key_update): Transition("_to_connection", (S.CONNECTED,)),
    (S.CONNECTED, HT.request_connection_id): Transition("_to_connection", (S.CONNECTED,)),
    (S.CONNECTED, HT.new_connection_id): Transition("_to_connection", (S.CONNECTED,)),
}
ServerHandshake.TRANSITIONS = SERVER_TRANSITIONS
